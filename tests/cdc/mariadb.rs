//! `mode: cdc` on MariaDB: the shared suite, then what only the binary
//! log has (binlog settings, statement-logged and XA transactions, key
//! types and collations, `RESET MASTER`).

use super::db::binlog_mysql;
use super::*;

cdc_suite!(Backend::Mariadb);

/// `RESET MASTER` starts the binlog again under the same file names: a
/// position in a file of that name is not trusted (the file was created at
/// another time), even where the new file is long enough.
#[tokio::test]
async fn reset_master_reloads_even_where_the_new_file_is_long_enough() {
    use mysql_async::prelude::Queryable;
    let db = CdcDb::exclusive("bl_reset").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)"
    ))
    .await;
    let dir = Dir::new("bl_reset");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    let mut a = super::db::binlog_admin().await;
    a.query_drop("RESET MASTER").await.unwrap();
    let _ = a.disconnect().await;
    db.exec("INSERT INTO t VALUES (4, 'd', 4)").await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut a = super::db::binlog_admin().await;
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
async fn composite_keys_of_many_types_are_matched_exactly() {
    let db = CdcDb::new(Backend::Mariadb, "bl_keys").await;
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
        binlog_mysql("SET GLOBAL binlog_format = 'ROW'; SET GLOBAL binlog_row_image = 'FULL'");
    }
}

#[tokio::test]
async fn check_names_binlog_settings_and_a_statement_logged_change_fails_the_run() {
    let db = CdcDb::exclusive("bl_settings").await;
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
    let db = CdcDb::new(Backend::Mariadb, "bl_ci").await;
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
