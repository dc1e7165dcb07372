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

pub mod cdc;
pub(crate) mod change_tracking;
pub(crate) mod errors;
mod partition;
pub(crate) mod procedure;
pub(crate) mod script;
pub(crate) mod sink;
pub(crate) mod source;
mod tls;
mod types;

pub use sink::PgSink;
pub use source::{KeyChecksums, PgSource, checksum, key_buckets, key_ranges};

use highwater_core::{Cause, Error, Result, RetryPolicy, with_retries};
use tokio_postgres::{Client, NoTls};

use crate::timeouts::{self, Timeouts};
use crate::util::{Warm, redact_url};

/// Connect (TLS per `sslmode`, see [`tls`]) within `connect_timeout`
/// (default 10 s, the whole setup: TCP, TLS, login, session settings),
/// retrying refused or reset connections a few times
/// ([`RetryPolicy::CONNECT`]); `statement_timeout` becomes the session's
/// setting (see [`crate::timeouts`]). The connection task runs on the
/// runtime until the client drops.
///
/// A connection [`prewarm`]ed for `url` is taken first, if it is still
/// open (its error, if it failed, is this call's).
pub async fn connect(url: &str) -> Result<Client> {
    match WARM.take(url).await {
        Some(Ok(c)) if !c.is_closed() => Ok(c),
        Some(Err(e)) => Err(e),
        _ => connect_now(url).await,
    }
}

static WARM: std::sync::LazyLock<Warm<Client>> = std::sync::LazyLock::new(Warm::new);

/// Start connecting to `url` now, for the process's next [`connect`] to it.
pub fn prewarm(url: &str) {
    let owned = url.to_string();
    WARM.start(url, async move { connect_now(&owned).await });
}

async fn connect_now(url: &str) -> Result<Client> {
    let target = redact_url(url);
    let (pg_url, limits) = timeouts::split(url)?;
    with_retries(
        &format!("connect to {target}"),
        RetryPolicy::CONNECT,
        || connect_once(&pg_url, &target, limits),
    )
    .await
}

/// Connect with `tls` and drive the connection on its own task.
async fn open<T>(pg_url: &str, tls: T) -> std::result::Result<Client, tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = tokio_postgres::connect(pg_url, tls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed.");
        }
    });
    Ok(client)
}

async fn connect_once(pg_url: &str, target: &str, limits: Timeouts) -> Result<Client> {
    let conn_err = |message: String, cause: Option<Cause>| {
        Error::Connection {
            target: target.to_string(),
            message,
        }
        .with_cause(cause)
    };
    let setup = async {
        let (pg_url, mode) = tls::parse(pg_url);
        let config = tls::client_config(&mode).map_err(|m| conn_err(m, None))?;
        let driver_err =
            |e: tokio_postgres::Error| conn_err(errors::message(&e), errors::cause(&e));
        let client = match config {
            None => open(&pg_url, NoTls).await,
            Some(config) => {
                open(
                    &pg_url,
                    tokio_postgres_rustls::MakeRustlsConnect::new(config),
                )
                .await
            }
        }
        .map_err(driver_err)?;
        if let Some(d) = limits.statement {
            client
                .batch_execute(&format!("SET statement_timeout = {}", d.as_millis()))
                .await
                .map_err(driver_err)?;
        }
        Ok(client)
    };
    match limits.connect {
        None => setup.await,
        Some(d) => tokio::time::timeout(d, setup).await.unwrap_or_else(|_| {
            Err(conn_err(
                format!(
                    "no answer within {} (connect_timeout; raise it with ?connect_timeout=SECONDS in the URL)",
                    timeouts::show(d)
                ),
                Some(Cause::Timeout),
            ))
        }),
    }
}

/// Existing tables named `name` ignoring case, in `schema` ignoring case
/// (else the current schema): `(schema, table)` as the catalog spells them.
pub async fn tables_like(
    url: &str,
    schema: Option<&str>,
    name: &str,
) -> Result<Vec<(String, String)>> {
    let client = connect(url).await?;
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND lower(c.relname) = lower($2) \
               AND CASE WHEN $1::text IS NULL THEN n.nspname = current_schema() \
                        ELSE lower(n.nspname) = lower($1) END \
             ORDER BY 1, 2",
            &[&schema, &name],
        )
        .await
        .map_err(errors::source)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Connect and report the server version.
pub async fn check(url: &str) -> Result<String> {
    let client = connect(url).await?;
    let row = client
        .query_one(
            "SELECT version(), current_database(),
                    coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
            &[],
        )
        .await
        .map_err(errors::source)?;
    let v: String = row.get(0);
    let db: String = row.get(1);
    let tls: bool = row.get(2);
    Ok(format!(
        "database {db}: {}{}",
        v.split(" on ").next().unwrap_or(&v),
        if tls { " (TLS)" } else { "" }
    ))
}
