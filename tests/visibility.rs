//! Visible, then gone (issue 7, item 9): a reader listing a file target
//! never sees a partial or uncommitted file, and a file once visible at its
//! final name is never deleted or replaced by recovery.

use crate::util::*;

fn cfg(url: &str, mode: &str, path: &str) -> String {
    let cursor = if mode == "watermark" {
        "    cursor: id\n"
    } else {
        ""
    };
    format!(
        "connections:\n  pg: {url}\n  lake: file://./lake\nstreams:\n  t:\n    from: pg\n    table: t\n    mode: {mode}\n{cursor}    to: lake\n    path: \"{path}\"\n"
    )
}

/// Data files a user's glob would see (everything outside `_highwater/`).
fn visible(dir: &Dir) -> Vec<String> {
    dir.files("lake", "")
        .iter()
        .map(|p| {
            p.strip_prefix(dir.join("lake"))
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn nothing_is_visible_before_the_commit_marker() {
    let db = PgDb::new("vis").await;
    db.exec("CREATE TABLE t (id bigint primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g;").await;
    let dir = Dir::new("vis");
    dir.write(
        "highwater.yaml",
        &cfg(&db.url, "watermark", "t/t-{run_id}.csv"),
    );
    let o = dir.hw_env(
        &["run"],
        &[("HIGHWATER_FAILPOINT", "files.after_data_before_marker")],
    );
    assert_eq!(o.status.code(), None, "aborted\n{}", stderr(&o));
    assert_eq!(
        visible(&dir),
        Vec::<String>::new(),
        "no file before its commit"
    );
    // Nor under a glob of the data extension anywhere below the root.
    assert!(
        dir.files("lake", ".csv").is_empty() && walk_all(&dir).iter().all(|f| !f.ends_with(".csv")),
        "no staged file carries the data extension: {:?}",
        walk_all(&dir)
    );
    assert_code(&dir.hw(&["run"]), 0);
    let rows = all_csv_rows(&dir, "lake/t");
    assert_eq!(rows.len(), 500);
}

fn walk_all(dir: &Dir) -> Vec<String> {
    fn walk(p: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path().to_string_lossy().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("lake"), &mut out);
    out
}

#[tokio::test]
async fn a_commit_interrupted_before_publishing_is_published_by_recovery() {
    let db = PgDb::new("vis2").await;
    db.exec("CREATE TABLE t (id bigint primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g;").await;
    let dir = Dir::new("vis2");
    dir.write(
        "highwater.yaml",
        &cfg(&db.url, "watermark", "t/t-{run_id}.csv"),
    );
    let o = dir.hw_env(
        &["run"],
        &[("HIGHWATER_FAILPOINT", "files.after_marker_before_publish")],
    );
    assert_eq!(o.status.code(), None, "aborted\n{}", stderr(&o));
    assert!(
        visible(&dir).is_empty(),
        "committed but not yet published: {:?}",
        visible(&dir)
    );
    db.exec("INSERT INTO t SELECT g, 'v' || g FROM generate_series(501, 600) g")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("settled run") || stderr(&o).contains("settled run"),
        "{}",
        stderr(&o)
    );
    let mut ids: Vec<i64> = all_csv_rows(&dir, "lake/t")
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=600).collect::<Vec<_>>(), "every row once");
    assert_eq!(dir.files("lake/t", ".csv").len(), 2);
}

#[tokio::test]
async fn a_failed_full_copy_keeps_the_previous_file() {
    let db = PgDb::new("vis3").await;
    db.exec("CREATE TABLE t (id bigint primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;").await;
    let dir = Dir::new("vis3");
    dir.write("highwater.yaml", &cfg(&db.url, "full", "t/t.csv"));
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(all_csv_rows(&dir, "lake/t").len(), 100);
    // The next commit marker cannot be written: its folder is a file.
    let commits = dir.join("lake/_highwater/commits/t");
    std::fs::remove_dir_all(&commits).unwrap();
    std::fs::write(&commits, "in the way").unwrap();
    db.exec("INSERT INTO t SELECT g, 'v' || g FROM generate_series(101, 150) g")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("commit marker"), "{}", stderr(&o));
    // The only copy is still there, unchanged.
    assert_eq!(
        all_csv_rows(&dir, "lake/t").len(),
        100,
        "previous full copy kept"
    );
    std::fs::remove_file(&commits).unwrap();
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(all_csv_rows(&dir, "lake/t").len(), 150);
}

#[tokio::test]
async fn kill_at_random_instants_never_shows_a_file_that_later_disappears() {
    let db = PgDb::new("vis4").await;
    db.exec("CREATE TABLE t (id bigint primary key, v text); INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;").await;
    let dir = Dir::new("vis4");
    dir.write(
        "highwater.yaml",
        &cfg(&db.url, "watermark", "t/t-{run_id}.csv"),
    );
    let mut seen: std::collections::BTreeSet<String> = Default::default();
    let mut next = 20001;
    for i in 0..8u64 {
        let mut child = dir.command(&["run"]).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(30 + i * 40);
        while std::time::Instant::now() < deadline {
            seen.extend(visible(&dir));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        seen.extend(visible(&dir));
        let _ = dir.hw(&["run"]); // settles
        let now = visible(&dir);
        for f in &seen {
            assert!(now.contains(f), "{f} was visible and then disappeared");
        }
        db.exec(&format!(
            "INSERT INTO t SELECT g, 'y' FROM generate_series({next}, {}) g",
            next + 99
        ))
        .await;
        next += 100;
    }
    assert_code(&dir.hw(&["run"]), 0);
    let mut ids: Vec<i64> = all_csv_rows(&dir, "lake/t")
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no duplicates");
    assert_eq!(ids, (1..next).collect::<Vec<_>>(), "no gaps");
}
