//! The monitor of `highwater serve` (issue 9): `/api/runs` filters and
//! paging, run pages with activity runs and escaped hostile names, the
//! trigger / rerun / cancel endpoints, the token rule off loopback, and
//! `--log-format json`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// A running `highwater serve`; killed on drop.
struct Server {
    child: Child,
    /// Where to reach it (127.0.0.1 even when it listens on 0.0.0.0).
    addr: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(dir: &Dir, listen: &str, env: &[(&str, &str)]) -> Server {
        let mut c = dir.command(&["serve", "--listen", listen, "--log-format", "json"]);
        c.env_remove("HIGHWATER_TOKEN");
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let port = first
            .split("http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let stdout = Arc::new(Mutex::new(first + "\n"));
        let out = stdout.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                out.lock().unwrap().push_str(&(l + "\n"));
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                err.lock().unwrap().push_str(&(l + "\n"));
            }
        });
        Server {
            child,
            addr: format!("127.0.0.1:{port}"),
            stdout,
            stderr,
        }
    }

    fn get(&self, path: &str) -> Reply {
        request(&self.addr, "GET", path, &[])
    }

    fn get_json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body))
    }

    fn post(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(&self.addr, "POST", path, headers)
    }

    /// The run once it has ended.
    fn wait_for_end(&self, run_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get(&format!("/api/runs/{run_id}"));
            if r.status == 200 {
                let run: Value = serde_json::from_str(&r.body).unwrap();
                if run["status"] != "InProgress" {
                    return run;
                }
            }
            assert!(Instant::now() < deadline, "run {run_id} did not end");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> (String, String) {
        (
            self.stdout.lock().unwrap().clone(),
            self.stderr.lock().unwrap().clone(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn ids(runs: &Value) -> Vec<String> {
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect()
}

fn run_id_of(o: &std::process::Output) -> String {
    stdout(o)
        .split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .unwrap_or_else(|| panic!("no run id in {}", stdout(o)))
        .to_string()
}

/// Two streams over `t (id, v)` with rows 1..=3, and a third whose table
/// does not exist (its runs fail).
fn streams_dir(tag: &str) -> Dir {
    streams_dir_with(tag, "")
}

/// [`streams_dir`] whose config starts with `head` (e.g. a `state:` line).
fn streams_dir_with(tag: &str, head: &str) -> Dir {
    let dir = Dir::new(tag);
    let conn = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id integer primary key, v text); \
         INSERT INTO t (v) VALUES ('a'), ('b'), ('c');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        &(head.to_string()
            + "connections:\n  src: sqlite://src.db\n  lake: file://./lake\nstreams:\n  \
         a:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"a/{run_id}.csv\"\n  \
         b:\n    from: src\n    table: t\n    to: lake\n    path: \"b/{run_id}.csv\"\n  \
         gone:\n    from: src\n    table: missing\n    to: lake\n    path: \"gone/{run_id}.csv\"\n"),
    );
    dir
}

fn csv_ids(dir: &Dir, sub: &str) -> Vec<String> {
    let mut ids: Vec<String> = all_csv_rows(dir, sub)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    ids.sort();
    ids
}

#[test]
fn api_runs_filters_and_pages_return_exactly_the_runs_asked_for() {
    filters_and_pages(&streams_dir("monitor_api"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_runs_filters_and_pages_with_a_postgres_state() {
    let state = PgDb::new("monitor_state").await;
    let dir = streams_dir_with("monitor_api_pg", &format!("state: {}\n", state.url));
    tokio::task::block_in_place(|| filters_and_pages(&dir));
}

/// Four stream runs and a pipeline run, then every filter of `/api/runs`.
fn filters_and_pages(dir: &Dir) {
    dir.write(
        "pipeline.json",
        r#"{"name": "P", "properties": {"activities": [
            {"name": "a", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 0}}]}}"#,
    );
    let mut runs = Vec::new();
    for (args, code) in [
        (["run", "a"], 0),
        (["run", "b"], 0),
        (["run", "a"], 0),
        (["run", "gone"], 2),
    ] {
        let o = dir.hw(&args);
        assert_code(&o, code);
        runs.push(run_id_of(&o));
    }
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 0);
    let r5 = run_id_of(&o);
    assert_eq!(csv_ids(dir, "lake/a"), ["1", "2", "3"], "a: once");
    assert_eq!(csv_ids(dir, "lake/b"), ["1", "2", "3"]);
    let (r1, r2, r3, r4) = (
        runs[0].as_str(),
        runs[1].as_str(),
        runs[2].as_str(),
        runs[3].as_str(),
    );
    let server = Server::start(dir, "127.0.0.1:0", &[]);

    let r5 = r5.as_str();
    let all = server.get("/api/runs");
    let total = |r: &Reply| r.head.to_ascii_lowercase().contains("x-total-count: 5");
    assert!(total(&all), "{}", all.head);
    assert_eq!(ids(&all.json()), [r5, r4, r3, r2, r1], "newest first");
    assert_eq!(ids(&server.get_json("/api/runs?limit=2")), [r5, r4]);
    let page2 = server.get("/api/runs?limit=2&offset=2");
    assert_eq!(ids(&page2.json()), [r3, r2]);
    assert!(total(&page2), "{}", page2.head);
    assert_eq!(ids(&server.get_json("/api/runs?limit=2&offset=4")), [r1]);
    assert_eq!(ids(&server.get_json("/api/runs?offset=5")).len(), 0);
    // A pipeline's name selects its runs, not streams named like its activities.
    assert_eq!(ids(&server.get_json("/api/runs?name=P")), [r5]);
    assert_eq!(ids(&server.get_json("/api/runs?status=Failed")), [r4]);
    assert_eq!(
        ids(&server.get_json("/api/runs?status=succeeded&name=a")),
        [r3, r1]
    );
    assert_eq!(ids(&server.get_json("/api/runs?name=b")), [r2]);
    assert_eq!(ids(&server.get_json("/api/runs?name=nothing")).len(), 0);
    // The time range: from is inclusive, to exclusive.
    let all = all.json();
    let started = |i: usize| all[4 - i]["started_at"].as_str().unwrap().to_string();
    let enc = |s: String| s.replace(':', "%3A").replace('+', "%2B");
    assert_eq!(
        ids(&server.get_json(&format!(
            "/api/runs?from={}&to={}",
            enc(started(1)),
            enc(started(3))
        ))),
        [r3, r2]
    );
    assert_eq!(
        ids(&server.get_json(&format!(
            "/api/runs?from={}&status=Succeeded",
            enc(started(1))
        ))),
        [r5, r3, r2]
    );
    // Filters that do not parse are refused, naming the parameter.
    for bad in ["limit=two", "status=Great", "from=yesterday", "offset=-1"] {
        let r = server.get(&format!("/api/runs?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(
            r.body.contains(bad.split('=').next().unwrap()),
            "{}",
            r.body
        );
    }
    let one = server.get_json(&format!("/api/runs/{r2}"));
    assert_eq!(one["run_id"], r2);
    assert_eq!(one["streams"][0]["stream"], "b");
    assert_eq!(one["streams"][0]["rows_written"], 3);
    assert_eq!(server.get("/api/runs/no-such-run").status, 404);
    assert_eq!(server.get("/healthz").body, "ok\n");

    // The page lists the same runs, filtered and paged.
    let page = server.get("/?status=Failed").body;
    assert!(page.contains(&format!("/runs/{r4}")), "{page}");
    assert!(!page.contains(&format!("/runs/{r1}")), "{page}");
    assert!(
        page.contains("Stream gone") && page.contains("runs 1–1 of 1"),
        "{page}"
    );
    let page = server.get("/?limit=2").body;
    assert!(page.contains(&format!("/runs/{r5}")) && page.contains(&format!("/runs/{r4}")));
    assert!(!page.contains(&format!("/runs/{r3}")), "{page}");
    assert!(page.contains("Pipeline P"), "{page}");
    assert!(
        page.contains("offset=2") && page.contains("older"),
        "{page}"
    );
    assert!(
        page.contains(" UTC</time>"),
        "start times say their zone: {page}"
    );
    let run = server.get(&format!("/runs/{r4}")).body;
    assert!(
        run.contains("missing") && run.contains("class=err"),
        "{run}"
    );
}

/// A pipeline whose Copy activity has a hostile name, and whose Lookup
/// `Gate` fails until the table `gate` exists.
fn hostile_pipeline() -> Dir {
    let dir = sqlite_factory("monitor_pipe", "");
    dir.write(
        "dataset/Table.json",
        r#"{"name": "Table", "properties": {"type": "AzureSqlTable",
            "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "t"}}}"#,
    );
    dir.write(
        "dataset/Out.json",
        r#"{"name": "Out", "properties": {"type": "DelimitedText",
            "linkedServiceName": {"referenceName": "Lake", "type": "LinkedServiceReference"},
            "typeProperties": {"location": {"type": "AzureBlobStorageLocation",
                "folderPath": "out", "fileName": "t.csv"}, "firstRowAsHeader": true}}}"#,
    );
    dir.write(
        "pipeline.json",
        r#"{"name": "Nightly<b>", "properties": {"activities": [
          {"name": "<script>alert(1)</script>", "type": "Copy",
           "inputs": [{"referenceName": "Table", "type": "DatasetReference"}],
           "outputs": [{"referenceName": "Out", "type": "DatasetReference"}],
           "typeProperties": {"source": {"type": "SqlSource"}, "sink": {"type": "DelimitedTextSink"}}},
          {"name": "Gate", "type": "Lookup",
           "dependsOn": [{"activity": "<script>alert(1)</script>", "dependencyConditions": ["Succeeded"]}],
           "typeProperties": {"source": {"type": "SqlSource", "sqlReaderQuery": "select count(*) as n from gate"},
             "dataset": {"referenceName": "Table", "type": "DatasetReference"}}}]}}"#,
    );
    dir
}

#[test]
fn run_page_shows_activity_runs_escaped_and_reruns_from_failed_through_the_api() {
    let dir = hostile_pipeline();
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 1);
    let first = run_id_of(&o);
    assert_eq!(csv_ids(&dir, "lake/out"), ["1", "2", "3"]);
    let server = Server::start(&dir, "127.0.0.1:0", &[]);

    let page = server.get(&format!("/runs/{first}"));
    assert_eq!(page.status, 200);
    assert!(
        page.head
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'"),
        "{}",
        page.head
    );
    let page = page.body;
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "unescaped: {page}");
    assert!(page.contains("Pipeline Nightly&lt;b&gt;") && !page.contains("Nightly<b>"));
    assert!(
        page.contains("<td>Gate</td>") && page.contains("no such table: gate"),
        "{page}"
    );
    // The Copy's input and output JSON, pretty-printed; rows read and written.
    assert!(page.contains("&quot;rowsCopied&quot;: 3"), "{page}");
    assert!(page.contains("DelimitedTextSink"), "{page}");
    assert!(
        page.contains("<td class=n>3</td><td class=n>3</td>"),
        "{page}"
    );
    assert!(page.contains("Rerun from failed"), "{page}");
    let list = server.get("/").body;
    assert!(list.contains("Pipeline Nightly&lt;b&gt;") && !list.contains("Nightly<b>"));
    assert_eq!(
        ids(&server.get_json("/api/runs?name=Nightly%3Cb%3E")),
        [first.as_str()]
    );

    // Rerun from failed through the API: the copy is reused, the gate passes.
    rusqlite::Connection::open(dir.join("src.db"))
        .unwrap()
        .execute_batch("CREATE TABLE gate (x int);")
        .unwrap();
    let r = server.post(&format!("/api/runs/{first}/rerun?from_failed=true"), &[]);
    assert_eq!(r.status, 202, "{}", r.body);
    let second = r.json()["run_id"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    let run = server.wait_for_end(&second);
    assert_eq!(run["status"], "Succeeded", "{run:#}");
    assert_eq!(run["info"]["rerunOf"], first.as_str());
    let copy = run["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "<script>alert(1)</script>")
        .unwrap();
    assert_eq!(copy["rows_written"], 0, "reused, not copied: {copy:#}");
    assert_eq!(csv_ids(&dir, "lake/out"), ["1", "2", "3"], "no row twice");
    let page = server.get(&format!("/runs/{second}")).body;
    assert!(page.contains("Rerun from failed") && page.contains(&format!("/runs/{first}")));

    // A succeeded run cannot be rerun from failed; unknown runs are 404.
    let r = server.post(&format!("/api/runs/{second}/rerun?from_failed=true"), &[]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("succeeded"), "{}", r.body);
    assert_eq!(server.post("/api/runs/nope/rerun", &[]).status, 404);
    let (_, err) = server.logs();
    for line in err.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
    assert!(err.contains("\"event\":\"pipeline_finished\""), "{err}");
}

#[test]
fn changes_off_loopback_need_the_token_and_are_refused_without_one() {
    let dir = streams_dir("monitor_token");
    // No token configured on a listener beyond loopback: read-only.
    let server = Server::start(&dir, "0.0.0.0:0", &[]);
    assert_eq!(server.get("/api/runs").body, "[]");
    for path in [
        "/api/streams/a/trigger",
        "/api/runs/x/rerun",
        "/api/runs/x/cancel",
    ] {
        let r = server.post(path, &[("Authorization", "Bearer guess")]);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("HIGHWATER_TOKEN"), "{}", r.body);
    }
    assert_eq!(server.get("/api/runs").body, "[]", "nothing ran");
    assert!(dir.files("lake", ".csv").is_empty());
    drop(server);

    let token = "s3cret-token-value";
    let server = Server::start(&dir, "0.0.0.0:0", &[("HIGHWATER_TOKEN", token)]);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret-token-valuX"),
        Some(token),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = server.post("/api/streams/a/trigger", &headers);
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
    }
    // A page of another site cannot drive it through a browser.
    let bearer = format!("Bearer {token}");
    let r = server.post(
        "/api/streams/a/trigger",
        &[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(server.get("/api/runs").body, "[]", "nothing ran");
    assert!(dir.files("lake", ".csv").is_empty());

    let r = server.post(
        "/api/streams/a/trigger",
        &[("Authorization", &format!("bearer {token}"))],
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let run = server.wait_for_end(r.json()["run_id"].as_str().unwrap());
    assert_eq!(run["status"], "Succeeded", "{run:#}");
    assert_eq!(csv_ids(&dir, "lake/a"), ["1", "2", "3"]);
    let (out, err) = server.logs();
    assert!(
        !out.contains(token) && !err.contains(token),
        "the token is never logged"
    );
}

#[test]
fn trigger_runs_the_stream_now_and_logs_json_events() {
    let dir = streams_dir("monitor_trigger");
    let server = Server::start(&dir, "127.0.0.1:0", &[]);
    let r = server.post("/api/streams/a/trigger", &[]);
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["run_id"].as_str().unwrap().to_string();
    let run = server.wait_for_end(&id);
    assert_eq!(run["status"], "Succeeded", "{run:#}");
    assert_eq!(run["info"]["trigger"], "Manual");
    assert_eq!(run["streams"][0]["rows_written"], 3);
    assert_eq!(csv_ids(&dir, "lake/a"), ["1", "2", "3"]);
    // New rows: the next trigger copies only them.
    rusqlite::Connection::open(dir.join("src.db"))
        .unwrap()
        .execute_batch("INSERT INTO t (v) VALUES ('d');")
        .unwrap();
    let r = server.post("/api/streams/a/trigger", &[]);
    let run = server.wait_for_end(r.json()["run_id"].as_str().unwrap());
    assert_eq!(run["streams"][0]["rows_written"], 1);
    assert_eq!(csv_ids(&dir, "lake/a"), ["1", "2", "3", "4"]);
    assert_eq!(server.post("/api/streams/nope/trigger", &[]).status, 404);
    let page = server.get(&format!("/runs/{id}")).body;
    assert!(
        page.contains("Run a now") && page.contains("<td>a</td>"),
        "{page}"
    );

    let (_, err) = server.logs();
    let events: Vec<Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let finished = events
        .iter()
        .find(|e| e["event"] == "stream_finished" && e["run_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no stream_finished for {id}: {err}"));
    assert_eq!(finished["stream"], "a");
    assert_eq!(finished["rows_written"], 3);
    assert_eq!(finished["status"], "Succeeded");
}

#[test]
fn a_running_pipeline_run_can_be_cancelled() {
    let dir = sqlite_factory("monitor_cancel", "");
    rusqlite::Connection::open(dir.join("src.db"))
        .unwrap()
        .execute_batch("CREATE TABLE cfg (secs int); INSERT INTO cfg VALUES (0);")
        .unwrap();
    dir.write(
        "dataset/Table.json",
        r#"{"name": "Table", "properties": {"type": "AzureSqlTable",
            "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "t"}}}"#,
    );
    dir.write(
        "pipeline.json",
        r#"{"name": "Slow", "properties": {"activities": [
          {"name": "Secs", "type": "Lookup", "typeProperties": {
             "source": {"type": "SqlSource", "sqlReaderQuery": "select secs from cfg"},
             "dataset": {"referenceName": "Table", "type": "DatasetReference"}}},
          {"name": "Pause", "type": "Wait",
           "dependsOn": [{"activity": "Secs", "dependencyConditions": ["Succeeded"]}],
           "typeProperties": {"waitTimeInSeconds": {"value": "@activity('Secs').output.firstRow.secs", "type": "Expression"}}}]}}"#,
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 0);
    let first = run_id_of(&o);
    rusqlite::Connection::open(dir.join("src.db"))
        .unwrap()
        .execute_batch("UPDATE cfg SET secs = 600;")
        .unwrap();
    let server = Server::start(&dir, "127.0.0.1:0", &[]);
    let r = server.post(&format!("/api/runs/{first}/rerun"), &[]);
    assert_eq!(r.status, 202, "{}", r.body);
    let second = r.json()["run_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server
        .get(&format!("/api/runs/{second}"))
        .body
        .contains("\"stream\":\"Pause\"")
    {
        assert!(Instant::now() < deadline, "Pause never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = server.get(&format!("/runs/{second}")).body;
    assert!(page.contains(">Cancel</button>"), "{page}");
    let r = server.post(&format!("/api/runs/{second}/cancel"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let run = server.get_json(&format!("/api/runs/{second}"));
    assert_eq!(run["status"], "Failed", "{run:#}");
    let pause = run["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "Pause")
        .unwrap();
    assert_eq!(pause["status"], "Failed");
    assert!(
        pause["error"].as_str().unwrap().contains("Cancelled"),
        "{pause:#}"
    );
    assert_eq!(
        server
            .post(&format!("/api/runs/{second}/cancel"), &[])
            .status,
        409,
        "an ended run cannot be cancelled"
    );
    assert_eq!(
        server.get_json(&format!("/api/runs/{first}"))["status"],
        "Succeeded"
    );
}

/// The issue's browser check: headless Chromium (driven by playwright-core,
/// both installed by `.ci/run`) opens the list, clicks through to the
/// failed run, presses "Rerun from failed" and sees the new run succeed.
#[test]
fn a_browser_clicks_through_to_a_failed_run_and_reruns_it_from_failed() {
    let tools = std::env::var("HIGHWATER_CI_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/highwater-ci")
        });
    let modules = tools.join("node_modules");
    let chromium = std::env::var("HIGHWATER_TEST_CHROMIUM")
        .unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    assert!(
        modules.join("playwright-core").is_dir() && std::path::Path::new(&chromium).exists(),
        "needs Chromium at {chromium} and playwright-core in {}: run .ci/run, or \
         `apt-get install -y chromium && npm install --prefix {} playwright-core@1`",
        modules.display(),
        tools.display()
    );
    let dir = hostile_pipeline();
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 1);
    let first = run_id_of(&o);
    rusqlite::Connection::open(dir.join("src.db"))
        .unwrap()
        .execute_batch("CREATE TABLE gate (x int);")
        .unwrap();
    let server = Server::start(&dir, "127.0.0.1:0", &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/monitor_browser.mjs");
    let o = std::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{}", server.addr))
        .arg(&first)
        .env("NODE_PATH", &modules)
        .env("HIGHWATER_TEST_CHROMIUM", &chromium)
        .current_dir(&dir.path)
        .output()
        .expect("run node");
    assert_code(&o, 0);
    let second = stdout(&o)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let run = server.get_json(&format!("/api/runs/{second}"));
    assert_eq!(run["status"], "Succeeded", "{run:#}");
    assert_eq!(run["info"]["rerunOf"], first.as_str());
    assert_eq!(csv_ids(&dir, "lake/out"), ["1", "2", "3"], "no row twice");
}

/// A connection URL's password appears nowhere the monitor shows, even
/// when the run fails connecting with it.
#[test]
fn no_page_or_api_shows_a_connection_secret() {
    let dir = Dir::new("monitor_secret");
    let secret = "Zq9SecretPw";
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  pg: postgres://app:{secret}@127.0.0.1:1/db?connect_timeout=2\n  \
             lake: file://./lake\nstreams:\n  t:\n    from: pg\n    table: t\n    to: lake\n    \
             path: \"t.csv\"\n"
        ),
    );
    let server = Server::start(&dir, "127.0.0.1:0", &[]);
    let r = server.post("/api/streams/t/trigger", &[]);
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["run_id"].as_str().unwrap().to_string();
    let run = server.wait_for_end(&id);
    assert_eq!(run["status"], "Failed", "{run:#}");
    assert!(run["streams"][0]["error"].is_string(), "{run:#}");
    for path in [
        "/".to_string(),
        format!("/runs/{id}"),
        "/api/runs".to_string(),
        format!("/api/runs/{id}"),
        "/api/streams".to_string(),
        "/metrics".to_string(),
    ] {
        let body = server.get(&path).body;
        assert!(!body.contains(secret), "{path} shows the password: {body}");
    }
    let (out, err) = server.logs();
    assert!(
        !out.contains(secret) && !err.contains(secret),
        "{out}\n{err}"
    );
    assert!(dir.files("lake", ".csv").is_empty(), "nothing arrived");
}
