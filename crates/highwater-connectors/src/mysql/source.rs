//! [`MySource`]: describe, and read one delta in one consistent snapshot.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use futures::StreamExt;
use highwater_core::{Delta, Error, Extract, ReadRequest, Relation, Result, Source, TableInfo};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Value};

use super::change_tracking;
use super::types::{Col, MyKind};
use crate::util::{batch_channel, quote_ident, redact_url};

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
    match e {
        mysql_async::Error::Server(s) => Error::source(BACKEND, s.message),
        other => Error::source(BACKEND, other),
    }
}

pub(super) async fn connect(url: &str) -> Result<Conn> {
    let conn_err = |m: String| Error::Connection {
        target: redact_url(url),
        message: m,
    };
    let opts = Opts::from_url(url).map_err(|e| conn_err(e.to_string()))?;
    let mut conn = Conn::new(opts).await.map_err(|e| conn_err(e.to_string()))?;
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .map_err(my_err)?;
    Ok(conn)
}

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
        Relation::Query(qs) => format!("({qs}) AS q"),
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
            let m = my_err(e).to_string();
            if m.contains("doesn't exist") && matches!(rel, Relation::Table { .. }) {
                Error::source(BACKEND, format!("table {rel} not found ({m})"))
            } else {
                Error::source(BACKEND, format!("{rel}: {m}"))
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

#[async_trait]
impl Source for MySource {
    async fn describe(&self, relation: &Relation) -> Result<TableInfo> {
        let mut conn = connect(&self.url).await?;
        let cols = describe_conn(&mut conn, relation).await?;
        let primary_key = match relation {
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
        };
        let _ = conn.disconnect().await;
        Ok(TableInfo {
            schema: Arc::new(Schema::new(
                cols.iter()
                    .map(|(n, k)| Field::new(n, k.data_type(), true))
                    .collect::<Vec<_>>(),
            )),
            primary_key,
        })
    }

    async fn read(&self, req: &ReadRequest) -> Result<Extract> {
        let mut conn = connect(&self.url).await?;
        let rel = &req.relation;
        let mut notes = Vec::new();
        let mut fresh = false;
        if let Delta::ChangeTracking { retention_secs, .. } = &req.delta {
            let (n, f) =
                change_tracking::prepare(&mut conn, rel, &req.primary_key, *retention_secs).await?;
            notes.extend(n);
            fresh = f;
        }
        conn.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(my_err)?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(my_err)?;
        let cols = describe_conn(&mut conn, rel).await?;
        let mut kinds: Vec<MyKind> = cols.iter().map(|c| c.1).collect();
        let mut fields: Vec<Field> = cols
            .iter()
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect();
        let mut version_to = None;
        let mut full_reload = true;
        let (sql, params): (String, Vec<Value>) = match &req.delta {
            Delta::Full => (format!("SELECT * FROM {}", relation_sql(rel)), vec![]),
            Delta::Watermark { .. } => {
                return Err(Error::config(
                    format!("stream {}", req.stream),
                    "mode watermark on MariaDB/MySQL is not supported yet; use full or change_tracking",
                ));
            }
            Delta::ChangeTracking { after, .. } => {
                let plan =
                    change_tracking::plan(&mut conn, rel, &cols, &req.primary_key, *after, fresh)
                        .await?;
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
        tokio::spawn(async move {
            let res = pump(
                &mut conn,
                &sql,
                params,
                &task_schema,
                kinds,
                batch_size,
                &tx,
                &rel_name,
            )
            .await;
            match res {
                Ok(()) => {
                    if let Err(e) = conn.query_drop("COMMIT").await {
                        let _ = tx.send(Err(my_err(e))).await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
            let _ = conn.disconnect().await;
        });
        Ok(Extract {
            schema,
            to: None,
            version_to,
            full_reload,
            null_rows: 0,
            notes,
            batches,
        })
    }
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
        .map_err(|e| bad(my_err(e).to_string()))?;
    let Some(mut rows) = result.stream::<Row>().await.map_err(my_err)? else {
        return Ok(());
    };
    let mut cols: Vec<Col> = kinds.iter().map(|k| Col::new(*k, batch_size)).collect();
    let mut n = 0usize;
    let mut total = 0u64;
    while let Some(row) = rows.next().await {
        let row = row.map_err(my_err)?;
        for (i, col) in cols.iter_mut().enumerate() {
            let v = row.as_ref(i).unwrap_or(&Value::NULL);
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
        if n == batch_size {
            let arrays = cols.iter_mut().map(Col::finish).collect();
            let batch =
                RecordBatch::try_new(schema.clone(), arrays).map_err(|e| bad(e.to_string()))?;
            if tx.send(Ok(batch)).await.is_err() {
                return Ok(());
            }
            n = 0;
        }
    }
    if n > 0 {
        let arrays = cols.iter_mut().map(Col::finish).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| bad(e.to_string()))?;
        let _ = tx.send(Ok(batch)).await;
    }
    Ok(())
}
