//! Streams with `window:` (issue 9): tumbling windows of the cursor, each
//! `[start, end)` copied once into its own partition
//! (`{window_start:yyyy}`…), on every backend: by `highwater run`, again by
//! `windows rerun`, after kill -9 at each step of the commit, and by
//! `serve`.

use chrono::{DateTime, DurationRound, Utc};
use serde_json::Value;

use crate::util::*;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mariadb => "mariadb",
        }
    }
}

/// Hours of windows that are due (the current hour is not).
const HOURS: i64 = 4;

/// `events (id, ts, v)` with rows at :00:00 (a window's own start belongs
/// to it), :10 and :59:59 of each of the last `HOURS` hours and of this
/// hour (not due yet). The cursor is a zoned time on PostgreSQL
/// (timestamptz), wall-clock UTC on MariaDB (datetime) and text on SQLite.
/// Returns the database, the first window's start and the ids per hour.
async fn source(b: Backend, dir: &Dir) -> (SrcDb, DateTime<Utc>, Vec<Vec<i64>>) {
    let db = SrcDb::new(b.name(), dir, "stream_windows").await;
    let ts_type = match b {
        Backend::Postgres => "timestamptz",
        Backend::Mariadb => "datetime(6)",
        Backend::Sqlite => "text",
    };
    db.exec(&format!(
        "CREATE TABLE events (id integer, ts {ts_type}, v varchar(20))"
    ))
    .await;
    let hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    let start = hour - chrono::Duration::hours(HOURS);
    let mut id = 0;
    let mut per_hour = Vec::new();
    let mut values = Vec::new();
    for h in 0..=HOURS {
        let mut ids = Vec::new();
        for secs in [0, 600, 3599] {
            id += 1;
            let t = start + chrono::Duration::hours(h) + chrono::Duration::seconds(secs);
            let text = match b {
                Backend::Postgres => t.format("%Y-%m-%d %H:%M:%S+00").to_string(),
                _ => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            };
            values.push(format!("({id}, '{text}', 'v{id}')"));
            ids.push(id);
        }
        per_hour.push(ids);
    }
    db.exec(&format!("INSERT INTO events VALUES {}", values.join(", ")))
        .await;
    (db, start, per_hour)
}

fn config(db: &SrcDb, start: DateTime<Utc>, extra: &str) -> String {
    format!(
        "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  events:\n    from: src\n    table: events\n    mode: watermark\n    cursor: ts\n    window:\n      size: 1h\n      start: \"{}\"\n{extra}    to: lake\n    path: \"events/{{window_start:yyyy}}/{{window_start:MM}}/{{window_start:dd}}/{{window_start:HH}}.csv\"\n",
        db.url(),
        start.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The ids in each partition file, by the file's path under `lake/`.
fn partitions(dir: &Dir) -> Vec<(String, Vec<i64>)> {
    let mut out: Vec<(String, Vec<i64>)> = dir
        .files("lake/events", ".csv")
        .iter()
        .map(|f| {
            let mut ids: Vec<i64> = read_csv(f)
                .1
                .iter()
                .map(|r| r[0].parse().unwrap())
                .collect();
            ids.sort();
            let rel = f
                .strip_prefix(dir.join("lake"))
                .unwrap()
                .to_string_lossy()
                .to_string();
            (rel, ids)
        })
        .collect();
    out.sort();
    out
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What every due window should hold: one file per hour, named after it.
fn expected(start: DateTime<Utc>, per_hour: &[Vec<i64>]) -> Vec<(String, Vec<i64>)> {
    (0..HOURS)
        .map(|h| {
            let w = start + chrono::Duration::hours(h);
            (
                w.format("events/%Y/%m/%d/%H.csv").to_string(),
                per_hour[h as usize].clone(),
            )
        })
        .collect()
}

use super::triggers::windows as window_statuses;

/// `run` copies every due window into its own partition, each row once,
/// the current hour not at all; a second `run` copies nothing again;
/// `windows rerun` replaces one window's file with the same rows.
async fn run_copies_each_due_window_once(b: Backend) {
    let dir = Dir::new("stream_windows");
    let (db, start, per_hour) = source(b, &dir).await;
    dir.write("highwater.yaml", &config(&db, start, ""));
    // The plan: the due windows' range and the rows in them.
    let o = dir.hw(&["plan", "--json"]);
    assert_code(&o, 0);
    let plan: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(plan[0]["rows"], 3 * HOURS, "{plan}");
    assert_eq!(plan[0]["from"], iso(start), "{plan}");
    assert_eq!(
        plan[0]["to"],
        iso(start + chrono::Duration::hours(HOURS)),
        "{plan}"
    );
    let o = dir.hw(&["run", "--json"]);
    assert_code(&o, 0);
    assert_eq!(
        partitions(&dir),
        expected(start, &per_hour),
        "{}",
        stdout(&o)
    );
    // --json: one array, a run record per window, oldest first.
    let runs: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let starts: Vec<String> = runs
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "Succeeded", "{r}");
            r["info"]["windowStart"].as_str().unwrap().to_string()
        })
        .collect();
    let want: Vec<String> = (0..HOURS)
        .map(|h| iso(start + chrono::Duration::hours(h)))
        .collect();
    assert_eq!(starts, want);
    let w = window_statuses(&dir);
    assert_eq!(w.len() as i64, HOURS, "{w:#?}");
    assert!(w.iter().all(|w| w["status"] == "succeeded"), "{w:#?}");

    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("no window due"), "{}", stdout(&o));
    assert_eq!(partitions(&dir), expected(start, &per_hour));

    let second = start + chrono::Duration::hours(1);
    let o = dir.hw(&[
        "windows",
        "rerun",
        "events",
        "--from",
        &second.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "--to",
        &(second + chrono::Duration::hours(1))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    ]);
    assert_code(&o, 0);
    assert_eq!(
        partitions(&dir),
        expected(start, &per_hour),
        "a rerun replaces its window's file: {}",
        stdout(&o)
    );
    let attempts: Vec<u64> = window_statuses(&dir)
        .iter()
        .map(|w| w["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, vec![1, 2, 1, 1]);
}

/// Killed at each step of a window's commit, the next `run` settles it and
/// every window holds its rows exactly once.
async fn a_killed_window_run_leaves_each_row_once(b: Backend) {
    for point in [
        "engine.after_begin_attempt",
        "engine.before_sink_commit",
        "engine.after_publish",
        "engine.after_state_commit",
    ] {
        // Files named per run too: a window copied twice would leave two.
        let dir = Dir::new("stream_windows_kill");
        let (db, start, per_hour) = source(b, &dir).await;
        dir.write(
            "highwater.yaml",
            &config(&db, start, "")
                .replace("{window_start:HH}.csv", "{window_start:HH}-{run_id}.csv"),
        );
        let o = dir.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", point)]);
        assert_eq!(o.status.code(), None, "{point}: killed\n{}", stderr(&o));
        let o = dir.hw(&["run"]);
        assert_code(&o, 0);
        // `events/yyyy/MM/dd/HH-<run id>.csv` → `events/yyyy/MM/dd/HH.csv`
        let got: Vec<(String, Vec<i64>)> = partitions(&dir)
            .into_iter()
            .map(|(f, ids)| (format!("{}.csv", f.split_once('-').unwrap().0), ids))
            .collect();
        assert_eq!(
            got,
            expected(start, &per_hour),
            "{point}: every window once, in one file\n{}",
            stdout(&o)
        );
    }
}

/// Windows into a database table with `write: merge`: a rerun of a window
/// leaves each row once.
async fn windows_merge_into_a_table(b: Backend) {
    let dir = Dir::new("stream_windows_table");
    let (db, start, per_hour) = source(b, &dir).await;
    let text = config(&db, start, "    primary_key: [id]\n")
        .replace("  lake: file://./lake\n", "  dst: sqlite://dst.db\n")
        .replace("    to: lake\n", "    to: dst\n    into: events_copy\n    write: merge\n")
        .replace(
            "    path: \"events/{window_start:yyyy}/{window_start:MM}/{window_start:dd}/{window_start:HH}.csv\"\n",
            "",
        );
    dir.write("highwater.yaml", &text);
    assert_code(&dir.hw(&["run"]), 0);
    let o = dir.hw(&[
        "windows",
        "rerun",
        "events",
        "--from",
        &start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    ]);
    assert_code(&o, 0);
    let dst = rusqlite::Connection::open(dir.join("dst.db")).unwrap();
    let mut st = dst
        .prepare("SELECT id, v FROM events_copy ORDER BY id")
        .unwrap();
    let rows: Vec<(i64, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<(i64, String)> = per_hour[..HOURS as usize]
        .iter()
        .flatten()
        .map(|id| (*id, format!("v{id}")))
        .collect();
    assert_eq!(rows, want, "each due row once, the current hour not yet");
}

conformance!(
    run_copies_each_due_window_once,
    a_killed_window_run_leaves_each_row_once,
    windows_merge_into_a_table,
);

/// `serve` runs a stream's due windows, each once, and lists them.
#[test]
fn serve_runs_the_due_windows_of_a_stream() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = Dir::new("stream_windows_serve");
    let (db, start, per_hour) = rt.block_on(source(Backend::Sqlite, &dir));
    dir.write(
        "highwater.yaml",
        &config(&db, start, "      max_concurrency: 2\n"),
    );
    let (mut child, addr) = spawn_serve(&dir);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (code, body) = http(&addr, "GET", "/api/windows?trigger=events");
        assert_eq!(code, 200, "{body}");
        let l: Vec<Value> = serde_json::from_str(&body).unwrap();
        if l.len() as i64 == HOURS && l.iter().all(|w| w["status"] == "succeeded") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "windows: {l:#?}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let (_, page) = http(&addr, "GET", "/windows");
    assert!(page.contains("events"), "{page}");
    let (_, page) = http(&addr, "GET", "/");
    assert!(page.contains("windows of 60 min"), "{page}");
    // "Run now" is for scheduled streams: a window runs when it is due.
    let (code, body) = http(&addr, "POST", "/api/streams/events/trigger");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("runs in windows"), "{body}");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(partitions(&dir), expected(start, &per_hour));
}

/// Bad `window:` settings are configuration errors naming the field.
#[test]
fn bad_windows_are_configuration_errors() {
    let dir = Dir::new("stream_windows_bad");
    let base = "connections:\n  src: sqlite://src.db\n  lake: file://./lake\nstreams:\n  events:\n    from: src\n    table: events\n    to: lake\n";
    for (body, says) in [
        (
            "    mode: full\n    window: {size: 1h, start: \"2026-01-01T00:00:00Z\"}\n    path: \"e/{window_start:yyyy}.csv\"\n",
            "window: needs mode watermark",
        ),
        (
            "    mode: watermark\n    cursor: ts\n    window: {size: 90s, start: \"2026-01-01T00:00:00Z\"}\n    path: \"e/{window_start:yyyy}.csv\"\n",
            "window.size",
        ),
        (
            "    mode: watermark\n    cursor: ts\n    window: {size: 1h}\n    path: \"e/{window_start:yyyy}.csv\"\n",
            "window.start is required",
        ),
        (
            "    mode: watermark\n    cursor: ts\n    schedule: \"* * * * *\"\n    window: {size: 1h, start: \"2026-01-01\"}\n    path: \"e/{window_start:yyyy}.csv\"\n",
            "either `schedule` or `window`",
        ),
        (
            "    mode: watermark\n    cursor: ts\n    window: {size: 1h, start: \"2026-01-01\"}\n    path: \"e/{window_start:yyyy-Q}.csv\"\n",
            "not a window format",
        ),
        (
            "    mode: watermark\n    cursor: ts\n    window: {size: 1h, start: \"2026-01-01\"}\n    path: \"e/events.csv\"\n",
            "needs {window_start:",
        ),
        (
            "    mode: watermark\n    cursor: ts\n    path: \"e/{window_start:yyyy}-{run_id}.csv\"\n",
            "for streams with `window:` only",
        ),
    ] {
        dir.write("highwater.yaml", &format!("{base}{body}"));
        let o = dir.hw(&["check"]);
        assert_code(&o, 2);
        let e = stderr(&o);
        assert!(e.contains(says) && e.contains("events"), "{body}\n→ {e}");
    }
}
