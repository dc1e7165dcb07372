//! `highwater pipeline rerun RUN_ID [--from-failed]` (issue 8, monitoring):
//! the watermark tutorial's pipeline (Lookup, Lookup, Copy, Stored
//! Procedure) on PostgreSQL and MariaDB, failing or killed part way, then
//! rerun from failed: every row arrives exactly once and the watermark
//! moves once. `runs show` lists the activity runs in start order, with
//! input and output JSON.

use serde_json::Value;

use crate::util::*;

#[derive(Clone, Copy)]
enum Backend {
    Postgres,
    Mariadb,
}

const SOURCE_ROWS: &str = "
    CREATE TABLE data_source_table (PersonID int, Name varchar(255), LastModifytime timestamp NULL);
    INSERT INTO data_source_table VALUES
      (1, 'aaaa', '2017-09-01 00:56:00'), (2, 'bbbb', '2017-09-02 05:23:00'),
      (3, 'cccc', '2017-09-03 02:36:00'), (4, 'dddd', '2017-09-04 03:21:00'),
      (5, 'eeee', '2017-09-05 08:06:00');
    CREATE TABLE watermarktable (TableName varchar(255), WatermarkValue timestamp NULL);
    INSERT INTO watermarktable VALUES ('data_source_table', '2010-01-01 00:00:00');
    CREATE TABLE fail_once (reason varchar(50));";

/// The tutorial's procedure, failing while `fail_once` has a row.
fn procedure(b: Backend) -> &'static str {
    match b {
        Backend::Postgres => {
            "CREATE PROCEDURE usp_write_watermark(LastModifiedtime timestamp, TableName varchar(50))
             LANGUAGE plpgsql AS $$ BEGIN
                IF EXISTS (SELECT 1 FROM fail_once) THEN RAISE EXCEPTION 'asked to fail'; END IF;
                UPDATE watermarktable SET WatermarkValue = LastModifiedtime
                WHERE watermarktable.TableName = usp_write_watermark.TableName;
             END $$;"
        }
        Backend::Mariadb => {
            "CREATE PROCEDURE usp_write_watermark(LastModifiedtime datetime, TableName varchar(50))
             BEGIN
                IF EXISTS (SELECT 1 FROM fail_once) THEN
                    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'asked to fail';
                END IF;
                UPDATE watermarktable SET WatermarkValue = LastModifiedtime
                WHERE watermarktable.TableName = TableName;
             END"
        }
    }
}

async fn factory(b: Backend) -> (Dir, SrcDb) {
    let dir = Dir::new("adf_rerun");
    let name = match b {
        Backend::Postgres => "postgres",
        Backend::Mariadb => "mariadb",
    };
    let db = SrcDb::new(name, &dir, "adf_rerun").await;
    db.exec(SOURCE_ROWS).await;
    db.exec(procedure(b)).await;
    let (table_type, source_type) = match b {
        Backend::Postgres => ("AzurePostgreSqlTable", "AzurePostgreSqlSource"),
        Backend::Mariadb => ("MySqlTable", "MySqlSource"),
    };
    dir.write(
        "highwater.yaml",
        &format!("connections:\n  Db: {}\n  Lake: file://./lake\n", db.url()),
    );
    for (ds, table) in [
        ("SourceDataset", "data_source_table"),
        ("WatermarkDataset", "watermarktable"),
    ] {
        dir.write(
            &format!("dataset/{ds}.json"),
            &format!(
                r#"{{"name": "{ds}", "properties": {{"type": "{table_type}",
                "linkedServiceName": {{"referenceName": "Db", "type": "LinkedServiceReference"}},
                "typeProperties": {{"tableName": "{table}"}}}}}}"#
            ),
        );
    }
    dir.write(
        "dataset/SinkDataset.json",
        r#"{"name": "SinkDataset", "properties": {"type": "DelimitedText",
            "linkedServiceName": {"referenceName": "Lake", "type": "LinkedServiceReference"},
            "typeProperties": {"location": {"type": "AzureBlobStorageLocation", "folderPath": "incrementalcopy",
               "fileName": {"value": "@CONCAT('Incremental-', pipeline().RunId, '.txt')", "type": "Expression"}},
               "columnDelimiter": ",", "firstRowAsHeader": true}}}"#,
    );
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "IncrementalCopyPipeline", "properties": {{"activities": [
            {{"name": "LookupOldWaterMarkActivity", "type": "Lookup", "typeProperties": {{
               "source": {{"type": "{source_type}", "query": "select * from watermarktable"}},
               "dataset": {{"referenceName": "WatermarkDataset", "type": "DatasetReference"}}}}}},
            {{"name": "LookupNewWaterMarkActivity", "type": "Lookup", "typeProperties": {{
               "source": {{"type": "{source_type}",
                  "query": "select MAX(LastModifytime) as NewWatermarkvalue from data_source_table"}},
               "dataset": {{"referenceName": "SourceDataset", "type": "DatasetReference"}}}}}},
            {{"name": "IncrementalCopyActivity", "type": "Copy",
              "dependsOn": [
                {{"activity": "LookupNewWaterMarkActivity", "dependencyConditions": ["Succeeded"]}},
                {{"activity": "LookupOldWaterMarkActivity", "dependencyConditions": ["Succeeded"]}}],
              "typeProperties": {{"source": {{"type": "{source_type}",
                  "query": "select * from data_source_table where LastModifytime > '@{{activity('LookupOldWaterMarkActivity').output.firstRow.WatermarkValue}}' and LastModifytime <= '@{{activity('LookupNewWaterMarkActivity').output.firstRow.NewWatermarkvalue}}' order by PersonID"}},
                 "sink": {{"type": "DelimitedTextSink"}}}},
              "inputs": [{{"referenceName": "SourceDataset", "type": "DatasetReference"}}],
              "outputs": [{{"referenceName": "SinkDataset", "type": "DatasetReference"}}]}},
            {{"name": "StoredProceduretoWriteWatermarkActivity", "type": "SqlServerStoredProcedure",
              "dependsOn": [{{"activity": "IncrementalCopyActivity", "dependencyConditions": ["Succeeded"]}}],
              "linkedServiceName": {{"referenceName": "Db", "type": "LinkedServiceReference"}},
              "typeProperties": {{"storedProcedureName": "usp_write_watermark",
                 "storedProcedureParameters": {{
                   "LastModifiedtime": {{"value": "@{{activity('LookupNewWaterMarkActivity').output.firstRow.NewWatermarkvalue}}", "type": "DateTime"}},
                   "TableName": {{"value": "@{{activity('LookupOldWaterMarkActivity').output.firstRow.TableName}}", "type": "String"}}}}}}}}
            ]}}}}"#
        ),
    );
    (dir, db)
}

/// Every PersonID that arrived in the lake, sorted, duplicates kept.
fn arrived(dir: &Dir) -> Vec<i64> {
    let mut ids: Vec<i64> = dir
        .files("lake/incrementalcopy", "")
        .iter()
        .flat_map(|f| read_csv(f).1)
        .map(|r| r[0].parse().unwrap())
        .collect();
    ids.sort();
    ids
}

async fn watermark(db: &SrcDb) -> String {
    let sql = "SELECT CAST(WatermarkValue AS char(19)) FROM watermarktable";
    match db {
        SrcDb::Pg(p) => {
            let row = p.client.query_one(sql, &[]).await.unwrap();
            row.get(0)
        }
        SrcDb::My(m) => {
            use mysql_async::prelude::Queryable;
            let mut c = m.connect().await;
            let v: Option<String> = c.query_first(sql).await.unwrap();
            v.unwrap()
        }
        SrcDb::Lite(_) => unreachable!("no stored procedures on SQLite"),
    }
}

fn run_id(o: &std::process::Output) -> String {
    let text = stdout(o);
    let line = text
        .lines()
        .find(|l| l.starts_with("pipeline "))
        .unwrap_or_else(|| panic!("no run line in {text}"));
    line.split_whitespace().nth(3).unwrap().to_string()
}

fn show(dir: &Dir, id: &str) -> Value {
    let o = dir.hw(&["runs", "show", id, "--json"]);
    assert_code(&o, 0);
    serde_json::from_str(&stdout(&o)).unwrap()
}

fn activity<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == name)
        .unwrap_or_else(|| panic!("no activity {name} in {run:#}"))
}

/// The stored procedure fails; a plain rerun would copy the rows again,
/// a rerun from failed reuses the lookups and the copy and only calls the
/// procedure.
async fn a_failed_procedure_is_rerun_from_failed_without_copying_again(b: Backend) {
    let (dir, db) = factory(b).await;
    db.exec("INSERT INTO fail_once VALUES ('yes')").await;
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 1);
    let first = run_id(&o);
    assert_eq!(arrived(&dir), vec![1, 2, 3, 4, 5]);
    assert_eq!(watermark(&db).await, "2010-01-01 00:00:00");

    // runs show: activity runs in start order, with input and output.
    let run = show(&dir, &first);
    let names: Vec<&str> = run["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4);
    assert_eq!(names[3], "StoredProceduretoWriteWatermarkActivity");
    assert_eq!(names[2], "IncrementalCopyActivity");
    let copy = activity(&run, "IncrementalCopyActivity");
    assert_eq!(copy["output"]["rowsCopied"], 5);
    let query = copy["input"]["source"]["query"].as_str().unwrap();
    assert!(
        query.contains("LastModifytime > '2010-01-01") && query.contains("2017-09-05"),
        "the input is the evaluated typeProperties: {query}"
    );
    assert_eq!(
        run["info"]["parameters"],
        serde_json::json!({}),
        "the run records its parameters: {run:#}"
    );
    let text = stdout(&dir.hw(&["runs", "show", &first]));
    assert!(text.contains("pipeline IncrementalCopyPipeline"), "{text}");

    // From failed: nothing copied again, the procedure runs once.
    db.exec("DELETE FROM fail_once").await;
    let o = dir.hw(&["pipeline", "rerun", &first, "--from-failed"]);
    assert_code(&o, 0);
    let second = run_id(&o);
    assert_ne!(second, first);
    assert_eq!(arrived(&dir), vec![1, 2, 3, 4, 5], "no row copied twice");
    assert_eq!(watermark(&db).await, "2017-09-05 08:06:00");
    let run = show(&dir, &second);
    assert_eq!(run["info"]["rerunOf"], first.as_str());
    let copy = activity(&run, "IncrementalCopyActivity");
    assert_eq!(copy["status"], "Succeeded");
    assert_eq!(copy["rows_written"], 0, "reused, not copied: {copy:#}");
    assert_eq!(
        copy["output"]["rowsCopied"], 5,
        "the earlier output is reused"
    );
    assert!(
        copy["notes"][0].as_str().unwrap().contains("not run again"),
        "{copy:#}"
    );
    assert_eq!(
        activity(&run, "StoredProceduretoWriteWatermarkActivity")["status"],
        "Succeeded"
    );

    // A succeeded run cannot be rerun from failed; a plain rerun runs the
    // whole pipeline again (nothing new to copy).
    let o = dir.hw(&["pipeline", "rerun", &second, "--from-failed"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("succeeded"), "{}", stderr(&o));
    db.exec(
        "INSERT INTO data_source_table VALUES (6, 'newdata', '2017-09-06 02:23:00'),
                                              (7, 'newdata', '2017-09-07 09:01:00')",
    )
    .await;
    assert_code(&dir.hw(&["pipeline", "rerun", &second]), 0);
    assert_eq!(arrived(&dir), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(watermark(&db).await, "2017-09-07 09:01:00");

    // Unknown run ids are usage errors.
    assert_code(&dir.hw(&["pipeline", "rerun", "no-such-run"]), 2);
}

/// The process is killed at each instant of the copy's attempt; the rerun
/// from failed copies every row exactly once and moves the watermark.
async fn a_killed_run_rerun_from_failed_copies_each_row_once(b: Backend) {
    for point in [
        "engine.after_begin_attempt",
        "engine.before_sink_commit",
        "engine.after_publish",
        "engine.after_state_commit",
    ] {
        let (dir, db) = factory(b).await;
        let o = dir.hw_env(
            &["pipeline", "run", "pipeline.json"],
            &[("HIGHWATER_FAILPOINT", point)],
        );
        assert_eq!(o.status.code(), None, "{point}: killed\n{}", stderr(&o));
        let runs = dir.hw(&["runs", "--json"]);
        let runs: Value = serde_json::from_str(&stdout(&runs)).unwrap();
        let first = runs[0]["run_id"].as_str().unwrap().to_string();
        assert_eq!(
            runs[0]["status"], "Failed",
            "{point}: a killed run reads as failed"
        );
        let o = dir.hw(&["pipeline", "rerun", &first, "--from-failed"]);
        assert_code(&o, 0);
        assert_eq!(
            arrived(&dir),
            vec![1, 2, 3, 4, 5],
            "{point}: every row exactly once\n{}",
            stdout(&o)
        );
        assert_eq!(watermark(&db).await, "2017-09-05 08:06:00", "{point}");
    }
}

mod postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_procedure_is_rerun_from_failed_without_copying_again() {
        super::a_failed_procedure_is_rerun_from_failed_without_copying_again(Backend::Postgres)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_killed_run_rerun_from_failed_copies_each_row_once() {
        super::a_killed_run_rerun_from_failed_copies_each_row_once(Backend::Postgres).await
    }
}

mod mariadb {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_procedure_is_rerun_from_failed_without_copying_again() {
        super::a_failed_procedure_is_rerun_from_failed_without_copying_again(Backend::Mariadb).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_killed_run_rerun_from_failed_copies_each_row_once() {
        super::a_killed_run_rerun_from_failed_copies_each_row_once(Backend::Mariadb).await
    }
}
