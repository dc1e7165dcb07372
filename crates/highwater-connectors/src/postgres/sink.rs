//! [`PgSink`]: a PostgreSQL table as a target. Rows stream into a temporary
//! staging table with text `COPY … FROM STDIN` (one COPY per batch: memory
//! holds one batch), and one transaction applies them and records the
//! commit (see `crate::table` for the statements).
//!
//! A crash loses the session and with it the temporary staging table, so
//! nothing is left to clean; the commit record in `_highwater_commits` is
//! what `recover` reads.

use std::fmt::Write as _;

use arrow_array::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use highwater_core::{Committed, Error, Recovered, Result, Sink, SinkWriter, WriteRequest};
use tokio_postgres::Client;

use super::source::connect;
use crate::table::{ABANDONED, Cell, Flavor, Layout, TableName, cell, lock_key};
use crate::util::redact_url;

/// The advisory lock key that serialises creating `_highwater_commits`
/// and schemas ("hwsetup" in ASCII).
const SETUP_LOCK: i64 = 0x0068_7773_6574_7570;

/// A PostgreSQL database that streams write tables into.
pub struct PgSink {
    url: String,
}

impl PgSink {
    pub fn new(url: &str) -> PgSink {
        PgSink {
            url: url.to_string(),
        }
    }

    fn err(&self, target: &str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        let target = format!("{} table {target}", redact_url(&self.url));
        move |e| super::errors::sink(&target, e)
    }

    async fn ensure_schema(
        &self,
        client: &tokio_postgres::Transaction<'_>,
        target: &TableName,
    ) -> Result<()> {
        let Some(schema) = &target.schema else {
            return Ok(());
        };
        let found = client
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[schema])
            .await
            .map_err(self.err(&target.name))?;
        if found.is_none() {
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    crate::util::quote_ident(schema, '"')
                ))
                .await
                .map_err(self.err(&target.name))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for PgSink {
    async fn begin(&self, req: WriteRequest) -> Result<Box<dyn SinkWriter>> {
        let mut layout = Layout::new(
            Flavor::Postgres,
            &req.target,
            &req.stream,
            &req.run_id,
            req.schema.clone(),
            req.table.as_ref(),
        )?;
        let mut client = connect(&self.url).await?;
        let err = self.err(&req.target);
        {
            // Streams writing into one database begin concurrently, and
            // concurrent `CREATE … IF NOT EXISTS` of one name can fail in
            // PostgreSQL: serialise the setup on an advisory lock.
            let tx = client.transaction().await.map_err(&err)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SETUP_LOCK])
                .await
                .map_err(&err)?;
            self.ensure_schema(&tx, &layout.target).await?;
            tx.batch_execute(&layout.create_commits())
                .await
                .map_err(&err)?;
            tx.commit().await.map_err(&err)?;
        }
        // An existing target lends its column types to staging.
        for row in client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                &[&layout.target_sql()],
            )
            .await
            .map_err(&err)?
        {
            layout.existing.insert(row.get(0), row.get(1));
        }
        client
            .batch_execute(&layout.create_staging())
            .await
            .map_err(&err)?;
        let copy = format!(
            "COPY {} ({}) FROM STDIN",
            layout.staging_sql(),
            layout.staging_columns()
        );
        Ok(Box::new(PgWriter {
            target: format!("{} table {}", redact_url(&self.url), req.target),
            client,
            layout,
            copy,
            req,
            rows: 0,
            bytes: 0,
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
        let Ok(layout) = Layout::new(
            Flavor::Postgres,
            target,
            stream,
            run_id,
            std::sync::Arc::new(arrow_schema::Schema::empty()),
            None,
        ) else {
            return Ok(Recovered::NotPublished);
        };
        let client = connect(&self.url).await?;
        let err = self.err(target);
        let exists = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&layout.commits_sql()],
            )
            .await
            .map_err(&err)?;
        if !exists.get::<_, bool>(0) {
            return Ok(Recovered::NotPublished);
        }
        // Fence first (it waits for a commit still in flight), then read.
        client
            .execute(&layout.fence_commit(), &[&stream, &run_id])
            .await
            .map_err(&err)?;
        let row = client
            .query_opt(&layout.select_commit(), &[&stream, &run_id])
            .await
            .map_err(&err)?;
        Ok(match row.map(|r| r.get::<_, String>(0)) {
            Some(info) if info != ABANDONED => Recovered::Published { info },
            _ => Recovered::NotPublished,
        })
    }

    async fn check(&self) -> Result<String> {
        let client = connect(&self.url).await?;
        let err = self.err("(check)");
        // Writable: a temporary table and a transaction that rolls back.
        client
            .batch_execute(
                "BEGIN; CREATE TEMPORARY TABLE _highwater_check (x int); INSERT INTO _highwater_check VALUES (1); ROLLBACK",
            )
            .await
            .map_err(&err)?;
        let row = client
            .query_one(
                "SELECT current_database(), has_database_privilege(current_database(), 'CREATE')",
                &[],
            )
            .await
            .map_err(&err)?;
        let db: String = row.get(0);
        let create: bool = row.get(1);
        Ok(format!(
            "database {db}: writable{}",
            if create {
                ""
            } else {
                " (no CREATE privilege: new schemas cannot be made)"
            }
        ))
    }
}

struct PgWriter {
    /// For messages: the redacted URL and the table.
    target: String,
    client: Client,
    layout: Layout,
    copy: String,
    req: WriteRequest,
    rows: u64,
    bytes: u64,
}

impl PgWriter {
    fn err(&self) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        move |e| super::errors::sink(&self.target, e)
    }
}

/// COPY text format: `\N` for NULL, backslash escapes for the rest.
fn encode(out: &mut String, c: &Cell) {
    fn text(out: &mut String, s: &str) {
        for ch in s.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
    }
    match c {
        Cell::Null => out.push_str("\\N"),
        Cell::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        Cell::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Cell::UInt(v) => {
            let _ = write!(out, "{v}");
        }
        Cell::Float(v) => {
            if v.is_nan() {
                out.push_str("NaN");
            } else if v.is_infinite() {
                out.push_str(if *v > 0.0 { "Infinity" } else { "-Infinity" });
            } else {
                let _ = write!(out, "{v:?}");
            }
        }
        Cell::Text(s) => text(out, s),
        Cell::Decimal(s) => out.push_str(s),
        Cell::Bytes(b) => {
            // bytea hex input `\x…`, its backslash escaped for COPY.
            out.push_str("\\\\x");
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
        Cell::Date(d) => {
            let _ = write!(out, "{}", d.format("%Y-%m-%d"));
        }
        Cell::Timestamp(ts, utc) => {
            out.push_str(&Cell::timestamp_text(ts));
            if *utc {
                out.push_str("+00");
            }
        }
        Cell::Time(t) => {
            let _ = write!(out, "{}", t.format("%H:%M:%S%.f"));
        }
    }
}

#[async_trait]
impl SinkWriter for PgWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut buf = String::new();
        for i in 0..batch.num_rows() {
            for col in batch.columns() {
                encode(&mut buf, &cell(col, i)?);
                buf.push('\t');
            }
            let _ = writeln!(buf, "{}", self.rows);
            self.rows += 1;
        }
        self.bytes += buf.len() as u64;
        let sink = self
            .client
            .copy_in::<_, Bytes>(&self.copy)
            .await
            .map_err(self.err())?;
        futures::pin_mut!(sink);
        sink.send(Bytes::from(buf)).await.map_err(self.err())?;
        sink.finish().await.map_err(self.err())?;
        Ok(())
    }

    async fn commit(self: Box<Self>, info: &str) -> Result<Committed> {
        let PgWriter {
            target,
            mut client,
            layout,
            req,
            rows,
            bytes,
            ..
        } = *self;
        let now = chrono::Utc::now().to_rfc3339();
        let err = |e: tokio_postgres::Error| super::errors::sink(&target, e);
        let tx = client.transaction().await.map_err(err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key(&req.target)],
        )
        .await
        .map_err(err)?;
        // Data Factory's preCopyScript: in this transaction, so a copy
        // that fails leaves it unapplied too.
        // The target exists first (it may be the script's table).
        if let Some(script) = &layout.pre_copy_script {
            if layout.procedure.is_none() {
                tx.batch_execute(&layout.create_target())
                    .await
                    .map_err(err)?;
            }
            tx.batch_execute(script).await.map_err(|e| {
                super::errors::sink(&target, e).context("sink.preCopyScript".to_string())
            })?;
        }
        match &layout.procedure {
            Some(p) => {
                if rows > 0 {
                    super::procedure::call_with_rows(&tx, &layout, p)
                        .await
                        .map_err(|e| e.context(format!("stored-procedure sink {}", p.name)))?;
                }
            }
            None => {
                for sql in layout.prepare().into_iter().chain(layout.apply()) {
                    tx.batch_execute(&sql).await.map_err(err)?;
                }
            }
        }
        tx.execute(
            &layout.insert_commit(),
            &[&req.stream, &req.run_id, &info, &now],
        )
        .await
        .map_err(err)?;
        tx.batch_execute(&layout.drop_staging())
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Committed {
            outputs: vec![target.clone()],
            rows,
            bytes,
        })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        // The temporary table goes with the session; drop it anyway so a
        // pooled connection would not keep it.
        let _ = self.client.batch_execute(&self.layout.drop_staging()).await;
        Ok(())
    }
}
