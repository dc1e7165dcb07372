//! The MariaDB/MySQL source outside change tracking: the watermark
//! tutorial with a tie at the boundary, and a full load of many column types.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;

use crate::util::*;

async fn exec(db: &MyDb, sql: &str) {
    let mut c = db.connect().await;
    c.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = c.disconnect().await;
}

fn config(url: &str, table: &str, extra: &str) -> String {
    format!(
        "connections:\n  src: {url}\n  lake: file://./lake\nstreams:\n  people:\n    from: src\n    table: {table}\n    to: lake\n    path: \"people/people-{{run_id}}.csv\"\n{extra}"
    )
}

#[tokio::test]
async fn watermark_tutorial_and_ties_on_mariadb() {
    let db = MyDb::new("my_wm").await;
    exec(
        &db,
        "CREATE TABLE data_source_table (PersonID int primary key, Name varchar(255), LastModifytime datetime(6));
         INSERT INTO data_source_table VALUES
           (1, 'aaaa', '2017-09-01 00:56:00'), (2, 'bbbb', '2017-09-02 05:23:00'),
           (3, 'cccc', '2017-09-03 02:36:00'), (4, 'dddd', '2017-09-04 03:21:00'),
           (5, 'eeee', '2017-09-05 08:06:00.123456');",
    )
    .await;
    let dir = Dir::new("my_wm");
    dir.write(
        "highwater.yaml",
        &config(
            &db.url,
            "data_source_table",
            "    mode: watermark\n    cursor: LastModifytime\n    primary_key: [PersonID]\n",
        ),
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let files = dir.files("lake/people", ".csv");
    assert_eq!(files.len(), 1);
    let (header, rows) = read_csv(&files[0]);
    assert_eq!(header, ["PersonID", "Name", "LastModifytime"]);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[4], ["5", "eeee", "2017-09-05T08:06:00.123456"]);

    // The tutorial's changes, plus a row sharing the watermark exactly.
    exec(
        &db,
        "INSERT INTO data_source_table VALUES (6, 'newdata', '2017-09-06 02:23:00'), (7, 'newdata', '2017-09-07 09:01:00'),
           (8, 'tie', '2017-09-05 08:06:00.123456');
         UPDATE data_source_table SET Name = 'NewUpdate', LastModifytime = '2017-09-08 10:00:00' WHERE PersonID = 3;",
    )
    .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let mut all: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for r in all_csv_rows(&dir, "lake/people") {
        all.entry(r[0].clone()).or_default().push(r);
    }
    assert_eq!(all.len(), 8);
    assert_eq!(all["3"].len(), 2, "row 3: full load and its update");
    let mut names: Vec<&str> = all["3"].iter().map(|r| r[1].as_str()).collect();
    names.sort();
    assert_eq!(names, ["NewUpdate", "cccc"]);
    for id in ["1", "2", "4", "5", "6", "7", "8"] {
        assert_eq!(all[id].len(), 1, "row {id} copied once: {:?}", all[id]);
    }
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("no changes"), "{}", stdout(&o));
}

#[tokio::test]
async fn full_load_types_on_mariadb() {
    let db = MyDb::new("my_types").await;
    exec(
        &db,
        "CREATE TABLE t (id int primary key, big bigint unsigned, dec_ decimal(10,2), dbl double,
           s varchar(20), bin varbinary(4), d date, dt datetime(6), ts timestamp(6) NULL, tm time, j json);
         SET time_zone = '+02:00';
         INSERT INTO t VALUES
           (1, 18446744073709551615, -12345678.9, 1.5, 'héllo, \"x\"', x'00ff', '2024-02-29',
            '2024-02-29 23:59:59.000001', '2024-03-01 02:00:00', '-838:59:59', '{\"a\": 1}'),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    )
    .await;
    let dir = Dir::new("my_types");
    dir.write("highwater.yaml", &config(&db.url, "t", "    mode: full\n"));
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let files = dir.files("lake/people", ".csv");
    let (header, rows) = read_csv(&files[0]);
    assert_eq!(
        header,
        [
            "id", "big", "dec_", "dbl", "s", "bin", "d", "dt", "ts", "tm", "j"
        ]
    );
    assert_eq!(
        rows[0],
        [
            "1",
            "18446744073709551615",
            "-12345678.90",
            "1.5",
            "héllo, \"x\"",
            "00ff",
            "2024-02-29",
            "2024-02-29T23:59:59.000001",
            "2024-03-01T00:00:00+00:00",
            "-838:59:59",
            "{\"a\": 1}"
        ]
    );
    assert_eq!(rows[1][0], "2");
    assert!(rows[1][1..].iter().all(|v| v.is_empty()), "{:?}", rows[1]);
    let o = dir.hw(&["check"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("MariaDB/MySQL"), "{}", stdout(&o));
}

/// A transaction that inserts with `NOW(6)`, stays open across a run and
/// commits after it: its row is copied by a later run (the cap comes from
/// `information_schema.INNODB_TRX`). A `timestamp` cursor: `datetime`
/// cursors hold the newest 13 hours back (tests/late_commits.rs).
#[tokio::test]
async fn late_commit_on_mariadb() {
    let db = MyDb::new("my_late").await;
    exec(
        &db,
        "CREATE TABLE t (id int primary key, updated_at timestamp(6) NOT NULL DEFAULT NOW(6));
         INSERT INTO t (id, updated_at) VALUES (1, NOW(6) - INTERVAL 1 HOUR);",
    )
    .await;
    let dir = Dir::new("my_late");
    dir.write(
        "highwater.yaml",
        &config(
            &db.url,
            "t",
            "    mode: watermark\n    cursor: updated_at\n    primary_key: [id]\n",
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);

    let mut late = db.connect().await;
    late.query_drop("START TRANSACTION").await.unwrap();
    late.query_drop("INSERT INTO t (id) VALUES (2)")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Committed after the late transaction started: its cursor is newer.
    exec(&db, "INSERT INTO t (id) VALUES (3)").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    late.query_drop("COMMIT").await.unwrap();
    exec(&db, "INSERT INTO t (id) VALUES (4)").await;
    // The cap is server-wide (INNODB_TRX): other tests' open transactions
    // may hold it back for a while, so run until the rows are in — a late
    // row must arrive in *a* later run, never be skipped or repeated.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ids: Vec<String> = loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_code(&dir.hw(&["run"]), 0);
        let mut ids: Vec<String> = all_csv_rows(&dir, "lake/people")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        ids.sort();
        if ids.len() >= 4 || std::time::Instant::now() > deadline {
            break ids;
        }
    };
    assert_eq!(
        ids,
        ["1", "2", "3", "4"],
        "late row 2 must arrive exactly once"
    );
}
