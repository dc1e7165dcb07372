//! SQLite: a source read through `rusqlite` on a blocking thread.
//!
//! SQLite has one writer at a time and a read transaction is a snapshot
//! (WAL or rollback journal alike), so the upper bound and the rows read in
//! one `BEGIN … COMMIT` are consistent, and no transaction can commit rows
//! "behind" a run: late commits cannot happen here.
//!
//! Cursor values are compared the way SQLite compares them: integers as
//! integers, text timestamps as text. The watermark keeps the exact stored
//! text, so no precision or format is lost between runs.

pub(crate) mod change_tracking;
pub(crate) mod errors;
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
    Ok(format!(
        "SQLite {} ({} tables and views)",
        path.display(),
        n
    ))
}
