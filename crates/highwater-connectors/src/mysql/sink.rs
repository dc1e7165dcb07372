//! [`MySink`]: a MariaDB/MySQL table as a target. Rows stream through one
//! `LOAD DATA LOCAL INFILE` per attempt: the statement runs on its
//! connection in a task from `begin` to `commit`, and each batch, encoded
//! by `crate::load_text`, is handed to it through a bounded channel (the
//! driver's local-infile handler reads the channel as the "file"), so
//! memory holds a few batches. `REPLACE` makes the load as strict as an
//! `INSERT` (a plain `LOCAL` load downgrades bad values to warnings) and,
//! on a keyed table, keeps the last row of a key.
//!
//! ```text
//! target exists (or a script or change-           target absent:  direct load
//! tracking deletes take part): staging            CREATE TABLE target (with key;
//!   LOAD DATA … REPLACE → temporary                 fails if another attempt
//!   `_highwater_stage_<hash of stream and           made it: then staging)
//!   run>`, unique on the key: the last row        START TRANSACTION
//!   of a key replaces the earlier ones            LOAD DATA … REPLACE → target
//!   commit: one InnoDB transaction applies        commit: commit record, COMMIT
//!   staging (see `crate::table`)
//! ```
//!
//! One query at `begin` says whether `_highwater_commits` and the target
//! exist; each is created only when missing. MariaDB commits DDL
//! implicitly, so a missing target is created *before* `START
//! TRANSACTION` (an empty target table can appear before the first
//! commit). Staging is a temporary table: it goes with the session, so a
//! crash leaves nothing (`recover` still drops a real staging table that
//! earlier versions could leave).

use arrow_array::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use highwater_core::{Committed, Error, Recovered, Result, Sink, SinkWriter, WriteRequest};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::task::JoinHandle;

use super::source::connect;
use crate::load_text::{Dialect, LoadText};
use crate::table::{ABANDONED, COMMITS, Flavor, Layout};
use crate::util::{Early, redact_url};

/// A MariaDB/MySQL database that streams write tables into.
pub struct MySink {
    url: String,
    /// A connection opened by [`Sink::connect_early`], for `begin`, with
    /// which of the commit records and the target existed then (for the
    /// target named).
    early: Early<(Conn, Option<(String, Exists)>)>,
}

/// `ER_TABLE_EXISTS_ERROR`.
const TABLE_EXISTS: u16 = 1050;
/// `LOAD DATA LOCAL` refused: `ER_NOT_ALLOWED_COMMAND` (MariaDB, MySQL
/// before 8.0.21) and `ER_CLIENT_LOCAL_FILES_DISABLED`.
const LOCAL_INFILE_OFF: [u16; 2] = [1148, 3948];
/// The largest piece of load data sent at once (well under the server's
/// `max_allowed_packet`, 16 MiB by default).
const CHUNK: usize = 1 << 20;

fn my_sink_err(target: &str) -> impl Fn(mysql_async::Error) -> Error + '_ {
    move |e| super::errors::sink(target, e)
}

impl MySink {
    pub fn new(url: &str) -> MySink {
        MySink {
            url: url.to_string(),
            early: Early::new(),
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
        let (mut conn, early) = match self.early.take().await {
            Some((c, e)) => (c, e.filter(|(t, _)| *t == req.target).map(|(_, e)| e)),
            None => (connect(&self.url).await?, None),
        };
        let err = my_sink_err(&name);
        let (commits, target) = match early {
            Some(e) => e,
            None => exists(&mut conn, &layout).await.map_err(&err)?,
        };
        if commits == 0 {
            conn.query_drop(layout.create_commits())
                .await
                .map_err(&err)?;
        }
        let target_exists = target > 0;
        let direct = !target_exists
            && layout.direct_load()
            && match conn.query_drop(layout.create_direct_target()).await {
                Ok(()) => true,
                Err(mysql_async::Error::Server(e)) if e.code == TABLE_EXISTS => false,
                Err(e) => return Err(err(e)),
            };
        let (table, columns) = if direct {
            conn.query_drop("START TRANSACTION").await.map_err(&err)?;
            (layout.target_sql(), layout.stored.clone())
        } else {
            conn.query_drop(layout.create_staging())
                .await
                .map_err(&err)?;
            (
                layout.staging_sql(),
                (0..layout.schema.fields().len()).collect(),
            )
        };
        let sql = load_data(&layout, &table, &columns, !direct);
        crate::table::log_load(&req.stream, &req.target, direct);
        Ok(Box::new(MyWriter {
            target: name.clone(),
            load: Some(Load::start(conn, sql)),
            encoder: LoadText::new(Dialect::Mysql, columns, !direct),
            direct,
            target_exists,
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

    fn connect_early(&self, target: &str) {
        let url = self.url.clone();
        let layout = self.layout(target, "", "", None).ok();
        let target = target.to_string();
        self.early.start(async move {
            let mut conn = connect(&url).await?;
            // A failed read is read again by `begin`, which reports it.
            let found = match &layout {
                Some(l) => exists(&mut conn, l).await.ok(),
                None => None,
            };
            Ok((conn, found.map(|f| (target, f))))
        });
    }

    /// Staging is a temporary table; a direct load's rows are in an
    /// uncommitted transaction.
    fn stages_privately(&self) -> bool {
        true
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

/// Whether the commit-record table and the target exist (1) or not (0).
type Exists = (i64, i64);

/// Which of the commit records and the target exist, in one query (names
/// compared as bytes: a miss only costs a `CREATE … IF NOT EXISTS`, a
/// false hit would skip a needed one).
async fn exists(
    conn: &mut Conn,
    layout: &Layout,
) -> std::result::Result<Exists, mysql_async::Error> {
    Ok(conn
        .exec_first(
            "SELECT COALESCE(MAX(BINARY table_name = BINARY ?), 0), \
                    COALESCE(MAX(BINARY table_name = BINARY ?), 0) \
             FROM information_schema.tables \
             WHERE table_schema = COALESCE(?, DATABASE()) AND table_name IN (?, ?)",
            (
                COMMITS,
                layout.target.name.clone(),
                layout.target.schema.clone(),
                COMMITS,
                layout.target.name.clone(),
            ),
        )
        .await?
        .unwrap_or((0, 0)))
}

/// `LOAD DATA LOCAL INFILE … REPLACE INTO TABLE table` for the batch
/// columns `columns` (and the sequence column when `seq`), in the text
/// `crate::load_text` writes. Separators are hex literals, which read the
/// same under every `sql_mode`; bytes arrive as hex through `UNHEX`.
fn load_data(layout: &Layout, table: &str, columns: &[usize], seq: bool) -> String {
    let mut names = Vec::new();
    let mut set = Vec::new();
    for i in columns {
        let f = layout.schema.field(*i);
        let name = layout.flavor.q(f.name());
        if LoadText::hex_column(Dialect::Mysql, f.data_type()) {
            names.push(format!("@hex{i}"));
            set.push(format!("{name} = UNHEX(@hex{i})"));
        } else {
            names.push(name);
        }
    }
    if seq {
        names.push(layout.flavor.q(crate::table::SEQ));
    }
    let set = if set.is_empty() {
        String::new()
    } else {
        format!(" SET {}", set.join(", "))
    };
    format!(
        "LOAD DATA LOCAL INFILE 'highwater' REPLACE INTO TABLE {table} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY X'09' ESCAPED BY X'5C' LINES TERMINATED BY X'0A' ({}){set}",
        names.join(", ")
    )
}

/// A `LOAD DATA LOCAL INFILE` running in a task on its connection, fed
/// through a bounded channel that the driver reads as the file.
struct Load {
    feed: mpsc::Sender<std::io::Result<Bytes>>,
    task: JoinHandle<(Conn, std::result::Result<(), mysql_async::Error>)>,
}

impl Load {
    fn start(mut conn: Conn, sql: String) -> Load {
        let (feed, file) = mpsc::channel(2);
        conn.set_infile_handler(async move { Ok(file.boxed()) });
        let task = tokio::spawn(async move {
            let r = conn.query_drop(sql).await;
            (conn, r)
        });
        Load { feed, task }
    }

    /// Hand `data` to the load; `false`: the load has ended (failed).
    async fn send(&mut self, mut data: Bytes) -> bool {
        while !data.is_empty() {
            let piece = data.split_to(data.len().min(CHUNK));
            if self.feed.send(Ok(piece)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// End of file: wait for the statement and take the connection back.
    async fn finish(self) -> Result<(Conn, std::result::Result<(), mysql_async::Error>)> {
        drop(self.feed);
        self.task
            .await
            .map_err(|e| Error::sink("LOAD DATA", e.to_string()))
    }
}

struct MyWriter {
    target: String,
    /// Always `Some` until commit or abort takes it.
    load: Option<Load>,
    encoder: LoadText,
    /// Rows go straight into the target this attempt created, in a
    /// transaction open since `begin`; else into staging.
    direct: bool,
    /// The target existed at `begin` (tables are not dropped under a
    /// stream; if one is, the commit fails and the next run creates it).
    target_exists: bool,
    layout: Layout,
    req: WriteRequest,
    rows: u64,
}

impl MyWriter {
    /// The load's connection back, or its error.
    async fn finish_load(&mut self) -> Result<Conn> {
        let load = self.load.take().expect("open writer");
        let (conn, r) = load.finish().await?;
        match r {
            Ok(()) => Ok(conn),
            Err(mysql_async::Error::Server(e)) if LOCAL_INFILE_OFF.contains(&e.code) => {
                Err(Error::sink(
                    &self.target,
                    format!(
                        "{} [error {}]: a database target loads with LOAD DATA LOCAL INFILE; enable it on the server (SET GLOBAL local_infile = 1)",
                        e.message, e.code
                    ),
                ))
            }
            Err(e) => Err(my_sink_err(&self.target)(e)),
        }
    }
}

#[async_trait]
impl SinkWriter for MyWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut buf = Vec::new();
        self.encoder.encode(&batch, &mut buf)?;
        self.rows += batch.num_rows() as u64;
        let load = self.load.as_mut().expect("open writer");
        if !load.send(Bytes::from(buf)).await {
            // The statement ended early: its error says why.
            self.finish_load().await?;
            return Err(Error::sink(&self.target, "LOAD DATA ended before its data"));
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, info: &str) -> Result<Committed> {
        let mut conn = self.finish_load().await?;
        let err = my_sink_err(&self.target);
        let now = chrono::Utc::now().to_rfc3339();
        let record = (&self.req.stream, &self.req.run_id, info, &now);
        if self.direct {
            conn.exec_drop(self.layout.insert_commit(), record)
                .await
                .map_err(&err)?;
            conn.query_drop("COMMIT").await.map_err(&err)?;
        } else {
            if !self.target_exists {
                conn.query_drop(self.layout.create_target())
                    .await
                    .map_err(&err)?;
            }
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
            tx.exec_drop(self.layout.insert_commit(), record)
                .await
                .map_err(&err)?;
            tx.commit().await.map_err(&err)?;
        }
        // Published; the temporary staging table goes with the session.
        highwater_core::failpoint("mysql.after_commit_before_drop");
        let _ = conn.disconnect().await;
        Ok(Committed {
            outputs: vec![self.target.clone()],
            rows: self.rows,
            bytes: 0,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        if let Some(load) = self.load.take()
            && let Ok((mut conn, _)) = load.finish().await
        {
            // Temporary staging goes with the session.
            if self.direct {
                let _ = conn.query_drop("ROLLBACK").await;
            }
            let _ = conn.disconnect().await;
        }
        Ok(())
    }
}
