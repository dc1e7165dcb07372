//! Conformance: the watermark boundary, on every source backend.
//!
//! Coarse cursors (`date`, second-precision timestamps, SQLite text) put many
//! rows, and many updates, on one cursor value. A row updated without its
//! cursor moving, and a row inserted at the last watermark, must both arrive;
//! a row that did not change must not arrive twice (issue 7, item 1).

use crate::util::*;

/// A source database of one backend with a table `t (id, v, d)`.
async fn source(backend: &str, d_type: &str) -> (SrcDb, Dir) {
    let dir = Dir::new(&format!("boundary_{backend}"));
    let src = SrcDb::new(backend, &dir, "boundary").await;
    src.exec(&format!(
        "CREATE TABLE t (id int primary key, v varchar(50), d {d_type})"
    ))
    .await;
    (src, dir)
}

/// Every delivered row as (id, v), in delivery order, over all files.
fn delivered(dir: &Dir) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in dir.files("lake/t", ".csv") {
        for r in read_csv(&f).1 {
            out.push((r[0].clone(), r[1].clone()));
        }
    }
    out
}

async fn updates_and_inserts_at_the_boundary(backend: &str, d_type: &str, d: &str) {
    let (src, dir) = source(backend, d_type).await;
    src.exec(&format!(
        "INSERT INTO t VALUES (1, 'a', '{d}'), (2, 'b', '{d}')"
    ))
    .await;
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    \
             mode: watermark\n    cursor: d\n    primary_key: [id]\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n",
            src.url()
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    // The sequence: an update that keeps `d`, and a new row at `d`.
    src.exec("UPDATE t SET v = 'CHANGED' WHERE id = 1").await;
    src.exec(&format!("INSERT INTO t VALUES (3, 'c', '{d}')"))
        .await;
    assert_code(&dir.hw(&["run"]), 0);
    // Nothing changed: nothing delivered again.
    assert_code(&dir.hw(&["run"]), 0);
    // Another update at the same value, after the watermark stood still.
    src.exec("UPDATE t SET v = 'B2' WHERE id = 2").await;
    assert_code(&dir.hw(&["run"]), 0);

    let got = delivered(&dir);
    let want: Vec<(String, String)> = [
        ("1", "a"),
        ("2", "b"),
        ("1", "CHANGED"),
        ("3", "c"),
        ("2", "B2"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut g = got.clone();
    g.sort();
    let mut w = want.clone();
    w.sort();
    assert_eq!(
        g, w,
        "{backend} {d_type}: every version once, in files {got:?}"
    );
}

#[tokio::test]
async fn boundary_date_cursor_postgres() {
    updates_and_inserts_at_the_boundary("postgres", "date", "2024-01-01").await;
}

#[tokio::test]
async fn boundary_second_cursor_postgres() {
    updates_and_inserts_at_the_boundary("postgres", "timestamp(0)", "2024-01-01 10:00:05").await;
}

#[tokio::test]
async fn boundary_date_cursor_mariadb() {
    updates_and_inserts_at_the_boundary("mariadb", "date", "2024-01-01").await;
}

#[tokio::test]
async fn boundary_second_cursor_mariadb() {
    updates_and_inserts_at_the_boundary("mariadb", "datetime", "2024-01-01 10:00:05").await;
}

#[tokio::test]
async fn boundary_date_cursor_sqlite() {
    updates_and_inserts_at_the_boundary("sqlite", "date", "2024-01-01").await;
}

#[tokio::test]
async fn boundary_text_timestamp_cursor_sqlite() {
    updates_and_inserts_at_the_boundary("sqlite", "datetime", "2024-01-01 10:00:05").await;
}
