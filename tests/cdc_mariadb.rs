//! `mode: cdc` on MariaDB: changes read from the binary log. Needs a
//! MariaDB with `log_bin`, `binlog_format=ROW` and `binlog_row_image=FULL`
//! (`.ci/run` starts one on 127.0.0.1:3307; HIGHWATER_TEST_MARIADB_BINLOG
//! overrides it).
//!
//! Tests share that server's binary log: each holds a shared lock on a
//! file while it runs, and the test that purges binlog files holds it
//! exclusively, so no other test's position is purged under it.

use std::collections::BTreeMap;
use std::process::Command;

use mysql_async::prelude::Queryable;

use crate::util::*;

fn binlog_admin_url() -> String {
    std::env::var("HIGHWATER_TEST_MARIADB_BINLOG")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3307".into())
}

async fn admin() -> mysql_async::Conn {
    let url = binlog_admin_url();
    let opts = mysql_async::Opts::from_url(&url).unwrap();
    match mysql_async::Conn::new(opts).await {
        Ok(c) => c,
        Err(e) => panic!(
            "the MariaDB with the binary log is not reachable at {url}: {e}\nstart it with the \
             'A second MariaDB with the binary log' section of .ci/run"
        ),
    }
}

/// A fresh database on the binlog server, dropped at the end.
struct BinlogDb {
    name: String,
    url: String,
    _lock: std::fs::File,
}

impl BinlogDb {
    async fn new(tag: &str) -> BinlogDb {
        Self::with_lock(tag, false).await
    }

    /// Alone on the server's binlog (for purging it).
    async fn exclusive(tag: &str) -> BinlogDb {
        Self::with_lock(tag, true).await
    }

    async fn with_lock(tag: &str, exclusive: bool) -> BinlogDb {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("highwater-binlog-tests.lock"))
            .unwrap();
        let l = lock.try_clone().unwrap();
        tokio::task::spawn_blocking(move || {
            if exclusive {
                l.lock().unwrap()
            } else {
                l.lock_shared().unwrap()
            }
        })
        .await
        .unwrap();
        let name = unique(tag);
        let mut a = admin().await;
        let (log_bin, format, image): (i64, String, String) = a
            .query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (log_bin, format.as_str(), image.as_str()),
            (1, "ROW", "FULL"),
            "the MariaDB at {} must run with --log-bin --binlog-format=ROW --binlog-row-image=FULL (see .ci/run)",
            binlog_admin_url()
        );
        a.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        let _ = a.disconnect().await;
        BinlogDb {
            url: format!("{}/{name}", binlog_admin_url()),
            name,
            _lock: lock,
        }
    }

    async fn connect(&self) -> mysql_async::Conn {
        my_connect(&self.url).await
    }

    async fn exec(&self, sql: &str) {
        let mut c = self.connect().await;
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = c.disconnect().await;
    }

    /// The table's rows as text, by id.
    async fn rows(&self, table: &str) -> BTreeMap<String, Vec<Option<String>>> {
        let mut c = self.connect().await;
        let rows: Vec<(String, Option<String>, Option<String>)> = c
            .query(format!(
                "SELECT CAST(id AS CHAR), v, CAST(n AS CHAR) FROM {table} ORDER BY id"
            ))
            .await
            .unwrap();
        let _ = c.disconnect().await;
        rows.into_iter()
            .map(|(id, v, n)| (id, vec![v, n]))
            .collect()
    }
}

impl Drop for BinlogDb {
    fn drop(&mut self) {
        let url = binlog_admin_url();
        let hostport = url.rsplit('@').next().unwrap_or("127.0.0.1:3307");
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3307"));
        let _ = Command::new("mysql")
            .args([
                "-uroot",
                "-h",
                host,
                "-P",
                port,
                "-e",
                &format!("DROP DATABASE IF EXISTS `{}`", self.name),
            ])
            .output();
    }
}

fn cfg(url: &str, streams: &[&str]) -> String {
    super::cdc::cfg(url, streams)
        .replace("  pg: ", "  my: ")
        .replace("from: pg", "from: my")
}

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v varchar(200), n int)";

use super::cdc::{Change, changes, kill_run_after, replay};

/// Apply the changes in version order, checking that each is possible: an
/// `I` for a key the consumer does not hold, a `U` for one it holds (the
/// writers never insert a key twice, so an `I` for a held key would be a
/// change delivered twice).
fn strict_replay(dir: &Dir, stream: &str) -> BTreeMap<String, Vec<Option<String>>> {
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

fn text(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[tokio::test]
async fn full_load_then_exact_net_changes_across_binlog_files() {
    let db = BinlogDb::new("bl_exact").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT seq, CONCAT('v', seq), seq FROM seq_1_to_5"
    ))
    .await;
    let dir = Dir::new("bl_exact");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    let o = dir.hw(&["check"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("binary log ready"), "{}", stdout(&o));
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(text(&o).contains("first run"), "{}", text(&o));
    let first = changes(&dir, "t");
    assert_eq!(first.len(), 5);
    assert!(first.iter().all(|c| c.4 == "I"));
    let l = first[0].3;
    assert!(first.iter().all(|c| c.3 == l), "{first:?}");

    // The changes span a new binlog file.
    db.exec(
        "INSERT INTO t VALUES (6, 'six', 6), (7, 'seven', 7);
         UPDATE t SET v = 'two' WHERE id = 2;
         FLUSH BINARY LOGS;
         DELETE FROM t WHERE id = 3;
         INSERT INTO t VALUES (8, 'eight', 8); DELETE FROM t WHERE id = 8;
         UPDATE t SET n = 40 WHERE id = 4; UPDATE t SET v = 'four', n = 44 WHERE id = 4;
         INSERT INTO t VALUES (9, 'nine', 9); UPDATE t SET v = 'NINE' WHERE id = 9;
         UPDATE t SET v = NULL WHERE id = 5;
         UPDATE t SET id = 10 WHERE id = 1;
         START TRANSACTION; INSERT INTO t VALUES (11, 'gone', 11); ROLLBACK;",
    )
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
    assert!(
        stdout(&o).contains("binlog files") && stdout(&o).contains("this stream is at "),
        "{}",
        stdout(&o)
    );
}

#[tokio::test]
async fn check_names_what_a_server_without_the_binlog_lacks() {
    // The shared server on 3306 runs without the binary log.
    let db = MyDb::new("bl_nolog").await;
    let mut c = db.connect().await;
    c.query_drop(SCHEMA).await.unwrap();
    let log_bin: i64 = c.query_first("SELECT @@log_bin").await.unwrap().unwrap();
    assert_eq!(
        log_bin, 0,
        "this test needs a server without the binary log"
    );
    let dir = Dir::new("bl_nolog");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    let o = dir.hw(&["check"]);
    assert_code(&o, 2);
    assert!(
        stdout(&o).contains("log_bin") && stdout(&o).contains("binlog_format = ROW"),
        "{}",
        stdout(&o)
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(text(&o).contains("log_bin"), "{}", text(&o));

    // On the binlog server, a user without replication grants is told
    // which statement grants them.
    let bdb = BinlogDb::new("bl_grants").await;
    bdb.exec(SCHEMA).await;
    let user = bdb.name.clone();
    bdb.exec(&format!(
        "CREATE USER '{user}'@'%'; GRANT ALL ON `{user}`.* TO '{user}'@'%'"
    ))
    .await;
    let url = bdb.url.replace("root@", &format!("{user}@"));
    let dir = Dir::new("bl_grants");
    dir.write("highwater.yaml", &cfg(&url, &["t"]));
    let o = dir.hw(&["check"]);
    bdb.exec(&format!("DROP USER '{user}'@'%'")).await;
    assert_code(&o, 2);
    assert!(
        stdout(&o).contains("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.*"),
        "{}",
        stdout(&o)
    );
}

const POINTS: &[&str] = &[
    "engine.before_attempt",
    "engine.after_begin_attempt",
    "engine.mid_write",
    "engine.before_sink_commit",
    "files.after_data_before_marker",
    "engine.after_publish",
    "engine.after_state_commit",
];

#[tokio::test]
async fn kill_9_at_every_failpoint_then_rerun_replays_to_the_source() {
    let db = BinlogDb::new("bl_crash").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT seq, CONCAT('v', seq), seq FROM seq_1_to_20"
    ))
    .await;
    let mut next = 21;
    for (i, point) in POINTS.iter().enumerate() {
        let name = format!("s{i}");
        let dir = Dir::new("bl_crash");
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
            "INSERT INTO t SELECT seq, CONCAT('v', seq), seq FROM seq_{next}_to_{};
             UPDATE t SET n = n + 1000 WHERE id % 7 = {};
             DELETE FROM t WHERE id % 11 = {};",
            next + 9,
            i % 7,
            i % 11
        ))
        .await;
        next += 10;
        assert_code(&dir.hw(&["run"]), 0);
        assert_eq!(
            replay(&dir, &name),
            db.rows("t").await,
            "{point}: after rerun"
        );
        // Crash during a delta, then finish.
        db.exec(&format!(
            "INSERT INTO t SELECT seq, CONCAT('w', seq), seq FROM seq_{next}_to_{};
             UPDATE t SET v = 'u{i}' WHERE id % 5 = {};
             DELETE FROM t WHERE id % 13 = {};",
            next + 9,
            i % 5,
            (i + 3) % 13
        ))
        .await;
        next += 10;
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
        // Each key at most once per file.
        for f in dir.files(&format!("lake/{name}"), "csv") {
            let (_, rows) = read_csv(&f);
            let mut seen = std::collections::BTreeSet::new();
            for r in rows {
                assert!(
                    seen.insert(r[0].clone()),
                    "{point}: key {} twice in {}",
                    r[0],
                    f.display()
                );
            }
        }
    }
}

type Writers = (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Two writers committing small transactions (some slow) until stopped:
/// each inserts a new key (from `first`, never reused), updates two rows
/// and deletes the key it inserted 10 transactions before.
fn start_writers(url: &str, first: i32) -> Writers {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..2i32 {
        let (url, stop) = (url.to_string(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut c = my_connect(&url).await;
            let mut k = first + w;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let slow = if i % 5 == 0 { "DO SLEEP(0.05);" } else { "" };
                let r = c
                    .query_drop(format!(
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
                    // InnoDB rolled the transaction back: write it again.
                    Err(mysql_async::Error::Server(e)) if e.code == 1213 || e.code == 1205 => {
                        c.query_drop("ROLLBACK").await.unwrap();
                        continue;
                    }
                    Err(e) => panic!("writer: {e}"),
                }
                k += 2;
                i += 1;
            }
            let _ = c.disconnect().await;
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

/// A run on the blocking pool (the writers keep running meanwhile).
async fn run_beside_writers(dir: &Dir) {
    let d = dir.path.clone();
    let o = tokio::task::spawn_blocking(move || command_in(&d, &["run"]).output().unwrap())
        .await
        .unwrap();
    assert_code(&o, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_during_the_first_load_and_deltas_deliver_each_change_once() {
    let db = BinlogDb::new("bl_conc").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT seq, CONCAT('v', seq), seq FROM seq_1_to_200"
    ))
    .await;
    let dir = Dir::new("bl_conc");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    let w = start_writers(&db.url, 1000);
    run_beside_writers(&dir).await;
    stop_writers(w).await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(strict_replay(&dir, "t"), db.rows("t").await);

    let w = start_writers(&db.url, 100_000);
    for _ in 0..4 {
        run_beside_writers(&dir).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop_writers(w).await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(strict_replay(&dir, "t"), db.rows("t").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_instants_beside_writers_then_rerun_replays_exactly() {
    let db = BinlogDb::new("bl_kill").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT seq, REPEAT('v', 200), seq FROM seq_1_to_20000"
    ))
    .await;
    let dir = Dir::new("bl_kill");
    dir.write(
        "highwater.yaml",
        &cfg(&db.url, &["t"]).replace("batch_size: 3", "batch_size: 500"),
    );
    let w = start_writers(&db.url, 1_000_000);
    for delay_ms in [30u64, 120, 250, 400, 60, 600, 200, 900] {
        kill_run_after(&dir, delay_ms).await;
        db.exec("UPDATE t SET n = n + 1 WHERE id % 97 = 0").await;
    }
    stop_writers(w).await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(strict_replay(&dir, "t"), db.rows("t").await);
}

#[tokio::test]
async fn purged_binlog_reloads_in_full_and_says_so() {
    let db = BinlogDb::exclusive("bl_purge").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)"
    ))
    .await;
    let dir = Dir::new("bl_purge");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("UPDATE t SET v = 'lost' WHERE id = 1; INSERT INTO t VALUES (3, 'c', 3)")
        .await;
    // The server keeps a file until InnoDB no longer needs it for crash
    // recovery (its binlog checkpoint): purge until only the newest is left.
    let mut a = admin().await;
    a.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let mut left = 0;
    for _ in 0..100 {
        let logs: Vec<mysql_async::Row> = a.query("SHOW BINARY LOGS").await.unwrap();
        left = logs.len();
        if left == 1 {
            break;
        }
        let newest: String = logs.last().unwrap().get(0).unwrap();
        a.query_drop(format!("PURGE BINARY LOGS TO '{newest}'"))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 1, "the binlog files were not purged");
    let _ = a.disconnect().await;

    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let t = text(&o);
    assert!(
        t.contains("FULL RELOAD") && t.contains("no longer on the server"),
        "{t}"
    );
    let all = changes(&dir, "t");
    let newest_v = all.last().unwrap().3;
    let reload: BTreeMap<String, (Option<String>, String)> = all
        .iter()
        .filter(|c| c.3 == newest_v)
        .map(|c| (c.0.clone(), (c.1.clone(), c.4.clone())))
        .collect();
    assert_eq!(reload.len(), 3, "{all:?}");
    assert_eq!(reload["1"], (Some("lost".to_string()), "I".to_string()));
    assert_eq!(replay(&dir, "t"), db.rows("t").await);

    // Deltas continue from the reload's position.
    db.exec("DELETE FROM t WHERE id = 2").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(!text(&o).contains("FULL RELOAD"), "{}", text(&o));
    let last = changes(&dir, "t").pop().unwrap();
    assert_eq!((last.0.as_str(), last.4.as_str()), ("2", "D"));
    assert_eq!(replay(&dir, "t"), db.rows("t").await);

    // RESET MASTER starts the binlog again under the same file names: a
    // position in a file of that name is not trusted (the file was
    // created at another time), even where the new file is long enough.
    let mut a = admin().await;
    a.query_drop("RESET MASTER").await.unwrap();
    let _ = a.disconnect().await;
    db.exec("INSERT INTO t VALUES (4, 'd', 4)").await;
    assert_code(&dir.hw(&["run"]), 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut a = admin().await;
    a.query_drop("RESET MASTER").await.unwrap();
    let _ = a.disconnect().await;
    db.exec(
        "INSERT INTO t SELECT seq, REPEAT('x', 100), seq FROM seq_10_to_60; UPDATE t SET v = 'e' WHERE id = 4",
    )
    .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let t = text(&o);
    assert!(
        t.contains("FULL RELOAD") && t.contains("is not the one of this stream's position"),
        "{t}"
    );
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
}

#[tokio::test]
async fn truncate_reloads_loudly_and_a_column_added_mid_window_fails_naming_it() {
    let db = BinlogDb::new("bl_ddl").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)"
    ))
    .await;
    let dir = Dir::new("bl_ddl");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);

    db.exec("TRUNCATE t; INSERT INTO t VALUES (5, 'e', 5)")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let t = text(&o);
    assert!(t.contains("FULL RELOAD") && t.contains("TRUNCATE"), "{t}");
    let last = changes(&dir, "t");
    let newest = last.last().unwrap().3;
    let reload: Vec<&Change> = last.iter().filter(|c| c.3 == newest).collect();
    assert_eq!(reload.len(), 1, "{last:?}");
    assert_eq!((reload[0].0.as_str(), reload[0].4.as_str()), ("5", "I"));

    // Changes written before and after a new column, in one window.
    db.exec(
        "UPDATE t SET v = 'before' WHERE id = 5;
         ALTER TABLE t ADD COLUMN extra int DEFAULT 7;
         INSERT INTO t VALUES (6, 'f', 6, 8);",
    )
    .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("column extra"), "{}", stderr(&o));
    let o = dir.hw(&["changes", "disable", "t"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("reloads"), "{}", stdout(&o));
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let files = dir.files("lake/t", "csv");
    let newest = files
        .iter()
        .max_by_key(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .unwrap();
    let (header, rows) = read_csv(newest);
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
    db.exec("ALTER TABLE t ADD COLUMN more varchar(10); UPDATE t SET more = 'm' WHERE id = 6")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(!text(&o).contains("FULL RELOAD"), "{}", text(&o));
    let (header, rows) = read_csv(
        dir.files("lake/t", "csv")
            .iter()
            .max_by_key(|f| std::fs::metadata(f).unwrap().modified().unwrap())
            .unwrap(),
    );
    assert_eq!(header[4], "more");
    assert_eq!(
        rows.iter()
            .map(|r| (r[0].as_str(), r[4].as_str(), r[6].as_str()))
            .collect::<Vec<_>>(),
        [("6", "m", "U")]
    );

    // A column dropped (not the last) after changes: named from the ALTER.
    db.exec("UPDATE t SET v = 'x' WHERE id = 5; ALTER TABLE t DROP COLUMN n")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("column n"), "{}", stderr(&o));
}

#[tokio::test]
async fn merge_into_a_mariadb_table_equals_the_source() {
    let db = BinlogDb::new("bl_merge").await;
    let dst = MyDb::new("bl_merge_dst").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT seq, CONCAT('v', seq), seq FROM seq_1_to_50"
    ))
    .await;
    let dir = Dir::new("bl_merge");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  my: {}\n  dst: {}\nstreams:\n  t:\n    from: my\n    table: t\n    mode: cdc\n    primary_key: [id]\n    to: dst\n    into: copy\n    write: merge\n",
            db.url, dst.url
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    for round in 0..3 {
        db.exec(&format!(
            "INSERT INTO t SELECT seq, 'r{round}', seq FROM seq_{}_to_{};
             UPDATE t SET v = 'upd{round}' WHERE id % 4 = {round};
             DELETE FROM t WHERE id % 9 = {round};",
            100 + round * 10,
            109 + round * 10
        ))
        .await;
        assert_code(&dir.hw(&["run"]), 0);
        let mut c = dst.connect().await;
        let got: Vec<(String, Option<String>, Option<String>)> = c
            .query("SELECT CAST(id AS CHAR), v, CAST(n AS CHAR) FROM copy ORDER BY id")
            .await
            .unwrap();
        let _ = c.disconnect().await;
        let got: BTreeMap<String, Vec<Option<String>>> =
            got.into_iter().map(|(id, v, n)| (id, vec![v, n])).collect();
        assert_eq!(got, db.rows("t").await, "round {round}");
    }
}

#[tokio::test]
async fn a_long_transaction_holds_nothing_back_and_arrives_on_commit() {
    let db = BinlogDb::new("bl_long").await;
    db.exec(&format!("{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1)"))
        .await;
    let dir = Dir::new("bl_long");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);

    let mut long = db.connect().await;
    long.query_drop(
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

    long.query_drop("COMMIT").await.unwrap();
    db.exec("INSERT INTO t VALUES (3, 'c', 3)").await;
    assert_code(&dir.hw(&["run"]), 0);
    let all = changes(&dir, "t");
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
    assert!(replay(&dir, "t").contains_key("100"));
}

#[tokio::test]
async fn composite_keys_of_many_types_are_matched_exactly() {
    let db = BinlogDb::new("bl_keys").await;
    db.exec(
        "CREATE TABLE k (s varchar(20), u bigint unsigned, ts timestamp(3) NOT NULL DEFAULT '2000-01-01',
                         e enum('x', 'y') NOT NULL, b bit(10) NOT NULL, st set('p', 'q', 'r') NOT NULL,
                         v varchar(10), PRIMARY KEY (s, u, ts, e, b, st));
         INSERT INTO k VALUES ('a', 1, '2024-05-06 07:08:09.123', 'x', b'1', 'p', 'one'),
                              ('b', 18446744073709551615, '2024-05-06 07:08:09.5', 'y', b'1000000001', 'p,r', 'two'),
                              ('c', 3, '1999-12-31 23:59:59', 'y', b'11', 'q', 'three')",
    )
    .await;
    let dir = Dir::new("bl_keys");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  my: {}\n  lake: file://./lake\nstreams:\n  k:\n    from: my\n    table: k\n    mode: cdc\n    primary_key: [s, u, ts, e, b, st]\n    to: lake\n    path: \"k/{{run_id}}.csv\"\n",
            db.url
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    db.exec(
        "UPDATE k SET v = 'TWO' WHERE s = 'b';
         DELETE FROM k WHERE s = 'c';
         UPDATE k SET v = 'ONE' WHERE s = 'a';",
    )
    .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let mut second: Vec<(String, String, String, String)> = Vec::new();
    for f in dir.files("lake/k", "csv") {
        let (header, rows) = read_csv(&f);
        let col = |n: &str| header.iter().position(|h| h == n).unwrap();
        for r in rows {
            if r[col("SYS_CHANGE_OPERATION")] != "I" {
                second.push((
                    r[col("s")].clone(),
                    r[col("u")].clone(),
                    r[col("v")].clone(),
                    r[col("SYS_CHANGE_OPERATION")].clone(),
                ));
            }
        }
    }
    second.sort();
    let s = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(
        second,
        [
            s("a", "1", "ONE", "U"),
            s("b", "18446744073709551615", "TWO", "U"),
            s("c", "3", "", "D"),
        ]
    );
}

/// Sets the binlog server's settings back when dropped (also on a panic).
struct RestoreGlobals;

impl Drop for RestoreGlobals {
    fn drop(&mut self) {
        let url = binlog_admin_url();
        let hostport = url.rsplit('@').next().unwrap_or("127.0.0.1:3307");
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3307"));
        let _ = Command::new("mysql")
            .args([
                "-uroot",
                "-h",
                host,
                "-P",
                port,
                "-e",
                "SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'FULL'",
            ])
            .output();
    }
}

#[tokio::test]
async fn check_names_binlog_settings_and_a_statement_logged_change_fails_the_run() {
    let db = BinlogDb::exclusive("bl_settings").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)"
    ))
    .await;
    let dir = Dir::new("bl_settings");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    {
        let _restore = RestoreGlobals;
        db.exec("SET GLOBAL binlog_format = 'MIXED'; SET GLOBAL binlog_row_image = 'MINIMAL'")
            .await;
        let o = dir.hw(&["check"]);
        assert_code(&o, 2);
        let out = stdout(&o);
        assert!(
            out.contains("SET GLOBAL binlog_format = 'ROW';")
                && out.contains("SET GLOBAL binlog_row_image = 'FULL';"),
            "{out}"
        );
        let o = dir.hw(&["run"]);
        assert_code(&o, 2);
        assert!(text(&o).contains("binlog_format"), "{}", text(&o));
    }
    assert_code(&dir.hw(&["check"]), 0);

    // A writer that logs its change as a statement: the run refuses
    // rather than missing it.
    db.exec("SET SESSION binlog_format = 'STATEMENT'; UPDATE t SET v = 'stmt' WHERE id = 1")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("as a statement") && stderr(&o).contains("--full-refresh"),
        "{}",
        stderr(&o)
    );
    let o = dir.hw(&["run", "--full-refresh"]);
    assert_code(&o, 0);
    db.exec("UPDATE t SET v = 'rows' WHERE id = 2").await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(replay(&dir, "t"), db.rows("t").await);

    // An XA transaction: its rows are logged at XA PREPARE, its commit
    // later without them; the run refuses rather than guessing.
    db.exec(
        "XA START 'hw1'; UPDATE t SET v = 'xa' WHERE id = 1; XA END 'hw1'; XA PREPARE 'hw1'; XA COMMIT 'hw1'",
    )
    .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("XA transaction") && stderr(&o).contains("XA PREPARE at"),
        "{}",
        stderr(&o)
    );
    assert_code(&dir.hw(&["run", "--full-refresh"]), 0);

    // An XA transaction of another table is no concern of this stream.
    db.exec(
        "CREATE TABLE other (id int PRIMARY KEY);
         XA START 'hw2'; INSERT INTO other VALUES (1); XA END 'hw2'; XA PREPARE 'hw2'; XA COMMIT 'hw2';
         UPDATE t SET v = 'after xa' WHERE id = 1",
    )
    .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
    assert_eq!(
        changes(&dir, "t").last().unwrap().1.as_deref(),
        Some("after xa")
    );
}

#[tokio::test]
async fn keys_equal_under_the_collation_are_one_change() {
    let db = BinlogDb::new("bl_ci").await;
    db.exec("CREATE TABLE c (s varchar(10) PRIMARY KEY, v varchar(10)); INSERT INTO c VALUES ('a', 'one'), ('b', 'two')")
        .await;
    let dir = Dir::new("bl_ci");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  my: {}\n  lake: file://./lake\nstreams:\n  c:\n    from: my\n    table: c\n    mode: cdc\n    primary_key: [s]\n    to: lake\n    path: \"c/{{run_id}}.csv\"\n",
            db.url
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("UPDATE c SET s = 'A' WHERE s = 'a'; UPDATE c SET v = 'ONE' WHERE s = 'A'")
        .await;
    assert_code(&dir.hw(&["run"]), 0);
    let mut second = Vec::new();
    for f in dir.files("lake/c", "csv") {
        let (_, rows) = read_csv(&f);
        for r in rows {
            if r[3] != "I" {
                second.push((r[0].clone(), r[1].clone(), r[3].clone()));
            }
        }
    }
    assert_eq!(
        second,
        [("A".to_string(), "ONE".to_string(), "U".to_string())]
    );
}
