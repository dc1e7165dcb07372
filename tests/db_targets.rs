//! Database targets (`to:` a database, `into:`, `write: append | merge`):
//! the same scenarios for SQLite → PostgreSQL, PostgreSQL → MariaDB and
//! PostgreSQL → SQLite (`db_targets::<pair>::*`). Every test compares the
//! target table with the source table row by row: values, counts, and no
//! duplicates, including after crashes at each step of the commit protocol
//! and `kill -9` at random instants.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::util::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

/// A database of one test: the source or the target.
enum Db {
    Sqlite(PathBuf, &'static str),
    Pg(PgDb),
    My(MyDb),
}

type Row = (i64, Option<String>, Option<i64>);

impl Db {
    async fn new(b: Backend, dir: &Dir, file: &'static str) -> Db {
        match b {
            Backend::Sqlite => Db::Sqlite(dir.join(file), file),
            Backend::Postgres => Db::Pg(PgDb::new("dbt").await),
            Backend::Mariadb => Db::My(MyDb::new("dbt").await),
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

    /// `(id, name, qty)` of `table` ordered by id; `table` is quoted SQL.
    async fn rows(&self, table: &str) -> Vec<Row> {
        match self {
            Db::Sqlite(p, _) => {
                let c = rusqlite::Connection::open(p).unwrap();
                let mut st = c
                    .prepare(&format!("SELECT id, name, qty FROM {table} ORDER BY id"))
                    .unwrap();
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Db::Pg(p) => p
                .client
                .query(
                    &format!("SELECT id::bigint, name::text, qty::bigint FROM {table} ORDER BY id"),
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
                        "SELECT CAST(id AS SIGNED), name, CAST(qty AS SIGNED) FROM {table} ORDER BY id"
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("{table}: {e}"));
                let _ = c.disconnect().await;
                rows
            }
        }
    }

    /// Names of the tables in the database (to see that nothing was
    /// dropped and no staging table is left).
    async fn tables(&self) -> Vec<String> {
        let mut out: Vec<String> = match self {
            Db::Sqlite(p, _) => {
                let c = rusqlite::Connection::open(p).unwrap();
                let mut st = c
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .unwrap();
                st.query_map([], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Db::Pg(p) => p
                .client
                .query(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Db::My(m) => {
                let mut c = m.connect().await;
                let t = c.query("SHOW TABLES").await.unwrap();
                let _ = c.disconnect().await;
                t
            }
        };
        out.sort();
        out
    }

    /// Every row of `sql` as text (NULL as `None`); the query casts each
    /// column to text itself.
    async fn text_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Db::Sqlite(p, _) => {
                let c = rusqlite::Connection::open(p).unwrap();
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = st.column_count();
                st.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Db::Pg(p) => p
                .client
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                .collect(),
            Db::My(m) => {
                let mut c = m.connect().await;
                let rows: Vec<mysql_async::Row> =
                    c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.disconnect().await;
                rows.into_iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.get::<Option<String>, _>(i).unwrap())
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// Insert rows `a..=b` (`name` = `n<id>`, `qty` = id, `ver` = id).
    async fn insert_range(&self, a: i64, b: i64) {
        let sql = match self {
            Db::Pg(_) => {
                format!("INSERT INTO src SELECT g, 'n' || g, g, g FROM generate_series({a}, {b}) g")
            }
            Db::My(_) => format!(
                "SET SESSION max_recursive_iterations = 10000000; INSERT INTO src WITH RECURSIVE g(x) AS (SELECT {a} UNION ALL SELECT x + 1 FROM g WHERE x < {b}) SELECT x, CONCAT('n', x), x, x FROM g"
            ),
            Db::Sqlite(..) => format!(
                "WITH RECURSIVE g(x) AS (SELECT {a} UNION ALL SELECT x + 1 FROM g WHERE x < {b}) INSERT INTO src SELECT x, 'n' || x, x, x FROM g"
            ),
        };
        self.exec(&sql).await;
    }

    /// PostgreSQL: wait until every transaction that began before now has
    /// finished, so the next run's window covers every change made so far.
    async fn settle(&self) {
        let Db::Pg(p) = self else { return };
        p.wait_for_older_transactions().await;
    }
}

struct Case {
    dir: Dir,
    src: Db,
    dst: Db,
    /// The target table as `into:` names it, and as quoted SQL to read it.
    into: String,
    read: String,
}

impl Case {
    async fn new(src: Backend, dst: Backend) -> Case {
        let dir = Dir::new("dbt");
        let src = Db::new(src, &dir, "source.db").await;
        let dst = Db::new(dst, &dir, "target.db").await;
        src.exec(
            "CREATE TABLE src (id int NOT NULL PRIMARY KEY, name varchar(255), qty int, ver int)",
        )
        .await;
        let (into, read) = match dst {
            Db::Pg(_) => ("public.people", "public.people"),
            _ => ("people", "people"),
        };
        Case {
            dir,
            src,
            dst,
            into: into.into(),
            read: read.into(),
        }
    }

    fn config(&self, mode: &str, write: &str, batch_size: usize) {
        let extra = match mode {
            "watermark" => "    cursor: ver\n",
            _ => "",
        };
        self.dir.write(
            "highwater.yaml",
            &format!(
                "connections:\n  src: {}\n  dst: {}\nstreams:\n  people:\n    from: src\n    table: src\n    mode: {mode}\n{extra}    primary_key: [id]\n    batch_size: {batch_size}\n    to: dst\n    into: {:?}\n    write: {write}\n",
                self.src.url(),
                self.dst.url(),
                self.into,
            ),
        );
    }

    fn run(&self) {
        let o = self.dir.hw(&["run"]);
        assert_code(&o, 0);
    }

    async fn source_rows(&self) -> Vec<Row> {
        self.src.rows("src").await
    }

    async fn target_rows(&self) -> Vec<Row> {
        self.dst.rows(&self.read).await
    }

    async fn assert_equal(&self, what: &str) {
        let (s, t) = (self.source_rows().await, self.target_rows().await);
        assert_eq!(s.len(), t.len(), "{what}: row counts differ");
        assert_eq!(s, t, "{what}: the target differs from the source");
    }

    /// No staging table left, and the commit table is there.
    async fn assert_clean(&self) {
        let tables = self.dst.tables().await;
        assert!(
            tables.iter().all(|t| !t.starts_with("_highwater_stage")),
            "staging left: {tables:?}"
        );
        assert!(
            tables.iter().any(|t| t == "_highwater_commits"),
            "{tables:?}"
        );
    }
}

pub async fn watermark_append(src: Backend, dst: Backend) {
    let c = Case::new(src, dst).await;
    c.config("watermark", "append", 3);
    c.src.insert_range(1, 10).await;
    c.run();
    c.assert_equal("full load").await;
    c.src.insert_range(11, 17).await;
    c.src.settle().await;
    c.run();
    c.assert_equal("delta").await;
    let o = c.dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("no changes"), "{}", stdout(&o));
    c.assert_equal("no change").await;
    c.assert_clean().await;
}

pub async fn watermark_merge(src: Backend, dst: Backend) {
    let c = Case::new(src, dst).await;
    c.config("watermark", "merge", 3);
    c.src.insert_range(1, 10).await;
    c.run();
    c.assert_equal("full load").await;
    c.src.insert_range(11, 12).await;
    c.src
        .exec(
            "UPDATE src SET name = 'it''s \"new\"\t\\n', qty = NULL, ver = 100 WHERE id IN (2, 11)",
        )
        .await;
    c.src
        .exec("UPDATE src SET qty = 7, ver = 101 WHERE id = 5")
        .await;
    c.src.settle().await;
    c.run();
    c.assert_equal("after inserts and updates").await;
    let t = c.target_rows().await;
    // (MariaDB reads `\n` in a literal as a newline: compare the start.)
    let name = t[1].1.as_deref().unwrap_or_default();
    assert!(name.starts_with("it's \"new\"\t"), "{name:?}");
    assert_eq!((t[1].0, t[1].2), (2, None));
    assert_eq!(t.len(), 12);
    c.assert_clean().await;
}

pub async fn change_tracking_merge(src: Backend, dst: Backend) {
    let c = Case::new(src, dst).await;
    c.config("change_tracking", "merge", 4);
    c.src.insert_range(1, 10).await;
    c.run();
    c.assert_equal("full load").await;
    c.src.insert_range(11, 13).await;
    c.src
        .exec("UPDATE src SET name = 'changed', qty = 0 WHERE id IN (1, 12)")
        .await;
    c.src.exec("DELETE FROM src WHERE id IN (3, 4, 13)").await;
    c.src.settle().await;
    c.run();
    c.assert_equal("after insert, update, delete").await;
    let t = c.target_rows().await;
    assert_eq!(t.len(), 10);
    assert!(t.iter().all(|r| ![3, 4, 13].contains(&r.0)));
    // Delete and re-insert a key between two runs: the net change is one row.
    c.src.exec("DELETE FROM src WHERE id = 5").await;
    c.src
        .exec("INSERT INTO src VALUES (5, 'again', 55, 55)")
        .await;
    c.src.exec("DELETE FROM src WHERE id = 6").await;
    c.src.settle().await;
    c.run();
    c.assert_equal("re-inserted key").await;
    c.assert_clean().await;
}

pub async fn full_reruns(src: Backend, dst: Backend) {
    let c = Case::new(src, dst).await;
    // `write: append` too: a full copy replaces the rows, it never duplicates.
    c.config("full", "append", 4);
    c.src.insert_range(1, 9).await;
    c.run();
    c.assert_equal("first").await;
    c.run();
    c.assert_equal("second, unchanged").await;
    c.src.exec("DELETE FROM src WHERE id > 3").await;
    c.src.exec("UPDATE src SET name = 'x' WHERE id = 1").await;
    c.run();
    c.assert_equal("after delete and update").await;
    c.src.exec("DELETE FROM src").await;
    c.run();
    assert!(
        c.target_rows().await.is_empty(),
        "an empty source empties the target"
    );
    c.assert_clean().await;
}

pub async fn failpoints(src: Backend, dst: Backend) {
    let mut points = vec![
        "engine.mid_write",
        "engine.before_sink_commit",
        "engine.after_publish",
    ];
    if dst == Backend::Mariadb {
        // Committed, staging not yet dropped (MariaDB drops it after COMMIT).
        points.push("mysql.after_commit_before_drop");
    }
    for write in ["append", "merge"] {
        for point in points.iter().copied() {
            let c = Case::new(src, dst).await;
            c.config("watermark", write, 5);
            c.src.insert_range(1, 40).await;
            // Crash during the full load, then finish it.
            let o = c.dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", point)]);
            assert_eq!(
                o.status.code(),
                None,
                "{point}: should abort\n{}",
                stderr(&o)
            );
            c.run();
            c.assert_equal(&format!("{write} {point}: full load")).await;
            // Crash during a delta, then finish it.
            c.src.insert_range(41, 70).await;
            c.src.settle().await;
            let o = c.dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", point)]);
            assert_eq!(
                o.status.code(),
                None,
                "{point}: should abort\n{}",
                stderr(&o)
            );
            c.run();
            c.assert_equal(&format!("{write} {point}: delta")).await;
            assert_eq!(c.target_rows().await.len(), 70);
            c.assert_clean().await;
        }
    }
}

pub async fn kill_9(src: Backend, dst: Backend) {
    let c = Case::new(src, dst).await;
    c.config("watermark", "append", 500);
    c.src.insert_range(1, 20000).await;
    let mut next = 20001;
    for (i, delay_ms) in [10u64, 60, 120, 200, 300, 450].into_iter().enumerate() {
        let mut child = c
            .dir
            .command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if i % 2 == 0 {
            c.src.insert_range(next, next + 2999).await;
            next += 3000;
        }
    }
    c.src.settle().await;
    c.run();
    c.assert_equal("after kill -9 and a re-run").await;
    assert_eq!(c.target_rows().await.len() as i64, next - 1);
}

pub async fn hostile_into(src: Backend, dst: Backend) {
    let mut c = Case::new(src, dst).await;
    let (into, read) = match dst {
        Backend::Mariadb => (
            "pe`ople; DROP TABLE src; --".to_string(),
            "`pe``ople; DROP TABLE src; --`".to_string(),
        ),
        Backend::Postgres => (
            "public.pe\"ople; DROP TABLE src; --".to_string(),
            "public.\"pe\"\"ople; DROP TABLE src; --\"".to_string(),
        ),
        Backend::Sqlite => (
            "pe\"ople'); DROP TABLE src; --".to_string(),
            "\"pe\"\"ople'); DROP TABLE src; --\"".to_string(),
        ),
    };
    c.into = into;
    c.read = read;
    // The target database has its own `src` table that must survive.
    c.dst.exec("CREATE TABLE src (id int)").await;
    c.config("watermark", "merge", 3);
    c.src.insert_range(1, 5).await;
    c.run();
    c.assert_equal("hostile name").await;
    let tables = c.dst.tables().await;
    assert!(tables.iter().any(|t| t == "src"), "{tables:?}");
    assert!(
        tables.iter().any(|t| t.contains("DROP TABLE src")),
        "the table keeps its odd name: {tables:?}"
    );
}

/// Column types survive the trip: PostgreSQL source → each target.
pub async fn types_round_trip(dst: Backend) {
    let dir = Dir::new("dbt_types");
    let src = Db::new(Backend::Postgres, &dir, "source.db").await;
    let dst_db = Db::new(dst, &dir, "target.db").await;
    src.exec(
        "CREATE TABLE src (id int PRIMARY KEY, ts timestamp, tsz timestamptz, num numeric(12,3), flag boolean, bin bytea, d date, f double precision, note text);
         INSERT INTO src VALUES
           (1, '2017-09-01 00:56:00.123456', '2017-09-01 02:56:00.123456+02', 12345.678, true, '\\x00ff10', '2017-09-01', 0.5, E'tab\there \"q\" back\\\\slash\nline, ünï'),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    )
    .await;
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  dst: {}\nstreams:\n  t:\n    from: src\n    table: src\n    mode: full\n    primary_key: [id]\n    to: dst\n    into: typed\n    write: merge\n",
            src.url(),
            dst_db.url()
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    let sql = match dst {
        Backend::Postgres => {
            "SELECT id::text, to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US'), to_char(tsz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), num::text, flag::int::text, encode(bin, 'hex'), d::text, f::text, note FROM typed ORDER BY id"
        }
        Backend::Mariadb => {
            "SELECT CAST(id AS CHAR), DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(tsz, '%Y-%m-%d %H:%i:%s.%f'), CAST(num AS CHAR), CAST(flag AS CHAR), LOWER(HEX(bin)), CAST(d AS CHAR), CAST(f AS CHAR), note FROM typed ORDER BY id"
        }
        Backend::Sqlite => {
            "SELECT CAST(id AS TEXT), ts, substr(tsz, 1, 26), num, CAST(flag AS TEXT), nullif(lower(hex(bin)), ''), d, CAST(f AS TEXT), note FROM typed ORDER BY id"
        }
    };
    let rows = dst_db.text_rows(sql).await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![
                s("1"),
                s("2017-09-01 00:56:00.123456"),
                s("2017-09-01 00:56:00.123456"),
                s("12345.678"),
                s("1"),
                s("00ff10"),
                s("2017-09-01"),
                s("0.5"),
                s("tab\there \"q\" back\\slash\nline, ünï"),
            ],
            vec![s("2"), None, None, None, None, None, None, None, None],
        ]
    );
}

/// An append target of a change-tracking stream is the change log: the
/// `SYS_` columns are kept and deletes arrive as `D` rows.
pub async fn change_tracking_append(src: Backend, dst: Backend) {
    let c = Case::new(src, dst).await;
    c.config("change_tracking", "append", 4);
    c.src.insert_range(1, 5).await;
    c.run();
    c.src.insert_range(6, 6).await;
    c.src.exec("UPDATE src SET name = 'u' WHERE id = 2").await;
    c.src.exec("DELETE FROM src WHERE id = 3").await;
    c.src.settle().await;
    c.run();
    let (q, cast) = match c.dst {
        Db::My(_) => ('`', "CHAR"),
        Db::Pg(_) => ('"', "text"),
        Db::Sqlite(..) => ('"', "TEXT"),
    };
    let rows = c
        .dst
        .text_rows(&format!(
            "SELECT CAST(id AS {cast}), {q}SYS_CHANGE_OPERATION{q}, name FROM {} ORDER BY {q}SYS_CHANGE_VERSION{q}, id",
            c.read
        ))
        .await;
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(got.len(), 8, "5 baseline rows and 3 changes: {rows:?}");
    for id in 1..=5 {
        assert!(got[..5].contains(&(id.to_string(), "I".into())), "{got:?}");
    }
    let mut changes: Vec<(String, String)> = got[5..].to_vec();
    changes.sort();
    assert_eq!(
        changes,
        [
            ("2".into(), "U".into()),
            ("3".into(), "D".into()),
            ("6".into(), "I".into())
        ]
    );
    let deleted = rows.iter().find(|r| r[1].as_deref() == Some("D")).unwrap();
    assert_eq!(deleted[2], None, "a D row carries its key and NULLs");
}

/// Two rows of one copy share a key: the last one wins, deterministically.
pub async fn repeated_key_last_wins(src: Backend, dst: Backend) {
    let c = Case::new(src, dst).await;
    c.src.insert_range(1, 4).await;
    c.dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  dst: {}\nstreams:\n  people:\n    from: src\n    query: \"SELECT id, name, qty, ver FROM (SELECT id, name, qty, ver, 0 AS o FROM src UNION ALL SELECT id, 'last', 99, ver, 1 FROM src WHERE id = 2) x ORDER BY o, id LIMIT 1000000\"\n    mode: full\n    primary_key: [id]\n    batch_size: 2\n    to: dst\n    into: {:?}\n    write: merge\n",
            c.src.url(),
            c.dst.url(),
            c.into
        ),
    );
    c.run();
    let t = c.target_rows().await;
    assert_eq!(t.len(), 4, "{t:?}");
    assert_eq!(t[1], (2, Some("last".into()), Some(99)));
    assert_eq!(t[0], (1, Some("n1".into()), Some(1)));
}

/// Two streams write into one database at once (the commit table is shared).
pub async fn two_streams_one_database(src: Backend, dst: Backend) {
    let c = Case::new(src, dst).await;
    c.src.insert_range(1, 30).await;
    let second = match dst {
        Backend::Postgres => "public.people2",
        _ => "people2",
    };
    let mut yaml = String::from("concurrency: 2\n");
    yaml.push_str(&format!(
        "connections:\n  src: {}\n  dst: {}\nstreams:\n",
        c.src.url(),
        c.dst.url()
    ));
    for (name, into) in [("a", c.into.as_str()), ("b", second)] {
        yaml.push_str(&format!(
            "  {name}:\n    from: src\n    table: src\n    mode: watermark\n    cursor: ver\n    primary_key: [id]\n    batch_size: 7\n    to: dst\n    into: {into}\n    write: merge\n"
        ));
    }
    c.dir.write("highwater.yaml", &yaml);
    c.run();
    c.assert_equal("stream a").await;
    assert_eq!(c.dst.rows(second).await, c.source_rows().await, "stream b");
    let o = c.dir.hw(&["check"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("writable"), "{}", stdout(&o));
}

macro_rules! pair {
    ($name:ident, $src:expr, $dst:expr) => {
        mod $name {
            use super::Backend::*;

            #[tokio::test]
            async fn watermark_append() {
                super::watermark_append($src, $dst).await
            }
            #[tokio::test]
            async fn watermark_merge() {
                super::watermark_merge($src, $dst).await
            }
            #[tokio::test]
            async fn change_tracking_merge() {
                super::change_tracking_merge($src, $dst).await
            }
            #[tokio::test]
            async fn full_reruns() {
                super::full_reruns($src, $dst).await
            }
            #[tokio::test]
            async fn failpoints() {
                super::failpoints($src, $dst).await
            }
            #[tokio::test]
            async fn kill_9() {
                super::kill_9($src, $dst).await
            }
            #[tokio::test]
            async fn hostile_into() {
                super::hostile_into($src, $dst).await
            }
            #[tokio::test]
            async fn change_tracking_append() {
                super::change_tracking_append($src, $dst).await
            }
            #[tokio::test]
            async fn repeated_key_last_wins() {
                super::repeated_key_last_wins($src, $dst).await
            }
            #[tokio::test]
            async fn two_streams_one_database() {
                super::two_streams_one_database($src, $dst).await
            }
        }
    };
}

pair!(sqlite_to_postgres, Sqlite, Postgres);
pair!(postgres_to_mariadb, Postgres, Mariadb);
pair!(postgres_to_sqlite, Postgres, Sqlite);
pair!(mariadb_to_postgres, Mariadb, Postgres);
pair!(postgres_to_postgres, Postgres, Postgres);

mod types {
    use super::Backend::*;

    #[tokio::test]
    async fn postgres_to_postgres() {
        super::types_round_trip(Postgres).await
    }
    #[tokio::test]
    async fn postgres_to_mariadb() {
        super::types_round_trip(Mariadb).await
    }
    #[tokio::test]
    async fn postgres_to_sqlite() {
        super::types_round_trip(Sqlite).await
    }
}

/// An existing PostgreSQL table keeps its column types: SQLite's text
/// timestamps land in a `timestamptz` column, and a column the source does
/// not have keeps its default.
#[tokio::test]
async fn existing_postgres_table_keeps_its_types() {
    let c = Case::new(Backend::Sqlite, Backend::Postgres).await;
    c.src.exec("ALTER TABLE src ADD COLUMN at text; ").await;
    c.src
        .exec("INSERT INTO src VALUES (1, 'a', 10, 1, '2017-09-01 00:56:00.5+02:00'), (2, 'b', NULL, 2, NULL)")
        .await;
    c.dst
        .exec("CREATE TABLE public.people (id bigint PRIMARY KEY, name varchar(20), qty numeric(10,2), ver int, at timestamptz, extra text DEFAULT 'kept')")
        .await;
    c.config("watermark", "merge", 10);
    c.run();
    c.assert_equal("existing table").await;
    let rows = c
        .dst
        .text_rows("SELECT id::text, qty::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), extra FROM public.people ORDER BY id")
        .await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![s("1"), s("10.00"), s("2017-08-31 22:56:00.500"), s("kept")],
            vec![s("2"), None, None, s("kept")],
        ]
    );
}

/// Source and target in one SQLite file: the sink writes nothing to the
/// main database until the source's read snapshot has ended (no lock wait).
#[tokio::test]
async fn sqlite_source_and_target_in_one_file() {
    let dir = Dir::new("dbt_one_file");
    let db = Db::new(Backend::Sqlite, &dir, "one.db").await;
    db.exec("CREATE TABLE src (id int NOT NULL PRIMARY KEY, name varchar(255), qty int, ver int)")
        .await;
    db.insert_range(1, 5000).await;
    dir.write(
        "highwater.yaml",
        "connections:\n  db: sqlite://one.db\nstreams:\n  copy:\n    from: db\n    table: src\n    mode: change_tracking\n    primary_key: [id]\n    batch_size: 100\n    to: db\n    into: people\n    write: merge\n",
    );
    let started = Instant::now();
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("UPDATE src SET name = 'u' WHERE id <= 10; DELETE FROM src WHERE id > 4990")
        .await;
    assert_code(&dir.hw(&["run"]), 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited on a lock"
    );
    let (s, t) = (db.rows("src").await, db.rows("people").await);
    assert_eq!(t.len(), 4990);
    assert_eq!(s, t);
}

/// Issue 12 (small deltas): staging into an existing MariaDB table is a
/// temporary table, so an attempt killed mid-write leaves no staging table
/// behind, even before the next run settles; that run delivers every row
/// once.
#[tokio::test]
async fn killed_mariadb_merge_leaves_no_staging_table() {
    let c = Case::new(Backend::Postgres, Backend::Mariadb).await;
    c.config("watermark", "merge", 5);
    c.src.insert_range(1, 20).await;
    c.run();
    c.src.insert_range(21, 50).await;
    c.src.settle().await;
    let o = c
        .dir
        .hw_env(&["run"], &[("HIGHWATER_FAILPOINT", "engine.mid_write")]);
    assert_eq!(o.status.code(), None, "should abort\n{}", stderr(&o));
    c.assert_clean().await;
    c.run();
    c.assert_equal("after the killed delta").await;
    assert_eq!(c.target_rows().await.len(), 50);
    c.assert_clean().await;
}
