//! Data Factory control activities: Script (on SQLite, PostgreSQL and
//! MariaDB, with bound parameters and its `resultSets` output), Filter,
//! Until, Switch and Web (against a local HTTP server), each checked by
//! the rows their outputs make land.

use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::Value;

use crate::util::*;

/// `pipeline run pipeline.json --json`: the exit code and the run record.
fn run(dir: &Dir, code: i32) -> (Value, String) {
    let o = dir.hw(&["pipeline", "run", "pipeline.json", "--json"]);
    assert_code(&o, code);
    let v = serde_json::from_str(&stdout(&o)).unwrap_or(Value::Null);
    (v, stderr(&o))
}

/// Every row of `sql`, values as text (NULL as "NULL").
async fn rows(db: &SrcDb, sql: &str) -> Vec<Vec<String>> {
    use mysql_async::prelude::Queryable;
    match db {
        SrcDb::Pg(pg) => pg
            .client
            .simple_query(sql)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect(),
        SrcDb::My(my) => {
            let mut c = my.connect().await;
            let out: Vec<mysql_async::Row> = c.query(sql).await.unwrap();
            let _ = c.disconnect().await;
            out.into_iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| match r.as_ref(i).unwrap() {
                            mysql_async::Value::NULL => "NULL".to_string(),
                            mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into(),
                            v => v.as_sql(true).trim_matches('\'').to_string(),
                        })
                        .collect()
                })
                .collect()
        }
        SrcDb::Lite(p) => {
            let c = rusqlite::Connection::open(p).unwrap();
            let mut st = c.prepare(sql).unwrap();
            let n = st.column_count();
            st.query_map([], |r| {
                Ok((0..n)
                    .map(|i| match r.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                        rusqlite::types::ValueRef::Blob(b) => String::from_utf8_lossy(b).into(),
                    })
                    .collect())
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        }
    }
}

const SCRIPT_PIPELINE: &str = r#"{
  "name": "ScriptFlow",
  "properties": {
    "activities": [
      {"name": "Setup", "type": "Script",
       "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
       "typeProperties": {"scripts": [
         {"type": "NonQuery", "text": "CREATE TABLE items (id int, name varchar(40), qty int)"},
         {"type": "NonQuery",
          "text": "INSERT INTO items (id, name, qty) VALUES (@id, @name, 5), (2, 'b', 7), (3, 'c', 9)",
          "parameters": [
            {"name": "id", "type": "Int32", "value": 1, "direction": "Input"},
            {"name": "name", "type": "String", "value": "a'); DROP TABLE items; --"}]},
         {"type": "Query",
          "text": "SELECT id, name, qty FROM items WHERE qty > @min ORDER BY id",
          "parameters": [{"name": "min", "type": "Int32", "value": "@{add(5, 1)}"}]},
         {"type": "Query", "text": "SELECT 1 AS one; SELECT 'x' AS two"},
         {"type": "Query", "text": "SELECT CAST(12.50 AS DECIMAL(10,2)) AS d, CAST(-0.05 AS DECIMAL(10,3)) AS e, CAST(100000 AS DECIMAL(12,0)) AS f"}
       ], "scriptBlockExecutionTimeout": "00:05:00"}},
      {"name": "Count", "type": "Lookup",
       "dependsOn": [{"activity": "Setup", "dependencyConditions": ["Succeeded"]}],
       "typeProperties": {
         "source": {"type": "SqlSource", "sqlReaderQuery": "select count(*) as n from items"},
         "dataset": {"referenceName": "Items", "type": "DatasetReference"}}},
      {"name": "Record", "type": "Script",
       "dependsOn": [{"activity": "Count", "dependencyConditions": ["Succeeded"]}],
       "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
       "typeProperties": {"scripts": [
         {"type": "NonQuery", "text": "CREATE TABLE report (k varchar(20), v varchar(200))"},
         {"type": "NonQuery",
          "text": "INSERT INTO report (k, v) VALUES ('sets', @sets), ('affected', @affected), ('rows', @rows), ('first', @first), ('qty', @qty), ('count', @count), ('multi', @multi), ('lib', @lib), ('dec', @dec)",
          "parameters": [
            {"name": "sets", "type": "String", "value": "@{activity('Setup').output.resultSetCount}"},
            {"name": "affected", "type": "String", "value": "@{activity('Setup').output.recordsAffected}"},
            {"name": "rows", "type": "String", "value": "@{activity('Setup').output.resultSets[0].rowCount}"},
            {"name": "first", "type": "String", "value": "@activity('Setup').output.resultSets[0].rows[0].name"},
            {"name": "qty", "type": "String", "value": "@{add(activity('Setup').output.resultSets[0].rows[1].qty, 1)}"},
            {"name": "count", "type": "String", "value": "@{activity('Count').output.firstRow.n}"},
            {"name": "multi", "type": "String", "value": "@{activity('Setup').output.resultSets[1].rows[0].one}@{activity('Setup').output.resultSets[2].rows[0].two}"},
            {"name": "lib", "type": "String", "value": "@{pipeline().libraryVariables}"},
            {"name": "dec", "type": "String", "value": "@{add(activity('Setup').output.resultSets[3].rows[0].d, 1)}|@{activity('Setup').output.resultSets[3].rows[0].e}|@{add(activity('Setup').output.resultSets[3].rows[0].f, 1)}"}]}
       ]}}
    ]
  }
}"#;

async fn script_fills_a_table_and_its_output_drives_the_next(backend: &str) {
    let dir = Dir::new(&format!("adf_script_{backend}"));
    let db = SrcDb::new(backend, &dir, "adf_script").await;
    dir.write(
        "highwater.yaml",
        &format!("connections:\n  Db: {}\n", db.url()),
    );
    dir.write(
        "dataset/Items.json",
        r#"{"name": "Items", "properties": {"type": "AzureSqlTable",
            "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "items"}}}"#,
    );
    dir.write("pipeline.json", SCRIPT_PIPELINE);
    let (run, err) = run(&dir, 0);
    assert_eq!(run["status"], "Succeeded", "{err}");
    // The parameter was bound: the text arrived as it was, nothing dropped.
    assert_eq!(
        rows(&db, "SELECT name FROM items ORDER BY id").await,
        [["a'); DROP TABLE items; --"], ["b"], ["c"]]
    );
    let mut report = rows(&db, "SELECT k, v FROM report ORDER BY k").await;
    report.sort();
    assert_eq!(
        report,
        [
            ["affected", "3"],
            ["count", "3"],
            ["dec", "13.5|-0.05|100001"],
            ["first", "b"],
            ["lib", "{}"],
            ["multi", "1x"],
            ["qty", "10"],
            ["rows", "2"],
            ["sets", "4"],
        ]
    );
}

#[tokio::test]
async fn script_on_sqlite() {
    script_fills_a_table_and_its_output_drives_the_next("sqlite").await;
}

#[tokio::test]
async fn script_on_postgres() {
    script_fills_a_table_and_its_output_drives_the_next("postgres").await;
}

#[tokio::test]
async fn script_on_mariadb() {
    script_fills_a_table_and_its_output_drives_the_next("mariadb").await;
}

/// Filter feeds a ForEach, Until counts with a variable, Switch picks the
/// case the Filter's count names; a Script records each step.
#[tokio::test]
async fn filter_until_switch_on_sqlite() {
    let dir = sqlite_factory("adf_ctl", "");
    let db = SrcDb::Lite(dir.join("src.db"));
    db.exec("CREATE TABLE log (step varchar(20), v varchar(40))")
        .await;
    dir.write(
        "dataset/Table.json",
        r#"{"name": "Table", "properties": {"type": "AzureSqlTable",
            "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "t"}}}"#,
    );
    let log = |step: &str, value: &str| {
        format!(
            r#"{{"name": "Log{step}", "type": "Script",
                "linkedServiceName": {{"referenceName": "Db", "type": "LinkedServiceReference"}},
                "typeProperties": {{"scripts": [{{"type": "NonQuery",
                  "text": "INSERT INTO log VALUES ('{step}', @v)",
                  "parameters": [{{"name": "v", "type": "String", "value": "{value}"}}]}}]}}"#
        )
    };
    let pipeline = format!(
        r#"{{"name": "Ctl", "properties": {{
  "variables": {{"counter": {{"type": "String", "defaultValue": "0"}}, "next": {{"type": "String"}}}},
  "activities": [
    {{"name": "AllRows", "type": "Lookup", "typeProperties": {{
       "source": {{"type": "SqlSource"}}, "firstRowOnly": false,
       "dataset": {{"referenceName": "Table", "type": "DatasetReference"}}}}}},
    {{"name": "Keep", "type": "Filter",
      "dependsOn": [{{"activity": "AllRows", "dependencyConditions": ["Succeeded"]}}],
      "typeProperties": {{"items": {{"value": "@activity('AllRows').output.value", "type": "Expression"}},
        "condition": {{"value": "@not(equals(item().name, 'b'))", "type": "Expression"}}}}}},
    {{"name": "EachKept", "type": "ForEach",
      "dependsOn": [{{"activity": "Keep", "dependencyConditions": ["Succeeded"]}}],
      "typeProperties": {{"items": "@activity('Keep').output.Value", "isSequential": true,
        "activities": [{log_item}}}]}}}},
    {{"name": "Counts", "type": "Script",
      "dependsOn": [{{"activity": "Keep", "dependencyConditions": ["Succeeded"]}}],
      "linkedServiceName": {{"referenceName": "Db", "type": "LinkedServiceReference"}},
      "typeProperties": {{"scripts": [{{"type": "NonQuery",
        "text": "INSERT INTO log VALUES ('items', @a), ('filtered', @b)",
        "parameters": [
          {{"name": "a", "type": "Int32", "value": "@activity('Keep').output.ItemsCount"}},
          {{"name": "b", "type": "Int32", "value": "@activity('Keep').output.FilteredItemsCount"}}]}}]}}}},
    {{"name": "Loop", "type": "Until",
      "typeProperties": {{
        "expression": {{"value": "@greaterOrEquals(int(activity('Store').output.value), 3)", "type": "Expression"}},
        "timeout": "0.00:01:00",
        "activities": [
          {{"name": "Bump", "type": "SetVariable", "typeProperties": {{
             "variableName": "next", "value": "@string(add(int(variables('counter')), 1))"}}}},
          {{"name": "Store", "type": "SetVariable",
            "dependsOn": [{{"activity": "Bump", "dependencyConditions": ["Succeeded"]}}],
            "typeProperties": {{"variableName": "counter", "value": "@variables('next')"}}}},
          {log_loop}, "dependsOn": [{{"activity": "Store", "dependencyConditions": ["Succeeded"]}}]}}
        ]}}}},
    {{"name": "Pick", "type": "Switch",
      "dependsOn": [{{"activity": "Keep", "dependencyConditions": ["Succeeded"]}},
                    {{"activity": "Loop", "dependencyConditions": ["Succeeded"]}}],
      "typeProperties": {{
        "on": {{"value": "@string(activity('Keep').output.FilteredItemsCount)", "type": "Expression"}},
        "cases": [
          {{"value": "3", "activities": [{log_three}}}]}},
          {{"value": "2", "activities": [{log_two}}}]}}],
        "defaultActivities": [{log_other}}}]}}}}
  ]}}}}"#,
        log_item = log("Item", "@{item().id}:@{item().name}"),
        log_loop = log("Loop", "@{variables('counter')}"),
        log_three = log("Three", "three"),
        log_two = log("Two", "@{variables('counter')}"),
        log_other = log("Other", "other"),
    );
    dir.write("pipeline.json", &pipeline);
    let (run, err) = run(&dir, 0);
    assert_eq!(run["status"], "Succeeded", "{err}");
    let got = rows(&db, "SELECT step, v FROM log ORDER BY rowid").await;
    let step = |s: &str| -> Vec<String> {
        got.iter()
            .filter(|r| r[0] == s)
            .map(|r| r[1].clone())
            .collect()
    };
    assert_eq!(step("Item"), ["1:a", "3:c"]);
    assert_eq!(step("items"), ["3"]);
    assert_eq!(step("filtered"), ["2"]);
    assert_eq!(step("Loop"), ["1", "2", "3"]);
    assert_eq!(step("Two"), ["3"]);
    assert!(
        step("Three").is_empty() && step("Other").is_empty(),
        "{got:?}"
    );
    assert_eq!(got.len(), 8, "{got:?}");
    let names: Vec<&str> = run["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Loop[2]/LogLoop"), "{names:?}");
    assert!(names.contains(&"Pick/LogTwo"), "{names:?}");
}

#[test]
fn until_fails_on_its_timeout() {
    let dir = sqlite_factory("adf_until", "");
    dir.write(
        "pipeline.json",
        r#"{"name": "p", "properties": {"activities": [
          {"name": "Never", "type": "Until", "typeProperties": {
            "expression": {"value": "@equals(1, 2)", "type": "Expression"},
            "timeout": "00:00:02",
            "activities": [{"name": "Nap", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 1}}]}}]}}"#,
    );
    let (_, err) = run(&dir, 1);
    assert!(
        err.contains("activity Never (Until) failed: the expression was still false after 2s"),
        "{err}"
    );
}

/// A local HTTP server: `GET /config` answers JSON with a header,
/// `POST /echo` checks Basic credentials and echoes the body, anything
/// else answers 500. Returns its base URL.
fn http_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
            let line = head.lines().next().unwrap_or_default().to_string();
            // "user:secret" in base64.
            let authorized = head.contains("Basic dXNlcjpzZWNyZXQ=");
            let (status, extra, reply) = if line.starts_with("GET /config ") {
                (
                    "200 OK",
                    "X-Test: yes\r\n",
                    r#"{"tables": ["a", "c"], "mode": "full"}"#.to_string(),
                )
            } else if line.starts_with("POST /echo ") && authorized {
                let echoed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                (
                    "200 OK",
                    "",
                    serde_json::json!({"received": echoed, "ctype": head.to_lowercase().contains("content-type: application/json")}).to_string(),
                )
            } else if line.starts_with("GET /text ") {
                ("200 OK", "", "plain words".to_string())
            } else {
                ("500 Internal Server Error", "", "it broke".to_string())
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    base
}

#[tokio::test]
async fn web_calls_a_local_server_and_its_output_drives_later_activities() {
    let base = http_server();
    let dir = sqlite_factory("adf_web", "");
    let db = SrcDb::Lite(dir.join("src.db"));
    db.exec("CREATE TABLE seen (k varchar(20), v varchar(100))")
        .await;
    let pipeline = r#"{"name": "Web", "properties": {
  "parameters": {"base": {"type": "String"}, "password": {"type": "SecureString", "defaultValue": "secret"}},
  "activities": [
    {"name": "GetConfig", "type": "WebActivity", "typeProperties": {
       "method": "GET", "url": "@{pipeline().parameters.base}/config",
       "httpRequestTimeout": "00:01:00"}},
    {"name": "Echo", "type": "WebActivity",
     "dependsOn": [{"activity": "GetConfig", "dependencyConditions": ["Succeeded"]}],
     "typeProperties": {
       "method": "POST", "url": "@{pipeline().parameters.base}/echo",
       "headers": {"Content-Type": "application/json"},
       "body": {"mode": "@{activity('GetConfig').output.mode}", "n": 2},
       "authentication": {"type": "Basic", "username": "user",
         "password": {"type": "SecureString", "value": "@pipeline().parameters.password"}}}},
    {"name": "Text", "type": "WebActivity", "typeProperties": {
       "method": "GET", "url": "@{pipeline().parameters.base}/text"}},
    {"name": "EachTable", "type": "ForEach",
     "dependsOn": [{"activity": "GetConfig", "dependencyConditions": ["Succeeded"]}],
     "typeProperties": {"items": "@activity('GetConfig').output.tables", "isSequential": true,
       "activities": [{"name": "Note", "type": "Script",
         "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
         "typeProperties": {"scripts": [{"type": "NonQuery",
           "text": "INSERT INTO seen VALUES ('table', @t)",
           "parameters": [{"name": "t", "type": "String", "value": "@item()"}]}]}}]}},
    {"name": "Record", "type": "Script",
     "dependsOn": [{"activity": "Echo", "dependencyConditions": ["Succeeded"]},
                   {"activity": "Text", "dependencyConditions": ["Succeeded"]}],
     "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
     "typeProperties": {"scripts": [{"type": "NonQuery",
       "text": "INSERT INTO seen VALUES ('header', @h), ('echo', @e), ('ctype', @c), ('text', @x)",
       "parameters": [
         {"name": "h", "type": "String", "value": "@activity('GetConfig').output.ADFWebActivityResponseHeaders['X-Test']"},
         {"name": "e", "type": "String", "value": "@{activity('Echo').output.received.mode}-@{activity('Echo').output.received.n}"},
         {"name": "c", "type": "String", "value": "@{activity('Echo').output.ctype}"},
         {"name": "x", "type": "String", "value": "@activity('Text').output.Response"}]}]}}
  ]}}"#;
    dir.write("pipeline.json", pipeline);
    let param = format!("base={base}");
    let o = dir.hw(&["pipeline", "run", "pipeline.json", "--param", &param]);
    assert_code(&o, 0);
    let got = rows(&db, "SELECT k, v FROM seen ORDER BY rowid").await;
    assert_eq!(
        got,
        [
            ["table", "a"],
            ["table", "c"],
            ["header", "yes"],
            ["echo", "full-2"],
            ["ctype", "True"],
            ["text", "plain words"],
        ]
    );

    // A non-2xx answer fails the activity, naming the status.
    dir.write(
        "pipeline.json",
        r#"{"name": "Broken", "properties": {
          "parameters": {"base": {"type": "String"}},
          "activities": [{"name": "Call", "type": "WebActivity", "typeProperties": {
            "method": "GET", "url": "@{pipeline().parameters.base}/nothing?key=hidden"}}]}}"#,
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json", "--param", &param]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("activity Call (WebActivity) failed: GET")
            && err.contains("/nothing answered 500 Internal Server Error: it broke"),
        "{err}"
    );
    assert!(!err.contains("hidden"), "{err}");
}

#[test]
fn unsupported_control_properties_are_refused_at_load() {
    let dir = sqlite_factory("adf_ctl_load", "");
    dir.write(
        "pipeline.json",
        r#"{"name": "p", "properties": {"activities": [
          {"name": "Out", "type": "Script",
           "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
           "typeProperties": {"scripts": [{"type": "Query", "text": "select 1",
             "parameters": [{"name": "r", "type": "Int32", "direction": "Output"}]},
             {"type": "Sometimes", "text": "select 2"}]}},
          {"name": "NoText", "type": "Script",
           "typeProperties": {"scripts": [{"type": "Query"}]}},
          {"name": "Msi", "type": "WebActivity", "typeProperties": {
            "method": "GET", "url": "http://127.0.0.1:1/", "authentication": {"type": "MSI", "resource": "x"}}},
          {"name": "PostNoBody", "type": "WebActivity", "typeProperties": {
            "method": "POST", "url": "http://127.0.0.1:1/"}},
          {"name": "Loop", "type": "Until", "typeProperties": {"timeout": "soon", "activities": []}},
          {"name": "Choose", "type": "Switch", "typeProperties": {"on": "x",
            "cases": [{"value": "a", "activities": []}, {"value": "a", "activities": []}]}},
          {"name": "Sift", "type": "Filter", "typeProperties": {"items": "@createArray(1)", "where": "x"}},
          {"name": "Loose", "type": "Filter", "typeProperties": {"items": "@createArray(1)",
            "condition": "@equals(item(), 1)"}}
        ]}}"#,
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 2);
    let err = stderr(&o);
    for want in [
        "activity Out: typeProperties.scripts[0].parameters[0].direction \"Output\" is not supported",
        "activity Out: typeProperties.scripts[1].type must be Query or NonQuery",
        "activity NoText: linkedServiceName is required",
        "activity NoText: typeProperties.scripts[0].text is required",
        "activity Msi: typeProperties.authentication.type MSI is not supported",
        "activity PostNoBody: typeProperties.body is required for a POST request",
        "activity Loop: typeProperties.expression is required",
        "activity Loop: typeProperties.timeout \"soon\" is not a duration",
        "activity Choose: typeProperties.cases[1].value \"a\" is given twice",
        "activity Sift: typeProperties.condition is required",
        "activity Sift: typeProperties.where is not a property of a Filter activity",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    // item() in a Filter's condition is fine.
    assert!(!err.contains("activity Loose"), "{err}");
}
