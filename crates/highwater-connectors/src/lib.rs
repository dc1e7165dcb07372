//! Connectors: `connect(kind, url)` → a [`Source`] or a [`Sink`].
//!
//! One folder per backend with the same files (`mod.rs`, `source.rs`,
//! `sink.rs`, `types.rs`, …), and one `match` on the connection kind to pick
//! the backend: the set is closed, there is no registry.
//!
//! | backend    | source | sink |
//! |------------|--------|------|
//! | `sqlite`   | yes    | table (`into:`), append / merge / replace |
//! | `postgres` | yes    | table (`into:`), append / merge / replace |
//! | `mysql`    | yes    | table (`into:`), append / merge / replace |
//! | `files`    | –      | local folder, Azure Blob, S3 (CSV, Parquet, JSON Lines) |
//!
//! [`call_procedure`] runs a stored procedure (PostgreSQL, MariaDB/MySQL)
//! for the pipeline interpreter, with bound values.
//! [`script::run_script`] runs a Script activity's SQL blocks
//! (PostgreSQL, MariaDB/MySQL, SQLite; each backend's `script.rs`), with
//! bound values.
//!
//! A connector never imports the engine. Errors carry the backend and never
//! the connection URL (which may hold a password).

use std::sync::Arc;

use highwater_core::{ConnKind, Error, Result, Sink, Source};

pub mod change_tracking;
pub mod discover;
pub mod files;
mod held_back;
mod load_text;
pub mod mysql;
mod partition;
pub mod postgres;
pub mod procedure;
pub mod script;
pub mod sqlite;
pub mod table;
mod text;
pub mod timeouts;
mod util;

pub use procedure::{ProcParam, ProcType, Procedure, call_procedure};

/// Open a source for a database connection.
pub async fn source(kind: &ConnKind, url: &str) -> Result<Arc<dyn Source>> {
    match kind {
        ConnKind::Sqlite(path) => Ok(Arc::new(sqlite::SqliteSource::new(path.clone()))),
        ConnKind::Postgres => Ok(Arc::new(postgres::PgSource::new(url))),
        ConnKind::Mysql => Ok(Arc::new(mysql::MySource::new(url))),
        ConnKind::Mssql => Err(Error::config(
            "connection",
            "reading from mssql:// is not supported yet",
        )),
        ConnKind::File(_) | ConnKind::Azure { .. } | ConnKind::S3 { .. } => Err(Error::config(
            "connection",
            "a file or object-store connection cannot be a source",
        )),
    }
}

/// Start logging in to a database connection now, for this process's next
/// connection to it (see `util::Warm`): `highwater run` calls it for the
/// streams it starts with, before it opens the state store. Files and
/// SQLite need no login: nothing.
pub fn prewarm(kind: &ConnKind, url: &str) {
    match kind {
        ConnKind::Postgres => postgres::prewarm(url),
        ConnKind::Mysql => mysql::prewarm(url),
        _ => {}
    }
}

/// Open a sink for a target connection.
pub async fn sink(kind: &ConnKind, url: &str) -> Result<Arc<dyn Sink>> {
    match kind {
        ConnKind::File(_) | ConnKind::Azure { .. } | ConnKind::S3 { .. } => {
            Ok(Arc::new(files::FileSink::open(kind)?))
        }
        ConnKind::Sqlite(path) => Ok(Arc::new(sqlite::SqliteSink::new(path.clone()))),
        ConnKind::Postgres => Ok(Arc::new(postgres::PgSink::new(url))),
        ConnKind::Mysql => Ok(Arc::new(mysql::MySink::new(url))),
        ConnKind::Mssql => Err(Error::config(
            "connection",
            "writing to mssql:// is not supported yet; write to sqlite://, postgres://, mysql:// or a file target",
        )),
    }
}

/// The table a Data Factory dataset names, as the database spells it. Data
/// Factory's SQL Server matches names ignoring case; PostgreSQL and MariaDB
/// on Linux do not, and a sink would create `"ORDERS"` beside `orders`. So:
/// the exact name when it exists (or nothing matches: the sink creates
/// it), else the one table that matches ignoring case; several is an error.
pub async fn resolve_table(kind: &ConnKind, url: &str, name: &str) -> Result<String> {
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, name),
    };
    let found = match kind {
        ConnKind::Postgres => postgres::tables_like(url, schema, table).await?,
        ConnKind::Mysql => mysql::tables_like(url, schema, table).await?,
        _ => return Ok(name.to_string()),
    };
    let exact = |(s, t): &(String, String)| t == table && schema.is_none_or(|x| x == s);
    if found.is_empty() || found.iter().any(exact) {
        return Ok(name.to_string());
    }
    match found.as_slice() {
        [(s, t)] => Ok(match schema {
            Some(_) => format!("{s}.{t}"),
            None => t.clone(),
        }),
        _ => Err(Error::config(
            format!("table {name}"),
            format!(
                "several tables match it ignoring case ({}); name one exactly",
                found
                    .iter()
                    .map(|(s, t)| format!("{s}.{t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// `highwater verify`'s table checksum inside the database: the row count
/// and the sum of a 64-bit hash of each row's text, `columns` in order.
/// `None` for a backend without one (SQLite: its rows are local, read
/// row by row). Two answers compare only between the same backend (each
/// renders values its own way); unequal answers do not say which rows
/// differ, only that some may.
pub async fn checksum(
    kind: &ConnKind,
    url: &str,
    rel: &highwater_core::Relation,
    columns: &[String],
) -> Result<Option<(i64, String)>> {
    match kind {
        ConnKind::Postgres => postgres::checksum(url, rel, columns).await.map(Some),
        ConnKind::Mysql => mysql::checksum(url, rel, columns).await.map(Some),
        _ => Ok(None),
    }
}

/// `highwater verify`'s bisection: checksums of integer key ranges, or of
/// buckets of the key's hash, computed inside one database, over one
/// connection. PostgreSQL and
/// MariaDB/MySQL; two answers compare only between the same backend.
pub enum KeyChecksums {
    Postgres(postgres::KeyChecksums),
    Mysql(mysql::KeyChecksums),
}

impl KeyChecksums {
    /// `None` for a backend without key-range checksums (SQLite: its rows
    /// are local, read row by row).
    pub async fn open(kind: &ConnKind, url: &str) -> Result<Option<KeyChecksums>> {
        Ok(match kind {
            ConnKind::Postgres => Some(KeyChecksums::Postgres(
                postgres::KeyChecksums::open(url).await?,
            )),
            ConnKind::Mysql => Some(KeyChecksums::Mysql(mysql::KeyChecksums::open(url).await?)),
            _ => None,
        })
    }

    /// The smallest and greatest value of the integer column `key` in `rel`.
    pub async fn bounds(
        &self,
        rel: &highwater_core::Relation,
        key: &str,
    ) -> Result<Option<(i64, i64)>> {
        match self {
            KeyChecksums::Postgres(c) => c.bounds(rel, key).await,
            KeyChecksums::Mysql(c) => c.bounds(rel, key).await,
        }
    }

    /// Per bucket of `step` keys of `[lo, hi]` that holds rows: its number
    /// (from `lo`), row count and sum of row hashes (as [`checksum`]).
    pub async fn buckets(
        &self,
        rel: &highwater_core::Relation,
        columns: &[String],
        key: &str,
        range: (i64, i64),
        step: i64,
    ) -> Result<Vec<(i64, i64, String)>> {
        match self {
            KeyChecksums::Postgres(c) => c.buckets(rel, columns, key, range, step).await,
            KeyChecksums::Mysql(c) => c.buckets(rel, columns, key, range, step).await,
        }
    }

    /// Per bucket of the hash of the key's text, `0..parts`, that holds
    /// rows: its number, row count and sum of row hashes. Any key.
    pub async fn hash_buckets(
        &self,
        rel: &highwater_core::Relation,
        columns: &[String],
        key: &[String],
        parts: i64,
    ) -> Result<Vec<(i64, i64, String)>> {
        match self {
            KeyChecksums::Postgres(c) => c.hash_buckets(rel, columns, key, parts).await,
            KeyChecksums::Mysql(c) => c.hash_buckets(rel, columns, key, parts).await,
        }
    }

    /// `rel` restricted to the rows whose key hashes into one of `buckets`
    /// (of `parts`, as [`KeyChecksums::hash_buckets`]).
    pub fn key_buckets(
        &self,
        rel: &highwater_core::Relation,
        key: &[String],
        parts: i64,
        buckets: &[i64],
    ) -> highwater_core::Relation {
        match self {
            KeyChecksums::Postgres(_) => postgres::key_buckets(rel, key, parts, buckets),
            KeyChecksums::Mysql(_) => mysql::key_buckets(rel, key, parts, buckets),
        }
    }

    /// `rel` restricted to the keys in `ranges` (each `[from, to]`) of the
    /// integer column `key`, as this backend's SQL.
    pub fn key_ranges(
        &self,
        rel: &highwater_core::Relation,
        key: &str,
        ranges: &[(i64, i64)],
    ) -> highwater_core::Relation {
        match self {
            KeyChecksums::Postgres(_) => postgres::key_ranges(rel, key, ranges),
            KeyChecksums::Mysql(_) => mysql::key_ranges(rel, key, ranges),
        }
    }
}

/// "Test connection": reach the server or folder and report what was found.
pub async fn check(kind: &ConnKind, url: &str) -> Result<String> {
    match kind {
        ConnKind::Sqlite(path) => sqlite::check(path),
        ConnKind::Postgres => postgres::check(url).await,
        ConnKind::Mysql => mysql::check(url).await,
        _ if kind.is_account() => Ok(
            "a whole storage account: Data Factory datasets name their container (nothing to test without one)"
                .into(),
        ),
        ConnKind::File(_) | ConnKind::Azure { .. } | ConnKind::S3 { .. } => {
            files::FileSink::open(kind)?.check().await
        }
        ConnKind::Mssql => Err(Error::config(
            "connection",
            "this backend is not supported yet",
        )),
    }
}

/// How a source's cursor holds time, for [`window_bounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CursorTime {
    /// An instant (timestamptz, MariaDB TIMESTAMP in a UTC session).
    Zoned,
    /// Wall-clock time in the writers' zone.
    Wall,
    /// A calendar day.
    Date,
}

/// The bounds of a window read, as text the source compares its cursor
/// with: the instants in UTC for a zoned cursor; else the wall-clock
/// times (days for a date cursor, which needs windows of whole days) in
/// the writers' zone (`offset_minutes` east of UTC; UTC when `None`).
pub(crate) fn window_bounds(
    stream: &str,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    offset_minutes: Option<i32>,
    time: CursorTime,
) -> highwater_core::Result<(String, String)> {
    use chrono::Timelike;
    let shift = match time {
        CursorTime::Zoned => chrono::Duration::zero(),
        _ => chrono::Duration::minutes(i64::from(offset_minutes.unwrap_or(0))),
    };
    let (lo, hi) = (start + shift, end + shift);
    if time == CursorTime::Date
        && (lo.num_seconds_from_midnight() != 0 || hi.num_seconds_from_midnight() != 0)
    {
        return Err(highwater_core::Error::config(
            format!("stream {stream}"),
            "window: a date cursor needs windows of whole days (size in days, start at midnight)",
        ));
    }
    let format = match time {
        CursorTime::Date => "%Y-%m-%d",
        _ => "%Y-%m-%d %H:%M:%S%.6f",
    };
    Ok((lo.format(format).to_string(), hi.format(format).to_string()))
}
