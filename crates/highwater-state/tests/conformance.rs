//! State store conformance: the same tests against the SQLite and the
//! PostgreSQL store, and the store's manners on the async runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use highwater_core::StateStore;
use highwater_state::SqliteState;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique name for this test's file, database or schema.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "hw_{tag}_{}_{}_{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh folder, removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Regression (seen in CI): several processes opening a new state file at
/// once deadlocked switching it to WAL mode, and SQLite answered one of
/// them "database is locked" at once, without waiting on the busy timeout.
#[test]
fn sqlite_many_openers_of_a_new_state_file_all_succeed() {
    let dir = TempDir::new("openers");
    for round in 0..150 {
        let path = dir.0.join(format!("state{round}.db"));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteState::open(&path)
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for o in openers {
            if let Err(e) = o.join().unwrap() {
                panic!("round {round}: {e}");
            }
        }
    }
}

/// Regression: SQLite state work ran on the async executor, so a state
/// write waiting on the database (a busy lock here, an fsync in life)
/// stalled every other task of the runtime.
#[tokio::test(flavor = "current_thread")]
async fn sqlite_waiting_write_does_not_stall_other_tasks() {
    let dir = TempDir::new("stall");
    let path = dir.0.join("state.db");
    let s = SqliteState::open(&path).unwrap();
    // Another connection holds the write lock for a second.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        blocker.execute_batch("COMMIT").unwrap();
    });
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    tokio::task::yield_now().await;
    let start = Instant::now();
    s.begin_run("r1", Utc::now()).await.unwrap();
    let waited = start.elapsed();
    let n = ticks.load(Ordering::SeqCst);
    ticker.abort();
    release.join().unwrap();
    assert!(
        waited >= Duration::from_millis(800),
        "the write should have waited for the other connection's lock, waited {waited:?}"
    );
    assert!(
        n >= 20,
        "another task's 10 ms timer ticked only {n} times while the state write waited {waited:?}"
    );
    assert!(
        s.run("r1").await.unwrap().is_some(),
        "the run record landed"
    );
}

// ---------------------------------------------------------------------------
// The backends.

/// Where a test's state lives; `open` gives a new store on it (a second
/// process, or the same one after a restart).
enum Backend {
    Sqlite(TempDir),
    Postgres(PgDatabase),
}

impl Backend {
    async fn sqlite() -> Backend {
        Backend::Sqlite(TempDir::new("state"))
    }

    async fn postgres() -> Backend {
        Backend::Postgres(PgDatabase::new().await)
    }

    async fn open(&self) -> Arc<dyn StateStore> {
        match self {
            Backend::Sqlite(dir) => Arc::new(SqliteState::open(&dir.0.join("state.db")).unwrap()),
            Backend::Postgres(db) => Arc::new(
                highwater_state::PgState::open(&db.url, &db.name, pg_connect_fn())
                    .await
                    .unwrap(),
            ),
        }
    }
}

fn pg_admin_url() -> String {
    std::env::var("HIGHWATER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn pg_connect_fn() -> highwater_state::PgConnect {
    Arc::new(|url: String| {
        Box::pin(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(highwater_core::Error::state)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        })
    })
}

/// A fresh database for one test, dropped at its end.
struct PgDatabase {
    name: String,
    url: String,
    admin: tokio_postgres::Client,
}

impl PgDatabase {
    async fn new() -> PgDatabase {
        let name = unique("state");
        let admin = pg_client(&pg_admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = pg_admin_url();
        let url = match base.rsplit_once('/') {
            Some((b, _)) => format!("{b}/{name}"),
            None => base.clone(),
        };
        PgDatabase { name, url, admin }
    }

    /// Backends of this database holding an advisory lock (stream locks).
    async fn lock_backends(&self) -> Vec<i32> {
        self.admin
            .query(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = $1)
                 AND pid IN (SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'highwater lock: %')",
                &[&self.name],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Backends of this database holding no advisory lock (the stores' own).
    async fn store_backends(&self) -> Vec<i32> {
        let locks = self.lock_backends().await;
        self.admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1",
                &[&self.name],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .filter(|p| !locks.contains(p))
            .collect()
    }

    /// Terminate a backend and wait until it is gone.
    async fn kill(&self, pid: i32) {
        let done: bool = self
            .admin
            .query_one("SELECT pg_terminate_backend($1, 10000)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(done, "backend {pid} did not end");
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                &pg_admin_url(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// Each test, once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::postgres().await).await
                }
            )*
        }
    };
}

conformance!(
    one_open_attempt_per_stream,
    commit_is_a_compare_and_swap,
    abandon_leaves_the_position,
    open_attempts_survive_a_crash,
    changes_need_the_stream_lock,
    lock_excludes_a_second_holder_until_dropped,
    positions_round_trip_every_variant,
    concurrent_commits_on_many_streams_all_land,
    run_records_round_trip,
);

// ---------------------------------------------------------------------------
// The suite.

use highwater_core::{
    Attempt, ChangeVersion, CursorValue, Position, RunStatus, StreamLock, StreamRun,
    WatermarkPosition,
};

fn wm(v: i64) -> Position {
    Position::Watermark(WatermarkPosition {
        value: Some(CursorValue::Int(v)),
        boundary: Default::default(),
        null_rows: 0,
    })
}

/// Now, to the microsecond (what both stores keep).
fn now() -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn attempt(stream: &str, run_id: &str, from: Option<Position>) -> Attempt {
    Attempt {
        stream: stream.into(),
        run_id: run_id.into(),
        from,
        target: format!("out/{stream}-{run_id}.csv"),
        started_at: now(),
    }
}

async fn lock(s: &Arc<dyn StateStore>, stream: &str) -> StreamLock {
    s.lock_stream(stream)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("stream {stream} should be free"))
}

fn message(r: highwater_core::Result<()>) -> String {
    match r {
        Ok(()) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

async fn one_open_attempt_per_stream(b: Backend) {
    let s = b.open().await;
    let _l = lock(&s, "s").await;
    let a = attempt("s", "r1", None);
    s.begin_attempt(&a).await.unwrap();
    let e = message(s.begin_attempt(&attempt("s", "r2", None)).await);
    assert!(e.contains("already has an open attempt"), "{e}");
    assert_eq!(s.open_attempts("s").await.unwrap(), vec![a.clone()]);
    // Other streams are not affected.
    let other = attempt("t", "r2", None);
    s.begin_attempt(&other).await.unwrap();
    assert_eq!(s.open_attempts("t").await.unwrap(), vec![other]);
    // Once the first is closed, the stream takes a new one.
    s.commit_attempt(&a, &wm(1)).await.unwrap();
    let c = attempt("s", "r3", Some(wm(1)));
    s.begin_attempt(&c).await.unwrap();
    assert_eq!(s.open_attempts("s").await.unwrap(), vec![c]);
}

async fn commit_is_a_compare_and_swap(b: Backend) {
    let s = b.open().await;
    let _l = lock(&s, "s").await;
    let a = attempt("s", "r1", None);
    s.begin_attempt(&a).await.unwrap();
    s.commit_attempt(&a, &wm(5)).await.unwrap();
    assert_eq!(s.position("s").await.unwrap(), Some(wm(5)));
    assert!(s.open_attempts("s").await.unwrap().is_empty());
    // Committing it again: it is no longer open.
    let e = message(s.commit_attempt(&a, &wm(6)).await);
    assert!(e.contains("not open") || e.contains("moved"), "{e}");
    assert_eq!(s.position("s").await.unwrap(), Some(wm(5)));
    // An attempt from a stale position (none) cannot commit, and stays open.
    let stale = attempt("s", "r2", None);
    s.begin_attempt(&stale).await.unwrap();
    let e = message(s.commit_attempt(&stale, &wm(9)).await);
    assert!(e.contains("moved"), "{e}");
    assert_eq!(s.position("s").await.unwrap(), Some(wm(5)));
    assert_eq!(s.open_attempts("s").await.unwrap(), vec![stale.clone()]);
    s.abandon_attempt(&stale, "stale").await.unwrap();
    // Nor from a stale watermark.
    let stale = attempt("s", "r3", Some(wm(4)));
    s.begin_attempt(&stale).await.unwrap();
    assert!(s.commit_attempt(&stale, &wm(9)).await.is_err());
    assert_eq!(s.position("s").await.unwrap(), Some(wm(5)));
    s.abandon_attempt(&stale, "stale").await.unwrap();
    // From the current position it moves.
    let next = attempt("s", "r4", Some(wm(5)));
    s.begin_attempt(&next).await.unwrap();
    s.commit_attempt(&next, &wm(7)).await.unwrap();
    assert_eq!(s.position("s").await.unwrap(), Some(wm(7)));
    let all = s.positions().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].0.as_str(), &all[0].1, all[0].3.as_str()),
        ("s", &wm(7), "r4")
    );
}

async fn abandon_leaves_the_position(b: Backend) {
    let s = b.open().await;
    let _l = lock(&s, "s").await;
    let a = attempt("s", "r1", None);
    s.begin_attempt(&a).await.unwrap();
    s.commit_attempt(&a, &wm(5)).await.unwrap();
    let c = attempt("s", "r2", Some(wm(5)));
    s.begin_attempt(&c).await.unwrap();
    s.abandon_attempt(&c, "failed").await.unwrap();
    assert_eq!(s.position("s").await.unwrap(), Some(wm(5)));
    assert!(s.open_attempts("s").await.unwrap().is_empty());
    // An abandoned attempt cannot commit afterwards.
    assert!(s.commit_attempt(&c, &wm(8)).await.is_err());
    assert_eq!(s.position("s").await.unwrap(), Some(wm(5)));
    // Abandoning the first run's attempt leaves no position either.
    let first = attempt("u", "r3", None);
    let _lu = lock(&s, "u").await;
    s.begin_attempt(&first).await.unwrap();
    s.abandon_attempt(&first, "failed").await.unwrap();
    assert_eq!(s.position("u").await.unwrap(), None);
}

async fn open_attempts_survive_a_crash(b: Backend) {
    let from = Position::Watermark(WatermarkPosition {
        value: Some(CursorValue::Text("2024-01-01 00:00:00".into())),
        boundary: [7u64, 1 << 63, 42].into_iter().collect(),
        null_rows: 3,
    });
    let a = attempt("s", "r1", Some(from));
    {
        let s = b.open().await;
        let l = lock(&s, "s").await;
        s.begin_attempt(&a).await.unwrap();
        // A crash: nothing closed, nothing settled.
        drop(l);
        drop(s);
    }
    let s = b.open().await;
    assert_eq!(s.open_attempts("s").await.unwrap(), vec![a.clone()]);
    // The restarted process settles it.
    let _l = lock(&s, "s").await;
    s.abandon_attempt(&a, "crashed").await.unwrap();
    assert!(s.open_attempts("s").await.unwrap().is_empty());
    assert_eq!(s.position("s").await.unwrap(), None);
}

async fn changes_need_the_stream_lock(b: Backend) {
    let s = b.open().await;
    let a = attempt("s", "r1", None);
    s.begin_attempt(&a).await.unwrap();
    // Without the lock: nothing changes.
    let e = message(s.verify_lock("s").await);
    assert!(e.contains("not locked"), "{e}");
    let e = message(s.commit_attempt(&a, &wm(1)).await);
    assert!(e.contains("not locked"), "{e}");
    let e = message(s.abandon_attempt(&a, "x").await);
    assert!(e.contains("not locked"), "{e}");
    assert!(s.reset("s").await.is_err());
    assert_eq!(s.position("s").await.unwrap(), None);
    assert_eq!(s.open_attempts("s").await.unwrap(), vec![a.clone()]);
    // Another stream's lock does not count.
    let other = lock(&s, "t").await;
    assert!(s.commit_attempt(&a, &wm(1)).await.is_err());
    drop(other);
    // With it, it moves.
    let l = lock(&s, "s").await;
    s.verify_lock("s").await.unwrap();
    s.commit_attempt(&a, &wm(1)).await.unwrap();
    assert_eq!(s.position("s").await.unwrap(), Some(wm(1)));
    // After it is released, nothing moves again.
    let n = attempt("s", "r2", Some(wm(1)));
    s.begin_attempt(&n).await.unwrap();
    drop(l);
    assert!(s.verify_lock("s").await.is_err());
    assert!(s.commit_attempt(&n, &wm(2)).await.is_err());
    assert_eq!(s.position("s").await.unwrap(), Some(wm(1)));
    // Reset under the lock forgets the position and closes the attempt.
    let _l = lock_eventually(&s, "s").await;
    assert!(s.reset("s").await.unwrap());
    assert_eq!(s.position("s").await.unwrap(), None);
    assert!(s.open_attempts("s").await.unwrap().is_empty());
    assert!(!s.reset("s").await.unwrap());
}

/// A released lock is free again at once for SQLite, as soon as the server
/// has ended the session for PostgreSQL.
async fn lock_eventually(s: &Arc<dyn StateStore>, stream: &str) -> StreamLock {
    let start = Instant::now();
    loop {
        if let Some(l) = s.lock_stream(stream).await.unwrap() {
            return l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stream {stream} stayed locked after its holder let go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn lock_excludes_a_second_holder_until_dropped(b: Backend) {
    let one = b.open().await;
    let two = b.open().await;
    let l = lock(&one, "s").await;
    assert!(two.lock_stream("s").await.unwrap().is_none());
    assert!(one.lock_stream("s").await.unwrap().is_none());
    // Other streams are free.
    let _t = lock(&two, "t").await;
    assert!(one.lock_stream("t").await.unwrap().is_none());
    // The holder commits; the other store cannot.
    let a = attempt("s", "r1", None);
    one.begin_attempt(&a).await.unwrap();
    assert!(two.commit_attempt(&a, &wm(1)).await.is_err());
    assert_eq!(one.position("s").await.unwrap(), None);
    drop(l);
    let _l2 = lock_eventually(&two, "s").await;
    assert!(one.lock_stream("s").await.unwrap().is_none());
    two.commit_attempt(&a, &wm(1)).await.unwrap();
    assert_eq!(one.position("s").await.unwrap(), Some(wm(1)));
    // A store dropped while holding a lock (a crash) releases it.
    let three = b.open().await;
    let _u = lock(&three, "u").await;
    assert!(one.lock_stream("u").await.unwrap().is_none());
    drop(_u);
    drop(three);
    let _u = lock_eventually(&one, "u").await;
}

async fn positions_round_trip_every_variant(b: Backend) {
    let s = b.open().await;
    let wm_with = |value: Option<CursorValue>, boundary: &[u64], null_rows: u64| {
        Position::Watermark(WatermarkPosition {
            value,
            boundary: boundary.iter().copied().collect(),
            null_rows,
        })
    };
    let cases: Vec<(&str, Position)> = vec![
        ("full", Position::Full),
        (
            "version",
            Position::Version(ChangeVersion {
                version: i64::MAX,
                generation: Some("g1".into()),
            }),
        ),
        (
            "version0",
            Position::Version(ChangeVersion {
                version: 0,
                generation: None,
            }),
        ),
        ("int", wm_with(Some(CursorValue::Int(i64::MIN)), &[], 0)),
        (
            "tstz",
            wm_with(
                Some(CursorValue::TimestampTz(1_700_000_000_123_456)),
                &[1, 2, u64::MAX],
                0,
            ),
        ),
        (
            "ts",
            wm_with(Some(CursorValue::Timestamp(-5)), &[u64::MAX - 1], 9),
        ),
        ("date", wm_with(Some(CursorValue::Date(19_000)), &[0], 0)),
        (
            "text",
            wm_with(
                Some(CursorValue::Text("é'\"\\\n ☃ 2024-01-01".into())),
                &(0..500).map(|i| i * 7919).collect::<Vec<u64>>(),
                0,
            ),
        ),
        ("none", wm_with(None, &[], 12)),
    ];
    let mut locks = Vec::new();
    for (i, (stream, pos)) in cases.iter().enumerate() {
        locks.push(lock(&s, stream).await);
        let a = attempt(stream, &format!("r{i}"), None);
        s.begin_attempt(&a).await.unwrap();
        s.commit_attempt(&a, pos).await.unwrap();
        // The next attempt starts from the stored value: it must compare equal.
        let n = attempt(stream, &format!("n{i}"), Some(pos.clone()));
        s.begin_attempt(&n).await.unwrap();
        s.commit_attempt(&n, pos).await.unwrap();
    }
    // Read back by another instance.
    let t = b.open().await;
    for (stream, pos) in &cases {
        assert_eq!(
            t.position(stream).await.unwrap().as_ref(),
            Some(pos),
            "{stream}"
        );
    }
    let mut all = t.positions().await.unwrap();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, Position)> = cases
        .iter()
        .map(|(s, p)| (s.to_string(), p.clone()))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        all.iter()
            .map(|(s, p, _, _)| (s.clone(), p.clone()))
            .collect::<Vec<_>>(),
        want
    );
}

async fn concurrent_commits_on_many_streams_all_land(b: Backend) {
    let s = b.open().await;
    let mut tasks = Vec::new();
    for i in 0..32i64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("s{i}");
            let _l = s.lock_stream(&stream).await.unwrap().unwrap();
            let mut from = None;
            for round in 0..3i64 {
                let a = attempt(&stream, &format!("r{round}"), from.clone());
                s.begin_attempt(&a).await.unwrap();
                let to = wm(i * 100 + round);
                s.commit_attempt(&a, &to).await.unwrap();
                from = Some(to);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = s.positions().await.unwrap();
    assert_eq!(all.len(), 32);
    for i in 0..32i64 {
        assert_eq!(
            s.position(&format!("s{i}")).await.unwrap(),
            Some(wm(i * 100 + 2)),
            "stream s{i}"
        );
        assert!(s.open_attempts(&format!("s{i}")).await.unwrap().is_empty());
    }
}

fn stream_run(stream: &str, status: RunStatus, error: Option<&str>) -> StreamRun {
    StreamRun {
        stream: stream.into(),
        mode: "watermark".into(),
        status,
        rows_read: 1234,
        rows_written: 1230,
        watermark_from: Some("5".into()),
        watermark_to: Some("2024-01-01 00:00:00".into()),
        outputs: vec!["out/a.csv".into(), "out/b.csv".into()],
        error: error.map(str::to_string),
        full_reload: true,
        notes: vec!["a note".into()],
        started_at: now(),
        finished_at: Some(now()),
        pipeline: None,
        input: None,
        output: None,
    }
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

async fn run_records_round_trip(b: Backend) {
    let s = b.open().await;
    let t0 = now() - chrono::Duration::seconds(10);
    s.begin_run("run-aaa-1", t0).await.unwrap();
    let first = stream_run("b", RunStatus::InProgress, None);
    s.record_stream_run("run-aaa-1", &first).await.unwrap();
    let other = stream_run("a", RunStatus::Succeeded, None);
    s.record_stream_run("run-aaa-1", &other).await.unwrap();
    // Recording a stream again replaces it.
    let failed = stream_run("b", RunStatus::Failed, Some("it broke"));
    s.record_stream_run("run-aaa-1", &failed).await.unwrap();
    let t1 = now();
    s.finish_run("run-aaa-1", RunStatus::Failed, t1)
        .await
        .unwrap();
    s.begin_run("run-aab-2", now()).await.unwrap();

    let r = s.run("run-aaa-1").await.unwrap().unwrap();
    assert_eq!(r.run_id, "run-aaa-1");
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!((r.started_at, r.finished_at), (t0, Some(t1)));
    assert_eq!(json(&r.streams), json(&vec![other, failed]));
    // A unique prefix finds it; a shared one is refused; an unknown one is none.
    assert_eq!(s.run("run-aaa").await.unwrap().unwrap().run_id, "run-aaa-1");
    assert!(s.run("run-aa").await.is_err());
    assert!(s.run("nope").await.unwrap().is_none());
    // A prefix with LIKE wildcards matches only literally.
    assert!(s.run("run_aaa").await.unwrap().is_none());
    assert!(s.run("run-%").await.unwrap().is_none());
    // Newest first, limited.
    let runs = s.runs(10).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["run-aab-2", "run-aaa-1"]);
    let second = &runs[0];
    assert_eq!(
        second.status,
        RunStatus::InProgress,
        "this process is alive"
    );
    assert!(second.streams.is_empty() && second.finished_at.is_none());
    assert_eq!(s.runs(1).await.unwrap().len(), 1);
    // Another instance reads the same.
    let t = b.open().await;
    assert_eq!(json(&t.run("run-aaa-1").await.unwrap().unwrap()), json(&r));
}

// ---------------------------------------------------------------------------
// Backend-specific: how a lock is lost, how a connection drops.

/// A PostgreSQL stream lock lives in its own session; when that session
/// dies, another worker can take the stream, so the old holder must not
/// commit, abandon or reset anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lost_lock_is_noticed_before_anything_commits() {
    let b = Backend::postgres().await;
    let Backend::Postgres(db) = &b else {
        unreachable!()
    };
    let s = b.open().await;
    let l = lock(&s, "s").await;
    let a = attempt("s", "r1", None);
    s.begin_attempt(&a).await.unwrap();
    s.commit_attempt(&a, &wm(1)).await.unwrap();
    let a = attempt("s", "r2", Some(wm(1)));
    s.begin_attempt(&a).await.unwrap();
    let holders = db.lock_backends().await;
    assert_eq!(holders.len(), 1, "one session holds the stream lock");
    s.verify_lock("s").await.unwrap();
    db.kill(holders[0]).await;

    let e = message(s.verify_lock("s").await);
    assert!(e.contains("lost the lock of stream s"), "{e}");
    let e = message(s.commit_attempt(&a, &wm(2)).await);
    assert!(e.contains("lost the lock of stream s"), "{e}");
    assert_eq!(s.position("s").await.unwrap(), Some(wm(1)));
    assert_eq!(s.open_attempts("s").await.unwrap(), vec![a.clone()]);
    let e = message(s.abandon_attempt(&a, "x").await);
    assert!(e.contains("lost the lock"), "{e}");
    assert!(s.reset("s").await.is_err());
    assert_eq!(s.position("s").await.unwrap(), Some(wm(1)));
    assert_eq!(s.open_attempts("s").await.unwrap(), vec![a.clone()]);

    // A second worker takes the stream and settles the attempt.
    let other = b.open().await;
    let _l2 = lock_eventually(&other, "s").await;
    // The first holder still cannot commit (its session is gone, the lock is another's).
    assert!(s.commit_attempt(&a, &wm(2)).await.is_err());
    assert!(s.lock_stream("s").await.unwrap().is_none());
    other.commit_attempt(&a, &wm(2)).await.unwrap();
    assert_eq!(s.position("s").await.unwrap(), Some(wm(2)));
    drop(l);
}

/// The check runs on the server, not only on the client's view of its
/// session: a lock session whose backend was replaced by another session
/// holding the lock does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lock_held_by_another_session_does_not_count() {
    let b = Backend::postgres().await;
    let Backend::Postgres(db) = &b else {
        unreachable!()
    };
    let s = b.open().await;
    let _l = lock(&s, "s").await;
    let a = attempt("s", "r1", None);
    s.begin_attempt(&a).await.unwrap();
    let holder = db.lock_backends().await;
    db.kill(holder[0]).await;
    // Before the client has even noticed its session is gone, a stranger takes the key.
    let other = b.open().await;
    let _theirs = lock_eventually(&other, "s").await;
    let e = message(s.commit_attempt(&a, &wm(1)).await);
    assert!(e.contains("lost the lock"), "{e}");
    assert_eq!(s.position("s").await.unwrap(), None);
}

/// The store's own connection dropping is not a failure: it reconnects
/// (and a lock session that survives keeps its stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_reconnects_when_its_connection_drops() {
    let b = Backend::postgres().await;
    let Backend::Postgres(db) = &b else {
        unreachable!()
    };
    let s = b.open().await;
    let _l = lock(&s, "s").await;
    let mut from = None;
    for round in 0..4i64 {
        let pids = db.store_backends().await;
        assert_eq!(pids.len(), 1, "the store has one connection of its own");
        db.kill(pids[0]).await;
        // Each kind of call after a drop: read, write-ahead, commit, history.
        match round {
            0 => assert_eq!(s.position("s").await.unwrap(), from),
            1 => s.begin_run("run1", now()).await.unwrap(),
            _ => {}
        }
        let a = attempt("s", &format!("r{round}"), from.clone());
        s.begin_attempt(&a).await.unwrap();
        if round == 2 {
            let pids = db.store_backends().await;
            db.kill(pids[0]).await;
        }
        s.commit_attempt(&a, &wm(round)).await.unwrap();
        from = Some(wm(round));
    }
    assert_eq!(s.position("s").await.unwrap(), Some(wm(3)));
    assert!(s.run("run1").await.unwrap().is_some());
    // The lock session was never touched: still ours, still one.
    assert_eq!(db.lock_backends().await.len(), 1);
}

/// A PostgreSQL state database that stays away: a bounded number of tries,
/// then a clear error (no hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_gives_up_when_the_database_stays_away() {
    let b = Backend::postgres().await;
    let Backend::Postgres(db) = &b else {
        unreachable!()
    };
    let s = b.open().await;
    // Nobody may connect any more.
    db.admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            db.name
        ))
        .await
        .unwrap();
    for pid in db.store_backends().await {
        db.kill(pid).await;
    }
    let start = Instant::now();
    let e = s.position("s").await.unwrap_err().to_string();
    let took = start.elapsed();
    assert!(e.contains("cannot reach the state database"), "{e}");
    assert!(
        took < Duration::from_secs(30),
        "gave up only after {took:?}"
    );
    db.admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name
        ))
        .await
        .unwrap();
    // And it comes back when the database does.
    assert_eq!(s.position("s").await.unwrap(), None);
}

/// A SQLite stream lock is a lock on an open file; if that file is removed
/// (or replaced), another process can lock a new file of the same name, so
/// the old holder must not change anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_removed_lock_file_is_a_lost_lock() {
    let b = Backend::sqlite().await;
    let Backend::Sqlite(dir) = &b else {
        unreachable!()
    };
    let s = b.open().await;
    let _l = lock(&s, "s").await;
    let a = attempt("s", "r1", None);
    s.begin_attempt(&a).await.unwrap();
    for f in std::fs::read_dir(dir.0.join("locks")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    assert!(s.verify_lock("s").await.is_err());
    let e = message(s.commit_attempt(&a, &wm(1)).await);
    assert!(e.contains("lost the lock of stream s"), "{e}");
    assert_eq!(s.position("s").await.unwrap(), None);
    assert_eq!(s.open_attempts("s").await.unwrap(), vec![a.clone()]);
    let other = b.open().await;
    let _l2 = lock(&other, "s").await;
    other.commit_attempt(&a, &wm(1)).await.unwrap();
    assert_eq!(s.position("s").await.unwrap(), Some(wm(1)));
}
