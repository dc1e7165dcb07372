//! The factory's triggers under `serve` (issue 9): a TumblingWindowTrigger
//! whose start lies hours back backfills every window, each exactly once,
//! with the window's bounds passed to the pipeline; a restart runs nothing
//! again; `windows` lists them and `windows rerun` reruns a range.

use std::process::Child;
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use serde_json::Value;

use crate::util::*;

/// Hourly windows from five hours before this hour: rows at :10 and :40 of
/// each hour, and in the current hour (not yet due).
fn factory(trigger_extra: &str) -> (Dir, chrono::DateTime<Utc>) {
    let dir = Dir::new("triggers");
    let hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    let start = hour - chrono::Duration::hours(5);
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch("CREATE TABLE events (id INTEGER, ts TEXT)")
        .unwrap();
    let mut id = 0;
    for h in 0..6 {
        for m in [10, 40] {
            id += 1;
            let ts = start + chrono::Duration::hours(h) + chrono::Duration::minutes(m);
            db.execute(
                "INSERT INTO events VALUES (?1, ?2)",
                rusqlite::params![id, ts.format("%Y-%m-%dT%H:%M:%SZ").to_string()],
            )
            .unwrap();
        }
    }
    dir.write(
        "highwater.yaml",
        "connections:\n  Db: sqlite://src.db\n  Lake: file://./lake\n",
    );
    dir.write(
        "dataset/Events.json",
        r#"{"name": "Events", "properties": {"type": "SqliteTable",
            "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "events"}}}"#,
    );
    dir.write(
        "dataset/Out.json",
        r#"{"name": "Out", "properties": {"type": "DelimitedText",
            "linkedServiceName": {"referenceName": "Lake", "type": "LinkedServiceReference"},
            "parameters": {"file": {"type": "String"}},
            "typeProperties": {"location": {"type": "AzureBlobStorageLocation", "folderPath": "windows",
               "fileName": {"value": "@dataset().file", "type": "Expression"}},
               "columnDelimiter": ",", "firstRowAsHeader": true}}}"#,
    );
    dir.write(
        "pipeline/CopyWindow.json",
        r#"{"name": "CopyWindow", "properties": {
            "parameters": {"windowStart": {"type": "String"}, "windowEnd": {"type": "String"}},
            "activities": [{"name": "CopyEvents", "type": "Copy",
               "typeProperties": {"source": {"type": "SqlSource",
                  "sqlReaderQuery": "select id, ts from events where ts >= '@{pipeline().parameters.windowStart}' and ts < '@{pipeline().parameters.windowEnd}' order by id"},
                  "sink": {"type": "DelimitedTextSink"}},
               "inputs": [{"referenceName": "Events", "type": "DatasetReference"}],
               "outputs": [{"referenceName": "Out", "type": "DatasetReference",
                  "parameters": {"file": "@concat('w-', formatDateTime(pipeline().parameters.windowStart, 'yyyyMMddHH'), '-', pipeline().TriggerName, '.csv')"}}]}]}}"#,
    );
    dir.write(
        "trigger/Hourly.json",
        &format!(
            r#"{{"name": "Hourly", "properties": {{"type": "TumblingWindowTrigger", "runtimeState": "Started",
            "typeProperties": {{"frequency": "Hour", "interval": 1, "startTime": "{}",
               "delay": "00:00:00", "maxConcurrency": 2 {trigger_extra}}},
            "pipeline": {{"pipelineReference": {{"referenceName": "CopyWindow", "type": "PipelineReference"}},
               "parameters": {{"windowStart": "@trigger().outputs.windowStartTime",
                               "windowEnd": {{"value": "@trigger().outputs.windowEndTime", "type": "Expression"}}}}}}}}}}"#,
            start.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    );
    (dir, start)
}

fn serve(dir: &Dir) -> Child {
    spawn_serve(dir).0
}

pub(crate) fn windows(dir: &Dir) -> Vec<Value> {
    let o = dir.hw(&["windows", "--json"]);
    assert_code(&o, 0);
    serde_json::from_str::<Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// How many of the windows `highwater windows` lists have succeeded.
fn succeeded(dir: &Dir) -> usize {
    windows(dir)
        .iter()
        .filter(|w| w["status"] == "succeeded")
        .count()
}

/// Start `serve`, wait until `n` windows succeeded, stop it.
fn serve_until(dir: &Dir, n: usize, what: &str) {
    let mut child = serve(dir);
    wait_until(what, 90, || succeeded(dir) == n);
    let _ = child.kill();
    let _ = child.wait();
}

fn run_count(dir: &Dir) -> usize {
    let o = dir.hw(&["runs", "--json", "--limit", "1000"]);
    assert_code(&o, 0);
    serde_json::from_str::<Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Every id that arrived, per file.
fn arrived(dir: &Dir) -> Vec<(String, Vec<i64>)> {
    arrived_in(dir, ".csv")
}

/// Every id that arrived, per file named `*ext`.
fn arrived_in(dir: &Dir, ext: &str) -> Vec<(String, Vec<i64>)> {
    let mut out: Vec<(String, Vec<i64>)> = dir
        .files("lake/windows", ext)
        .iter()
        .map(|f| {
            let ids = read_csv(f)
                .1
                .iter()
                .map(|r| r[0].parse().unwrap())
                .collect();
            (f.file_name().unwrap().to_string_lossy().to_string(), ids)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_tumbling_window_trigger_backfills_each_window_once_across_restarts() {
    let (dir, start) = factory("");
    serve_until(&dir, 5, "five windows to succeed");
    let list = windows(&dir);
    assert_eq!(list.len(), 5, "the current hour is not due: {list:#?}");
    let files = arrived(&dir);
    let expected: Vec<(String, Vec<i64>)> = (0..5)
        .map(|h| {
            let s = start + chrono::Duration::hours(h);
            (
                format!("w-{}-Hourly.csv", s.format("%Y%m%d%H")),
                vec![2 * h + 1, 2 * h + 2],
            )
        })
        .collect();
    assert_eq!(files, expected, "each window's rows, once, in its own file");
    for w in &list {
        assert_eq!(w["attempts"], 1, "{w}");
    }

    // A restart runs nothing again.
    let before = run_count(&dir);
    assert_eq!(before, 5);
    let mut child = serve(&dir);
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(run_count(&dir), 5, "no window ran twice");

    // `windows rerun` runs a range again, now.
    let from = (start + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let to = (start + chrono::Duration::hours(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let o = dir.hw(&["windows", "rerun", "Hourly", "--from", &from, "--to", &to]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o).matches("Succeeded").count(), 2, "{}", stdout(&o));
    assert_eq!(run_count(&dir), 7);
    assert_eq!(
        arrived(&dir),
        expected,
        "rerun windows rewrote their own files"
    );
    let text = stdout(&dir.hw(&["windows", "Hourly"]));
    assert!(text.contains("5 succeeded"), "{text}");
    let list = windows(&dir);
    assert_eq!(list[1]["attempts"], 2);
    assert_eq!(list[0]["attempts"], 1);
}

#[test]
fn a_self_dependent_trigger_runs_windows_in_order() {
    let (dir, start) = factory(
        r#", "dependsOn": [{"type": "SelfDependencyTumblingWindowTriggerReference", "offset": "-01:00:00", "size": "01:00:00"}]"#,
    );
    serve_until(&dir, 5, "five windows to succeed");
    // Each window's run started after the previous window's run ended.
    let o = dir.hw(&["runs", "--json", "--limit", "100"]);
    let mut runs: Vec<Value> = serde_json::from_str::<Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    runs.sort_by_key(|r| r["info"]["windowStart"].as_str().unwrap().to_string());
    assert_eq!(runs.len(), 5);
    assert_eq!(
        runs[0]["info"]["windowStart"],
        start.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    for pair in runs.windows(2) {
        let ended = pair[0]["finished_at"].as_str().unwrap();
        let started = pair[1]["started_at"].as_str().unwrap();
        assert!(started >= ended, "window order: {pair:#?}");
    }
}

/// Two `serve` workers on one PostgreSQL state store share the windows:
/// each window runs on exactly one of them, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_a_postgres_state_store_run_each_window_once() {
    let (dir, start) = factory("");
    let state = PgDb::new("trigger_state").await;
    dir.write(
        "highwater.yaml",
        &format!(
            "state: {}\nconnections:\n  Db: sqlite://src.db\n  Lake: file://./lake\n",
            state.url
        ),
    );
    let mut a = serve(&dir);
    let mut b = serve(&dir);
    let d = &dir;
    tokio::task::block_in_place(|| wait_until("five windows to succeed", 90, || succeeded(d) == 5));
    // Let a worker that lost a race finish whatever it started.
    std::thread::sleep(Duration::from_secs(2));
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let ran: Vec<Value> = {
        let o = dir.hw(&["runs", "--json", "--limit", "100"]);
        serde_json::from_str::<Value>(&stdout(&o))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let mut starts: Vec<String> = ran
        .iter()
        .filter(|r| r["status"] == "Succeeded")
        .map(|r| r["info"]["windowStart"].as_str().unwrap().to_string())
        .collect();
    starts.sort();
    let expected: Vec<String> = (0..5)
        .map(|h| {
            (start + chrono::Duration::hours(h))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .collect();
    assert_eq!(starts, expected, "each window succeeded once: {ran:#?}");
    assert_eq!(ran.len(), 5, "no window ran on both workers: {ran:#?}");
    let ids: Vec<i64> = arrived(&dir).into_iter().flat_map(|(_, ids)| ids).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
}

/// A worker killed with -9 while its windows are half done (each window's
/// Copy has published, a Wait after it is under way): another worker sees
/// the window lock go with the dead worker, records the dead run as
/// failed, and continues each window from its failed activity, so no row
/// is copied twice and every window succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_window_is_taken_over_without_copying_twice() {
    let (dir, _) = factory("");
    let state = PgDb::new("killed_worker").await;
    dir.write(
        "highwater.yaml",
        &format!(
            "state: {}\nconnections:\n  Db: sqlite://src.db\n  Lake: file://./lake\n",
            state.url
        ),
    );
    // Files named by the copy itself (no fileName): a window copied twice
    // would leave two files with the same rows.
    dir.write(
        "dataset/OutGenerated.json",
        r#"{"name": "OutGenerated", "properties": {"type": "DelimitedText",
            "linkedServiceName": {"referenceName": "Lake", "type": "LinkedServiceReference"},
            "typeProperties": {"location": {"type": "AzureBlobStorageLocation", "folderPath": "windows"},
               "columnDelimiter": ",", "firstRowAsHeader": true}}}"#,
    );
    dir.write(
        "pipeline/CopyWindow.json",
        r#"{"name": "CopyWindow", "properties": {
            "parameters": {"windowStart": {"type": "String"}, "windowEnd": {"type": "String"}},
            "activities": [{"name": "CopyEvents", "type": "Copy",
               "typeProperties": {"source": {"type": "SqlSource",
                  "sqlReaderQuery": "select id, ts from events where ts >= '@{pipeline().parameters.windowStart}' and ts < '@{pipeline().parameters.windowEnd}' order by id"},
                  "sink": {"type": "DelimitedTextSink"}},
               "inputs": [{"referenceName": "Events", "type": "DatasetReference"}],
               "outputs": [{"referenceName": "OutGenerated", "type": "DatasetReference"}]},
              {"name": "Settle", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 6},
               "dependsOn": [{"activity": "CopyEvents", "dependencyConditions": ["Succeeded"]}]}]}}"#,
    );
    let mut a = serve(&dir);
    let d = &dir;
    tokio::task::block_in_place(|| {
        wait_until("the first worker's first copy", 60, || {
            !d.files("lake/windows", ".txt").is_empty()
        })
    });
    let _ = a.kill(); // SIGKILL, mid-Wait
    let _ = a.wait();
    assert!(!arrived_in(&dir, ".txt").is_empty());
    let mut b = serve(&dir);
    tokio::task::block_in_place(|| {
        wait_until("the other worker to finish the five windows", 150, || {
            succeeded(d) == 5
        })
    });
    let _ = b.kill();
    let _ = b.wait();
    let files = arrived_in(&dir, ".txt");
    let mut ids: Vec<i64> = files.iter().flat_map(|(_, ids)| ids.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        (1..=10).collect::<Vec<_>>(),
        "every row of the five windows exactly once: {files:?}"
    );
    assert_eq!(files.len(), 5, "one file per window: {files:?}");
    let o = dir.hw(&["runs", "--json", "--limit", "100"]);
    let runs: Vec<Value> = serde_json::from_str::<Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    let failed: Vec<&Value> = runs.iter().filter(|r| r["status"] == "Failed").collect();
    assert!(
        !failed.is_empty() && failed.len() <= 2,
        "the killed worker's runs read as failed: {runs:#?}"
    );
    for f in &failed {
        let start = &f["info"]["windowStart"];
        let took_over = runs.iter().find(|r| {
            r["status"] == "Succeeded"
                && r["info"]["windowStart"] == *start
                && r["info"]["rerunOf"] == f["run_id"]
        });
        assert!(
            took_over.is_some(),
            "window {start} continued from the dead run: {runs:#?}"
        );
    }
}

/// The monitor shows the windows (`/windows`, `/api/windows`, the backlog
/// in `/metrics`) and reruns a range through the API.
#[test]
fn the_monitor_lists_windows_and_reruns_a_range() {
    let (dir, start) = factory("");
    let (mut child, addr) = spawn_serve(&dir);
    wait_until("five windows to succeed", 90, || {
        let (_, body) = http(&addr, "GET", "/api/windows");
        serde_json::from_str::<Value>(&body)
            .map(|v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .filter(|w| w["status"] == "succeeded")
                    .count()
                    == 5
            })
            .unwrap_or(false)
    });
    let (code, page) = http(&addr, "GET", "/windows");
    assert_eq!(code, 200);
    assert!(
        page.contains("Hourly") && page.contains("5 due: 5 succeeded"),
        "{page}"
    );
    let (_, metrics) = http(&addr, "GET", "/metrics");
    assert!(
        metrics.contains("highwater_trigger_windows{trigger=\"Hourly\",status=\"succeeded\"} 5"),
        "{metrics}"
    );
    let from = start.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (code, body) = http(
        &addr,
        "POST",
        &format!(
            "/api/windows/Hourly/rerun?from={from}&to={}",
            (start + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")
        ),
    );
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("\"windows\":1"), "{body}");
    wait_until("the rerun to succeed", 60, || {
        let o = dir.hw(&["runs", "--json", "--limit", "1000"]);
        let runs: Vec<Value> = serde_json::from_str::<Value>(&stdout(&o))
            .map(|v| v.as_array().cloned().unwrap_or_default())
            .unwrap_or_default();
        runs.len() == 6 && runs.iter().all(|r| r["status"] == "Succeeded")
    });
    let (code, _) = http(
        &addr,
        "POST",
        "/api/windows/Nope/rerun?from=2024-01-01T00:00:00Z",
    );
    assert_eq!(code, 404);
    let (code, _) = http(&addr, "POST", "/api/windows/Hourly/rerun?from=yesterday");
    assert_eq!(code, 400);
    let _ = child.kill();
    let _ = child.wait();
    let list = windows(&dir);
    assert_eq!(list[0]["attempts"], 2);
    assert_eq!(list[1]["attempts"], 1);
}

/// A schedule trigger fires once per firing time however many workers
/// share the state store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_fire_a_schedule_trigger_once() {
    let (dir, _) = factory("");
    std::fs::remove_file(dir.join("trigger/Hourly.json")).unwrap();
    dir.write(
        "trigger/EveryMinute.json",
        r#"{"name": "EveryMinute", "properties": {"type": "ScheduleTrigger", "runtimeState": "Started",
            "typeProperties": {"recurrence": {"frequency": "Minute", "interval": 1,
               "startTime": "2024-01-01T00:00:00Z", "timeZone": "UTC"}},
            "pipelines": [{"pipelineReference": {"referenceName": "CopyWindow", "type": "PipelineReference"},
               "parameters": {"windowStart": "@addMinutes(trigger().scheduledTime, -1)",
                              "windowEnd": "@trigger().scheduledTime"}}]}}"#,
    );
    let state = PgDb::new("schedule_state").await;
    dir.write(
        "highwater.yaml",
        &format!(
            "state: {}\nconnections:\n  Db: sqlite://src.db\n  Lake: file://./lake\n",
            state.url
        ),
    );
    let mut a = serve(&dir);
    let mut b = serve(&dir);
    let d = &dir;
    tokio::task::block_in_place(|| {
        wait_until("the first firing", 75, || run_count(d) >= 1);
        // Both workers woke at the same instant; give the slower one time.
        std::thread::sleep(Duration::from_secs(5));
    });
    for c in [&mut a, &mut b] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let o = dir.hw(&["runs", "--json", "--limit", "100"]);
    let runs: Vec<Value> = serde_json::from_str::<Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    let mut times: Vec<&str> = runs
        .iter()
        .map(|r| r["info"]["scheduledTime"].as_str().unwrap())
        .collect();
    let n = times.len();
    times.dedup();
    assert_eq!(times.len(), n, "each firing ran once: {runs:#?}");
    assert_eq!(runs[0]["info"]["trigger"], "EveryMinute");
    assert_eq!(runs[0]["status"], "Succeeded", "{runs:#?}");
}

#[test]
fn bad_triggers_are_configuration_errors_naming_the_trigger() {
    let (dir, _) = factory("");
    dir.write(
        "trigger/Bad.json",
        r#"{"name": "Bad", "properties": {"type": "TumblingWindowTrigger",
            "typeProperties": {"frequency": "Fortnight", "interval": 1, "startTime": "2024-01-01T00:00:00Z"},
            "pipeline": {"pipelineReference": {"referenceName": "CopyWindow"}}}}"#,
    );
    let o = dir.hw(&["serve", "--listen", "127.0.0.1:0"]);
    assert_code(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("trigger Bad") && e.contains("Fortnight"), "{e}");
    let o = dir.hw(&["windows"]);
    assert_code(&o, 2);
    assert_eq!(run_count(&dir), 0, "nothing ran");
}

/// The tutorial "Incrementally copy new files based on time partitioned
/// folder name" under `serve`, with the tumbling window trigger the Copy
/// Data tool creates: each due hour's folder `yyyy/MM/dd/HH` is copied
/// once to the same folder of the destination; the current hour waits.
#[test]
fn the_time_partitioned_folder_tutorial_runs_under_serve_with_its_trigger() {
    let dir = Dir::new("tutorial_partitioned");
    let hour = Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    let start = hour - chrono::Duration::hours(3);
    let mut expected = std::collections::BTreeMap::new();
    for h in 0..=3 {
        let folder = (start + chrono::Duration::hours(h))
            .format("%Y/%m/%d/%H")
            .to_string();
        dir.write(&format!("lake/source/{folder}/a.txt"), &format!("a{h}"));
        dir.write(
            &format!("lake/source/{folder}/more/b.txt"),
            &format!("b{h}"),
        );
        if h < 3 {
            expected.insert(format!("{folder}/a.txt"), format!("a{h}"));
            expected.insert(format!("{folder}/more/b.txt"), format!("b{h}"));
        }
    }
    dir.write(
        "highwater.yaml",
        "connections:\n  AzureStorage: file://./lake\n",
    );
    for (name, container) in [
        ("SourceDataset", "source"),
        ("DestinationDataset", "destination"),
    ] {
        dir.write(
            &format!("dataset/{name}.json"),
            &format!(
                r#"{{"name": "{name}", "properties": {{"type": "Binary",
                    "linkedServiceName": {{"referenceName": "AzureStorage", "type": "LinkedServiceReference"}},
                    "parameters": {{"cw_folderPath": {{"type": "String"}}}},
                    "typeProperties": {{"location": {{"type": "AzureBlobStorageLocation", "container": "{container}",
                        "folderPath": {{"value": "@dataset().cw_folderPath", "type": "Expression"}}}}}}}}}}"#
            ),
        );
    }
    let folder = r#"{"value": "@formatDateTime(pipeline().parameters.windowStart,'yyyy/MM/dd/HH')", "type": "Expression"}"#;
    dir.write(
        "pipeline/CopyPipeline.json",
        &format!(
            r#"{{"name": "CopyPipeline", "properties": {{
                "parameters": {{"windowStart": {{"type": "String"}}}},
                "activities": [{{"name": "Copy_hourly", "type": "Copy",
                    "typeProperties": {{"source": {{"type": "BinarySource", "storeSettings": {{"type": "AzureBlobStorageReadSettings", "recursive": true}}}},
                                       "sink": {{"type": "BinarySink", "storeSettings": {{"type": "AzureBlobStorageWriteSettings"}}}},
                                       "enableStaging": false}},
                    "inputs": [{{"referenceName": "SourceDataset", "type": "DatasetReference", "parameters": {{"cw_folderPath": {folder}}}}}],
                    "outputs": [{{"referenceName": "DestinationDataset", "type": "DatasetReference", "parameters": {{"cw_folderPath": {folder}}}}}]}}]}}}}"#
        ),
    );
    dir.write(
        "trigger/HourlyTrigger.json",
        &format!(
            r#"{{"name": "HourlyTrigger", "properties": {{"type": "TumblingWindowTrigger", "runtimeState": "Started",
                "typeProperties": {{"frequency": "Hour", "interval": 1, "startTime": "{}", "delay": "00:00:00",
                   "maxConcurrency": 50, "retryPolicy": {{"intervalInSeconds": 30}}}},
                "pipeline": {{"pipelineReference": {{"referenceName": "CopyPipeline", "type": "PipelineReference"}},
                   "parameters": {{"windowStart": "@trigger().outputs.windowStartTime"}}}}}}}}"#,
            start.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    );
    serve_until(&dir, 3, "three hourly windows");
    let root = dir.join("lake/destination");
    let copied: std::collections::BTreeMap<String, String> = dir
        .files("lake/destination", "")
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(&root).unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .filter(|(k, _)| !k.starts_with("_highwater"))
        .collect();
    assert_eq!(copied, expected);
    assert_eq!(run_count(&dir), 3, "each window ran once");
}

/// The template "Copy new files only by LastModifiedDate" under `serve`
/// with its 15-minute tumbling window trigger: each due window copies the
/// files last modified in `[windowStart, windowEnd)` once (a file modified
/// at a window's end goes with the next window); the current window waits.
#[test]
fn the_new_files_by_last_modified_template_runs_under_serve_every_15_minutes() {
    let dir = Dir::new("tutorial_lmd");
    let quarter = Utc::now()
        .duration_trunc(chrono::Duration::minutes(15))
        .unwrap();
    let start = quarter - chrono::Duration::minutes(45);
    dir.write(
        "highwater.yaml",
        "connections:\n  DataSourceConnection: file://./lake\n  DataDestinationConnection: file://./lake\n",
    );
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/adf/copy-new-files"
    );
    dir.write(
        "pipeline/CopyNewFilesByLastModifiedDate.json",
        &std::fs::read_to_string(format!("{fixtures}/pipeline.json")).unwrap(),
    );
    for d in ["BinaryDataSourceStore", "BinaryDataDestinationStore"] {
        dir.write(
            &format!("dataset/{d}.json"),
            &std::fs::read_to_string(format!("{fixtures}/datasets/{d}.json")).unwrap(),
        );
    }
    dir.write(
        "trigger/Every15Minutes.json",
        &format!(
            r#"{{"name": "Every15Minutes", "properties": {{"type": "TumblingWindowTrigger", "runtimeState": "Started",
                "typeProperties": {{"frequency": "Minute", "interval": 15, "startTime": "{}", "delay": "00:00:00", "maxConcurrency": 2}},
                "pipeline": {{"pipelineReference": {{"referenceName": "CopyNewFilesByLastModifiedDate", "type": "PipelineReference"}},
                   "parameters": {{"FolderPath_Source": "src", "Directory_Source": "in",
                                   "FolderPath_Destination": "dst", "Directory_Destination": "copied",
                                   "LastModified_From": "@trigger().outputs.windowStartTime",
                                   "LastModified_To": "@trigger().outputs.windowEndTime"}}}}}}}}"#,
            start.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    );
    let at = |minutes: i64| -> std::time::SystemTime {
        (start + chrono::Duration::minutes(minutes)).into()
    };
    for (name, modified) in [
        ("w0.txt", at(5)),
        ("deep/w1.txt", at(20)),
        ("edge.txt", at(30)), // the third window's start: copied once, by it
        ("w2.txt", at(44)),
        ("current.txt", at(45)), // the current window: not due
        ("old.txt", at(-1)),     // before the first window
    ] {
        dir.write(&format!("lake/src/in/{name}"), name);
        std::fs::File::options()
            .write(true)
            .open(dir.join(&format!("lake/src/in/{name}")))
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
    serve_until(&dir, 3, "three 15-minute windows");
    let root = dir.join("lake/dst/copied");
    let mut copied: Vec<String> = dir
        .files("lake/dst/copied", "")
        .into_iter()
        .map(|p| p.strip_prefix(&root).unwrap().to_string_lossy().to_string())
        .collect();
    copied.sort();
    assert_eq!(copied, ["deep/w1.txt", "edge.txt", "w0.txt", "w2.txt"]);
    assert_eq!(run_count(&dir), 3, "each window ran once");
}

fn iso(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A second pipeline `name` copying a window's events (from the table
/// `table`, an expression) and a TumblingWindowTrigger `trigger` running
/// it over the same hours as `Hourly`, with `extra` type properties.
fn dependent(dir: &Dir, start: chrono::DateTime<Utc>, trigger: &str, name: &str, extra: &str) {
    dir.write(
        &format!("pipeline/{name}.json"),
        &format!(
            r#"{{"name": "{name}", "properties": {{
            "parameters": {{"windowStart": {{"type": "String"}}, "windowEnd": {{"type": "String"}}}},
            "activities": [{{"name": "CopyEvents", "type": "Copy",
               "typeProperties": {{"source": {{"type": "SqlSource",
                  "sqlReaderQuery": "select id, ts from events where ts >= '@{{pipeline().parameters.windowStart}}' and ts < '@{{pipeline().parameters.windowEnd}}' order by id"}},
                  "sink": {{"type": "DelimitedTextSink"}}}},
               "inputs": [{{"referenceName": "Events", "type": "DatasetReference"}}],
               "outputs": [{{"referenceName": "Out", "type": "DatasetReference",
                  "parameters": {{"file": "@concat('w-', formatDateTime(pipeline().parameters.windowStart, 'yyyyMMddHH'), '-', pipeline().TriggerName, '.csv')"}}}}]}}]}}}}"#
        ),
    );
    dir.write(
        &format!("trigger/{trigger}.json"),
        &format!(
            r#"{{"name": "{trigger}", "properties": {{"type": "TumblingWindowTrigger", "runtimeState": "Started",
            "typeProperties": {{"frequency": "Hour", "interval": 1, "startTime": "{}",
               "delay": "00:00:00", "maxConcurrency": 5 {extra}}},
            "pipeline": {{"pipelineReference": {{"referenceName": "{name}", "type": "PipelineReference"}},
               "parameters": {{"windowStart": "@trigger().outputs.windowStartTime",
                               "windowEnd": "@trigger().outputs.windowEndTime"}}}}}}}}"#,
            iso(start)
        ),
    );
}

const ON_HOURLY: &str = r#", "dependsOn": [{"type": "TumblingWindowTriggerDependencyReference",
    "referenceTrigger": {"referenceName": "Hourly", "type": "TriggerReference"}, "offset": "00:00:00"}]"#;

fn runs(dir: &Dir) -> Vec<Value> {
    let o = dir.hw(&["runs", "--json", "--limit", "1000"]);
    assert_code(&o, 0);
    serde_json::from_str::<Value>(&stdout(&o))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The window of `trigger` starting at `start` in `windows --json`.
fn window<'a>(list: &'a [Value], trigger: &str, start: &str) -> &'a Value {
    list.iter()
        .find(|w| w["trigger"] == trigger && w["start"] == start)
        .unwrap_or_else(|| panic!("no window {trigger} {start}: {list:#?}"))
}

fn succeeded_of(list: &[Value], trigger: &str) -> usize {
    list.iter()
        .filter(|w| w["trigger"] == trigger && w["status"] == "succeeded")
        .count()
}

/// Trigger `After` depends on `Hourly` (offset 0, the same hours): each of
/// its windows runs, and only runs, once Hourly's window of that hour has
/// succeeded; both copy every window's rows once.
#[test]
fn a_dependent_trigger_runs_each_window_after_the_window_it_depends_on() {
    let (dir, start) = factory("");
    dependent(&dir, start, "After", "CopyAfter", ON_HOURLY);
    let mut child = serve(&dir);
    wait_until("both triggers' five windows to succeed", 120, || {
        let l = windows(&dir);
        succeeded_of(&l, "Hourly") == 5 && succeeded_of(&l, "After") == 5
    });
    let _ = child.kill();
    let _ = child.wait();
    let runs = runs(&dir);
    assert_eq!(runs.len(), 10, "each window ran once: {runs:#?}");
    let run_of = |trigger: &str, at: &str| {
        runs.iter()
            .find(|r| r["info"]["trigger"] == trigger && r["info"]["windowStart"] == at)
            .unwrap_or_else(|| panic!("no run of {trigger} {at}: {runs:#?}"))
    };
    for h in 0..5 {
        let at = iso(start + chrono::Duration::hours(h));
        let (a, b) = (run_of("Hourly", &at), run_of("After", &at));
        assert_eq!(a["status"], "Succeeded");
        assert_eq!(b["status"], "Succeeded");
        assert!(
            b["started_at"].as_str().unwrap() >= a["finished_at"].as_str().unwrap(),
            "After {at} started before Hourly {at} ended: {a:#} {b:#}"
        );
    }
    let expected: Vec<(String, Vec<i64>)> = (0..5)
        .flat_map(|h| {
            let s = (start + chrono::Duration::hours(h)).format("%Y%m%d%H");
            ["After", "Hourly"].map(|t| (format!("w-{s}-{t}.csv"), vec![2 * h + 1, 2 * h + 2]))
        })
        .collect();
    assert_eq!(
        arrived(&dir),
        expected,
        "each window's rows, once per trigger"
    );
}

/// Hourly's window of hour 1 fails (its query reads a table that is not
/// there yet) and Hourly ends after hour 3: After's windows of hours 1 and
/// 4 wait (status `waiting`, saying for what) and do not run while the
/// others do. Once the failed window is rerun to success — by another
/// process — the running `serve` notices and runs After's window of hour 1.
#[test]
fn a_window_waits_while_the_window_it_depends_on_has_not_succeeded() {
    let (dir, start) = factory(&format!(
        r#", "endTime": "{}""#,
        iso(start_of_factory() + chrono::Duration::hours(4))
    ));
    let h = |n: i64| iso(start + chrono::Duration::hours(n));
    // Hourly's window of hour 1 reads the table `late`.
    let pipeline = std::fs::read_to_string(dir.join("pipeline/CopyWindow.json")).unwrap();
    dir.write(
        "pipeline/CopyWindow.json",
        &pipeline.replace(
            "from events",
            &format!(
                "from @{{if(equals(pipeline().parameters.windowStart, '{}'), 'late', 'events')}}",
                h(1)
            ),
        ),
    );
    dependent(&dir, start, "After", "CopyAfter", ON_HOURLY);
    let (mut child, addr) = spawn_serve(&dir);
    wait_until(
        "Hourly's four windows to end and After's three to succeed",
        120,
        || {
            let l = windows(&dir);
            succeeded_of(&l, "Hourly") == 3
                && window(&l, "Hourly", &h(1))["status"] == "failed"
                && succeeded_of(&l, "After") == 3
        },
    );
    // Long enough for a window that wrongly became ready to have started.
    std::thread::sleep(Duration::from_secs(3));
    let l = windows(&dir);
    for n in [0, 2, 3] {
        assert_eq!(window(&l, "After", &h(n))["status"], "succeeded", "{l:#?}");
    }
    let w1 = window(&l, "After", &h(1));
    assert_eq!(w1["status"], "waiting", "{l:#?}");
    assert_eq!(w1["attempts"], 0);
    assert_eq!(
        w1["waiting_for"],
        serde_json::json!([format!("Hourly@{}", h(1))])
    );
    let w4 = window(&l, "After", &h(4));
    assert_eq!(w4["status"], "waiting");
    assert_eq!(
        w4["waiting_for"],
        serde_json::json!(["Hourly after its endTime"])
    );
    let text = stdout(&dir.hw(&["windows", "After"]));
    assert!(
        text.contains("2 waiting") && text.contains("waiting for Hourly@"),
        "{text}"
    );
    let (code, body) = http(&addr, "GET", "/api/windows?trigger=After");
    assert_eq!(code, 200);
    let api: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(window(&api, "After", &h(1))["status"], "waiting", "{body}");
    assert_eq!(
        window(&api, "After", &h(1))["waiting_for"],
        w1["waiting_for"]
    );
    let (_, metrics) = http(&addr, "GET", "/metrics");
    assert!(
        metrics.contains("highwater_trigger_windows{trigger=\"After\",status=\"waiting\"} 2"),
        "{metrics}"
    );
    let ran: Vec<String> = runs(&dir)
        .iter()
        .filter(|r| r["info"]["trigger"] == "After")
        .map(|r| r["info"]["windowStart"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ran.len(), 3, "After ran only its ready windows: {ran:?}");
    assert!(!ran.contains(&h(1)) && !ran.contains(&h(4)), "{ran:?}");
    let files: Vec<String> = arrived(&dir).into_iter().map(|f| f.0).collect();
    let hour1 = (start + chrono::Duration::hours(1)).format("%Y%m%d%H");
    assert!(
        !files.contains(&format!("w-{hour1}-After.csv")),
        "{files:?}"
    );
    assert!(
        !files.contains(&format!("w-{hour1}-Hourly.csv")),
        "{files:?}"
    );

    // The table appears; Hourly's window is rerun from the CLI (another
    // process): the running serve picks the marker up and runs After's.
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch("CREATE TABLE late AS SELECT * FROM events")
        .unwrap();
    let o = dir.hw(&["windows", "rerun", "Hourly", "--from", &h(1), "--to", &h(2)]);
    assert_code(&o, 0);
    wait_until("After's window of hour 1 to succeed", 60, || {
        window(&windows(&dir), "After", &h(1))["status"] == "succeeded"
    });
    let _ = child.kill();
    let _ = child.wait();
    let l = windows(&dir);
    assert_eq!(window(&l, "After", &h(4))["status"], "waiting", "{l:#?}");
    let after: Vec<Value> = runs(&dir)
        .into_iter()
        .filter(|r| r["info"]["trigger"] == "After")
        .collect();
    assert_eq!(after.len(), 4, "{after:#?}");
    assert!(
        after.iter().all(|r| r["status"] == "Succeeded"),
        "{after:#?}"
    );
    let got = arrived(&dir);
    let file = |t: &str| {
        got.iter()
            .find(|f| f.0 == format!("w-{hour1}-{t}.csv"))
            .unwrap_or_else(|| panic!("no {t} file for hour 1: {got:?}"))
            .1
            .clone()
    };
    assert_eq!(file("Hourly"), [3, 4]);
    assert_eq!(file("After"), [3, 4]);
    assert_eq!(
        got.len(),
        8,
        "four windows each, After's hour 4 not run: {got:?}"
    );
}

/// `factory`'s first window start (five hours before this hour).
fn start_of_factory() -> chrono::DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap()
        - chrono::Duration::hours(5)
}

#[test]
fn bad_trigger_dependencies_are_configuration_errors_naming_the_trigger() {
    let (dir, start) = factory("");
    for (extra, says) in [
        (
            r#", "dependsOn": [{"type": "TumblingWindowTriggerDependencyReference", "referenceTrigger": {"referenceName": "Nope"}}]"#,
            "trigger After: typeProperties.dependsOn: trigger `Nope` is not in the factory's trigger/ folder",
        ),
        (
            r#", "dependsOn": [{"type": "TumblingWindowTriggerDependencyReference", "referenceTrigger": {"referenceName": "Hourly"}, "offset": "-1h"}]"#,
            "trigger After: typeProperties.dependsOn[0].offset: \"-1h\" is not a time span",
        ),
    ] {
        dependent(&dir, start, "After", "CopyAfter", extra);
        for args in [&["windows"][..], &["serve", "--listen", "127.0.0.1:0"]] {
            let o = dir.hw(args);
            assert_code(&o, 2);
            assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        }
    }
    assert_eq!(run_count(&dir), 0, "nothing ran");
}
