//! PostgreSQL implementation of [`StateStore`]: state shared between
//! machines (`state: postgres://…`).
//!
//! Tables live in the schema `highwater` of the given database and mirror
//! the SQLite store. Stream locks are session-level advisory locks, each on
//! its own connection held by the [`StreamLock`] (`application_name`
//! `highwater lock: <stream>`): a process that dies loses
//! its connection and so its locks, exactly like the SQLite store's file
//! locks. `commit_attempt` is one transaction that locks the position row
//! (`FOR UPDATE`) and compares before it moves it.
//!
//! A lock session can die (network, server restart, `pg_terminate_backend`)
//! while its holder runs; the lock is then gone and another process may take
//! the stream. So `commit_attempt`, `abandon_attempt` and `reset` check,
//! inside their transaction, that `pg_locks` still shows the lock held by
//! this store's session for the stream (same backend pid and start time),
//! and refuse otherwise, changing nothing.
//!
//! The store's own connection reconnects when it drops: a statement that
//! failed because the connection was lost is retried on a new connection a
//! bounded number of times, with backoff. A change whose answer was lost may
//! have committed; each is written so that its retry recognises that.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use highwater_core::{
    Attempt, Error, Position, Result, RunQuery, RunRecord, RunStatus, StateStore, StreamLock,
    StreamRun,
};
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, GenericClient};

use crate::{Locks, lock_lost, not_locked};

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS highwater;
CREATE TABLE IF NOT EXISTS highwater.positions (
    stream     text PRIMARY KEY,
    position   text NOT NULL,
    run_id     text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS highwater.attempts (
    stream      text NOT NULL,
    run_id      text NOT NULL,
    from_pos    text,
    to_pos      text,
    target      text NOT NULL,
    status      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    note        text,
    PRIMARY KEY (stream, run_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS attempts_one_open ON highwater.attempts (stream) WHERE status = 'Open';
CREATE TABLE IF NOT EXISTS highwater.runs (
    run_id      text PRIMARY KEY,
    status      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    host        text,
    pid         bigint
);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'highwater'
                   AND table_name = 'runs' AND column_name = 'info') THEN
        ALTER TABLE highwater.runs ADD COLUMN info text;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS highwater.stream_runs (
    run_id  text NOT NULL,
    stream  text NOT NULL,
    record  text NOT NULL,
    PRIMARY KEY (run_id, stream)
);
";

/// Advisory-lock namespace for schema creation (any constant works).
const DDL_LOCK: i64 = 0x6869_6768_7761_7465;

/// How often a statement is retried after its connection was lost.
const RETRIES: u32 = 3;
/// How often a lost connection is re-opened before giving up.
const CONNECT_TRIES: u32 = 5;

fn backoff(try_no: u32) -> Duration {
    Duration::from_millis(100 << try_no.min(5))
}

/// State in a PostgreSQL database, shared by every process that names it.
pub struct PgState {
    url: String,
    connect: PgConnect,
    /// `None` after the connection was lost; re-opened on next use.
    client: Mutex<Option<Client>>,
    locks: Locks<LockSession>,
}

/// A held stream lock: the session holding the advisory lock, and who it is
/// on the server.
struct LockSession {
    client: Client,
    pid: i32,
    backend_start: Option<DateTime<Utc>>,
    key: i64,
}

/// Why a statement failed: the database (maybe the connection), or the
/// store's own rules.
enum Fail {
    Pg(tokio_postgres::Error),
    State(Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::State(e)
    }
}

/// The error says the connection is gone (closed, reset, terminated by the
/// server): a new connection may succeed. Decided by SQLSTATE and error
/// kind, never by message text.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        // 08: connection exception; 57P01..03: admin/crash shutdown, cannot connect now.
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Run `$body` (which uses `$c: &mut Client` and may `?` database errors
/// and [`Error`]s) on a live connection; when the connection was lost,
/// reconnect and run it again (`$retry` is then true), a bounded number of
/// times.
macro_rules! retrying {
    ($self:ident, |$c:ident, $retry:ident| $body:expr) => {{
        let mut tries = 0u32;
        loop {
            let mut guard = $self.connected().await?;
            let Some($c) = guard.as_mut() else {
                break Err(err("no connection to the state database"));
            };
            #[allow(unused_variables)]
            let $retry = tries > 0;
            let outcome: std::result::Result<_, Fail> = async { $body }.await;
            match outcome {
                Ok(v) => break Ok(v),
                Err(Fail::Pg(e)) if connection_lost(&e) && tries < RETRIES => {
                    *guard = None;
                    drop(guard);
                    tries += 1;
                    tokio::time::sleep(backoff(tries)).await;
                }
                Err(Fail::Pg(e)) => break Err(pg_err(e)),
                Err(Fail::State(e)) => break Err(e),
            }
        }
    }};
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::state(e)
}

fn pg_err(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::state(db.message()),
        None => Error::state(e),
    }
}

/// How the store opens a connection (the caller supplies TLS per `sslmode`;
/// this crate does no network policy of its own).
pub type PgConnect = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Client>> + Send>>
        + Send
        + Sync,
>;

fn pos_json(p: &Option<Position>) -> Option<String> {
    p.as_ref().map(Position::to_json)
}

fn parse_pos(s: Option<String>) -> Result<Option<Position>> {
    s.map(|s| Position::from_json(&s).map_err(|e| err(format!("unreadable position {s}: {e}"))))
        .transpose()
}

/// A stable 64-bit key for a stream's advisory lock.
fn lock_key(stream: &str) -> i64 {
    let h = stream.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    h as i64
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

impl PgState {
    /// Connect and create the schema if needed. `redacted` names the URL in errors.
    pub async fn open(url: &str, redacted: &str, connect: PgConnect) -> Result<PgState> {
        let mut client = connect(url.to_string()).await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
            .await
            .map_err(pg_err)?;
        tx.batch_execute(SCHEMA).await.map_err(|e| {
            err(format!(
                "cannot initialise the state schema in {redacted}: {}",
                pg_err(e)
            ))
        })?;
        tx.commit().await.map_err(pg_err)?;
        Ok(PgState {
            url: url.to_string(),
            connect,
            client: Mutex::new(Some(client)),
            locks: Locks::new(),
        })
    }

    /// The store's connection, re-opened if it was lost.
    async fn connected(&self) -> Result<MutexGuard<'_, Option<Client>>> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            *guard = Some(self.reconnect().await?);
        }
        Ok(guard)
    }

    /// A new connection, tried a bounded number of times with backoff.
    async fn reconnect(&self) -> Result<Client> {
        let mut last = None;
        for attempt in 0..CONNECT_TRIES {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            match (self.connect)(self.url.clone()).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(err(format!(
            "cannot reach the state database ({CONNECT_TRIES} tries): {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// Fail unless this store's session for `stream`'s lock is open and the
    /// server shows it holding the lock (`c`: the change's transaction).
    async fn holds_lock(
        &self,
        tx: &impl GenericClient,
        stream: &str,
        doing: &str,
    ) -> std::result::Result<(), Fail> {
        let held = self.locks.with(stream, |held| {
            held.map(|l| (l.pid, l.backend_start, l.key, l.client.is_closed()))
        });
        let Some((pid, backend_start, key, closed)) = held else {
            return Err(Fail::State(not_locked(stream, doing)));
        };
        let lost = |why: &str| Fail::State(lock_lost(stream, why, doing));
        if closed {
            return Err(lost("its session with the state database closed"));
        }
        let (classid, objid) = ((key as u64 >> 32) as i64, (key as u64 & 0xffff_ffff) as i64);
        let holds: bool = tx
            .query_one(
                "SELECT EXISTS (
                     SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.locktype = 'advisory' AND l.granted AND l.pid = $1
                       AND a.backend_start IS NOT DISTINCT FROM $2
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND l.classid::bigint = $3 AND l.objid::bigint = $4 AND l.objsubid = 1)",
                &[&pid, &backend_start, &classid, &objid],
            )
            .await?
            .get(0);
        if holds {
            Ok(())
        } else {
            Err(lost(&format!(
                "the state database no longer shows its session {pid} holding it"
            )))
        }
    }
}

#[async_trait]
impl StateStore for PgState {
    async fn lock_stream(&self, stream: &str) -> Result<Option<StreamLock>> {
        // Its own session: the lock lives exactly as long as this connection.
        let client = self.reconnect().await?;
        let key = lock_key(stream);
        // Named, so that `pg_stat_activity` shows who holds which stream.
        let name = format!("highwater lock: {stream}");
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock($1), pg_backend_pid(),
                        (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()),
                        set_config('application_name', $2, false)",
                &[&key, &name],
            )
            .await
            .map_err(pg_err)?;
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        let session = LockSession {
            pid: row.get(1),
            backend_start: row.get(2),
            key,
            client,
        };
        Ok(Some(self.locks.hold(stream, session)))
    }

    async fn position(&self, stream: &str) -> Result<Option<Position>> {
        let pos: Option<String> = retrying!(self, |c, _retry| {
            Ok(c.query_opt(
                "SELECT position FROM highwater.positions WHERE stream = $1",
                &[&stream],
            )
            .await?
            .map(|r| r.get(0)))
        })?;
        parse_pos(pos)
    }

    async fn positions(&self) -> Result<Vec<(String, Position, DateTime<Utc>, String)>> {
        let rows = retrying!(self, |c, _retry| {
            Ok(c.query(
                "SELECT stream, position, updated_at, run_id FROM highwater.positions ORDER BY stream",
                &[],
            )
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                let p = parse_pos(Some(r.get(1)))?.unwrap_or(Position::Full);
                Ok((r.get(0), p, r.get(2), r.get(3)))
            })
            .collect()
    }

    async fn reset(&self, stream: &str) -> Result<bool> {
        retrying!(self, |c, _retry| {
            let tx = c.transaction().await?;
            self.holds_lock(&tx, stream, "resetting its position")
                .await?;
            let n = tx
                .execute(
                    "DELETE FROM highwater.positions WHERE stream = $1",
                    &[&stream],
                )
                .await?;
            tx.execute(
                "UPDATE highwater.attempts SET status = 'Abandoned', note = 'state reset'
                 WHERE stream = $1 AND status = 'Open'",
                &[&stream],
            )
            .await?;
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    async fn begin_attempt(&self, a: &Attempt) -> Result<()> {
        let from = pos_json(&a.from);
        retrying!(self, |c, retry| {
            let res = c
                .execute(
                    "INSERT INTO highwater.attempts (stream, run_id, from_pos, target, status, started_at)
                     VALUES ($1, $2, $3, $4, 'Open', $5)",
                    &[&a.stream, &a.run_id, &from, &a.target, &a.started_at],
                )
                .await;
            match res {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    // A retry finds the row its lost first try wrote.
                    let ours = retry
                        && c.query_opt(
                            "SELECT 1 FROM highwater.attempts WHERE stream = $1 AND run_id = $2
                             AND status = 'Open' AND from_pos IS NOT DISTINCT FROM $3 AND target = $4",
                            &[&a.stream, &a.run_id, &from, &a.target],
                        )
                        .await?
                        .is_some();
                    if ours {
                        Ok(())
                    } else {
                        Err(Fail::State(err(format!(
                            "stream {} already has an open attempt; another run is in progress or must be settled first",
                            a.stream
                        ))))
                    }
                }
                Err(e) => Err(Fail::Pg(e)),
            }
        })
    }

    async fn open_attempts(&self, stream: &str) -> Result<Vec<Attempt>> {
        let rows = retrying!(self, |c, _retry| {
            Ok(c.query(
                "SELECT run_id, from_pos, target, started_at FROM highwater.attempts
                 WHERE stream = $1 AND status = 'Open' ORDER BY started_at",
                &[&stream],
            )
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    stream: stream.to_string(),
                    run_id: r.get(0),
                    from: parse_pos(r.get(1))?,
                    target: r.get(2),
                    started_at: r.get(3),
                })
            })
            .collect()
    }

    async fn commit_attempt(&self, a: &Attempt, to: &Position) -> Result<()> {
        let to_json = to.to_json();
        let doing = format!("committing run {}", a.run_id);
        retrying!(self, |c, retry| {
            let tx = c.transaction().await?;
            self.holds_lock(&tx, &a.stream, &doing).await?;
            // Serialise committers of this stream, even before its first position exists.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&lock_key(&format!("commit:{}", a.stream))],
            )
            .await?;
            if retry {
                // The first try's answer was lost: it may have committed.
                let done: Option<String> = tx
                    .query_opt(
                        "SELECT to_pos FROM highwater.attempts
                         WHERE stream = $1 AND run_id = $2 AND status = 'Committed'",
                        &[&a.stream, &a.run_id],
                    )
                    .await?
                    .and_then(|r| r.get(0));
                if done.is_some_and(|d| Position::from_json(&d).ok().as_ref() == Some(to)) {
                    return Ok(());
                }
            }
            let current: Option<String> = tx
                .query_opt(
                    "SELECT position FROM highwater.positions WHERE stream = $1 FOR UPDATE",
                    &[&a.stream],
                )
                .await?
                .map(|r| r.get(0));
            let same = match (&current, &a.from) {
                (None, None) => true,
                (Some(c), Some(e)) => Position::from_json(c).ok().as_ref() == Some(e),
                _ => false,
            };
            if !same {
                return Err(Fail::State(err(format!(
                    "position of stream {} moved under run {} (expected {}, found {}); not committing",
                    a.stream,
                    a.run_id,
                    pos_json(&a.from).as_deref().unwrap_or("none"),
                    current.as_deref().unwrap_or("none")
                ))));
            }
            let now = Utc::now();
            let n = tx
                .execute(
                    "UPDATE highwater.attempts SET status = 'Committed', to_pos = $3, finished_at = $4
                     WHERE stream = $1 AND run_id = $2 AND status = 'Open'",
                    &[&a.stream, &a.run_id, &to_json, &now],
                )
                .await?;
            if n != 1 {
                return Err(Fail::State(err(format!(
                    "attempt {} of stream {} is not open",
                    a.run_id, a.stream
                ))));
            }
            tx.execute(
                "INSERT INTO highwater.positions (stream, position, run_id, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (stream) DO UPDATE SET position = excluded.position,
                     run_id = excluded.run_id, updated_at = excluded.updated_at",
                &[&a.stream, &to_json, &a.run_id, &now],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn verify_lock(&self, stream: &str) -> Result<()> {
        retrying!(self, |c, _retry| {
            self.holds_lock(&*c, stream, "continuing").await
        })
    }

    async fn abandon_attempt(&self, a: &Attempt, why: &str) -> Result<()> {
        let doing = format!("abandoning run {}", a.run_id);
        retrying!(self, |c, _retry| {
            let tx = c.transaction().await?;
            self.holds_lock(&tx, &a.stream, &doing).await?;
            tx.execute(
                "UPDATE highwater.attempts SET status = 'Abandoned', note = $3, finished_at = now()
                 WHERE stream = $1 AND run_id = $2 AND status = 'Open'",
                &[&a.stream, &a.run_id, &why],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn begin_run(&self, run_id: &str, started_at: DateTime<Utc>) -> Result<()> {
        let (host, pid) = (hostname(), std::process::id() as i64);
        retrying!(self, |c, retry| {
            let res = c
                .execute(
                    "INSERT INTO highwater.runs (run_id, status, started_at, host, pid)
                     VALUES ($1, 'InProgress', $2, $3, $4)",
                    &[&run_id, &started_at, &host, &pid],
                )
                .await;
            match res {
                Ok(_) => Ok(()),
                // A retry finds the row its lost first try wrote.
                Err(e)
                    if retry
                        && e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                {
                    Ok(())
                }
                Err(e) => Err(Fail::Pg(e)),
            }
        })
    }

    async fn record_stream_run(&self, run_id: &str, run: &StreamRun) -> Result<()> {
        let record = serde_json::to_string(run).map_err(err)?;
        retrying!(self, |c, _retry| {
            c.execute(
                "INSERT INTO highwater.stream_runs (run_id, stream, record) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id, stream) DO UPDATE SET record = excluded.record",
                &[&run_id, &run.stream, &record],
            )
            .await?;
            Ok(())
        })
    }

    async fn set_run_info(&self, run_id: &str, info: &serde_json::Value) -> Result<()> {
        let info = info.to_string();
        retrying!(self, |c, _retry| {
            c.execute(
                "UPDATE highwater.runs SET info = $2 WHERE run_id = $1",
                &[&run_id, &info],
            )
            .await?;
            Ok(())
        })
    }

    async fn finish_run(&self, run_id: &str, status: RunStatus, at: DateTime<Utc>) -> Result<()> {
        retrying!(self, |c, _retry| {
            c.execute(
                "UPDATE highwater.runs SET status = $2, finished_at = $3 WHERE run_id = $1",
                &[&run_id, &status.as_str(), &at],
            )
            .await?;
            Ok(())
        })
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let ids: Vec<String> = retrying!(self, |c, _retry| {
            Ok(c.query(
                "SELECT run_id FROM highwater.runs ORDER BY started_at DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.run(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn find_runs(&self, q: &RunQuery) -> Result<(Vec<RunRecord>, usize)> {
        // A run whose process died reads as Failed once read: read the
        // open ones first so the status filter sees what `run` reports.
        let open: Vec<String> = retrying!(self, |c, _retry| {
            Ok(c.query(
                "SELECT run_id FROM highwater.runs WHERE status = 'InProgress'",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })?;
        for id in open {
            self.run(&id).await?;
        }
        let status = q.status.map(|s| s.as_str().to_string());
        let name = q.name.clone();
        let (limit, offset) = (q.limit.min(i64::MAX as usize) as i64, q.offset as i64);
        let filter = "($1::text IS NULL OR status = $1)
            AND ($2::timestamptz IS NULL OR started_at >= $2)
            AND ($3::timestamptz IS NULL OR started_at < $3)
            AND ($4::text IS NULL OR info::jsonb->>'pipeline' = $4
                 OR ((info IS NULL OR info::jsonb->>'pipeline' IS NULL) AND EXISTS
                     (SELECT 1 FROM highwater.stream_runs s WHERE s.run_id = r.run_id AND s.stream = $4)))";
        let (ids, total): (Vec<String>, i64) = retrying!(self, |c, _retry| {
            let total: i64 = c
                .query_one(
                    &format!("SELECT count(*) FROM highwater.runs r WHERE {filter}"),
                    &[&status, &q.from, &q.to, &name],
                )
                .await?
                .get(0);
            let ids = c
                .query(
                    &format!(
                        "SELECT run_id FROM highwater.runs r WHERE {filter}
                         ORDER BY started_at DESC, run_id DESC LIMIT $5 OFFSET $6"
                    ),
                    &[&status, &q.from, &q.to, &name, &limit, &offset],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Ok((ids, total))
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.run(&id).await? {
                out.push(r);
            }
        }
        Ok((out, total as usize))
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let prefix = format!(
            "{}%",
            run_id
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let (rows, records) = retrying!(self, |c, _retry| {
            let rows = c
                .query(
                    "SELECT run_id, status, started_at, finished_at, host, pid, info FROM highwater.runs
                     WHERE run_id = $1 OR run_id LIKE $2 ORDER BY started_at DESC LIMIT 2",
                    &[&run_id, &prefix],
                )
                .await?;
            let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let records: Vec<(String, String)> = c
                .query(
                    "SELECT run_id, record FROM highwater.stream_runs WHERE run_id = ANY($1)
                     ORDER BY stream",
                    &[&ids],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            Ok((rows, records))
        })?;
        let row = match rows.as_slice() {
            [] => return Ok(None),
            [one] => one.clone(),
            many => match many.iter().find(|r| r.get::<_, String>(0) == run_id) {
                Some(exact) => exact.clone(),
                None => return Err(err(format!("run id prefix {run_id} is ambiguous"))),
            },
        };
        let run_id: String = row.get(0);
        let mut streams = records
            .iter()
            .filter(|(id, _)| *id == run_id)
            .map(|(_, r)| {
                serde_json::from_str(r).map_err(|e| err(format!("unreadable run record: {e}")))
            })
            .collect::<Result<Vec<StreamRun>>>()?;
        let mut status = RunStatus::parse(row.get::<_, &str>(1));
        let host: Option<String> = row.get(4);
        let pid: Option<i64> = row.get(5);
        let dead = host.as_deref() == Some(hostname().as_str())
            && pid.is_some_and(|p| !crate::process_alive(p));
        if status == RunStatus::InProgress && dead {
            status = RunStatus::Failed;
            crate::record_dead_run(self, &run_id, &mut streams).await?;
        }
        Ok(Some(RunRecord {
            run_id,
            status,
            started_at: row.get(2),
            finished_at: row.get(3),
            streams,
            info: row
                .get::<_, Option<String>>(6)
                .and_then(|i| serde_json::from_str(&i).ok()),
        }))
    }
}
