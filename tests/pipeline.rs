//! `highwater pipeline run`: the Data Factory tutorials' own pipeline JSON
//! (tests/fixtures/adf) against real PostgreSQL, control flow on SQLite,
//! and the errors that must name their place.

use serde_json::Value;

use crate::util::*;

const SINGLE_PIPELINE: &str = include_str!("fixtures/adf/single/pipeline.json");
const SINGLE_DATASETS: &[(&str, &str)] = &[
    (
        "SinkDataset.json",
        include_str!("fixtures/adf/single/datasets/SinkDataset.json"),
    ),
    (
        "SourceDataset.json",
        include_str!("fixtures/adf/single/datasets/SourceDataset.json"),
    ),
    (
        "WatermarkDataset.json",
        include_str!("fixtures/adf/single/datasets/WatermarkDataset.json"),
    ),
];
const MULTI_PIPELINE: &str = include_str!("fixtures/adf/multiple/pipeline.json");
const MULTI_DATASETS: &[(&str, &str)] = &[
    (
        "SinkDataset.json",
        include_str!("fixtures/adf/multiple/datasets/SinkDataset.json"),
    ),
    (
        "SourceDataset.json",
        include_str!("fixtures/adf/multiple/datasets/SourceDataset.json"),
    ),
    (
        "WatermarkDataset.json",
        include_str!("fixtures/adf/multiple/datasets/WatermarkDataset.json"),
    ),
];

fn write_factory(dir: &Dir, pipeline: &str, datasets: &[(&str, &str)]) {
    dir.write("pipeline.json", pipeline);
    for (name, text) in datasets {
        dir.write(&format!("datasets/{name}"), text);
    }
}

/// `pipeline run … --json`: the exit code and the run record.
fn run_json(dir: &Dir, args: &[&str], code: i32) -> Value {
    let mut all = vec!["pipeline", "run", "pipeline.json", "--json"];
    all.extend_from_slice(args);
    let o = dir.hw(&all);
    assert_code(&o, code);
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

fn activity<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == name)
        .unwrap_or_else(|| panic!("no activity {name} in {run:#}"))
}

async fn watermark(db: &PgDb, table: &str) -> String {
    let row = db
        .client
        .query_one(
            "SELECT to_char(WatermarkValue, 'YYYY-MM-DD HH24:MI:SS') FROM watermarktable WHERE TableName = $1",
            &[&table],
        )
        .await
        .unwrap();
    row.get(0)
}

const PG_WRITE_WATERMARK: &str = "
    CREATE PROCEDURE usp_write_watermark(LastModifiedtime timestamp, TableName varchar(50))
    LANGUAGE sql AS $$
        UPDATE watermarktable SET WatermarkValue = LastModifiedtime
        WHERE watermarktable.TableName = usp_write_watermark.TableName
    $$;";

#[tokio::test]
async fn single_table_watermark_tutorial_on_postgres() {
    let db = PgDb::new("adf_single").await;
    db.exec(&format!(
        "CREATE TABLE data_source_table (PersonID int, Name varchar(255), LastModifytime timestamp);
         INSERT INTO data_source_table VALUES
           (1, 'aaaa', '2017-09-01 00:56:00'), (2, 'bbbb', '2017-09-02 05:23:00'),
           (3, 'cccc', '2017-09-03 02:36:00'), (4, 'dddd', '2017-09-04 03:21:00'),
           (5, 'eeee', '2017-09-05 08:06:00');
         CREATE TABLE watermarktable (TableName varchar(255), WatermarkValue timestamp);
         INSERT INTO watermarktable VALUES ('data_source_table', '2010-01-01 00:00:00');
         {PG_WRITE_WATERMARK}"
    ))
    .await;
    let dir = Dir::new("adf_single");
    write_factory(&dir, SINGLE_PIPELINE, SINGLE_DATASETS);
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  AzureSQLDatabaseLinkedService: {}\n  AzureStorageLinkedService: file://./lake\n",
            db.url
        ),
    );

    // Run 1: the five rows.
    let run = run_json(&dir, &[], 0);
    let run_id = run["run_id"].as_str().unwrap().to_string();
    assert_eq!(run["status"], "Succeeded");
    let file = dir.join(&format!(
        "lake/adftutorial/incrementalcopy/Incremental-{run_id}.txt"
    ));
    // The tutorial's TextFormat dataset: no header (firstRowAsHeader
    // defaults to false), rows end with \r\n, as Data Factory writes them.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("1,aaaa,2017-09-01T00:56:00\r\n"), "{text}");
    let rows = parse_csv(&text);
    assert_eq!(
        rows,
        [
            ["1", "aaaa", "2017-09-01T00:56:00"],
            ["2", "bbbb", "2017-09-02T05:23:00"],
            ["3", "cccc", "2017-09-03T02:36:00"],
            ["4", "dddd", "2017-09-04T03:21:00"],
            ["5", "eeee", "2017-09-05T08:06:00"],
        ]
    );
    let copy = activity(&run, "IncrementalCopyActivity");
    assert_eq!(copy["mode"], "Copy");
    assert_eq!(copy["status"], "Succeeded");
    assert_eq!(copy["rows_read"], 5);
    assert_eq!(copy["rows_written"], 5);
    assert_eq!(
        activity(&run, "StoredProceduretoWriteWatermarkActivity")["mode"],
        "SqlServerStoredProcedure"
    );
    assert_eq!(
        activity(&run, "LookupOldWaterMarkActivity")["mode"],
        "Lookup"
    );
    assert_eq!(run["streams"].as_array().unwrap().len(), 4);
    assert_eq!(
        watermark(&db, "data_source_table").await,
        "2017-09-05 08:06:00"
    );

    // Run 2: exactly the two new rows, in a file of its own.
    db.exec(
        "INSERT INTO data_source_table VALUES (6, 'newdata', '2017-09-06 02:23:00');
         INSERT INTO data_source_table VALUES (7, 'newdata', '2017-09-07 09:01:00');",
    )
    .await;
    let run2 = run_json(&dir, &[], 0);
    let run2_id = run2["run_id"].as_str().unwrap();
    assert_ne!(run2_id, run_id);
    let rows = parse_csv(
        &std::fs::read_to_string(dir.join(&format!(
            "lake/adftutorial/incrementalcopy/Incremental-{run2_id}.txt"
        )))
        .unwrap(),
    );
    assert_eq!(
        rows,
        [
            ["6", "newdata", "2017-09-06T02:23:00"],
            ["7", "newdata", "2017-09-07T09:01:00"],
        ]
    );
    assert_eq!(dir.files("lake/adftutorial", ".txt").len(), 2);
    assert_eq!(
        watermark(&db, "data_source_table").await,
        "2017-09-07 09:01:00"
    );

    // Both runs are in the history with their activities.
    let o = dir.hw(&["runs", "show", &run_id, "--json"]);
    assert_code(&o, 0);
    let shown: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        activity(&shown, "IncrementalCopyActivity")["rows_written"],
        5
    );
    let o = dir.hw(&["runs", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn multiple_tables_for_each_tutorial_on_postgres() {
    let db = PgDb::new("adf_multi").await;
    db.exec(
        "CREATE TABLE customer_table (PersonID int, Name varchar(255), LastModifytime timestamp);
         CREATE TABLE project_table (Project varchar(255), Creationtime timestamp);
         INSERT INTO customer_table VALUES
           (1, 'John', '2017-09-01 00:56:00'), (2, 'Mike', '2017-09-02 05:23:00'),
           (3, 'Alice', '2017-09-03 02:36:00'), (4, 'Andy', '2017-09-04 03:21:00'),
           (5, 'Anny', '2017-09-05 08:06:00');
         INSERT INTO project_table VALUES
           ('project1', '2015-01-01 00:00:00'), ('project2', '2016-02-02 01:23:00'),
           ('project3', '2017-03-04 05:16:00');
         CREATE TABLE watermarktable (TableName varchar(255), WatermarkValue timestamp);
         INSERT INTO watermarktable VALUES
           ('customer_table', '2010-01-01 00:00:00'), ('project_table', '2010-01-01 00:00:00');
         CREATE SCHEMA dbo;
         CREATE PROCEDURE dbo.usp_write_watermark(LastModifiedtime timestamp, TableName varchar(50))
         LANGUAGE sql AS $$
             UPDATE watermarktable SET WatermarkValue = LastModifiedtime
             WHERE watermarktable.TableName = usp_write_watermark.TableName
         $$;",
    )
    .await;
    let dir = Dir::new("adf_multi");
    write_factory(&dir, MULTI_PIPELINE, MULTI_DATASETS);
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  SqlServerLinkedService: {url}\n  AzureSQLDatabaseLinkedService: {url}\n  LakeLinkedService: file://./lake\n",
            url = db.url
        ),
    );
    let table_list = r#"[{"TABLE_NAME":"customer_table","WaterMark_Column":"LastModifytime","TableType":"DataTypeforCustomerTable","StoredProcedureNameForMergeOperation":"usp_upsert_customer_table"},{"TABLE_NAME":"project_table","WaterMark_Column":"Creationtime","TableType":"DataTypeforProjectTable","StoredProcedureNameForMergeOperation":"usp_upsert_project_table"}]"#;
    let param = format!("tableList={table_list}");

    // A required parameter without a value is a usage error.
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--param tableList="), "{}", stderr(&o));

    let run = run_json(&dir, &["--param", &param], 0);
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (_, customers) = read_csv(&dir.join(&format!(
        "lake/target/customer_table/customer_table-{run_id}.csv"
    )));
    assert_eq!(customers.len(), 5);
    assert_eq!(customers[2], ["3", "Alice", "2017-09-03T02:36:00"]);
    let (_, projects) = read_csv(&dir.join(&format!(
        "lake/target/project_table/project_table-{run_id}.csv"
    )));
    assert_eq!(
        projects,
        [
            ["project1", "2015-01-01T00:00:00"],
            ["project2", "2016-02-02T01:23:00"],
            ["project3", "2017-03-04T05:16:00"],
        ]
    );
    assert_eq!(
        watermark(&db, "customer_table").await,
        "2017-09-05 08:06:00"
    );
    assert_eq!(watermark(&db, "project_table").await, "2017-03-04 05:16:00");
    // One record per iteration and activity, plus the ForEach itself.
    assert_eq!(run["streams"].as_array().unwrap().len(), 9);
    assert_eq!(
        activity(&run, "IterateSQLTables[1]/IncrementalCopyActivity")["rows_written"],
        3
    );
    assert_eq!(activity(&run, "IterateSQLTables")["status"], "Succeeded");

    // The tutorial's changes between the runs; run 2 copies just them.
    db.exec(
        "UPDATE customer_table SET LastModifytime = '2017-09-08T00:00:00Z', name = 'NewName' WHERE PersonID = 3;
         INSERT INTO project_table VALUES ('NewProject', '2017-10-01 00:00:00');",
    )
    .await;
    let run2 = run_json(&dir, &["--param", &param], 0);
    let run2_id = run2["run_id"].as_str().unwrap();
    let (_, customers) = read_csv(&dir.join(&format!(
        "lake/target/customer_table/customer_table-{run2_id}.csv"
    )));
    assert_eq!(customers, [["3", "NewName", "2017-09-08T00:00:00"]]);
    let (_, projects) = read_csv(&dir.join(&format!(
        "lake/target/project_table/project_table-{run2_id}.csv"
    )));
    assert_eq!(projects, [["NewProject", "2017-10-01T00:00:00"]]);
    assert_eq!(
        watermark(&db, "customer_table").await,
        "2017-09-08 00:00:00"
    );
    assert_eq!(watermark(&db, "project_table").await, "2017-10-01 00:00:00");
}

/// A SQLite database with three rows and a pipeline with If Condition, Set
/// and Append Variable, Wait, Fail and a `Failed` dependency that handles it.
fn control_flow_dir(extra_activity: &str) -> Dir {
    let dir = sqlite_factory("adf_flow", "");
    dir.write(
        "dataset/Table.json",
        r#"{"name": "Table", "properties": {"type": "AzureSqlTable",
            "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "t"}}}"#,
    );
    dir.write(
        "dataset/Report.json",
        r#"{"name": "Report", "properties": {"type": "DelimitedText",
            "linkedServiceName": {"referenceName": "Lake", "type": "LinkedServiceReference"},
            "parameters": {"name": {"type": "String", "defaultValue": "report"}},
            "typeProperties": {"location": {"type": "AzureBlobStorageLocation",
                "folderPath": "out", "fileName": "@concat(dataset().name, '.csv')"},
                "firstRowAsHeader": true}}}"#,
    );
    let pipeline = r#"{
  "name": "Flow",
  "properties": {
    "parameters": {"threshold": {"type": "int", "defaultValue": 2}},
    "variables": {"msg": {"type": "String"}, "seen": {"type": "Array"}},
    "activities": [
      {"name": "CountRows", "type": "Lookup", "typeProperties": {
         "source": {"type": "SqlSource", "sqlReaderQuery": "select count(*) as n from t"},
         "dataset": {"referenceName": "Table", "type": "DatasetReference"}}},
      {"name": "AllRows", "type": "Lookup", "typeProperties": {
         "source": {"type": "SqlSource"}, "firstRowOnly": false,
         "dataset": {"referenceName": "Table", "type": "DatasetReference"}}},
      {"name": "Remember", "type": "ForEach",
       "dependsOn": [{"activity": "AllRows", "dependencyConditions": ["Succeeded"]}],
       "typeProperties": {"items": {"value": "@activity('AllRows').output.value", "type": "Expression"},
         "isSequential": true, "activities": [
           {"name": "Add", "type": "AppendVariable",
            "typeProperties": {"variableName": "seen", "value": "@item().name"}}]}},
      {"name": "Enough", "type": "IfCondition",
       "dependsOn": [{"activity": "CountRows", "dependencyConditions": ["Succeeded"]}],
       "typeProperties": {
         "expression": {"value": "@greater(int(activity('CountRows').output.firstRow.n), pipeline().parameters.threshold)", "type": "Expression"},
         "ifTrueActivities": [{"name": "SetMany", "type": "SetVariable", "typeProperties": {
            "variableName": "msg", "value": "@concat('many:', string(activity('CountRows').output.firstRow.n))"}}],
         "ifFalseActivities": [{"name": "SetFew", "type": "SetVariable", "typeProperties": {
            "variableName": "msg", "value": "few"}}]}},
      {"name": "Pause", "type": "Wait",
       "dependsOn": [{"activity": "Enough", "dependencyConditions": ["Succeeded"]},
                     {"activity": "Remember", "dependencyConditions": ["Succeeded"]}],
       "typeProperties": {"waitTimeInSeconds": 1}},
      {"name": "Boom", "type": "Fail",
       "dependsOn": [{"activity": "Pause", "dependencyConditions": ["Completed"]}],
       "typeProperties": {"message": "@concat('boom ', variables('msg'))", "errorCode": "42"}},
      {"name": "Report", "type": "Copy",
       "dependsOn": [{"activity": "Boom", "dependencyConditions": ["Failed"]}],
       "typeProperties": {"source": {"type": "SqlSource",
          "sqlReaderQuery": "select '@{variables('msg')}' as msg, '@{join(variables('seen'), '+')}' as seen, '@{activity('Boom').status}' as boom, @{activity('Pause').output?.count} + 0 as missing"}},
       "inputs": [{"referenceName": "Table", "type": "DatasetReference"}],
       "outputs": [{"referenceName": "Report", "type": "DatasetReference"}]}
      EXTRA
    ]
  }
}"#
    .replace("EXTRA", extra_activity);
    dir.write("pipeline.json", &pipeline);
    dir
}

#[test]
fn control_flow_if_variables_wait_and_a_failed_path() {
    let dir = control_flow_dir("");
    let started = std::time::Instant::now();
    // `activity('Pause').output?.count` does not exist: the Report's query
    // interpolates nothing there, which SQLite reads as `+ 0`.
    let run = run_json(&dir, &[], 0);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(run["status"], "Succeeded");
    let (header, rows) = read_csv(&dir.join("lake/out/report.csv"));
    assert_eq!(header, ["msg", "seen", "boom", "missing"]);
    assert_eq!(rows, [["many:3", "a+b+c", "Failed", "0"]]);
    let boom = activity(&run, "Boom");
    assert_eq!(boom["status"], "Failed");
    assert!(
        boom["error"]
            .as_str()
            .unwrap()
            .contains("boom many:3 (error code 42)"),
        "{boom}"
    );
    assert_eq!(activity(&run, "Enough/SetMany")["status"], "Succeeded");
    assert_eq!(activity(&run, "Remember[2]/Add")["status"], "Succeeded");
    assert_eq!(activity(&run, "CountRows")["rows_read"], 1);
    assert_eq!(activity(&run, "AllRows")["rows_read"], 3);

    // The other branch, with a parameter override.
    let run = run_json(&dir, &["--param", "threshold=5"], 0);
    assert_eq!(activity(&run, "Enough/SetFew")["status"], "Succeeded");
    let (_, rows) = read_csv(&dir.join("lake/out/report.csv"));
    assert_eq!(rows, [["few", "a+b+c", "Failed", "0"]]);
}

#[test]
fn a_failure_next_to_a_skipped_success_path_fails_the_pipeline() {
    // Boom → (Succeeded) Never is skipped; the leaf rule judges Boom: Failed.
    let dir = control_flow_dir(
        r#", {"name": "Never", "type": "Wait",
              "dependsOn": [{"activity": "Boom", "dependencyConditions": ["Succeeded"]}],
              "typeProperties": {"waitTimeInSeconds": 0}}"#,
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("activity Boom (Fail) failed: boom many:3 (error code 42)"),
        "{err}"
    );
    assert!(stdout(&o).contains("Never: skipped"), "{}", stdout(&o));
    // The handler still ran.
    let (_, rows) = read_csv(&dir.join("lake/out/report.csv"));
    assert_eq!(rows.len(), 1);
    let o = dir.hw(&["runs", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list[0]["status"], "Failed");
}

#[test]
fn bad_expressions_name_the_activity_and_the_position() {
    // A syntax error: exit 2 before anything runs.
    let dir = control_flow_dir("");
    let text = std::fs::read_to_string(dir.join("pipeline.json")).unwrap();
    dir.write(
        "pipeline.json",
        &text.replace(
            "@concat('boom ', variables('msg'))",
            "@concat('boom ', variables('msg')",
        ),
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("activity Boom: typeProperties.message"),
        "{err}"
    );
    assert!(err.contains("syntax error at line 1, column"), "{err}");
    assert!(!dir.join("lake").exists());

    // An evaluation error: the activity fails at run time, exit 1.
    dir.write(
        "pipeline.json",
        &text.replace(
            "string(activity('CountRows').output.firstRow.n)",
            "string(div(activity('CountRows').output.firstRow.n, 0))",
        ),
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("activity Enough/SetMany (SetVariable) failed"),
        "{err}"
    );
    assert!(err.contains("typeProperties.value"), "{err}");
    assert!(err.contains("at line 1, column"), "{err}");
}

#[test]
fn malformed_pipelines_exit_2_and_name_the_place() {
    let dir = control_flow_dir("");
    // A linked service without a connection names it.
    dir.write("highwater.yaml", "connections:\n  Db: sqlite://src.db\n");
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("linked service Lake (used by activity Report) has no connection"),
        "{err}"
    );
    dir.write(
        "highwater.yaml",
        "connections:\n  Db: sqlite://src.db\n  Lake: file://./lake\n",
    );

    // JSON syntax: line and column.
    dir.write(
        "bad.json",
        "{\n  \"name\": \"x\",\n  \"properties\": {\"activities\": [}\n}",
    );
    let o = dir.hw(&["pipeline", "run", "bad.json"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("bad.json:3:"), "{}", stderr(&o));

    // An activity type that is not supported, a missing dataset, an unknown parameter.
    dir.write(
        "other.json",
        r#"{"name": "x", "properties": {"activities": [
            {"name": "Meta", "type": "ExecuteDataFlow", "typeProperties": {}},
            {"name": "L", "type": "Lookup", "typeProperties": {"dataset": {"referenceName": "Nope"}}}]}}"#,
    );
    let o = dir.hw(&["pipeline", "run", "other.json"]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("activity Meta: activity type `ExecuteDataFlow` is not supported"),
        "{err}"
    );
    assert!(err.contains("activity L: dataset Nope not found"), "{err}");

    let o = dir.hw(&["pipeline", "run", "pipeline.json", "--param", "nope=1"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("the pipeline has no parameter nope"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn stored_procedure_values_are_bound_on_mariadb() {
    use mysql_async::prelude::Queryable;
    let db = MyDb::new("adf_proc").await;
    let mut conn = db.connect().await;
    conn.query_drop(
        "CREATE TABLE log (v VARCHAR(100), n INT);
         CREATE PROCEDURE `usp_log`(IN p_v VARCHAR(100), IN p_n INT) INSERT INTO log VALUES (p_v, p_n);",
    )
    .await
    .unwrap();
    let dir = Dir::new("adf_proc");
    dir.write(
        "highwater.yaml",
        &format!("connections:\n  My: {}\n", db.url),
    );
    dir.write(
        "pipeline.json",
        r#"{"name": "p", "properties": {
            "parameters": {"v": {"type": "String", "defaultValue": "x'); DROP TABLE log; --"}},
            "activities": [{"name": "Log", "type": "SqlServerStoredProcedure",
            "linkedServiceName": {"referenceName": "My", "type": "LinkedServiceReference"},
            "typeProperties": {"storedProcedureName": "[usp_log]", "storedProcedureParameters": {
               "p_v": {"value": "@pipeline().parameters.v", "type": "String"},
               "p_n": {"value": "@add(40, 2)", "type": "Int32"}}}}]}}"#,
    );
    let run = run_json(&dir, &[], 0);
    assert_eq!(activity(&run, "Log")["status"], "Succeeded");
    let rows: Vec<(String, i32)> = conn.query("SELECT v, n FROM log").await.unwrap();
    assert_eq!(rows, [("x'); DROP TABLE log; --".to_string(), 42)]);
    let _ = conn.disconnect().await;
}

#[test]
fn policy_retry_and_timeout() {
    let dir = control_flow_dir("");
    dir.write(
        "pipeline.json",
        r#"{"name": "p", "properties": {"activities": [
            {"name": "Missing", "type": "Lookup",
             "policy": {"retry": 2, "retryIntervalInSeconds": 0, "timeout": "0.00:05:00"},
             "typeProperties": {"source": {"type": "SqlSource", "sqlReaderQuery": "select * from nope"},
               "dataset": {"referenceName": "Table", "type": "DatasetReference"}}},
            {"name": "Slow", "type": "Wait", "policy": {"timeout": "0:00:01"},
             "typeProperties": {"waitTimeInSeconds": 30}}]}}"#,
    );
    let started = std::time::Instant::now();
    let run = run_json(&dir, &[], 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let missing = activity(&run, "Missing");
    assert_eq!(missing["status"], "Failed");
    let notes = missing["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 2, "{missing}");
    assert!(notes[0].as_str().unwrap().starts_with("attempt 1 failed"));
    assert!(
        missing["error"].as_str().unwrap().contains("nope"),
        "{missing}"
    );
    let slow = activity(&run, "Slow");
    assert!(
        slow["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{slow}"
    );
}

/// A factory layout (`pipeline/`, `dataset/`, `highwater.yaml` at the root)
/// run without `--config`: the config next to the factory is found, and
/// Parquet and Json datasets write Parquet and JSON Lines.
#[test]
fn factory_layout_without_config_writes_parquet_and_json_lines() {
    let dir = Dir::new("adf_layout");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t (id INTEGER, name TEXT); INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c');",
    )
    .unwrap();
    dir.write(
        "factory/highwater.yaml",
        "connections:\n  Db: sqlite://../src.db\n  Lake: file://./lake\n",
    );
    dir.write(
        "factory/dataset/T.json",
        r#"{"name": "T", "properties": {"type": "SqliteTable",
            "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "t"}}}"#,
    );
    for (name, kind) in [("Pq", "Parquet"), ("Js", "Json")] {
        dir.write(
            &format!("factory/dataset/{name}.json"),
            &format!(
                r#"{{"name": "{name}", "properties": {{"type": "{kind}",
                "linkedServiceName": {{"referenceName": "Lake", "type": "LinkedServiceReference"}},
                "parameters": {{"file": {{"type": "String"}}}},
                "typeProperties": {{"location": {{"type": "AzureBlobStorageLocation",
                    "folderPath": "out", "fileName": {{"value": "@dataset().file", "type": "Expression"}}}}}}}}}}"#
            ),
        );
    }
    dir.write(
        "factory/pipeline/Export.json",
        r#"{"name": "Export", "properties": {"activities": [
            {"name": "ToParquet", "type": "Copy", "typeProperties": {"source": {"type": "SqlSource"}},
             "inputs": [{"referenceName": "T", "type": "DatasetReference"}],
             "outputs": [{"referenceName": "Pq", "type": "DatasetReference", "parameters": {"file": "t.parquet"}}]},
            {"name": "ToJson", "type": "Copy",
             "dependsOn": [{"activity": "ToParquet", "dependencyConditions": ["Succeeded"]}],
             "typeProperties": {"source": {"type": "SqlSource",
                "sqlReaderQuery": "select id, name from t where id > @{sub(activity('ToParquet').output.rowsCopied, 2)}"}},
             "inputs": [{"referenceName": "T", "type": "DatasetReference"}],
             "outputs": [{"referenceName": "Js", "type": "DatasetReference", "parameters": {"file": "t.jsonl"}}]}]}}"#,
    );
    let o = std::process::Command::new(bin())
        .args(["pipeline", "run", "factory/pipeline/Export.json"])
        .current_dir(&dir.path)
        .env_remove("HIGHWATER_CONFIG")
        .output()
        .unwrap();
    assert_code(&o, 0);
    let file = std::fs::File::open(dir.join("factory/lake/out/t.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);
    let json = std::fs::read_to_string(dir.join("factory/lake/out/t.jsonl")).unwrap();
    let lines: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"id": 2, "name": "b"}),
            serde_json::json!({"id": 3, "name": "c"})
        ]
    );
    // The run history is in the factory's state store.
    let o = std::process::Command::new(bin())
        .args(["-c", "factory/highwater.yaml", "runs", "--json"])
        .current_dir(&dir.path)
        .output()
        .unwrap();
    let runs: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(runs[0]["streams"].as_array().unwrap().len(), 2);
}

#[test]
fn execute_pipeline_runs_a_sibling_pipeline_with_parameters() {
    let dir = control_flow_dir("");
    dir.write(
        "pipeline.json",
        r#"{"name": "Parent", "properties": {
            "parameters": {"ids": {"type": "array", "defaultValue": [1, 3]}},
            "activities": [
            {"name": "EachId", "type": "ForEach", "typeProperties": {
               "items": {"value": "@pipeline().parameters.ids", "type": "Expression"},
               "batchCount": 2,
               "activities": [{"name": "RunChild", "type": "ExecutePipeline", "typeProperties": {
                  "pipeline": {"referenceName": "CopyOne", "type": "PipelineReference"},
                  "waitOnCompletion": true,
                  "parameters": {"id": {"value": "@item()", "type": "Expression"}}}}]}}]}}"#,
    );
    dir.write(
        "child.json",
        r#"{"name": "CopyOne", "properties": {
            "parameters": {"id": {"type": "int"}},
            "variables": {"label": {"type": "String"}},
            "activities": [
            {"name": "Label", "type": "SetVariable", "typeProperties": {"variableName": "label",
               "value": "@concat(pipeline().TriggeredByPipelineName, '-', string(pipeline().parameters.id))"}},
            {"name": "CopyRow", "type": "Copy",
             "dependsOn": [{"activity": "Label", "dependencyConditions": ["Succeeded"]}],
             "typeProperties": {"source": {"type": "SqlSource",
               "sqlReaderQuery": "select id, name, '@{variables('label')}' as label from t where id = @{pipeline().parameters.id}"}},
             "inputs": [{"referenceName": "Table", "type": "DatasetReference"}],
             "outputs": [{"referenceName": "Report", "type": "DatasetReference",
                "parameters": {"name": "@concat('row-', string(pipeline().parameters.id))"}}]}]}}"#,
    );
    let run = run_json(&dir, &[], 0);
    for (id, name) in [("1", "a"), ("3", "c")] {
        let (header, rows) = read_csv(&dir.join(&format!("lake/out/row-{id}.csv")));
        assert_eq!(header, ["id", "name", "label"]);
        assert_eq!(rows, [[id, name, &format!("Parent-{id}")]]);
    }
    assert_eq!(
        activity(&run, "EachId[1]/RunChild/CopyRow")["rows_written"],
        1
    );
    assert_eq!(activity(&run, "EachId[0]/RunChild")["status"], "Succeeded");

    // A failing child fails the Execute Pipeline activity and the parent.
    let o = dir.hw(&["pipeline", "run", "pipeline.json", "--param", "ids=[\"x\"]"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("pipeline CopyOne failed"), "{err}");
    assert!(err.contains("EachId[0]/RunChild/CopyRow"), "{err}");

    // A pipeline that is not there is reported before anything runs.
    let text = std::fs::read_to_string(dir.join("pipeline.json")).unwrap();
    dir.write("pipeline.json", &text.replace("\"CopyOne\"", "\"Nowhere\""));
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("activity RunChild: pipeline Nowhere not found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stored_procedure_on_sqlite_says_it_has_none() {
    let dir = control_flow_dir("");
    dir.write(
        "pipeline.json",
        r#"{"name": "p", "properties": {"activities": [
            {"name": "Proc", "type": "SqlServerStoredProcedure",
             "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
             "typeProperties": {"storedProcedureName": "usp_x"}}]}}"#,
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("activity Proc (SqlServerStoredProcedure) failed: storedProcedureName: SQLite has no stored procedures"),
        "{}",
        stderr(&o)
    );
}

/// Copy into a table dataset: insert (append) and `writeBehavior: upsert`,
/// from SQLite into PostgreSQL, each run one commit transaction.
#[tokio::test]
async fn copy_into_a_table_dataset_inserts_and_upserts() {
    let pg = PgDb::new("adf_sink").await;
    pg.exec("CREATE TABLE copy_up (id bigint primary key, name text)")
        .await;
    let dir = control_flow_dir("");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  Db: sqlite://src.db\n  Lake: file://./lake\n  Dwh: {}\n",
            pg.url
        ),
    );
    for (name, table) in [
        ("Appended", "public.copy_log"),
        ("Upserted", "public.copy_up"),
    ] {
        dir.write(
            &format!("dataset/{name}.json"),
            &format!(
                r#"{{"name": "{name}", "properties": {{"type": "AzureSqlTable",
                    "linkedServiceName": {{"referenceName": "Dwh", "type": "LinkedServiceReference"}},
                    "typeProperties": {{"tableName": "{table}"}}}}}}"#
            ),
        );
    }
    dir.write(
        "sink.json",
        r#"{"name": "x", "properties": {"activities": [
            {"name": "Append", "type": "Copy",
             "typeProperties": {"source": {"type": "SqlSource"}, "sink": {"type": "AzureSqlSink"}},
             "inputs": [{"referenceName": "Table"}], "outputs": [{"referenceName": "Appended"}]},
            {"name": "Upsert", "type": "Copy",
             "typeProperties": {"source": {"type": "SqlSource"},
                                "sink": {"type": "AzureSqlSink", "writeBehavior": "upsert", "upsertSettings": {"keys": ["id"]}}},
             "inputs": [{"referenceName": "Table"}], "outputs": [{"referenceName": "Upserted"}]}]}}"#,
    );
    assert_code(&dir.hw(&["pipeline", "run", "sink.json"]), 0);
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch("UPDATE t SET name = 'B' WHERE id = 2; INSERT INTO t VALUES (4, 'd');")
        .unwrap();
    let o = dir.hw(&["pipeline", "run", "sink.json"]);
    assert_code(&o, 0);
    let count = |sql: &'static str| {
        let c = &pg.client;
        async move { c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM copy_log").await,
        7,
        "insert appends: 3 + 4 rows"
    );
    assert_eq!(
        count("SELECT count(*) FROM copy_up").await,
        4,
        "upsert keeps one row per key"
    );
    let b: String = pg
        .client
        .query_one("SELECT name FROM copy_up WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(b, "B");
    // A stored-procedure sink (SQL Server table types) is refused clearly.
    dir.write(
        "sp.json",
        r#"{"name": "x", "properties": {"activities": [
            {"name": "Sp", "type": "Copy",
             "typeProperties": {"source": {"type": "SqlSource"},
                                "sink": {"type": "AzureSqlSink", "sqlWriterStoredProcedureName": "usp_upsert"}},
             "inputs": [{"referenceName": "Table"}], "outputs": [{"referenceName": "Upserted"}]}]}}"#,
    );
    // Refused at load, before anything runs.
    let o = dir.hw(&["pipeline", "run", "sp.json"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("activity Sp: sink.sqlWriterStoredProcedureName"),
        "{}",
        stderr(&o)
    );
}
