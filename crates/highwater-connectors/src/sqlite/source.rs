//! [`SqliteSource`]: describe and read in one read transaction.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use highwater_core::{
    CURSOR_COLUMN, CursorValue, Delta, Error, Extract, Lag, ReadRequest, Relation, Result, Source,
    TableInfo,
};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
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

pub(super) fn open(path: &Path) -> Result<Connection> {
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
        Relation::Query(q) => format!("({q}) AS q"),
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

/// The `chrono` format of a text timestamp shaped like `t` (to seconds).
fn text_shape(t: &str) -> String {
    let sep = if t.as_bytes().get(10) == Some(&b'T') {
        "T"
    } else {
        " "
    };
    format!("%Y-%m-%d{sep}%H:%M:%S")
}

/// Hold the bound back by `lag`. Text timestamps are compared as text, so
/// the held-back bound is written in the same shape as the stored value.
fn apply_lag(to: CursorValue, lag: Option<Lag>, now: chrono::DateTime<chrono::Utc>) -> CursorValue {
    match (to, lag) {
        (CursorValue::Int(i), Some(Lag::Units(n))) => CursorValue::Int(i.saturating_sub(n)),
        (CursorValue::Text(t), Some(Lag::Micros(us))) => {
            let limit = now
                .checked_sub_signed(chrono::Duration::microseconds(us))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
            let cap = limit.format(&text_shape(&t)).to_string();
            if cap < t {
                CursorValue::Text(cap)
            } else {
                CursorValue::Text(t)
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
                Delta::Watermark { cursor, after, lag } => {
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
                    let now = chrono::Utc::now();
                    let max = newest.clone().map(|m| apply_lag(m, *lag, now));
                    // Rows above the bound (only `lag:` holds it back here).
                    let lower = max
                        .clone()
                        .or_else(|| after.as_ref().and_then(|a| a.value.clone()));
                    if let (Some(n), Some(l)) = (&newest, &lower)
                        && n.compare(l) == Some(std::cmp::Ordering::Greater)
                    {
                        let future = match l {
                            CursorValue::Text(t) => {
                                Value::Text(now.format(&text_shape(t)).to_string())
                            }
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
        let mut total = 0u64;
        while let Some(row) = rows.next().map_err(|e| sql_err(rel, e))? {
            for (i, b) in builders.iter_mut().enumerate().take(n) {
                let v: ValueRef<'_> = row.get_ref(i).map_err(|e| sql_err(rel, e))?;
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
            if count == cap {
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
            let cols = describe_conn(&conn, &rel)?;
            let pk = match &rel {
                Relation::Table { name, .. } => primary_key(&conn, name).unwrap_or_default(),
                Relation::Query(_) => vec![],
            };
            Ok::<_, Error>((cols, pk))
        })
        .await
        .map_err(|e| Error::source(BACKEND, e))??;
        Ok(TableInfo {
            schema: Arc::new(schema_of(&cols.0)),
            primary_key: cols.1,
        })
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
