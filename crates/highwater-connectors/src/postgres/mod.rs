//! PostgreSQL: a source that streams `COPY (SELECT …) TO STDOUT (FORMAT
//! binary)` and decodes it straight into Arrow builders.
//!
//! A read, step by step:
//!
//! ```text
//! 1. cap   = min(clock_timestamp(), start of the oldest open transaction
//!            of this database)                       -- before the snapshot
//! 2. BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY -- the snapshot
//! 3. to    = max(cursor) among rows with cursor <= cap; count NULL cursors
//! 4. set_config('highwater.lo'/'highwater.hi', …)    -- values bound, never spliced
//! 5. COPY (SELECT cols, cursor FROM rel WHERE cursor BETWEEN lo AND hi) TO STDOUT
//! 6. COMMIT
//! ```
//!
//! Why step 1 comes first: every transaction still open at the snapshot
//! (step 2) was either open at step 1 — so its start time is ≥ cap — or
//! began after step 1 — so its start time is > cap too. Rows such a
//! transaction writes with `now()` (its start time) or `clock_timestamp()`
//! carry a cursor ≥ cap ≥ to, so the next run, which starts at `to`
//! inclusive, reads them. Rows written with an explicit older timestamp, and
//! integer cursors from sequences, cannot be protected this way: `lag:`
//! holds the bound back, and a run warns when write transactions were open.
//!
//! `COPY` takes no bind parameters, so the bounds travel as transaction-local
//! settings set with a bound `set_config($1, $2, true)` and are read back
//! with a cast to the cursor's type; the query text holds only quoted
//! identifiers.

pub(crate) mod change_tracking;
pub(crate) mod procedure;
pub(crate) mod sink;
pub(crate) mod source;
mod tls;
mod types;

pub use sink::PgSink;
pub use source::{PgSource, connect};

use highwater_core::{Error, Result};

/// Connect and report the server version.
pub async fn check(url: &str) -> Result<String> {
    let client = source::connect(url).await?;
    let row = client
        .query_one(
            "SELECT version(), current_database(),
                    coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
            &[],
        )
        .await
        .map_err(|e| Error::source("postgres", e))?;
    let v: String = row.get(0);
    let db: String = row.get(1);
    let tls: bool = row.get(2);
    Ok(format!(
        "database {db}: {}{}",
        v.split(" on ").next().unwrap_or(&v),
        if tls { " (TLS)" } else { "" }
    ))
}
