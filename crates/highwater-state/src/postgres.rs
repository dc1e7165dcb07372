//! PostgreSQL implementation of [`StateStore`]: state shared between
//! machines (`state: postgres://…`).
//!
//! Tables live in the schema `highwater` of the given database and mirror
//! the SQLite store. Stream locks are session-level advisory locks, each on
//! its own connection held by the [`StreamLock`]: a process that dies loses
//! its connection and so its locks, exactly like the SQLite store's file
//! locks. `commit_attempt` is one transaction that locks the position row
//! (`FOR UPDATE`) and compares before it moves it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use highwater_core::{
    Attempt, Error, Position, Result, RunRecord, RunStatus, StateStore, StreamLock, StreamRun,
};
use tokio::sync::Mutex;
use tokio_postgres::Client;

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
CREATE TABLE IF NOT EXISTS highwater.stream_runs (
    run_id  text NOT NULL,
    stream  text NOT NULL,
    record  text NOT NULL,
    PRIMARY KEY (run_id, stream)
);
";

/// Advisory-lock namespace for schema creation (any constant works).
const DDL_LOCK: i64 = 0x6869_6768_7761_7465;

/// State in a PostgreSQL database, shared by every process that names it.
pub struct PgState {
    url: String,
    connect: PgConnect,
    client: Arc<Mutex<Client>>,
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
            client: Arc::new(Mutex::new(client)),
        })
    }
}

#[async_trait]
impl StateStore for PgState {
    async fn lock_stream(&self, stream: &str) -> Result<Option<StreamLock>> {
        // Its own session: the lock lives exactly as long as this connection.
        let client = (self.connect)(self.url.clone()).await?;
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&lock_key(stream)])
            .await
            .map_err(pg_err)?
            .get(0);
        Ok(got.then(|| StreamLock(Box::new(client))))
    }

    async fn position(&self, stream: &str) -> Result<Option<Position>> {
        let c = self.client.lock().await;
        let row = c
            .query_opt(
                "SELECT position FROM highwater.positions WHERE stream = $1",
                &[&stream],
            )
            .await
            .map_err(pg_err)?;
        parse_pos(row.map(|r| r.get(0)))
    }

    async fn positions(&self) -> Result<Vec<(String, Position, DateTime<Utc>, String)>> {
        let c = self.client.lock().await;
        let rows = c
            .query(
                "SELECT stream, position, updated_at, run_id FROM highwater.positions ORDER BY stream",
                &[],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let p = parse_pos(Some(r.get(1)))?.unwrap_or(Position::Full);
                Ok((r.get(0), p, r.get(2), r.get(3)))
            })
            .collect()
    }

    async fn reset(&self, stream: &str) -> Result<bool> {
        let mut c = self.client.lock().await;
        let tx = c.transaction().await.map_err(pg_err)?;
        let n = tx
            .execute(
                "DELETE FROM highwater.positions WHERE stream = $1",
                &[&stream],
            )
            .await
            .map_err(pg_err)?;
        tx.execute(
            "UPDATE highwater.attempts SET status = 'Abandoned', note = 'state reset'
             WHERE stream = $1 AND status = 'Open'",
            &[&stream],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(n > 0)
    }

    async fn begin_attempt(&self, a: &Attempt) -> Result<()> {
        let c = self.client.lock().await;
        let res = c
            .execute(
                "INSERT INTO highwater.attempts (stream, run_id, from_pos, target, status, started_at)
                 VALUES ($1, $2, $3, $4, 'Open', $5)",
                &[&a.stream, &a.run_id, &pos_json(&a.from), &a.target, &a.started_at],
            )
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Err(err(format!(
                    "stream {} already has an open attempt; another run is in progress or must be settled first",
                    a.stream
                )))
            }
            Err(e) => Err(pg_err(e)),
        }
    }

    async fn open_attempts(&self, stream: &str) -> Result<Vec<Attempt>> {
        let c = self.client.lock().await;
        let rows = c
            .query(
                "SELECT run_id, from_pos, target, started_at FROM highwater.attempts
                 WHERE stream = $1 AND status = 'Open' ORDER BY started_at",
                &[&stream],
            )
            .await
            .map_err(pg_err)?;
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
        let mut c = self.client.lock().await;
        let tx = c.transaction().await.map_err(pg_err)?;
        // Serialise committers of this stream, even before its first position exists.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key(&format!("commit:{}", a.stream))],
        )
        .await
        .map_err(pg_err)?;
        let current: Option<String> = tx
            .query_opt(
                "SELECT position FROM highwater.positions WHERE stream = $1 FOR UPDATE",
                &[&a.stream],
            )
            .await
            .map_err(pg_err)?
            .map(|r| r.get(0));
        let same = match (&current, &a.from) {
            (None, None) => true,
            (Some(c), Some(e)) => Position::from_json(c).ok().as_ref() == Some(e),
            _ => false,
        };
        if !same {
            return Err(err(format!(
                "position of stream {} moved under run {} (expected {}, found {}); not committing",
                a.stream,
                a.run_id,
                pos_json(&a.from).as_deref().unwrap_or("none"),
                current.as_deref().unwrap_or("none")
            )));
        }
        let now = Utc::now();
        let n = tx
            .execute(
                "UPDATE highwater.attempts SET status = 'Committed', to_pos = $3, finished_at = $4
                 WHERE stream = $1 AND run_id = $2 AND status = 'Open'",
                &[&a.stream, &a.run_id, &to_json, &now],
            )
            .await
            .map_err(pg_err)?;
        if n != 1 {
            return Err(err(format!(
                "attempt {} of stream {} is not open",
                a.run_id, a.stream
            )));
        }
        tx.execute(
            "INSERT INTO highwater.positions (stream, position, run_id, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (stream) DO UPDATE SET position = excluded.position,
                 run_id = excluded.run_id, updated_at = excluded.updated_at",
            &[&a.stream, &to_json, &a.run_id, &now],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn abandon_attempt(&self, a: &Attempt, why: &str) -> Result<()> {
        let c = self.client.lock().await;
        c.execute(
            "UPDATE highwater.attempts SET status = 'Abandoned', note = $3, finished_at = now()
             WHERE stream = $1 AND run_id = $2 AND status = 'Open'",
            &[&a.stream, &a.run_id, &why],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn begin_run(&self, run_id: &str, started_at: DateTime<Utc>) -> Result<()> {
        let c = self.client.lock().await;
        c.execute(
            "INSERT INTO highwater.runs (run_id, status, started_at, host, pid) VALUES ($1, 'InProgress', $2, $3, $4)",
            &[&run_id, &started_at, &hostname(), &(std::process::id() as i64)],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn record_stream_run(&self, run_id: &str, run: &StreamRun) -> Result<()> {
        let record = serde_json::to_string(run).map_err(err)?;
        let c = self.client.lock().await;
        c.execute(
            "INSERT INTO highwater.stream_runs (run_id, stream, record) VALUES ($1, $2, $3)
             ON CONFLICT (run_id, stream) DO UPDATE SET record = excluded.record",
            &[&run_id, &run.stream, &record],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn finish_run(&self, run_id: &str, status: RunStatus, at: DateTime<Utc>) -> Result<()> {
        let c = self.client.lock().await;
        c.execute(
            "UPDATE highwater.runs SET status = $2, finished_at = $3 WHERE run_id = $1",
            &[&run_id, &status.as_str(), &at],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let ids: Vec<String> = {
            let c = self.client.lock().await;
            c.query(
                "SELECT run_id FROM highwater.runs ORDER BY started_at DESC LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(pg_err)?
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.run(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let (row, records) = {
            let c = self.client.lock().await;
            let prefix = format!(
                "{}%",
                run_id
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let rows = c
                .query(
                    "SELECT run_id, status, started_at, finished_at, host, pid FROM highwater.runs
                     WHERE run_id = $1 OR run_id LIKE $2 ORDER BY started_at DESC LIMIT 2",
                    &[&run_id, &prefix],
                )
                .await
                .map_err(pg_err)?;
            let row = match rows.as_slice() {
                [] => return Ok(None),
                [one] => one.clone(),
                many => match many.iter().find(|r| r.get::<_, String>(0) == run_id) {
                    Some(exact) => exact.clone(),
                    None => return Err(err(format!("run id prefix {run_id} is ambiguous"))),
                },
            };
            let id: String = row.get(0);
            let records: Vec<String> = c
                .query(
                    "SELECT record FROM highwater.stream_runs WHERE run_id = $1 ORDER BY stream",
                    &[&id],
                )
                .await
                .map_err(pg_err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            (row, records)
        };
        let run_id: String = row.get(0);
        let mut streams = records
            .iter()
            .map(|r| {
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
        }))
    }
}
