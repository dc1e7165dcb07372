//! [`MySource`]: describe, and read one delta in one consistent snapshot.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use futures::StreamExt;
use highwater_core::{
    CURSOR_COLUMN, CursorValue, Delta, Error, Extract, Lag, ReadRequest, Relation, Result, Source,
    TableInfo, WatermarkPosition,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

use super::change_tracking;
use super::partition;
use super::types::{Col, MyKind};
use crate::util::{batch_channel, emit, quote_ident};

const BACKEND: &str = "mysql";

/// Reads from one MariaDB/MySQL database; one connection per read.
pub struct MySource {
    url: String,
}

impl MySource {
    pub fn new(url: &str) -> Self {
        MySource {
            url: url.to_string(),
        }
    }
}

pub(super) fn my_err(e: mysql_async::Error) -> Error {
    super::errors::source(e)
}

pub(super) use super::connect;

pub(super) fn q(s: &str) -> String {
    quote_ident(s, '`')
}

pub(super) fn relation_sql(rel: &Relation) -> String {
    match rel {
        Relation::Table {
            schema: Some(s),
            name,
        } => format!("{}.{}", q(s), q(name)),
        Relation::Table { schema: None, name } => q(name),
        Relation::Query(qs) => highwater_core::source::subquery(qs),
    }
}

/// Column names and kinds of a relation.
pub(super) async fn describe_conn(
    conn: &mut Conn,
    rel: &Relation,
) -> Result<Vec<(String, MyKind)>> {
    let st = conn
        .prep(format!("SELECT * FROM {} LIMIT 0", relation_sql(rel)))
        .await
        .map_err(|e| {
            let missing = matches!(&e, mysql_async::Error::Server(s)
                if s.code == super::errors::NO_SUCH_TABLE || s.code == super::errors::BAD_DB);
            if missing && matches!(rel, Relation::Table { .. }) {
                Error::missing_relation(
                    BACKEND,
                    format!("table {rel} not found ({})", super::errors::message(&e)),
                )
            } else {
                super::errors::source_at(rel, e)
            }
        })?;
    let cols = st
        .columns()
        .iter()
        .map(|c| (c.name_str().to_string(), MyKind::from_column(c)))
        .collect();
    let _ = conn.close(st).await;
    Ok(cols)
}

/// The table's primary key columns (none for a query, or when unreadable).
async fn primary_key(conn: &mut Conn, relation: &Relation) -> Vec<String> {
    match relation {
        Relation::Table { schema, name } => conn
            .exec::<String, _, _>(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                  WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?
                    AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (schema.clone(), name.clone()),
            )
            .await
            .unwrap_or_default(),
        Relation::Query(_) => vec![],
    }
}

#[async_trait]
impl Source for MySource {
    async fn describe(&self, relation: &Relation) -> Result<TableInfo> {
        let mut conn = connect(&self.url).await?;
        let cols = describe_conn(&mut conn, relation).await?;
        let _ = conn.disconnect().await;
        Ok(TableInfo {
            schema: Arc::new(Schema::new(
                cols.iter()
                    .map(|(n, k)| Field::new(n, k.data_type(), true))
                    .collect::<Vec<_>>(),
            )),
        })
    }

    async fn primary_key(&self, relation: &Relation) -> Result<Vec<String>> {
        let mut conn = connect(&self.url).await?;
        let key = primary_key(&mut conn, relation).await;
        let _ = conn.disconnect().await;
        Ok(key)
    }

    async fn newest(&self, relation: &Relation, cursor: &[String]) -> Result<Option<CursorValue>> {
        let mut conn = connect(&self.url).await?;
        let cols = describe_conn(&mut conn, relation).await?;
        let (expr, kind) = cursor_expr("", relation, &cols, cursor)?;
        // The binary protocol: times come back as dates, not text.
        let max: Option<Value> = conn
            .exec_first(
                format!("SELECT max({expr}) FROM {}", relation_sql(relation)),
                (),
            )
            .await
            .map_err(my_err)?;
        let _ = conn.disconnect().await;
        match max {
            Some(v) => cursor_value(&v, kind),
            None => Ok(None),
        }
    }

    async fn read(&self, req: &ReadRequest) -> Result<Extract> {
        let mut conn = connect(&self.url).await?;
        let rel = &req.relation;
        let mut notes = Vec::new();
        if let Delta::ChangeTracking { retention_secs, .. } = &req.delta {
            let n =
                change_tracking::prepare(&mut conn, rel, &req.primary_key, *retention_secs).await?;
            notes.extend(n);
        }
        // Log-based capture: the server's settings and the key table, before the snapshot.
        if let Delta::Cdc { .. } = &req.delta {
            super::cdc::prepare(&mut conn, &req.stream, rel, &req.primary_key).await?;
        }
        // Watermark: the late-commit cap, read before the snapshot (see `open_cap`).
        let cap = match &req.delta {
            Delta::Watermark { lag, .. } => {
                let (cap, note) = open_cap(&mut conn, *lag).await?;
                notes.extend(note);
                Some(cap)
            }
            _ => None,
        };
        // A partitioned full load: N connections, snapshots of the same rows.
        let mut parts = None;
        if matches!(req.delta, Delta::Full) && req.partitions != 1 {
            // Described again in the snapshot below, which `SELECT *` reads.
            let cols = describe_conn(&mut conn, rel).await?;
            let key = if req.primary_key.is_empty() {
                primary_key(&mut conn, rel).await
            } else {
                req.primary_key.clone()
            };
            match partition::open(&self.url, &mut conn, rel, &key, &cols, req.partitions).await? {
                partition::Opened::Parts(p) => {
                    notes.push(p.note.clone());
                    parts = Some(p);
                }
                partition::Opened::One(note) => notes.extend(note),
            }
        }
        if parts.is_none() {
            conn.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .await
                .map_err(my_err)?;
            // A cdc read writes its changed keys into a temporary table.
            let start = match &req.delta {
                Delta::Cdc { .. } => "START TRANSACTION WITH CONSISTENT SNAPSHOT",
                _ => "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            };
            conn.query_drop(start).await.map_err(my_err)?;
        }
        let cols = describe_conn(&mut conn, rel).await?;
        let mut kinds: Vec<MyKind> = cols.iter().map(|c| c.1).collect();
        let mut fields: Vec<Field> = cols
            .iter()
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect();
        let mut version_to = None;
        let mut full_reload = true;
        let mut to = None;
        let mut null_rows = 0;
        let mut held_back = 0;
        let (sql, params): (String, Vec<Value>) = match &req.delta {
            Delta::Full => match &parts {
                Some(p) => (part_sql(rel, &p.conditions[0]), vec![]),
                None => (format!("SELECT * FROM {}", relation_sql(rel)), vec![]),
            },
            Delta::Part(_) => return Err(crate::util::no_shared_parts(&req.stream)),
            Delta::Window {
                cursor,
                start,
                end,
                writer_offset_minutes,
            } => {
                let (expr, kind) = cursor_expr(&req.stream, &req.relation, &cols, cursor)?;
                if kind == MyKind::Int {
                    return Err(Error::config(
                        format!("stream {}", req.stream),
                        format!(
                            "window: needs a time cursor (datetime, timestamp or date); {} is an integer",
                            cursor.join(", ")
                        ),
                    ));
                }
                // TIMESTAMP reads in the session zone (UTC); DATETIME and
                // DATE hold the writers' wall clock.
                let time = match kind {
                    MyKind::Timestamp => crate::CursorTime::Zoned,
                    MyKind::Date => crate::CursorTime::Date,
                    _ => crate::CursorTime::Wall,
                };
                let (lo, hi) =
                    crate::window_bounds(&req.stream, *start, *end, *writer_offset_minutes, time)?;
                full_reload = false;
                (
                    format!(
                        "SELECT * FROM {} WHERE {expr} >= ? AND {expr} < ?",
                        relation_sql(rel)
                    ),
                    vec![Value::from(lo), Value::from(hi)],
                )
            }
            Delta::Watermark {
                cursor,
                after,
                lag,
                writer_offset_minutes,
            } => {
                let w = watermark(
                    &mut conn,
                    req,
                    &cols,
                    cursor,
                    after.as_ref(),
                    *lag,
                    *writer_offset_minutes,
                    cap.as_ref(),
                    &mut notes,
                )
                .await?;
                held_back = w.held_back;
                kinds.push(w.kind);
                fields.push(Field::new(CURSOR_COLUMN, w.kind.data_type(), true));
                to = w.to;
                null_rows = w.null_rows;
                full_reload = after.is_none();
                (w.sql, w.params)
            }
            Delta::Cdc { .. } | Delta::ChangeTracking { .. } => {
                let plan = match &req.delta {
                    Delta::Cdc { after } => {
                        super::cdc::plan(
                            &mut conn,
                            &self.url,
                            &req.stream,
                            rel,
                            &cols,
                            &req.primary_key,
                            after.as_ref(),
                        )
                        .await?
                    }
                    Delta::ChangeTracking { after, .. } => {
                        change_tracking::plan(
                            &mut conn,
                            rel,
                            &cols,
                            &req.primary_key,
                            after.as_ref(),
                        )
                        .await?
                    }
                    _ => return Err(Error::source(BACKEND, "not a change delta")),
                };
                kinds.push(MyKind::Int);
                kinds.push(MyKind::Text);
                fields = crate::change_tracking::output_schema(fields)
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                version_to = Some(plan.version_to);
                full_reload = plan.full_reload;
                notes.extend(plan.notes);
                (plan.sql, plan.params)
            }
        };
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let (tx, batches) = batch_channel(schema.clone());
        let task_schema = schema.clone();
        let batch_size = req.batch_size.max(1);
        let rel_name = rel.to_string();
        if let Some(p) = parts {
            for (c, cond) in p.readers.into_iter().zip(p.conditions.iter().skip(1)) {
                let sql = part_sql(rel, cond);
                let reader = Reader {
                    schema: task_schema.clone(),
                    kinds: kinds.clone(),
                    batch_size,
                    tx: tx.clone(),
                    rel: rel_name.clone(),
                };
                tokio::spawn(reader.run(c, sql, vec![]));
            }
        }
        let reader = Reader {
            schema: task_schema,
            kinds,
            batch_size,
            tx,
            rel: rel_name,
        };
        tokio::spawn(reader.run(conn, sql, params));
        Ok(Extract {
            schema,
            to,
            version_to,
            full_reload,
            null_rows,
            held_back,
            notes,
            batches,
        })
    }
}

/// The rows of one partition of a full load.
fn part_sql(rel: &Relation, condition: &str) -> String {
    format!("SELECT * FROM {} WHERE {condition}", relation_sql(rel))
}

/// One connection's part of a read: its rows into the read's batch stream.
struct Reader {
    schema: SchemaRef,
    kinds: Vec<MyKind>,
    batch_size: usize,
    tx: tokio::sync::mpsc::Sender<Result<RecordBatch>>,
    rel: String,
}

impl Reader {
    /// Stream `sql`'s rows, end the transaction, close the connection; an
    /// error goes down the channel.
    async fn run(self, mut conn: Conn, sql: String, params: Vec<Value>) {
        let res = pump(
            &mut conn,
            &sql,
            params,
            &self.schema,
            self.kinds,
            self.batch_size,
            &self.tx,
            &self.rel,
        )
        .await;
        match res {
            Ok(()) => {
                if let Err(e) = conn.query_drop("COMMIT").await {
                    let _ = self.tx.send(Err(my_err(e))).await;
                }
            }
            Err(e) => {
                let _ = self.tx.send(Err(e)).await;
            }
        }
        let _ = conn.disconnect().await;
    }
}

/// What a watermark read needs, decided in the snapshot.
struct Watermark {
    sql: String,
    params: Vec<Value>,
    kind: MyKind,
    to: Option<CursorValue>,
    null_rows: u64,
    /// Rows above the bound, left for a later run.
    held_back: u64,
}

/// A cursor value as a bound parameter.
fn bind(v: &CursorValue) -> Value {
    let dt = |us: i64| {
        bind_naive(
            DateTime::from_timestamp_micros(us)
                .unwrap_or_default()
                .naive_utc(),
        )
    };
    match v {
        CursorValue::Int(i) => Value::Int(*i),
        CursorValue::Timestamp(us) | CursorValue::TimestampTz(us) => dt(*us),
        CursorValue::Date(d) => dt(*d as i64 * 86_400_000_000),
        CursorValue::Text(t) => Value::Bytes(t.clone().into_bytes()),
    }
}

/// A value read back from the server as a cursor value of `kind`.
fn cursor_value(v: &Value, kind: MyKind) -> Result<Option<CursorValue>> {
    let bad = || Error::source(BACKEND, format!("unexpected cursor value {v:?}"));
    Ok(match (v, kind) {
        (Value::NULL, _) => None,
        (Value::Int(i), _) => Some(CursorValue::Int(*i)),
        (Value::UInt(u), _) => Some(CursorValue::Int(i64::try_from(*u).map_err(|_| bad())?)),
        (Value::Date(y, mo, d, h, mi, s, us), k) => {
            let t = NaiveDate::from_ymd_opt(*y as i32, *mo as u32, *d as u32)
                .and_then(|d| d.and_hms_micro_opt(*h as u32, *mi as u32, *s as u32, *us))
                .ok_or_else(bad)?;
            Some(match k {
                MyKind::Date => {
                    CursorValue::Date((t.date() - NaiveDate::default()).num_days() as i32)
                }
                MyKind::Timestamp => CursorValue::TimestampTz(t.and_utc().timestamp_micros()),
                _ => CursorValue::Timestamp(t.and_utc().timestamp_micros()),
            })
        }
        (Value::Bytes(b), MyKind::Int) => Some(CursorValue::Int(
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?,
        )),
        _ => return Err(bad()),
    })
}

/// The most negative UTC offset MariaDB accepts for a session `time_zone`
/// (-12:59; named zones, when loaded, stay within -12:00): a `datetime` or
/// `date` cursor written with `NOW()`/`CURDATE()` in any session zone by a
/// transaction that began at the cap is at least the cap (UTC) minus this.
const WRITER_ZONE_SLACK_HOURS: i64 = 13;

/// The greatest positive offset a writer's zone may have (+14:00 in IANA
/// zones): zone-less values beyond `now` plus this are dated in the future.
const WRITER_ZONE_AHEAD_HOURS: i64 = 14;

/// How much earlier than `NOW(6)` the cap stays (a statement takes `NOW()`
/// a moment before InnoDB lists its transaction).
const STATEMENT_SLACK_US: i64 = 50_000;

/// The late-commit cap, read before the snapshot. Times are UTC: every
/// connection sets `time_zone = '+00:00'`.
#[derive(Clone)]
struct Cap {
    now: NaiveDateTime,
    at: NaiveDateTime,
    /// The oldest open transaction's start, when it set the cap.
    open_since: Option<NaiveDateTime>,
}

fn parse_server_time(s: &str) -> Result<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|e| Error::source(BACKEND, format!("unexpected server time {s:?}: {e}")))
}

/// The earliest datetime MariaDB stores.
fn min_datetime() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

fn minus(t: NaiveDateTime, d: chrono::Duration) -> NaiveDateTime {
    t.checked_sub_signed(d)
        .unwrap_or_else(min_datetime)
        .max(min_datetime())
}

/// The late-commit cap for time cursors, read *before* the snapshot: the
/// start of the oldest open InnoDB transaction that may write (`INNODB_TRX`,
/// second precision, so rounded down; `READ ONLY` ones such as other
/// streams' snapshots cannot commit rows), but at most 50 ms before now, and `lag:`
/// earlier still. A transaction invisible to the snapshot started after
/// this cap, so rows it writes with `NOW()` fall into a later range.
/// Without the PROCESS privilege `INNODB_TRX` is empty or unreadable: the
/// run says so and relies on `lag:`.
async fn open_cap(conn: &mut Conn, lag: Option<Lag>) -> Result<(Cap, Option<String>)> {
    let lag_us = match lag {
        Some(Lag::Micros(us)) => us,
        _ => 0,
    };
    let now: Option<String> = conn
        .query_first("SELECT DATE_FORMAT(NOW(6), '%Y-%m-%d %H:%i:%s.%f')")
        .await
        .map_err(my_err)?;
    let now = parse_server_time(&now.unwrap_or_default())?;
    let slack = chrono::Duration::microseconds(STATEMENT_SLACK_US.saturating_add(lag_us));
    let (listed, note) = match open_transactions(conn).await {
        Ok(Some(oldest)) => (Some(oldest), None),
        Ok(None) => (
            None,
            Some(format!(
                "warning: InnoDB's transaction list (information_schema.INNODB_TRX) did not refresh \
                 within {} s (something reads it constantly, and InnoDB only refreshes it after 100 ms \
                 without readers): open transactions cannot be seen, so the watermark stays where it \
                 was this run",
                FRESH_LIST_WAIT.as_secs()
            )),
        ),
        Err(_) => (
            Some(None),
            lag.is_none().then(|| {
                "warning: cannot read information_schema.INNODB_TRX (needs the PROCESS privilege): \
                 rows committed late by open transactions are covered only by `lag:`"
                    .to_string()
            }),
        ),
    };
    let mut at = minus(now, slack);
    let mut open_since = None;
    match listed {
        // A stale list proves nothing: nothing past the last watermark.
        None => at = min_datetime(),
        Some(Some(o)) => {
            let o = parse_server_time(&o)?;
            // `trx_started` has whole seconds and a statement takes `NOW()`
            // a moment before InnoDB lists it: the same slack below it.
            let o = minus(o, slack);
            if o < at {
                at = o;
                open_since = Some(o);
            }
        }
        Some(None) => {}
    }
    Ok((
        Cap {
            now,
            at,
            open_since,
        },
        note,
    ))
}

/// How long to wait for a fresh `INNODB_TRX` before giving up for this run
/// (10 s: with many streams on one server under load, 3 s gave up too often).
const FRESH_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The start of the oldest open transaction that may write (`None` inside:
/// none), from a list *proven fresh*: InnoDB serves `INNODB_TRX` from a
/// cache it refreshes only after 100 ms without readers, so a constant
/// reader (monitoring, other streams) freezes it and an open transaction
/// stays invisible — its late rows would then fall below the watermark
/// (found by the attack suite). Freshness is proven by a probe: this
/// connection opens a transaction after `NOW()` was read and waits until
/// the list shows it; every transaction open at the snapshot (taken after
/// this) either started after the probe (so after `NOW()`) or is listed.
/// `Ok(None)`: the list stayed stale; `Err`: unreadable (no privilege).
async fn open_transactions(conn: &mut Conn) -> Result<Option<Option<String>>> {
    // highwater's own readers take turns (a server-wide named lock), so
    // that several streams and workers do not keep each other's view of
    // the list frozen; the first read waits out the cache's idle time.
    let turn: Option<i64> = conn
        .query_first("SELECT GET_LOCK('highwater.innodb_trx', 10)")
        .await
        .map_err(my_err)?;
    let result = fresh_open_transactions(conn).await;
    if turn == Some(1) {
        let _ = conn
            .query_drop("DO RELEASE_LOCK('highwater.innodb_trx')")
            .await;
    }
    result
}

async fn fresh_open_transactions(conn: &mut Conn) -> Result<Option<Option<String>>> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(my_err)?;
    tokio::time::sleep(std::time::Duration::from_millis(110)).await;
    let list = "SELECT COALESCE(SUM(trx_mysql_thread_id = CONNECTION_ID()), 0),
            DATE_FORMAT(MIN(CASE WHEN trx_mysql_thread_id <> CONNECTION_ID() AND trx_is_read_only = 0
                                 THEN trx_started END), '%Y-%m-%d %H:%i:%s.%f')
            FROM information_schema.INNODB_TRX";
    let deadline = std::time::Instant::now() + FRESH_LIST_WAIT;
    let result = loop {
        match conn.query_first::<(i64, Option<String>), _>(list).await {
            Ok(Some((own, oldest))) if own > 0 => break Ok(Some(oldest)),
            Ok(_) if std::time::Instant::now() < deadline => {
                // Our own read counts as a reader: stay idle long enough.
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            }
            Ok(_) => break Ok(None),
            Err(e) => break Err(my_err(e)),
        }
    };
    conn.query_drop("COMMIT").await.map_err(my_err)?;
    result
}

/// A `DATETIME(6)` parameter.
pub(super) fn bind_naive(t: NaiveDateTime) -> Value {
    Value::Date(
        t.year() as u16,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond() / 1000,
    )
}

fn count_of(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Int(n)) => (*n).max(0) as u64,
        Some(Value::UInt(n)) => *n,
        Some(Value::Bytes(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Watermark mode: the new upper bound in the snapshot, and the query for
/// `[after, to]` (inclusive; the engine skips boundary rows already copied).
/// Time cursors are capped by [`open_cap`] (zone-less ones
/// [`WRITER_ZONE_SLACK_HOURS`] lower); integer cursors only by `lag:`.
/// Rows above the bound are counted, and said, when there are any.
/// The SQL of a stream's cursor (the first non-NULL of its columns) and
/// its kind, checked: every column exists and has a cursor type.
fn cursor_expr(
    stream: &str,
    rel: &Relation,
    cols: &[(String, MyKind)],
    cursor: &[String],
) -> Result<(String, MyKind)> {
    let mut kind = None;
    for c in cursor {
        let Some((_, k)) = cols.iter().find(|(n, _)| n == c) else {
            return Err(Error::config(
                format!("stream {stream}"),
                format!("cursor column {c} not found in {rel}"),
            ));
        };
        if !matches!(
            k,
            MyKind::Int | MyKind::UInt | MyKind::Date | MyKind::DateTime | MyKind::Timestamp
        ) {
            return Err(Error::config(
                format!("stream {stream}"),
                format!(
                    "cursor column {c} has type {:?}; use a datetime, timestamp, date or integer column",
                    k
                ),
            ));
        }
        kind.get_or_insert(*k);
    }
    let kind = kind.ok_or_else(|| Error::config(format!("stream {stream}"), "cursor is empty"))?;
    let kind = if kind == MyKind::UInt {
        MyKind::Int
    } else {
        kind
    };
    let quoted: Vec<String> = cursor.iter().map(|c| q(c)).collect();
    let expr = if quoted.len() == 1 {
        quoted[0].clone()
    } else {
        format!("COALESCE({})", quoted.join(", "))
    };
    Ok((expr, kind))
}

#[allow(clippy::too_many_arguments)]
async fn watermark(
    conn: &mut Conn,
    req: &ReadRequest,
    cols: &[(String, MyKind)],
    cursor: &[String],
    after: Option<&WatermarkPosition>,
    lag: Option<Lag>,
    writer_offset_minutes: Option<i32>,
    cap: Option<&Cap>,
    notes: &mut Vec<String>,
) -> Result<Watermark> {
    let rel = &req.relation;
    let (expr, kind) = cursor_expr(&req.stream, rel, cols, cursor)?;
    let from = relation_sql(rel);
    // The upper bound: time cursors stop at the late-commit cap. A
    // `datetime`/`date` holds the writer's wall clock in the writer's
    // session zone, which no other session sees (see docs/decisions.md).
    // With `writer_time_zone:` the cap is read in the writers' zone;
    // without it, lowered by the widest offset a session may have.
    let slack = chrono::Duration::hours(WRITER_ZONE_SLACK_HOURS);
    let in_writer_zone = |t: NaiveDateTime| match writer_offset_minutes {
        Some(m) => t
            .checked_add_signed(chrono::Duration::minutes(i64::from(m)))
            .unwrap_or(t),
        None => minus(t, slack),
    };
    let zoneless = matches!(kind, MyKind::DateTime | MyKind::Date);
    let bound: Option<NaiveDateTime> = match (kind, cap) {
        (MyKind::Int, _) | (_, None) => None,
        (MyKind::Timestamp, Some(c)) => Some(c.at),
        (MyKind::Date, Some(c)) => in_writer_zone(c.at).date().and_hms_opt(0, 0, 0),
        (_, Some(c)) => Some(in_writer_zone(c.at)),
    };
    let (cap_sql, cap_params) = match bound {
        None => (String::new(), vec![]),
        Some(b) => (format!(" AND {expr} <= ?"), vec![bind_naive(b)]),
    };
    let row: Option<Row> = conn
        .exec_first(
            format!(
                "SELECT (SELECT MAX({expr}) FROM {from} WHERE {expr} IS NOT NULL{cap_sql}),
                        (SELECT COUNT(*) FROM {from} WHERE {expr} IS NULL),
                        (SELECT MAX({expr}) FROM {from})"
            ),
            cap_params,
        )
        .await
        .map_err(|e| super::errors::source_at(rel, e))?;
    let row = row.ok_or_else(|| Error::source(BACKEND, "no answer to the bound query"))?;
    let mut to = cursor_value(row.as_ref(0).unwrap_or(&Value::NULL), kind)?;
    if let (Some(CursorValue::Int(i)), Some(Lag::Units(n))) = (&to, lag) {
        to = Some(CursorValue::Int(i.saturating_sub(n)));
    }
    let null_rows = count_of(row.as_ref(1));
    let newest = cursor_value(row.as_ref(2).unwrap_or(&Value::NULL), kind)?;
    let prev = after.and_then(|a| a.value.clone());

    // Rows above the bound: how many, why, until when.
    let mut held_back = 0;
    let lower = to.clone().or(prev);
    let held = match (&newest, &lower) {
        (Some(n), Some(l)) => n.compare(l) == Some(std::cmp::Ordering::Greater),
        (Some(_), None) => true,
        _ => false,
    };
    if held {
        let now = cap
            .map(|c| c.now)
            .unwrap_or_else(|| chrono::Utc::now().naive_utc());
        let future = match kind {
            MyKind::Int => None,
            MyKind::Timestamp => Some(now),
            _ => now.checked_add_signed(chrono::Duration::hours(WRITER_ZONE_AHEAD_HOURS)),
        };
        let (future_sql, mut params) = match future {
            Some(f) => (format!("{expr} > ?"), vec![bind_naive(f)]),
            None => ("FALSE".to_string(), vec![]),
        };
        let above_sql = match &lower {
            Some(l) => {
                params.push(bind(l));
                format!("{expr} > ?")
            }
            None => format!("{expr} IS NOT NULL"),
        };
        let r: Option<Row> = conn
            .exec_first(
                format!(
                    "SELECT COUNT(*), COALESCE(SUM({future_sql}), 0), MAX({expr}) FROM {from} WHERE {above_sql}"
                ),
                params,
            )
            .await
            .map_err(|e| super::errors::source_at(rel, e))?;
        if let Some(r) = r {
            let counted = crate::held_back::Counted {
                rows: count_of(r.as_ref(0)),
                future_rows: count_of(r.as_ref(1)),
                newest: cursor_value(r.as_ref(2).unwrap_or(&Value::NULL), kind)?,
            };
            let why = crate::held_back::Why {
                open_since: cap.and_then(|c| c.open_since).map(|t| t.and_utc()),
                hidden_open: false,
                lag,
                zone_margin_hours: (zoneless && writer_offset_minutes.is_none())
                    .then_some(WRITER_ZONE_SLACK_HOURS),
            };
            let above = match (&lower, bound) {
                (Some(l), _) => l.to_string(),
                (None, Some(b)) => b.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                (None, None) => "the bound".to_string(),
            };
            if let Some(n) =
                crate::held_back::note(&cursor.join("/"), &above, now.and_utc(), &why, &counted)
            {
                notes.push(n);
            }
            held_back = counted.rows;
        }
    }
    let select = format!("SELECT *, {expr} AS {} FROM {from}", q(CURSOR_COLUMN));
    let first = after.is_none();
    let lo = after.and_then(|a| a.value.as_ref());
    let (cond, params) = match (&to, lo) {
        (None, _) if first => (format!("{expr} IS NULL"), vec![]),
        (None, _) => ("FALSE".to_string(), vec![]),
        (Some(hi), None) if first => (format!("{expr} <= ? OR {expr} IS NULL"), vec![bind(hi)]),
        (Some(hi), None) => (format!("{expr} <= ?"), vec![bind(hi)]),
        (Some(hi), Some(lo)) => (
            format!("{expr} >= ? AND {expr} <= ?"),
            vec![bind(lo), bind(hi)],
        ),
    };
    Ok(Watermark {
        sql: format!("{select} WHERE {cond}"),
        params,
        kind,
        to,
        null_rows,
        held_back,
    })
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    conn: &mut Conn,
    sql: &str,
    params: Vec<Value>,
    schema: &SchemaRef,
    kinds: Vec<MyKind>,
    batch_size: usize,
    tx: &tokio::sync::mpsc::Sender<Result<RecordBatch>>,
    rel: &str,
) -> Result<()> {
    let bad = |m: String| Error::source(BACKEND, format!("{rel}: {m}"));
    let mut result = conn
        .exec_iter(sql, params)
        .await
        .map_err(|e| super::errors::source_at(rel, e))?;
    let Some(mut rows) = result.stream::<Row>().await.map_err(my_err)? else {
        return Ok(());
    };
    let mut cols: Vec<Col> = kinds.iter().map(|k| Col::new(*k, batch_size)).collect();
    let mut n = 0usize;
    let mut bytes = 0usize;
    let mut total = 0u64;
    while let Some(row) = rows.next().await {
        let row = row.map_err(my_err)?;
        for (i, col) in cols.iter_mut().enumerate() {
            let v = row.as_ref(i).unwrap_or(&Value::NULL);
            bytes += match v {
                Value::Bytes(b) => b.len(),
                _ => 8,
            };
            col.push(v).map_err(|m| {
                bad(format!(
                    "column {} row {}: {m}",
                    schema.field(i).name(),
                    total + 1
                ))
            })?;
        }
        n += 1;
        total += 1;
        if n == batch_size || bytes >= crate::util::BATCH_BYTES {
            bytes = 0;
            if !emit(
                tx,
                schema,
                cols.iter_mut().map(Col::finish).collect(),
                "mysql",
            )
            .await?
            {
                return Ok(());
            }
            n = 0;
        }
    }
    if n > 0 {
        emit(
            tx,
            schema,
            cols.iter_mut().map(Col::finish).collect(),
            "mysql",
        )
        .await?;
    }
    Ok(())
}

/// `highwater verify`'s check inside the database, as
/// [`crate::postgres::checksum`]: the row count and the sum of a 64-bit
/// hash of each row's text (see [`row_hash_sum`]), in a UTC session. Only
/// compared with another MariaDB table's: the text of a value is
/// MariaDB's own.
pub async fn checksum(url: &str, rel: &Relation, columns: &[String]) -> Result<(i64, String)> {
    let mut conn = connect(url).await?;
    let sql = format!(
        "SELECT COUNT(*), {} FROM {}",
        row_hash_sum(columns),
        relation_sql(rel)
    );
    let row: Option<(i64, String)> = conn
        .query_first(sql)
        .await
        .map_err(|e| Error::source(BACKEND, super::errors::message(&e)))?;
    let _ = conn.disconnect().await;
    row.ok_or_else(|| Error::source(BACKEND, "no checksum row"))
}

/// `SUM` of a 64-bit hash of each row's text, as decimal text (`0` for no
/// rows): the first 16 hex digits of `MD5` of the columns joined by
/// U+001F, followed by each column's NULL flag, so NULL and '' differ.
fn row_hash_sum(columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| q(c)).collect();
    let nulls: Vec<String> = cols.iter().map(|c| format!("ISNULL({c})")).collect();
    let text = format!(
        "CONCAT_WS(CHAR(31 USING utf8mb4), {}, CONCAT({}))",
        cols.join(", "),
        nulls.join(", ")
    );
    format!("CAST(COALESCE(SUM(CAST(CONV(LEFT(MD5({text}), 16), 16, 10) AS UNSIGNED)), 0) AS CHAR)")
}

/// Checksums of key ranges of a table with an integer key, computed inside
/// the database over one connection (`verify`'s bisection), as
/// [`crate::postgres::KeyChecksums`].
pub struct KeyChecksums {
    conn: tokio::sync::Mutex<Conn>,
}

impl KeyChecksums {
    pub async fn open(url: &str) -> Result<KeyChecksums> {
        Ok(KeyChecksums {
            conn: tokio::sync::Mutex::new(connect(url).await?),
        })
    }

    /// The smallest and greatest value of the integer column `key` in `rel`.
    pub async fn bounds(&self, rel: &Relation, key: &str) -> Result<Option<(i64, i64)>> {
        let k = q(key);
        let sql = format!(
            "SELECT CAST(MIN({k}) AS SIGNED), CAST(MAX({k}) AS SIGNED) FROM {}",
            relation_sql(rel)
        );
        let row: Option<(Option<i64>, Option<i64>)> = self
            .conn
            .lock()
            .await
            .query_first(sql)
            .await
            .map_err(my_err)?;
        Ok(row.and_then(|(lo, hi)| lo.zip(hi)))
    }

    /// Split `[lo, hi]` of the integer column `key` into buckets of `step`
    /// keys (bucket `i` is `[lo + i·step, lo + (i+1)·step)`) and return,
    /// per bucket that holds rows, its row count and the sum of its rows'
    /// hashes (as [`checksum`] computes them).
    pub async fn buckets(
        &self,
        rel: &Relation,
        columns: &[String],
        key: &str,
        (lo, hi): (i64, i64),
        step: i64,
    ) -> Result<Vec<(i64, i64, String)>> {
        let k = q(key);
        // Integer arithmetic where `k - lo` stays in the 64-bit range.
        let bucket = match hi.checked_sub(lo) {
            Some(_) => format!("(CAST({k} AS SIGNED) - {lo}) DIV {}", step.max(1)),
            None => format!(
                "CAST((CAST({k} AS DECIMAL(21)) - {lo}) DIV {} AS SIGNED)",
                step.max(1)
            ),
        };
        let sql = format!(
            "SELECT {bucket} AS b, COUNT(*), {} FROM {} WHERE {k} >= {lo} AND {k} <= {hi} \
             GROUP BY 1 ORDER BY 1",
            row_hash_sum(columns),
            relation_sql(rel)
        );
        let rows: Vec<(i64, i64, String)> =
            self.conn.lock().await.query(sql).await.map_err(my_err)?;
        Ok(rows)
    }
}

/// The bucket of a row by the CRC32 of its key's text: `0..parts`. Any
/// key type, composite keys too; both sides of one backend agree.
fn hash_bucket(key: &[String], parts: i64) -> String {
    let cols: Vec<String> = key.iter().map(|c| q(c)).collect();
    format!(
        "CRC32(CONCAT_WS(CHAR(31 USING utf8mb4), {})) % {parts}",
        cols.join(", ")
    )
}

impl KeyChecksums {
    /// Per bucket of the hash of the key's text (see [`hash_bucket`]) that
    /// holds rows: its number, row count and sum of row hashes.
    pub async fn hash_buckets(
        &self,
        rel: &Relation,
        columns: &[String],
        key: &[String],
        parts: i64,
    ) -> Result<Vec<(i64, i64, String)>> {
        let sql = format!(
            "SELECT CAST({} AS SIGNED) AS b, COUNT(*), {} FROM {} GROUP BY 1 ORDER BY 1",
            hash_bucket(key, parts.max(1)),
            row_hash_sum(columns),
            relation_sql(rel)
        );
        let rows: Vec<(i64, i64, String)> =
            self.conn.lock().await.query(sql).await.map_err(my_err)?;
        Ok(rows)
    }
}

/// `rel` restricted to the rows whose key hashes into one of `buckets`
/// (of `parts`, as [`KeyChecksums::hash_buckets`]).
pub fn key_buckets(rel: &Relation, key: &[String], parts: i64, buckets: &[i64]) -> Relation {
    let list: Vec<String> = buckets.iter().map(i64::to_string).collect();
    Relation::Query(format!(
        "SELECT * FROM {} WHERE {} IN ({})",
        relation_sql(rel),
        hash_bucket(key, parts.max(1)),
        list.join(", ")
    ))
}

/// `rel` restricted to the keys in `ranges` (each `[from, to]`) of the
/// integer column `key`.
pub fn key_ranges(rel: &Relation, key: &str, ranges: &[(i64, i64)]) -> Relation {
    let k = q(key);
    let cond: Vec<String> = ranges
        .iter()
        .map(|(a, b)| format!("({k} >= {a} AND {k} <= {b})"))
        .collect();
    Relation::Query(format!(
        "SELECT * FROM {} WHERE {}",
        relation_sql(rel),
        cond.join(" OR ")
    ))
}
