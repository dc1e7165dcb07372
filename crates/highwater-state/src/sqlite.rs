//! SQLite implementation of [`StateStore`].
//!
//! One thread owns the connection and runs every statement; the async
//! methods send it jobs and await the answers, so a write that waits for
//! the disk (an fsync) or for another process's lock never holds up the
//! runtime's other tasks. Stream locks are OS file locks (see the crate
//! docs).
//!
//! Durability: the file is in WAL mode with `synchronous = NORMAL`, so a
//! commit appends to the WAL without waiting for the disk; a process crash
//! (`kill -9`) loses nothing, since the WAL is in the OS's cache. The
//! transactions that decide delivery — `begin_attempt` (the write-ahead
//! record a crashed attempt is settled from), `commit_attempt` (the
//! position) and `reset` — run with `synchronous = FULL`: their commit
//! fsyncs the WAL (and with it every earlier commit). A power loss can
//! thus lose run-history rows written since the last such commit, never a
//! committed position or an open attempt (see docs/decisions.md).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use highwater_core::{
    Attempt, Error, Position, Result, RunQuery, RunRecord, RunStatus, StateStore, StreamLock,
    StreamRun,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Locks, lock_lost, not_locked};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS positions (
    stream     TEXT PRIMARY KEY,
    position   TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    stream      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    from_pos    TEXT,
    to_pos      TEXT,
    target      TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    note        TEXT,
    PRIMARY KEY (stream, run_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS attempts_one_open ON attempts(stream) WHERE status = 'Open';
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    pid         INTEGER
);
CREATE TABLE IF NOT EXISTS stream_runs (
    run_id  TEXT NOT NULL,
    stream  TEXT NOT NULL,
    record  TEXT NOT NULL,
    PRIMARY KEY (run_id, stream)
);
";

/// Bring a state file written by an earlier version up to date.
/// `PRAGMA user_version` counts the migrations applied.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        // 1: runs.pid, to report runs whose process died.
        let has_pid: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = 'pid'")?
            .exists([])?;
        if !has_pid {
            conn.execute_batch("ALTER TABLE runs ADD COLUMN pid INTEGER")?;
        }
        conn.execute_batch("PRAGMA user_version = 1")?;
    }
    if version < 2 {
        // 2: runs.info, what started a pipeline run (`pipeline rerun`).
        let has_info: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = 'info'")?
            .exists([])?;
        if !has_info {
            conn.execute_batch("ALTER TABLE runs ADD COLUMN info TEXT")?;
        }
        conn.execute_batch("PRAGMA user_version = 2")?;
    }
    Ok(())
}

/// run_id, from, target, started_at of an open attempt.
type AttemptRow = (String, Option<String>, String, String);

/// Work for the connection's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A held stream lock: the locked file and the path it was opened at.
struct LockFile {
    file: File,
    path: PathBuf,
}

/// The default state store: one SQLite file.
pub struct SqliteState {
    jobs: mpsc::Sender<Job>,
    lock_dir: PathBuf,
    locks: Locks<LockFile>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::state(e)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn pos_json(p: &Option<Position>) -> Option<String> {
    p.as_ref().map(Position::to_json)
}

fn parse_pos(s: Option<String>) -> Result<Option<Position>> {
    s.map(|s| Position::from_json(&s).map_err(|e| err(format!("unreadable position {s}: {e}"))))
        .transpose()
}

impl SqliteState {
    /// Open (and create) the state database at `path`; its folder is created too.
    pub fn open(path: &Path) -> Result<SqliteState> {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err)?;
        enable_wal(&conn, path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // Checkpoints (which fsync the WAL and the database) run inside a
        // commit, as the WAL passes 100 pages (a few runs' worth): every
        // process that opens the file reads the WAL's valid frames first,
        // so a short WAL opens fast. None at close: a process exits right
        // after its last commit, and a checkpoint cut off by the exit only
        // costs fsyncs and leaves the WAL as long as before.
        conn.pragma_update(None, "wal_autocheckpoint", 100)
            .map_err(err)?;
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(err)?;
        // Schema and migrations in one write transaction: two processes
        // opening a new (or older) state file at once must not both add
        // a column (the second would fail with "duplicate column").
        let setup = conn
            .execute_batch("BEGIN IMMEDIATE")
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| err(format!("cannot initialise {}: {e}", path.display())))
            .and_then(|()| {
                migrate(&conn).map_err(|e| err(format!("cannot upgrade {}: {e}", path.display())))
            })
            .and_then(|()| conn.execute_batch("COMMIT").map_err(err));
        if let Err(e) = setup {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("highwater-state".into())
            .spawn(move || {
                let mut conn = conn;
                // Ends when the store (the only sender) is dropped.
                while let Ok(job) = queue.recv() {
                    // A panicking job loses its own answer, not the store.
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn)));
                }
            })
            .map_err(|e| err(format!("cannot start the state store thread: {e}")))?;
        Ok(SqliteState {
            jobs,
            lock_dir: dir.join("locks"),
            locks: Locks::new(),
        })
    }

    /// Run `f` on the connection's thread and await its answer.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |c: &mut Connection| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| err("the state store thread stopped"))?;
        rx.await
            .map_err(|_| err("the state store thread stopped during a state change"))?
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.call(move |c| f(c).map_err(err)).await
    }

    fn read_attempts(conn: &Connection, stream: &str) -> rusqlite::Result<Vec<AttemptRow>> {
        let mut st = conn.prepare(
            "SELECT run_id, from_pos, target, started_at FROM attempts
             WHERE stream = ?1 AND status = 'Open' ORDER BY started_at",
        )?;
        let rows = st.query_map(params![stream], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect()
    }
}

/// Puts the state file in WAL mode. On a new file (still in rollback
/// mode) the switch reads and then writes; two processes switching at once
/// deadlock, and SQLite answers one of them "database is locked" at once,
/// without waiting on the busy timeout. So the switch is retried, for as
/// long as the busy timeout would have waited.
fn enable_wal(conn: &Connection, path: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                return Err(err(format!(
                    "cannot open {} in WAL mode: {e}",
                    path.display()
                )));
            }
        }
    }
}

/// Run `f` with `synchronous = FULL`: its commit waits for the WAL to
/// reach the disk. For the transactions that decide delivery (see the
/// module doc); the connection is back at `NORMAL` afterwards.
fn durable<T>(c: &mut Connection, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
    c.pragma_update(None, "synchronous", "FULL").map_err(err)?;
    let r = f(c);
    // Failing to go back only costs speed (every commit stays fsynced);
    // `r` must not turn into an error after it committed.
    let _ = c.pragma_update(None, "synchronous", "NORMAL");
    r
}

/// Fails unless `locks` holds `stream` and its lock file is still the one
/// at its path (a removed or replaced file could be locked by another).
fn check_lock(locks: &Locks<LockFile>, stream: &str, doing: &str) -> Result<()> {
    locks.with(stream, |held| match held {
        None => Err(not_locked(stream, doing)),
        Some(l) if same_file(&l.file, &l.path) => Ok(()),
        Some(l) => Err(lock_lost(
            stream,
            &format!("its lock file {} was removed or replaced", l.path.display()),
            doing,
        )),
    })
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

fn lock_file_name(stream: &str) -> String {
    // Stream names are config keys; keep the file name portable whatever they hold.
    let safe: String = stream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = stream.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    format!("{safe}-{hash:016x}.lock")
}

#[async_trait]
impl StateStore for SqliteState {
    async fn lock_stream(&self, stream: &str) -> Result<Option<StreamLock>> {
        let lock_dir = self.lock_dir.clone();
        let locks = self.locks.clone();
        let stream = stream.to_string();
        // File system work too stays off the runtime.
        self.call(move |_| {
            std::fs::create_dir_all(&lock_dir)
                .map_err(|e| err(format!("cannot create {}: {e}", lock_dir.display())))?;
            let path = lock_dir.join(lock_file_name(&stream));
            let file: File = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| err(format!("cannot open lock {}: {e}", path.display())))?;
            match file.try_lock() {
                Ok(()) => Ok(Some(locks.hold(&stream, LockFile { file, path }))),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(e)) => {
                    Err(err(format!("cannot lock {}: {e}", path.display())))
                }
            }
        })
        .await
    }

    async fn position(&self, stream: &str) -> Result<Option<Position>> {
        let stream = stream.to_string();
        let s: Option<String> = self
            .with(move |c| {
                c.query_row(
                    "SELECT position FROM positions WHERE stream = ?1",
                    params![stream],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        parse_pos(s)
    }

    async fn positions(&self) -> Result<Vec<(String, Position, DateTime<Utc>, String)>> {
        let rows: Vec<(String, String, String, String)> = self
            .with(|c| {
                let mut st = c.prepare(
                    "SELECT stream, position, updated_at, run_id FROM positions ORDER BY stream",
                )?;
                let rows =
                    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                rows.collect()
            })
            .await?;
        rows.into_iter()
            .map(|(s, p, t, r)| {
                Ok((
                    s,
                    parse_pos(Some(p))?.unwrap_or(Position::Full),
                    parse_ts(&t),
                    r,
                ))
            })
            .collect()
    }

    async fn reset(&self, stream: &str) -> Result<bool> {
        let stream = stream.to_string();
        let locks = self.locks.clone();
        self.call(move |c| durable(c, |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            check_lock(&locks, &stream, "resetting its position")?;
            let n = tx
                .execute("DELETE FROM positions WHERE stream = ?1", params![stream])
                .map_err(err)?;
            tx.execute(
                "UPDATE attempts SET status = 'Abandoned', note = 'state reset' WHERE stream = ?1 AND status = 'Open'",
                params![stream],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(n > 0)
        }))
        .await
    }

    async fn begin_attempt(&self, a: &Attempt) -> Result<()> {
        let a = a.clone();
        self.call(move |c| durable(c, |c| {
            let res = c.execute(
                "INSERT INTO attempts (stream, run_id, from_pos, target, status, started_at)
                 VALUES (?1, ?2, ?3, ?4, 'Open', ?5)",
                params![
                    a.stream,
                    a.run_id,
                    pos_json(&a.from),
                    a.target,
                    ts(a.started_at)
                ],
            );
            match res {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(err(format!(
                        "stream {} already has an open attempt; another run is in progress or must be settled first",
                        a.stream
                    )))
                }
                Err(e) => Err(err(e)),
            }
        }))
        .await
    }

    async fn open_attempts(&self, stream: &str) -> Result<Vec<Attempt>> {
        let owned = stream.to_string();
        let rows = self
            .with(move |c| SqliteState::read_attempts(c, &owned))
            .await?;
        rows.into_iter()
            .map(|(run_id, from, target, started)| {
                Ok(Attempt {
                    stream: stream.to_string(),
                    run_id,
                    from: parse_pos(from)?,
                    target,
                    started_at: parse_ts(&started),
                })
            })
            .collect()
    }

    async fn commit_attempt(&self, a: &Attempt, to: &Position) -> Result<()> {
        let a = a.clone();
        let to_json = to.to_json();
        let locks = self.locks.clone();
        self.call(move |c| durable(c, |c| {
            let now = ts(Utc::now());
            let expected = pos_json(&a.from);
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            check_lock(&locks, &a.stream, &format!("committing run {}", a.run_id))?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT position FROM positions WHERE stream = ?1",
                    params![a.stream],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            let same = match (&current, &expected) {
                (None, None) => true,
                (Some(c), Some(e)) => Position::from_json(c).ok() == Position::from_json(e).ok(),
                _ => false,
            };
            if !same {
                return Err(err(format!(
                    "position of stream {} moved under run {} (expected {}, found {}); not committing",
                    a.stream,
                    a.run_id,
                    expected.as_deref().unwrap_or("none"),
                    current.as_deref().unwrap_or("none")
                )));
            }
            let n = tx
                .execute(
                    "UPDATE attempts SET status = 'Committed', to_pos = ?3, finished_at = ?4
                     WHERE stream = ?1 AND run_id = ?2 AND status = 'Open'",
                    params![a.stream, a.run_id, to_json, now],
                )
                .map_err(err)?;
            if n != 1 {
                return Err(err(format!(
                    "attempt {} of stream {} is not open",
                    a.run_id, a.stream
                )));
            }
            tx.execute(
                "INSERT INTO positions (stream, position, run_id, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(stream) DO UPDATE SET position = excluded.position,
                     run_id = excluded.run_id, updated_at = excluded.updated_at",
                params![a.stream, to_json, a.run_id, now],
            )
            .map_err(err)?;
            tx.commit().map_err(err)
        }))
        .await
    }

    async fn verify_lock(&self, stream: &str) -> Result<()> {
        let locks = self.locks.clone();
        let stream = stream.to_string();
        self.call(move |_| check_lock(&locks, &stream, "continuing"))
            .await
    }

    async fn abandon_attempt(&self, a: &Attempt, why: &str) -> Result<()> {
        let (stream, run_id, why) = (a.stream.clone(), a.run_id.clone(), why.to_string());
        let locks = self.locks.clone();
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            check_lock(&locks, &stream, &format!("abandoning run {run_id}"))?;
            tx.execute(
                "UPDATE attempts SET status = 'Abandoned', note = ?3, finished_at = ?4
                 WHERE stream = ?1 AND run_id = ?2 AND status = 'Open'",
                params![stream, run_id, why, ts(Utc::now())],
            )
            .map_err(err)?;
            tx.commit().map_err(err)
        })
        .await
    }

    async fn begin_run(&self, run_id: &str, started_at: DateTime<Utc>) -> Result<()> {
        let run_id = run_id.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT INTO runs (run_id, status, started_at, pid) VALUES (?1, 'InProgress', ?2, ?3)",
                params![run_id, ts(started_at), std::process::id()],
            )
        })
        .await?;
        Ok(())
    }

    async fn record_stream_run(&self, run_id: &str, run: &StreamRun) -> Result<()> {
        let record = serde_json::to_string(run).map_err(err)?;
        let (run_id, stream) = (run_id.to_string(), run.stream.clone());
        self.with(move |c| {
            c.execute(
                "INSERT INTO stream_runs (run_id, stream, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT(run_id, stream) DO UPDATE SET record = excluded.record",
                params![run_id, stream, record],
            )
        })
        .await?;
        Ok(())
    }

    async fn set_run_info(&self, run_id: &str, info: &serde_json::Value) -> Result<()> {
        let (run_id, info) = (run_id.to_string(), info.to_string());
        self.with(move |c| {
            c.execute(
                "UPDATE runs SET info = ?2 WHERE run_id = ?1",
                params![run_id, info],
            )
        })
        .await?;
        Ok(())
    }

    async fn finish_run(&self, run_id: &str, status: RunStatus, at: DateTime<Utc>) -> Result<()> {
        let run_id = run_id.to_string();
        self.with(move |c| {
            c.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3 WHERE run_id = ?1",
                params![run_id, status.as_str(), ts(at)],
            )
        })
        .await?;
        Ok(())
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let ids: Vec<String> = self
            .with(move |c| {
                let mut st = c.prepare(
                    "SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?1",
                )?;
                let rows = st.query_map(params![limit as i64], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
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
        let open: Vec<String> = self
            .with(|c| {
                let mut st = c.prepare("SELECT run_id FROM runs WHERE status = 'InProgress'")?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        for id in open {
            self.run(&id).await?;
        }
        let status = q.status.map(|s| s.as_str().to_string());
        let (from, to) = (q.from.map(ts), q.to.map(ts));
        let name = q.name.clone();
        let (limit, offset) = (q.limit.min(i64::MAX as usize) as i64, q.offset as i64);
        let (ids, total): (Vec<String>, i64) = self
            .with(move |c| {
                let filter = "(?1 IS NULL OR status = ?1)
                    AND (?2 IS NULL OR started_at >= ?2)
                    AND (?3 IS NULL OR started_at < ?3)
                    AND (?4 IS NULL OR json_extract(info, '$.pipeline') = ?4
                         OR (json_extract(info, '$.pipeline') IS NULL AND EXISTS
                             (SELECT 1 FROM stream_runs s WHERE s.run_id = runs.run_id AND s.stream = ?4)))";
                let total = c.query_row(
                    &format!("SELECT count(*) FROM runs WHERE {filter}"),
                    params![status, from, to, name],
                    |r| r.get(0),
                )?;
                let mut st = c.prepare(&format!(
                    "SELECT run_id FROM runs WHERE {filter}
                     ORDER BY started_at DESC, rowid DESC LIMIT ?5 OFFSET ?6"
                ))?;
                let rows = st.query_map(params![status, from, to, name, limit, offset], |r| {
                    r.get(0)
                })?;
                Ok((rows.collect::<rusqlite::Result<_>>()?, total))
            })
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.run(&id).await? {
                out.push(r);
            }
        }
        Ok((out, total as usize))
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        type Row = (
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let wanted = run_id.to_string();
        let (found, records): (Vec<Row>, Vec<(String, String)>) = self
            .with(move |c| {
                let mut st = c.prepare(
                    "SELECT run_id, status, started_at, finished_at, pid, info FROM runs
                     WHERE run_id = ?1 OR run_id LIKE ?2 ESCAPE '\\' ORDER BY started_at DESC LIMIT 2",
                )?;
                let prefix = format!(
                    "{}%",
                    wanted
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                let rows = st.query_map(params![wanted, prefix], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })?;
                let found: Vec<Row> = rows.collect::<rusqlite::Result<_>>()?;
                // The stream records of every candidate, in the same read.
                let mut st = c.prepare(
                    "SELECT run_id, record FROM stream_runs WHERE run_id = ?1 ORDER BY stream",
                )?;
                let mut records = Vec::new();
                for row in &found {
                    let rows = st.query_map(params![row.0], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    for r in rows {
                        records.push(r?);
                    }
                }
                Ok((found, records))
            })
            .await?;
        let row = match found.as_slice() {
            [] => return Ok(None),
            [one] => one.clone(),
            many => match many.iter().find(|r| r.0 == run_id) {
                Some(exact) => exact.clone(),
                None => return Err(err(format!("run id prefix {run_id} is ambiguous"))),
            },
        };
        let mut streams = records
            .iter()
            .filter(|(id, _)| *id == row.0)
            .map(|(_, r)| {
                serde_json::from_str(r).map_err(|e| err(format!("unreadable run record: {e}")))
            })
            .collect::<Result<Vec<StreamRun>>>()?;
        let mut status = RunStatus::parse(&row.1);
        if status == RunStatus::InProgress && row.4.is_some_and(|pid| !crate::process_alive(pid)) {
            // The process was killed: say so, and remember it.
            status = RunStatus::Failed;
            crate::record_dead_run(self, &row.0, &mut streams).await?;
        }
        Ok(Some(RunRecord {
            run_id: row.0,
            status,
            started_at: parse_ts(&row.2),
            finished_at: row.3.as_deref().map(parse_ts),
            streams,
            info: row.5.as_deref().and_then(|i| serde_json::from_str(i).ok()),
        }))
    }
}
