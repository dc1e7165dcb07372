//! `share_partitions:` (issue 12): the parts of one PostgreSQL full load
//! claimed by several processes through the shared state (`highwater
//! serve` workers), each read in the one exported snapshot, all published
//! by one commit marker.
//!
//! The attacks: a writer moves rows between the key ranges of different
//! parts while loads run (a part read in any other snapshot would lose or
//! repeat a moved row); a worker is killed in the middle of a part; the
//! coordinator is killed before and after its marker. Every published
//! copy must hold each row exactly once, and nothing a marker does not
//! list may be visible.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::partitions::start_pg_mover;
use crate::util::*;

const ROWS: i64 = 6_000;

/// A `highwater serve` worker whose output goes to a file; killed on drop.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(dir: &Dir, name: &str, env: &[(&str, &str)]) -> Worker {
        let log = dir.join(&format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut c = dir.command(&["serve", "--listen", "127.0.0.1:0"]);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start highwater serve");
        let w = Worker { child, log };
        w.wait_for("helping with the parts of t");
        w
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "worker never said {text:?}: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many parts this worker staged.
    fn staged(&self) -> usize {
        self.output().matches("staged part ").count()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A source table of `ROWS` rows plus one above the range and one with a
/// NULL key, and the config; `state` is a `state:` line or empty.
async fn setup(tag: &str, state: &str) -> (Dir, PgDb) {
    let dir = Dir::new(tag);
    let pg = PgDb::new(tag).await;
    pg.exec(&format!(
        "CREATE TABLE t (id bigint, v bigint NOT NULL, note text);
         INSERT INTO t SELECT g, g, 'row ' || g FROM generate_series(1, {ROWS}) g;
         INSERT INTO t VALUES ({ROWS} * 2, -1, 'top'), (NULL, -2, 'no key');"
    ))
    .await;
    dir.write(
        "highwater.yaml",
        &format!(
            "{state}connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: full\n    primary_key: [id]\n    partitions: 4\n    share_partitions: true\n    batch_size: 300\n    to: lake\n    path: \"t/{{run_id}}.csv\"\n",
            pg.url
        ),
    );
    (dir, pg)
}

/// The published copies: per commit marker, the rows of every file it
/// lists (each file must exist). Also checks that no CSV file is visible
/// that no marker lists.
fn published(dir: &Dir) -> Vec<(String, Vec<Vec<String>>)> {
    let lake = dir.join("lake");
    let mut listed = BTreeSet::new();
    let mut copies = Vec::new();
    let mut markers: Vec<PathBuf> = std::fs::read_dir(dir.join("lake/_highwater/commits/t"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    markers.sort();
    for m in markers {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
        let files = v["files"]
            .as_array()
            .expect("a shared load lists its files");
        assert_eq!(files.len(), 4, "one file per part: {v}");
        let mut rows = Vec::new();
        for f in files {
            let p = lake.join(f[1].as_str().unwrap());
            assert!(p.exists(), "{p:?} listed by {m:?} is not visible");
            let (header, got) = read_csv(&p);
            assert_eq!(header, vec!["id", "v", "note"], "{p:?}");
            rows.extend(got);
            listed.insert(p);
        }
        assert_eq!(v["rows"].as_u64(), Some(rows.len() as u64), "{m:?}");
        copies.push((m.display().to_string(), rows));
    }
    let visible: BTreeSet<PathBuf> = dir.files("lake/t", "csv").into_iter().collect();
    assert_eq!(visible, listed, "visible files that no commit marker lists");
    copies
}

fn assert_each_row_once(copy: &(String, Vec<Vec<String>>)) {
    let (name, rows) = copy;
    assert_eq!(rows.len() as i64, ROWS + 2, "{name}");
    let vs: BTreeSet<i64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(
        vs.len() as i64,
        ROWS + 2,
        "every row exactly once in {name}"
    );
    assert!(
        rows.iter().any(|r| r[0].is_empty() && r[2] == "no key"),
        "{name}"
    );
}

fn staging_leftovers(dir: &Dir) -> Vec<PathBuf> {
    let p = dir.join("lake/_highwater/staging/t");
    match std::fs::read_dir(&p) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => vec![],
    }
}

/// Workers read every part (the coordinator only coordinates) while a
/// writer moves rows across parts; the state is PostgreSQL, as across
/// machines.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_read_the_parts_in_one_snapshot_under_a_writer() {
    let state = PgDb::new("shared_parts_state").await;
    let (dir, pg) = setup("shared_parts_writer", &format!("state: {}\n", state.url)).await;
    let a = Worker::start(&dir, "a", &[("HIGHWATER_PARTS_LOCAL", "1")]);
    let b = Worker::start(&dir, "b", &[("HIGHWATER_PARTS_LOCAL", "2")]);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_pg_mover(pg.url.clone(), ROWS, stop.clone());
    let coordinate_only = [("HIGHWATER_PARTS_LOCAL", "0")];
    for _ in 0..3 {
        let o = dir.hw_env(&["run"], &coordinate_only);
        assert_code(&o, 0);
        assert!(
            stderr(&o).contains("read in 4 parts of id"),
            "{}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    // The coordinator reads too, beside the workers.
    assert_code(&dir.hw(&["run"]), 0);
    stop.store(true, Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0, "the writer ran");

    assert_eq!(
        a.staged() + b.staged(),
        12,
        "the workers staged every part of the three coordinated loads\n{}\n{}",
        a.output(),
        b.output()
    );
    let copies = published(&dir);
    assert_eq!(copies.len(), 4);
    copies.iter().for_each(assert_each_row_once);
    assert!(
        staging_leftovers(&dir).is_empty(),
        "{:?}",
        staging_leftovers(&dir)
    );
    let o = dir.hw(&["runs", "--json"]);
    assert_code(&o, 0);
}

/// Kill -9 at the worst places: a worker in the middle of a part, the
/// coordinator after staging and before its marker, after its marker and
/// before publishing, and after its own first part. Every copy published
/// is whole; nothing else is visible; the next run always succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_workers_and_coordinators_publish_whole_copies_or_nothing() {
    let (dir, pg) = setup("shared_parts_kill", "").await;
    // `check` says who can help with a SQLite state (a warning: exit 0).
    let o = dir.hw(&["check"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("only `highwater serve` processes on this machine"),
        "{}",
        stdout(&o)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_pg_mover(pg.url.clone(), ROWS, stop.clone());

    // 1. A worker dies in the middle of the part it claimed: its lock is
    //    released and another worker reads the part again.
    let mut dying = Worker::start(
        &dir,
        "dying",
        &[
            ("HIGHWATER_PARTS_LOCAL", "1"),
            ("HIGHWATER_FAILPOINT", "parts.mid_part"),
        ],
    );
    let coordinator = dir
        .command(&["run"])
        .env("HIGHWATER_PARTS_LOCAL", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while dying.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the worker never reached its failpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dying.output().contains("failpoint parts.mid_part"),
        "{}",
        dying.output()
    );
    let helper = Worker::start(&dir, "helper", &[]);
    let o = coordinator.wait_with_output().unwrap();
    assert_code(&o, 0);
    assert_eq!(helper.staged(), 4, "{}", helper.output());
    let copies = published(&dir);
    assert_eq!(copies.len(), 1);
    assert_each_row_once(&copies[0]);

    // 2. The coordinator dies with every part staged, before its marker:
    //    nothing is published; the next run removes the staged parts.
    let o = dir.hw_env(
        &["run"],
        &[("HIGHWATER_FAILPOINT", "files.after_data_before_marker")],
    );
    assert!(o.status.code() != Some(0), "{}", stderr(&o));
    assert_eq!(
        published(&dir).len(),
        1,
        "a copy without its marker is not visible"
    );
    assert!(
        !staging_leftovers(&dir).is_empty(),
        "the staged parts are left for recovery"
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(
        format!("{}{}", stdout(&o), stderr(&o)).contains("had not published"),
        "{}",
        stderr(&o)
    );
    assert_eq!(published(&dir).len(), 2);

    // 3. The coordinator dies after its marker, before publishing: the
    //    next run publishes that copy, then its own.
    let o = dir.hw_env(
        &["run"],
        &[("HIGHWATER_FAILPOINT", "files.after_marker_before_publish")],
    );
    assert!(o.status.code() != Some(0), "{}", stderr(&o));
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(
        format!("{}{}", stdout(&o), stderr(&o)).contains("its output was published"),
        "{}",
        stderr(&o)
    );
    assert_eq!(published(&dir).len(), 4);

    // 4. The coordinator dies after its own first part while the worker
    //    reads others: the snapshot dies with it; the worker's parts of
    //    that run are never published.
    let o = dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", "parts.after_part")]);
    assert!(o.status.code() != Some(0), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(1500));
    assert_code(&dir.hw(&["run"]), 0);

    stop.store(true, Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0, "the writer ran");
    drop(helper);
    let copies = published(&dir);
    assert_eq!(
        copies.len(),
        5,
        "{:?}",
        copies.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    copies.iter().for_each(assert_each_row_once);
    // Runs that settled left no staged part behind (a worker that was
    // mid-part when its coordinator died may leave its own, unlisted).
    let runs: Vec<String> = copies
        .iter()
        .map(|(m, _)| {
            Path::new(m)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for left in staging_leftovers(&dir) {
        let name = left.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !runs.iter().any(|r| name.starts_with(r.as_str())),
            "{left:?}"
        );
    }
}

/// What cannot share parts is refused when the config loads, naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_partitions_is_refused_where_it_cannot_work() {
    let dir = Dir::new("shared_parts_refused");
    let my = MyDb::new("shared_parts_refused").await;
    let cases = [
        (
            "from: pg\n    partitions: 1\n    to: lake\n    path: t.csv",
            "needs `partitions:`",
        ),
        (
            "from: my\n    partitions: 2\n    to: lake\n    path: t.csv",
            "needs a PostgreSQL source",
        ),
        (
            "from: pg\n    partitions: 2\n    to: pg\n    into: t_copy",
            "needs a file target",
        ),
    ];
    for (stream, why) in cases {
        dir.write(
            "highwater.yaml",
            &format!(
                "connections:\n  pg: postgres://postgres@127.0.0.1:5432/postgres\n  my: {}\n  lake: file://./lake\nstreams:\n  t:\n    table: t\n    mode: full\n    share_partitions: true\n    {stream}\n",
                my.url
            ),
        );
        let o = dir.hw(&["run"]);
        assert_code(&o, 2);
        assert!(
            stderr(&o).contains("share_partitions:") && stderr(&o).contains(why),
            "{why}: {}",
            stderr(&o)
        );
    }
}

/// Parts staged by a worker into Azure Blob (Azurite) and S3 (moto): the
/// same one marker publishes them; nothing stays staged.
async fn parts_on_an_object_store(kind: &str) {
    let container = unique(&format!("{kind}_parts")).replace('_', "-");
    crate::util::objstore(&["create", kind, &container], "");
    let (dir, _pg) = setup(&format!("shared_parts_{kind}"), "").await;
    let text = std::fs::read_to_string(dir.join("highwater.yaml")).unwrap();
    dir.write(
        "highwater.yaml",
        &text.replace("file://./lake", &format!("{kind}://{container}/landing")),
    );
    let env = object_store_env(kind);
    let worker_env = [env.clone(), vec![("HIGHWATER_PARTS_LOCAL", "2")]].concat();
    let worker = Worker::start(&dir, "worker", &worker_env);
    let coordinator_env = [env.clone(), vec![("HIGHWATER_PARTS_LOCAL", "0")]].concat();
    let o = dir.hw_env(&["run"], &coordinator_env);
    assert_code(&o, 0);
    assert_eq!(worker.staged(), 4, "{}", worker.output());

    let all: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&crate::util::objstore(&["dump", kind, &container], "")).unwrap();
    assert!(
        !all.keys().any(|k| k.contains("_highwater/staging/")),
        "staged parts left: {:?}",
        all.keys().collect::<Vec<_>>()
    );
    let data: Vec<(&String, &String)> = all
        .iter()
        .filter(|(k, _)| !k.contains("_highwater/"))
        .collect();
    assert_eq!(data.len(), 4, "{:?}", all.keys().collect::<Vec<_>>());
    let mut rows = Vec::new();
    for (name, body) in &data {
        assert!(
            name.starts_with("landing/t/") && name.ends_with(".csv"),
            "{name}"
        );
        let mut got = parse_csv(body);
        assert!(
            !got.is_empty(),
            "{name} is empty; objects: {:?}",
            all.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
        );
        assert_eq!(got.remove(0), vec!["id", "v", "note"], "{name}");
        rows.extend(got);
    }
    assert_each_row_once(&(container, rows));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_on_azure_blob() {
    parts_on_an_object_store("az").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_on_s3() {
    parts_on_an_object_store("s3").await;
}

/// Coordinators and workers killed at instants spread over their loads,
/// beside a writer moving rows across parts, with the PostgreSQL state:
/// every copy that became visible is whole and listed by its marker; the
/// run after the kills publishes a whole copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinators_and_workers_killed_at_random_instants() {
    let state = PgDb::new("shared_parts_rkill_state").await;
    let (dir, pg) = setup("shared_parts_rkill", &format!("state: {}\n", state.url)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_pg_mover(pg.url.clone(), ROWS, stop.clone());
    let mut a = Worker::start(&dir, "a0", &[("HIGHWATER_PARTS_LOCAL", "1")]);
    let _b = Worker::start(&dir, "b", &[("HIGHWATER_PARTS_LOCAL", "1")]);
    for round in 0..8u64 {
        let mut child = dir
            .command(&["run"])
            .env("HIGHWATER_PARTS_LOCAL", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(40 + round * 60));
        if round % 2 == 1 {
            // A worker dies mid-load too, and comes back.
            drop(a);
            a = Worker::start(
                &dir,
                &format!("a{round}"),
                &[("HIGHWATER_PARTS_LOCAL", "1")],
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    stop.store(true, Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0, "the writer ran");
    let copies = published(&dir);
    assert!(!copies.is_empty());
    copies.iter().for_each(assert_each_row_once);
}

/// Parts whose key range holds no row are still files of their format
/// (a Parquet file with the schema, a CSV header): readers of the folder
/// and `verify` read every part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_parts_are_files_of_their_format() {
    let dir = Dir::new("shared_parts_empty");
    let pg = PgDb::new("shared_parts_empty").await;
    // Keys 1–10 and 100: of four ranges over [1, 100] two hold no row.
    pg.exec(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'r' || g FROM generate_series(1, 10) g;
         INSERT INTO t VALUES (100, 'top');",
    )
    .await;
    for (ext, format) in [("parquet", "parquet"), ("csv", "csv")] {
        dir.write(
            "highwater.yaml",
            &format!(
                "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: full\n    partitions: 4\n    share_partitions: true\n    to: lake\n    path: \"{format}/{{run_id}}.{ext}\"\n",
                pg.url
            ),
        );
        assert_code(&dir.hw(&["run"]), 0);
        let files = dir.files(&format!("lake/{format}"), ext);
        assert_eq!(files.len(), 4, "{files:?}");
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            match format {
                "parquet" => assert!(
                    bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
                    "{f:?} is not a Parquet file"
                ),
                _ => assert!(bytes.starts_with(b"id,v\n"), "{f:?} has no header"),
            }
        }
        let o = dir.hw(&["verify", "t"]);
        assert_code(&o, 0);
        assert!(stdout(&o).contains("11 rows compared"), "{}", stdout(&o));
        assert_code(&dir.hw(&["state", "reset", "t"]), 0);
    }
}
