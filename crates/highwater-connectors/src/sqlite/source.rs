//! [`SqliteSource`]: describe and read in one read transaction.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use highwater_core::error::Cause;
use highwater_core::{
    CURSOR_COLUMN, CursorValue, Delta, Error, Extract, Lag, ReadRequest, Relation, Result, Source,
    TableInfo,
};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::change_tracking;
use super::types::{Col, Kind};
use crate::util::{batch_channel, quote_ident};

const BACKEND: &str = "sqlite";

/// Reads tables of one SQLite file.
pub struct SqliteSource {
    path: PathBuf,
}

impl SqliteSource {
    pub fn new(path: PathBuf) -> Self {
        SqliteSource { path }
    }
}

pub(crate) fn open(path: &Path) -> Result<Connection> {
    if !path.exists() {
        return Err(Error::Connection {
            target: format!("sqlite://{}", path.display()),
            message: "the file does not exist".into(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Connection {
        target: format!("sqlite://{}", path.display()),
        message: e.to_string(),
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| Error::source(BACKEND, e))?;
    Ok(conn)
}

fn relation_sql(rel: &Relation) -> String {
    match rel {
        Relation::Table {
            schema: Some(s),
            name,
        } => format!("{}.{}", quote_ident(s, '"'), quote_ident(name, '"')),
        Relation::Table { schema: None, name } => quote_ident(name, '"'),
        Relation::Query(q) => highwater_core::source::subquery(q),
    }
}

fn cursor_sql(cols: &[String]) -> String {
    let quoted: Vec<String> = cols.iter().map(|c| quote_ident(c, '"')).collect();
    if quoted.len() == 1 {
        quoted[0].clone()
    } else {
        format!("COALESCE({})", quoted.join(", "))
    }
}

fn sql_err(rel: &Relation, e: rusqlite::Error) -> Error {
    super::errors::source_at(rel, e)
}

/// Column names and conversion kinds of a relation.
fn describe_conn(conn: &Connection, rel: &Relation) -> Result<Vec<(String, Kind)>> {
    let sql = format!("SELECT * FROM {} LIMIT 0", relation_sql(rel));
    let st = conn.prepare(&sql).map_err(|e| {
        if super::errors::table_exists(conn, rel) == Some(false) {
            Error::missing_relation(BACKEND, format!("table {rel} not found ({e})"))
        } else {
            sql_err(rel, e)
        }
    })?;
    Ok(st
        .columns()
        .map(|c| (c.name().to_string(), Kind::from_decl(c.decl_type())))
        .collect())
}

fn schema_of(cols: &[(String, Kind)]) -> Schema {
    Schema::new(
        cols.iter()
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect::<Vec<_>>(),
    )
}

fn to_cursor(v: Value, column: &str) -> Result<Option<CursorValue>> {
    match v {
        Value::Null => Ok(None),
        Value::Integer(i) => Ok(Some(CursorValue::Int(i))),
        Value::Text(t) => Ok(Some(CursorValue::Text(t))),
        other => Err(Error::data(format!(
            "cursor column {column} holds {:?} values; use an integer or a text timestamp",
            other.data_type()
        ))),
    }
}

fn bind(v: &CursorValue) -> Value {
    match v {
        CursorValue::Int(i) => Value::Integer(*i),
        other => Value::Text(other.to_sql_text()),
    }
}

/// The `chrono` format of the text timestamp `t` (a date, or a date and
/// time with `' '` or `'T'`), at its own precision but never finer than
/// whole seconds; `None` when `t` is no timestamp. Text compares as text:
/// a bound written in this shape, truncated, sorts at or below every value
/// written at or after it in the same shape or a finer one.
fn text_shape(t: &str) -> Option<String> {
    let b = t.as_bytes();
    chrono::NaiveDate::parse_from_str(t.get(..10)?, "%Y-%m-%d").ok()?;
    if t.len() == 10 {
        return Some("%Y-%m-%d".into());
    }
    let sep = match b[10] {
        b'T' => "T",
        b' ' => " ",
        _ => return None,
    };
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(digits(11..13) && b.get(13) == Some(&b':') && digits(14..16)) {
        return None;
    }
    if b.get(16) == Some(&b':') && digits(17..19) {
        Some(format!("%Y-%m-%d{sep}%H:%M:%S"))
    } else {
        Some(format!("%Y-%m-%d{sep}%H:%M"))
    }
}

/// The greatest bound a text cursor may reach: `limit` in the shape of
/// `t`, truncated. `None` when `t` is no timestamp.
fn text_cap(t: &str, limit: DateTime<Utc>) -> Option<String> {
    text_shape(t).map(|f| limit.format(&f).to_string())
}

/// How long a watermark read waits for SQLite's write lock to take the
/// late-commit cap: 10 s, or half the idle timeout
/// (`HIGHWATER_IDLE_TIMEOUT`) when that is shorter, so a run never hangs.
fn lock_wait() -> Duration {
    let idle = std::env::var("HIGHWATER_IDLE_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(600);
    Duration::from_millis((idle * 500).min(10_000))
}

/// The late-commit cap of a watermark read, taken before its snapshot
/// (see `docs/decisions.md`, "Late commits on SQLite").
#[derive(Debug)]
enum Cap {
    /// Read while this run held the write lock: no write transaction was
    /// open, so every transaction the later snapshot misses began after
    /// this instant and writes `'now'` values at or above it.
    Locked(DateTime<Utc>),
    /// A write transaction held the lock for the whole wait; it has been
    /// open since before this instant (when the wait began).
    Busy(DateTime<Utc>),
    /// The lock cannot be taken (why); the cap is only "now".
    Unlocked(DateTime<Utc>, String),
}

/// Take the write lock (`BEGIN IMMEDIATE`) on a second connection, waiting
/// at most `wait`, read the time, and let go (`ROLLBACK`: nothing is
/// written). `flags` open that connection (read-write, never create).
fn take_cap(path: &Path, flags: OpenFlags, wait: Duration) -> Result<Cap> {
    let place = format!("sqlite://{}", path.display());
    let unlocked = |why: String| Ok(Cap::Unlocked(Utc::now(), why));
    let denied = |e: &rusqlite::Error| {
        matches!(super::errors::cause(e), Some(Cause::Permission))
            || e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)
    };
    let conn = match Connection::open_with_flags(path, flags) {
        Ok(c) => c,
        Err(e) if denied(&e) => return unlocked(e.to_string()),
        Err(e) => return Err(super::errors::source_at(place, e)),
    };
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) {
        return unlocked("the file is read-only for this process".into());
    }
    conn.busy_timeout(wait)
        .map_err(|e| super::errors::source_at(&place, e))?;
    let began = Utc::now();
    match conn.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => {
            let now = Utc::now();
            conn.execute_batch("ROLLBACK")
                .map_err(|e| super::errors::source_at(&place, e))?;
            Ok(Cap::Locked(now))
        }
        Err(e) if super::errors::cause(&e) == Some(Cause::Transient) => Ok(Cap::Busy(began)),
        Err(e) if denied(&e) => unlocked(e.to_string()),
        Err(e) => Err(super::errors::source_at(place, e)),
    }
}

/// The upper bound of a watermark read for the newest value `newest`:
/// text timestamps at most the cap less a duration `lag:` (in their own
/// shape), integers less a numeric `lag:`. A busy lock keeps the previous
/// watermark `prev` (safe by induction: the open transaction began after
/// the run that set it).
fn upper_bound(
    newest: CursorValue,
    lag: Option<Lag>,
    cap: &Cap,
    prev: Option<&CursorValue>,
) -> CursorValue {
    if let (Cap::Busy(_), Some(p)) = (cap, prev)
        && newest.compare(p) == Some(std::cmp::Ordering::Greater)
    {
        return p.clone();
    }
    match (newest, lag) {
        (CursorValue::Int(i), Some(Lag::Units(n))) => CursorValue::Int(i.saturating_sub(n)),
        (CursorValue::Text(t), lag) => {
            let at = match cap {
                Cap::Locked(t) | Cap::Busy(t) | Cap::Unlocked(t, _) => *t,
            };
            let us = match lag {
                Some(Lag::Micros(us)) => us,
                _ => 0,
            };
            let limit = at
                .checked_sub_signed(chrono::Duration::microseconds(us))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            match text_cap(&t, limit) {
                Some(c) if c < t => CursorValue::Text(c),
                _ => CursorValue::Text(t),
            }
        }
        (to, _) => to,
    }
}

struct Header {
    schema: SchemaRef,
    to: Option<CursorValue>,
    null_rows: u64,
    version_to: Option<highwater_core::ChangeVersion>,
    full_reload: bool,
    held_back: u64,
    notes: Vec<String>,
}

fn run_read(
    path: PathBuf,
    req: ReadRequest,
    header_tx: oneshot::Sender<Result<Header>>,
    tx: mpsc::Sender<Result<RecordBatch>>,
) {
    // Any error before the header goes to the header; after, into the stream.
    let mut header_tx = Some(header_tx);
    let fail = |header_tx: &mut Option<oneshot::Sender<Result<Header>>>, e: Error| {
        if let Some(h) = header_tx.take() {
            let _ = h.send(Err(e));
        } else {
            let _ = tx.blocking_send(Err(e));
        }
    };
    let result = (|| -> Result<()> {
        let rel = &req.relation;
        // Change tracking: set up and prune before the snapshot.
        let mut notes = match &req.delta {
            Delta::ChangeTracking { retention_secs, .. } => {
                change_tracking::prepare(&path, rel, &req.primary_key, *retention_secs)?
            }
            _ => vec![],
        };
        let mut version_to = None;
        let mut full_reload = !matches!(&req.delta, Delta::Watermark { after: Some(_), .. });
        let mut held_back = 0;
        let conn = open(&path)?;
        // The late-commit cap, before the snapshot (the read connection is
        // already open, so closing the lock's connection checkpoints nothing).
        let cap = match &req.delta {
            Delta::Watermark { .. } => Some(take_cap(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                lock_wait(),
            )?),
            _ => None,
        };
        conn.execute_batch("BEGIN").map_err(|e| sql_err(rel, e))?;
        let cols = describe_conn(&conn, rel)?;
        let mut kinds: Vec<Kind> = cols.iter().map(|c| c.1).collect();
        let mut fields: Vec<Field> = cols
            .iter()
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect();
        let (sql, params, to, null_rows): (String, Vec<Value>, Option<CursorValue>, u64) =
            match &req.delta {
                Delta::Full => (
                    format!("SELECT * FROM {}", relation_sql(rel)),
                    vec![],
                    None,
                    0,
                ),
                Delta::Part(_) => return Err(crate::util::no_shared_parts(&req.stream)),
                Delta::Window {
                    cursor,
                    start,
                    end,
                    writer_offset_minutes,
                } => {
                    let expr = cursor_sql(cursor);
                    // Text timestamps compare as text: the bounds take the
                    // shape of the values stored.
                    let sample: Option<Value> = conn
                        .query_row(
                            &format!(
                                "SELECT {expr} FROM {} WHERE {expr} IS NOT NULL LIMIT 1",
                                relation_sql(rel)
                            ),
                            [],
                            |r| r.get(0),
                        )
                        .map(Some)
                        .or_else(|e| match e {
                            rusqlite::Error::QueryReturnedNoRows => Ok(None),
                            e => Err(e),
                        })
                        .map_err(|e| sql_err(rel, e))?;
                    let shape = match &sample {
                        None => None,
                        Some(Value::Text(t)) => Some(text_shape(t.as_str()).ok_or_else(|| {
                            Error::config(
                                format!("stream {}", req.stream),
                                format!(
                                    "window: cursor {} holds {t:?}, not a timestamp as text (YYYY-MM-DD[ HH:MM[:SS]])",
                                    cursor.join(", ")
                                ),
                            )
                        })?),
                        Some(_) => {
                            return Err(Error::config(
                                format!("stream {}", req.stream),
                                format!(
                                    "window: needs a time cursor (timestamps as text); {} holds numbers",
                                    cursor.join(", ")
                                ),
                            ));
                        }
                    };
                    let time = match shape.as_deref() {
                        Some("%Y-%m-%d") => crate::CursorTime::Date,
                        _ => crate::CursorTime::Wall,
                    };
                    let (lo, hi) = crate::window_bounds(
                        &req.stream,
                        *start,
                        *end,
                        *writer_offset_minutes,
                        time,
                    )?;
                    let shaped = |b: String| match shape.as_deref() {
                        Some(f) if f != "%Y-%m-%d" => {
                            chrono::NaiveDateTime::parse_from_str(&b, "%Y-%m-%d %H:%M:%S%.6f")
                                .map(|t| t.format(f).to_string())
                                .unwrap_or(b)
                        }
                        _ => b,
                    };
                    full_reload = false;
                    (
                        format!(
                            "SELECT * FROM {} WHERE {expr} >= ?1 AND {expr} < ?2",
                            relation_sql(rel)
                        ),
                        vec![Value::Text(shaped(lo)), Value::Text(shaped(hi))],
                        None,
                        0,
                    )
                }
                Delta::Watermark {
                    cursor,
                    after,
                    lag,
                    // SQLite text timestamps are taken as UTC (see decisions).
                    writer_offset_minutes: _,
                } => {
                    let expr = cursor_sql(cursor);
                    let (max, nulls): (Value, i64) = conn
                    .query_row(
                        &format!(
                            "SELECT max({expr}), coalesce(sum(CASE WHEN {expr} IS NULL THEN 1 ELSE 0 END), 0) FROM {}",
                            relation_sql(rel)
                        ),
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(|e| sql_err(rel, e))?;
                    let newest = to_cursor(max, &cursor.join(", "))?;
                    let now = Utc::now();
                    let cap = cap.unwrap_or(Cap::Locked(now));
                    let prev = after.as_ref().and_then(|a| a.value.as_ref());
                    let file = path.display();
                    let mut open_since = None;
                    match &cap {
                        Cap::Busy(_) if after.is_none() => {
                            return Err(Error::source(
                                BACKEND,
                                format!(
                                    "sqlite://{file}: a write transaction held the write lock for more than {}s; \
                                     the first run of stream {} needs it for a moment to bound late commits \
                                     (run again when that transaction has ended)",
                                    lock_wait().as_secs_f32(),
                                    req.stream
                                ),
                            )
                            .with_cause(Cause::Transient));
                        }
                        Cap::Busy(since) => {
                            open_since = Some(*since);
                            notes.push(format!(
                                "warning: a write transaction held the write lock of sqlite://{file} for more than {}s \
                                 (open since before this run): the upper bound stays at the previous watermark",
                                lock_wait().as_secs_f32()
                            ));
                        }
                        Cap::Unlocked(_, why) => notes.push(format!(
                            "warning: cannot take the write lock of sqlite://{file} ({why}), so a write transaction \
                             open during this run is not waited for: rows it commits later with a {} below the new \
                             watermark are missed{}",
                            cursor.join("/"),
                            match lag {
                                Some(Lag::Micros(us)) => format!(
                                    " unless older than lag: {}",
                                    crate::held_back::duration_text(*us)
                                ),
                                Some(Lag::Units(n)) => format!(" unless lag: {n} covers them"),
                                None => "; set `lag:` to hold the bound back".into(),
                            }
                        )),
                        Cap::Locked(_) => {}
                    }
                    let max = match (&cap, prev) {
                        // Busy, and no value to stay at: nothing moves.
                        (Cap::Busy(_), None) => None,
                        _ => newest.clone().map(|m| upper_bound(m, *lag, &cap, prev)),
                    };
                    // Rows above the bound (only `lag:` holds it back here).
                    let lower = max
                        .clone()
                        .or_else(|| after.as_ref().and_then(|a| a.value.clone()));
                    if let (Some(n), Some(l)) = (&newest, &lower)
                        && n.compare(l) == Some(std::cmp::Ordering::Greater)
                    {
                        // Values after now (to the microsecond) are in the future.
                        let future = match l {
                            CursorValue::Text(t) => match text_shape(t) {
                                Some(f) if f.ends_with("%S") => {
                                    Value::Text(now.format(&format!("{f}%.6f")).to_string())
                                }
                                Some(f) => Value::Text(now.format(&f).to_string()),
                                None => Value::Null,
                            },
                            _ => Value::Null,
                        };
                        let (rows, future_rows, top): (i64, i64, Value) = conn
                            .query_row(
                                &format!(
                                    "SELECT count(*), coalesce(sum({expr} > ?1), 0), max({expr}) FROM {} WHERE {expr} > ?2",
                                    relation_sql(rel)
                                ),
                                [future, bind(l)],
                                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                            )
                            .map_err(|e| sql_err(rel, e))?;
                        let counted = crate::held_back::Counted {
                            rows: rows.max(0) as u64,
                            future_rows: future_rows.max(0) as u64,
                            newest: to_cursor(top, &cursor.join(", "))?,
                        };
                        let why = crate::held_back::Why {
                            lag: *lag,
                            open_since,
                            ..Default::default()
                        };
                        if let Some(n) = crate::held_back::note(
                            &cursor.join("/"),
                            &l.to_string(),
                            now,
                            &why,
                            &counted,
                        ) {
                            notes.push(n);
                            held_back = counted.rows;
                        }
                    }
                    let cursor_kind = match &max {
                        Some(CursorValue::Int(_)) => Kind::Int,
                        Some(_) => Kind::Text,
                        None => match cols.iter().find(|c| c.0 == cursor[0]).map(|c| c.1) {
                            Some(Kind::Int) => Kind::Int,
                            _ => Kind::Text,
                        },
                    };
                    kinds.push(cursor_kind);
                    fields.push(Field::new(CURSOR_COLUMN, cursor_kind.data_type(), true));
                    let base = format!(
                        "SELECT *, {expr} AS {} FROM {}",
                        quote_ident(CURSOR_COLUMN, '"'),
                        relation_sql(rel)
                    );
                    let first = after.is_none();
                    let lo = after.as_ref().and_then(|a| a.value.as_ref());
                    let nulls = nulls as u64;
                    match (&max, lo) {
                        (None, _) if first => {
                            (format!("{base} WHERE {expr} IS NULL"), vec![], None, nulls)
                        }
                        (None, _) => (format!("{base} WHERE 0"), vec![], None, nulls),
                        (Some(hi), None) if first => (
                            format!("{base} WHERE {expr} <= ?1 OR {expr} IS NULL"),
                            vec![bind(hi)],
                            max.clone(),
                            nulls,
                        ),
                        (Some(hi), None) => (
                            format!("{base} WHERE {expr} <= ?1"),
                            vec![bind(hi)],
                            max.clone(),
                            nulls,
                        ),
                        (Some(hi), Some(lo)) => (
                            format!("{base} WHERE {expr} >= ?1 AND {expr} <= ?2"),
                            vec![bind(lo), bind(hi)],
                            max.clone(),
                            nulls,
                        ),
                    }
                }
                Delta::Cdc { .. } => {
                    return Err(Error::config(
                        format!("stream {}", req.stream),
                        "mode cdc is supported on PostgreSQL and MariaDB sources only",
                    ));
                }
                Delta::ChangeTracking { after, .. } => {
                    let plan =
                        change_tracking::plan(&conn, rel, &cols, &req.primary_key, after.as_ref())?;
                    kinds.push(Kind::Int);
                    kinds.push(Kind::Text);
                    let out = crate::change_tracking::output_schema(std::mem::take(&mut fields));
                    fields = out.fields().iter().map(|f| f.as_ref().clone()).collect();
                    version_to = Some(plan.version_to);
                    full_reload = plan.full_reload;
                    notes.extend(plan.notes);
                    (plan.sql, plan.params, None, 0)
                }
            };
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        if let Some(h) = header_tx.take() {
            let _ = h.send(Ok(Header {
                schema: schema.clone(),
                to,
                null_rows,
                version_to,
                full_reload,
                held_back,
                notes,
            }));
        }
        let mut st = conn.prepare(&sql).map_err(|e| sql_err(rel, e))?;
        let mut rows = st
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(|e| sql_err(rel, e))?;
        let n = kinds.len();
        let cap = req.batch_size.max(1);
        let mut builders: Vec<Col> = kinds.iter().map(|k| Col::new(*k, cap)).collect();
        let mut count = 0usize;
        let mut bytes = 0usize;
        let mut total = 0u64;
        while let Some(row) = rows.next().map_err(|e| sql_err(rel, e))? {
            for (i, b) in builders.iter_mut().enumerate().take(n) {
                let v: ValueRef<'_> = row.get_ref(i).map_err(|e| sql_err(rel, e))?;
                bytes += match v {
                    ValueRef::Text(t) | ValueRef::Blob(t) => t.len(),
                    _ => 8,
                };
                b.push(v).map_err(|m| {
                    Error::data(format!(
                        "{rel}: column {} row {}: {m}",
                        schema.field(i).name(),
                        total + 1
                    ))
                })?;
            }
            count += 1;
            total += 1;
            if count == cap || bytes >= crate::util::BATCH_BYTES {
                bytes = 0;
                let cols = builders.iter_mut().map(Col::finish).collect();
                let batch = RecordBatch::try_new(schema.clone(), cols)
                    .map_err(|e| Error::source(BACKEND, e))?;
                if tx.blocking_send(Ok(batch)).is_err() {
                    return Ok(()); // The reader went away.
                }
                count = 0;
            }
        }
        if count > 0 {
            let cols = builders.iter_mut().map(Col::finish).collect();
            let batch = RecordBatch::try_new(schema.clone(), cols)
                .map_err(|e| Error::source(BACKEND, e))?;
            let _ = tx.blocking_send(Ok(batch));
        }
        drop(rows);
        drop(st);
        let _ = conn.execute_batch("COMMIT");
        Ok(())
    })();
    if let Err(e) = result {
        fail(&mut header_tx, e);
    }
}

#[async_trait]
impl Source for SqliteSource {
    async fn describe(&self, relation: &Relation) -> Result<TableInfo> {
        let path = self.path.clone();
        let rel = relation.clone();
        let cols = tokio::task::spawn_blocking(move || {
            let conn = open(&path)?;
            describe_conn(&conn, &rel)
        })
        .await
        .map_err(|e| Error::source(BACKEND, e))??;
        Ok(TableInfo {
            schema: Arc::new(schema_of(&cols)),
        })
    }

    async fn primary_key(&self, relation: &Relation) -> Result<Vec<String>> {
        let Relation::Table { name, .. } = relation else {
            return Ok(vec![]);
        };
        let path = self.path.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open(&path)?;
            Ok(primary_key(&conn, &name).unwrap_or_default())
        })
        .await
        .map_err(|e| Error::source(BACKEND, e))?
    }

    async fn newest(&self, relation: &Relation, cursor: &[String]) -> Result<Option<CursorValue>> {
        let path = self.path.clone();
        let rel = relation.clone();
        let cursor = cursor.to_vec();
        tokio::task::spawn_blocking(move || {
            let conn = open(&path)?;
            let expr = cursor_sql(&cursor);
            let max: Value = conn
                .query_row(
                    &format!("SELECT max({expr}) FROM {}", relation_sql(&rel)),
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| sql_err(&rel, e))?;
            to_cursor(max, &cursor.join(", "))
        })
        .await
        .map_err(|e| Error::source(BACKEND, e))?
    }

    async fn read(&self, req: &ReadRequest) -> Result<Extract> {
        let (header_tx, header_rx) = oneshot::channel();
        let (tx, batches) = batch_channel(Arc::new(Schema::empty()));
        let path = self.path.clone();
        let req2 = req.clone();
        tokio::task::spawn_blocking(move || run_read(path, req2, header_tx, tx));
        let header = header_rx
            .await
            .map_err(|_| Error::source(BACKEND, "reader thread stopped"))??;
        let batches = highwater_core::StreamAdapter::new(header.schema.clone(), batches).boxed();
        Ok(Extract {
            schema: header.schema,
            to: header.to,
            version_to: header.version_to,
            full_reload: header.full_reload,
            null_rows: header.null_rows,
            held_back: header.held_back,
            notes: header.notes,
            batches,
        })
    }
}

fn primary_key(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut st =
        conn.prepare("SELECT name, pk FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")?;
    let rows = st.query_map([table], |r| r.get::<_, String>(0))?;
    rows.collect()
}

#[allow(dead_code)]
fn _assert_types(_: DataType) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap()
            .and_utc()
    }

    #[test]
    fn text_caps_take_the_shape_of_the_column_truncated() {
        let now = at("2024-05-06 07:08:09.765");
        let cap = |t: &str| text_cap(t, now);
        assert_eq!(
            cap("2030-01-01 00:00:00.123").unwrap(),
            "2024-05-06 07:08:09"
        );
        assert_eq!(cap("2030-01-01T00:00:00").unwrap(), "2024-05-06T07:08:09");
        assert_eq!(cap("2030-01-01T00:00:00Z").unwrap(), "2024-05-06T07:08:09");
        assert_eq!(cap("2030-01-01 00:00").unwrap(), "2024-05-06 07:08");
        assert_eq!(cap("2030-01-01").unwrap(), "2024-05-06");
        for no in [
            "",
            "abc",
            "2030-01-01x",
            "2030-13-01",
            "1700000000",
            "2030-01-01 0a:00",
        ] {
            assert_eq!(cap(no), None, "{no}");
        }
        // A whole-second value written at the cap sorts at or above it;
        // one written with a fraction in the same second above it too.
        assert!("2024-05-06 07:08:09" >= cap("2030-01-01 00:00:00.1").unwrap().as_str());
    }

    #[test]
    fn upper_bounds_stop_at_the_cap_lag_or_previous_watermark() {
        let now = at("2024-05-06 07:08:09.765");
        let text = |t: &str| CursorValue::Text(t.into());
        let locked = Cap::Locked(now);
        let b = |v, lag, cap: &Cap, prev: Option<&CursorValue>| upper_bound(v, lag, cap, prev);
        // Future values stop at the cap; older ones are the bound.
        assert_eq!(
            b(text("2024-05-07 00:00:00"), None, &locked, None),
            text("2024-05-06 07:08:09")
        );
        assert_eq!(
            b(text("2024-05-06 07:08:09.5"), None, &locked, None),
            text("2024-05-06 07:08:09")
        );
        assert_eq!(
            b(text("2024-05-06 07:08:08.5"), None, &locked, None),
            text("2024-05-06 07:08:08.5")
        );
        assert_eq!(
            b(text("2024-05-06 07:08:09"), None, &locked, None),
            text("2024-05-06 07:08:09")
        );
        assert_eq!(
            b(
                text("2024-05-07 00:00:00"),
                Some(Lag::Micros(60_000_000)),
                &locked,
                None
            ),
            text("2024-05-06 07:07:09")
        );
        // Not a timestamp: no time cap.
        assert_eq!(b(text("zzz"), None, &locked, None), text("zzz"));
        // Integers: only a numeric lag.
        assert_eq!(
            b(CursorValue::Int(10), Some(Lag::Units(3)), &locked, None),
            CursorValue::Int(7)
        );
        assert_eq!(
            b(CursorValue::Int(10), None, &locked, None),
            CursorValue::Int(10)
        );
        // A busy lock keeps the previous watermark.
        let busy = Cap::Busy(now);
        let prev = text("2024-05-01 00:00:00");
        assert_eq!(
            b(text("2024-05-06 00:00:00"), None, &busy, Some(&prev)),
            prev
        );
        assert_eq!(
            b(
                CursorValue::Int(10),
                None,
                &busy,
                Some(&CursorValue::Int(4))
            ),
            CursorValue::Int(4)
        );
        let unlocked = Cap::Unlocked(now, "read-only".into());
        assert_eq!(
            b(text("2024-05-07 00:00:00"), None, &unlocked, None),
            text("2024-05-06 07:08:09")
        );
    }

    #[test]
    fn the_cap_waits_a_bounded_time_for_the_write_lock_and_falls_back_when_read_only() {
        let dir = std::env::temp_dir().join(format!("hw_cap_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cap.db");
        let _ = std::fs::remove_file(&path);
        let w = Connection::open(&path).unwrap();
        w.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (a)")
            .unwrap();
        let rw = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let wait = Duration::from_millis(300);
        let before = Utc::now();
        match take_cap(&path, rw, wait).unwrap() {
            Cap::Locked(t) => assert!(t >= before),
            other => panic!("{other:?}"),
        }
        // The lock was let go: a writer gets it at once.
        w.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
            .unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(take_cap(&path, rw, wait).unwrap(), Cap::Busy(_)));
        assert!(started.elapsed() < Duration::from_secs(2));
        let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        match take_cap(&path, ro, wait).unwrap() {
            Cap::Unlocked(_, why) => assert!(why.contains("read-only"), "{why}"),
            other => panic!("{other:?}"),
        }
        w.execute_batch("COMMIT").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
