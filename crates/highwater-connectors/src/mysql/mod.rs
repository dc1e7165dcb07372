//! MariaDB/MySQL: a source read through `mysql_async` prepared statements
//! (binary protocol, typed values), streamed row by row into Arrow builders.
//!
//! A read, step by step:
//!
//! ```text
//! 1. SET time_zone = '+00:00'                 -- TIMESTAMP values are UTC
//! 2. (change tracking) set up / prune         -- own transactions
//! 3. START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY  (REPEATABLE READ)
//! 4. read the bound (change version) in the snapshot
//! 5. SELECT … with bound values, streamed
//! 6. COMMIT
//! ```
//!
//! Modes: `full`, `watermark` (integer, date, datetime and timestamp
//! cursors; `[after, to]` inclusive with the engine's boundary
//! de-duplication; MariaDB cannot tell which transactions are still open,
//! so late commits are covered by `lag:` only) and `change_tracking`.

pub(crate) mod change_tracking;
pub(crate) mod procedure;
mod sink;
pub(crate) mod source;
mod types;

pub use sink::MySink;
pub use source::MySource;

use highwater_core::Result;

/// Connect and report the server version.
pub async fn check(url: &str) -> Result<String> {
    use mysql_async::prelude::Queryable;
    let mut conn = source::connect(url).await?;
    let row: Option<(String, Option<String>)> = conn
        .query_first("SELECT VERSION(), DATABASE()")
        .await
        .map_err(source::my_err)?;
    let _ = conn.disconnect().await;
    let (v, db) = row.unwrap_or_default();
    Ok(format!(
        "database {}: MariaDB/MySQL {v}",
        db.unwrap_or_else(|| "(none)".into())
    ))
}
