//! `highwater serve`: scheduled runs, the monitoring page and /metrics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(body: &str, line_prefix: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn serve_runs_schedules_and_reports_metrics() {
    let dir = Dir::new("serve");
    let conn = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id integer primary key, v text); INSERT INTO t (v) VALUES ('a'), ('b');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        "connections:\n  src: sqlite://src.db\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"t/{run_id}.csv\"\n    schedule: \"*/1 * * * * *\"\n  manual:\n    from: src\n    table: t\n    to: lake\n    path: \"m.csv\"\n",
    );
    let (mut child, addr) = spawn_serve(&dir);

    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(
        &get(&addr, "/metrics"),
        "highwater_stream_runs_total{stream=\"t\",status=\"succeeded\"}",
    ) < 2.0
    {
        assert!(Instant::now() < deadline, "no scheduled runs");
        std::thread::sleep(Duration::from_millis(200));
    }
    conn.execute_batch("INSERT INTO t (v) VALUES ('c'), ('d'), ('e');")
        .unwrap();
    while metric(
        &get(&addr, "/metrics"),
        "highwater_stream_rows_written_total{stream=\"t\"}",
    ) < 5.0
    {
        assert!(Instant::now() < deadline, "new rows not copied");
        std::thread::sleep(Duration::from_millis(200));
    }
    let page = get(&addr, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("<td>t</td>") && page.contains("manual"),
        "{page}"
    );
    let runs = get(&addr, "/api/runs");
    assert!(runs.contains("\"status\":\"Succeeded\""), "{runs}");
    assert!(
        get(&addr, "/metrics")
            .contains("highwater_stream_runs_total{stream=\"manual\",status=\"succeeded\"} 0")
    );

    // SIGTERM stops it cleanly.
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut ids: Vec<String> = all_csv_rows(&dir, "lake/t")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3", "4", "5"], "every row exactly once");
    assert!(
        !dir.join("lake/m.csv").exists(),
        "unscheduled streams do not run"
    );
}

#[test]
fn a_bad_schedule_is_a_configuration_error() {
    let dir = Dir::new("serve_bad");
    dir.write(
        "highwater.yaml",
        "connections:\n  src: sqlite://src.db\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    to: lake\n    path: \"t.csv\"\n    schedule: \"every five minutes\"\n",
    );
    let o = dir.hw(&["serve", "--listen", "127.0.0.1:0"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("highwater.yaml:5") && stderr(&o).contains("schedule"),
        "{}",
        stderr(&o)
    );
}

/// Two `serve` workers on one PostgreSQL state store: each firing of a
/// stream's `schedule:` runs on one of them (the first to claim the tick),
/// not on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_each_scheduled_firing_once() {
    let dir = Dir::new("serve_two");
    let conn = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id integer primary key, v text); INSERT INTO t (v) VALUES ('a');",
    )
    .unwrap();
    let state = PgDb::new("serve_two_state").await;
    dir.write(
        "highwater.yaml",
        &format!(
            "state: {}\nconnections:\n  src: sqlite://src.db\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"t/{{run_id}}.csv\"\n    schedule: \"*/1 * * * * *\"\n",
            state.url
        ),
    );
    let (mut a, _) = spawn_serve(&dir);
    let (mut b, _) = spawn_serve(&dir);
    tokio::task::block_in_place(|| std::thread::sleep(Duration::from_secs(6)));
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let o = dir.hw(&["runs", "--json", "--limit", "1000"]);
    assert_code(&o, 0);
    let runs: Vec<serde_json::Value> = serde_json::from_str::<serde_json::Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert!(runs.len() >= 3, "the schedule fired: {runs:#?}");
    let mut seconds: Vec<String> = runs
        .iter()
        .map(|r| r["started_at"].as_str().unwrap()[..19].to_string())
        .collect();
    seconds.sort();
    let n = seconds.len();
    seconds.dedup();
    assert_eq!(
        seconds.len(),
        n,
        "one run per firing, not one per worker: {runs:#?}"
    );
    let rows: usize = dir
        .files("lake/t", ".csv")
        .iter()
        .map(|f| read_csv(f).1.len())
        .sum();
    assert_eq!(rows, 1, "the row arrived once");
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

/// `/metrics` says how far each stream's position is behind its source:
/// the newest cursor less the committed one (seconds for times, units for
/// integers) — 0 right after a run, then what arrived since.
async fn metrics_show_each_streams_lag_behind_its_source(b: Backend) {
    let dir = Dir::new("serve_lag");
    let name = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::Mariadb => "mariadb",
    };
    let db = SrcDb::new(name, &dir, "serve_lag").await;
    let ts = match b {
        Backend::Postgres => "timestamptz",
        Backend::Mariadb => "datetime",
        Backend::Sqlite => "text",
    };
    let zone = match b {
        Backend::Postgres => "+00",
        _ => "",
    };
    db.exec(&format!("CREATE TABLE t (id integer, ts {ts})"))
        .await;
    db.exec(&format!(
        "INSERT INTO t VALUES (1, '2024-01-01 10:00:00{zone}'), (2, '2024-01-01 10:30:00{zone}')"
    ))
    .await;
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  by_time:\n    from: src\n    table: t\n    mode: watermark\n    cursor: ts\n    to: lake\n    path: \"a/{{run_id}}.csv\"\n  by_id:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"b/{{run_id}}.csv\"\n",
            db.url()
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    db.exec(&format!(
        "INSERT INTO t VALUES (3, '2024-01-01 11:00:00{zone}'), (7, '2024-01-01 12:00:00{zone}')"
    ))
    .await;
    let (mut child, addr) = spawn_serve(&dir);
    let body = get(&addr, "/metrics");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        metric(&body, "highwater_stream_lag_seconds{stream=\"by_time\"}"),
        5400.0,
        "{body}"
    );
    assert_eq!(
        metric(&body, "highwater_stream_lag_units{stream=\"by_id\"}"),
        5.0,
        "{body}"
    );
}

conformance!(metrics_show_each_streams_lag_behind_its_source);
