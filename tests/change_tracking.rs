//! Change-tracking conformance suite: the same tests against SQLite,
//! PostgreSQL and MariaDB (`change_tracking::{sqlite,postgres,mariadb}::*`).
//!
//! Every test drives the real binary on the tutorial's table
//! `data_source_table(personid int primary key, name varchar(255), age int)`
//! and checks the rows that arrived: values, operations, counts, and that
//! applying every file in order to an empty copy (full loads replace it;
//! `I`/`U` upsert; `D` delete) yields exactly the source table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

use crate::util::{Dir, MyDb, PgDb, assert_code, command_in, read_csv, stderr, stdout};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

/// The source database of one test.
pub(crate) enum Db {
    Sqlite(PathBuf),
    Pg(PgDb),
    My(MyDb),
}

/// One connection, for statements and explicit transactions.
pub(crate) enum Conn {
    Lite(rusqlite::Connection),
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

pub(crate) type Row3 = (i64, Option<String>, Option<i64>);

impl Conn {
    pub(crate) async fn exec(&mut self, sql: &str) {
        match self {
            Conn::Lite(c) => c
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Conn::Pg(c) => c
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Conn::My(c) => c
                .query_drop(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// `BEGIN` as each database spells a write transaction.
    pub(crate) async fn begin(&mut self) {
        let sql = match self {
            Conn::Lite(_) => "BEGIN IMMEDIATE",
            _ => "BEGIN",
        };
        self.exec(sql).await;
    }

    pub(crate) async fn table(&mut self) -> Vec<Row3> {
        let sql = "SELECT personid, name, age FROM data_source_table ORDER BY personid";
        match self {
            Conn::Lite(c) => {
                let mut st = c.prepare(sql).unwrap();
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Conn::Pg(c) => c
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get::<_, i32>(0) as i64,
                        r.get(1),
                        r.get::<_, Option<i32>>(2).map(i64::from),
                    )
                })
                .collect(),
            Conn::My(c) => c.query(sql).await.unwrap(),
        }
    }
}

impl Db {
    pub(crate) async fn new(b: Backend, dir: &Dir, tag: &str) -> Db {
        match b {
            Backend::Sqlite => Db::Sqlite(dir.join("source.db")),
            Backend::Postgres => Db::Pg(PgDb::new(tag).await),
            Backend::Mariadb => Db::My(MyDb::new(tag).await),
        }
    }

    pub(crate) fn url(&self) -> String {
        match self {
            Db::Sqlite(_) => "sqlite://source.db".into(),
            Db::Pg(p) => p.url.clone(),
            Db::My(m) => m.url.clone(),
        }
    }

    pub(crate) async fn connect(&self) -> Conn {
        match self {
            Db::Sqlite(p) => {
                let c = rusqlite::Connection::open(p).unwrap();
                c.busy_timeout(Duration::from_secs(30)).unwrap();
                Conn::Lite(c)
            }
            Db::Pg(p) => Conn::Pg(p.connect().await),
            Db::My(m) => Conn::My(m.connect().await),
        }
    }

    pub(crate) async fn exec(&self, sql: &str) {
        self.connect().await.exec(sql).await;
    }

    pub(crate) async fn table(&self) -> Vec<Row3> {
        self.connect().await.table().await
    }

    /// PostgreSQL: wait until every transaction that began before now has
    /// finished (in the whole cluster), so the next run's window covers
    /// every change made so far. Other tests may hold transactions open.
    pub(crate) async fn settle(&self) {
        let Db::Pg(p) = self else { return };
        p.wait_for_older_transactions().await;
    }

    /// The tutorial's table and rows.
    pub(crate) async fn tutorial_table(&self) {
        self.exec(
            "CREATE TABLE data_source_table (personid int NOT NULL, name varchar(255), age int, PRIMARY KEY (personid));
             INSERT INTO data_source_table (personid, name, age) VALUES
               (1, 'aaaa', 21), (2, 'bbbb', 24), (3, 'cccc', 20), (4, 'dddd', 26), (5, 'eeee', 22);",
        )
        .await;
    }
}

pub(crate) fn config(dir: &Dir, db: &Db, retention: &str, batch_size: usize) {
    config_table(dir, db, "data_source_table", retention, batch_size)
}

fn config_table(dir: &Dir, db: &Db, table: &str, retention: &str, batch_size: usize) {
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:
  src: {}
  lake: file://./lake
streams:
  people:
    from: src
    table: {table}
    mode: change_tracking
    primary_key: [personid]
    change_retention: {retention}
    batch_size: {batch_size}
    to: lake
    path: \"ct/Incremental-{{run_id}}.csv\"
    format: csv
",
            db.url()
        ),
    );
}

/// One file's rows: `(personid, name, age, version, operation)`.
pub(crate) type CtRow = (String, String, String, String, String);

/// Files seen so far, so each run's new files can be told apart.
pub(crate) struct Lake {
    /// The stream whose files (under `lake/<sub>`) this copy applies.
    stream: String,
    sub: String,
    pub(crate) seen: BTreeSet<PathBuf>,
    /// The stream's copy, built by applying every file in order.
    copy: BTreeMap<i64, (String, String)>,
    /// Every delta row applied, to check that none arrives twice.
    applied: Vec<CtRow>,
}

pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) out: String,
    pub(crate) json: Option<Json>,
    pub(crate) rows: Vec<CtRow>,
}

impl Run {
    pub(crate) fn full_reload(&self) -> bool {
        self.json
            .as_ref()
            .is_some_and(|j| j["streams"][0]["full_reload"] == Json::Bool(true))
    }
}

impl Lake {
    fn new() -> Lake {
        Lake::for_stream("people", "ct")
    }

    /// The copy of `stream`, whose files are under `lake/<sub>`.
    pub(crate) fn for_stream(stream: &str, sub: &str) -> Lake {
        Lake {
            stream: stream.into(),
            sub: sub.into(),
            seen: BTreeSet::new(),
            copy: BTreeMap::new(),
            applied: vec![],
        }
    }

    /// Read the files that appeared since the last call; apply them in
    /// commit order.
    ///
    /// Commit order is the order in which the commit markers were written
    /// (the stream lock serialises commits; then the positions they carry),
    /// not of the files' names (run ids are random) nor of their
    /// appearance: a run killed after its marker and before moving its file
    /// to the final name is published by the next run, so one call can find
    /// both files, the older one named after the newer.
    pub(crate) fn collect(&mut self, dir: &Dir, full: bool) -> Vec<CtRow> {
        let mut rows = Vec::new();
        let mut new: Vec<(std::time::SystemTime, i64, PathBuf)> = Vec::new();
        for f in dir.files(&format!("lake/{}", self.sub), ".csv") {
            // Published means: its commit marker exists. A killed run can
            // leave a data file without one; the next run removes it.
            let run_id = f
                .file_stem()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("Incremental-"))
                .unwrap_or_default()
                .to_string();
            let marker = dir.join(&format!(
                "lake/_highwater/commits/{}/{run_id}.json",
                self.stream
            ));
            if self.seen.contains(&f) || !marker.exists() {
                continue;
            }
            let body: Json = serde_json::from_str(&std::fs::read_to_string(&marker).unwrap())
                .unwrap_or_else(|e| panic!("unreadable marker {}: {e}", marker.display()));
            let info = body["info"].as_str().unwrap_or_default();
            let version = match highwater_core::Position::from_json(info) {
                Ok(highwater_core::Position::Version(v)) => v.version,
                other => panic!("marker {} carries {other:?}", marker.display()),
            };
            let at = std::fs::metadata(&marker).unwrap().modified().unwrap();
            new.push((at, version, f));
        }
        new.sort();
        for (_, _, f) in new {
            self.seen.insert(f.clone());
            let (header, data) = read_csv(&f);
            assert_eq!(
                header,
                [
                    "personid",
                    "name",
                    "age",
                    "SYS_CHANGE_VERSION",
                    "SYS_CHANGE_OPERATION"
                ],
                "{}",
                f.display()
            );
            for r in data {
                rows.push((
                    r[0].clone(),
                    r[1].clone(),
                    r[2].clone(),
                    r[3].clone(),
                    r[4].clone(),
                ));
            }
        }
        if full {
            self.copy.clear();
        }
        for r in &rows {
            let id: i64 = r.0.parse().expect("the primary key is never NULL");
            match r.4.as_str() {
                "I" | "U" => {
                    self.copy.insert(id, (r.1.clone(), r.2.clone()));
                }
                "D" => {
                    assert_eq!(
                        (r.1.as_str(), r.2.as_str()),
                        ("", ""),
                        "a deleted row carries NULLs: {r:?}"
                    );
                    self.copy.remove(&id);
                }
                other => panic!("unknown operation {other} in {r:?}"),
            }
            if !full {
                assert!(
                    !self.applied.iter().any(|a| a.0 == r.0 && a.3 == r.3),
                    "change ({}, version {}) arrived twice",
                    r.0,
                    r.3
                );
                self.applied.push(r.clone());
            }
        }
        rows
    }

    pub(crate) fn run(&mut self, dir: &Dir) -> Run {
        self.run_env(dir, &[])
    }

    pub(crate) fn run_env(&mut self, dir: &Dir, env: &[(&str, &str)]) -> Run {
        self.run_args(dir, &["run", "--json"], env)
    }

    /// Run only this lake's stream.
    pub(crate) fn run_stream(&mut self, dir: &Dir, env: &[(&str, &str)]) -> Run {
        let stream = self.stream.clone();
        self.run_args(dir, &["run", "--json", &stream], env)
    }

    fn run_args(&mut self, dir: &Dir, args: &[&str], env: &[(&str, &str)]) -> Run {
        let o = dir.hw_env(args, env);
        let out = format!("{}\n{}", stdout(&o), stderr(&o));
        let json: Option<Json> = serde_json::from_str(&stdout(&o)).ok();
        let mut run = Run {
            code: o.status.code(),
            out,
            json,
            rows: vec![],
        };
        run.rows = self.collect(dir, run.full_reload());
        run
    }

    pub(crate) fn assert_matches(&self, source: &[Row3]) {
        let want: BTreeMap<i64, (String, String)> = source
            .iter()
            .map(|(id, n, a)| {
                (
                    *id,
                    (
                        n.clone().unwrap_or_default(),
                        a.map(|a| a.to_string()).unwrap_or_default(),
                    ),
                )
            })
            .collect();
        assert_eq!(
            self.copy, want,
            "the copy built from the files differs from the source table"
        );
    }
}

pub(crate) fn ops(rows: &[CtRow]) -> Vec<(String, String, String, String)> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|r| (r.0.clone(), r.1.clone(), r.2.clone(), r.4.clone()))
        .collect();
    v.sort();
    v
}

pub(crate) fn s(a: &str, b: &str, c: &str, d: &str) -> (String, String, String, String) {
    (a.into(), b.into(), c.into(), d.into())
}

/// Set up the tutorial, run the full copy, check it.
pub(crate) async fn start(
    b: Backend,
    tag: &str,
    retention: &str,
    batch_size: usize,
) -> (Dir, Db, Lake) {
    let dir = Dir::new(tag);
    let db = Db::new(b, &dir, tag).await;
    db.tutorial_table().await;
    config(&dir, &db, retention, batch_size);
    let mut lake = Lake::new();
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(
        r.out.contains("set up change tracking"),
        "setup is logged: {}",
        r.out
    );
    assert!(r.full_reload(), "the first run is a full load: {}", r.out);
    assert_eq!(
        ops(&r.rows),
        vec![
            s("1", "aaaa", "21", "I"),
            s("2", "bbbb", "24", "I"),
            s("3", "cccc", "20", "I"),
            s("4", "dddd", "26", "I"),
            s("5", "eeee", "22", "I"),
        ]
    );
    let v = &r.rows[0].3;
    assert!(
        r.rows.iter().all(|x| &x.3 == v),
        "a full load carries one baseline version"
    );
    (dir, db, lake)
}

/// The tutorial: 5 rows full; insert 6, update 1, delete 3, update 6 again
/// → exactly 1 U, 3 D, 6 I with current values; then no changes → no file.
pub async fn tutorial(b: Backend) {
    let (dir, db, mut lake) = start(b, "ct_tutorial", "2d", 1000).await;
    db.exec("INSERT INTO data_source_table (personid, name, age) VALUES (6, 'new', 50)")
        .await;
    db.exec("UPDATE data_source_table SET age = 10, name = 'update' WHERE personid = 1")
        .await;
    db.exec("DELETE FROM data_source_table WHERE personid = 3")
        .await;
    db.exec("UPDATE data_source_table SET age = 51 WHERE personid = 6")
        .await;
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(!r.full_reload(), "{}", r.out);
    assert_eq!(
        ops(&r.rows),
        vec![
            s("1", "update", "10", "U"),
            s("3", "", "", "D"),
            s("6", "new", "51", "I")
        ],
        "{}",
        r.out
    );
    assert_eq!(lake.seen.len(), 2, "one file per run");
    let versions: BTreeSet<&String> = r.rows.iter().map(|x| &x.3).collect();
    if b == Backend::Mariadb {
        // The run stamps the pending changes: one batch, one version.
        assert_eq!(versions.len(), 1, "one stamp batch: {:?}", r.rows);
    } else {
        assert!(
            versions.len() >= 2,
            "changes carry their own versions: {:?}",
            r.rows
        );
    }
    lake.assert_matches(&db.table().await);

    // No changes: success, no file, and it says so.
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.rows.is_empty());
    assert!(r.out.contains("no changes"), "{}", r.out);
    assert_eq!(lake.seen.len(), 2);
}

/// `check` and `changes status` report the setup; `changes disable`
/// removes it; the next run sets it up again and reloads in full.
pub async fn check_and_disable(b: Backend) {
    let (dir, db, mut lake) = start(b, "ct_disable", "2d", 1000).await;
    let o = dir.hw(&["check"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("change tracking is complete"),
        "{}",
        stdout(&o)
    );
    let o = dir.hw(&["changes", "status"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("minimum valid version"),
        "{}",
        stdout(&o)
    );

    let o = dir.hw(&["changes", "disable", "people"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("_hw_ct_data_source_table"),
        "{}",
        stdout(&o)
    );
    let o = dir.hw(&["changes", "status"]);
    assert!(stdout(&o).contains("not set up"), "{}", stdout(&o));
    let o = dir.hw(&["check"]);
    assert!(stdout(&o).contains("not set up"), "{}", stdout(&o));
    // Nothing left behind: writes to the table work and log nothing.
    db.exec("UPDATE data_source_table SET age = 99 WHERE personid = 2")
        .await;
    let o = dir.hw(&["changes", "disable", "people"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("nothing to remove"), "{}", stdout(&o));

    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.full_reload(), "{}", r.out);
    assert!(r.out.contains("set up change tracking"), "{}", r.out);
    assert_eq!(r.rows.len(), 5);
    lake.assert_matches(&db.table().await);
}

/// Two transactions that commit in the opposite order of their start (and
/// of their versions, where versions are taken at write time): a run in
/// between must not move past the one still open.
pub async fn late_commit(b: Backend) {
    let (dir, db, mut lake) = start(b, "ct_late", "2d", 1000).await;
    let mut a = db.connect().await;
    a.begin().await;
    a.exec("INSERT INTO data_source_table (personid, name, age) VALUES (100, 'first', 1)")
        .await;
    // B starts after A and commits first (on SQLite it waits for A).
    let mut bconn = db.connect().await;
    let bt = tokio::spawn(async move {
        bconn.begin().await;
        bconn
            .exec("INSERT INTO data_source_table (personid, name, age) VALUES (101, 'second', 2)")
            .await;
        bconn.exec("COMMIT").await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = dir.path.clone();
    let r1 = tokio::task::spawn_blocking(move || command_in(&path, &["run"]).output().unwrap())
        .await
        .unwrap();
    assert_code(&r1, 0);
    let mid = lake.collect(&dir, false);
    assert!(
        !mid.iter().any(|r| r.0 == "100"),
        "an uncommitted row was read: {mid:?}"
    );
    a.exec("COMMIT").await;
    bt.await.unwrap();
    db.settle().await;
    let r2 = lake.run(&dir);
    assert_eq!(r2.code, Some(0), "{}", r2.out);
    let mut all = mid.clone();
    all.extend(r2.rows.clone());
    assert_eq!(
        ops(&all),
        vec![s("100", "first", "1", "I"), s("101", "second", "2", "I")],
        "run in between: {mid:?}\nrun after: {}",
        r2.out
    );
    lake.assert_matches(&db.table().await);
}

/// PostgreSQL versions are transaction ids, taken at a transaction's first
/// write, not at its commit: a transaction A that began first can write a
/// row after B (which began later) wrote it and committed. The row's state
/// is A's write, although B's version is larger. A delete by A after B's
/// update must arrive as `D` (ordering the log by version would deliver
/// B's `U` of a row that no longer exists).
#[tokio::test]
async fn postgres_a_later_write_with_an_older_transaction_id_wins() {
    let (dir, db, mut lake) = start(Backend::Postgres, "ct_order", "2d", 1000).await;
    let mut a = db.connect().await;
    a.begin().await;
    a.exec("UPDATE data_source_table SET age = 30 WHERE personid = 1")
        .await;
    let mut b = db.connect().await;
    b.begin().await;
    b.exec("UPDATE data_source_table SET name = 'b' WHERE personid = 2")
        .await;
    b.exec("UPDATE data_source_table SET name = 'b' WHERE personid = 4")
        .await;
    b.exec("COMMIT").await;
    // A is open and older than B: neither is due yet.
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.rows.is_empty(), "{:?}", r.rows);
    a.exec("DELETE FROM data_source_table WHERE personid = 2")
        .await;
    a.exec("UPDATE data_source_table SET age = 40 WHERE personid = 4")
        .await;
    a.exec("COMMIT").await;
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert_eq!(
        ops(&r.rows),
        vec![
            s("1", "aaaa", "30", "U"),
            s("2", "", "", "D"),
            s("4", "b", "40", "U"),
        ],
        "{}",
        r.out
    );
    lake.assert_matches(&db.table().await);
    // Nothing is delivered twice.
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.rows.is_empty(), "{:?}", r.rows);
}

/// Tiny deterministic generator for the writers.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Writers inserting, updating and deleting for a few seconds while runs
/// happen every few hundred milliseconds: applying the files in order to
/// the full copy yields exactly the source table.
pub async fn concurrent_writers(b: Backend) {
    let (dir, db, mut lake) = start(b, "ct_conc", "2d", 7).await;
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let mut c = db.connect().await;
        writers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
            // Each writer owns its own key range, so the writers never wait
            // on each other's rows (only on change tracking's own locks).
            let base = 1000 + w as i64 * 100_000;
            let mut live: Vec<i64> = if w == 0 { vec![1, 2, 3, 4, 5] } else { vec![] };
            let mut next = base;
            let mut txns = 0;
            while Instant::now() < deadline {
                c.begin().await;
                for _ in 0..=rng.next(3) {
                    match rng.next(3) {
                        0 => {
                            c.exec(&format!(
                                "INSERT INTO data_source_table (personid, name, age) VALUES ({next}, 'w{w}', {})",
                                rng.next(100)
                            ))
                            .await;
                            live.push(next);
                            next += 1;
                        }
                        1 if !live.is_empty() => {
                            let id = live[rng.next(live.len() as u64) as usize];
                            c.exec(&format!(
                                "UPDATE data_source_table SET age = {}, name = 'u{txns}' WHERE personid = {id}",
                                rng.next(100)
                            ))
                            .await;
                        }
                        2 if !live.is_empty() => {
                            let i = rng.next(live.len() as u64) as usize;
                            let id = live.swap_remove(i);
                            c.exec(&format!("DELETE FROM data_source_table WHERE personid = {id}")).await;
                        }
                        _ => {}
                    }
                }
                c.exec("COMMIT").await;
                txns += 1;
                tokio::time::sleep(Duration::from_millis(rng.next(15))).await;
            }
            txns
        }));
    }
    let mut runs = 0;
    while Instant::now() < deadline {
        let path = dir.path.clone();
        let o = tokio::task::spawn_blocking(move || {
            command_in(&path, &["run", "--json"]).output().unwrap()
        })
        .await
        .unwrap();
        assert_code(&o, 0);
        let full = serde_json::from_str::<Json>(&stdout(&o))
            .is_ok_and(|j| j["streams"][0]["full_reload"] == Json::Bool(true));
        assert!(!full, "no reload expected: {}", stdout(&o));
        lake.collect(&dir, false);
        runs += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut txns = 0;
    for w in writers {
        txns += w.await.unwrap();
    }
    assert!(txns > 20, "the writers made only {txns} transactions");
    assert!(runs >= 3, "only {runs} runs");
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    lake.assert_matches(&db.table().await);
}

/// Past the retention the run reloads in full, says so in its output and
/// run record, and continues incrementally.
pub async fn retention_reload(b: Backend) {
    let (dir, db, mut lake) = start(b, "ct_ret", "1s", 1000).await;
    db.exec("UPDATE data_source_table SET age = 77 WHERE personid = 4")
        .await;
    db.exec("DELETE FROM data_source_table WHERE personid = 5")
        .await;
    if b == Backend::Mariadb {
        // MariaDB prunes stamped changes only (a pending one has no version
        // a stream could have passed): a stream that runs more often
        // stamps them, as it would in production.
        let cfg = std::fs::read_to_string(dir.config()).unwrap();
        dir.write(
            "highwater.yaml",
            &format!(
                "{cfg}  other:
    from: src
    table: data_source_table
    mode: change_tracking
    primary_key: [personid]
    to: lake
    path: \"other/{{run_id}}.csv\"
    format: csv
"
            ),
        );
        let o = dir.hw(&["run", "other"]);
        assert_code(&o, 0);
        dir.write("highwater.yaml", &cfg);
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.full_reload(), "{}", r.out);
    assert!(r.out.contains("full reload"), "the run says so: {}", r.out);
    let run_id = r.json.as_ref().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = dir.hw(&["runs", "show", &run_id, "--json"]);
    assert_code(&o, 0);
    let rec: Json = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rec["streams"][0]["full_reload"], Json::Bool(true), "{rec}");
    assert!(
        rec["streams"][0]["notes"]
            .to_string()
            .contains("minimum valid version"),
        "{rec}"
    );
    assert_eq!(
        ops(&r.rows),
        vec![
            s("1", "aaaa", "21", "I"),
            s("2", "bbbb", "24", "I"),
            s("3", "cccc", "20", "I"),
            s("4", "dddd", "77", "I"),
        ]
    );
    lake.assert_matches(&db.table().await);
    // And incrementally from there (with a retention a slow machine cannot
    // outlast between two runs, or the next run would rightly reload again).
    let cfg = std::fs::read_to_string(dir.config()).unwrap();
    dir.write(
        "highwater.yaml",
        &cfg.replace("change_retention: 1s", "change_retention: 1h"),
    );
    db.exec("UPDATE data_source_table SET age = 78 WHERE personid = 4")
        .await;
    db.settle().await;
    let r = lake.run(&dir);
    assert!(!r.full_reload(), "{}", r.out);
    assert_eq!(ops(&r.rows), vec![s("4", "dddd", "78", "U")], "{}", r.out);
    lake.assert_matches(&db.table().await);
}

/// A run killed at the named crash points (as `kill -9` would), then a
/// re-run: no change lost, none twice. Then real `kill -9`s at random
/// moments.
pub async fn killed_runs(b: Backend) {
    let (dir, db, mut lake) = start(b, "ct_kill", "2d", 1).await;
    let mut id = 10;
    for fp in [
        "engine.mid_write",
        "files.after_data_before_marker",
        "engine.after_publish",
    ] {
        for _ in 0..3 {
            db.exec(&format!(
                "INSERT INTO data_source_table (personid, name, age) VALUES ({id}, '{fp}', {id})"
            ))
            .await;
            id += 1;
        }
        db.exec(&format!(
            "UPDATE data_source_table SET age = age + 1 WHERE personid = {}",
            id - 3
        ))
        .await;
        db.exec(&format!(
            "DELETE FROM data_source_table WHERE personid = {}",
            id - 2
        ))
        .await;
        db.settle().await;
        let r = lake.run_env(&dir, &[("HIGHWATER_FAILPOINT", fp)]);
        assert_ne!(
            r.code,
            Some(0),
            "{fp} should have stopped the run: {}",
            r.out
        );
        let r = lake.run(&dir);
        assert_eq!(r.code, Some(0), "{}", r.out);
        lake.assert_matches(&db.table().await);
    }
    // Killed after the commit marker, before the file has its final name:
    // the next run publishes that file beside its own, in which the key
    // inserted in the first is deleted. A reader that orders files by
    // name (random run ids) instead of by commit brings the key back.
    for _ in 0..4 {
        db.exec(&format!(
            "INSERT INTO data_source_table (personid, name, age) VALUES ({id}, 'late', {id})"
        ))
        .await;
        db.settle().await;
        let r = lake.run_env(
            &dir,
            &[("HIGHWATER_FAILPOINT", "files.after_marker_before_publish")],
        );
        assert_ne!(
            r.code,
            Some(0),
            "the failpoint should have stopped the run: {}",
            r.out
        );
        db.exec(&format!(
            "DELETE FROM data_source_table WHERE personid = {id}"
        ))
        .await;
        db.settle().await;
        let r = lake.run(&dir);
        assert_eq!(r.code, Some(0), "{}", r.out);
        lake.assert_matches(&db.table().await);
        id += 1;
    }
    for round in 0..6u64 {
        db.exec(&format!(
            "INSERT INTO data_source_table (personid, name, age) VALUES ({id}, 'k', 1), ({}, 'k', 2)",
            id + 1
        ))
        .await;
        db.exec(&format!(
            "DELETE FROM data_source_table WHERE personid = {}",
            id - 1
        ))
        .await;
        id += 2;
        db.settle().await;
        let mut child = dir.spawn_quiet(&["run"]);
        std::thread::sleep(Duration::from_millis(5 + round * 12));
        let _ = child.kill();
        let _ = child.wait();
        lake.collect(&dir, false);
    }
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    lake.assert_matches(&db.table().await);
}

/// An update of the primary key is a delete of the old key and an insert
/// of the new one; a row inserted and deleted in one window arrives once as
/// `D` (documented choice); deleting every row arrives as `D`s.
pub async fn key_updates_and_deletes(b: Backend) {
    let (dir, db, mut lake) = start(b, "ct_keys", "2d", 1000).await;
    db.exec("UPDATE data_source_table SET personid = 50 WHERE personid = 2")
        .await;
    db.exec("INSERT INTO data_source_table (personid, name, age) VALUES (7, 'brief', 1)")
        .await;
    db.exec("DELETE FROM data_source_table WHERE personid = 7")
        .await;
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert_eq!(
        ops(&r.rows),
        vec![
            s("2", "", "", "D"),
            s("50", "bbbb", "24", "I"),
            s("7", "", "", "D")
        ],
        "{}",
        r.out
    );
    lake.assert_matches(&db.table().await);
    db.exec("DELETE FROM data_source_table").await;
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert_eq!(r.rows.len(), 5, "{}", r.out);
    assert!(r.rows.iter().all(|x| x.4 == "D"), "{:?}", r.rows);
    lake.assert_matches(&db.table().await);
}

/// Statements that change many rows at once (PostgreSQL's triggers are
/// statement-level, reading transition tables): every key moved by one
/// UPDATE, a 1,000-row INSERT … SELECT, a multi-row UPDATE and DELETE of
/// rows inserted in the same window — each key's net change once, and the
/// replay equals the source.
pub async fn multi_row_statements(b: Backend) {
    let (dir, db, mut lake) = start(b, "ct_multirow", "2d", 1000).await;
    db.exec("UPDATE data_source_table SET personid = personid + 100")
        .await;
    db.exec(
        "INSERT INTO data_source_table (personid, name, age)
         WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 1999)
         SELECT i, 'gen', i FROM n",
    )
    .await;
    db.exec("UPDATE data_source_table SET age = age + 1 WHERE personid BETWEEN 1500 AND 1599")
        .await;
    db.exec("DELETE FROM data_source_table WHERE personid >= 1900")
        .await;
    db.exec("UPDATE data_source_table SET name = 'x' WHERE personid > 100 AND personid < 104")
        .await;
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    let count = |op: &str| r.rows.iter().filter(|x| x.4 == op).count();
    assert_eq!(
        (count("I"), count("U"), count("D")),
        (905, 0, 105),
        "{}",
        r.out
    );
    let keys: BTreeSet<&str> = r.rows.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(keys.len(), r.rows.len(), "one row per key");
    assert!(
        r.rows
            .iter()
            .any(|x| x.0 == "101" && x.1 == "x" && x.2 == "21" && x.4 == "I"),
        "{:?}",
        r.rows.iter().find(|x| x.0 == "101")
    );
    assert!(
        r.rows
            .iter()
            .any(|x| x.0 == "1550" && x.2 == "1551" && x.4 == "I"),
        "{:?}",
        r.rows.iter().find(|x| x.0 == "1550")
    );
    lake.assert_matches(&db.table().await);

    // Then a multi-row UPDATE of rows the target already has: U each.
    db.exec("UPDATE data_source_table SET age = 0 WHERE personid BETWEEN 1000 AND 1009")
        .await;
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert_eq!(r.rows.len(), 10, "{}", r.out);
    assert!(
        r.rows.iter().all(|x| x.4 == "U" && x.2 == "0"),
        "{:?}",
        r.rows
    );
    lake.assert_matches(&db.table().await);
}

/// A table whose name holds a quote, a backslash and a space: identifiers
/// are quoted and no name is spliced into SQL text unescaped, triggers
/// included.
pub async fn hostile_table_name(b: Backend) {
    let dir = Dir::new("ct_hostile");
    let db = Db::new(b, &dir, "ct_hostile").await;
    let name = r"it's a\table";
    let quoted = match b {
        Backend::Mariadb => format!("`{name}`"),
        _ => format!("\"{name}\""),
    };
    db.exec(&format!(
        "CREATE TABLE {quoted} (personid int NOT NULL, name varchar(255), age int, PRIMARY KEY (personid));
         INSERT INTO {quoted} (personid, name, age) VALUES (1, 'a', 1), (2, 'b', 2);"
    ))
    .await;
    config_table(&dir, &db, r#""it's a\\table""#, "2d", 1000);
    let mut lake = Lake::new();
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert_eq!(r.rows.len(), 2, "{}", r.out);
    db.exec(&format!(
        "INSERT INTO {quoted} (personid, name, age) VALUES (3, 'c''d', 3);
         UPDATE {quoted} SET age = 10 WHERE personid = 1;
         DELETE FROM {quoted} WHERE personid = 2;"
    ))
    .await;
    db.settle().await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert_eq!(
        ops(&r.rows),
        vec![
            s("1", "a", "10", "U"),
            s("2", "", "", "D"),
            s("3", "c'd", "3", "I")
        ],
        "{}",
        r.out
    );
    let o = dir.hw(&["changes", "status"]);
    assert!(stdout(&o).contains("is complete"), "{}", stdout(&o));
    let o = dir.hw(&["changes", "disable", "people"]);
    assert_code(&o, 0);
    let o = dir.hw(&["changes", "status"]);
    assert!(stdout(&o).contains("not set up"), "{}", stdout(&o));
    db.exec(&format!("DELETE FROM {quoted} WHERE personid = 1"))
        .await;
}

conformance!(
    tutorial,
    check_and_disable,
    late_commit,
    concurrent_writers,
    retention_reload,
    killed_runs,
    key_updates_and_deletes,
    multi_row_statements,
    hostile_table_name,
);

/// The source's MariaDB database of a test started on `Backend::Mariadb`.
fn my(db: &Db) -> &MyDb {
    match db {
        Db::My(m) => m,
        _ => panic!("a MariaDB test"),
    }
}

/// Issue 12: a writer holding a transaction open on one row of a tracked
/// table does not block a writer of other rows (the triggers of earlier
/// versions bumped one counter row, so the second writer waited for the
/// first one's commit and here hit its lock wait timeout). Both with keys
/// the change log has no row for yet and with keys it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_writers_of_different_rows_do_not_wait() {
    let (dir, db, mut lake) = start(Backend::Mariadb, "ct_nowait", "2d", 1000).await;
    for round in 0..2 {
        let mut a = my(&db).connect().await;
        a.query_drop("BEGIN").await.unwrap();
        a.query_drop(format!(
            "UPDATE data_source_table SET age = {} WHERE personid = 1",
            30 + round
        ))
        .await
        .unwrap();
        a.query_drop(format!(
            "INSERT INTO data_source_table (personid, name, age) VALUES ({}, 'a', 1)",
            100 + round
        ))
        .await
        .unwrap();
        let mut b = my(&db).connect().await;
        b.query_drop("SET SESSION innodb_lock_wait_timeout = 2")
            .await
            .unwrap();
        b.query_drop("BEGIN").await.unwrap();
        for sql in [
            format!("UPDATE data_source_table SET age = {round} WHERE personid = 2"),
            format!("UPDATE data_source_table SET name = 'b{round}' WHERE personid = 5"),
            format!(
                "INSERT INTO data_source_table (personid, name, age) VALUES ({}, 'b', 2)",
                200 + round
            ),
            format!(
                "DELETE FROM data_source_table WHERE personid = {}",
                [3, 200][round]
            ),
        ] {
            b.query_drop(&sql).await.unwrap_or_else(|e| {
                panic!("a writer of other rows waited for the open transaction: {sql}: {e}")
            });
        }
        b.query_drop("COMMIT").await.unwrap();
        a.query_drop("COMMIT").await.unwrap();
        let r = lake.run(&dir);
        assert_eq!(r.code, Some(0), "{}", r.out);
        assert!(!r.full_reload(), "{}", r.out);
        lake.assert_matches(&db.table().await);
    }
}

/// A full load leaves out the keys whose committed change is still
/// pending in its snapshot (the stamping skipped their log rows, which
/// another session held): they arrive once, with the next delta. They used
/// to be in the full load and then again in the delta, a duplicate row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_a_full_load_leaves_pending_keys_to_the_next_delta() {
    let (dir, db, mut lake) = start(Backend::Mariadb, "ct_pending_full", "2d", 1000).await;
    db.exec("INSERT INTO data_source_table (personid, name, age) VALUES (100, 'late', 1)")
        .await;
    db.exec("UPDATE data_source_table SET age = 99 WHERE personid = 2")
        .await;
    let mut hold = my(&db).connect().await;
    hold.query_drop("BEGIN").await.unwrap();
    hold.query_drop("SELECT * FROM _hw_ct_data_source_table WHERE personid IN (2, 100) FOR UPDATE")
        .await
        .unwrap();
    // The stream forgets its position: the next run is a full load.
    assert_code(&dir.hw(&["state", "reset", "people"]), 0);
    let r1 = lake.run(&dir);
    assert_eq!(r1.code, Some(0), "{}", r1.out);
    assert!(r1.full_reload(), "{}", r1.out);
    assert_eq!(r1.rows.len(), 4, "keys 1, 3, 4, 5: {:?}", r1.rows);
    hold.query_drop("COMMIT").await.unwrap();
    let r2 = lake.run(&dir);
    assert_eq!(r2.code, Some(0), "{}", r2.out);
    assert_eq!(
        ops(&r2.rows),
        vec![s("100", "late", "1", "I"), s("2", "bbbb", "99", "U")],
        "{}",
        r2.out
    );
    let mut all = r1.rows.clone();
    all.extend(r2.rows.clone());
    for key in ["2", "100"] {
        assert_eq!(
            all.iter().filter(|r| r.0 == key).count(),
            1,
            "key {key} once: {all:?}"
        );
    }
    lake.assert_matches(&db.table().await);
}

/// Issue 12: a run while a writer's transaction is open delivers the
/// committed changes and not the open one's; the open one's arrive in a
/// later run, after the commit, exactly once — also for a key whose
/// committed change was still pending when the open transaction took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_a_run_during_an_open_write_transaction() {
    let (dir, db, mut lake) = start(Backend::Mariadb, "ct_open", "2d", 1000).await;
    db.exec("UPDATE data_source_table SET age = 40 WHERE personid = 1")
        .await;
    let mut a = my(&db).connect().await;
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("UPDATE data_source_table SET age = 41 WHERE personid = 1")
        .await
        .unwrap();
    a.query_drop("INSERT INTO data_source_table (personid, name, age) VALUES (300, 'open', 3)")
        .await
        .unwrap();
    // Other rows, committed, without waiting for the open transaction.
    let mut b = my(&db).connect().await;
    b.query_drop(
        "SET SESSION innodb_lock_wait_timeout = 5;
         UPDATE data_source_table SET age = 42 WHERE personid = 2;
         DELETE FROM data_source_table WHERE personid = 4",
    )
    .await
    .unwrap();
    let r1 = lake.run(&dir);
    assert_eq!(r1.code, Some(0), "{}", r1.out);
    assert!(
        ops(&r1.rows).contains(&s("2", "bbbb", "42", "U"))
            && ops(&r1.rows).contains(&s("4", "", "", "D")),
        "the committed changes arrive: {:?}",
        r1.rows
    );
    assert!(
        !r1.rows.iter().any(|x| x.0 == "300" || x.2 == "41"),
        "an uncommitted change was read: {:?}",
        r1.rows
    );
    a.query_drop("COMMIT").await.unwrap();
    let r2 = lake.run(&dir);
    assert_eq!(r2.code, Some(0), "{}", r2.out);
    let mut all = r1.rows.clone();
    all.extend(r2.rows.clone());
    assert_eq!(
        ops(&all),
        vec![
            s("1", "aaaa", "41", "U"),
            s("2", "bbbb", "42", "U"),
            s("300", "open", "3", "I"),
            s("4", "", "", "D"),
        ],
        "first run: {:?}\nsecond run: {}",
        r1.rows,
        r2.out
    );
    let r3 = lake.run(&dir);
    assert_eq!(r3.code, Some(0), "{}", r3.out);
    assert!(r3.rows.is_empty(), "nothing more: {:?}", r3.rows);
    lake.assert_matches(&db.table().await);
}

/// A run killed between two stamp batches (batches of 4 here) and runs
/// after it: every change arrives once, none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_killed_between_stamp_batches() {
    let (dir, db, mut lake) = start(Backend::Mariadb, "ct_stampkill", "2d", 5).await;
    let batch = ("HIGHWATER_CT_STAMP_BATCH", "4");
    db.exec(
        "INSERT INTO data_source_table (personid, name, age)
         WITH RECURSIVE n(i) AS (SELECT 100 UNION ALL SELECT i + 1 FROM n WHERE i < 119)
         SELECT i, 'gen', i FROM n",
    )
    .await;
    db.exec("UPDATE data_source_table SET age = 99 WHERE personid = 1")
        .await;
    db.exec("DELETE FROM data_source_table WHERE personid = 3")
        .await;
    let r = lake.run_env(
        &dir,
        &[batch, ("HIGHWATER_FAILPOINT", "change_tracking.mid_stamp")],
    );
    assert_ne!(
        r.code,
        Some(0),
        "the failpoint should stop the run: {}",
        r.out
    );
    let (stamped, pending): (i64, i64) = my(&db)
        .connect()
        .await
        .query_first(format!(
            "SELECT SUM(hw_version < {m}), SUM(hw_version = {m}) FROM _hw_ct_data_source_table",
            m = i64::MAX
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stamped, pending), (4, 18), "killed after the first batch");
    // Changes to stamped and to pending keys before the next run.
    db.exec(
        "UPDATE data_source_table SET name = 'again' WHERE personid IN (100, 101, 118);
         DELETE FROM data_source_table WHERE personid IN (102, 119);
         INSERT INTO data_source_table (personid, name, age) VALUES (400, 'late', 4);",
    )
    .await;
    let r = lake.run_env(&dir, &[batch]);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(!r.full_reload(), "{}", r.out);
    let count = |op: &str| r.rows.iter().filter(|x| x.4 == op).count();
    assert_eq!(
        (count("I"), count("U"), count("D")),
        (19, 1, 3),
        "{}",
        r.out
    );
    lake.assert_matches(&db.table().await);
    let r = lake.run_env(&dir, &[batch]);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.rows.is_empty(), "nothing more: {:?}", r.rows);
}

/// An installation whose triggers bump the version counter themselves
/// (every earlier highwater's: writers serialised on the counter row) is
/// rebuilt by the next run, which says so and reloads in full; changes made
/// through the old triggers are not lost, and the stream goes on
/// incrementally.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_earlier_triggers_are_rebuilt_loudly() {
    let (dir, db, mut lake) = start(Backend::Mariadb, "ct_oldtrg", "2d", 1000).await;
    let log = "_hw_ct_data_source_table";
    let bump = "DECLARE v BIGINT;
        UPDATE _highwater_ct SET version = version + 1 WHERE table_name = 'data_source_table';
        SELECT version INTO v FROM _highwater_ct WHERE table_name = 'data_source_table';";
    let upsert = |row: &str, op: &str, created: &str| {
        format!(
            "INSERT INTO {log} (personid, hw_op, hw_version, hw_created, hw_changed_at)
             VALUES ({row}.personid, '{op}', v, {created}, UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE hw_op = '{op}', hw_version = v, hw_changed_at = UTC_TIMESTAMP(6);"
        )
    };
    for (ev, event, body) in [
        ("ins", "INSERT", upsert("NEW", "I", "v")),
        ("upd", "UPDATE", upsert("NEW", "U", "NULL")),
        ("del", "DELETE", upsert("OLD", "D", "NULL")),
    ] {
        db.exec(&format!("DROP TRIGGER _hw_ct_data_source_table_{ev}"))
            .await;
        db.exec(&format!(
            "CREATE TRIGGER _hw_ct_data_source_table_{ev} AFTER {event} ON data_source_table
             FOR EACH ROW BEGIN {bump} {body} END"
        ))
        .await;
    }
    db.exec(
        "UPDATE data_source_table SET age = 70 WHERE personid = 1;
         INSERT INTO data_source_table (personid, name, age) VALUES (6, 'old', 6);
         DELETE FROM data_source_table WHERE personid = 2;",
    )
    .await;
    let o = dir.hw(&["changes", "status"]);
    assert!(
        stdout(&o).contains("earlier highwater"),
        "status names the earlier triggers: {}",
        stdout(&o)
    );
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(r.full_reload(), "{}", r.out);
    assert!(
        r.out.contains("earlier highwater") && r.out.contains("reloads in full"),
        "the rebuild is loud: {}",
        r.out
    );
    assert_eq!(
        ops(&r.rows),
        vec![
            s("1", "aaaa", "70", "I"),
            s("3", "cccc", "20", "I"),
            s("4", "dddd", "26", "I"),
            s("5", "eeee", "22", "I"),
            s("6", "old", "6", "I"),
        ],
        "{}",
        r.out
    );
    lake.assert_matches(&db.table().await);
    db.exec("UPDATE data_source_table SET age = 71 WHERE personid = 1")
        .await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(!r.full_reload(), "{}", r.out);
    assert_eq!(ops(&r.rows), vec![s("1", "aaaa", "71", "U")], "{}", r.out);
    lake.assert_matches(&db.table().await);
}

/// MariaDB prunes stamped changes only: a change still pending after the
/// retention (no run stamped it) has no version a stream could have passed,
/// so it arrives incrementally instead of forcing a reload. And pruning
/// skips a log row an open transaction holds rather than waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_pending_changes_outlive_the_retention() {
    let (dir, db, mut lake) = start(Backend::Mariadb, "ct_pendret", "1s", 1000).await;
    db.exec("UPDATE data_source_table SET age = 80 WHERE personid = 4")
        .await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = lake.run(&dir);
    assert_eq!(r.code, Some(0), "{}", r.out);
    assert!(!r.full_reload(), "{}", r.out);
    assert_eq!(ops(&r.rows), vec![s("4", "dddd", "80", "U")], "{}", r.out);
    // Row 4's log row is stamped and past the retention; a writer holds it.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut a = my(&db).connect().await;
    a.query_drop("BEGIN; UPDATE data_source_table SET age = 81 WHERE personid = 4")
        .await
        .unwrap();
    db.exec("UPDATE data_source_table SET age = 30 WHERE personid = 3")
        .await;
    let r1 = lake.run(&dir);
    assert_eq!(r1.code, Some(0), "{}", r1.out);
    a.query_drop("COMMIT").await.unwrap();
    let r2 = lake.run(&dir);
    assert_eq!(r2.code, Some(0), "{}", r2.out);
    assert!(
        !r1.full_reload() && !r2.full_reload(),
        "{}\n{}",
        r1.out,
        r2.out
    );
    let mut all = r1.rows.clone();
    all.extend(r2.rows.clone());
    assert_eq!(
        ops(&all),
        vec![s("3", "cccc", "30", "U"), s("4", "dddd", "81", "U")],
        "{}\n{}",
        r1.out,
        r2.out
    );
    lake.assert_matches(&db.table().await);
}

/// Writers (short transactions and ones held open across runs) while runs
/// stamp in batches of 3 and are killed (`kill -9`) at random instants,
/// some of them mid-stamp: the replay of every published file equals the
/// source, and no change arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_runs_killed_while_writers_write() {
    let (dir, db, mut lake) = start(Backend::Mariadb, "ct_killwrite", "2d", 4).await;
    let batch = ("HIGHWATER_CT_STAMP_BATCH", "3");
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let mut c = my(&db).connect().await;
        writers.push(tokio::spawn(async move {
            let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (w + 7));
            let base = 1000 + w as i64 * 100_000;
            let mut live: Vec<i64> = if w == 0 { vec![1, 2, 3, 4, 5] } else { vec![] };
            let mut next = base;
            while Instant::now() < deadline {
                c.query_drop("BEGIN").await.unwrap();
                for _ in 0..=rng.next(4) {
                    let sql = match rng.next(3) {
                        0 => {
                            live.push(next);
                            next += 1;
                            format!(
                                "INSERT INTO data_source_table (personid, name, age) VALUES ({}, 'w{w}', {})",
                                next - 1,
                                rng.next(100)
                            )
                        }
                        1 if !live.is_empty() => format!(
                            "UPDATE data_source_table SET age = {} WHERE personid = {}",
                            rng.next(100),
                            live[rng.next(live.len() as u64) as usize]
                        ),
                        2 if !live.is_empty() => {
                            let id = live.swap_remove(rng.next(live.len() as u64) as usize);
                            format!("DELETE FROM data_source_table WHERE personid = {id}")
                        }
                        _ => continue,
                    };
                    c.query_drop(sql).await.unwrap();
                }
                // Now and then a transaction stays open across a run.
                if rng.next(8) == 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                c.query_drop("COMMIT").await.unwrap();
            }
        }));
    }
    let mut round = 0u64;
    while Instant::now() < deadline {
        let mut child = dir
            .command(&["run"])
            .env(batch.0, batch.1)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if round % 3 != 2 {
            tokio::time::sleep(Duration::from_millis(20 + (round * 37) % 150)).await;
            let _ = child.kill();
        }
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        lake.collect(&dir, false);
        round += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
    for _ in 0..2 {
        let r = lake.run_env(&dir, &[batch]);
        assert_eq!(r.code, Some(0), "{}", r.out);
    }
    lake.assert_matches(&db.table().await);
}
