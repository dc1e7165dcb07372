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
//! so late commits are covered by `lag:` only), `change_tracking`, and
//! `cdc` (MariaDB's binary log, read as a replica; see [`cdc`]).

pub mod cdc;
mod cdc_keys;
pub(crate) mod change_tracking;
pub(crate) mod errors;
mod partition;
pub use partition::check_lock_privilege;
pub(crate) mod procedure;
pub(crate) mod script;
mod sink;
pub(crate) mod source;
mod types;

pub use sink::MySink;
pub use source::{KeyChecksums, MySource, checksum, key_buckets, key_ranges};

use highwater_core::{Cause, Error, Result, RetryPolicy, with_retries};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use crate::timeouts::{self, Timeouts};
use crate::util::{Warm, redact_url};

/// Connect within `connect_timeout` (default 10 s, the whole setup: TCP,
/// TLS, login, session settings), retrying refused or reset connections a
/// few times ([`RetryPolicy::CONNECT`]); the session runs in UTC and with
/// `statement_timeout` as `max_statement_time` (MariaDB) or
/// `max_execution_time` (MySQL, `SELECT` only). See [`crate::timeouts`].
///
/// A connection [`prewarm`]ed for `url` is taken first (its error, if it
/// failed, is this call's).
pub async fn connect(url: &str) -> Result<Conn> {
    match WARM.take(url).await {
        Some(c) => c,
        None => connect_now(url).await,
    }
}

static WARM: std::sync::LazyLock<Warm<Conn>> = std::sync::LazyLock::new(Warm::new);

/// Start connecting to `url` now, for the process's next [`connect`] to it.
pub fn prewarm(url: &str) {
    let owned = url.to_string();
    WARM.start(url, async move { connect_now(&owned).await });
}

async fn connect_now(url: &str) -> Result<Conn> {
    let target = redact_url(url);
    let (my_url, limits) = timeouts::split(url)?;
    let mut opts = Opts::from_url(&my_url).map_err(|e| Error::Connection {
        target: target.clone(),
        message: e.to_string(),
    })?;
    // The driver's default (`prefer_socket=true`) logs in over TCP, asks
    // the server for its socket and, on the same machine, logs in again
    // through it: two logins per connection. One is enough; a URL that
    // says `prefer_socket=true` keeps the driver's way.
    if !my_url.contains("prefer_socket=") {
        opts = mysql_async::OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .into();
    }
    with_retries(
        &format!("connect to {target}"),
        RetryPolicy::CONNECT,
        || connect_once(opts.clone(), &target, limits),
    )
    .await
}

async fn connect_once(opts: Opts, target: &str, limits: Timeouts) -> Result<Conn> {
    let conn_err = |e: mysql_async::Error| {
        Error::Connection {
            target: target.to_string(),
            message: errors::message(&e),
        }
        .with_cause(errors::cause(&e))
    };
    let setup = async {
        let mut conn = Conn::new(opts).await.map_err(conn_err)?;
        conn.query_drop("SET time_zone = '+00:00'")
            .await
            .map_err(conn_err)?;
        if let Some(d) = limits.statement {
            let maria = format!("SET SESSION max_statement_time = {}", d.as_secs_f64());
            match conn.query_drop(maria).await {
                Err(mysql_async::Error::Server(s)) if s.code == errors::UNKNOWN_SYSTEM_VARIABLE => {
                    conn.query_drop(format!(
                        "SET SESSION max_execution_time = {}",
                        d.as_millis()
                    ))
                    .await
                    .map_err(conn_err)?
                }
                other => other.map_err(conn_err)?,
            }
        }
        Ok(conn)
    };
    match limits.connect {
        None => setup.await,
        Some(d) => tokio::time::timeout(d, setup).await.unwrap_or_else(|_| {
            Err(Error::Connection {
                target: target.to_string(),
                message: format!(
                    "no answer within {} (connect_timeout; raise it with ?connect_timeout=SECONDS in the URL)",
                    timeouts::show(d)
                ),
            }
            .with_cause(Cause::Timeout))
        }),
    }
}

/// Existing tables named `name` ignoring case, in database `schema`
/// ignoring case (else the connection's): `(database, table)` as the
/// catalog spells them.
pub async fn tables_like(
    url: &str,
    schema: Option<&str>,
    name: &str,
) -> Result<Vec<(String, String)>> {
    let mut conn = connect(url).await?;
    let rows: Vec<(String, String)> = conn
        .exec(
            "SELECT CAST(table_schema AS CHAR), CAST(table_name AS CHAR) FROM information_schema.tables \
             WHERE LOWER(table_name) = LOWER(?) AND LOWER(table_schema) = LOWER(COALESCE(?, DATABASE())) \
             ORDER BY 1, 2",
            (name, schema),
        )
        .await
        .map_err(source::my_err)?;
    let _ = conn.disconnect().await;
    Ok(rows)
}

/// Connect and report the server version.
pub async fn check(url: &str) -> Result<String> {
    let mut conn = connect(url).await?;
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
