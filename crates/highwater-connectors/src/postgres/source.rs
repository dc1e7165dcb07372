//! [`PgSource`]: describe, and read one delta through binary `COPY`.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::StreamExt;
use highwater_core::{
    CURSOR_COLUMN, CursorValue, Delta, Error, ExportedParts, Extract, Lag, ReadRequest, Relation,
    Result, Source, TableInfo,
};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use super::change_tracking;
use super::partition;
use super::types::{Col, PgKind};
use crate::util::{batch_channel, emit, quote_ident};

const BACKEND: &str = "postgres";

/// The read's transaction: one snapshot for every statement in it.
pub(super) const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Session settings of every read connection: text renderings and time
/// comparisons must not depend on the role's or database's settings (see
/// docs/types.md).
const SESSION: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; \
                       SET TimeZone = 'UTC'; SET extra_float_digits = 3";

/// Reads from one PostgreSQL database. One session serves a run's
/// `describe`, `read` (its transaction) and `confirm` in turn: each new
/// connection costs a server process's start, most of a small delta's
/// time. A second caller while the session is busy opens its own.
pub struct PgSource {
    url: String,
    /// The idle session, when no call is using it: no transaction open,
    /// [`SESSION`] applied.
    idle: Idle,
}

/// Where an idle session waits for the next call.
type Idle = Arc<std::sync::Mutex<Option<Client>>>;

impl PgSource {
    pub fn new(url: &str) -> Self {
        PgSource {
            url: url.to_string(),
            idle: Idle::default(),
        }
    }

    /// The idle session, or a new one.
    async fn session(&self) -> Result<Client> {
        let cached = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(c) = cached.filter(|c| !c.is_closed()) {
            return Ok(c);
        }
        let client = connect(&self.url).await?;
        client.batch_execute(SESSION).await.map_err(pg_err)?;
        Ok(client)
    }

    /// Keep a session (idle, no transaction open) for the next call.
    fn keep(&self, client: Client) {
        keep(&self.idle, client);
    }
}

fn keep(idle: &Idle, client: Client) {
    *idle
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(client);
}

pub(super) fn pg_err(e: tokio_postgres::Error) -> Error {
    super::errors::source(e)
}

pub use super::connect;

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

struct Described {
    names: Vec<String>,
    kinds: Vec<PgKind>,
    types: Vec<Type>,
}

async fn describe_client(client: &Client, rel: &Relation) -> Result<Described> {
    let st = client
        .prepare(&format!("SELECT * FROM {} LIMIT 0", relation_sql(rel)))
        .await
        .map_err(|e| {
            let missing = e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
                || e.code() == Some(&tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME);
            if missing && matches!(rel, Relation::Table { .. }) {
                Error::missing_relation(
                    BACKEND,
                    format!("table {rel} not found ({})", super::errors::message(&e)),
                )
            } else {
                super::errors::source_at(rel, e)
            }
        })?;
    let cols = st.columns();
    let mut kinds: Vec<PgKind> = cols
        .iter()
        .map(|c| PgKind::from_type(c.type_(), c.type_modifier()))
        .collect();
    if kinds.iter().any(PgKind::has_money) {
        // `money` is a count of minor units; their number comes from the
        // database's `lc_monetary`.
        let scale: i32 = client
            .query_one("SELECT scale('1'::money::numeric)", &[])
            .await
            .map_err(pg_err)?
            .get(0);
        let scale = scale.clamp(0, 18) as i8;
        kinds = kinds
            .into_iter()
            .map(|k| k.with_money_scale(scale))
            .collect();
    }
    Ok(Described {
        names: cols.iter().map(|c| c.name().to_string()).collect(),
        kinds,
        types: cols.iter().map(|c| c.type_().clone()).collect(),
    })
}

/// `begin` (a `BEGIN` that opens the read's snapshot) and the relation's
/// description in one round trip: the describe's parse takes the
/// snapshot. `begin_err` maps a failed `BEGIN`.
async fn begin_described(
    client: &Client,
    begin: &str,
    rel: &Relation,
    begin_err: impl FnOnce(tokio_postgres::Error) -> Error,
) -> Result<Described> {
    let (begun, d) = tokio::join!(
        biased;
        client.batch_execute(begin),
        describe_client(client, rel)
    );
    begun.map_err(begin_err)?;
    d
}

/// The key columns of a read: the stream's `primary_key`, else the table's.
async fn key_of(client: &Client, req: &ReadRequest) -> Vec<String> {
    if req.primary_key.is_empty() {
        primary_key(client, &req.relation).await
    } else {
        req.primary_key.clone()
    }
}

/// The table's primary key (empty for queries, or when unknown).
async fn primary_key(client: &Client, rel: &Relation) -> Vec<String> {
    let Relation::Table { schema, name } = rel else {
        return vec![];
    };
    let qualified = match schema {
        Some(s) => format!("{}.{}", quote_ident(s, '"'), quote_ident(name, '"')),
        None => quote_ident(name, '"'),
    };
    client
        .query_typed(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary
             ORDER BY array_position(i.indkey, a.attnum)",
            &[(&qualified, Type::TEXT)],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .unwrap_or_default()
}

/// The most negative UTC offset a writer's session zone may have (IANA
/// zones span -12:00 to +14:00): a `timestamp`/`date` cursor written with
/// `now()`/`current_date` in an unknown zone is at least the cap minus this.
const WRITER_ZONE_SLACK_HOURS: i64 = 12;

/// The greatest positive offset of a writer's zone (+14:00): zone-less
/// values beyond `now` plus this are dated in the future.
const WRITER_ZONE_AHEAD_HOURS: i64 = 14;

/// How long a run waits for transactions whose start it cannot see.
const HIDDEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The late-commit cap: no transaction invisible to the snapshot taken
/// after it started before `at`.
#[derive(Clone)]
struct Cap {
    at: DateTime<Utc>,
    /// When the cap was read.
    now: DateTime<Utc>,
    /// The oldest open transaction's start, when it set the cap.
    open_since: Option<DateTime<Utc>>,
    /// Open transactions holding an xid (integer cursors warn).
    writers: i64,
    held_back_us: i64,
    /// Transactions of other roles (start unknown) outlived the wait.
    blocked: bool,
    notes: Vec<String>,
}

impl Cap {
    fn now(at: DateTime<Utc>) -> Cap {
        Cap {
            at,
            now: at,
            open_since: None,
            writers: 0,
            held_back_us: 0,
            blocked: false,
            notes: vec![],
        }
    }
}

/// The clock, then what the other sessions of this database show. The
/// target list is evaluated in order, so `clock_timestamp()` is read before
/// the sessions are (a transaction that starts after the read of the
/// sessions also starts after `now`). `pg_stat_get_activity` directly, not
/// the `pg_stat_activity` view: the view's joins (`pg_database`,
/// `pg_authid`) took about 2 ms to plan in a new session, most of a small
/// delta's source time; the rows and columns are the same.
const CAP_SQL: &str = "SELECT clock_timestamp(),
    (SELECT min(s.xact_start) FROM pg_stat_get_activity(NULL) s
      WHERE s.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND s.pid <> pg_backend_pid() AND s.backend_type = 'client backend'),
    (SELECT count(*) FROM pg_stat_get_activity(NULL) s
      WHERE s.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND s.pid <> pg_backend_pid() AND s.backend_xid IS NOT NULL),
    EXISTS (SELECT 1 FROM pg_stat_get_activity(NULL) s
      WHERE s.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND s.pid <> pg_backend_pid() AND s.backend_type IS NULL)";

/// Read the cap before the snapshot. Sessions whose `xact_start` is
/// visible (own role, or `pg_read_all_stats`) cap at their start. Other
/// roles' sessions show no start to an unprivileged role, but their
/// transactions' virtual-xid locks are visible in `pg_locks` to everyone:
/// the run waits (up to [`HIDDEN_WAIT`]) until every transaction open at
/// `now` has ended, after which `now` is a safe cap. If one is still open,
/// the bound stays at the previous watermark (said loudly).
async fn late_commit_cap(client: &Client, lag: Option<Lag>) -> Result<Cap> {
    let row = client.query_typed_one(CAP_SQL, &[]).await.map_err(pg_err)?;
    let now: DateTime<Utc> = row.get(0);
    let oldest: Option<DateTime<Utc>> = row.get(1);
    let writers: i64 = row.get(2);
    // Sessions of other roles: their transactions' locks, read only when
    // there are some (`pg_locks` costs a few milliseconds to plan and read
    // in a new session). Transactions that began since `now` only make
    // the wait longer; those that ended since need no wait.
    let hidden: Vec<String> = if row.get::<_, bool>(3) {
        client
            .query_typed_one(
                "SELECT coalesce(array_agg(l.virtualxid), '{}') FROM pg_stat_activity a
                   JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'virtualxid'
                    AND l.granted AND l.mode = 'ExclusiveLock'
                  WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
                    AND a.backend_type IS NULL",
                &[],
            )
            .await
            .map_err(pg_err)?
            .get(0)
    } else {
        vec![]
    };
    let mut notes = Vec::new();
    let mut blocked = false;
    if !hidden.is_empty() {
        let started = std::time::Instant::now();
        loop {
            let open: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' AND granted
                       AND mode = 'ExclusiveLock' AND virtualxid = ANY($1)",
                    &[&hidden],
                )
                .await
                .map_err(pg_err)?
                .get(0);
            if open == 0 {
                break;
            }
            if started.elapsed() >= HIDDEN_WAIT {
                blocked = true;
                notes.push(format!(
                    "warning: {open} transaction(s) of other roles, open since before this run, are still open \
                     after {}s and this role cannot see when they started (grant pg_read_all_stats to see it): \
                     the upper bound stays at the previous watermark",
                    HIDDEN_WAIT.as_secs()
                ));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
    let mut c = now;
    if let Some(Lag::Micros(us)) = lag {
        c = now
            .checked_sub_signed(chrono::Duration::microseconds(us))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
    }
    let open_since = oldest.filter(|o| *o < c);
    if let Some(o) = open_since {
        c = o;
    }
    let held_back_us = (now - c).num_microseconds().unwrap_or(i64::MAX);
    Ok(Cap {
        at: c,
        now,
        open_since,
        writers,
        held_back_us,
        blocked,
        notes,
    })
}

/// The cast used to read a bound back from a setting, per cursor type.
/// The SQL of a stream's cursor (the first non-NULL of its columns) and
/// its type, checked: every column exists and has a cursor type.
fn cursor_expr(
    d: &Described,
    cursor: &[String],
    stream: &str,
    rel: &Relation,
) -> Result<(String, Type)> {
    let mut ctype = None;
    for c in cursor {
        let Some(i) = d.names.iter().position(|n| n == c) else {
            return Err(Error::config(
                format!("stream {stream}"),
                format!(
                    "cursor column {c} not found in {rel} (columns: {})",
                    d.names.join(", ")
                ),
            ));
        };
        if cursor_cast(&d.types[i]).is_none() {
            return Err(Error::config(
                format!("stream {stream}"),
                format!(
                    "cursor column {c} has type {}; use a timestamp, timestamptz, date or integer column",
                    d.types[i]
                ),
            ));
        }
        ctype.get_or_insert_with(|| d.types[i].clone());
    }
    let ctype =
        ctype.ok_or_else(|| Error::config(format!("stream {stream}"), "cursor is empty"))?;
    let quoted: Vec<String> = cursor.iter().map(|c| quote_ident(c, '"')).collect();
    let expr = if quoted.len() == 1 {
        quoted[0].clone()
    } else {
        format!("COALESCE({})", quoted.join(", "))
    };
    Ok((expr, ctype))
}

fn cursor_cast(t: &Type) -> Option<&'static str> {
    match *t {
        Type::TIMESTAMPTZ => Some("timestamptz"),
        Type::TIMESTAMP => Some("timestamp"),
        Type::DATE => Some("date"),
        Type::INT2 | Type::INT4 | Type::INT8 => Some("int8"),
        _ => None,
    }
}

fn cursor_value(row: &tokio_postgres::Row, idx: usize, t: &Type) -> Result<Option<CursorValue>> {
    let get_err = |e: tokio_postgres::Error| {
        Error::source(
            BACKEND,
            format!("the greatest cursor value cannot be read (is it '-infinity'?): {e}"),
        )
    };
    Ok(match *t {
        Type::TIMESTAMPTZ => row
            .try_get::<_, Option<DateTime<Utc>>>(idx)
            .map_err(get_err)?
            .map(|v| CursorValue::TimestampTz(v.timestamp_micros())),
        Type::TIMESTAMP => row
            .try_get::<_, Option<NaiveDateTime>>(idx)
            .map_err(get_err)?
            .map(|v| CursorValue::Timestamp(v.and_utc().timestamp_micros())),
        Type::DATE => row
            .try_get::<_, Option<NaiveDate>>(idx)
            .map_err(get_err)?
            .map(|v| CursorValue::Date((v - NaiveDate::default()).num_days() as i32)),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(idx)
            .map_err(get_err)?
            .map(|v| CursorValue::Int(v as i64)),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(idx)
            .map_err(get_err)?
            .map(|v| CursorValue::Int(v as i64)),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(idx)
            .map_err(get_err)?
            .map(CursorValue::Int),
        _ => None,
    })
}

fn apply_units_lag(to: Option<CursorValue>, lag: Option<Lag>) -> Option<CursorValue> {
    match (to, lag) {
        (Some(CursorValue::Int(i)), Some(Lag::Units(n))) => {
            Some(CursorValue::Int(i.saturating_sub(n)))
        }
        (to, _) => to,
    }
}

#[async_trait]
impl Source for PgSource {
    async fn describe(&self, relation: &Relation) -> Result<TableInfo> {
        let client = self.session().await?;
        let d = describe_client(&client, relation).await?;
        let fields: Vec<Field> = d
            .names
            .iter()
            .zip(&d.kinds)
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect();
        self.keep(client);
        Ok(TableInfo {
            schema: Arc::new(Schema::new(fields)),
        })
    }

    async fn primary_key(&self, relation: &Relation) -> Result<Vec<String>> {
        let client = self.session().await?;
        let key = primary_key(&client, relation).await;
        self.keep(client);
        Ok(key)
    }

    async fn newest(&self, relation: &Relation, cursor: &[String]) -> Result<Option<CursorValue>> {
        // The session's TimeZone is UTC.
        let client = self.session().await?;
        let d = describe_client(&client, relation).await?;
        let (expr, ctype) = cursor_expr(&d, cursor, "", relation)?;
        let row = client
            .query_one(
                &format!("SELECT max({expr}) FROM {}", relation_sql(relation)),
                &[],
            )
            .await
            .map_err(pg_err)?;
        self.keep(client);
        cursor_value(&row, 0, &ctype)
    }

    async fn confirm(&self, stream: &str, to: &highwater_core::Position) -> Result<()> {
        if !super::cdc::is_position(to) {
            return Ok(());
        }
        let client = self.session().await?;
        super::cdc::confirm_on(&client, stream, to).await?;
        self.keep(client);
        Ok(())
    }

    async fn export_parts(&self, req: &ReadRequest) -> Result<Option<ExportedParts>> {
        // A session of its own: its transaction keeps the snapshot alive
        // until the caller drops `hold`.
        let client = connect(&self.url).await?;
        client.batch_execute(SESSION).await.map_err(pg_err)?;
        let rel = &req.relation;
        let d = begin_described(&client, BEGIN_READ, rel, pg_err).await?;
        let key = key_of(&client, req).await;
        let from = relation_sql(rel);
        let planned =
            partition::plan(&client, &from, &key, &d.names, &d.kinds, req.partitions).await?;
        Ok(planned.map(|p| ExportedParts {
            note: format!(
                "read in {} parts of {}, one snapshot, claimed by the processes sharing this state",
                p.ranges.len(),
                p.key
            ),
            snapshot: p.snapshot,
            key: p.key,
            ranges: p.ranges,
            hold: Box::new(client),
        }))
    }

    async fn read(&self, req: &ReadRequest) -> Result<Extract> {
        // Text renderings and time comparisons must not depend on the
        // role's or database's settings (see docs/types.md): the session
        // has SESSION applied.
        let client = self.session().await?;
        let rel = &req.relation;
        let mut notes = Vec::new();
        let mut version_to = None;
        let mut full_reload = !matches!(
            &req.delta,
            Delta::Watermark { after: Some(_), .. } | Delta::Window { .. }
        );

        // Change tracking: set up and prune before the snapshot.
        if let Delta::ChangeTracking { retention_secs, .. } = &req.delta {
            let n =
                change_tracking::prepare(&client, rel, &req.primary_key, *retention_secs).await?;
            notes.extend(n);
        }

        // Log-based capture: the slot, and the changes, before the snapshot.
        let mut cdc_prepared = None;
        if let Delta::Cdc { after } = &req.delta {
            let p =
                super::cdc::prepare(&client, &req.stream, rel, &req.primary_key, after.as_ref())
                    .await?;
            cdc_prepared = Some(p);
        }

        // Step 1 (watermark only): the late-commit cap, before the snapshot.
        let mut cap: Option<Cap> = None;
        if let Delta::Watermark { lag, .. } = &req.delta {
            let c = late_commit_cap(&client, *lag).await?;
            notes.extend(c.notes.iter().cloned());
            cap = Some(c);
        }

        // The snapshot: taken by the describe's statement, sent right
        // behind the BEGIN.
        // A part of a shared full load reads in the coordinator's snapshot.
        let begin = match &req.delta {
            Delta::Part(p) => partition::import_sql(&p.snapshot),
            _ => BEGIN_READ.to_string(),
        };
        let d = begin_described(&client, &begin, rel, |e| match &req.delta {
            Delta::Part(_) => Error::source(
                BACKEND,
                format!(
                    "{rel}: cannot read in the coordinator's snapshot (its run ended or stopped?): {}",
                    pg_err(e)
                ),
            ),
            _ => pg_err(e),
        })
        .await?;
        let mut select: Vec<String> = d
            .names
            .iter()
            .zip(&d.kinds)
            .map(|(n, k)| k.select_expr(&quote_ident(n, '"')))
            .collect();
        let mut kinds = d.kinds.clone();
        let mut fields: Vec<Field> = d
            .names
            .iter()
            .zip(&d.kinds)
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect();
        let from = relation_sql(rel);
        let mut to = None;
        // Transaction-local settings the COPY reads (its bounds), sent
        // right before it: `(statement, $1, $2)`.
        let mut settings: Option<(&str, String, String)> = None;
        let mut null_rows = 0u64;
        let mut held_back = 0u64;
        let sql = match &req.delta {
            Delta::Full => format!(
                "COPY (SELECT {} FROM {from}) TO STDOUT (FORMAT binary)",
                select.join(", ")
            ),
            Delta::Part(p) => {
                if !d.names.contains(&p.key) {
                    return Err(Error::config(
                        format!("stream {}", req.stream),
                        format!("{rel} has no column {} to read a part by", p.key),
                    ));
                }
                partition::range_sql(&select, &from, &p.key, (p.lo, p.hi), p.nulls)
            }
            Delta::Window {
                cursor,
                start,
                end,
                writer_offset_minutes,
            } => {
                let (expr, ctype) = cursor_expr(&d, cursor, &req.stream, &req.relation)?;
                let cast = match cursor_cast(&ctype) {
                    Some("int8") | None => {
                        return Err(Error::config(
                            format!("stream {}", req.stream),
                            format!(
                                "window: needs a time cursor (timestamp, timestamptz or date); {} is {ctype}",
                                cursor.join(", ")
                            ),
                        ));
                    }
                    Some(c) => c,
                };
                // Bound as settings of this transaction (COPY takes no
                // parameters), read back typed.
                let time = match cast {
                    "timestamptz" => crate::CursorTime::Zoned,
                    "date" => crate::CursorTime::Date,
                    _ => crate::CursorTime::Wall,
                };
                // A zoned bound is read as UTC: the session's zone is UTC.
                let (lo, hi) =
                    crate::window_bounds(&req.stream, *start, *end, *writer_offset_minutes, time)?;
                settings = Some((
                    "SELECT set_config('highwater.wstart', $1, true), set_config('highwater.wend', $2, true)",
                    lo,
                    hi,
                ));
                format!(
                    "COPY (SELECT {} FROM {from} WHERE {expr} >= current_setting('highwater.wstart')::{cast} \
                     AND {expr} < current_setting('highwater.wend')::{cast}) TO STDOUT (FORMAT binary)",
                    select.join(", ")
                )
            }
            Delta::Watermark {
                cursor,
                after,
                lag,
                writer_offset_minutes,
            } => {
                let (expr, ctype) = cursor_expr(&d, cursor, &req.stream, &req.relation)?;
                let cast = cursor_cast(&ctype).unwrap_or("text");
                let Cap {
                    at: cap_ts,
                    now: cap_now,
                    open_since,
                    writers,
                    held_back_us,
                    blocked,
                    ..
                } = cap.clone().unwrap_or_else(|| Cap::now(Utc::now()));
                let is_time = cast != "int8";
                // Step 3: the new upper bound, in the snapshot.
                let cap_text = CursorValue::TimestampTz(cap_ts.timestamp_micros()).to_sql_text();
                let prev_text = after
                    .as_ref()
                    .and_then(|a| a.value.as_ref())
                    .map(|v| v.to_sql_text())
                    .unwrap_or_default();
                let cap_params: [(&(dyn ToSql + Sync), Type); 2] =
                    [(&cap_text, Type::TEXT), (&prev_text, Type::TEXT)];
                let set_cap = client.execute_typed(
                    "SELECT set_config('highwater.cap', $1, true), set_config('highwater.prev', $2, true)",
                    &cap_params,
                );
                // Two scalar subqueries, each answerable from an index on the
                // cursor (a FILTER clause would force a full scan).
                // A zoneless cursor holds the writer's wall clock, in a zone
                // we cannot see: the cap is lowered by the largest negative
                // UTC offset (-12:00), see docs/decisions.md.
                let cap_sql = "(SELECT current_setting('highwater.cap')::timestamptz)";
                // With `writer_time_zone:` the cap is read in the writers'
                // zone instead (an integer from the config, not text).
                let zoneless = match writer_offset_minutes {
                    Some(m) => format!("(({cap_sql} AT TIME ZONE 'UTC') + interval '{m} minutes')"),
                    None => format!(
                        "(({cap_sql} AT TIME ZONE 'UTC') - interval '{WRITER_ZONE_SLACK_HOURS} hours')"
                    ),
                };
                let prev = after.as_ref().and_then(|a| a.value.as_ref());
                let capped = match (is_time, blocked, prev) {
                    (false, ..) => String::new(),
                    // Transactions of unknown start are still open: do not
                    // move past the previous watermark.
                    (true, true, Some(_)) => format!(
                        "WHERE {expr} <= (SELECT current_setting('highwater.prev')::{cast})"
                    ),
                    _ if cast == "timestamp" => format!("WHERE {expr} <= {zoneless}"),
                    _ if cast == "date" => format!("WHERE {expr} <= {zoneless}::date"),
                    _ => format!("WHERE {expr} <= {cap_sql}"),
                };
                // Rows whose cursor is 'infinity' lie above every bound:
                // counted, so they fail the run instead of never arriving.
                let infinite = if is_time {
                    format!("(SELECT count(*) FROM {from} WHERE {expr} = 'infinity')")
                } else {
                    "0::int8".to_string()
                };
                let bounds_sql = format!(
                    "SELECT (SELECT max({expr}) FROM {from} {capped}), \
                            (SELECT count(*) FROM {from} WHERE {expr} IS NULL), {infinite}, \
                            (SELECT max({expr}) FROM {from})"
                );
                // The settings and the query that reads them, in one
                // round trip.
                let (set, row) = tokio::join!(
                    biased;
                    set_cap,
                    client.query_typed_one(&bounds_sql, &[])
                );
                set.map_err(pg_err)?;
                let row = row.map_err(|e| super::errors::source_at(rel, e))?;
                let infinite: i64 = row.get(2);
                if infinite > 0 {
                    return Err(Error::source(
                        BACKEND,
                        format!(
                            "{rel}: {infinite} row(s) have cursor {} = 'infinity', which no watermark \
                             range can hold; map it in a `query:` (e.g. CASE WHEN isfinite(col) THEN col END)",
                            cursor.join("/")
                        ),
                    ));
                }
                to = apply_units_lag(cursor_value(&row, 0, &ctype)?, *lag);
                null_rows = row.get::<_, i64>(1) as u64;
                let newest = cursor_value(&row, 3, &ctype)?;
                let zoneless = matches!(cast, "timestamp" | "date");
                let why = crate::held_back::Why {
                    open_since: open_since.filter(|_| is_time),
                    hidden_open: is_time && blocked && prev.is_some(),
                    lag: *lag,
                    zone_margin_hours: (zoneless && writer_offset_minutes.is_none())
                        .then_some(WRITER_ZONE_SLACK_HOURS),
                };
                let held_note = held_back_rows(
                    &client,
                    HeldQuery {
                        rel,
                        from: &from,
                        expr: &expr,
                        cast,
                        ctype: &ctype,
                        cursor: &cursor.join("/"),
                        to: to.as_ref(),
                        prev,
                        newest: newest.as_ref(),
                        cap: cap_ts,
                        now: cap_now,
                    },
                    &why,
                )
                .await?;
                if let Some((n, note)) = held_note {
                    held_back = n;
                    notes.push(note);
                } else if is_time && open_since.is_some() && held_back_us > 1_000_000 {
                    notes.push(format!(
                        "upper bound held back to {} by a transaction open since then (rows it commits are read next run)",
                        CursorValue::TimestampTz(cap_ts.timestamp_micros())
                    ));
                }
                if !is_time && writers > 0 && lag.is_none() {
                    notes.push(format!(
                        "warning: {writers} write transaction(s) were open; rows they commit with a {} below {} \
                         will be missed. Integer cursors from sequences need `lag:` (or a timestamp cursor)",
                        cursor.join("/"),
                        to.as_ref().map(|t| t.to_string()).unwrap_or_default()
                    ));
                }
                kinds.push(PgKind::from_type(&ctype, -1));
                fields.push(Field::new(
                    CURSOR_COLUMN,
                    PgKind::from_type(&ctype, -1).data_type(),
                    true,
                ));
                select.push(format!("{expr} AS {}", quote_ident(CURSOR_COLUMN, '"')));
                // Step 4: bounds as transaction-local settings (bound values).
                let first = after.is_none();
                let lo_value = after.as_ref().and_then(|a| a.value.as_ref());
                let lo = lo_value.map(|v| v.to_sql_text()).unwrap_or_default();
                let hi = to.as_ref().map(|t| t.to_sql_text()).unwrap_or_default();
                settings = Some((
                    "SELECT set_config('highwater.lo', $1, true), set_config('highwater.hi', $2, true)",
                    lo,
                    hi,
                ));
                let lo_sql = format!("(SELECT current_setting('highwater.lo')::{cast})");
                let hi_sql = format!("(SELECT current_setting('highwater.hi')::{cast})");
                let cond = match (&to, lo_value) {
                    (None, _) if first => format!("{expr} IS NULL"),
                    (None, _) => "false".to_string(),
                    (Some(_), None) if first => format!("{expr} <= {hi_sql} OR {expr} IS NULL"),
                    (Some(_), None) => format!("{expr} <= {hi_sql}"),
                    (Some(_), Some(_)) => format!("{expr} >= {lo_sql} AND {expr} <= {hi_sql}"),
                };
                format!(
                    "COPY (SELECT {} FROM {from} WHERE {cond}) TO STDOUT (FORMAT binary)",
                    select.join(", ")
                )
            }
            Delta::ChangeTracking { after, .. } => {
                let plan = change_tracking::plan(
                    &client,
                    rel,
                    &d.names,
                    &d.kinds,
                    &req.primary_key,
                    after.as_ref(),
                )
                .await?;
                kinds.push(PgKind::Int8);
                kinds.push(PgKind::Text);
                let out = crate::change_tracking::output_schema(std::mem::take(&mut fields));
                fields = out.fields().iter().map(|f| f.as_ref().clone()).collect();
                version_to = Some(plan.version_to);
                full_reload = plan.full_reload;
                notes.extend(plan.notes);
                let _ = &select;
                plan.sql
            }
            Delta::Cdc { .. } => {
                let mut prepared = cdc_prepared.take().ok_or_else(|| {
                    Error::source(BACKEND, "the replication slot was not prepared")
                })?;
                notes.append(&mut prepared.notes);
                let plan =
                    super::cdc::plan(&client, &req.stream, rel, &d.names, &d.kinds, prepared)
                        .await?;
                kinds.push(PgKind::Int8);
                kinds.push(PgKind::Text);
                let out = crate::change_tracking::output_schema(std::mem::take(&mut fields));
                fields = out.fields().iter().map(|f| f.as_ref().clone()).collect();
                version_to = Some(plan.version_to);
                full_reload = plan.full_reload;
                plan.sql
            }
        };

        let schema: SchemaRef = Arc::new(Schema::new(fields));
        // Key columns name the row in a decoding error.
        let key = key_of(&client, req).await;
        let key_idx: Vec<usize> = key
            .iter()
            .filter_map(|k| d.names.iter().position(|n| n == k))
            .collect();
        // A full load over several connections in one snapshot, each a
        // range of the integer key; else one COPY on this connection.
        let parts = match &req.delta {
            Delta::Full if req.partitions != 1 => {
                partition::plan(&client, &from, &key, &d.names, &d.kinds, req.partitions).await?
            }
            _ => None,
        };
        let (tx, batches) = batch_channel(schema.clone());
        let batch_size = req.batch_size.max(1);
        let rel_name = rel.to_string();
        let (client, sql) = match parts {
            None => (client, sql),
            Some(p) => {
                notes.push(p.note());
                let mut readers = Vec::new();
                for (i, range) in p.ranges.iter().enumerate().skip(1) {
                    let c = connect(&self.url).await?;
                    c.batch_execute(SESSION).await.map_err(pg_err)?;
                    c.batch_execute(&p.import_sql()).await.map_err(pg_err)?;
                    readers.push((c, p.copy_sql(&select, &from, range, i == 0)));
                }
                // Every reader has imported the snapshot: the exporting
                // transaction may now end whenever its own part is read.
                for (c, part_sql) in readers {
                    let copy = c
                        .copy_out(part_sql.as_str())
                        .await
                        .map_err(|e| super::errors::source_at(rel, e))?;
                    spawn_pump(
                        c,
                        copy,
                        PumpArgs {
                            schema: schema.clone(),
                            kinds: kinds.clone(),
                            key_idx: key_idx.clone(),
                            batch_size,
                            tx: tx.clone(),
                            rel: rel_name.clone(),
                            keep: None,
                        },
                    );
                }
                let first = p.copy_sql(&select, &from, &p.ranges[0], true);
                (client, first)
            }
        };
        let set = async {
            match &settings {
                Some((st, a, b)) => client
                    .execute_typed(st, &[(a, Type::TEXT), (b, Type::TEXT)])
                    .await
                    .map(drop),
                None => Ok(()),
            }
        };
        let (set, copy) = tokio::join!(biased; set, client.copy_out(sql.as_str()));
        set.map_err(pg_err)?;
        let copy = copy.map_err(|e| super::errors::source_at(rel, e))?;
        spawn_pump(
            client,
            copy,
            PumpArgs {
                schema: schema.clone(),
                kinds,
                key_idx,
                batch_size,
                tx,
                rel: rel_name,
                keep: Some(self.idle.clone()),
            },
        );
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

/// What a pump task needs besides its connection and COPY.
struct PumpArgs {
    schema: SchemaRef,
    kinds: Vec<PgKind>,
    key_idx: Vec<usize>,
    batch_size: usize,
    tx: mpsc::Sender<Result<RecordBatch>>,
    rel: String,
    /// Where the session goes once its transaction ended (before the
    /// batch stream ends, so the next call of the run finds it).
    keep: Option<Idle>,
}

/// Decode one COPY into batches on its own task, then end the read
/// transaction; an error goes down the channel.
fn spawn_pump(client: Client, copy: tokio_postgres::CopyOutStream, a: PumpArgs) {
    let PumpArgs {
        schema: task_schema,
        kinds,
        key_idx,
        batch_size,
        tx,
        rel: rel_name,
        keep: idle,
    } = a;
    tokio::spawn(async move {
        let res = pump(
            copy,
            &task_schema,
            kinds,
            &key_idx,
            batch_size,
            &tx,
            &rel_name,
        )
        .await;
        match res {
            Ok(()) => match client.batch_execute("COMMIT").await {
                Ok(()) => {
                    if let Some(idle) = idle {
                        keep(&idle, client);
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(pg_err(e))).await;
                }
            },
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
}

/// Where a watermark read looks for rows above its bound.
struct HeldQuery<'a> {
    rel: &'a Relation,
    from: &'a str,
    expr: &'a str,
    cast: &'a str,
    ctype: &'a Type,
    cursor: &'a str,
    /// The new watermark.
    to: Option<&'a CursorValue>,
    prev: Option<&'a CursorValue>,
    /// The greatest cursor value in the snapshot.
    newest: Option<&'a CursorValue>,
    cap: DateTime<Utc>,
    now: DateTime<Utc>,
}

/// Rows above the new watermark, counted in the snapshot when the newest
/// value lies above it (one count over the cursor index range), and the
/// note that says why and when they come.
async fn held_back_rows(
    client: &Client,
    h: HeldQuery<'_>,
    why: &crate::held_back::Why,
) -> Result<Option<(u64, String)>> {
    let lower = h.to.or(h.prev);
    let above = match (h.newest, lower) {
        (Some(n), Some(l)) => n.compare(l) == Some(std::cmp::Ordering::Greater),
        (Some(_), None) => true,
        _ => false,
    };
    if !above {
        return Ok(None);
    }
    let (expr, cast) = (h.expr, h.cast);
    let ahead = h.now + chrono::Duration::hours(WRITER_ZONE_AHEAD_HOURS);
    let future = match cast {
        "timestamptz" => Some(CursorValue::TimestampTz(h.now.timestamp_micros()).to_sql_text()),
        "timestamp" => Some(CursorValue::Timestamp(ahead.timestamp_micros()).to_sql_text()),
        "date" => Some(ahead.date_naive().to_string()),
        _ => None,
    };
    let future_sql = match future {
        Some(_) => format!("{expr} > $1::text::{cast}"),
        None => "$1::text IS NOT NULL AND false".to_string(),
    };
    let lower_text = lower.map(|l| l.to_sql_text());
    let above_sql = match lower_text {
        Some(_) => format!("{expr} > $2::text::{cast}"),
        None => format!("$2::text IS NULL AND {expr} IS NOT NULL"),
    };
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE {future_sql}), max({expr}) FROM {} WHERE {above_sql}",
                h.from
            ),
            &[&future.unwrap_or_default(), &lower_text],
        )
        .await
        .map_err(|e| super::errors::source_at(h.rel, e))?;
    let counted = crate::held_back::Counted {
        rows: row.get::<_, i64>(0).max(0) as u64,
        future_rows: row.get::<_, i64>(1).max(0) as u64,
        newest: cursor_value(&row, 2, h.ctype)?,
    };
    let above = match lower {
        Some(l) => l.to_string(),
        None => CursorValue::TimestampTz(h.cap.timestamp_micros()).to_string(),
    };
    Ok(crate::held_back::note(h.cursor, &above, h.now, why, &counted).map(|n| (counted.rows, n)))
}

/// A row named by its key (`id=7`), or by its number when there is none.
fn row_name(
    tuple: &[u8],
    kinds: &[PgKind],
    schema: &SchemaRef,
    key_idx: &[usize],
    number: u64,
) -> String {
    use arrow_cast::display::{ArrayFormatter, FormatOptions};
    let mut fields: Vec<Option<&[u8]>> = Vec::with_capacity(kinds.len());
    let mut p = 2usize;
    while fields.len() < kinds.len() && p + 4 <= tuple.len() {
        let len = i32::from_be_bytes([tuple[p], tuple[p + 1], tuple[p + 2], tuple[p + 3]]);
        p += 4;
        if len < 0 {
            fields.push(None);
        } else {
            fields.push(tuple.get(p..p + len as usize));
            p += len as usize;
        }
    }
    let mut parts = Vec::new();
    for &k in key_idx {
        let text = match fields.get(k).copied().flatten() {
            None => "NULL".to_string(),
            Some(v) => {
                let mut col = Col::new(kinds[k].clone(), 1);
                match col.push(v) {
                    Ok(()) => {
                        let a = col.finish();
                        ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())
                            .map(|f| f.value(0).to_string())
                            .unwrap_or_else(|_| "?".into())
                    }
                    Err(_) => "?".into(),
                }
            }
        };
        parts.push(format!("{}={text}", schema.field(k).name()));
    }
    if parts.is_empty() {
        format!("row {number}")
    } else {
        format!("row {} (row {number} of the read)", parts.join(", "))
    }
}

/// Parse the binary COPY stream into batches of `batch_size` rows (or
/// [`crate::util::BATCH_BYTES`] of values).
async fn pump(
    copy: tokio_postgres::CopyOutStream,
    schema: &SchemaRef,
    kinds: Vec<PgKind>,
    key_idx: &[usize],
    batch_size: usize,
    tx: &mpsc::Sender<Result<RecordBatch>>,
    rel: &str,
) -> Result<()> {
    let mut copy = Box::pin(copy);
    let mut buf = BytesMut::new();
    let mut header_done = false;
    let ncols = kinds.len();
    let mut cols: Vec<Col> = kinds
        .iter()
        .map(|k| Col::new(k.clone(), batch_size))
        .collect();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let mut total = 0u64;
    let bad = |m: String| Error::source(BACKEND, format!("{rel}: {m}"));
    let mut finished = false;
    while !finished {
        match copy.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk.map_err(pg_err)?),
            None => finished = true,
        }
        if !header_done {
            if buf.len() < 19 {
                if finished {
                    return Err(bad("COPY ended before its header".into()));
                }
                continue;
            }
            if &buf[..11] != b"PGCOPY\n\xff\r\n\0" {
                return Err(bad("unexpected COPY signature".into()));
            }
            let ext = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
            if buf.len() < 19 + ext {
                continue;
            }
            buf.advance(19 + ext);
            header_done = true;
        }
        loop {
            // Is one whole tuple in the buffer?
            if buf.len() < 2 {
                break;
            }
            let n = i16::from_be_bytes([buf[0], buf[1]]);
            if n == -1 {
                buf.advance(2);
                finished = true;
                break;
            }
            if n as usize != ncols {
                return Err(bad(format!("COPY row has {n} fields, expected {ncols}")));
            }
            let mut pos = 2usize;
            let mut complete = true;
            for _ in 0..ncols {
                if buf.len() < pos + 4 {
                    complete = false;
                    break;
                }
                let len = i32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]);
                pos += 4;
                if len > 0 {
                    pos += len as usize;
                }
            }
            if !complete || buf.len() < pos {
                break;
            }
            let mut p = 2usize;
            for (i, col) in cols.iter_mut().enumerate() {
                let len = i32::from_be_bytes([buf[p], buf[p + 1], buf[p + 2], buf[p + 3]]);
                p += 4;
                if len < 0 {
                    col.push_null();
                } else {
                    let v = &buf[p..p + len as usize];
                    if let Err(m) = col.push(v) {
                        return Err(bad(format!(
                            "column {}, {}: {m}",
                            schema.field(i).name(),
                            row_name(&buf[..pos], &kinds, schema, key_idx, total + 1)
                        )));
                    }
                    p += len as usize;
                }
            }
            buf.advance(pos);
            rows += 1;
            total += 1;
            bytes += pos;
            if rows == batch_size || bytes >= crate::util::BATCH_BYTES {
                if !emit(
                    tx,
                    schema,
                    cols.iter_mut().map(Col::finish).collect(),
                    BACKEND,
                )
                .await?
                {
                    return Ok(());
                }
                rows = 0;
                bytes = 0;
            }
        }
    }
    if rows > 0 {
        emit(
            tx,
            schema,
            cols.iter_mut().map(Col::finish).collect(),
            BACKEND,
        )
        .await?;
    }
    Ok(())
}

/// `highwater verify`'s check inside the database: the row count and the
/// sum of a 64-bit hash of each row's text (`ROW(c1::text, …)::text`, so
/// NULL and '' differ), in one pinned session (UTC, ISO styles). Equal
/// answers from two PostgreSQL tables mean equal multisets of rows, bar a
/// hash collision; the rows never leave the databases.
pub async fn checksum(url: &str, rel: &Relation, columns: &[String]) -> Result<(i64, String)> {
    let client = checksum_session(url).await?;
    let sql = format!(
        "SELECT count(*), {} FROM {}",
        row_hash_sum(columns),
        relation_sql(rel)
    );
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| Error::source("postgres", e))?;
    Ok((row.get(0), row.get(1)))
}

/// A connection whose text rendering of values does not depend on the
/// server's or the role's settings: both sides of a checksum render alike.
/// Without JIT: a bucketed checksum over 2M rows spent 1.9 s of its 5 s
/// compiling its expressions (measured with EXPLAIN ANALYZE); the
/// whole-table sum is not costly enough to be compiled either way.
async fn checksum_session(url: &str) -> Result<Client> {
    let client = connect(url).await?;
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
             SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 3; SET jit = off",
        )
        .await
        .map_err(|e| Error::source("postgres", e))?;
    Ok(client)
}

/// `sum` of a 64-bit hash of each row's text (the columns in order), as
/// numeric text; `0` for no rows.
fn row_hash_sum(columns: &[String]) -> String {
    format!(
        "coalesce(sum(hashtextextended({}, 0)::numeric), 0)::text",
        row_text(columns)
    )
}

/// `ROW(c1::text, …)::text`: a row's text, in which NULL and '' differ.
fn row_text(columns: &[String]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("{}::text", quote_ident(c, '"')))
        .collect();
    format!("ROW({})::text", cols.join(", "))
}

/// Checksums of key ranges of a table with an integer key, computed
/// inside the database over one connection (`verify`'s bisection).
pub struct KeyChecksums {
    client: Client,
}

impl KeyChecksums {
    pub async fn open(url: &str) -> Result<KeyChecksums> {
        Ok(KeyChecksums {
            client: checksum_session(url).await?,
        })
    }

    /// The smallest and greatest value of the integer column `key` in `rel`.
    pub async fn bounds(&self, rel: &Relation, key: &str) -> Result<Option<(i64, i64)>> {
        let k = quote_ident(key, '"');
        let row = self
            .client
            .query_one(
                &format!(
                    "SELECT min({k})::int8, max({k})::int8 FROM {}",
                    relation_sql(rel)
                ),
                &[],
            )
            .await
            .map_err(|e| Error::source("postgres", e))?;
        let (lo, hi): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
        Ok(lo.zip(hi))
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
        let k = quote_ident(key, '"');
        // Integer arithmetic is much faster; numeric where `k - lo` could
        // leave the 64-bit range.
        let bucket = match hi.checked_sub(lo) {
            Some(_) => format!("(({k})::int8 - $1::int8) / $3::int8"),
            None => format!("floor((({k})::numeric - $1::int8) / $3::int8)::int8"),
        };
        let sql = format!(
            "SELECT {bucket} AS b, count(*), {} \
             FROM {} WHERE {k} >= $1::int8 AND {k} <= $2::int8 GROUP BY 1 ORDER BY 1",
            row_hash_sum(columns),
            relation_sql(rel)
        );
        let rows = self
            .client
            .query(&sql, &[&lo, &hi, &step.max(1)])
            .await
            .map_err(|e| Error::source("postgres", e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

/// The bucket of a row by the hash of its key's text: `0..parts`. Any key
/// type, composite keys too; both sides of one backend agree.
fn hash_bucket(key: &[String], parts: i64) -> String {
    format!(
        "((hashtextextended({}, 7) % {parts}) + {parts}) % {parts}",
        row_text(key)
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
            "SELECT {} AS b, count(*), {} FROM {} GROUP BY 1 ORDER BY 1",
            hash_bucket(key, parts.max(1)),
            row_hash_sum(columns),
            relation_sql(rel)
        );
        let rows = self
            .client
            .query(&sql, &[])
            .await
            .map_err(|e| Error::source("postgres", e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
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
    let k = quote_ident(key, '"');
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
