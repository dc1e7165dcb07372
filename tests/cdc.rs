//! `mode: cdc` on PostgreSQL: logical decoding through a replication slot.
//! Needs a cluster with `wal_level=logical` (`.ci/run` starts one on
//! 127.0.0.1:5434; HIGHWATER_TEST_PG_LOGICAL overrides it).

use std::collections::BTreeMap;
use std::process::Command;

use crate::util::*;

fn logical_admin_url() -> String {
    std::env::var("HIGHWATER_TEST_PG_LOGICAL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5434/postgres".into())
}

/// A fresh database on the logical cluster; its slots and the database are
/// dropped at the end.
struct LogicalDb {
    /// The cluster's `postgres` database, which drops this one.
    admin: String,
    name: String,
    url: String,
    client: tokio_postgres::Client,
}

impl LogicalDb {
    async fn new(tag: &str) -> LogicalDb {
        LogicalDb::on(&logical_admin_url(), tag).await
    }

    /// A fresh database on the cluster `admin_url` names.
    async fn on(admin_url: &str, tag: &str) -> LogicalDb {
        let name = unique(tag);
        let admin = pg_connect(admin_url).await;
        let level: String = admin.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
        assert_eq!(
            level, "logical",
            "the PostgreSQL at {admin_url} must run with wal_level=logical (see .ci/run)"
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((b, _)) => format!("{b}/{name}"),
            None => admin_url.to_string(),
        };
        let client = pg_connect(&url).await;
        LogicalDb {
            admin: admin_url.to_string(),
            name,
            url,
            client,
        }
    }

    async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e} {:?}", e.as_db_error()));
    }

    async fn slots(&self) -> Vec<String> {
        self.client
            .query(
                "SELECT slot_name::text FROM pg_replication_slots WHERE database = current_database() ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The table's rows as text, by id.
    async fn rows(&self, table: &str) -> BTreeMap<String, Vec<Option<String>>> {
        let rows = self
            .client
            .query(
                &format!("SELECT id::text, v, n::text FROM {table} ORDER BY id"),
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|r| (r.get::<_, String>(0), vec![r.get(1), r.get(2)]))
            .collect()
    }
}

impl Drop for LogicalDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-q",
                "-c",
                &format!(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}'"
                ),
                "-c",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ])
            .output();
    }
}

pub(crate) fn cfg(url: &str, streams: &[&str]) -> String {
    let mut y = format!("connections:\n  pg: {url}\n  lake: file://./lake\nstreams:\n");
    for s in streams {
        y.push_str(&format!(
            "  {s}:\n    from: pg\n    table: t\n    mode: cdc\n    primary_key: [id]\n    to: lake\n    path: \"{s}/{{run_id}}.csv\"\n    batch_size: 3\n"
        ));
    }
    y
}

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text, n int)";

/// One delivered row: (id, v, n, version, op).
pub(crate) type Change = (String, Option<String>, Option<String>, i64, String);

/// Every row of every file of a stream, in version order.
pub(crate) fn changes(dir: &Dir, stream: &str) -> Vec<Change> {
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
pub(crate) fn replay(dir: &Dir, stream: &str) -> BTreeMap<String, Vec<Option<String>>> {
    let mut t = BTreeMap::new();
    for (id, v, n, _, op) in changes(dir, stream) {
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

#[tokio::test]
async fn full_load_then_exact_net_changes() {
    let db = LogicalDb::new("cdc_exact").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 5) g"
    ))
    .await;
    let dir = Dir::new("cdc_exact");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let first = changes(&dir, "t");
    assert_eq!(first.len(), 5);
    assert!(first.iter().all(|c| c.4 == "I"));
    let l = first[0].3;
    assert!(first.iter().all(|c| c.3 == l), "{first:?}");
    assert_eq!(db.slots().await.len(), 1);

    db.exec(
        "INSERT INTO t VALUES (6, 'six', 6), (7, 'seven', 7);
         UPDATE t SET v = 'two' WHERE id = 2;
         DELETE FROM t WHERE id = 3;
         INSERT INTO t VALUES (8, 'eight', 8); DELETE FROM t WHERE id = 8;
         UPDATE t SET n = 40 WHERE id = 4; UPDATE t SET v = 'four', n = 44 WHERE id = 4;
         INSERT INTO t VALUES (9, 'nine', 9); UPDATE t SET v = 'NINE' WHERE id = 9;
         UPDATE t SET v = NULL WHERE id = 5;",
    )
    .await;
    assert_code(&dir.hw(&["run"]), 0);
    let all = changes(&dir, "t");
    let second: BTreeMap<String, (Option<String>, Option<String>, String)> = all
        .iter()
        .filter(|c| c.3 > l)
        .map(|c| (c.0.clone(), (c.1.clone(), c.2.clone(), c.4.clone())))
        .collect();
    assert_eq!(
        all.iter().filter(|c| c.3 > l).count(),
        8,
        "one net change per key: {all:?}"
    );
    let s = |x: &str| Some(x.to_string());
    let expect: BTreeMap<String, (Option<String>, Option<String>, String)> = [
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

    // Nothing changed: no file, the position stays.
    let files = dir.files("lake/t", "csv").len();
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(dir.files("lake/t", "csv").len(), files);
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
}

#[tokio::test]
async fn a_long_transaction_holds_nothing_back_and_arrives_on_commit() {
    let db = LogicalDb::new("cdc_long").await;
    db.exec(&format!("{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1)"))
        .await;
    let dir = Dir::new("cdc_long");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);

    let long = pg_connect(&db.url).await;
    long.batch_execute(
        "BEGIN; INSERT INTO t VALUES (100, 'long', 100); UPDATE t SET v = 'from long' WHERE id = 1",
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

    long.batch_execute("COMMIT").await.unwrap();
    db.exec("INSERT INTO t VALUES (3, 'c', 3)").await;
    assert_code(&dir.hw(&["run"]), 0);
    let all = changes(&dir, "t");
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
    assert!(replay(&dir, "t").contains_key("100"));
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
    let db = LogicalDb::new("cdc_crash").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 20) g"
    ))
    .await;
    let names: Vec<String> = (0..POINTS.len()).map(|i| format!("s{i}")).collect();
    let mut next = 21;
    for (i, point) in POINTS.iter().enumerate() {
        let name = names[i].as_str();
        let dir = Dir::new("cdc_crash");
        dir.write("highwater.yaml", &cfg(&db.url, &[name]));
        // Crash during the first (full) run.
        let o = dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", point)]);
        assert_eq!(
            o.status.code(),
            None,
            "{point}: should abort\n{}",
            stderr(&o)
        );
        db.exec(&format!(
            "INSERT INTO t SELECT g, 'v' || g, g FROM generate_series({next}, {}) g;
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
            replay(&dir, name),
            db.rows("t").await,
            "{point}: after rerun"
        );
        // Crash during a delta, then finish.
        db.exec(&format!(
            "INSERT INTO t SELECT g, 'w' || g, g FROM generate_series({next}, {}) g;
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
        assert_code(&dir.hw(&["run"]), 0);
        assert_eq!(
            replay(&dir, name),
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
        let o = dir.hw(&["changes", "disable", name]);
        assert_code(&o, 0);
    }
    assert!(db.slots().await.is_empty());
}

#[tokio::test]
async fn disable_removes_the_slot_and_the_next_run_reloads_loudly() {
    let db = LogicalDb::new("cdc_disable").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)"
    ))
    .await;
    let dir = Dir::new("cdc_disable");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    let o = dir.hw(&["check"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("logical decoding ready"),
        "{}",
        stdout(&o)
    );
    assert_code(&dir.hw(&["run"]), 0);
    let o = dir.hw(&["changes", "status"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("bytes of WAL"), "{}", stdout(&o));
    assert_eq!(db.slots().await.len(), 1);

    let o = dir.hw(&["changes", "disable", "t"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("replication slot"), "{}", stdout(&o));
    assert!(db.slots().await.is_empty());
    let pubs: i64 = db
        .client
        .query_one("SELECT count(*) FROM pg_publication", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pubs, 0);

    // The slot is gone: the next run says so and loads everything again.
    db.exec("INSERT INTO t VALUES (3, 'c', 3)").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(text.contains("FULL RELOAD"), "{text}");
    let last = changes(&dir, "t");
    assert_eq!(last.len(), 5, "2 rows, then 3 rows of the reload: {last:?}");
    assert_eq!(db.slots().await.len(), 1);

    // Someone drops the slot: the next run says so and reloads.
    db.exec(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()",
    )
    .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("FULL RELOAD") && text.contains("missing"),
        "{text}"
    );
    assert_eq!(changes(&dir, "t").len(), 8);
}

/// A slot invalidated because the server removed the WAL it needed
/// (`max_slot_wal_keep_size`; the `hwlossy` cluster of `.ci/run` keeps
/// 1 MB): the next run says so, reloads every row once (the run record
/// says `full_reload`), and the runs after it deliver net changes again.
#[tokio::test]
async fn an_invalidated_slot_reloads_loudly_then_deltas_resume() {
    let admin = std::env::var("HIGHWATER_TEST_PG_LOSSY")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5435/postgres".into());
    let db = LogicalDb::on(&admin, "cdc_lost_slot").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 5) g"
    ))
    .await;
    let dir = Dir::new("cdc_lost_slot");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    // Changes the slot would have delivered, then WAL past what it may keep.
    db.exec("INSERT INTO t VALUES (6, 'six', 6); UPDATE t SET v = 'one' WHERE id = 1; DELETE FROM t WHERE id = 2")
        .await;
    db.exec("CREATE TABLE filler (x text)").await;
    for _ in 0..4 {
        db.exec(
            "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 20000); SELECT pg_switch_wal()",
        )
        .await;
    }
    db.exec("CHECKPOINT").await;
    let status: String = db
        .client
        .query_one(
            "SELECT wal_status FROM pg_replication_slots WHERE database = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "lost", "the slot should have lost its WAL");

    let o = dir.hw(&["run", "--json"]);
    assert_code(&o, 0);
    let run: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let s = &run["streams"][0];
    assert_eq!(s["full_reload"], true, "{run}");
    assert!(
        s["notes"].to_string().contains("FULL RELOAD")
            && s["notes"].to_string().contains("invalidated"),
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

    // A new slot: the next changes arrive as net changes again.
    db.exec("UPDATE t SET n = 30 WHERE id = 3; DELETE FROM t WHERE id = 4")
        .await;
    let o = dir.hw(&["run", "--json"]);
    assert_code(&o, 0);
    let run: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(run["streams"][0]["full_reload"], false, "{run}");
    assert_eq!(run["streams"][0]["rows_written"], 2, "{run}");
    let last: Vec<(String, String)> = changes(&dir, "t")
        .into_iter()
        .rev()
        .take(2)
        .map(|c| (c.0, c.4))
        .collect();
    assert_eq!(
        last.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        [
            ("3".to_string(), "U".to_string()),
            ("4".to_string(), "D".to_string())
        ]
        .into_iter()
        .collect()
    );
}

#[tokio::test]
async fn check_names_what_a_server_without_logical_decoding_lacks() {
    // The shared server runs with the default wal_level (replica).
    let db = PgDb::new("cdc_nolog").await;
    db.exec(SCHEMA).await;
    let dir = Dir::new("cdc_nolog");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    let level: String = db
        .client
        .query_one("SHOW wal_level", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        level, "logical",
        "this test needs a server without logical decoding"
    );
    let o = dir.hw(&["check"]);
    assert_code(&o, 2);
    assert!(
        stdout(&o).contains("ALTER SYSTEM SET wal_level = logical"),
        "{}",
        stdout(&o)
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(
        format!("{}{}", stdout(&o), stderr(&o)).contains("wal_level"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn merge_into_a_postgres_table_equals_the_source() {
    let db = LogicalDb::new("cdc_merge").await;
    let dst = PgDb::new("cdc_merge_dst").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 50) g"
    ))
    .await;
    let dir = Dir::new("cdc_merge");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  pg: {}\n  dst: {}\nstreams:\n  t:\n    from: pg\n    table: t\n    mode: cdc\n    primary_key: [id]\n    to: dst\n    into: copy\n    write: merge\n",
            db.url, dst.url
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    for round in 0..3 {
        db.exec(&format!(
            "INSERT INTO t SELECT g, 'r{round}', g FROM generate_series({}, {}) g;
             UPDATE t SET v = 'upd{round}' WHERE id % 4 = {round};
             DELETE FROM t WHERE id % 9 = {round};",
            100 + round * 10,
            109 + round * 10
        ))
        .await;
        assert_code(&dir.hw(&["run"]), 0);
        let got: BTreeMap<String, Vec<Option<String>>> = dst
            .client
            .query("SELECT id::text, v, n::text FROM copy ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), vec![r.get(1), r.get(2)]))
            .collect();
        assert_eq!(got, db.rows("t").await, "round {round}");
    }
}

/// Apply the changes in version order, checking that each is possible: an
/// `I` for a key the consumer does not hold, a `U` for one it holds (the
/// writer below never inserts a key twice, so an `I` for a held key would
/// be a change delivered twice, e.g. by both the first load and a delta).
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
            let c = pg_connect(&url).await;
            let mut k = first + w;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let slow = if i % 5 == 0 {
                    "SELECT pg_sleep(0.05);"
                } else {
                    ""
                };
                c.batch_execute(&format!(
                    "BEGIN; INSERT INTO t VALUES ({k}, 'w{w}', {i}); {slow}
                     UPDATE t SET n = n + 1, v = 'u{i}' WHERE id IN ({}, {});
                     DELETE FROM t WHERE id = {}; COMMIT;",
                    k - 6,
                    (i * 7) % 200 + 1,
                    k - 20
                ))
                .await
                .unwrap();
                k += 2;
                i += 1;
            }
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
/// the window between slot and snapshot widened.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_during_the_first_load_and_deltas_deliver_each_change_once() {
    let db = LogicalDb::new("cdc_conc").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT g, 'v' || g, g FROM generate_series(1, 200) g"
    ))
    .await;
    let dir = Dir::new("cdc_conc");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    // Commits between the slot's creation and the load's snapshot are in
    // the load and in the slot: the first delta must skip them (its last
    // inserts are not deleted yet, so a repeated one shows as an `I`).
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

#[tokio::test]
async fn truncate_reloads_loudly_and_a_column_added_mid_window_fails_naming_it() {
    let db = LogicalDb::new("cdc_ddl").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)"
    ))
    .await;
    let dir = Dir::new("cdc_ddl");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);

    db.exec("TRUNCATE t; INSERT INTO t VALUES (5, 'e', 5)")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("FULL RELOAD") && text.contains("truncated"),
        "{text}"
    );
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
    assert_code(&dir.hw(&["changes", "disable", "t"]), 0);
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
}

/// Start `highwater run` in `dir` and kill it (SIGKILL) after `delay_ms`.
pub(crate) async fn kill_run_after(dir: &Dir, delay_ms: u64) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_instants_beside_writers_then_rerun_replays_exactly() {
    let db = LogicalDb::new("cdc_kill").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT g, repeat('v', 200), g FROM generate_series(1, 20000) g"
    ))
    .await;
    let dir = Dir::new("cdc_kill");
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
async fn unchanged_large_values_need_replica_identity_full_and_then_arrive_intact() {
    let db = LogicalDb::new("cdc_toast").await;
    // 16 kB that do not compress: stored out of line (TOAST).
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 500) g"
    ))
    .await;
    let dir = Dir::new("cdc_toast");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("UPDATE t SET n = 1 WHERE id = 1").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("column v") && stderr(&o).contains("REPLICA IDENTITY FULL"),
        "{}",
        stderr(&o)
    );
    db.exec("ALTER TABLE t REPLICA IDENTITY FULL").await;
    assert_code(&dir.hw(&["changes", "disable", "t"]), 0);
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("UPDATE t SET n = 2 WHERE id = 1").await;
    assert_code(&dir.hw(&["run"]), 0);
    let all = changes(&dir, "t");
    let last = all.last().unwrap();
    assert_eq!((last.2.as_deref(), last.4.as_str()), (Some("2"), "U"));
    assert_eq!(last.1.as_ref().map(String::len), Some(16_000));
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
}
