//! The shared vocabulary of highwater: positions, deltas, cursor values,
//! the Arrow batch stream type, the error type, and the traits that sources,
//! sinks and state stores implement.
//!
//! This crate has no drivers and does no I/O. Every other crate depends on
//! it; it depends on no crate of ours.
//!
//! ```text
//!   Source.read(ReadRequest) ──► Extract { to, batches: BatchStream }
//!                                          │
//!   Sink.begin(WriteRequest) ──► SinkWriter.write(batch)… ──► commit(info)
//!                                          │
//!   StateStore: begin_attempt ─────────────┴──► commit_attempt (position moves)
//! ```

pub mod error;
pub mod position;
pub mod retry;
pub mod sink;
pub mod source;
pub mod state;
pub mod stream;

pub use error::{Cause, Error, ErrorKind, Result};
pub use position::{ChangeVersion, CursorValue, Position, WatermarkPosition};
pub use retry::{RetryPolicy, with_retries};
pub use sink::{
    Committed, FileSplit, ProcedureWrite, Recovered, Sink, SinkWriter, TableWrite, TableWriteMode,
    WriteRequest, part_file_name,
};
pub use source::{
    ConnKind, Delta, ExportedParts, Extract, Lag, NullCursorPolicy, PartRange, ReadRequest,
    Relation, Source, TableInfo,
};
pub use state::{
    Attempt, AttemptStatus, RunQuery, RunRecord, RunStatus, StateStore, StreamLock, StreamRun,
};
pub use stream::{BatchStream, RecordBatchStream, StreamAdapter};

/// Name of the hidden column a source appends in watermark mode: the
/// (coalesced) cursor value of each row. The engine reads it for boundary
/// de-duplication and removes it before rows reach a sink.
pub const CURSOR_COLUMN: &str = "__highwater_cursor";

/// Crash points for tests: `HIGHWATER_FAILPOINT=<name>` aborts the process
/// (as `kill -9` would) when execution reaches `<name>`.
pub fn failpoint(name: &str) {
    if std::env::var("HIGHWATER_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
