//! [`PgSink`]: a PostgreSQL table as a target. Rows stream through one
//! text `COPY … FROM STDIN` per attempt (`crate::load_text` encodes each
//! batch as it comes: memory holds one batch) into one of two places:
//!
//! ```text
//! target exists (or a script, procedure or      target absent:  direct load
//! change-tracking deletes take part): staging   BEGIN; advisory lock (target)
//!   BEGIN; CREATE TEMPORARY staging table       CREATE TABLE target (no key)
//!   COPY → staging                              COPY → target
//!   commit: advisory lock (target), apply       commit: ADD PRIMARY KEY (on a
//!   staging (see `crate::table`), commit          repeated key: keep the last
//!   record, DROP staging, COMMIT                  row, add it again), commit
//!                                                 record, COMMIT
//! ```
//!
//! A small delta into an existing target (one batch of at most
//! [`SMALL_ROWS`] rows, columns of common types) skips staging: the first
//! batch is held, and the commit applies it with one statement ([`Small`]).
//!
//! Either way an attempt is one transaction, so one WAL flush. A run's
//! requests are few and pipelined: one catalog query at `begin` (is there
//! a `_highwater_commits`, the target's columns; the setup runs only when
//! the table is missing), staging's `CREATE` sent with the `COPY`, and
//! the staging commit's statements, its commit record and `COMMIT` sent
//! at once.
//!
//! The direct load writes the rows once and builds the key index once,
//! after the load; nothing of it is visible before `COMMIT`, the table
//! included. Its transaction holds the target's advisory lock, so a second
//! attempt into the same new table waits and then goes through staging.
//!
//! A crash loses the session and with it the attempt's transaction
//! (staging, or the uncommitted direct load), so nothing is left to clean;
//! the commit record in `_highwater_commits` is what `recover` reads.

use std::collections::HashMap;
use std::pin::Pin;

use arrow_array::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use highwater_core::{
    Committed, Error, Recovered, Result, Sink, SinkWriter, TableWriteMode, WriteRequest,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, CopyInSink};

use super::source::connect;
use crate::load_text::{Dialect, LoadText};
use crate::table::{ABANDONED, Flavor, Layout, SEQ, TableName, lock_key};
use crate::util::{Early, redact_url};

/// The advisory lock key that serialises creating `_highwater_commits`
/// and schemas ("hwsetup" in ASCII).
const SETUP_LOCK: i64 = 0x0068_7773_6574_7570;

/// A PostgreSQL database that streams write tables into.
pub struct PgSink {
    url: String,
    /// A connection opened by [`Sink::connect_early`], for `begin`, with
    /// what it read of the target's catalog (see [`Catalog`]).
    early: Early<(Client, Option<Catalog>)>,
}

impl PgSink {
    pub fn new(url: &str) -> PgSink {
        PgSink {
            url: url.to_string(),
            early: Early::new(),
        }
    }

    /// The early connection if it is still open (with its catalog read,
    /// if it was of `target`), else a new one.
    async fn connection(&self, target: &str) -> Result<(Client, Option<Catalog>)> {
        match self.early.take().await {
            Some((c, catalog)) if !c.is_closed() => {
                Ok((c, catalog.filter(|cat| cat.target == target)))
            }
            _ => Ok((connect(&self.url).await?, None)),
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
        let (mut client, early) = self.connection(&req.target).await?;
        let err = self.err(&req.target);
        // One catalog query: is there a commit-record table, and the
        // target's columns (read with the early connection, while the
        // source was read, when there was one). The setup runs only when
        // the table is missing.
        let catalog = match early {
            Some(c) => c,
            None => probe(&client, &layout).await.map_err(&err)?,
        };
        let Catalog {
            commits,
            existing,
            bases,
            ..
        } = catalog;
        layout.existing = existing;
        if !commits {
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
        let try_direct = layout.existing.is_empty() && layout.direct_load();
        let direct = try_direct
            && claim_new_target(&client, &layout, &req.target)
                .await
                .map_err(&err)?;
        let small = !direct && Small::fits(&layout, &bases);
        let (copy, encoder) = if direct {
            let copy = format!(
                "COPY {} ({}) FROM STDIN",
                layout.target_sql(),
                layout.stored_columns()
            );
            (
                copy,
                LoadText::new(Dialect::Postgres, layout.stored.clone(), false),
            )
        } else {
            if try_direct {
                // Another attempt made the table meanwhile.
                existing_columns(&client, &mut layout).await.map_err(&err)?;
            }
            let copy = format!(
                "COPY {} ({}) FROM STDIN",
                layout.staging_sql(),
                layout.staging_columns()
            );
            let all = (0..layout.schema.fields().len()).collect();
            (copy, LoadText::new(Dialect::Postgres, all, true))
        };
        let create = (!direct).then(|| format!("BEGIN; {}", layout.create_staging()));
        let load = if small {
            // Staging waits for a second batch or a large one.
            Load::Held {
                batch: None,
                create: create.unwrap_or_default(),
                copy,
                bases,
            }
        } else {
            Load::Copy(
                start_copy(&client, create.as_deref(), &copy)
                    .await
                    .map_err(&err)?,
            )
        };
        if small {
            tracing::debug!(
                stream = req.stream,
                table = req.target,
                "Holding a first small batch: one batch of at most {SMALL_ROWS} rows is merged by one statement, more go through staging."
            );
        } else {
            crate::table::log_load(&req.stream, &req.target, direct);
        }
        Ok(Box::new(PgWriter {
            target: format!("{} table {}", redact_url(&self.url), req.target),
            client,
            layout,
            load,
            encoder,
            direct,
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

    fn connect_early(&self, target: &str) {
        let url = self.url.clone();
        let layout = Layout::new(
            Flavor::Postgres,
            target,
            "",
            "",
            std::sync::Arc::new(arrow_schema::Schema::empty()),
            None,
        )
        .ok();
        let target = target.to_string();
        self.early.start(async move {
            let client = connect(&url).await?;
            // A failed read is read again by `begin`, which reports it.
            let catalog = match &layout {
                Some(l) => probe(&client, l).await.ok(),
                None => None,
            };
            Ok((client, catalog.map(|c| Catalog { target, ..c })))
        });
    }

    /// Staging is a temporary table; a direct load's rows are in an
    /// uncommitted transaction.
    fn stages_privately(&self) -> bool {
        true
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

/// What one catalog query says about a target.
struct Catalog {
    /// The target as `into:` names it (set by [`Sink::connect_early`],
    /// which reads it before `begin` names its target).
    target: String,
    /// `_highwater_commits` exists.
    commits: bool,
    /// The target's columns and their types as `format_type` spells them
    /// (empty: no such table), as [`existing_columns`] reads them.
    existing: HashMap<String, String>,
    /// The same types without their modifiers (`numeric` for
    /// `numeric(12,2)`): what [`Small`] casts text to.
    bases: HashMap<String, String>,
}

/// Read the [`Catalog`] of `layout`'s target in one round trip.
async fn probe(
    client: &Client,
    layout: &Layout,
) -> std::result::Result<Catalog, tokio_postgres::Error> {
    let row = client
        .query_typed_one(
            "SELECT to_regclass($1) IS NOT NULL, \
                    coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}'), \
                    coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum), '{}'), \
                    coalesce(array_agg(format_type(a.atttypid, NULL) ORDER BY a.attnum), '{}') \
             FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($2) AND a.attnum > 0 AND NOT a.attisdropped",
            &[
                (&layout.commits_sql(), Type::TEXT),
                (&layout.target_sql(), Type::TEXT),
            ],
        )
        .await?;
    let names: Vec<String> = row.get(1);
    let types: Vec<String> = row.get(2);
    let bases: Vec<String> = row.get(3);
    Ok(Catalog {
        target: String::new(),
        commits: row.get(0),
        existing: names.iter().cloned().zip(types).collect(),
        bases: names.into_iter().zip(bases).collect(),
    })
}

/// Read the column types of an existing target into `layout.existing`
/// (staging takes them, so text is parsed into the target's types on the
/// way in). `false`: the target does not exist.
async fn existing_columns(
    client: &Client,
    layout: &mut Layout,
) -> std::result::Result<bool, tokio_postgres::Error> {
    layout.existing.clear();
    for row in client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&layout.target_sql()],
        )
        .await?
    {
        layout.existing.insert(row.get(0), row.get(1));
    }
    Ok(!layout.existing.is_empty())
}

/// Start a direct load: open the transaction that will commit it, take the
/// target's advisory lock and create the target. `false` (transaction
/// rolled back): another attempt made the table first.
async fn claim_new_target(
    client: &Client,
    layout: &Layout,
    target: &str,
) -> std::result::Result<bool, tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(target)])
        .await?;
    let absent: bool = client
        .query_one("SELECT to_regclass($1) IS NULL", &[&layout.target_sql()])
        .await?
        .get(0);
    if !absent {
        client.batch_execute("ROLLBACK").await?;
        return Ok(false);
    }
    client.batch_execute(&layout.create_direct_target()).await?;
    Ok(true)
}

/// Staging's `CREATE` (with the `BEGIN` of the attempt's transaction) and
/// the COPY's statement, sent back to back (tokio-postgres sends a request
/// when its future is first polled, `biased` polls in order, and the
/// server answers in order). No `create`: a direct load, whose transaction
/// is open.
async fn start_copy(
    client: &Client,
    create: Option<&str>,
    copy: &str,
) -> std::result::Result<Pin<Box<CopyInSink<Bytes>>>, tokio_postgres::Error> {
    let create = async {
        match create {
            Some(sql) => client.batch_execute(sql).await,
            None => Ok(()),
        }
    };
    let (created, copy) = tokio::join!(biased; create, client.copy_in(copy));
    created?;
    Ok(Box::pin(copy?))
}

/// Where the rows go.
enum Load {
    /// Into nothing yet: a delta that arrives as one batch of at most
    /// [`SMALL_ROWS`] rows is applied by [`Small`], one statement without
    /// a staging table; anything more starts staging (`create`, `copy`).
    Held {
        batch: Option<RecordBatch>,
        create: String,
        copy: String,
        /// The target's column types without modifiers, by name.
        bases: HashMap<String, String>,
    },
    /// The attempt's one COPY, open until commit.
    Copy(Pin<Box<CopyInSink<Bytes>>>),
}

struct PgWriter {
    /// For messages: the redacted URL and the table.
    target: String,
    client: Client,
    layout: Layout,
    load: Load,
    encoder: LoadText,
    /// Rows go straight into the target, in a transaction open since
    /// `begin` (see the module doc); else into staging.
    direct: bool,
    req: WriteRequest,
    rows: u64,
    bytes: u64,
}

impl PgWriter {
    fn err(&self) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        move |e| super::errors::sink(&self.target, e)
    }

    /// Start staging if it waited ([`Load::Held`]); the batch it held, to
    /// be sent first.
    async fn stage(&mut self) -> Result<Option<RecordBatch>> {
        let Load::Held {
            batch,
            create,
            copy,
            ..
        } = &mut self.load
        else {
            return Ok(None);
        };
        let held = batch.take();
        let copy = start_copy(&self.client, Some(create.as_str()), copy)
            .await
            .map_err(self.err())?;
        self.load = Load::Copy(copy);
        Ok(held)
    }

    /// Encode `batch` into the open COPY.
    async fn send(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut buf = Vec::new();
        self.encoder.encode(batch, &mut buf)?;
        self.bytes += buf.len() as u64;
        let Load::Copy(copy) = &mut self.load else {
            unreachable!("send follows stage");
        };
        copy.send(Bytes::from(buf))
            .await
            .map_err(|e| super::errors::sink(&self.target, e))
    }

    /// Finish a direct load: the primary key (keeping the last row of a
    /// repeated key), the commit record, `COMMIT`.
    async fn commit_direct(&self, info: &str) -> std::result::Result<(), tokio_postgres::Error> {
        let client = &self.client;
        if let Some(add_key) = self.layout.add_key() {
            client.batch_execute("SAVEPOINT add_key").await?;
            match client.batch_execute(&add_key).await {
                Ok(()) => {}
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    client
                        .batch_execute("ROLLBACK TO SAVEPOINT add_key")
                        .await?;
                    client.batch_execute(&self.layout.dedupe_direct()).await?;
                    client.batch_execute(&add_key).await?;
                }
                Err(e) => return Err(e),
            }
        }
        let now = chrono::Utc::now().to_rfc3339();
        client
            .execute(
                &self.layout.insert_commit(),
                &[&self.req.stream, &self.req.run_id, &info, &now],
            )
            .await?;
        client.batch_execute("COMMIT").await
    }
}

#[async_trait]
impl SinkWriter for PgWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Load::Held { batch: held, .. } = &mut self.load
            && held.is_none()
            && batch.num_rows() <= SMALL_ROWS
        {
            self.rows += batch.num_rows() as u64;
            *held = Some(batch);
            return Ok(());
        }
        if let Some(first) = self.stage().await? {
            self.send(&first).await?;
        }
        self.rows += batch.num_rows() as u64;
        self.send(&batch).await
    }

    async fn commit(mut self: Box<Self>, info: &str) -> Result<Committed> {
        if let Load::Held {
            batch: Some(batch),
            bases,
            ..
        } = &self.load
        {
            let small = Small::new(&self.layout, bases, batch)?;
            let bytes = small.bytes;
            small
                .apply(&self.client, &self.req, info)
                .await
                .map_err(self.err())?;
            return Ok(Committed {
                outputs: vec![self.target.clone()],
                rows: self.rows,
                bytes,
            });
        }
        // No rows at all: staging, as before.
        self.stage().await?;
        let Load::Copy(copy) = &mut self.load else {
            unreachable!("staged above");
        };
        copy.as_mut().finish().await.map_err(self.err())?;
        if self.direct {
            self.commit_direct(info).await.map_err(self.err())?;
            return Ok(Committed {
                outputs: vec![self.target.clone()],
                rows: self.rows,
                bytes: self.bytes,
            });
        }
        let PgWriter {
            target,
            client,
            layout,
            req,
            rows,
            bytes,
            ..
        } = *self;
        let now = chrono::Utc::now().to_rfc3339();
        let err = |e: tokio_postgres::Error| super::errors::sink(&target, e);
        // The transaction opened at `begin` (staging lives in it) applies
        // the rows, under the target's advisory lock.
        let lock = format!("SELECT pg_advisory_xact_lock({})", lock_key(&req.target));
        let insert = layout.insert_commit();
        let record: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 4] = [
            (&req.stream, Type::TEXT),
            (&req.run_id, Type::TEXT),
            (&info, Type::TEXT),
            (&now, Type::TEXT),
        ];
        let close = format!("{}; COMMIT", layout.drop_staging());
        if layout.pre_copy_script.is_none() && layout.procedure.is_none() {
            // One round trip: three requests sent back to back (`biased`
            // polls, so sends, in this order), answered in order. A
            // failing statement aborts the transaction; the requests after
            // it fail too and the closing `COMMIT` never runs (a simple
            // query skips the rest of its statements after an error), so
            // nothing is published and the session's end rolls back.
            let mut apply = vec![lock];
            apply.extend(layout.prepare());
            apply.extend(layout.apply());
            let apply = apply.join(";\n");
            let (applied, recorded, closed) = tokio::join!(
                biased;
                client.batch_execute(&apply),
                client.execute_typed(&insert, &record),
                client.batch_execute(&close),
            );
            applied.map_err(err)?;
            recorded.map_err(err)?;
            closed.map_err(err)?;
            return Ok(Committed {
                outputs: vec![target.clone()],
                rows,
                bytes,
            });
        }
        client.batch_execute(&lock).await.map_err(err)?;
        // Data Factory's preCopyScript: in this transaction, so a copy
        // that fails leaves it unapplied too.
        // The target exists first (it may be the script's table).
        if let Some(script) = &layout.pre_copy_script {
            if layout.procedure.is_none() {
                client
                    .batch_execute(&layout.create_target())
                    .await
                    .map_err(err)?;
            }
            client.batch_execute(script).await.map_err(|e| {
                super::errors::sink(&target, e).context("sink.preCopyScript".to_string())
            })?;
        }
        match &layout.procedure {
            Some(p) => {
                if rows > 0 {
                    super::procedure::call_with_rows(&client, &layout, p)
                        .await
                        .map_err(|e| e.context(format!("stored-procedure sink {}", p.name)))?;
                }
            }
            None => {
                for sql in layout.prepare().into_iter().chain(layout.apply()) {
                    client.batch_execute(&sql).await.map_err(err)?;
                }
            }
        }
        client.execute_typed(&insert, &record).await.map_err(err)?;
        client.batch_execute(&close).await.map_err(err)?;
        Ok(Committed {
            outputs: vec![target.clone()],
            rows,
            bytes,
        })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        // Dropping the COPY fails it. The attempt's transaction (a direct
        // load's, or staging's) goes with the session; end it anyway so a
        // pooled connection would not keep it.
        let PgWriter { client, load, .. } = *self;
        drop(load);
        let _ = client.batch_execute("ROLLBACK").await;
        Ok(())
    }
}

/// A delta that arrives as one batch of at most this many rows goes into
/// an existing target with one statement ([`Small`]), without a staging
/// table: a temporary table's catalog rows, its index and its drop were
/// about half of a 100-row delta's time in the target (pgbench, new
/// sessions: 13–14 ms against 10 ms, the update included).
const SMALL_ROWS: usize = 1000;

/// Types (as `format_type` names them without a modifier) whose text input
/// [`Small`] reaches with a cast: a cast from `text` to each of them runs
/// the type's input function, as COPY does. The target's modifier (the
/// `12,2` of `numeric(12,2)`, a `varchar` length) is applied when the
/// value is assigned to the column, with COPY's rounding and COPY's
/// errors: an explicit cast to `varchar(n)` would truncate instead, so the
/// cast never carries it. Other types (arrays, enums, domains, `character`,
/// …) go through staging.
const SMALL_TYPES: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "numeric",
    "real",
    "double precision",
    "text",
    "character varying",
    "boolean",
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
    "time without time zone",
    "uuid",
    "bytea",
    "json",
    "jsonb",
];

/// One small batch applied to an existing merge or append target in one
/// statement: each column a `text[]` parameter, unnested with its row
/// number (the staging sequence), cast to the column's type; for a merge,
/// the last row of each key (`DISTINCT ON`), then change-tracking deletes,
/// updates of present keys and inserts of absent ones as data-modifying
/// `WITH` queries, and the commit record in the same statement. The
/// transaction around it takes the target's advisory lock first, as the
/// staging commit does; the same rows arrive either way.
struct Small {
    sql: String,
    params: Vec<Vec<Option<String>>>,
    bytes: u64,
}

impl Small {
    /// Whether an attempt into `layout` can take this path: the target
    /// exists with every stored column, of a [`SMALL_TYPES`] type; key
    /// columns carry no modifier (staging compares keys in the column's
    /// own type; here they are compared as cast); a merge or an append;
    /// no script or procedure in the commit.
    fn fits(layout: &Layout, bases: &HashMap<String, String>) -> bool {
        let plain = layout.pre_copy_script.is_none() && layout.procedure.is_none();
        let mode = matches!(layout.mode, TableWriteMode::Merge | TableWriteMode::Append);
        let types = layout.stored.iter().all(|i| {
            let name = layout.schema.field(*i).name();
            bases
                .get(name)
                .is_some_and(|b| SMALL_TYPES.contains(&b.as_str()))
        });
        let keys = layout
            .key
            .iter()
            .all(|k| bases.get(k).is_some() && bases.get(k) == layout.existing.get(k));
        plain && mode && types && keys
    }

    fn new(layout: &Layout, bases: &HashMap<String, String>, batch: &RecordBatch) -> Result<Small> {
        let q = |s: &str| layout.flavor.q(s);
        let fields = layout.schema.fields();
        let target = layout.target_sql();
        // Column i of the batch as SQL: cast when stored, text when not
        // (the change-tracking operation).
        let expr = |i: usize| {
            let name = fields[i].name();
            match layout.stored.contains(&i) {
                true => format!("u.v{i}::{}", bases[name.as_str()]),
                false => format!("u.v{i}"),
            }
        };
        let n = fields.len();
        let unnest: Vec<String> = (1..=n).map(|p| format!("${p}::text[]")).collect();
        let vars: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
        let select: Vec<String> = (0..n)
            .map(|i| format!("{} AS {}", expr(i), q(fields[i].name())))
            .collect();
        let seq = q(SEQ);
        let keyed = layout.mode == TableWriteMode::Merge;
        let key_exprs: Vec<String> = layout
            .key
            .iter()
            .map(|k| expr(layout.schema.index_of(k).expect("key checked by Layout")))
            .collect();
        let (distinct, order) = match keyed {
            true => (
                format!("DISTINCT ON ({}) ", key_exprs.join(", ")),
                format!(" ORDER BY {}, u.seq DESC", key_exprs.join(", ")),
            ),
            false => (String::new(), String::new()),
        };
        let mut with = vec![
            format!(
                "s AS (SELECT {distinct}{}, u.seq AS {seq} FROM unnest({}) WITH ORDINALITY AS u({}, seq){order})",
                select.join(", "),
                unnest.join(", "),
                vars.join(", ")
            ),
            format!(
                "r AS (INSERT INTO {} (stream, run_id, info, committed_at) VALUES (${}, ${}, ${}, ${}))",
                layout.commits_sql(),
                n + 1,
                n + 2,
                n + 3,
                n + 4
            ),
        ];
        let key_eq = layout
            .key
            .iter()
            .map(|k| format!("t.{k} = s.{k}", k = q(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let op = layout.op.map(|i| q(fields[i].name()));
        let filter = match &op {
            Some(op) => format!("COALESCE(s.{op}, '') <> 'D'"),
            None => "true".to_string(),
        };
        let cols = layout.stored_columns();
        let main = if keyed {
            if let Some(op) = &op {
                with.push(format!(
                    "d AS (DELETE FROM {target} AS t USING s WHERE {key_eq} AND s.{op} = 'D')"
                ));
            }
            let rest: Vec<String> = layout
                .stored
                .iter()
                .map(|i| fields[*i].name())
                .filter(|c| !layout.key.contains(c))
                .map(|c| format!("{c} = s.{c}", c = q(c)))
                .collect();
            if !rest.is_empty() {
                with.push(format!(
                    "w AS (UPDATE {target} AS t SET {} FROM s WHERE {key_eq} AND {filter})",
                    rest.join(", ")
                ));
            }
            format!(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM s WHERE {filter} AND NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {key_eq}) ORDER BY s.{seq}"
            )
        } else {
            format!(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM s WHERE {filter} ORDER BY s.{seq}"
            )
        };
        let sql = format!("WITH {} {main}", with.join(", "));
        let params = batch
            .columns()
            .iter()
            .map(crate::load_text::pg_texts)
            .collect::<Result<Vec<_>>>()?;
        let bytes = params
            .iter()
            .flatten()
            .map(|v| v.as_ref().map_or(2, |s| s.len() as u64 + 1))
            .sum();
        Ok(Small { sql, params, bytes })
    }

    /// `BEGIN`, the target's advisory lock, the statement, `COMMIT`: sent
    /// at once, answered in order. A failing statement aborts the
    /// transaction, so the `COMMIT` rolls back, and its error is returned.
    async fn apply(
        &self,
        client: &Client,
        req: &WriteRequest,
        info: &str,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        let lock = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({})",
            lock_key(&req.target)
        );
        let now = chrono::Utc::now().to_rfc3339();
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = self
            .params
            .iter()
            .map(|p| (p as &(dyn ToSql + Sync), Type::TEXT_ARRAY))
            .collect();
        params.push((&req.stream, Type::TEXT));
        params.push((&req.run_id, Type::TEXT));
        params.push((&info, Type::TEXT));
        params.push((&now, Type::TEXT));
        let (locked, applied, committed) = tokio::join!(
            biased;
            client.batch_execute(&lock),
            client.execute_typed(&self.sql, &params),
            client.batch_execute("COMMIT"),
        );
        locked?;
        applied?;
        committed
    }
}
