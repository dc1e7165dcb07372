//! The command line as a user meets it: demo, init, check, bad input with
//! clear errors and exit codes, secrets, hostile names, run records, state
//! reset, several streams at once.

use crate::util::*;

fn pg_stream(name: &str, table: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    from: pg\n    table: {table}\n    to: lake\n    path: \"{name}/{name}-{{run_id}}.csv\"\n{extra}"
    )
}

fn config(url: &str, streams: &str) -> String {
    format!("connections:\n  pg: {url}\n  lake: file://./lake\nstreams:\n{streams}")
}

#[test]
fn demo_runs_the_tutorial() {
    let dir = Dir::new("demo");
    let o = std::process::Command::new(bin())
        .args(["demo", "--dir"])
        .arg(dir.join("d"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("1,aaaa,2017-09-01T00:56:00"), "{out}");
    assert!(out.contains("7,newdata,2017-09-07T09:01:00"), "{out}");
    let files: Vec<_> = {
        let d = Dir {
            path: dir.join("d"),
        };
        let f = d.files("lake/incrementalcopy", ".csv");
        std::mem::forget(d);
        f
    };
    assert_eq!(files.len(), 2);
    let mut sizes: Vec<usize> = files.iter().map(|f| read_csv(f).1.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [3, 5]);
    // The change-tracking tutorial: full copy, then 6 I, 1 U, 3 D.
    assert!(
        out.contains("PersonID,Name,Age,SYS_CHANGE_VERSION,SYS_CHANGE_OPERATION"),
        "{out}"
    );
    assert!(
        out.contains("set up change tracking on data_source_table"),
        "{out}"
    );
    assert!(out.contains("6,new,50,1,I"), "{out}");
    assert!(out.contains("1,update,10,2,U"), "{out}");
    assert!(out.contains("3,,,3,D"), "{out}");
    let ct = Dir {
        path: dir.join("d/change-tracking"),
    };
    let ct_files = ct.files("lake/incchgtracking", ".csv");
    std::mem::forget(ct);
    let mut sizes: Vec<usize> = ct_files.iter().map(|f| read_csv(f).1.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [3, 5]);
    // Running it again starts from scratch.
    let o = std::process::Command::new(bin())
        .args(["demo", "--dir"])
        .arg(dir.join("d"))
        .output()
        .unwrap();
    assert_code(&o, 0);
}

#[test]
fn init_writes_a_config_that_parses() {
    let dir = Dir::new("init");
    assert_code(&dir.hw(&["init"]), 0);
    assert!(dir.config().exists());
    // It parses: `state` needs a valid config and no server.
    assert_code(&dir.hw(&["state"]), 0);
    // A second init refuses to overwrite.
    assert_code(&dir.hw(&["init"]), 2);
}

#[test]
fn unknown_key_is_a_configuration_error_with_its_line() {
    let dir = Dir::new("badkey");
    dir.write(
        "highwater.yaml",
        "connections:\n  pg: postgres://postgres@127.0.0.1/postgres\n  lake: file://./lake\nstreams:\n  s:\n    from: pg\n    table: t\n    to: lake\n    path: x-{run_id}.csv\n    curser: id\n",
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("highwater.yaml"), "{err}");
    assert!(err.contains("curser"), "{err}");
    assert!(err.contains("10"), "line number expected: {err}");
}

#[tokio::test]
async fn missing_table_and_column_name_the_stream_and_keep_state() {
    let db = PgDb::new("missing").await;
    db.exec("CREATE TABLE t (id int primary key, updated_at timestamptz); INSERT INTO t VALUES (1, now());").await;
    let dir = Dir::new("missing");
    let streams = format!(
        "{}{}",
        pg_stream("no_table", "public.nope", ""),
        pg_stream(
            "no_column",
            "t",
            "    mode: watermark\n    cursor: updatedat\n"
        )
    );
    dir.write("highwater.yaml", &config(&db.url, &streams));
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("stream no_table (") && err.contains("nope"),
        "{err}"
    );
    assert!(
        err.contains("stream no_column (") && err.contains("updatedat"),
        "{err}"
    );
    assert!(err.contains("highwater.yaml:"), "{err}");
    let o = dir.hw(&["state", "--json"]);
    let state: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        state
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["position"].is_null()),
        "{state}"
    );
    assert!(dir.files("lake", ".csv").is_empty());
    // check reports the same, with exit 2.
    let o = dir.hw(&["check"]);
    assert_code(&o, 2);
    assert!(stdout(&o).contains("updatedat"), "{}", stdout(&o));
}

#[tokio::test]
async fn null_cursor_policy() {
    let db = PgDb::new("nulls").await;
    db.exec("CREATE TABLE t (id int primary key, updated_at timestamptz); INSERT INTO t VALUES (1, now() - interval '1 minute'), (2, NULL);").await;
    let dir = Dir::new("nulls");
    dir.write(
        "highwater.yaml",
        &config(
            &db.url,
            &pg_stream(
                "t",
                "t",
                "    mode: watermark\n    cursor: updated_at\n    primary_key: [id]\n",
            ),
        ),
    );
    // The full load copies rows with a NULL cursor too.
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(all_csv_rows(&dir, "lake").len(), 2);
    let before = stdout(&dir.hw(&["state", "--json"]));
    db.exec("INSERT INTO t VALUES (3, NULL), (4, now() - interval '1 second')")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("updated_at") && err.contains("1 row(s)"),
        "{err}"
    );
    assert_eq!(
        stdout(&dir.hw(&["state", "--json"])),
        before,
        "state must not move after a failed run"
    );
    assert_eq!(all_csv_rows(&dir, "lake").len(), 2);
    // With skip, the run goes on without the NULL row.
    dir.write(
        "highwater.yaml",
        &config(&db.url, &pg_stream("t", "t", "    mode: watermark\n    cursor: updated_at\n    primary_key: [id]\n    on_null_cursor: skip\n")),
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let ids: Vec<String> = all_csv_rows(&dir, "lake")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&"4".to_string()) && !ids.contains(&"3".to_string()));
}

#[test]
fn unreachable_server_fails_without_leaking_the_password() {
    let dir = Dir::new("unreachable");
    dir.write(
        "highwater.yaml",
        &config(
            "postgres://app:${HW_TEST_SECRET}@127.0.0.1:1/shop",
            &pg_stream("t", "t", ""),
        ),
    );
    let o = dir.hw_env(&["run"], &[("HW_TEST_SECRET", "Sup3rSecretPw")]);
    assert_code(&o, 1);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("stream t"), "{all}");
    assert!(
        all.contains("127.0.0.1:1") || all.contains("connect"),
        "{all}"
    );
    assert!(!all.contains("Sup3rSecretPw"), "{all}");
    let o = dir.hw_env(&["check"], &[("HW_TEST_SECRET", "Sup3rSecretPw")]);
    assert_code(&o, 1);
    assert!(!format!("{}{}", stdout(&o), stderr(&o)).contains("Sup3rSecretPw"));
    let o = dir.hw_env(&["runs", "--json"], &[("HW_TEST_SECRET", "Sup3rSecretPw")]);
    assert_code(&o, 0);
    assert!(!stdout(&o).contains("Sup3rSecretPw"));
    // An unset variable is a configuration error naming it.
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("HW_TEST_SECRET"), "{}", stderr(&o));
}

#[tokio::test]
async fn passwords_never_reach_output_state_or_run_records() {
    let db = PgDb::new("secrets").await;
    db.exec("CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2);")
        .await;
    // Trust auth accepts any password, so a real run carries one.
    let url = db.url.replace("postgres@", "postgres:Pa55wordInUrl@");
    let dir = Dir::new("secrets");
    dir.write(
        "highwater.yaml",
        &config(
            &url,
            &format!(
                "{}{}",
                pg_stream("t", "t", ""),
                pg_stream("bad", "missing_table", "")
            ),
        ),
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    let mut seen = format!("{}{}", stdout(&o), stderr(&o));
    for args in [&["runs", "--json"][..], &["state", "--json"], &["check"]] {
        let o = dir.hw(args);
        seen.push_str(&stdout(&o));
        seen.push_str(&stderr(&o));
    }
    assert!(!seen.contains("Pa55wordInUrl"), "{seen}");
    for f in std::fs::read_dir(dir.join(".highwater")).unwrap().flatten() {
        if f.path().is_file() {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("Pa55wordInUrl"),
                "{:?}",
                f.path()
            );
        }
    }
    assert_eq!(
        all_csv_rows(&dir, "lake/t").len(),
        2,
        "the good stream ran although the other failed"
    );
}

#[tokio::test]
async fn hostile_table_names_cannot_change_the_database() {
    let db = PgDb::new("hostile").await;
    db.exec(r#"CREATE TABLE victims (id int); INSERT INTO victims VALUES (1); CREATE TABLE "we""ird; name" (id int, "x""y" text); INSERT INTO "we""ird; name" VALUES (7, 'ok');"#).await;
    let dir = Dir::new("hostile");
    let streams = format!(
        "{}{}",
        pg_stream("evil", "'victims; DROP TABLE victims; --'", ""),
        "  weird:\n    from: pg\n    table: '\"we\"\"ird; name\"'\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"weird/{run_id}.csv\"\n"
    );
    dir.write("highwater.yaml", &config(&db.url, &streams));
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    let n: i64 = db
        .client
        .query_one("SELECT count(*) FROM victims", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the victims table must survive");
    let rows = all_csv_rows(&dir, "lake/weird");
    assert_eq!(rows, vec![vec!["7".to_string(), "ok".to_string()]]);
    let (header, _) = read_csv(&dir.files("lake/weird", ".csv")[0]);
    assert_eq!(header, ["id", "x\"y"]);
}

#[tokio::test]
async fn runs_state_reset_and_full_refresh() {
    let db = PgDb::new("runs").await;
    db.exec("CREATE TABLE a (id int primary key, at timestamptz); INSERT INTO a VALUES (1, now() - interval '1 minute');
             CREATE TABLE b (id int primary key); INSERT INTO b VALUES (1), (2);").await;
    let dir = Dir::new("runs");
    let streams = format!(
        "{}{}",
        pg_stream("a", "a", "    mode: watermark\n    cursor: at\n"),
        pg_stream("b", "b", "")
    );
    dir.write(
        "highwater.yaml",
        &format!("concurrency: 2\n{}", config(&db.url, &streams)),
    );
    assert_code(&dir.hw(&["run"]), 0);
    let o = dir.hw(&["runs", "--json"]);
    assert_code(&o, 0);
    let runs: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let run = &runs[0];
    assert_eq!(run["status"], "Succeeded");
    for key in ["run_id", "started_at", "finished_at"] {
        assert!(!run[key].is_null(), "{key}");
    }
    let streams = run["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    let a = streams.iter().find(|s| s["stream"] == "a").unwrap();
    assert_eq!(a["mode"], "watermark");
    assert_eq!(a["status"], "Succeeded");
    assert_eq!(a["rows_read"], 1);
    assert_eq!(a["rows_written"], 1);
    assert!(a["watermark_to"].is_string());
    assert!(a["error"].is_null());
    assert_eq!(a["outputs"].as_array().unwrap().len(), 1);
    let id = run["run_id"].as_str().unwrap();
    let o = dir.hw(&["runs", "show", &id[..8], "--json"]);
    assert_code(&o, 0);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(shown["run_id"], id);
    assert_code(&dir.hw(&["runs", "show", "no-such-run"]), 2);

    // Only stream a, nothing new: no file.
    assert_code(&dir.hw(&["run", "a"]), 0);
    assert_eq!(dir.files("lake/a", ".csv").len(), 1);
    assert_code(&dir.hw(&["run", "nope"]), 2);
    // Reset: the next run copies everything again.
    assert_code(&dir.hw(&["state", "reset", "a"]), 0);
    assert_code(&dir.hw(&["run", "a"]), 0);
    assert_eq!(dir.files("lake/a", ".csv").len(), 2);
    // --full-refresh does the same without a reset.
    assert_code(&dir.hw(&["run", "a", "--full-refresh"]), 0);
    assert_eq!(dir.files("lake/a", ".csv").len(), 3);
    assert_code(&dir.hw(&["run", "a"]), 0);
    assert_eq!(dir.files("lake/a", ".csv").len(), 3);
}

#[tokio::test]
async fn one_failing_stream_does_not_stop_the_others() {
    let db = PgDb::new("isolation").await;
    db.exec("CREATE TABLE a (id int); INSERT INTO a SELECT generate_series(1, 100); CREATE TABLE c (id int); INSERT INTO c VALUES (1);").await;
    let dir = Dir::new("isolation");
    let streams = format!(
        "{}{}{}",
        pg_stream("a", "a", ""),
        "  b:\n    from: down\n    table: a\n    to: lake\n    path: \"b/{run_id}.csv\"\n",
        pg_stream("c", "c", "")
    );
    dir.write(
        "highwater.yaml",
        &format!("concurrency: 3\nconnections:\n  pg: {}\n  down: postgres://postgres@127.0.0.1:1/x\n  lake: file://./lake\nstreams:\n{streams}", db.url),
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 1);
    assert_eq!(all_csv_rows(&dir, "lake/a").len(), 100);
    assert_eq!(all_csv_rows(&dir, "lake/c").len(), 1);
    assert!(stderr(&o).contains("stream b"), "{}", stderr(&o));
    let runs: serde_json::Value =
        serde_json::from_str(&stdout(&dir.hw(&["runs", "--json"]))).unwrap();
    assert_eq!(runs[0]["status"], "Failed");
    let b = runs[0]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "b")
        .unwrap()
        .clone();
    assert_eq!(b["status"], "Failed");
    assert!(b["error"].as_str().unwrap().contains("connect"), "{b}");
}

#[test]
fn help_explains_the_commands() {
    let o = std::process::Command::new(bin())
        .arg("--help")
        .output()
        .unwrap();
    assert_code(&o, 0);
    let out = stdout(&o);
    for cmd in [
        "demo", "init", "check", "run", "runs", "state", "changes", "expr",
    ] {
        assert!(out.contains(cmd), "{out}");
    }
    let o = std::process::Command::new(bin())
        .arg("bogus")
        .output()
        .unwrap();
    assert_code(&o, 2);
}

#[test]
fn expr_command_evaluates_with_a_context_file() {
    let dir = Dir::new("expr");
    dir.write(
        "ctx.json",
        r#"{"parameters": {"tableList": [{"TABLE_NAME": "orders"}]},
            "activities": {"LookupOldWaterMarkActivity": {"firstRow": {"TableName": "data_source_table", "WatermarkValue": "2017-09-05T08:06:00Z"}}},
            "run_id": "d4bf3ce2-5d60-43f3-9318-923155f61037",
            "now": "2024-01-16T10:00:00Z"}"#,
    );
    let ctx = dir.join("ctx.json");
    let ctx = ctx.to_str().unwrap();
    let run = |e: &str| {
        std::process::Command::new(bin())
            .args(["expr", e, "--context", ctx])
            .output()
            .unwrap()
    };
    let o = run("@concat('Incremental-', pipeline().RunId, '.txt')");
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o).trim(),
        "\"Incremental-d4bf3ce2-5d60-43f3-9318-923155f61037.txt\""
    );
    let o = run(
        "select * from t where LastModifytime > '@{activity('LookupOldWaterMarkActivity').output.firstRow.WatermarkValue}'",
    );
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o).trim(),
        "\"select * from t where LastModifytime > '2017-09-05T08:06:00Z'\""
    );
    let o = run(
        "@{pipeline().parameters.tableList[0].TABLE_NAME}-@{equals(1, 1.0)}-@{utcNow('yyyyMMdd')}",
    );
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), "\"orders-True-20240116\"");
    let o = run("@add(1, 'x')");
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("`add` expects numbers, got string 'x' as argument 2"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
    let o = run("@concat('a',");
    assert_code(&o, 1);
    assert!(stderr(&o).contains("line 1, column"), "{}", stderr(&o));
}

/// `sslmode` as libpq means it: `require` encrypts, `verify-full` also
/// checks the certificate (the machine's PostgreSQL uses Debian's snakeoil
/// certificate, issued for `localhost`).
#[tokio::test]
async fn postgres_tls_modes() {
    let db = PgDb::new("tls").await;
    db.exec("CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2);")
        .await;
    let ssl_on: String = db.client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(
        ssl_on, "on",
        "this test needs PostgreSQL with ssl = on (Debian's default)"
    );
    let dir = Dir::new("tls");
    let url = format!("{}?sslmode=require", db.url);
    dir.write("highwater.yaml", &config(&url, &pg_stream("t", "t", "")));
    let o = dir.hw(&["check"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("(TLS)"), "{}", stdout(&o));
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(all_csv_rows(&dir, "lake/t").len(), 2);

    // verify-full checks the host name: 127.0.0.1 is not in the certificate.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem",
        db.url
    );
    dir.write("highwater.yaml", &config(&url, &pg_stream("t", "t", "")));
    let o = dir.hw(&["run"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
    // …and passes for localhost with the certificate as root.
    let url = url.replace("127.0.0.1", "localhost");
    dir.write("highwater.yaml", &config(&url, &pg_stream("t", "t", "")));
    let o = dir.hw(&["check"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("(TLS)"), "{}", stdout(&o));
}
