//! SQLite: a source read through `rusqlite` on a blocking thread.
//!
//! A read transaction is a snapshot (WAL or rollback journal alike), so the
//! upper bound and the rows read in one `BEGIN … COMMIT` are consistent.
//! Late commits: before that snapshot a watermark read takes the write
//! lock for a moment (`BEGIN IMMEDIATE`, bounded wait, `ROLLBACK`) and caps
//! text timestamps at the time read while no write transaction was open
//! (see `source::take_cap` and `docs/decisions.md`, "Late commits on
//! SQLite").
//!
//! Cursor values are compared the way SQLite compares them: integers as
//! integers, text timestamps as text. The watermark keeps the exact stored
//! text, so no precision or format is lost between runs.

pub(crate) mod change_tracking;
pub(crate) mod errors;
pub(crate) mod script;
pub(crate) mod sink;
pub(crate) mod source;
mod types;

pub use sink::SqliteSink;
pub use source::SqliteSource;

use std::path::Path;

use highwater_core::{Error, Result};

/// Open the file read-only and count its tables.
pub fn check(path: &Path) -> Result<String> {
    let conn = source::open(path)?;
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type IN ('table','view')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| Error::source("sqlite", format!("{}: {e}", path.display())))?;
    // The late-commit cap needs the write lock for a moment.
    let writable = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()
    .and_then(|c| c.is_readonly(rusqlite::MAIN_DB).ok())
    .is_some_and(|ro| !ro);
    let ro = if writable {
        ""
    } else {
        "; read-only for this process: watermark runs cannot take the write lock \
         for the late-commit cap, only `lag:` guards late commits"
    };
    Ok(format!(
        "SQLite {} ({} tables and views{ro})",
        path.display(),
        n
    ))
}
