//! `mode: cdc`, one conformance suite over both log readers: PostgreSQL's
//! WAL through a logical replication slot, MariaDB's binary log as a
//! replica. Each scenario below is an `async fn scenario(b: Backend)`,
//! listed once in [`cdc_suite!`], and run as `cdc::postgres::scenario` and
//! `cdc::mariadb::scenario`; what only one backend has (TOAST and replica
//! identity, slots and publications; binlog settings, XA, key types,
//! collations, `RESET MASTER`) is tested in that backend's module.
//!
//! Every scenario asserts that the replay of all outputs, in version
//! order, equals the source table exactly; the concurrent ones replay
//! strictly (an `I` for a key held, or a `U` for one not held, is a
//! change delivered twice or lost).

mod db;
mod mariadb;
mod postgres;

use std::collections::{BTreeMap, BTreeSet};

pub use db::{Backend, CdcDb, Rows, Session};

use crate::util::*;

/// Every shared scenario, as tests of the calling backend module.
macro_rules! cdc_suite {
    ($backend:expr) => {
        cdc_suite!(@tests $backend;
            full_load_then_exact_net_changes_across_log_files,
            a_long_transaction_holds_nothing_back_and_arrives_on_commit,
            kill_9_at_every_failpoint_then_rerun_replays_to_the_source,
            concurrent_writers_during_the_first_load_and_deltas_deliver_each_change_once,
            kill_9_at_random_instants_beside_writers_then_rerun_replays_exactly,
            a_lost_log_reloads_loudly_then_deltas_resume,
            check_names_what_a_server_without_the_log_lacks,
            merge_into_a_table_of_the_same_database_kind_equals_the_source,
            truncate_reloads_loudly_and_column_changes_fail_naming_the_column,
            the_log_held_for_a_stream_grows_with_writes_in_status_and_metrics,
            many_changed_keys_and_huge_transactions_replay_exactly,
            verify_finds_and_repairs_what_differs,
        );
    };
    (@tests $backend:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test($backend).await
            }
        )*
    };
}
pub(crate) use cdc_suite;

/// A config with one `mode: cdc` stream of table `t` per name, to CSV
/// files `lake/<stream>/<run_id>.csv` in batches of 3 rows.
pub fn cfg(url: &str, streams: &[&str]) -> String {
    let mut y = format!("connections:\n  src: {url}\n  lake: file://./lake\nstreams:\n");
    for s in streams {
        y.push_str(&format!(
            "  {s}:\n    from: src\n    table: t\n    mode: cdc\n    primary_key: [id]\n    to: lake\n    path: \"{s}/{{run_id}}.csv\"\n    batch_size: 3\n"
        ));
    }
    y
}

/// The table every scenario reads (both dialects).
pub const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v varchar(200), n int)";

/// One delivered row: (id, v, n, version, op).
pub type Change = (String, Option<String>, Option<String>, i64, String);

/// Every row of every file of a stream, in version order.
pub fn changes(dir: &Dir, stream: &str) -> Vec<Change> {
    let mut out = Vec::new();
    for f in dir.files(&format!("lake/{stream}"), "csv") {
        let (header, rows) = read_csv(&f);
        assert_eq!(
            header,
            ["id", "v", "n", "SYS_CHANGE_VERSION", "SYS_CHANGE_OPERATION"],
            "{}",
            f.display()
        );
        for r in rows {
            let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
            out.push((
                r[0].clone(),
                opt(&r[1]),
                opt(&r[2]),
                r[3].parse().unwrap(),
                r[4].clone(),
            ));
        }
    }
    out.sort_by_key(|c| c.3);
    out
}

/// Apply every delivered change in version order.
pub fn replay(dir: &Dir, stream: &str) -> Rows {
    replay_from(dir, stream, i64::MIN)
}

/// Apply the delivered changes of versions `from` and later in version
/// order (a consumer replaces its copy with a full reload's rows).
pub fn replay_from(dir: &Dir, stream: &str, from: i64) -> Rows {
    let mut t = BTreeMap::new();
    for (id, v, n, _, op) in changes(dir, stream).into_iter().filter(|c| c.3 >= from) {
        match op.as_str() {
            "D" => {
                t.remove(&id);
            }
            "I" | "U" => {
                t.insert(id, vec![v, n]);
            }
            o => panic!("unknown operation {o}"),
        }
    }
    t
}

/// Apply the changes in version order, checking that each is possible: an
/// `I` for a key the consumer does not hold, a `U` for one it holds (the
/// writers never insert a key twice, so an `I` for a held key would be a
/// change delivered twice, e.g. by both the first load and a delta).
pub fn strict_replay(dir: &Dir, stream: &str) -> Rows {
    let mut t = BTreeMap::new();
    for (id, v, n, version, op) in changes(dir, stream) {
        match op.as_str() {
            "D" => {
                t.remove(&id);
            }
            "I" => {
                assert!(
                    t.insert(id.clone(), vec![v, n]).is_none(),
                    "key {id} inserted twice (version {version})"
                );
            }
            "U" => {
                assert!(
                    t.insert(id.clone(), vec![v, n]).is_some(),
                    "key {id} updated before it was inserted (version {version})"
                );
            }
            o => panic!("unknown operation {o}"),
        }
    }
    t
}

/// Each key at most once per output file (one net change per key per run).
fn no_key_twice_per_file(dir: &Dir, stream: &str, what: &str) {
    for f in dir.files(&format!("lake/{stream}"), "csv") {
        let (_, rows) = read_csv(&f);
        let mut seen = BTreeSet::new();
        for r in rows {
            assert!(
                seen.insert(r[0].clone()),
                "{what}: key {} twice in {}",
                r[0],
                f.display()
            );
        }
    }
}

pub fn text(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// The newest output file of a stream.
pub fn newest_file(dir: &Dir, stream: &str) -> std::path::PathBuf {
    dir.files(&format!("lake/{stream}"), "csv")
        .into_iter()
        .max_by_key(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .unwrap()
}

type Writers = (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Two writers committing small transactions (some slow) until stopped:
/// each inserts a new key (from `first`, never reused), updates two rows
/// and deletes the key it inserted 10 transactions before. A transaction
/// the server rolled back (deadlock) is written again.
fn start_writers(db: &CdcDb, first: i32) -> Writers {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..2i32 {
        let stop = stop.clone();
        let slow_sql = db.sleep(0.05);
        let (backend, url) = (db.backend, db.url.clone());
        handles.push(tokio::spawn(async move {
            let mut c = Session::open(backend, &url).await;
            let mut k = first + w;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let slow = if i % 5 == 0 { slow_sql.as_str() } else { "" };
                let r = c
                    .exec(&format!(
                        "START TRANSACTION; INSERT INTO t VALUES ({k}, 'w{w}', {i}); {slow}
                         UPDATE t SET n = n + 1, v = 'u{i}' WHERE id IN ({}, {});
                         DELETE FROM t WHERE id = {}; COMMIT;",
                        k - 6,
                        (i * 7) % 200 + 1,
                        k - 20
                    ))
                    .await;
                match r {
                    Ok(()) => {}
                    Err(e) if e.retry => {
                        c.exec("ROLLBACK").await.unwrap();
                        continue;
                    }
                    Err(e) => panic!("writer: {e}"),
                }
                k += 2;
                i += 1;
            }
            c.close().await;
        }));
    }
    (stop, handles)
}

async fn stop_writers((stop, handles): Writers) {
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for h in handles {
        h.await.unwrap();
    }
}

/// A run on the blocking pool (the writers keep running meanwhile), with
/// PostgreSQL's window between slot and snapshot widened.
async fn run_beside_writers(dir: &Dir) {
    let d = dir.path.clone();
    let o = tokio::task::spawn_blocking(move || {
        command_in(&d, &["run"])
            .env("HIGHWATER_TEST_CDC_SNAPSHOT_DELAY_MS", "300")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_code(&o, 0);
}

/// Start `highwater run` in `dir` and kill it (SIGKILL) after `delay_ms`.
async fn kill_run_after(dir: &Dir, delay_ms: u64) {
    let d = dir.path.clone();
    tokio::task::spawn_blocking(move || {
        let mut child = command_in(&d, &["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    })
    .await
    .unwrap();
}

// ------------------------------------------------------------ scenarios

async fn full_load_then_exact_net_changes_across_log_files(b: Backend) {
    let db = CdcDb::new(b, "cdc_exact").await;
    db.exec(&format!(
        "{SCHEMA}; {}",
        db.insert_series(1, 5, "concat('v', g)")
    ))
    .await;
    let dir = Dir::new("cdc_exact");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    let o = dir.hw(&["check"]);
    assert_code(&o, 0);
    let ready = match b {
        Backend::Postgres => "logical decoding ready",
        Backend::Mariadb => "binary log ready",
    };
    assert!(stdout(&o).contains(ready), "{}", stdout(&o));
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(text(&o).contains("first run"), "{}", text(&o));
    let first = changes(&dir, "t");
    assert_eq!(first.len(), 5);
    assert!(first.iter().all(|c| c.4 == "I"));
    let l = first[0].3;
    assert!(first.iter().all(|c| c.3 == l), "{first:?}");
    assert_eq!(db.slots().await.len(), usize::from(b == Backend::Postgres));

    // The changes span a new log file; a key changes; a transaction
    // rolls back.
    db.exec(
        "INSERT INTO t VALUES (6, 'six', 6), (7, 'seven', 7);
         UPDATE t SET v = 'two' WHERE id = 2;",
    )
    .await;
    db.exec(db.rotate_log()).await;
    db.exec(
        "DELETE FROM t WHERE id = 3;
         INSERT INTO t VALUES (8, 'eight', 8); DELETE FROM t WHERE id = 8;
         UPDATE t SET n = 40 WHERE id = 4; UPDATE t SET v = 'four', n = 44 WHERE id = 4;
         INSERT INTO t VALUES (9, 'nine', 9); UPDATE t SET v = 'NINE' WHERE id = 9;
         UPDATE t SET v = NULL WHERE id = 5;
         UPDATE t SET id = 10 WHERE id = 1;",
    )
    .await;
    db.exec("START TRANSACTION; INSERT INTO t VALUES (11, 'gone', 11); ROLLBACK;")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(!text(&o).contains("FULL RELOAD"), "{}", text(&o));
    let all = changes(&dir, "t");
    let second: BTreeMap<String, (Option<String>, Option<String>, String)> = all
        .iter()
        .filter(|c| c.3 > l)
        .map(|c| (c.0.clone(), (c.1.clone(), c.2.clone(), c.4.clone())))
        .collect();
    assert_eq!(
        all.iter().filter(|c| c.3 > l).count(),
        10,
        "one net change per key: {all:?}"
    );
    let s = |x: &str| Some(x.to_string());
    let expect: BTreeMap<String, (Option<String>, Option<String>, String)> = [
        ("1", (None, None, "D")),
        ("10", (s("v1"), s("1"), "I")),
        ("2", (s("two"), s("2"), "U")),
        ("3", (None, None, "D")),
        ("4", (s("four"), s("44"), "U")),
        ("5", (None, s("5"), "U")),
        ("6", (s("six"), s("6"), "I")),
        ("7", (s("seven"), s("7"), "I")),
        ("8", (None, None, "D")),
        ("9", (s("NINE"), s("9"), "I")),
    ]
    .into_iter()
    .map(|(k, (v, n, o))| (k.to_string(), (v, n, o.to_string())))
    .collect();
    assert_eq!(second, expect);
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
    // Versions follow commit order: the delete of 3 (after the new file)
    // comes after the update of 2.
    let v = |id: &str| all.iter().rfind(|c| c.0 == id).unwrap().3;
    assert!(v("3") > v("2") && v("2") > l, "{all:?}");

    // Nothing changed: no file, the position stays.
    let files = dir.files("lake/t", "csv").len();
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(dir.files("lake/t", "csv").len(), files);
    assert_eq!(replay(&dir, "t"), db.rows("t").await);

    let o = dir.hw(&["changes", "status"]);
    assert_code(&o, 0);
    let status = match b {
        Backend::Postgres => "bytes of WAL",
        Backend::Mariadb => "this stream is at ",
    };
    assert!(stdout(&o).contains(status), "{}", stdout(&o));
}

async fn a_long_transaction_holds_nothing_back_and_arrives_on_commit(b: Backend) {
    let db = CdcDb::new(b, "cdc_long").await;
    db.exec(&format!("{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1)"))
        .await;
    let dir = Dir::new("cdc_long");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);

    let mut long = db.session().await;
    long.exec(
        "START TRANSACTION; INSERT INTO t VALUES (100, 'long', 100); UPDATE t SET v = 'from long' WHERE id = 1",
    )
    .await
    .unwrap();
    db.exec("INSERT INTO t VALUES (2, 'b', 2)").await;
    assert_code(&dir.hw(&["run"]), 0);
    let ids: Vec<String> = changes(&dir, "t").iter().map(|c| c.0.clone()).collect();
    assert_eq!(
        ids,
        ["1", "2"],
        "the committed change arrives, the open one does not"
    );
    assert_eq!(replay(&dir, "t"), db.rows("t").await);

    long.exec("COMMIT").await.unwrap();
    long.close().await;
    db.exec("INSERT INTO t VALUES (3, 'c', 3)").await;
    assert_code(&dir.hw(&["run"]), 0);
    let all = changes(&dir, "t");
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
    assert!(replay(&dir, "t").contains_key("100"));
}

/// Each failpoint in its own database, all at once (each point's runs are
/// sequential; the points are independent).
async fn kill_9_at_every_failpoint_then_rerun_replays_to_the_source(b: Backend) {
    let points: Vec<_> = FAILPOINTS
        .iter()
        .enumerate()
        .map(|(i, point)| {
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(kill_9_at_one_failpoint(b, i, point))
            })
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        for p in points {
            if let Err(panic) = p.join() {
                std::panic::resume_unwind(panic);
            }
        }
    })
    .await
    .unwrap();
}

/// Crash at `point` during the first run and during a delta; the reruns
/// replay to the source, each key once per file; `changes disable`
/// leaves no slot.
async fn kill_9_at_one_failpoint(b: Backend, i: usize, point: &str) {
    let db = CdcDb::new(b, "cdc_crash").await;
    db.exec(&format!(
        "{SCHEMA}; {}",
        db.insert_series(1, 20, "concat('v', g)")
    ))
    .await;
    let name = format!("s{i}");
    let dir = Dir::new("cdc_crash");
    dir.write("highwater.yaml", &cfg(&db.url, &[&name]));
    // Crash during the first (full) run.
    let o = dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", point)]);
    assert_eq!(
        o.status.code(),
        None,
        "{point}: should abort\n{}",
        stderr(&o)
    );
    db.exec(&format!(
        "{}
         UPDATE t SET n = n + 1000 WHERE id % 7 = {};
         DELETE FROM t WHERE id % 11 = {};",
        db.insert_series(21, 30, "concat('v', g)"),
        i % 7,
        i % 11
    ))
    .await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(
        replay(&dir, &name),
        db.rows("t").await,
        "{point}: after rerun"
    );
    // Crash during a delta, then finish.
    db.exec(&format!(
        "{}
         UPDATE t SET v = 'u{i}' WHERE id % 5 = {};
         DELETE FROM t WHERE id % 13 = {};",
        db.insert_series(31, 40, "concat('w', g)"),
        i % 5,
        (i + 3) % 13
    ))
    .await;
    let o = dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", point)]);
    assert!(
        o.status.code().is_none() || o.status.code() == Some(0),
        "{point}: {}",
        stderr(&o)
    );
    db.exec(&format!("UPDATE t SET v = 'after{i}' WHERE id % 3 = 0"))
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(!text(&o).contains("FULL RELOAD"), "{point}: {}", text(&o));
    assert_eq!(
        replay(&dir, &name),
        db.rows("t").await,
        "{point}: after delta rerun"
    );
    no_key_twice_per_file(&dir, &name, point);
    assert_code(&dir.hw(&["changes", "disable", &name]), 0);
    assert!(db.slots().await.is_empty(), "{point}");
}

async fn concurrent_writers_during_the_first_load_and_deltas_deliver_each_change_once(b: Backend) {
    let db = CdcDb::new(b, "cdc_conc").await;
    db.exec(&format!(
        "{SCHEMA}; {}",
        db.insert_series(1, 200, "concat('v', g)")
    ))
    .await;
    let dir = Dir::new("cdc_conc");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    // On PostgreSQL, commits between the slot's creation and the load's
    // snapshot are in the load and in the slot: the first delta must skip
    // them (its last inserts are not deleted yet, so a repeated one shows
    // as an `I`).
    let w = start_writers(&db, 1000);
    run_beside_writers(&dir).await;
    stop_writers(w).await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(strict_replay(&dir, "t"), db.rows("t").await);

    let w = start_writers(&db, 100_000);
    for _ in 0..4 {
        run_beside_writers(&dir).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop_writers(w).await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(strict_replay(&dir, "t"), db.rows("t").await);
}

async fn kill_9_at_random_instants_beside_writers_then_rerun_replays_exactly(b: Backend) {
    let db = CdcDb::new(b, "cdc_kill").await;
    db.exec(&format!(
        "{SCHEMA}; {}",
        db.insert_series(1, 20000, "repeat('v', 200)")
    ))
    .await;
    let dir = Dir::new("cdc_kill");
    dir.write(
        "highwater.yaml",
        &cfg(&db.url, &["t"]).replace("batch_size: 3", "batch_size: 500"),
    );
    let w = start_writers(&db, 1_000_000);
    for delay_ms in [30u64, 120, 250, 400, 60, 600, 200, 900] {
        kill_run_after(&dir, delay_ms).await;
        db.exec("UPDATE t SET n = n + 1 WHERE id % 97 = 0").await;
    }
    stop_writers(w).await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(strict_replay(&dir, "t"), db.rows("t").await);
}

/// The log the stream's position needs is gone (PostgreSQL: the slot was
/// invalidated, `max_slot_wal_keep_size` on the lossy cluster; MariaDB:
/// the binlog files were purged): the next run says so, reloads every row
/// once (the run record says `full_reload`), and the runs after it deliver
/// net changes again.
async fn a_lost_log_reloads_loudly_then_deltas_resume(b: Backend) {
    let db = CdcDb::losable(b, "cdc_lost").await;
    db.exec(&format!(
        "{SCHEMA}; {}",
        db.insert_series(1, 5, "concat('v', g)")
    ))
    .await;
    let dir = Dir::new("cdc_lost");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    // Changes the log would have delivered, then the log is lost.
    db.exec("INSERT INTO t VALUES (6, 'six', 6); UPDATE t SET v = 'one' WHERE id = 1; DELETE FROM t WHERE id = 2")
        .await;
    let why = db.lose_log().await;

    let o = dir.hw(&["run", "--json"]);
    assert_code(&o, 0);
    let run: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let s = &run["streams"][0];
    assert_eq!(s["full_reload"], true, "{run}");
    assert!(
        s["notes"].to_string().contains("FULL RELOAD") && s["notes"].to_string().contains(why),
        "{run}"
    );
    // The reload's file holds the table as it is now, each row once.
    let reload: Vec<&str> = s["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(reload.len(), 1, "{run}");
    let file = reload[0].strip_prefix("file://").unwrap();
    let (_, rows) = read_csv(std::path::Path::new(file));
    let mut got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[4].clone()))
        .collect();
    got.sort();
    let want: Vec<(String, String, String)> = [
        ("1", "one"),
        ("3", "v3"),
        ("4", "v4"),
        ("5", "v5"),
        ("6", "six"),
    ]
    .iter()
    .map(|(i, v)| (i.to_string(), v.to_string(), "I".to_string()))
    .collect();
    assert_eq!(got, want);
    let reloaded = changes(&dir, "t").last().unwrap().3;
    assert_eq!(replay_from(&dir, "t", reloaded), db.rows("t").await);

    // The next changes arrive as net changes again.
    db.exec("UPDATE t SET n = 30 WHERE id = 3; DELETE FROM t WHERE id = 4")
        .await;
    let o = dir.hw(&["run", "--json"]);
    assert_code(&o, 0);
    let run: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(run["streams"][0]["full_reload"], false, "{run}");
    assert_eq!(run["streams"][0]["rows_written"], 2, "{run}");
    let last: BTreeSet<(String, String)> = changes(&dir, "t")
        .into_iter()
        .rev()
        .take(2)
        .map(|c| (c.0, c.4))
        .collect();
    let want: BTreeSet<(String, String)> = [("3", "U"), ("4", "D")]
        .iter()
        .map(|(k, o)| (k.to_string(), o.to_string()))
        .collect();
    assert_eq!(last, want);
    assert_eq!(replay_from(&dir, "t", reloaded), db.rows("t").await);
}

/// `check` and `run` on a server without the log name the setting and the
/// statement that fixes it; on the log server, an account without
/// replication rights is told the statement that grants them.
async fn check_names_what_a_server_without_the_log_lacks(b: Backend) {
    // The shared servers (PostgreSQL 5432, MariaDB 3306) run without
    // logical decoding and without the binary log.
    let (kind, fix, setting) = match b {
        Backend::Postgres => (
            "postgres",
            "ALTER SYSTEM SET wal_level = logical",
            "wal_level",
        ),
        Backend::Mariadb => ("mariadb", "binlog_format = ROW", "log_bin"),
    };
    let dir = Dir::new("cdc_nolog");
    let plain = SrcDb::new(kind, &dir, "cdc_nolog").await;
    plain.exec(SCHEMA).await;
    let off = match &plain {
        SrcDb::Pg(db) => {
            let level: String = db
                .client
                .query_one("SHOW wal_level", &[])
                .await
                .unwrap()
                .get(0);
            level != "logical"
        }
        _ => {
            let mut c = Session::of(&plain).await;
            let Session::My(c) = &mut c else {
                unreachable!()
            };
            use mysql_async::prelude::Queryable;
            c.query_first::<i64, _>("SELECT @@log_bin").await.unwrap() == Some(0)
        }
    };
    assert!(off, "this test needs a {kind} server without the log");
    dir.write("highwater.yaml", &cfg(&plain.url(), &["t"]));
    let o = dir.hw(&["check"]);
    assert_code(&o, 2);
    assert!(
        stdout(&o).contains(setting) && stdout(&o).contains(fix),
        "{}",
        stdout(&o)
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(text(&o).contains(setting), "{}", text(&o));

    // On the log server, an account without replication rights.
    let db = CdcDb::new(b, "cdc_grants").await;
    db.exec(SCHEMA).await;
    let user = db.name.clone();
    let (create, grant, drop) = match b {
        Backend::Postgres => (
            format!(
                "CREATE ROLE {user} LOGIN; GRANT ALL ON SCHEMA public TO {user}; ALTER TABLE t OWNER TO {user}"
            ),
            format!("ALTER ROLE \"{user}\" REPLICATION;"),
            format!("DROP OWNED BY {user}; DROP ROLE {user}"),
        ),
        Backend::Mariadb => (
            format!("CREATE USER '{user}'@'%'; GRANT ALL ON `{user}`.* TO '{user}'@'%'"),
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.*".to_string(),
            format!("DROP USER '{user}'@'%'"),
        ),
    };
    db.exec(&create).await;
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    let url = format!("{scheme}://{user}@{host}");
    let dir = Dir::new("cdc_grants");
    dir.write("highwater.yaml", &cfg(&url, &["t"]));
    let o = dir.hw(&["check"]);
    db.exec(&drop).await;
    assert_code(&o, 2);
    assert!(stdout(&o).contains(&grant), "{}", stdout(&o));
}

async fn merge_into_a_table_of_the_same_database_kind_equals_the_source(b: Backend) {
    let db = CdcDb::new(b, "cdc_merge").await;
    let dir = Dir::new("cdc_merge");
    let kind = match b {
        Backend::Postgres => "postgres",
        Backend::Mariadb => "mariadb",
    };
    let dst = SrcDb::new(kind, &dir, "cdc_merge_dst").await;
    db.exec(&format!(
        "{SCHEMA}; {}",
        db.insert_series(1, 50, "concat('v', g)")
    ))
    .await;
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  dst: {}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: cdc\n    primary_key: [id]\n    to: dst\n    into: copy\n    write: merge\n",
            db.url,
            dst.url()
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    for round in 0..3 {
        db.exec(&format!(
            "{}
             UPDATE t SET v = 'upd{round}' WHERE id % 4 = {round};
             DELETE FROM t WHERE id % 9 = {round};",
            db.insert_series(100 + round * 10, 109 + round * 10, &format!("'r{round}'"))
        ))
        .await;
        assert_code(&dir.hw(&["run"]), 0);
        let mut c = Session::of(&dst).await;
        let got = c.rows("copy").await;
        c.close().await;
        assert_eq!(got, db.rows("t").await, "round {round}");
    }
}

async fn truncate_reloads_loudly_and_column_changes_fail_naming_the_column(b: Backend) {
    let db = CdcDb::new(b, "cdc_ddl").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)"
    ))
    .await;
    let dir = Dir::new("cdc_ddl");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);

    db.exec("TRUNCATE t").await;
    db.exec("INSERT INTO t VALUES (5, 'e', 5)").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let t = text(&o);
    assert!(
        t.contains("FULL RELOAD") && t.to_lowercase().contains("truncate"),
        "{t}"
    );
    let last = changes(&dir, "t");
    let newest = last.last().unwrap().3;
    let reload: Vec<&Change> = last.iter().filter(|c| c.3 == newest).collect();
    assert_eq!(reload.len(), 1, "{last:?}");
    assert_eq!((reload[0].0.as_str(), reload[0].4.as_str()), ("5", "I"));

    // Changes written before and after a new column, in one window.
    db.exec("UPDATE t SET v = 'before' WHERE id = 5").await;
    db.exec("ALTER TABLE t ADD COLUMN extra int DEFAULT 7")
        .await;
    db.exec("INSERT INTO t VALUES (6, 'f', 6, 8)").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("column extra"), "{}", stderr(&o));
    let o = dir.hw(&["changes", "disable", "t"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("reloads"), "{}", stdout(&o));
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let (header, rows) = read_csv(&newest_file(&dir, "t"));
    assert_eq!(
        header,
        [
            "id",
            "v",
            "n",
            "extra",
            "SYS_CHANGE_VERSION",
            "SYS_CHANGE_OPERATION"
        ]
    );
    let mut got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[3].clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("5".to_string(), "before".to_string(), "7".to_string()),
            ("6".to_string(), "f".to_string(), "8".to_string())
        ]
    );

    // A column added between runs, with changes only after it: delivered
    // with the new column.
    db.exec("ALTER TABLE t ADD COLUMN more varchar(10)").await;
    db.exec("UPDATE t SET more = 'm' WHERE id = 6").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(!text(&o).contains("FULL RELOAD"), "{}", text(&o));
    let (header, rows) = read_csv(&newest_file(&dir, "t"));
    assert_eq!(header[4], "more");
    assert_eq!(
        rows.iter()
            .map(|r| (r[0].as_str(), r[4].as_str(), r[6].as_str()))
            .collect::<Vec<_>>(),
        [("6", "m", "U")]
    );

    // A column dropped (not the last) after changes: the run fails naming it.
    db.exec("UPDATE t SET v = 'x' WHERE id = 5").await;
    db.exec("ALTER TABLE t DROP COLUMN n").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("column n"), "{}", stderr(&o));
}

/// The number before ` bytes of ` in the stream's `changes status` line
/// (PostgreSQL: the WAL its slot retains; MariaDB: the binlog written after
/// its position), and the text after `at` up to the next comma (where the
/// stream is).
fn status_of(dir: &Dir, at: &str) -> (u64, String) {
    let o = dir.hw(&["changes", "status"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    let bytes = out
        .split(" bytes of ")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {out}"));
    let place = out
        .split(at)
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no {at:?} in {out}"));
    (bytes, place.to_string())
}

/// The value of `/metrics`' gauge `name` for stream `t`.
fn metric_of(addr: &str, name: &str) -> u64 {
    let (code, body) = http(addr, "GET", "/metrics");
    assert_eq!(code, 200);
    let line = format!("{name}{{stream=\"t\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line} in\n{body}"))
}

/// `changes status` and `serve`'s `/metrics` show the log the server holds
/// for a stream (PostgreSQL: the WAL its slot retains; MariaDB: the binlog
/// after its position); both grow as the source is written, and a run
/// moves the stream on.
async fn the_log_held_for_a_stream_grows_with_writes_in_status_and_metrics(b: Backend) {
    let (metric, at) = match b {
        Backend::Postgres => ("highwater_cdc_slot_retained_wal_bytes", "confirmed LSN "),
        Backend::Mariadb => ("highwater_cdc_binlog_behind_bytes", "this stream is at "),
    };
    let db = CdcDb::new(b, "cdc_held").await;
    db.exec(&format!(
        "{SCHEMA}; {}",
        db.insert_series(1, 5, "concat('v', g)")
    ))
    .await;
    let dir = Dir::new("cdc_held");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    let (before, place) = status_of(&dir, at);
    let (mut serve, addr) = spawn_serve(&dir);
    let metric_before = metric_of(&addr, metric);

    // 2,000 rows of 200 bytes: at least 400 kB of log.
    db.exec(&db.insert_series(100, 2099, "repeat('w', 200)"))
        .await;
    let (after, same) = status_of(&dir, at);
    let metric_after = metric_of(&addr, metric);
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(same, place);
    assert!(after >= before + 400_000, "{before} -> {after} bytes");
    assert!(
        metric_after >= metric_before + 400_000,
        "{metric_before} -> {metric_after} bytes"
    );

    assert_code(&dir.hw(&["run"]), 0);
    let (_, moved) = status_of(&dir, at);
    assert_ne!(moved, place, "the run moved the stream on");
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
}

/// Windows of many changed keys: hundreds of small transactions and
/// transactions of thousands of rows. On MariaDB the keys go to the
/// server in batches (`HIGHWATER_TEST_CDC_KEY_BATCH`: 100 keys instead of
/// 50,000, so every path is taken: batches merged into the key table, a
/// huge transaction spilled before its commit); net changes and their
/// operations are as if held in memory.
async fn many_changed_keys_and_huge_transactions_replay_exactly(b: Backend) {
    let db = CdcDb::new(b, "cdc_many").await;
    db.exec(&format!(
        "{SCHEMA}; {}",
        db.insert_series(1, 3000, "concat('v', g)")
    ))
    .await;
    let dir = Dir::new("cdc_many");
    dir.write(
        "highwater.yaml",
        &cfg(&db.url, &["t"]).replace("batch_size: 3", "batch_size: 1000"),
    );
    let run = || {
        let o = dir.hw_env(&["run"], &[("HIGHWATER_TEST_CDC_KEY_BATCH", "100")]);
        assert_code(&o, 0);
        assert!(!text(&o).contains("FULL RELOAD"), "{}", text(&o));
    };
    run();
    // 250 small transactions: new keys, updates, deletes (some of keys a
    // huge transaction changes again below).
    let small: String = (0..250)
        .map(|i| {
            format!(
                "START TRANSACTION; INSERT INTO t VALUES ({}, 'new', {i}); UPDATE t SET n = -{i} WHERE id = {}; DELETE FROM t WHERE id = {}; COMMIT;",
                5000 + i,
                1 + i * 7,
                2000 + i
            )
        })
        .collect();
    db.exec(&small).await;
    // A huge transaction: every row, keys inserted and deleted before.
    db.exec(&format!(
        "START TRANSACTION; UPDATE t SET v = concat('big', id);
         {}
         DELETE FROM t WHERE id BETWEEN 100 AND 199; COMMIT;",
        db.insert_series(2000, 2049, "'back'")
    ))
    .await;
    run();
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
    no_key_twice_per_file(&dir, "t", "many keys");
    let last: Vec<Change> = {
        let all = changes(&dir, "t");
        let first = all[0].3;
        all.into_iter().filter(|c| c.3 > first).collect()
    };
    let op = |id: &str| last.iter().find(|c| c.0 == id).map(|c| c.4.as_str());
    // Inserted in the window: I, whatever came after, also after a
    // delete (its current life began in the window, as change tracking
    // says); deleted: D; else U.
    assert_eq!(op("5000"), Some("I"));
    assert_eq!(op("2000"), Some("I"));
    assert_eq!(op("2100"), Some("D"));
    assert_eq!(op("150"), Some("D"));
    assert_eq!(op("3000"), Some("U"));

    // Another window: a huge delete, then a huge insert of some keys.
    db.exec(&format!(
        "START TRANSACTION; DELETE FROM t WHERE id <= 1500; COMMIT;
         START TRANSACTION; {} COMMIT;",
        db.insert_series(1, 700, "'again'")
    ))
    .await;
    run();
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
    no_key_twice_per_file(&dir, "t", "many keys");
    let again = changes(&dir, "t");
    let newest = again.last().unwrap().3;
    let ops: BTreeSet<&str> = again
        .iter()
        .filter(|c| c.3 == newest && c.0.parse::<i32>().unwrap() <= 700)
        .map(|c| c.4.as_str())
        .collect();
    assert_eq!(
        ops,
        ["I"].into_iter().collect(),
        "deleted, then inserted again"
    );
}

/// `highwater verify` on a `cdc` stream: the replay of its files and a
/// merge target equal the source; changes after the position are not
/// due; a corrupted target is found key by key and `--repair` mends it.
async fn verify_finds_and_repairs_what_differs(b: Backend) {
    let db = CdcDb::new(b, "cdc_verify").await;
    let dir = Dir::new("cdc_verify");
    let kind = match b {
        Backend::Postgres => "postgres",
        Backend::Mariadb => "mariadb",
    };
    let dst = SrcDb::new(kind, &dir, "cdc_verify_dst").await;
    db.exec(&format!(
        "{SCHEMA}; {}",
        db.insert_series(1, 20, "concat('v', g)")
    ))
    .await;
    dir.write(
        "highwater.yaml",
        &format!(
            "{}  m:\n    from: src\n    table: t\n    mode: cdc\n    primary_key: [id]\n    to: dst\n    into: copy\n    write: merge\nconnections_end: {{}}\n",
            cfg(&db.url, &["t"]).replace("streams:\n", &format!("  dst: {}\nstreams:\n", dst.url())),
        )
        .replace("connections_end: {}\n", ""),
    );
    assert_code(&dir.hw(&["run"]), 0);
    db.exec(
        "UPDATE t SET v = 'two' WHERE id = 2; DELETE FROM t WHERE id = 3;
         INSERT INTO t VALUES (30, 'thirty', 30); DELETE FROM t WHERE id = 4;",
    )
    .await;
    assert_code(&dir.hw(&["run"]), 0);
    let delta = newest_file(&dir, "t");
    let verify = |args: &[&str], code: i32| {
        let mut a = vec!["verify", "--json"];
        a.extend_from_slice(args);
        let o = dir.hw(&a);
        assert_code(&o, code);
        let v: serde_json::Value =
            serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
        v
    };
    let v = verify(&[], 0);
    for s in v.as_array().unwrap() {
        assert_eq!(s["compared"], 19, "{s}");
    }
    // Nothing in the log after the position: the merge target is compared
    // by sums inside both databases.
    let m = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "m")
        .unwrap();
    assert!(m["notes"].to_string().contains("equal by checksum"), "{m}");
    // Not yet delivered: not due, neither missing nor extra.
    db.exec("DELETE FROM t WHERE id = 5; UPDATE t SET v = 'later' WHERE id = 6; INSERT INTO t VALUES (40, 'forty', 40)")
        .await;
    let v = verify(&[], 0);
    for s in v.as_array().unwrap() {
        assert_eq!(s["compared"], 17, "{s}");
        assert_eq!(s["not_due"], 3, "{s}");
    }
    // The merge target corrupted behind highwater's back.
    let mut c = Session::of(&dst).await;
    c.exec("DELETE FROM copy WHERE id = 8").await.unwrap();
    c.exec("UPDATE copy SET v = 'wrong' WHERE id = 9")
        .await
        .unwrap();
    c.exec("INSERT INTO copy (id, v, n) VALUES (99, 'x', 1)")
        .await
        .unwrap();
    let v = verify(&["m"], 1);
    let s = &v[0];
    assert_eq!(s["missing"], serde_json::json!(["8"]), "{s}");
    assert_eq!(s["different"], serde_json::json!(["9"]), "{s}");
    assert_eq!(s["extra"], serde_json::json!(["99"]), "{s}");
    verify(&["--repair", "m"], 0);
    // A file of the lake lost: its update, deletes and insert differ.
    std::fs::remove_file(&delta).unwrap();
    let v = verify(&["t"], 1);
    let s = &v[0];
    assert_eq!(s["missing"], serde_json::json!(["30"]), "{s}");
    assert_eq!(s["different"], serde_json::json!(["2"]), "{s}");
    assert_eq!(s["extra"], serde_json::json!(["3", "4"]), "{s}");
    let v = verify(&["--repair", "t"], 0);
    assert_eq!(v[0]["repaired"]["upserted"], 2, "{v}");
    assert_eq!(v[0]["repaired"]["deleted"], 2, "{v}");
    verify(&[], 0);
    // The next run delivers the pending changes; still equal.
    assert_code(&dir.hw(&["run"]), 0);
    verify(&[], 0);
    let got = c.rows("copy").await;
    c.close().await;
    assert_eq!(got, db.rows("t").await);
}
