//! Crash safety, tested by crashing: named failpoints that abort the real
//! binary (as `kill -9` would) at each step of the commit protocol, and
//! `kill -9` at random instants. After a normal re-run every source row is
//! in the files exactly once, and no partial file is left.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::util::*;

fn ids_exactly_once(dir: &Dir, sub: &str) -> BTreeSet<i64> {
    let mut seen = BTreeSet::new();
    for r in all_csv_rows(dir, sub) {
        let id: i64 = r[0].parse().unwrap();
        assert!(seen.insert(id), "row {id} copied twice");
    }
    seen
}

fn no_partial_files(dir: &Dir) {
    let mut all = Vec::new();
    for f in dir.files("lake", "") {
        all.push(f.to_string_lossy().to_string());
    }
    assert!(
        all.iter().all(|f| !f.contains('#')),
        "staging leftovers: {all:?}"
    );
}

fn cfg(url: &str, format: &str) -> String {
    format!(
        "connections:\n  pg: {url}\n  lake: file://./lake\nstreams:\n  t:\n    from: pg\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"t/t-{{run_id}}.{format}\"\n    batch_size: 50\n"
    )
}

#[tokio::test]
async fn failpoints_at_every_step_leave_no_gap_and_no_duplicate() {
    let db = PgDb::new("failpoints").await;
    db.exec("CREATE TABLE t (id bigint primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g;").await;
    let mut next = 3001;
    for point in FAILPOINTS {
        let dir = Dir::new("fp");
        dir.write("highwater.yaml", &cfg(&db.url, "csv"));
        // Start from a committed position for half the points.
        let o = dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", point)]);
        assert_eq!(
            o.status.code(),
            None,
            "{point}: the process should have aborted\n{}",
            stderr(&o)
        );
        db.exec(&format!(
            "INSERT INTO t SELECT g, 'v' || g FROM generate_series({next}, {}) g",
            next + 999
        ))
        .await;
        next += 1000;
        let o = dir.hw(&["run"]);
        assert_code(&o, 0);
        // Crash again in the middle of an incremental run, then finish.
        db.exec(&format!(
            "INSERT INTO t SELECT g, 'v' || g FROM generate_series({next}, {}) g",
            next + 999
        ))
        .await;
        next += 1000;
        let o = dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", point)]);
        assert!(
            o.status.code().is_none() || o.status.code() == Some(0),
            "{point}: {}",
            stderr(&o)
        );
        assert_code(&dir.hw(&["run"]), 0);
        let ids = ids_exactly_once(&dir, "lake/t");
        assert_eq!(ids.len() as i64, next - 1, "{point}: rows missing");
        assert_eq!(ids.iter().next_back().copied(), Some(next - 1));
        no_partial_files(&dir);
    }
}

#[tokio::test]
async fn kill_9_at_random_instants() {
    let db = PgDb::new("kill9").await;
    db.exec("CREATE TABLE t (id bigint primary key, v text, pad text); INSERT INTO t SELECT g, 'v' || g, repeat('x', 100) FROM generate_series(1, 60000) g;").await;
    let mut next = 60001i64;
    for format in ["csv", "parquet"] {
        let dir = Dir::new("kill9");
        dir.write("highwater.yaml", &cfg(&db.url, format));
        // Deterministic "random" delays that fall before, during and after the copy.
        for (i, delay_ms) in [5u64, 40, 90, 150, 220, 300, 450, 700]
            .into_iter()
            .enumerate()
        {
            let mut child = dir.spawn_quiet(&["run"]);
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            if i % 2 == 0 {
                db.exec(&format!(
                    "INSERT INTO t SELECT g, 'v' || g, 'y' FROM generate_series({next}, {}) g",
                    next + 4999
                ))
                .await;
                next += 5000;
            }
        }
        let o = dir.hw(&["run"]);
        assert_code(&o, 0);
        if format == "csv" {
            let ids = ids_exactly_once(&dir, "lake/t");
            assert_eq!(ids.len() as i64, next - 1, "rows missing");
        } else {
            let mut seen = BTreeSet::new();
            for f in dir.files("lake/t", ".parquet") {
                let file = std::fs::File::open(&f).unwrap();
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .unwrap()
                        .build()
                        .unwrap();
                for b in reader {
                    let b = b.unwrap();
                    let col = b
                        .column(0)
                        .as_any()
                        .downcast_ref::<arrow_array::Int64Array>()
                        .unwrap();
                    for v in col.iter() {
                        assert!(seen.insert(v.unwrap()), "row copied twice");
                    }
                }
            }
            assert_eq!(seen.len() as i64, next - 1, "rows missing");
        }
        no_partial_files(&dir);
    }
}

/// Two processes running the same stream at once: one waits its turn or
/// fails cleanly; the rows arrive once.
#[tokio::test]
async fn two_processes_on_one_stream() {
    let db = PgDb::new("twoproc").await;
    db.exec("CREATE TABLE t (id bigint primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50000) g;").await;
    let dir = Dir::new("twoproc");
    dir.write("highwater.yaml", &cfg(&db.url, "csv"));
    let a = dir
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = dir
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for o in [&a, &b] {
        assert!(
            matches!(o.status.code(), Some(0) | Some(1)),
            "{}",
            stderr(o)
        );
    }
    assert_code(&dir.hw(&["run"]), 0);
    let ids = ids_exactly_once(&dir, "lake/t");
    assert_eq!(ids.len(), 50000);
}

/// A killed run shows as Failed in the history, not InProgress forever.
#[tokio::test]
async fn killed_runs_are_reported_failed() {
    let db = PgDb::new("killedrun").await;
    db.exec("CREATE TABLE t (id bigint primary key, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g;").await;
    let dir = Dir::new("killedrun");
    dir.write("highwater.yaml", &cfg(&db.url, "csv"));
    let o = dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", "engine.mid_write")]);
    assert_eq!(o.status.code(), None);
    let runs: serde_json::Value =
        serde_json::from_str(&stdout(&dir.hw(&["runs", "--json"]))).unwrap();
    assert_eq!(runs[0]["status"], "Failed");
    assert_eq!(runs[0]["streams"][0]["status"], "Failed");
    assert!(
        runs[0]["streams"][0]["error"]
            .as_str()
            .unwrap()
            .contains("stopped")
    );
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(ids_exactly_once(&dir, "lake/t").len(), 100);
}

/// A stream another process holds is skipped, not failed (issue 7): exit 0,
/// run record `Skipped`, nothing written, position unchanged.
#[tokio::test]
async fn a_busy_stream_is_skipped_not_failed() {
    let db = PgDb::new("busy").await;
    db.exec("CREATE TABLE t (id bigint primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;").await;
    let dir = Dir::new("busy");
    dir.write("highwater.yaml", &cfg(&db.url, "csv"));
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("INSERT INTO t SELECT g, 'v' || g FROM generate_series(101, 150) g")
        .await;
    // Hold the stream's lock as another highwater process would.
    let lock = std::fs::read_dir(dir.join(".highwater/locks"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("t-"))
        .expect("the stream's lock file");
    let held = std::fs::OpenOptions::new().write(true).open(&lock).unwrap();
    held.try_lock().unwrap();
    let o = dir.hw(&["run", "--json"]);
    assert_code(&o, 0);
    let run: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(run["streams"][0]["status"], "Skipped", "{run:#}");
    assert_eq!(run["streams"][0]["rows_written"], 0);
    let runs: serde_json::Value =
        serde_json::from_str(&stdout(&dir.hw(&["runs", "--json"]))).unwrap();
    assert_eq!(runs[0]["streams"][0]["status"], "Skipped");
    assert_eq!(
        ids_exactly_once(&dir, "lake/t").len(),
        100,
        "nothing written"
    );
    drop(held);
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(ids_exactly_once(&dir, "lake/t").len(), 150);
}
