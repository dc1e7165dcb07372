//! `partitions: N` (issue 12): a full load read over N connections in one
//! snapshot (PostgreSQL: exported; MariaDB: N snapshots taken under a
//! table lock), one output, one commit.
//!
//! The attack: a writer moves rows between the key ranges of different
//! partitions while the load runs (each transaction moves one row up and
//! another down, keeping 20,000 rows). Readers with their own snapshots
//! would see a moved row twice or not at all; with the one snapshot every
//! row arrives exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::util::*;

const ROWS: i64 = 20_000;

/// The attack's write (PostgreSQL and MariaDB): the rows whose `v` is `a`
/// or `b` move between the lower and the upper half of a key span of
/// `rows`, so between partitions.
pub(crate) fn move_rows(rows: i64, a: i64, b: i64) -> String {
    format!(
        "UPDATE t SET id = CASE WHEN id <= {rows} THEN id + {rows} ELSE id - {rows} END WHERE v IN ({a}, {b})"
    )
}

/// The two rows (their `v`) the `i`-th write moves.
pub(crate) fn moved(i: i64, rows: i64) -> (i64, i64) {
    ((i * 7919) % rows + 1, (i * 104_729) % rows + 1)
}

/// A PostgreSQL writer moving rows until `stop`; returns how many writes
/// it made.
pub(crate) fn start_pg_mover(
    url: String,
    rows: i64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let c = pg_connect(&url).await;
        let mut i: i64 = 0;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let (a, b) = moved(i, rows);
            c.batch_execute(&move_rows(rows, a, b)).await.unwrap();
        }
        i
    })
}

fn config(dir: &Dir, url: &str, partitions: &str, to: &str) {
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {url}\n  lake: file://./lake\n  db: {url}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: full\n    primary_key: [id]\n    partitions: {partitions}\n{to}"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_full_load_is_one_snapshot_under_a_writer() {
    let dir = Dir::new("partitions_writer");
    let pg = PgDb::new("partitions_writer").await;
    // No key constraint: the declared key may hold a NULL (read once, by
    // the first partition).
    pg.exec(&format!(
        "CREATE TABLE t (id bigint, v bigint NOT NULL, note text);
         INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, {ROWS}) g;
         INSERT INTO t VALUES ({ROWS} * 2, -1, 'top'), (NULL, -2, 'no key');"
    ))
    .await;
    config(
        &dir,
        &pg.url,
        "4",
        "    to: lake\n    path: \"t/{run_id}.csv\"\n",
    );

    // The writer: each transaction moves two rows between the lower and
    // the upper half of the key span (other partitions).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_pg_mover(pg.url.clone(), ROWS, stop.clone());
    let mut loads = 0;
    for _ in 0..3 {
        let o = dir.hw(&["run"]);
        assert_code(&o, 0);
        assert!(
            stderr(&o).contains("read in 4 partitions of id")
                || stdout(&o).contains("read in 4 partitions of id"),
            "{}{}",
            stdout(&o),
            stderr(&o)
        );
        loads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let moves = writer.await.unwrap();
    assert!(moves > 0, "the writer ran");

    let files = dir.files("lake/t", "csv");
    assert_eq!(files.len(), loads, "one output per load: {files:?}");
    for f in files {
        let (header, rows) = read_csv(&f);
        assert_eq!(header, vec!["id", "v", "note"]);
        assert_eq!(rows.len() as i64, ROWS + 2, "{f:?}");
        let mut vs: Vec<i64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
        vs.sort();
        vs.dedup();
        assert_eq!(vs.len() as i64, ROWS + 2, "every row exactly once in {f:?}");
        assert!(rows.iter().any(|r| r[0].is_empty() && r[2] == "no key"));
    }
}

/// Into a merge target: the same rows as one connection reads, and the
/// other shapes of the option refused at load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_into_a_merge_target_and_refused_where_they_cannot_work() {
    let dir = Dir::new("partitions_merge");
    let pg = PgDb::new("partitions_merge").await;
    pg.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(-50, 949) g;",
    )
    .await;
    config(
        &dir,
        &pg.url,
        "3",
        "    to: db\n    into: copy_t\n    write: merge\n",
    );
    assert_code(&dir.hw(&["run"]), 0);
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(
        pg_rows(
            &pg,
            "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(length(v)) FROM copy_t"
        )
        .await,
        pg_rows(
            &pg,
            "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(length(v)) FROM t"
        )
        .await
    );

    for (value, want) in [
        (
            "0",
            "partitions: expected a number from 1 to 16 or `auto`, got 0",
        ),
        ("many", "got `many`"),
    ] {
        config(
            &dir,
            &pg.url,
            value,
            "    to: lake\n    path: \"t/{run_id}.csv\"\n",
        );
        let o = dir.hw(&["check"]);
        assert_code(&o, 2);
        assert!(
            format!("{}{}", stdout(&o), stderr(&o)).contains(want),
            "{}",
            stderr(&o)
        );
    }
    dir.write(
        "highwater.yaml",
        "connections:\n  src: sqlite://src.db\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    partitions: auto\n    to: lake\n    path: \"t/{run_id}.csv\"\n",
    );
    let o = dir.hw(&["check"]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("partitions: splits full loads"), "{err}");
    assert!(
        err.contains("need a PostgreSQL or MariaDB/MySQL source"),
        "{err}"
    );
}

/// The rows of every published file: each `v` exactly once, `rows` in all.
fn assert_each_row_once(dir: &Dir, loads: usize, rows: i64) {
    let files = dir.files("lake/t", "csv");
    assert_eq!(files.len(), loads, "one output per load: {files:?}");
    for f in files {
        let (header, got) = read_csv(&f);
        assert_eq!(header, vec!["id", "v", "note"]);
        assert_eq!(got.len() as i64, rows, "{f:?}");
        let mut vs: Vec<i64> = got.iter().map(|r| r[1].parse().unwrap()).collect();
        vs.sort();
        vs.dedup();
        assert_eq!(vs.len() as i64, rows, "every row exactly once in {f:?}");
        assert!(got.iter().any(|r| r[0].is_empty() && r[2] == "no key"));
    }
}

/// MariaDB: the same attack. Without the lock each reader's snapshot
/// would be its own and a moved row would arrive twice or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_partitioned_full_load_is_one_snapshot_under_a_writer() {
    use mysql_async::prelude::Queryable;
    let dir = Dir::new("partitions_my_writer");
    let my = MyDb::new("partitions_my_writer").await;
    let mut c = my.connect().await;
    c.query_drop(
        "CREATE TABLE t (id bigint NULL, v bigint NOT NULL, note text, KEY (id), KEY (v)) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    c.query_drop(format!(
        "INSERT INTO t SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_{ROWS}"
    ))
    .await
    .unwrap();
    c.query_drop(format!(
        "INSERT INTO t VALUES ({ROWS} * 2, -1, 'top'), (NULL, -2, 'no key')"
    ))
    .await
    .unwrap();
    config(
        &dir,
        &my.url,
        "4",
        "    to: lake\n    path: \"t/{run_id}.csv\"\n",
    );
    // Four writers, each transaction moving two rows between the lower
    // and the upper half of the key span: the snapshots are taken within
    // a millisecond, so one writer alone rarely commits between them.
    drop(c);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4i64)
        .map(|w| {
            let stop = stop.clone();
            let url = my.url.clone();
            tokio::spawn(async move {
                let mut c = my_connect(&url).await;
                let mut i: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    // Each writer its own rows: v ≡ w (mod 4).
                    let (a, b) = (
                        ((i * 7919) % (ROWS / 4)) * 4 + w + 1,
                        ((i * 104_729) % (ROWS / 4)) * 4 + w + 1,
                    );
                    c.query_drop(move_rows(ROWS, a, b)).await.unwrap();
                }
                i
            })
        })
        .collect();
    let mut loads = 0;
    for _ in 0..16 {
        let o = dir.hw(&["run"]);
        assert_code(&o, 0);
        let out = format!("{}{}", stdout(&o), stderr(&o));
        assert!(out.contains("read in 4 partitions of id"), "{out}");
        loads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        assert!(w.await.unwrap() > 0, "the writer ran");
    }
    assert_each_row_once(&dir, loads, ROWS + 2);
}

/// MariaDB: a transaction that wrote to the table and stays open keeps the
/// lock from being granted: the load reads over one connection, says so,
/// and leaves the open transaction's rows out. An unsigned key above
/// i64's range splits too; a merge target gets every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_partitions_give_way_to_an_open_writer_and_split_unsigned_keys() {
    use mysql_async::prelude::Queryable;
    let dir = Dir::new("partitions_my_open");
    let my = MyDb::new("partitions_my_open").await;
    let mut c = my.connect().await;
    c.query_drop(
        "CREATE TABLE t (id bigint unsigned NOT NULL PRIMARY KEY, v bigint NOT NULL, note text)",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO t SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_1000;
         INSERT INTO t VALUES (18446744073709551615, -1, 'max'), (9223372036854775808, -2, 'above i64')",
    )
    .await
    .unwrap();
    config(
        &dir,
        &my.url,
        "3",
        "    to: db\n    into: copy_t\n    write: merge\n",
    );
    let checked = dir.hw(&["check"]);
    assert_code(&checked, 0);
    assert!(
        !stdout(&checked).contains("LOCK TABLES"),
        "{}",
        stdout(&checked)
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(out.contains("read in 3 partitions of id"), "{out}");
    let sums = "SELECT count(*), count(DISTINCT id), CAST(min(id) AS CHAR), CAST(max(id) AS CHAR), sum(v), sum(length(note))";
    let want: Vec<(i64, i64, String, String, i64, i64)> =
        c.query(format!("{sums} FROM t")).await.unwrap();
    let got: Vec<(i64, i64, String, String, i64, i64)> =
        c.query(format!("{sums} FROM copy_t")).await.unwrap();
    assert_eq!(got, want);
    assert_eq!(want[0].0, 1002);

    // An open writer of the table: no lock within 3 s, one connection.
    let mut open = my.connect().await;
    open.query_drop("BEGIN; INSERT INTO t VALUES (5000, 5000, 'uncommitted'); UPDATE t SET note = 'changed' WHERE id = 1")
        .await
        .unwrap();
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        out.contains("could not lock") && out.contains("read over one connection"),
        "{out}"
    );
    let got: Vec<(i64, i64, String, String, i64, i64)> =
        c.query(format!("{sums} FROM copy_t")).await.unwrap();
    assert_eq!(got, want, "the open transaction's rows are not read");
    open.query_drop("COMMIT").await.unwrap();
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let want: Vec<(i64, i64, String, String, i64, i64)> =
        c.query(format!("{sums} FROM t")).await.unwrap();
    let got: Vec<(i64, i64, String, String, i64, i64)> =
        c.query(format!("{sums} FROM copy_t")).await.unwrap();
    assert_eq!(got, want);
    assert_eq!(want[0].0, 1003);

    // A role without the LOCK TABLES privilege: one connection, with a
    // warning, every row.
    let user = format!("nl_{}", &my.name[my.name.len().saturating_sub(20)..]);
    c.query_drop(format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON `{}`.* TO '{user}'@'%'",
        my.name
    ))
    .await
    .unwrap();
    let url = my.url.replacen("root@", &format!("{user}:pw@"), 1);
    assert_ne!(url, my.url);
    config(
        &dir,
        &url,
        "3",
        "    to: lake\n    path: \"t/{run_id}.csv\"\n",
    );
    // `check` says so beforehand (a warning: exit 0).
    let checked = dir.hw(&["check"]);
    let o = dir.hw(&["run"]);
    let _ = c.query_drop(format!("DROP USER '{user}'@'%'")).await;
    assert_code(&checked, 0);
    let said = stdout(&checked);
    assert!(
        said.contains("partitions: no LOCK TABLES privilege")
            && said.contains(&format!("GRANT LOCK TABLES ON `{}`.*", my.name)),
        "{said}"
    );
    assert_code(&o, 0);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        out.contains("could not lock") && out.contains("read over one connection"),
        "{out}"
    );
    assert!(
        !out.contains(":pw@"),
        "the password stays out of messages: {out}"
    );
    let files = dir.files("lake/t", "csv");
    assert_eq!(files.len(), 1);
    let (_, rows) = read_csv(&files[0]);
    assert_eq!(rows.len(), 1003);
}

/// Partitioned loads killed at instants spread over their run, beside a
/// writer moving rows between partitions, on both backends: every file
/// that reached its final name has a commit marker and every row exactly
/// once; the run after the kills publishes a complete copy.
async fn killed_partitioned_loads_publish_whole_copies_or_nothing(
    url: &str,
    dir: &Dir,
    mut write: impl FnMut(i64) -> futures::future::BoxFuture<'static, ()> + Send + 'static,
) {
    config(
        dir,
        url,
        "3",
        "    to: lake\n    path: \"t/{run_id}.csv\"\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                write(i).await;
            }
            i
        })
    };
    for round in 0..8u64 {
        let mut child = dir.spawn_quiet(&["run"]);
        std::thread::sleep(std::time::Duration::from_millis(20 + round * 25));
        let _ = child.kill();
        let _ = child.wait();
    }
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    stop.store(true, Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0, "the writer ran");
    let files = dir.files("lake/t", "csv");
    assert!(!files.is_empty());
    for f in &files {
        let run_id = f.file_stem().unwrap().to_string_lossy().to_string();
        assert!(
            dir.join(&format!("lake/_highwater/commits/t/{run_id}.json"))
                .exists(),
            "{f:?} is in place without a commit marker"
        );
    }
    assert_each_row_once(dir, files.len(), ROWS + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_killed_partitioned_loads_publish_whole_copies_or_nothing() {
    let dir = Dir::new("partitions_pg_kill");
    let pg = PgDb::new("partitions_pg_kill").await;
    pg.exec(&format!(
        "CREATE TABLE t (id bigint, v bigint NOT NULL, note text);
         CREATE INDEX ON t (v);
         INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, {ROWS}) g;
         INSERT INTO t VALUES ({ROWS} * 2, -1, 'top'), (NULL, -2, 'no key');"
    ))
    .await;
    let c = Arc::new(pg_connect(&pg.url).await);
    let url = pg.url.clone();
    killed_partitioned_loads_publish_whole_copies_or_nothing(&url, &dir, move |i| {
        let c = c.clone();
        Box::pin(async move {
            let (a, b) = moved(i, ROWS);
            c.batch_execute(&move_rows(ROWS, a, b)).await.unwrap();
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_killed_partitioned_loads_publish_whole_copies_or_nothing() {
    use mysql_async::prelude::Queryable;
    let dir = Dir::new("partitions_my_kill");
    let my = MyDb::new("partitions_my_kill").await;
    let mut c = my.connect().await;
    c.query_drop(format!(
        "CREATE TABLE t (id bigint NULL, v bigint NOT NULL, note text, KEY (id), KEY (v));
         INSERT INTO t SELECT seq, seq, CONCAT('row ', seq) FROM seq_1_to_{ROWS};
         INSERT INTO t VALUES ({ROWS} * 2, -1, 'top'), (NULL, -2, 'no key');"
    ))
    .await
    .unwrap();
    let c = Arc::new(tokio::sync::Mutex::new(c));
    let url = my.url.clone();
    killed_partitioned_loads_publish_whole_copies_or_nothing(&url, &dir, move |i| {
        let c = c.clone();
        Box::pin(async move {
            let (a, b) = moved(i, ROWS);
            c.lock()
                .await
                .query_drop(move_rows(ROWS, a, b))
                .await
                .unwrap();
        })
    })
    .await;
}
