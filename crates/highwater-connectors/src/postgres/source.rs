//! [`PgSource`]: describe, and read one delta through binary `COPY`.

use std::error::Error as _;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures::StreamExt;
use highwater_core::{
    CURSOR_COLUMN, CursorValue, Delta, Error, Extract, Lag, ReadRequest, Relation, Result, Source,
    TableInfo,
};
use tokio::sync::mpsc;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use super::change_tracking;
use super::types::{Col, PgKind};
use crate::util::{batch_channel, emit, quote_ident, redact_url};

const BACKEND: &str = "postgres";

/// Reads from one PostgreSQL database; one connection per read.
pub struct PgSource {
    url: String,
}

impl PgSource {
    pub fn new(url: &str) -> Self {
        PgSource {
            url: url.to_string(),
        }
    }
}

pub(super) fn pg_err(e: tokio_postgres::Error) -> Error {
    // The server's message (with detail) is what a user can act on.
    match e.as_db_error() {
        Some(db) => Error::source(BACKEND, db.message()),
        None => Error::source(BACKEND, e),
    }
}

/// Connect (TLS per `sslmode`, see [`super::tls`]); the connection task
/// runs on the runtime until the client drops.
pub async fn connect(url: &str) -> Result<Client> {
    let conn_err = |message: String| Error::Connection {
        target: redact_url(url),
        message,
    };
    let (pg_url, mode) = super::tls::parse(url);
    match super::tls::client_config(&mode).map_err(conn_err)? {
        None => {
            let (client, conn) = tokio_postgres::connect(&pg_url, NoTls)
                .await
                .map_err(|e| conn_err(e.to_string()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "PostgreSQL connection closed.");
                }
            });
            Ok(client)
        }
        Some(config) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
            let (client, conn) = tokio_postgres::connect(&pg_url, tls).await.map_err(|e| {
                conn_err(format!(
                    "{e}{}",
                    e.source().map(|s| format!(": {s}")).unwrap_or_default()
                ))
            })?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "PostgreSQL connection closed.");
                }
            });
            Ok(client)
        }
    }
}

fn relation_sql(rel: &Relation) -> String {
    match rel {
        Relation::Table {
            schema: Some(s),
            name,
        } => format!("{}.{}", quote_ident(s, '"'), quote_ident(name, '"')),
        Relation::Table { schema: None, name } => quote_ident(name, '"'),
        Relation::Query(q) => format!("({q}) AS q"),
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
            let m = pg_err(e).to_string();
            if m.contains("does not exist") && matches!(rel, Relation::Table { .. }) {
                Error::source(BACKEND, format!("table {rel} not found ({m})"))
            } else {
                Error::source(BACKEND, format!("{rel}: {m}"))
            }
        })?;
    let cols = st.columns();
    Ok(Described {
        names: cols.iter().map(|c| c.name().to_string()).collect(),
        kinds: cols
            .iter()
            .map(|c| PgKind::from_type(c.type_(), c.type_modifier()))
            .collect(),
        types: cols.iter().map(|c| c.type_().clone()).collect(),
    })
}

/// The cast used to read a bound back from a setting, per cursor type.
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
    let get_err = |e: tokio_postgres::Error| Error::source(BACKEND, e);
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
        let client = connect(&self.url).await?;
        let d = describe_client(&client, relation).await?;
        let fields: Vec<Field> = d
            .names
            .iter()
            .zip(&d.kinds)
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect();
        let primary_key = match relation {
            Relation::Table { schema, name } => {
                let qualified = match schema {
                    Some(s) => format!("{}.{}", quote_ident(s, '"'), quote_ident(name, '"')),
                    None => quote_ident(name, '"'),
                };
                client
                    .query(
                        "SELECT a.attname::text FROM pg_index i
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                         WHERE i.indrelid = to_regclass($1) AND i.indisprimary
                         ORDER BY array_position(i.indkey, a.attnum)",
                        &[&qualified],
                    )
                    .await
                    .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
                    .unwrap_or_default()
            }
            Relation::Query(_) => vec![],
        };
        Ok(TableInfo {
            schema: Arc::new(Schema::new(fields)),
            primary_key,
        })
    }

    async fn read(&self, req: &ReadRequest) -> Result<Extract> {
        let client = connect(&self.url).await?;
        let rel = &req.relation;
        let mut notes = Vec::new();
        let mut version_to = None;
        let mut full_reload = !matches!(&req.delta, Delta::Watermark { after: Some(_), .. });

        // Change tracking: set up and prune before the snapshot.
        if let Delta::ChangeTracking { retention_secs, .. } = &req.delta {
            let n =
                change_tracking::prepare(&client, rel, &req.primary_key, *retention_secs).await?;
            notes.extend(n);
        }

        // Step 1 (watermark only): the late-commit cap, before the snapshot.
        let mut cap: Option<(DateTime<Utc>, i64, i64)> = None;
        if let Delta::Watermark { lag, .. } = &req.delta {
            let row = client
                .query_one(
                    "SELECT clock_timestamp(),
                            (SELECT min(xact_start) FROM pg_stat_activity
                              WHERE datname = current_database() AND pid <> pg_backend_pid()
                                AND xact_start IS NOT NULL AND backend_type = 'client backend'),
                            (SELECT count(*) FROM pg_stat_activity
                              WHERE datname = current_database() AND pid <> pg_backend_pid()
                                AND backend_xid IS NOT NULL)",
                    &[],
                )
                .await
                .map_err(pg_err)?;
            let now: DateTime<Utc> = row.get(0);
            let oldest: Option<DateTime<Utc>> = row.get(1);
            let writers: i64 = row.get(2);
            let mut c = oldest.map_or(now, |o| o.min(now));
            if let Some(Lag::Micros(us)) = lag {
                c = c.min(now - chrono::Duration::microseconds(*us));
            }
            let held_back_us = (now - c).num_microseconds().unwrap_or(i64::MAX);
            cap = Some((c, writers, held_back_us));
        }

        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(pg_err)?;
        let d = describe_client(&client, rel).await?;
        let mut select: Vec<String> = d
            .names
            .iter()
            .zip(&d.kinds)
            .map(|(n, k)| match k {
                PgKind::AsText => format!("{}::text", quote_ident(n, '"')),
                _ => quote_ident(n, '"'),
            })
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
        let mut null_rows = 0u64;
        let sql = match &req.delta {
            Delta::Full => format!(
                "COPY (SELECT {} FROM {from}) TO STDOUT (FORMAT binary)",
                select.join(", ")
            ),
            Delta::Watermark { cursor, after, lag } => {
                let mut ctype = None;
                for c in cursor {
                    let Some(i) = d.names.iter().position(|n| n == c) else {
                        return Err(Error::config(
                            format!("stream {}", req.stream),
                            format!(
                                "cursor column {c} not found in {rel} (columns: {})",
                                d.names.join(", ")
                            ),
                        ));
                    };
                    if cursor_cast(&d.types[i]).is_none() {
                        return Err(Error::config(
                            format!("stream {}", req.stream),
                            format!(
                                "cursor column {c} has type {}; use a timestamp, timestamptz, date or integer column",
                                d.types[i]
                            ),
                        ));
                    }
                    ctype.get_or_insert_with(|| d.types[i].clone());
                }
                let ctype = ctype.ok_or_else(|| {
                    Error::config(format!("stream {}", req.stream), "cursor is empty")
                })?;
                let cast = cursor_cast(&ctype).unwrap_or("text");
                let quoted: Vec<String> = cursor.iter().map(|c| quote_ident(c, '"')).collect();
                let expr = if quoted.len() == 1 {
                    quoted[0].clone()
                } else {
                    format!("COALESCE({})", quoted.join(", "))
                };
                let (cap_ts, writers, held_back_us) = cap.unwrap_or((Utc::now(), 0, 0));
                let is_time = cast != "int8";
                // Step 3: the new upper bound, in the snapshot.
                client
                    .execute(
                        "SELECT set_config('highwater.cap', $1, true)",
                        &[&CursorValue::TimestampTz(cap_ts.timestamp_micros()).to_sql_text()],
                    )
                    .await
                    .map_err(pg_err)?;
                // Two scalar subqueries, each answerable from an index on the
                // cursor (a FILTER clause would force a full scan).
                let capped = if is_time {
                    format!(
                        "WHERE {expr} <= (SELECT current_setting('highwater.cap')::timestamptz)"
                    )
                } else {
                    String::new()
                };
                let row = client
                    .query_one(
                        &format!(
                            "SELECT (SELECT max({expr}) FROM {from} {capped}), \
                                    (SELECT count(*) FROM {from} WHERE {expr} IS NULL)"
                        ),
                        &[],
                    )
                    .await
                    .map_err(|e| Error::source(BACKEND, format!("{rel}: {}", pg_err(e))))?;
                to = apply_units_lag(cursor_value(&row, 0, &ctype)?, *lag);
                null_rows = row.get::<_, i64>(1) as u64;
                if is_time && held_back_us > 1_000_000 {
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
                client
                    .execute(
                        "SELECT set_config('highwater.lo', $1, true), set_config('highwater.hi', $2, true)",
                        &[&lo, &hi],
                    )
                    .await
                    .map_err(pg_err)?;
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
        };

        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let copy = client
            .copy_out(sql.as_str())
            .await
            .map_err(|e| Error::source(BACKEND, format!("{rel}: {}", pg_err(e))))?;
        let (tx, batches) = batch_channel(schema.clone());
        let task_schema = schema.clone();
        let batch_size = req.batch_size.max(1);
        let rel_name = rel.to_string();
        tokio::spawn(async move {
            let res = pump(copy, &task_schema, kinds, batch_size, &tx, &rel_name).await;
            match res {
                Ok(()) => {
                    if let Err(e) = client.batch_execute("COMMIT").await {
                        let _ = tx.send(Err(pg_err(e))).await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        Ok(Extract {
            schema,
            to,
            version_to,
            full_reload,
            null_rows,
            notes,
            batches,
        })
    }
}

/// Parse the binary COPY stream into batches of `batch_size` rows.
async fn pump(
    copy: tokio_postgres::CopyOutStream,
    schema: &SchemaRef,
    kinds: Vec<PgKind>,
    batch_size: usize,
    tx: &mpsc::Sender<Result<RecordBatch>>,
    rel: &str,
) -> Result<()> {
    let mut copy = Box::pin(copy);
    let mut buf = BytesMut::new();
    let mut header_done = false;
    let ncols = kinds.len();
    let mut cols: Vec<Col> = kinds.iter().map(|k| Col::new(*k, batch_size)).collect();
    let mut rows = 0usize;
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
                    col.push(v).map_err(|m| {
                        bad(format!(
                            "column {} row {}: {m}",
                            schema.field(i).name(),
                            total + 1
                        ))
                    })?;
                    p += len as usize;
                }
            }
            buf.advance(pos);
            rows += 1;
            total += 1;
            if rows == batch_size {
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
