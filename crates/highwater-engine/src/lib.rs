//! The engine: runs streams with the commit protocol, and keeps the run
//! history.
//!
//! A declarative stream is a small fixed pipeline:
//!
//! ```text
//! lock stream ─► settle open attempts ─► read delta (one snapshot)
//!   ─► no rows? record "no changes", move the position if it moved, done
//!   ─► begin_attempt(from, target)       write-ahead; the output name is fixed
//!   ─► batches ─► boundary filter ─► sink writer   (bounded memory)
//!   ─► writer.commit(position)            data + commit marker, atomically
//!   ─► commit_attempt(from → to)          only now does the position move
//! any error: abort the writer, abandon the attempt, position unchanged.
//! ```
//!
//! Settling: an open attempt found at the start was left by a crash. The
//! sink says whether it published; if so the position it carried in its
//! commit marker is committed, otherwise its leftovers are removed and the
//! range is read again.
//!
//! A Data Factory pipeline ([`pipeline`]) is interpreted activity by
//! activity over the same connectors and run history; see its module doc.

pub mod attempt;
pub mod boundary;
pub mod events;
pub mod parts;
pub mod pipeline;
pub mod preview;
pub mod runner;
pub mod template;
pub mod timed_state;
pub mod verify;
pub mod windowed;

pub use events::{Event, Observer};
pub use runner::{RunOptions, RunOutcome, open_state, prewarm, run_streams};
