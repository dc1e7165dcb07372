//! [`MySink`]: a MariaDB/MySQL table as a target. Rows go into a staging
//! table beside the target (`_highwater_stage_<hash of stream and run>`)
//! with multi-row prepared INSERTs; the commit is one InnoDB transaction
//! that applies them and records the commit (see `crate::table`).
//!
//! MariaDB commits DDL implicitly, so the target table is created and the
//! staging table indexed *before* `START TRANSACTION`, and staging is
//! dropped *after* `COMMIT`. Neither is visible as data: an empty target
//! table can appear before the first commit, and a crash can leave a
//! staging table, which `recover` (and `abort`) drop. A temporary table is
//! not used because MariaDB cannot name one twice in a statement (the
//! last-row-per-key de-duplication joins staging to itself).

use arrow_array::RecordBatch;
use async_trait::async_trait;
use highwater_core::{Committed, Error, Recovered, Result, Sink, SinkWriter, WriteRequest};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::source::connect;
use crate::table::{ABANDONED, COMMITS, Cell, Flavor, Layout, cell};
use crate::util::redact_url;

/// A MariaDB/MySQL database that streams write tables into.
pub struct MySink {
    url: String,
}

/// Values per INSERT (the protocol allows 65535 placeholders).
const MAX_PARAMS: usize = 30_000;

fn my_sink_err(target: &str) -> impl Fn(mysql_async::Error) -> Error + '_ {
    move |e| super::errors::sink(target, e)
}

impl MySink {
    pub fn new(url: &str) -> MySink {
        MySink {
            url: url.to_string(),
        }
    }

    fn name(&self, target: &str) -> String {
        format!("{} table {target}", redact_url(&self.url))
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
            .unwrap_or_else(|| std::sync::Arc::new(arrow_schema::Schema::empty()));
        Layout::new(
            Flavor::Mysql,
            target,
            stream,
            run_id,
            schema,
            req.and_then(|r| r.table.as_ref()),
        )
    }
}

#[async_trait]
impl Sink for MySink {
    async fn begin(&self, req: WriteRequest) -> Result<Box<dyn SinkWriter>> {
        let layout = self.layout(&req.target, &req.stream, &req.run_id, Some(&req))?;
        let name = self.name(&req.target);
        if layout.procedure.is_some() {
            return Err(Error::config(
                "sink.sqlWriterStoredProcedureName",
                "MariaDB has no table types, so a stored-procedure sink cannot pass it the rows; copy into a table (upsert with upsertSettings.keys) and run the procedure in a Stored Procedure activity",
            ));
        }
        if let Some(st) = layout
            .pre_copy_script
            .as_deref()
            .and_then(crate::table::implicit_commit)
        {
            return Err(Error::config(
                "sink.preCopyScript",
                format!(
                    "`{st}` commits implicitly in MariaDB, which would apply it even when the copy fails; use DML (e.g. DELETE FROM instead of TRUNCATE)"
                ),
            ));
        }
        let mut conn = connect(&self.url).await?;
        let err = my_sink_err(&name);
        conn.query_drop(layout.create_commits())
            .await
            .map_err(&err)?;
        conn.query_drop(layout.drop_staging()).await.map_err(&err)?;
        conn.query_drop(layout.create_staging())
            .await
            .map_err(&err)?;
        Ok(Box::new(MyWriter {
            target: name.clone(),
            conn: Some(conn),
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
        let name = self.name(target);
        let err = my_sink_err(&name);
        let mut conn = connect(&self.url).await?;
        // Look, do not create: the attempt may name a database that is gone.
        let found: Option<i64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
                (layout.target.schema.clone(), COMMITS),
            )
            .await
            .map_err(&err)?;
        let info: Option<String> = if found.unwrap_or(0) > 0 {
            // Fence first (it waits for a commit still in flight), then read.
            conn.exec_drop(layout.fence_commit(), (stream, run_id))
                .await
                .map_err(&err)?;
            conn.exec_first(layout.select_commit(), (stream, run_id))
                .await
                .map_err(&err)?
        } else {
            None
        };
        let info = info.filter(|i| i != ABANDONED);
        // Published or not, a staging table left by a crash is garbage now.
        conn.query_drop(layout.drop_staging()).await.map_err(&err)?;
        let _ = conn.disconnect().await;
        Ok(match info {
            Some(info) => Recovered::Published { info },
            None => Recovered::NotPublished,
        })
    }

    async fn check(&self) -> Result<String> {
        let name = self.name("(check)");
        let err = my_sink_err(&name);
        let mut conn = connect(&self.url).await?;
        let db: Option<Option<String>> =
            conn.query_first("SELECT DATABASE()").await.map_err(&err)?;
        let Some(db) = db.flatten() else {
            return Err(Error::sink(
                &name,
                "the URL names no database: write mysql://user@host:3306/database",
            ));
        };
        // Writable: create and drop a table (what a run does with staging).
        conn.query_drop("CREATE TABLE IF NOT EXISTS `_highwater_check` (x int)")
            .await
            .map_err(&err)?;
        conn.query_drop("DROP TABLE `_highwater_check`")
            .await
            .map_err(&err)?;
        let _ = conn.disconnect().await;
        Ok(format!("database {db}: writable"))
    }
}

struct MyWriter {
    target: String,
    /// Always `Some` until commit or abort takes it.
    conn: Option<Conn>,
    layout: Layout,
    req: WriteRequest,
    rows: u64,
}

fn value(c: Cell) -> Value {
    use chrono::{Datelike, Timelike};
    match c {
        Cell::Null => Value::NULL,
        Cell::Bool(b) => Value::Int(b.into()),
        Cell::Int(v) => Value::Int(v),
        Cell::UInt(v) => Value::UInt(v),
        Cell::Float(v) => Value::Double(v),
        Cell::Text(s) | Cell::Decimal(s) => Value::Bytes(s.into_bytes()),
        Cell::Bytes(b) => Value::Bytes(b),
        Cell::Date(d) => Value::Date(d.year() as u16, d.month() as u8, d.day() as u8, 0, 0, 0, 0),
        Cell::Timestamp(ts, _) => super::source::bind_naive(ts),
        Cell::Time(t) => Value::Time(
            false,
            0,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            t.nanosecond() / 1000,
        ),
    }
}

#[async_trait]
impl SinkWriter for MyWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let width = batch.num_columns() + 1;
        let per = (MAX_PARAMS / width).max(1);
        let head = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.layout.staging_sql(),
            self.layout.staging_columns()
        );
        let tuple = format!("({})", vec!["?"; width].join(", "));
        let conn = self.conn.as_mut().expect("open writer");
        let err = my_sink_err(&self.target);
        let mut start = 0;
        while start < n {
            let rows = per.min(n - start);
            let mut values = Vec::with_capacity(rows * width);
            for i in start..start + rows {
                for col in batch.columns() {
                    values.push(value(cell(col, i)?));
                }
                values.push(Value::Int(self.rows as i64));
                self.rows += 1;
            }
            let sql = format!("{head}{}", vec![tuple.as_str(); rows].join(", "));
            conn.exec_drop(sql, values).await.map_err(&err)?;
            start += rows;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, info: &str) -> Result<Committed> {
        let mut conn = self.conn.take().expect("open writer");
        let err = my_sink_err(&self.target);
        for sql in self.layout.prepare() {
            conn.query_drop(sql).await.map_err(&err)?;
        }
        let now = chrono::Utc::now().to_rfc3339();
        {
            let mut tx = conn
                .start_transaction(mysql_async::TxOpts::default())
                .await
                .map_err(&err)?;
            // Data Factory's preCopyScript, in the commit transaction.
            if let Some(script) = &self.layout.pre_copy_script {
                tx.query_drop(script)
                    .await
                    .map_err(|e| err(e).context("sink.preCopyScript"))?;
            }
            for sql in self.layout.apply() {
                tx.query_drop(sql).await.map_err(&err)?;
            }
            tx.exec_drop(
                self.layout.insert_commit(),
                (&self.req.stream, &self.req.run_id, info, &now),
            )
            .await
            .map_err(&err)?;
            tx.commit().await.map_err(&err)?;
        }
        // Published; a failure (or crash) here leaves staging for `recover`
        // to drop.
        highwater_core::failpoint("mysql.after_commit_before_drop");
        let _ = conn.query_drop(self.layout.drop_staging()).await;
        let _ = conn.disconnect().await;
        Ok(Committed {
            outputs: vec![self.target.clone()],
            rows: self.rows,
            bytes: 0,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.query_drop(self.layout.drop_staging()).await;
            let _ = conn.disconnect().await;
        }
        Ok(())
    }
}
