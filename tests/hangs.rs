//! Servers that accept connections and never answer, queries that stall,
//! refused connections: every run ends within the configured limits with
//! one clear message naming the (redacted) connection, exit 1, and the state
//! unchanged. The "never answers" server is a TCP listener in this process
//! that accepts and then holds the socket in silence.

use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// A port whose listener accepts connections and never sends a byte.
fn silent_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            match s {
                Ok(s) => held.push(s),
                Err(_) => return,
            }
        }
    });
    port
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Run highwater, killing it (and failing the test) after `deadline`.
fn run_within(dir: &Dir, args: &[&str], env: &[(&str, &str)], deadline: Duration) -> Output {
    let mut c = dir.command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "highwater {args:?} hung: killed after {deadline:?}\n--- stderr\n{}",
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sqlite_source(dir: &Dir) -> String {
    let path = dir.join("src.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE t (id integer primary key, v text); INSERT INTO t (v) VALUES ('a'), ('b');",
    )
    .unwrap();
    format!("sqlite://{}", path.display())
}

fn stream_to(target: &str) -> String {
    format!(
        "streams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    to: {target}\n    path: \"t/t-{{run_id}}.csv\"\n"
    )
}

/// `run` fails with exit 1 well within `limit`, names `place` and never the
/// password, and the state is what it was before.
fn assert_fails_in_time(dir: &Dir, env: &[(&str, &str)], limit: Duration, place: &str) -> String {
    let before = run_within(dir, &["state", "--json"], &[], Duration::from_secs(30));
    let start = Instant::now();
    let o = run_within(dir, &["run"], env, Duration::from_secs(60));
    let took = start.elapsed();
    assert_code(&o, 1);
    assert!(took < limit, "took {took:?} (limit {limit:?})");
    let err = stderr(&o);
    assert!(err.contains(place), "{err}");
    assert!(!err.contains("s3cretPw"), "password printed: {err}");
    let after = run_within(dir, &["state", "--json"], &[], Duration::from_secs(30));
    assert_eq!(stdout(&before), stdout(&after), "state changed");
    assert!(dir.files("lake", ".csv").is_empty(), "files written");
    err
}

#[test]
fn postgres_source_that_never_answers_fails_within_connect_timeout() {
    let port = silent_server();
    let dir = Dir::new("hang_pg_src");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: postgres://app:s3cretPw@127.0.0.1:{port}/db?connect_timeout=2\n  lake: file://./lake\n{}",
            stream_to("lake")
        ),
    );
    let err = assert_fails_in_time(
        &dir,
        &[],
        Duration::from_secs(10),
        &format!("postgres://app:***@127.0.0.1:{port}/db"),
    );
    assert!(
        err.contains("no answer within 2 s (connect_timeout"),
        "{err}"
    );
}

#[test]
fn mariadb_source_that_never_answers_fails_within_connect_timeout() {
    let port = silent_server();
    let dir = Dir::new("hang_my_src");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: mysql://app:s3cretPw@127.0.0.1:{port}/db?connect_timeout=2\n  lake: file://./lake\n{}",
            stream_to("lake")
        ),
    );
    let err = assert_fails_in_time(
        &dir,
        &[],
        Duration::from_secs(10),
        &format!("mysql://app:***@127.0.0.1:{port}/db"),
    );
    assert!(
        err.contains("no answer within 2 s (connect_timeout"),
        "{err}"
    );
}

#[test]
fn postgres_target_that_never_answers_fails_within_connect_timeout() {
    let port = silent_server();
    let dir = Dir::new("hang_pg_dst");
    let src = sqlite_source(&dir);
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {src}\n  dst: postgres://app:s3cretPw@127.0.0.1:{port}/db?connect_timeout=2\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    primary_key: [id]\n    to: dst\n    into: t\n    write: append\n"
        ),
    );
    let err = assert_fails_in_time(
        &dir,
        &[],
        Duration::from_secs(10),
        &format!("postgres://app:***@127.0.0.1:{port}/db"),
    );
    assert!(
        err.contains("no answer within 2 s (connect_timeout"),
        "{err}"
    );
}

#[test]
fn postgres_state_store_that_never_answers_fails_within_connect_timeout() {
    let port = silent_server();
    let dir = Dir::new("hang_pg_state");
    let src = sqlite_source(&dir);
    dir.write(
        "highwater.yaml",
        &format!(
            "state: postgres://app:s3cretPw@127.0.0.1:{port}/db?connect_timeout=2\nconnections:\n  src: {src}\n  lake: file://./lake\n{}",
            stream_to("lake")
        ),
    );
    let start = Instant::now();
    let o = run_within(&dir, &["run"], &[], Duration::from_secs(30));
    assert_code(&o, 1);
    assert!(start.elapsed() < Duration::from_secs(10));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("postgres://app:***@127.0.0.1:{port}/db")),
        "{err}"
    );
    assert!(!err.contains("s3cretPw"), "{err}");
    assert!(
        err.contains("no answer within 2 s (connect_timeout"),
        "{err}"
    );
    assert!(dir.files("lake", ".csv").is_empty());
}

#[test]
fn s3_endpoint_that_never_answers_fails_within_its_timeout() {
    let port = silent_server();
    let dir = Dir::new("hang_s3");
    let src = sqlite_source(&dir);
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {src}\n  lake: s3://bucket/data\n{}",
            stream_to("lake")
        ),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "s3cretPw"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_TIMEOUT", "2s"),
    ];
    assert_fails_in_time(&dir, &env, Duration::from_secs(15), "s3://bucket");
}

#[tokio::test]
async fn postgres_statement_timeout_stops_a_stalled_read() {
    let db = PgDb::new("hang_stmt").await;
    db.exec(
        "CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    )
    .await;
    let dir = Dir::new("hang_stmt");
    let url = db.url.replace("postgres@", "postgres:s3cretPw@");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {url}?statement_timeout=1\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    query: \"SELECT id, v, pg_sleep(3) IS NULL AS slept FROM t\"\n    mode: full\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n"
        ),
    );
    let err = assert_fails_in_time(&dir, &[], Duration::from_secs(10), "source postgres");
    assert!(err.contains("statement_timeout"), "{err}");
    // Without the limit the same stream copies every row.
    dir.write(
        "highwater.yaml",
        &std::fs::read_to_string(dir.config())
            .unwrap()
            .replace("?statement_timeout=1", ""),
    );
    assert_code(&run_within(&dir, &["run"], &[], Duration::from_secs(60)), 0);
    let mut ids: Vec<String> = all_csv_rows(&dir, "lake")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2"]);
}

#[test]
fn refused_connection_keeps_the_root_cause_once() {
    let port = closed_port();
    let dir = Dir::new("refused");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: postgres://app:s3cretPw@127.0.0.1:{port}/db\n  lake: file://./lake\n{}",
            stream_to("lake")
        ),
    );
    let err = assert_fails_in_time(
        &dir,
        &[],
        Duration::from_secs(15),
        &format!("postgres://app:***@127.0.0.1:{port}/db"),
    );
    let line = err
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.to_lowercase().contains("connection refused"), "{err}");
    for prefix in ["source postgres:", "cannot connect to", "stream t:"] {
        assert!(
            line.matches(prefix).count() <= 1,
            "repeated `{prefix}`: {err}"
        );
    }
}
