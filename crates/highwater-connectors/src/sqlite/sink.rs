//! [`SqliteSink`]: a SQLite table as a target. Rows go into a `TEMP`
//! staging table with multi-row INSERTs of bound values, on a blocking
//! thread; one `BEGIN IMMEDIATE … COMMIT` creates the target (and
//! `_highwater_commits`) if missing,
//! applies the rows, records the commit and drops staging (SQLite DDL is
//! transactional). See `crate::table` for the statements.
//!
//! A crash loses the connection and with it the temporary staging table;
//! an open transaction is rolled back by SQLite's journal on next open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use async_trait::async_trait;
use highwater_core::{Committed, Error, Recovered, Result, Sink, SinkWriter, WriteRequest};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use crate::table::{Cell, Flavor, Layout, cell};

/// A SQLite file that streams write tables into (created if missing).
pub struct SqliteSink {
    path: PathBuf,
}

/// Rows per INSERT statement: SQLite binds at most 32766 values.
const MAX_PARAMS: usize = 30_000;

impl SqliteSink {
    pub fn new(path: PathBuf) -> SqliteSink {
        SqliteSink { path }
    }

    fn layout(
        &self,
        target: &str,
        stream: &str,
        run_id: &str,
        req: Option<&WriteRequest>,
    ) -> Result<Layout> {
        let schema = req
            .map(|r| r.schema.clone())
            .unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()));
        let layout = Layout::new(
            Flavor::Sqlite,
            target,
            stream,
            run_id,
            schema,
            req.and_then(|r| r.table.as_ref()),
        )?;
        if let Some(s) = &layout.target.schema
            && s != "main"
        {
            return Err(Error::config(
                "into",
                format!(
                    "`{target}`: a SQLite target has no schemas; write `into: table` (or `main.table`)"
                ),
            ));
        }
        Ok(layout)
    }

    fn name(&self, target: &str) -> String {
        format!("sqlite://{} table {target}", self.path.display())
    }
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Connection {
        target: format!("sqlite://{}", path.display()),
        message: e.to_string(),
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| Error::sink(path.display(), e))?;
    Ok(conn)
}

/// Run `f` on the connection on a blocking thread.
async fn blocking<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    what: String,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(|e| Error::sink(&what, e))
    })
    .await
    .map_err(|e| Error::sink("sqlite", e))?
}

#[async_trait]
impl Sink for SqliteSink {
    async fn begin(&self, req: WriteRequest) -> Result<Box<dyn SinkWriter>> {
        let layout = self.layout(&req.target, &req.stream, &req.run_id, Some(&req))?;
        if layout.procedure.is_some() {
            return Err(Error::config(
                "sink.sqlWriterStoredProcedureName",
                "SQLite has no stored procedures; copy into a table (upsert with upsertSettings.keys) instead",
            ));
        }
        let conn = Arc::new(Mutex::new(open(&self.path)?));
        // Only the temporary database is written before the commit: the
        // source may be this same file, still reading in its snapshot, and
        // a write to the main database would wait for that reader while the
        // reader waits for us.
        let ddl = layout.create_staging();
        blocking(&conn, self.name(&req.target), move |c| {
            c.execute_batch(&ddl)
        })
        .await?;
        Ok(Box::new(SqliteWriter {
            target: self.name(&req.target),
            conn,
            layout,
            req,
            rows: 0,
        }))
    }

    async fn recover(
        &self,
        stream: &str,
        run_id: &str,
        target: &str,
        _owned: bool,
    ) -> Result<Recovered> {
        // A name this sink would refuse was never published by it (e.g.
        // the stream wrote files before its target changed).
        let Ok(layout) = self.layout(target, stream, run_id, None) else {
            return Ok(Recovered::NotPublished);
        };
        let conn = Arc::new(Mutex::new(open(&self.path)?));
        let (create, select) = (layout.create_commits(), layout.select_commit());
        let (stream, run_id) = (stream.to_string(), run_id.to_string());
        let info: Option<String> = blocking(&conn, self.name(target), move |c| {
            c.execute_batch(&create)?;
            let mut st = c.prepare(&select)?;
            let mut rows = st.query([&stream, &run_id])?;
            Ok(match rows.next()? {
                Some(r) => Some(r.get(0)?),
                None => None,
            })
        })
        .await?;
        Ok(match info {
            Some(info) => Recovered::Published { info },
            None => Recovered::NotPublished,
        })
    }

    /// Staging is a `TEMP` table; the target changes only in the commit's
    /// transaction.
    fn stages_privately(&self) -> bool {
        true
    }

    async fn check(&self) -> Result<String> {
        let conn = Arc::new(Mutex::new(open(&self.path)?));
        let path = self.path.display().to_string();
        blocking(&conn, format!("sqlite://{path}"), move |c| {
            // Writable: take the write lock, then give it back.
            c.execute_batch("BEGIN IMMEDIATE; ROLLBACK")?;
            let n: i64 = c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )?;
            Ok(format!("SQLite {path}: writable ({n} tables)"))
        })
        .await
    }
}

struct SqliteWriter {
    target: String,
    conn: Arc<Mutex<Connection>>,
    layout: Layout,
    req: WriteRequest,
    rows: u64,
}

fn value(c: Cell) -> Value {
    match c {
        Cell::Null => Value::Null,
        Cell::Bool(b) => Value::Integer(b.into()),
        Cell::Int(v) => Value::Integer(v),
        Cell::UInt(v) => match i64::try_from(v) {
            Ok(v) => Value::Integer(v),
            Err(_) => Value::Text(v.to_string()),
        },
        Cell::Float(v) => Value::Real(v),
        Cell::Text(s) | Cell::Decimal(s) => Value::Text(s),
        Cell::Bytes(b) => Value::Blob(b),
        Cell::Date(d) => Value::Text(d.format("%Y-%m-%d").to_string()),
        Cell::Timestamp(ts, utc) => {
            let mut s = Cell::timestamp_text(&ts);
            if utc {
                s.push_str("+00:00");
            }
            Value::Text(s)
        }
        Cell::Time(t) => Value::Text(t.format("%H:%M:%S%.f").to_string()),
    }
}

#[async_trait]
impl SinkWriter for SqliteWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let width = batch.num_columns() + 1;
        let mut values = Vec::with_capacity(n * width);
        for i in 0..n {
            for col in batch.columns() {
                values.push(value(cell(col, i)?));
            }
            values.push(Value::Integer(self.rows as i64 + i as i64));
        }
        self.rows += n as u64;
        let per = (MAX_PARAMS / width).max(1);
        let head = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.layout.staging_sql(),
            self.layout.staging_columns()
        );
        let tuple = format!("({})", vec!["?"; width].join(", "));
        blocking(&self.conn, self.target.clone(), move |c| {
            let tx = c.transaction()?;
            for chunk in values.chunks(per * width) {
                let rows = chunk.len() / width;
                let sql = format!("{head}{}", vec![tuple.as_str(); rows].join(", "));
                let mut st = tx.prepare_cached(&sql)?;
                st.execute(rusqlite::params_from_iter(chunk.iter()))?;
            }
            tx.commit()
        })
        .await
    }

    async fn commit(self: Box<Self>, info: &str) -> Result<Committed> {
        // Data Factory's preCopyScript first (after the target exists: it
        // may be the script's table), in the commit transaction.
        let script = self
            .layout
            .pre_copy_script
            .clone()
            .map(|s| vec![self.layout.create_target(), s]);
        let statements: Vec<String> = script
            .into_iter()
            .flatten()
            .chain(self.layout.prepare())
            .chain(self.layout.apply())
            .collect();
        let (insert, drop, commits) = (
            self.layout.insert_commit(),
            self.layout.drop_staging(),
            self.layout.create_commits(),
        );
        let params = [
            self.req.stream.clone(),
            self.req.run_id.clone(),
            info.to_string(),
            chrono::Utc::now().to_rfc3339(),
        ];
        blocking(&self.conn, self.target.clone(), move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute_batch(&commits)?;
            for sql in statements {
                tx.execute_batch(&sql)?;
            }
            tx.execute(&insert, params)?;
            tx.execute_batch(&drop)?;
            tx.commit()
        })
        .await?;
        Ok(Committed {
            outputs: vec![self.target.clone()],
            rows: self.rows,
            bytes: 0,
        })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        let drop = self.layout.drop_staging();
        let _ = blocking(&self.conn, self.target.clone(), move |c| {
            c.execute_batch(&drop)
        })
        .await;
        Ok(())
    }
}
