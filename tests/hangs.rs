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

/// [`silent_server`] that counts the connections it accepted.
fn counting_silent_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            match s {
                Ok(s) => {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    held.push(s)
                }
                Err(_) => return,
            }
        }
    });
    (port, count)
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

/// A connection of `scheme` to a server that accepts and never answers,
/// with `connect_timeout=2`: the run fails within 10 s naming it (redacted).
/// `config` writes the config around the URL it is given.
fn never_answers(tag: &str, scheme: &str, config: impl Fn(&Dir, &str) -> String) {
    let port = silent_server();
    let dir = Dir::new(tag);
    let url = format!("{scheme}://app:s3cretPw@127.0.0.1:{port}/db?connect_timeout=2");
    dir.write("highwater.yaml", &config(&dir, &url));
    let err = assert_fails_in_time(
        &dir,
        &[],
        Duration::from_secs(10),
        &format!("{scheme}://app:***@127.0.0.1:{port}/db"),
    );
    assert!(
        err.contains("no answer within 2 s (connect_timeout"),
        "{err}"
    );
}

fn source_at(_: &Dir, url: &str) -> String {
    format!(
        "connections:\n  src: {url}\n  lake: file://./lake\n{}",
        stream_to("lake")
    )
}

#[test]
fn postgres_source_that_never_answers_fails_within_connect_timeout() {
    never_answers("hang_pg_src", "postgres", source_at);
}

/// `run` starts the source's login before it opens the state store; when
/// that login gets no answer, its error is the run's: the server sees one
/// connection (one `connect_timeout` waited), not a second try after it.
#[test]
fn an_unresponsive_source_is_connected_to_once() {
    for scheme in ["postgres", "mysql"] {
        let (port, accepted) = counting_silent_server();
        let dir = Dir::new("hang_once");
        let url = format!("{scheme}://app:s3cretPw@127.0.0.1:{port}/db?connect_timeout=1");
        dir.write("highwater.yaml", &source_at(&dir, &url));
        let o = run_within(&dir, &["run"], &[], Duration::from_secs(60));
        assert_code(&o, 1);
        assert!(
            stderr(&o).contains("no answer within 1 s (connect_timeout"),
            "{}",
            stderr(&o)
        );
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{scheme}: connections to the unresponsive server"
        );
    }
}

#[test]
fn mariadb_source_that_never_answers_fails_within_connect_timeout() {
    never_answers("hang_my_src", "mysql", source_at);
}

#[test]
fn postgres_target_that_never_answers_fails_within_connect_timeout() {
    never_answers("hang_pg_dst", "postgres", |dir, url| {
        let src = sqlite_source(dir);
        format!(
            "connections:\n  src: {src}\n  dst: {url}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    primary_key: [id]\n    to: dst\n    into: t\n    write: append\n"
        )
    });
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

/// A private PostgreSQL cluster whose messages are German (`LANGUAGE=de`;
/// the machine has the `postgres-15.mo` catalogs but no German locale, so
/// `lc_messages` stays `C.UTF-8` and gettext follows `LANGUAGE`), with
/// password authentication. Stopped and removed on drop.
struct GermanPg {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl GermanPg {
    fn pg_bin() -> std::path::PathBuf {
        let out = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config (PostgreSQL server binaries) must be installed");
        std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// Run a server binary as the `postgres` OS user when we are root
    /// (PostgreSQL refuses to run as root).
    fn cmd(&self, tool: &str) -> std::process::Command {
        let is_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let mut c = if is_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            std::process::Command::new(self.bin.join(tool))
        };
        c.env("LANGUAGE", "de").env("LC_ALL", "C.UTF-8");
        c
    }

    fn start(password: &str) -> GermanPg {
        let dir = std::env::temp_dir().join(unique("pg_de"));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::process::Command::new("chown")
            .args(["postgres"])
            .arg(&dir)
            .output();
        let pw = dir.join("pw");
        std::fs::write(&pw, password).unwrap();
        let _ = std::process::Command::new("chown")
            .args(["postgres"])
            .arg(&pw)
            .output();
        let pg = GermanPg {
            bin: Self::pg_bin(),
            port: closed_port(),
            dir,
        };
        let data = pg.dir.join("data");
        let o = pg
            .cmd("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "--locale=C.UTF-8",
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pw.display()))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = pg
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg.dir.join("log"))
            .args(["-w", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                pg.port,
                pg.dir.display()
            ))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        pg
    }
}

impl Drop for GermanPg {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Exit codes come from SQLSTATEs, not from English message text: a server
/// answering in German gives the same codes as the English one (missing
/// table and missing column: 2, wrong password: 1).
#[tokio::test]
async fn translated_server_messages_give_the_same_exit_codes() {
    let pg = GermanPg::start("Richtig123");
    let url = format!(
        "postgres://postgres:Richtig123@127.0.0.1:{}/postgres",
        pg.port
    );
    let client = pg_connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'a');",
        )
        .await
        .unwrap();
    let err = client
        .batch_execute("SELECT * FROM nope")
        .await
        .unwrap_err();
    let german = err.as_db_error().unwrap().message().to_string();
    assert!(german.contains("existiert nicht"), "not German: {german}");

    let dir = Dir::new("pg_de");
    let case = |table: &str, extra: &str, url: &str| {
        dir.write(
            "highwater.yaml",
            &format!(
                "connections:\n  src: {url}\n  lake: file://./lake\nstreams:\n  s:\n    from: src\n    table: {table}\n{extra}    to: lake\n    path: \"s/s-{{run_id}}.csv\"\n"
            ),
        );
        let o = run_within(&dir, &["run"], &[], Duration::from_secs(60));
        assert!(!stderr(&o).contains("Richtig123"), "{}", stderr(&o));
        o
    };
    let o = case("public.nope", "", &url);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("existiert nicht"), "{}", stderr(&o));
    let o = case("t", "    mode: watermark\n    cursor: updatedat\n", &url);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("updatedat"), "{}", stderr(&o));
    let o = case("t", "", &url.replace("Richtig123", "Falsch"));
    assert_code(&o, 1);
    assert!(stderr(&o).contains("Passwort"), "{}", stderr(&o));
    assert!(dir.files("lake", ".csv").is_empty());
    // The right table copies.
    let o = case("t", "", &url);
    assert_code(&o, 0);
    let rows = all_csv_rows(&dir, "lake");
    assert_eq!(rows, vec![vec!["1".to_string(), "a".to_string()]]);
}
