//! A new user's first hour (issue 13): commands that read history need no
//! connection secret, a pipeline-only config is served and shown, empty
//! answers say so, and the output is clean.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::util::*;

/// A SQLite source `t` with three rows, a file lake, one watermark stream,
/// and a second connection whose URL needs `${HW_FH_SECRET}`.
fn secret_config() -> Dir {
    let dir = Dir::new("first_hour");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t (v) VALUES ('a'), ('b'), ('c');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        "connections:\n  src: sqlite://src.db\n  lake: file://./lake\n  wh: postgres://app:${HW_FH_SECRET}@127.0.0.1:5432/wh\n  other: ${HW_FH_OTHER_URL}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"t/t-{run_id}.csv\"\n",
    );
    dir
}

const SECRETS: &[(&str, &str)] = &[
    ("HW_FH_SECRET", "s3cr3t-pw"),
    ("HW_FH_OTHER_URL", "sqlite://other.db"),
];

#[test]
fn runs_and_state_need_no_connection_secret() {
    let dir = secret_config();
    let o = dir.hw_env(&["run"], SECRETS);
    assert_code(&o, 0);
    let rows = all_csv_rows(&dir, "lake/t");
    assert_eq!(rows.len(), 3, "{rows:?}");

    // Without the variables: history is readable.
    let o = dir.hw(&["runs"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("Succeeded") && stdout(&o).contains("3 rows"),
        "{}",
        stdout(&o)
    );
    let o = dir.hw(&["state"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("t ") && out.contains("watermark") && out.contains('3'),
        "{out}"
    );
    let o = dir.hw(&["state", "--json"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["stream"], "t");
    assert_eq!(v[0]["watermark"], "3");
    // … and `state reset` too.
    let o = dir.hw(&["state", "reset", "t"]);
    assert_code(&o, 0);
    // `run` still needs them, and says which.
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("HW_FH_SECRET"), "{}", stderr(&o));
    assert_eq!(
        all_csv_rows(&dir, "lake/t").len(),
        3,
        "nothing more written"
    );
}

#[test]
fn a_state_url_variable_is_still_needed_and_named() {
    let dir = secret_config();
    let text = std::fs::read_to_string(dir.config()).unwrap();
    dir.write(
        "highwater.yaml",
        &format!("state: postgres://postgres@127.0.0.1:5432/${{HW_FH_STATE_DB}}\n{text}"),
    );
    for args in [&["runs"][..], &["state"][..]] {
        let o = dir.hw(args);
        assert_code(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains("state: environment variable HW_FH_STATE_DB is not set"),
            "{err}"
        );
        assert!(err.contains("state store"), "{err}");
        assert!(
            !err.contains("HW_FH_SECRET"),
            "only the state's variable: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// A config with connections only, and a pipeline that copies `t`.
fn pipeline_only() -> Dir {
    let dir = Dir::new("first_hour_pl");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t (v) VALUES ('a'), ('b');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        "connections:\n  Db: sqlite://src.db\n  Lake: file://./lake\n",
    );
    dir.write(
        "dataset/T.json",
        r#"{"name": "T", "properties": {"type": "SqliteTable",
            "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "t"}}}"#,
    );
    dir.write(
        "dataset/Out.json",
        r#"{"name": "Out", "properties": {"type": "DelimitedText",
            "linkedServiceName": {"referenceName": "Lake", "type": "LinkedServiceReference"},
            "typeProperties": {"location": {"type": "AzureBlobStorageLocation", "folderPath": "out", "fileName": "t.csv"},
               "columnDelimiter": ",", "firstRowAsHeader": true}}}"#,
    );
    dir.write(
        "pipeline.json",
        r#"{"name": "CopyT", "properties": {"activities": [
            {"name": "CopyIt", "type": "Copy",
             "typeProperties": {"source": {"type": "SqlSource"}},
             "inputs": [{"referenceName": "T", "type": "DatasetReference"}],
             "outputs": [{"referenceName": "Out", "type": "DatasetReference"}]}]}}"#,
    );
    dir
}

#[test]
fn state_shows_a_pipeline_only_config() {
    let dir = pipeline_only();
    let o = dir.hw(&["state"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("no streams in"), "{}", stdout(&o));
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 0);
    let rows = all_csv_rows(&dir, "lake/out");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let o = dir.hw(&["state"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("pipeline/CopyT/"), "{out}");
    let o = dir.hw(&["runs"]);
    assert_code(&o, 0);
}

#[test]
fn serve_starts_on_a_pipeline_only_config() {
    let dir = pipeline_only();
    let mut child = dir
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("listening on http://"), "{first}");
    assert!(
        second.contains("no streams in") && second.contains("nothing to schedule"),
        "{second}"
    );
}

#[test]
fn changes_status_says_when_there_is_nothing() {
    let dir = secret_config();
    let o = dir.hw_env(&["changes", "status"], SECRETS);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("no change_tracking streams in"),
        "{}",
        stdout(&o)
    );
    assert_eq!(all_csv_rows(&dir, "lake/t").len(), 0, "nothing copied");
}

/// Every line of both streams, without trailing blanks.
#[track_caller]
fn assert_clean(what: &str, o: &std::process::Output) {
    for (name, text) in [("stdout", stdout(o)), ("stderr", stderr(o))] {
        for line in text.lines() {
            assert_eq!(
                line.trim_end(),
                line,
                "{what}: trailing blanks on {name} line {line:?}\n{text}"
            );
        }
    }
}

#[test]
fn each_failure_once_and_no_trailing_blanks() {
    let dir = secret_config();
    let text = std::fs::read_to_string(dir.config()).unwrap();
    dir.write(
        "highwater.yaml",
        &format!("{text}  bad:\n    from: src\n    table: nope\n    to: lake\n    path: \"b/b-{{run_id}}.csv\"\n"),
    );
    let o = dir.hw_env(&["run"], SECRETS);
    assert_code(&o, 2);
    assert_clean("run", &o);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(all.matches("table nope not found").count(), 1, "{all}");
    assert!(stderr(&o).contains("error: stream bad"), "on stderr: {all}");
    assert_eq!(
        all_csv_rows(&dir, "lake/t").len(),
        3,
        "the good stream copied"
    );
    assert!(all_csv_rows(&dir, "lake/b").is_empty());
    let run_id = stdout(&o).split_whitespace().nth(1).unwrap().to_string();

    for args in [
        &["runs"][..],
        &["runs", "show", &run_id],
        &["state"],
        &["state", "--json"],
        &["check"],
        &["run", "t"],
        &["run", "bad", "--json"],
    ] {
        let o = dir.hw_env(args, SECRETS);
        assert_clean(&args.join(" "), &o);
    }
    // Success, and a config error.
    let o = dir.hw_env(&["run", "t"], SECRETS);
    assert_code(&o, 0);
    assert_clean("run t", &o);
    let o = dir.hw(&["check"]);
    assert_code(&o, 2);
    assert_clean("check without secrets", &o);
    assert_eq!(
        stderr(&o).matches("HW_FH_SECRET").count(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_history_names_the_pipeline() {
    let dir = pipeline_only();
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 0);
    assert_clean("pipeline run", &o);
    assert_eq!(all_csv_rows(&dir, "lake/out").len(), 2);
    let o = dir.hw(&["runs"]);
    assert_code(&o, 0);
    assert_clean("runs", &o);
    let out = stdout(&o);
    assert!(out.contains("of pipeline CopyT"), "{out}");
    let run_id = out.split_whitespace().next().unwrap().to_string();
    let o = dir.hw(&["runs", "show", &run_id]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("pipeline CopyT"), "{}", stdout(&o));
    // A failing pipeline: its error once.
    dir.write(
        "fail.json",
        r#"{"name": "Boom", "properties": {"activities": [
            {"name": "Stop", "type": "Fail", "typeProperties": {"message": "boom here", "errorCode": "42"}}]}}"#,
    );
    let o = dir.hw(&["pipeline", "run", "fail.json"]);
    assert_code(&o, 1);
    assert_clean("failing pipeline", &o);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(all.matches("boom here").count(), 1, "{all}");
    assert!(stderr(&o).contains("boom here"), "on stderr: {all}");
}

fn objstore(cmd: &str, kind: &str, name: &str) -> String {
    crate::util::objstore(&[cmd, kind, name], "")
}

const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";

/// `highwater ARGS` for a config whose lake is `url`, with only `env` of
/// the cloud variables set.
fn cloud(url: &str, args: &[&str], env: &[(&str, &str)]) -> (Dir, std::process::Output) {
    let dir = Dir::new("first_hour_cloud");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t (v) VALUES ('a'), ('b'), ('c');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        &format!("connections:\n  src: sqlite://src.db\n  lake: {url}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n"),
    );
    let mut c = dir.command(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AZURE") || k.starts_with("AWS_") || k.starts_with("AZURITE") {
            c.env_remove(k);
        }
    }
    // No cloud metadata service here: fail fast instead of waiting for one.
    c.env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (dir, o)
}

/// The one FAILED line of `check`, which must name `want` (all of them).
#[track_caller]
fn failed_line(o: &std::process::Output, want: &[&str]) {
    assert!(
        matches!(o.status.code(), Some(1 | 2)),
        "{:?}\n{}{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    assert_clean("check", o);
    let out = stdout(o);
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAILED")).collect();
    assert_eq!(failed.len(), 1, "{out}");
    for w in want {
        assert!(failed[0].contains(w), "{w:?} in {}", failed[0]);
    }
    assert!(
        !out.contains("<?xml") && !out.contains("RequestId"),
        "{out}"
    );
}

#[test]
fn check_names_a_missing_container_or_bucket() {
    let name = unique("missing").replace('_', "-");
    let (_d, o) = cloud(
        &format!("az://{name}/p"),
        &["check"],
        &[("AZURE_STORAGE_USE_EMULATOR", "true")],
    );
    failed_line(
        &o,
        &[&format!("container `{name}` does not exist"), "create it"],
    );
    let moto = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5555"),
    ];
    let (_d, o) = cloud(&format!("s3://{name}/p"), &["check"], &moto);
    failed_line(
        &o,
        &[&format!("bucket `{name}` does not exist"), "aws s3 mb"],
    );
}

/// What `check` says, `run` says too: a container or bucket missing at
/// run time, or no credentials, in one line with the fix (not the store's
/// raw XML or metadata-service error).
#[test]
fn run_names_a_missing_container_bucket_or_credentials() {
    let name = unique("gone").replace('_', "-");
    let moto = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5555"),
    ];
    let azurite = [("AZURE_STORAGE_USE_EMULATOR", "true")];
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(String, Env, &[&str]); 3] = [
        (
            format!("az://{name}/p"),
            &azurite,
            &[
                "container `",
                "does not exist",
                "az storage container create",
            ],
        ),
        (
            format!("s3://{name}/p"),
            &moto,
            &["bucket `", "does not exist", "aws s3 mb"],
        ),
        (
            format!("s3://{name}/p"),
            &[],
            &["no AWS credentials", "AWS_ACCESS_KEY_ID"],
        ),
    ];
    for (url, env, want) in cases {
        let (_dir, o) = cloud(&url, &["run"], env);
        assert_code(&o, 1);
        let err = stderr(&o);
        let line = err
            .lines()
            .find(|l| l.starts_with("error: stream t"))
            .unwrap_or_else(|| panic!("{err}"));
        for w in want {
            assert!(line.contains(w), "{w:?} in {line}");
        }
        assert!(!err.contains("<?xml") && !err.contains("169.254"), "{err}");
    }
}

#[test]
fn check_names_missing_or_wrong_cloud_credentials() {
    let (_d, o) = cloud("az://c/p", &["check"], &[]);
    failed_line(
        &o,
        &[
            "no Azure storage account",
            "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_CONNECTION_STRING",
        ],
    );
    let (_d, o) = cloud("s3://b/p", &["check"], &[]);
    failed_line(&o, &["no AWS credentials", "AWS_ACCESS_KEY_ID"]);
    // Azurite with a wrong key.
    let name = unique("wrongkey").replace('_', "-");
    objstore("create", "az", &name);
    let (_d, o) = cloud(
        &format!("az://{name}/p"),
        &["check"],
        &[
            ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "d3Jvbmc="),
            (
                "AZURE_STORAGE_ENDPOINT",
                "http://127.0.0.1:10000/devstoreaccount1",
            ),
            ("AZURE_ALLOW_HTTP", "true"),
        ],
    );
    failed_line(
        &o,
        &["refused the credentials", "AZURE_STORAGE_ACCOUNT_KEY"],
    );
    let all: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&objstore("dump", "az", &name)).unwrap();
    assert!(all.is_empty(), "nothing written: {all:?}");
}

#[test]
fn an_azure_connection_string_is_enough() {
    let name = unique("connstr").replace('_', "-");
    objstore("create", "az", &name);
    let env = [("AZURE_STORAGE_CONNECTION_STRING", AZURITE)];
    let (dir, o) = cloud(&format!("az://{name}/landing"), &["check"], &env);
    assert_code(&o, 0);
    let mut c = dir.command(&["run"]);
    c.env("AZURE_STORAGE_CONNECTION_STRING", AZURITE)
        .env_remove("AZURE_STORAGE_USE_EMULATOR");
    let o = c.output().unwrap();
    assert_code(&o, 0);
    let all: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&objstore("dump", "az", &name)).unwrap();
    let data: Vec<&String> = all
        .iter()
        .filter(|(k, _)| k.starts_with("landing/t/") && k.ends_with(".csv"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(data.len(), 1, "{all:?}");
    let rows = parse_csv(data[0]);
    assert_eq!(rows.len(), 4, "header and 3 rows: {rows:?}");
    assert_eq!(rows[3][1], "c");
}

/// Several commands opening a new state file at once (a `serve` starting
/// while a script polls `windows` or `runs`) all succeed: creating the
/// schema and its migrations is one write transaction.
#[test]
fn commands_opening_a_new_state_file_at_once_all_succeed() {
    let dir = Dir::new("state_race");
    dir.write(
        "highwater.yaml",
        "state: s.db\nconnections:\n  a: sqlite://x.db\n",
    );
    for round in 0..15 {
        for f in ["s.db", "s.db-wal", "s.db-shm"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let children: Vec<_> = (0..6)
            .map(|_| {
                dir.command(&["runs"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert_eq!(
                o.status.code(),
                Some(0),
                "round {round}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}
