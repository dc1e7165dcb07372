//! `highwater verify`: run a stream, corrupt its target behind highwater's
//! back (delete, change and add rows), and check that verify names exactly
//! those keys (exit 1), that an equal target exits 0, that rows past the
//! position are not reported missing, and that `--repair` makes verify pass
//! with exactly the source's rows. Each source backend writes into a target
//! of another backend (`verify::<source>::*`), so values are compared by
//! type across databases.

use std::path::PathBuf;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::util::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

conformance!(
    merge_into_sqlite,
    merge_into_postgres,
    merge_into_mariadb,
    change_tracking_target_is_verified_and_repaired,
    full_copy_without_key_is_compared_as_rows,
    text_keys_into_sqlite,
    text_keys_into_postgres,
    text_keys_into_mariadb,
);

enum Db {
    Sqlite(PathBuf, &'static str),
    Pg(PgDb),
    My(MyDb),
}

impl Db {
    async fn new(b: Backend, dir: &Dir, file: &'static str) -> Db {
        match b {
            Backend::Sqlite => {
                rusqlite::Connection::open(dir.join(file)).unwrap();
                Db::Sqlite(dir.join(file), file)
            }
            Backend::Postgres => Db::Pg(PgDb::new("verify").await),
            Backend::Mariadb => Db::My(MyDb::new("verify").await),
        }
    }

    fn url(&self) -> String {
        match self {
            Db::Sqlite(_, f) => format!("sqlite://{f}"),
            Db::Pg(p) => p.url.clone(),
            Db::My(m) => m.url.clone(),
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite(p, _) => {
                let c = rusqlite::Connection::open(p).unwrap();
                c.busy_timeout(Duration::from_secs(30)).unwrap();
                c.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Db::Pg(p) => p.exec(sql).await,
            Db::My(m) => {
                let mut c = m.connect().await;
                c.query_drop(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.disconnect().await;
            }
        }
    }

    /// PostgreSQL: wait until every transaction older than this point has
    /// ended. Change tracking versions are transaction ids, so another
    /// test's open transaction holds rows back (cluster-wide) and a run or
    /// a verify would see them as not yet due.
    async fn settle(&self) {
        if let Db::Pg(p) = self {
            p.wait_for_older_transactions().await;
        }
    }

    /// `(region, code, label)` of the text-keyed table, sorted here (the
    /// databases' collations differ).
    async fn labels(&self, table: &str) -> Vec<(String, String, Option<String>)> {
        let sql = format!("SELECT region, code, label FROM {table}");
        let mut rows: Vec<(String, String, Option<String>)> = match self {
            Db::Sqlite(p, _) => {
                let c = rusqlite::Connection::open(p).unwrap();
                let mut st = c.prepare(&sql).unwrap();
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Db::Pg(p) => p
                .client
                .query(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"))
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
            Db::My(m) => {
                let mut c = m.connect().await;
                let rows = c
                    .query(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{table}: {e}"));
                let _ = c.disconnect().await;
                rows
            }
        };
        rows.sort();
        rows
    }

    /// `(id, name, amount as text)` ordered by id.
    async fn rows(&self, table: &str) -> Vec<(i64, Option<String>, Option<String>)> {
        match self {
            Db::Sqlite(p, _) => {
                let c = rusqlite::Connection::open(p).unwrap();
                let mut st = c
                    .prepare(&format!(
                        "SELECT id, name, printf('%.2f', amount) FROM {table} ORDER BY id"
                    ))
                    .unwrap();
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Db::Pg(p) => p
                .client
                .query(
                    &format!(
                        "SELECT id::bigint, name::text, to_char(amount, 'FM999990.00') FROM {table} ORDER BY id"
                    ),
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"))
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
            Db::My(m) => {
                let mut c = m.connect().await;
                let rows = c
                    .query(format!(
                        "SELECT CAST(id AS SIGNED), name, CAST(CAST(amount AS DECIMAL(10,2)) AS CHAR) FROM {table} ORDER BY id"
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("{table}: {e}"));
                let _ = c.disconnect().await;
                rows
            }
        }
    }
}

/// The target of each source: another backend.
fn target_of(b: Backend) -> Backend {
    match b {
        Backend::Sqlite => Backend::Postgres,
        Backend::Postgres => Backend::Mariadb,
        Backend::Mariadb => Backend::Sqlite,
    }
}

/// `t (id, name, amount, at, ver)`: a key, text ('' and NULL), a decimal,
/// a timestamp and an integer cursor.
fn create_table(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => {
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, amount DECIMAL(10,2), at TIMESTAMP, ver INTEGER)"
        }
        Backend::Postgres => {
            "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(10,2), at timestamp, ver int)"
        }
        Backend::Mariadb => {
            "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(50), amount DECIMAL(10,2), at DATETIME(6), ver INT)"
        }
    }
}

fn insert_rows(ids: std::ops::RangeInclusive<i64>, ver: i64) -> String {
    let values: Vec<String> = ids
        .map(|i| {
            let name = match i {
                4 => "''".to_string(),
                6 => "NULL".to_string(),
                _ => format!("'n{i}'"),
            };
            format!(
                "({i}, {name}, {i}.50, '2024-03-0{} 10:20:30.123456', {ver})",
                i % 9 + 1
            )
        })
        .collect();
    format!(
        "INSERT INTO t (id, name, amount, at, ver) VALUES {}",
        values.join(", ")
    )
}

struct Case {
    dir: Dir,
    src: Db,
    dst: Db,
}

impl Case {
    async fn new(b: Backend, mode: &str, extra: &str) -> Case {
        Case::with_target(b, target_of(b), mode, extra).await
    }

    async fn with_target(b: Backend, target: Backend, mode: &str, extra: &str) -> Case {
        Case::table(
            b,
            target,
            create_table(b),
            &insert_rows(1..=12, 1),
            mode,
            extra,
        )
        .await
    }

    /// A source table `t` made by `ddl` and `rows`, copied into `copy`.
    async fn table(
        b: Backend,
        target: Backend,
        ddl: &str,
        rows: &str,
        mode: &str,
        extra: &str,
    ) -> Case {
        let dir = Dir::new("verify");
        let src = Db::new(b, &dir, "src.db").await;
        let dst = Db::new(target, &dir, "dst.db").await;
        src.exec(ddl).await;
        src.exec(rows).await;
        src.settle().await;
        dir.write(
            "highwater.yaml",
            &format!(
                "connections:\n  src: {}\n  dst: {}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: {mode}\n{extra}    to: dst\n    into: copy\n",
                src.url(),
                dst.url(),
            ),
        );
        let o = dir.hw(&["run"]);
        assert_code(&o, 0);
        Case { dir, src, dst }
    }

    fn verify(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["verify", "--json"];
        all.extend_from_slice(args);
        let o = self.dir.hw(&all);
        assert_code(&o, code);
        let v: Value =
            serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
        v[0].clone()
    }
}

impl Case {
    /// Verify exits 0, found equal by the sums inside both databases.
    fn equal_by_checksum(&self) {
        let v = self.verify(&[], 0);
        assert!(v["notes"].to_string().contains("equal by checksum"), "{v}");
        assert_eq!(v["compared"], 12, "{v}");
    }
}

fn keys(v: &Value, what: &str) -> Vec<String> {
    v[what]
        .as_array()
        .unwrap_or_else(|| panic!("{what} in {v}"))
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

fn expected_rows(ids: &[i64]) -> Vec<(i64, Option<String>, Option<String>)> {
    ids.iter()
        .map(|i| {
            let name = match i {
                4 => Some(String::new()),
                6 => None,
                _ => Some(format!("n{i}")),
            };
            (*i, name, Some(format!("{i}.50")))
        })
        .collect()
}

/// Every pair: each source backend into each database target; run, then
/// corrupt the target, find exactly the corrupted keys, repair.
async fn merge_into_sqlite(b: Backend) {
    merge_pair(b, Backend::Sqlite).await;
}

async fn merge_into_postgres(b: Backend) {
    merge_pair(b, Backend::Postgres).await;
}

async fn merge_into_mariadb(b: Backend) {
    merge_pair(b, Backend::Mariadb).await;
}

async fn merge_pair(b: Backend, target: Backend) {
    let c = Case::with_target(
        b,
        target,
        "watermark",
        "    cursor: ver\n    primary_key: [id]\n    write: merge\n",
    )
    .await;
    // Equal after the run.
    let v = c.verify(&[], 0);
    assert_eq!(v["compared"], 12, "{v}");
    assert_eq!(v["missing_count"], 0, "{v}");

    // Rows past the position are not due: not missing.
    c.src.exec(&insert_rows(13..=14, 5)).await;
    let v = c.verify(&[], 0);
    assert_eq!(v["compared"], 12, "{v}");
    assert_eq!(v["not_due"], 2, "{v}");

    // Corrupt the target: delete 3, change 5 (value) and 4 ('' → NULL),
    // add 99.
    c.dst.exec("DELETE FROM copy WHERE id = 3").await;
    c.dst.exec("UPDATE copy SET amount = 7 WHERE id = 5").await;
    c.dst.exec("UPDATE copy SET name = NULL WHERE id = 4").await;
    c.dst
        .exec("INSERT INTO copy (id, name, amount, at, ver) VALUES (99, 'x', 1, NULL, 1)")
        .await;
    let v = c.verify(&[], 1);
    assert_eq!(keys(&v, "missing"), ["3"], "{v}");
    assert_eq!(keys(&v, "different"), ["4", "5"], "{v}");
    assert_eq!(keys(&v, "extra"), ["99"], "{v}");
    // The text output lists them too.
    let o = c.dir.hw(&["verify"]);
    assert_code(&o, 1);
    let text = stdout(&o);
    assert!(text.contains("DIFFERS"), "{text}");
    assert!(text.contains("missing: 3"), "{text}");
    assert!(text.contains("extra: 99"), "{text}");

    // Repair: re-copies 3, 4, 5, deletes 99; 13 and 14 stay not due.
    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 3, "{v}");
    assert_eq!(v["repaired"]["deleted"], 1, "{v}");
    assert_eq!(v["missing_count"], 0, "{v}");
    c.verify(&[], 0);
    let ids: Vec<i64> = (1..=12).collect();
    assert_eq!(c.dst.rows("copy").await, expected_rows(&ids));

    // The next run copies 13 and 14, and verify stays equal.
    assert_code(&c.dir.hw(&["run"]), 0);
    let v = c.verify(&[], 0);
    assert_eq!(v["compared"], 14, "{v}");
    let ids: Vec<i64> = (1..=14).collect();
    assert_eq!(c.dst.rows("copy").await, expected_rows(&ids));
}

/// A composite key of two text columns, with non-ASCII and mixed-case
/// values (each database orders and compares text its own way), from each
/// source backend into each database target.
async fn text_keys_into_sqlite(b: Backend) {
    text_keys(b, Backend::Sqlite).await;
}

async fn text_keys_into_postgres(b: Backend) {
    text_keys(b, Backend::Postgres).await;
}

async fn text_keys_into_mariadb(b: Backend) {
    text_keys(b, Backend::Mariadb).await;
}

const REGIONS: [&str; 3] = ["north", "Süd", "east"];
const CODES: [&str; 4] = ["a", "B", "c-1", "ü"];

fn text_key_rows() -> String {
    let mut values = Vec::new();
    for r in REGIONS {
        for (n, c) in CODES.iter().enumerate() {
            let label = match (r, *c) {
                ("east", "ü") => "''".to_string(),
                _ => format!("'{r}/{c}'"),
            };
            values.push(format!("('{r}', '{c}', {n}, {label}, 1)"));
        }
    }
    format!(
        "INSERT INTO t (region, code, n, label, ver) VALUES {}",
        values.join(", ")
    )
}

fn text_key_labels() -> Vec<(String, String, Option<String>)> {
    let mut rows: Vec<_> = REGIONS
        .iter()
        .flat_map(|r| {
            CODES.iter().map(move |c| {
                let label = match (*r, *c) {
                    ("east", "ü") => String::new(),
                    _ => format!("{r}/{c}"),
                };
                (r.to_string(), c.to_string(), Some(label))
            })
        })
        .collect();
    rows.sort();
    rows
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn text_keys(b: Backend, target: Backend) {
    let ddl = match b {
        Backend::Sqlite => {
            "CREATE TABLE t (region TEXT, code TEXT, n INTEGER, label TEXT, ver INTEGER, PRIMARY KEY (region, code))"
        }
        Backend::Postgres => {
            "CREATE TABLE t (region text, code text, n int, label text, ver int, PRIMARY KEY (region, code))"
        }
        Backend::Mariadb => {
            "CREATE TABLE t (region VARCHAR(20), code VARCHAR(20), n INT, label VARCHAR(50), ver INT, PRIMARY KEY (region, code)) CHARACTER SET utf8mb4"
        }
    };
    let c = Case::table(
        b,
        target,
        ddl,
        &text_key_rows(),
        "watermark",
        "    cursor: ver\n    primary_key: [region, code]\n    write: merge\n",
    )
    .await;
    let v = c.verify(&[], 0);
    assert_eq!(v["compared"], 12, "{v}");
    // A row past the position is not due.
    c.src
        .exec("INSERT INTO t (region, code, n, label, ver) VALUES ('north', 'zz', 9, 'later', 5)")
        .await;

    c.dst
        .exec("DELETE FROM copy WHERE region = 'north' AND code = 'a'")
        .await;
    c.dst
        .exec("UPDATE copy SET label = 'corrupt' WHERE region = 'Süd' AND code = 'B'")
        .await;
    c.dst
        .exec("UPDATE copy SET label = NULL WHERE region = 'east' AND code = 'ü'")
        .await;
    c.dst
        .exec("INSERT INTO copy (region, code, n, label, ver) VALUES ('west', 'Z', 1, 'x', 1)")
        .await;
    let v = c.verify(&[], 1);
    assert_eq!(v["not_due"], 1, "{v}");
    assert_eq!(keys(&v, "missing"), ["(north, a)"], "{v}");
    assert_eq!(
        sorted(keys(&v, "different")),
        ["(Süd, B)", "(east, ü)"],
        "{v}"
    );
    assert_eq!(keys(&v, "extra"), ["(west, Z)"], "{v}");

    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 3, "{v}");
    assert_eq!(v["repaired"]["deleted"], 1, "{v}");
    c.verify(&[], 0);
    assert_eq!(c.dst.labels("copy").await, text_key_labels());
}

async fn change_tracking_target_is_verified_and_repaired(b: Backend) {
    let c = Case::new(
        b,
        "change_tracking",
        "    primary_key: [id]\n    write: merge\n",
    )
    .await;
    c.verify(&[], 0);
    // Changes after the position are not yet due: neither missing nor extra.
    c.src.exec("DELETE FROM t WHERE id = 2").await;
    c.src.exec("UPDATE t SET name = 'later' WHERE id = 7").await;
    c.src.exec(&insert_rows(20..=20, 1)).await;
    c.src.settle().await;
    let v = c.verify(&[], 0);
    assert_eq!(v["not_due"], 3, "{v}");
    assert_eq!(v["compared"], 10, "{v}");

    c.dst.exec("DELETE FROM copy WHERE id IN (8, 9)").await;
    c.dst
        .exec("UPDATE copy SET name = 'wrong' WHERE id = 10")
        .await;
    let v = c.verify(&[], 1);
    assert_eq!(keys(&v, "missing"), ["8", "9"], "{v}");
    assert_eq!(keys(&v, "different"), ["10"], "{v}");
    assert!(keys(&v, "extra").is_empty(), "{v}");
    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 3, "{v}");

    // A run then applies the pending changes; still equal.
    assert_code(&c.dir.hw(&["run"]), 0);
    c.verify(&[], 0);
    let mut want = expected_rows(&[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 20]);
    want[5].1 = Some("later".into());
    assert_eq!(c.dst.rows("copy").await, want);
}

async fn full_copy_without_key_is_compared_as_rows(b: Backend) {
    let c = Case::new(b, "full", "    write: append\n").await;
    c.verify(&[], 0);
    c.dst.exec("DELETE FROM copy WHERE id = 1").await;
    let v = c.verify(&[], 1);
    assert_eq!(v["missing_count"], 1, "{v}");
    c.dst
        .exec("INSERT INTO copy (id, name, amount, at, ver) VALUES (2, 'n2', 2.5, '2024-03-03 10:20:30.123456', 1)")
        .await;
    let v = c.verify(&[], 1);
    assert_eq!(v["missing_count"], 1, "{v}");
    assert_eq!(v["extra_count"], 1, "{v}");
    // Without a key: the repair replaces the table's rows with the copy.
    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 12, "{v}");
    let ids: Vec<i64> = (1..=12).collect();
    assert_eq!(c.dst.rows("copy").await, expected_rows(&ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn append_targets_and_bad_usage_are_refused() {
    let dir = Dir::new("verify_append");
    let src = Db::new(Backend::Sqlite, &dir, "src.db").await;
    src.exec(create_table(Backend::Sqlite)).await;
    dir.write(
        "highwater.yaml",
        "connections:\n  src: sqlite://src.db\n  dst: sqlite://dst.db\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: ver\n    primary_key: [id]\n    to: dst\n    into: copy\n    write: append\n",
    );
    let o = dir.hw(&["verify", "t"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("append"), "{}", stderr(&o));
    let o = dir.hw(&["verify", "nope"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("unknown stream nope"), "{}", stderr(&o));
    let o = dir.hw(&["verify", "--repair"]);
    assert_code(&o, 2);
}

// ------------------------------------------------------------ file targets

/// A SQLite source `t` (12 rows) copied by one stream into `lake`.
struct FileCase {
    dir: Dir,
    src: Db,
    env: Vec<(&'static str, &'static str)>,
}

impl FileCase {
    async fn new(
        lake: &str,
        mode: &str,
        format: &str,
        env: Vec<(&'static str, &'static str)>,
    ) -> FileCase {
        let ddl = create_table(Backend::Sqlite);
        FileCase::table(lake, mode, format, env, ddl, &insert_rows(1..=12, 1), "id").await
    }

    /// A SQLite source table `t` made by `ddl` and `rows`, keyed by `key`.
    async fn table(
        lake: &str,
        mode: &str,
        format: &str,
        env: Vec<(&'static str, &'static str)>,
        ddl: &str,
        rows: &str,
        key: &str,
    ) -> FileCase {
        let dir = Dir::new("verify_files");
        let src = Db::new(Backend::Sqlite, &dir, "src.db").await;
        src.exec(ddl).await;
        src.exec(rows).await;
        let cursor = if mode == "watermark" {
            "    cursor: ver\n"
        } else {
            ""
        };
        dir.write(
            "highwater.yaml",
            &format!(
                "connections:\n  src: sqlite://src.db\n  lake: {lake}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: {mode}\n{cursor}    primary_key: [{key}]\n    to: lake\n    format: {format}\n    path: \"t/{{run_id}}.{format}\"\n"
            ),
        );
        let c = FileCase { dir, src, env };
        c.run();
        c
    }

    fn run(&self) {
        let o = self.dir.hw_env(&["run"], &self.env);
        assert_code(&o, 0);
    }

    fn verify(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["verify", "--json"];
        all.extend_from_slice(args);
        let o = self.dir.hw_env(&all, &self.env);
        assert_code(&o, code);
        let v: Value =
            serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
        v[0].clone()
    }
}

/// Oldest first.
fn by_age(mut files: Vec<PathBuf>) -> Vec<PathBuf> {
    files.sort_by_key(|f| std::fs::metadata(f).unwrap().modified().unwrap());
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_csv_watermark_files_are_replayed_and_repaired() {
    let c = FileCase::new("file://./lake", "watermark", "csv", vec![]).await;
    c.src.exec(&insert_rows(13..=14, 2)).await;
    c.run();
    let files = by_age(c.dir.files("lake/t", ".csv"));
    assert_eq!(files.len(), 2, "{files:?}");
    let v = c.verify(&[], 0);
    assert_eq!(v["compared"], 14, "{v}");
    // Not yet due.
    c.src.exec(&insert_rows(15..=15, 9)).await;
    // An updated row whose new version is not yet copied: the file's older
    // version is not reported.
    c.src
        .exec("UPDATE t SET name = 'later', ver = 9 WHERE id = 2")
        .await;
    let v = c.verify(&[], 0);
    assert_eq!(v["not_due"], 2, "{v}");

    // Edit the first file: drop the row of 3, change 5, and '' → NULL on 4;
    // add 99 to the second.
    let first = std::fs::read_to_string(&files[0]).unwrap();
    let edited: Vec<String> = first
        .lines()
        .filter(|l| !l.starts_with("3,"))
        .map(|l| {
            if l.starts_with("5,") {
                l.replacen("n5", "changed", 1)
            } else if l.starts_with("4,") {
                l.replacen("\"\"", "", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&files[0], edited.join("\n") + "\n").unwrap();
    let mut second = std::fs::read_to_string(&files[1]).unwrap();
    second.push_str("99,x,1.5,2024-01-01T00:00:00,2\n");
    std::fs::write(&files[1], second).unwrap();
    let v = c.verify(&[], 1);
    assert_eq!(keys(&v, "missing"), ["3"], "{v}");
    assert_eq!(keys(&v, "different"), ["4", "5"], "{v}");
    assert_eq!(keys(&v, "extra"), ["99"], "{v}");

    // Repair writes the missing and different rows as one more output; a
    // watermark file target has no deletes, so 99 stays and says so.
    let v = c.verify(&["--repair", "t"], 1);
    assert_eq!(v["repaired"]["upserted"], 3, "{v}");
    assert_eq!(keys(&v, "extra"), ["99"], "{v}");
    assert!(v["missing"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["different"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["notes"].to_string().contains("no deletes"), "{v}");
    let all = c.dir.files("lake/t", ".csv");
    assert_eq!(all.len(), 3, "{all:?}");

    // Drop a file: its rows are missing, named.
    std::fs::remove_file(&files[0]).unwrap();
    let v = c.verify(&[], 1);
    // 2 is not due; 3, 4 and 5 are in the repair's output.
    assert_eq!(
        keys(&v, "missing"),
        ["1", "6", "7", "8", "9", "10", "11", "12"],
        "{v}"
    );
    assert!(v["notes"].to_string().contains("is gone"), "{v}");
}

async fn change_tracking_files(kind: &str, format: &str) {
    let name = unique(kind).replace('_', "-");
    objstore(&["create", kind, &name], "");
    let c = FileCase::new(
        &format!("{kind}://{name}/landing"),
        "change_tracking",
        format,
        object_store_env(kind),
    )
    .await;
    c.verify(&[], 0);
    // A change, a delete: applied by the next run's output (U, D).
    c.src.exec("UPDATE t SET name = 'upd' WHERE id = 2").await;
    c.src.exec("DELETE FROM t WHERE id = 3").await;
    c.run();
    let v = c.verify(&[], 0);
    assert_eq!(v["compared"], 11, "{v}");
    let objects: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&objstore(
        &["dump", kind, &name],
        "",
    ))
    .unwrap()
    .keys()
    .filter(|k| !k.contains("_highwater/") && k.ends_with(format))
    .cloned()
    .collect();
    assert_eq!(objects.len(), 2, "{objects:?}");
    // Drop the first output (the full load): every key it alone holds is
    // missing; the second's U row of 2 stays.
    let dump: serde_json::Map<String, Value> =
        serde_json::from_str(&objstore(&["dump", kind, &name], "")).unwrap();
    let first = objects
        .iter()
        .max_by_key(|o| dump[*o].as_str().unwrap().len())
        .unwrap()
        .clone();
    objstore(&["delete", kind, &name, &first], "");
    let v = c.verify(&[], 1);
    assert_eq!(
        keys(&v, "missing"),
        ["1", "4", "5", "6", "7", "8", "9", "10", "11", "12"],
        "{v}"
    );
    assert!(keys(&v, "extra").is_empty(), "{v}");
    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 10, "{v}");
    assert_eq!(v["compared"], 11, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn azure_jsonl_change_tracking_files_are_replayed_and_repaired() {
    change_tracking_files("az", "jsonl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_parquet_change_tracking_files_are_replayed_and_repaired() {
    change_tracking_files("s3", "parquet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_change_tracking_csv_extra_rows_are_deleted_by_repair() {
    let c = FileCase::new("file://./lake", "change_tracking", "csv", vec![]).await;
    let files = c.dir.files("lake/t", ".csv");
    let mut text = std::fs::read_to_string(&files[0]).unwrap();
    text.push_str("77,x,1.5,2024-01-01T00:00:00,1,0,I\n");
    std::fs::write(&files[0], text).unwrap();
    let v = c.verify(&[], 1);
    assert_eq!(keys(&v, "extra"), ["77"], "{v}");
    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["deleted"], 1, "{v}");
    // The repair output holds the D row of 77.
    let files = c.dir.files("lake/t", ".csv");
    assert_eq!(files.len(), 2);
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(
        all.lines()
            .any(|l| l.starts_with("77,") && l.ends_with(",D")),
        "{all}"
    );
}

/// A change-tracking CSV target keyed by two text columns: edit a file
/// (a row removed, a row changed, a row added), drop a file; verify names
/// exactly those keys and `--repair` (deleting the added key by its two
/// columns) makes it pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn change_tracking_csv_with_text_keys_is_verified_and_repaired() {
    let c = FileCase::table(
        "file://./lake",
        "change_tracking",
        "csv",
        vec![],
        "CREATE TABLE t (region TEXT, code TEXT, n INTEGER, label TEXT, ver INTEGER, PRIMARY KEY (region, code))",
        &text_key_rows(),
        "region, code",
    )
    .await;
    c.src
        .exec("UPDATE t SET label = 'changed' WHERE region = 'east' AND code = 'c-1'")
        .await;
    c.run();
    let files = by_age(c.dir.files("lake/t", ".csv"));
    assert_eq!(files.len(), 2, "{files:?}");
    c.verify(&[], 0);

    let first = std::fs::read_to_string(&files[0]).unwrap();
    let mut edited: Vec<String> = first
        .lines()
        .filter(|l| !l.starts_with("north,a,"))
        .map(|l| l.replacen("Süd/B", "corrupt", 1))
        .collect();
    let extra = first
        .lines()
        .find(|l| l.starts_with("north,c-1,"))
        .unwrap()
        .replacen("north,c-1,", "west,Z,", 1);
    edited.push(extra);
    std::fs::write(&files[0], edited.join("\n") + "\n").unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    let v = c.verify(&[], 1);
    assert_eq!(keys(&v, "missing"), ["(north, a)"], "{v}");
    assert_eq!(
        sorted(keys(&v, "different")),
        ["(Süd, B)", "(east, c-1)"],
        "{v}"
    );
    assert_eq!(keys(&v, "extra"), ["(west, Z)"], "{v}");
    assert!(v["notes"].to_string().contains("is gone"), "{v}");

    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 3, "{v}");
    assert_eq!(v["repaired"]["deleted"], 1, "{v}");
    c.verify(&[], 0);
    let all: String = c
        .dir
        .files("lake/t", ".csv")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(
        all.lines()
            .any(|l| l.starts_with("west,Z,") && l.ends_with(",D")),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_copy_files_compare_the_last_output() {
    let c = FileCase::new("file://./lake", "full", "parquet", vec![]).await;
    c.src.exec("DELETE FROM t WHERE id > 10").await;
    c.run();
    let v = c.verify(&[], 0);
    assert_eq!(v["compared"], 10, "{v}");
    // Drop the last output: the older one is not the copy.
    let files = by_age(c.dir.files("lake/t", ".parquet"));
    assert_eq!(files.len(), 2);
    std::fs::remove_file(&files[1]).unwrap();
    let v = c.verify(&[], 1);
    assert_eq!(v["missing_count"], 10, "{v}");
    // Repair writes the copy again, in full: a new last output.
    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 10, "{v}");
    assert_eq!(v["compared"], 10, "{v}");
    // A later run's output is the copy again.
    c.src.exec("DELETE FROM t WHERE id = 10").await;
    c.run();
    let v = c.verify(&[], 0);
    assert_eq!(v["compared"], 9, "{v}");
}

/// Many PostgreSQL types into each database target: an equal copy
/// verifies equal (values compared by type, not text).
async fn typed_copy_is_equal(target: Backend) {
    let dir = Dir::new("verify_types");
    let src = Db::new(Backend::Postgres, &dir, "src.db").await;
    let dst = Db::new(target, &dir, "dst.db").await;
    src.exec(
        "CREATE TABLE t (id int PRIMARY KEY, b bool, f4 real, f8 double precision, \
         n numeric(12,4), nu numeric, tz timestamptz, ts timestamp, d date, tm time, \
         u uuid, j jsonb, by bytea, txt text, big bigint, sm smallint);
         INSERT INTO t VALUES
          (1, true, 0.1, 0.1, 12.5000, 3.14159, '2024-03-01 10:00:00.123456+02', \
           '2024-03-01 10:00:00.5', '2024-02-29', '23:59:59.25', \
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2]}', '\\x00ff', '', \
           9007199254740993, -3),
          (2, false, -1.5, 1e300, -0.0001, 10, '1999-12-31 23:59:59+00', \
           '1970-01-01 00:00:00', '1900-01-01', '00:00:00', NULL, NULL, NULL, NULL, NULL, NULL),
          (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'x', 0, 0);",
    )
    .await;
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  dst: {}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: full\n    primary_key: [id]\n    to: dst\n    into: copy\n    write: merge\n",
            src.url(),
            dst.url(),
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    let o = dir.hw(&["verify", "--json"]);
    assert_code(&o, 0);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["compared"], 3, "{v}");
    if target == Backend::Postgres {
        // PostgreSQL → PostgreSQL, every row due: checked inside the databases.
        assert!(
            v[0]["notes"].to_string().contains("equal by checksum"),
            "{v}"
        );
    }
    // One changed value in a typed column is found.
    dst.exec("UPDATE copy SET d = '1900-01-02' WHERE id = 2")
        .await;
    let o = dir.hw(&["verify", "--json"]);
    assert_code(&o, 1);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(keys(&v[0], "different"), ["2"], "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_types_into_postgres_verify_equal() {
    typed_copy_is_equal(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_types_into_mariadb_verify_equal() {
    typed_copy_is_equal(Backend::Mariadb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_types_into_sqlite_verify_equal() {
    typed_copy_is_equal(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_change_tracking_into_postgres_uses_checksums_when_all_rows_are_due() {
    let c = Case::with_target(
        Backend::Postgres,
        Backend::Postgres,
        "change_tracking",
        "    primary_key: [id]\n    write: merge\n",
    )
    .await;
    c.equal_by_checksum();
    // A corrupted target: the checksums differ, the rows name the key.
    c.dst.exec("UPDATE copy SET amount = 0 WHERE id = 11").await;
    let v = c.verify(&[], 1);
    assert_eq!(keys(&v, "different"), ["11"], "{v}");
    // A change past the position: compared row by row, not due.
    c.src
        .exec("UPDATE t SET name = 'later' WHERE id = 11")
        .await;
    c.src.settle().await;
    let v = c.verify(&[], 0);
    assert!(!v["notes"].to_string().contains("checksum"), "{v}");
    assert_eq!(v["not_due"], 1, "{v}");
    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 0, "{v}");
    assert_code(&c.dir.hw(&["run"]), 0);
    let v = c.verify(&[], 0);
    assert!(v["notes"].to_string().contains("equal by checksum"), "{v}");
}

/// MariaDB → MariaDB, full mode: equal tables are found equal by counts
/// and MD5 sums inside both databases (no rows read); a corrupted target
/// (NULL vs '' too) is bisected to the keys that differ and repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_full_copy_into_mariadb_uses_checksums() {
    let c = Case::with_target(
        Backend::Mariadb,
        Backend::Mariadb,
        "full",
        "    primary_key: [id]\n    write: merge\n",
    )
    .await;
    c.equal_by_checksum();
    // '' → NULL alone: the sums differ.
    c.dst.exec("UPDATE copy SET name = NULL WHERE id = 4").await;
    let v = c.verify(&[], 1);
    assert_eq!(keys(&v, "different"), ["4"], "{v}");
    c.dst.exec("DELETE FROM copy WHERE id = 7").await;
    let v = c.verify(&[], 1);
    assert_eq!(keys(&v, "different"), ["4"], "{v}");
    assert_eq!(keys(&v, "missing"), ["7"], "{v}");
    let v = c.verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 2, "{v}");
    let v = c.verify(&[], 0);
    assert!(v["notes"].to_string().contains("equal by checksum"), "{v}");
    let ids: Vec<i64> = (1..=12).collect();
    assert_eq!(c.dst.rows("copy").await, expected_rows(&ids));
}

/// `serve` verifies a stream on its `verify:` schedule and exports the
/// result on /metrics.
#[test]
fn serve_verifies_on_schedule_and_exports_the_result() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::Instant;
    fn get(addr: &str, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
    let dir = Dir::new("verify_serve");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        "connections:\n  src: sqlite://src.db\n  dst: sqlite://dst.db\nstreams:\n  t:\n    from: src\n    table: t\n    mode: full\n    primary_key: [id]\n    to: dst\n    into: copy\n    write: merge\n    verify: \"*/1 * * * * *\"\n",
    );
    assert_code(&dir.hw(&["run"]), 0);
    let mut child = dir
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    let wait_for = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = get(&addr, "/metrics");
            if m.contains(text) {
                return m;
            }
            assert!(Instant::now() < deadline, "no `{text}` in:\n{m}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("highwater_stream_verify_equal{stream=\"t\"} 1");
    let dst = rusqlite::Connection::open(dir.join("dst.db")).unwrap();
    dst.execute_batch("DELETE FROM copy WHERE id = 2").unwrap();
    let m = wait_for("highwater_stream_verify_equal{stream=\"t\"} 0");
    assert!(
        m.contains("highwater_stream_verify_keys{stream=\"t\",kind=\"missing\"} 1"),
        "{m}"
    );
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Rows the source holds back above its bound (`lag:`) are not due: a row
/// copied before and updated into the held-back range is neither extra nor
/// different.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_back_rows_are_not_due() {
    let dir = Dir::new("verify_lag");
    let src = Db::new(Backend::Sqlite, &dir, "src.db").await;
    src.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, ver INTEGER)")
        .await;
    let values: Vec<String> = (1..=12)
        .map(|i| format!("({i}, 'n{i}', {})", i * 10))
        .collect();
    src.exec(&format!("INSERT INTO t VALUES {}", values.join(", ")))
        .await;
    dir.write(
        "highwater.yaml",
        "connections:\n  src: sqlite://src.db\n  dst: sqlite://dst.db\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: ver\n    lag: 15\n    primary_key: [id]\n    to: dst\n    into: copy\n    write: merge\n",
    );
    assert_code(&dir.hw(&["run"]), 0);
    let o = dir.hw(&["verify", "--json"]);
    assert_code(&o, 0);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["compared"], 10, "{v}");
    // 5 moves up into the held-back range.
    src.exec("UPDATE t SET name = 'later', ver = 200 WHERE id = 5")
        .await;
    let o = dir.hw(&["verify", "--json"]);
    assert_code(&o, 0);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["compared"], 9, "{v}");
    assert_eq!(v[0]["not_due"], 3, "{v}");
}

/// PostgreSQL → PostgreSQL and MariaDB → MariaDB with an integer key,
/// checksums differ: the key range is bisected by checksums inside both
/// databases, only the ranges that differ are read row by row, and exactly
/// the corrupted keys are found — at both ends of the key range and beyond
/// it — then repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_ranges_are_bisected_to_the_keys_that_differ() {
    ranges_are_bisected_to_the_keys_that_differ(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_ranges_are_bisected_to_the_keys_that_differ() {
    ranges_are_bisected_to_the_keys_that_differ(Backend::Mariadb).await;
}

/// Copy `t` from `src` into `dst`'s `copy` (full, merge on `key`), check
/// that verify finds them equal by checksum, and return a verify of the
/// stream (`args`, expected exit code) as JSON.
fn copied_in_full<'a>(
    dir: &'a Dir,
    src: &Db,
    dst: &Db,
    key: &str,
) -> impl Fn(&[&str], i32) -> Value + 'a {
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  dst: {}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: full\n    primary_key: [{key}]\n    to: dst\n    into: copy\n    write: merge\n",
            src.url(),
            dst.url()
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    let verify = move |args: &[&str], code: i32| -> Value {
        let mut all = vec!["verify", "--json"];
        all.extend_from_slice(args);
        let o = dir.hw(&all);
        assert_code(&o, code);
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()[0].clone()
    };
    let v = verify(&[], 0);
    assert!(v["notes"].to_string().contains("equal by checksum"), "{v}");
    verify
}

/// A composite text key: the checksums of buckets of the key's hash
/// find the parts that differ; exactly the corrupted keys are listed, then
/// repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_text_keys_are_bucketed_by_hash() {
    text_keys_are_bucketed_by_hash(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_text_keys_are_bucketed_by_hash() {
    text_keys_are_bucketed_by_hash(Backend::Mariadb).await;
}

async fn text_keys_are_bucketed_by_hash(b: Backend) {
    let dir = Dir::new("verify_hashed");
    let src = Db::new(b, &dir, "src.db").await;
    let dst = Db::new(b, &dir, "dst.db").await;
    src.exec(
        "CREATE TABLE t (region varchar(20) NOT NULL, code varchar(20) NOT NULL, label text,
                         PRIMARY KEY (region, code))",
    )
    .await;
    // 4 regions × 2,000 codes, in a few statements.
    for region in ["north", "south", "east", "west"] {
        let values: Vec<String> = (0..2000)
            .map(|i| {
                let label = if i % 500 == 0 {
                    "NULL".to_string()
                } else {
                    format!("'label {i}'")
                };
                format!("('{region}', 'c{i:04}', {label})")
            })
            .collect();
        src.exec(&format!(
            "INSERT INTO t (region, code, label) VALUES {}",
            values.join(", ")
        ))
        .await;
    }
    let verify = copied_in_full(&dir, &src, &dst, "region, code");
    for sql in [
        "DELETE FROM copy WHERE (region = 'north' AND code = 'c0001') OR (region = 'west' AND code = 'c1999')",
        "UPDATE copy SET label = 'wrong' WHERE region = 'east' AND code = 'c0500'",
        "UPDATE copy SET label = '' WHERE region = 'south' AND code = 'c0007'",
        "INSERT INTO copy (region, code, label) VALUES ('up', 'c0001', 'x')",
    ] {
        dst.exec(sql).await;
    }
    let v = verify(&[], 1);
    assert_eq!(
        keys(&v, "missing"),
        ["(north, c0001)", "(west, c1999)"],
        "{v}"
    );
    assert_eq!(
        keys(&v, "different"),
        ["(east, c0500)", "(south, c0007)"],
        "{v}"
    );
    assert_eq!(keys(&v, "extra"), ["(up, c0001)"], "{v}");
    assert_eq!(v["compared"], 8000, "{v}");
    assert!(
        v["notes"].to_string().contains("key-hash buckets"),
        "bucketed, not read in full: {v}"
    );
    let v = verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 4, "{v}");
    assert_eq!(v["repaired"]["deleted"], 1, "{v}");
    let v = verify(&[], 0);
    assert!(v["notes"].to_string().contains("equal by checksum"), "{v}");
    let rows = dst.labels("copy").await;
    assert_eq!(rows.len(), 8000);
    assert_eq!(rows, src.labels("t").await);
}

async fn ranges_are_bisected_to_the_keys_that_differ(b: Backend) {
    let dir = Dir::new("verify_bisect");
    let src = Db::new(b, &dir, "src.db").await;
    let dst = Db::new(b, &dir, "dst.db").await;
    src.exec(match b {
        Backend::Postgres => {
            "CREATE TABLE t (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz);
             INSERT INTO t SELECT g, CASE WHEN g % 1000 = 0 THEN '' ELSE 'n' || g END, g * 1.25,
                                  '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second'
             FROM generate_series(1, 30000) g;"
        }
        _ => {
            "CREATE TABLE t (id bigint PRIMARY KEY, name text, amount decimal(12,2), at timestamp(6) NULL);
             INSERT INTO t
             SELECT g, CASE WHEN g % 1000 = 0 THEN '' ELSE CONCAT('n', g) END, g * 1.25,
                    TIMESTAMP '2024-01-01 00:00:00' + INTERVAL g SECOND
             FROM (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 1 AS g
                   FROM (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
                         UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) a,
                        (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
                         UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) b,
                        (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
                         UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) c,
                        (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
                         UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) e,
                        (SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2) f) n
             WHERE g <= 30000;"
        }
    })
    .await;
    let verify = copied_in_full(&dir, &src, &dst, "id");

    for sql in [
        "DELETE FROM copy WHERE id IN (1, 15000, 30000)",
        "UPDATE copy SET amount = amount + 0.01 WHERE id IN (2, 777, 29999)",
        "UPDATE copy SET name = NULL WHERE id = 5000",
        "INSERT INTO copy (id, name, amount, at) VALUES (-3, 'x', 1, NULL), (0, 'y', 1, NULL), \
         (30001, 'z', 1, NULL), (9223372036854775807, 'max', 1, NULL)",
    ] {
        dst.exec(sql).await;
    }
    let v = verify(&[], 1);
    assert_eq!(keys(&v, "missing"), ["1", "15000", "30000"], "{v}");
    assert_eq!(keys(&v, "different"), ["2", "777", "5000", "29999"], "{v}");
    assert_eq!(
        keys(&v, "extra"),
        ["-3", "0", "30001", "9223372036854775807"],
        "{v}"
    );
    assert_eq!(v["compared"], 30000, "{v}");
    assert!(
        v["notes"].to_string().contains("checksums of key ranges"),
        "bisected, not read in full: {v}"
    );

    let v = verify(&["--repair", "t"], 0);
    assert_eq!(v["repaired"]["upserted"], 7, "{v}");
    assert_eq!(v["repaired"]["deleted"], 4, "{v}");
    let v = verify(&[], 0);
    assert!(v["notes"].to_string().contains("equal by checksum"), "{v}");
}
