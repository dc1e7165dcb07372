//! Copy details real pipelines use (issue 8), each with the rows that
//! arrived: `source.additionalColumns`, `TabularTranslator` mappings (and
//! the legacy `columnMappings`), `sink.preCopyScript` in the commit's
//! transaction (a failing copy leaves its deletes unapplied) on
//! PostgreSQL, MariaDB and SQLite; the stored-procedure sink of the
//! multi-table watermark tutorial on PostgreSQL, run by name from the
//! factory root with its `Parameters.json`; `--parameters` files.

use serde_json::Value;

use crate::util::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

/// The target database of one test (connection `Dst`).
type Dst = SrcDb;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A factory with the SQLite source `T` (`t (id, name)`: 1 a, 2 b, 3 c)
/// and the target `Dst`, datasets `Out` (table `dst`) and `Out2` (`dst2`).
async fn setup(b: Backend, tag: &str) -> (Dir, Dst) {
    let (url, server) = match b {
        Backend::Sqlite => ("sqlite://dst.db".to_string(), None),
        Backend::Postgres => {
            let db = PgDb::new(tag).await;
            (db.url.clone(), Some(Dst::Pg(db)))
        }
        Backend::Mariadb => {
            let db = MyDb::new(tag).await;
            (db.url.clone(), Some(Dst::My(db)))
        }
    };
    let dir2 = sqlite_factory(tag, &format!("  Dst: {url}\n"));
    let dst = server.unwrap_or_else(|| {
        let p = dir2.join("dst.db");
        rusqlite::Connection::open(&p).unwrap();
        Dst::Lite(p)
    });
    for (name, ls, tp) in [
        ("T", "Db", r#"{"tableName": "t"}"#),
        ("Out", "Dst", r#"{"tableName": "dst"}"#),
        ("Out2", "Dst", r#"{"tableName": "dst2"}"#),
        ("Out3", "Dst", r#"{"tableName": "report"}"#),
    ] {
        dir2.write(
            &format!("dataset/{name}.json"),
            &format!(
                r#"{{"name": "{name}", "properties": {{"type": "AzureSqlTable",
                "linkedServiceName": {{"referenceName": "{ls}", "type": "LinkedServiceReference"}},
                "typeProperties": {tp}}}}}"#
            ),
        );
    }
    (dir2, dst)
}

/// One Copy activity `C` from `T` into `output`: `source` and `rest`
/// (more typeProperties, e.g. the sink and translator) as JSON text.
fn copy(name: &str, output: &str, source: &str, rest: &str) -> String {
    format!(
        r#"{{"name": "{name}", "type": "Copy",
          "typeProperties": {{"source": {source}{rest}}},
          "inputs": [{{"referenceName": "T", "type": "DatasetReference"}}],
          "outputs": [{{"referenceName": "{output}", "type": "DatasetReference"}}]}}"#
    )
}

// ------------------------------------------- additionalColumns, translator

/// Additional columns (an expression, a literal, a `$$COLUMN:` copy) then
/// a TabularTranslator choosing and renaming columns (names matched
/// ignoring case; unmapped ones dropped); the legacy `columnMappings`
/// string; the activity output counts.
async fn columns_land_as_mapped(b: Backend) {
    let (dir, dst) = setup(b, "adf_cols").await;
    let source = r#"{"type": "SqlSource", "sqlReaderQuery": "select id, name from t",
        "additionalColumns": [
            {"name": "pipe", "value": "@pipeline().Pipeline"},
            {"name": "fixed", "value": "x"},
            {"name": "id_copy", "value": "$$COLUMN:id"}]}"#;
    let mapped = copy(
        "Mapped",
        "Out",
        source,
        r#", "sink": {"type": "AzureSqlSink"},
        "translator": {"type": "TabularTranslator", "typeConversion": true,
            "typeConversionSettings": {"allowDataTruncation": true},
            "mappings": [
                {"source": {"name": "NAME", "type": "String"}, "sink": {"name": "who"}},
                {"source": {"name": "id_copy"}, "sink": {"name": "k", "type": "Int64"}},
                {"source": {"name": "pipe"}, "sink": {"name": "origin"}}]}"#,
    );
    let legacy = copy(
        "Legacy",
        "Out2",
        r#"{"type": "SqlSource", "sqlReaderQuery": "select id, name from t"}"#,
        r#", "translator": {"type": "TabularTranslator", "columnMappings": "name: n2, id: k2"}"#,
    );
    // The activity output, as a dependent activity reads it.
    let report = copy(
        "Report",
        "Out3",
        r#"{"type": "SqlSource", "sqlReaderQuery": "select @{activity('Mapped').output.rowsRead} as rr, @{activity('Mapped').output.rowsCopied} as rc, @{if(greater(activity('Mapped').output.dataRead, 0), 1, 0)} as dr, @{if(greater(activity('Mapped').output.dataWritten, 0), 1, 0)} as dw, '@{coalesce(activity('Mapped').output?.filesWritten, 'none')}' as fw, @{activity('Mapped').output.copyDuration} * 0 as cd"}"#,
        "",
    )
    .replace(
        r#""type": "Copy","#,
        r#""type": "Copy", "dependsOn": [{"activity": "Mapped", "dependencyConditions": ["Succeeded"]}],"#,
    );
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "cols", "properties": {{"activities": [{mapped}, {legacy}, {report}]}}}}"#
        ),
    );
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    assert_eq!(
        dst.rows("SELECT who, k, origin FROM dst ORDER BY k").await,
        [
            s(&["a", "1", "cols"]),
            s(&["b", "2", "cols"]),
            s(&["c", "3", "cols"])
        ]
    );
    assert_eq!(
        dst.rows("SELECT n2, k2 FROM dst2 ORDER BY k2").await,
        [s(&["a", "1"]), s(&["b", "2"]), s(&["c", "3"])]
    );
    // Unmapped columns were dropped: the tables have the mapped ones only.
    let cols = match &dst {
        Dst::Pg(_) => dst
            .rows("SELECT count(*) FROM information_schema.columns WHERE table_name = 'dst'")
            .await,
        Dst::My(_) => dst
            .rows("SELECT count(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'dst'")
            .await,
        Dst::Lite(_) => {
            dst.rows("SELECT count(*) FROM pragma_table_info('dst')")
                .await
        }
    };
    assert_eq!(cols, [s(&["3"])]);
    assert_eq!(
        dst.rows("SELECT rr, rc, dr, dw, fw, cd FROM report").await,
        [s(&["3", "3", "1", "1", "none", "0"])],
        "rowsRead, rowsCopied, dataRead > 0, dataWritten > 0, no filesWritten for a table sink, copyDuration"
    );
}

/// A mapping naming a column the source does not have fails the Copy
/// with the column named (nothing written); what cannot run is refused at
/// load (exit 2) naming the activity and the property.
#[tokio::test]
async fn unknown_columns_fail_and_unsupported_mappings_are_refused() {
    let (dir, dst) = setup(Backend::Sqlite, "adf_cols_bad").await;
    let bad = copy(
        "Bad",
        "Out",
        r#"{"type": "SqlSource", "sqlReaderQuery": "select id, name from t"}"#,
        r#", "translator": {"type": "TabularTranslator", "mappings": [
            {"source": {"name": "id"}, "sink": {"name": "k"}},
            {"source": {"name": "nmae"}, "sink": {"name": "who"}}]}"#,
    );
    dir.write(
        "pipeline.json",
        &format!(r#"{{"name": "p", "properties": {{"activities": [{bad}]}}}}"#),
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("nmae") && err.contains("mappings[1]") && err.contains("id, name"),
        "{err}"
    );
    assert_eq!(
        dst.rows("SELECT count(*) FROM sqlite_master WHERE name = 'dst'")
            .await,
        [s(&["0"])],
        "nothing written"
    );
    for (source, rest, says) in [
        (
            r#"{"type": "SqlSource", "additionalColumns": [{"name": "f", "value": "$$FILEPATH"}]}"#,
            "",
            "$$FILEPATH",
        ),
        (
            r#"{"type": "SqlSource"}"#,
            r#", "translator": {"type": "TabularTranslator", "collectionReference": "$.items"}"#,
            "translator.collectionReference",
        ),
        (
            r#"{"type": "SqlSource"}"#,
            r#", "translator": {"type": "TabularTranslator", "mappings": [{"source": {"path": "$.a.b"}, "sink": {"name": "x"}}]}"#,
            "source.path",
        ),
        (
            r#"{"type": "SqlSource"}"#,
            r#", "sink": {"type": "AzureSqlSink", "sqlWriterStoredProcedureName": "usp", "storedProcedureParameters": {"a": {"value": 1}}, "sqlWriterTableType": "T"}"#,
            "sink.storedProcedureParameters",
        ),
    ] {
        let a = copy("Refused", "Out", source, rest);
        dir.write(
            "pipeline.json",
            &format!(r#"{{"name": "p", "properties": {{"activities": [{a}]}}}}"#),
        );
        let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
        assert_code(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains("Refused") && err.contains(says),
            "{says}: {err}"
        );
    }
}

// ---------------------------------------------------------- preCopyScript

/// `preCopyScript` runs in the commit's transaction: its deletes land with
/// the rows; a copy that fails in its commit (a CHECK constraint) leaves
/// the table exactly as it was, its script's deletes not applied.
async fn pre_copy_script_commits_with_the_rows(b: Backend) {
    let (dir, dst) = setup(b, "adf_precopy").await;
    dst.exec(
        "CREATE TABLE dst (id INT, name VARCHAR(20), CHECK (name <> 'bad'));
         INSERT INTO dst VALUES (1, 'old'), (9, 'keep');",
    )
    .await;
    let a = copy(
        "Load",
        "Out",
        r#"{"type": "SqlSource", "sqlReaderQuery": "@pipeline().parameters.q"}"#,
        r#", "sink": {"type": "AzureSqlSink", "preCopyScript": {"value": "@pipeline().parameters.script", "type": "Expression"}}"#,
    );
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "p", "properties": {{
            "parameters": {{"q": {{"type": "String", "defaultValue": "select id, name from t"}},
                           "script": {{"type": "String", "defaultValue": "DELETE FROM dst WHERE id = 1; DELETE FROM dst WHERE id < 5"}}}},
            "activities": [{a}]}}}}"#
        ),
    );
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    let after_first = [
        s(&["1", "a"]),
        s(&["2", "b"]),
        s(&["3", "c"]),
        s(&["9", "keep"]),
    ];
    assert_eq!(
        dst.rows("SELECT id, name FROM dst ORDER BY id").await,
        after_first
    );
    // The copy fails in its commit: the script's DELETE is not applied.
    let o = dir.hw(&[
        "pipeline",
        "run",
        "pipeline.json",
        "--param",
        "q=select id, case when id = 2 then 'bad' else name end as name from t",
        "--param",
        "script=DELETE FROM dst",
    ]);
    assert_code(&o, 1);
    assert_eq!(
        dst.rows("SELECT id, name FROM dst ORDER BY id").await,
        after_first,
        "the failed copy's preCopyScript must not be applied"
    );
    if b == Backend::Mariadb {
        // TRUNCATE commits implicitly in MariaDB: refused, nothing applied.
        let o = dir.hw(&[
            "pipeline",
            "run",
            "pipeline.json",
            "--param",
            "script=TRUNCATE TABLE dst",
        ]);
        assert_code(&o, 1);
        assert!(
            stderr(&o).contains("preCopyScript") && stderr(&o).contains("DELETE FROM"),
            "{}",
            stderr(&o)
        );
        assert_eq!(
            dst.rows("SELECT id, name FROM dst ORDER BY id").await,
            after_first
        );
    }
}

conformance!(
    columns_land_as_mapped,
    pre_copy_script_commits_with_the_rows
);

// -------------------------------------------- stored-procedure sink (PG)

const TUTORIAL: &str = include_str!("fixtures/adf/multiple/pipeline.json");
const TUTORIAL_PARAMETERS: &str = include_str!("fixtures/adf/multiple-sp/Parameters.json");
const TUTORIAL_DATASETS: &[(&str, &str)] = &[
    (
        "SinkDataset.json",
        include_str!("fixtures/adf/multiple-sp/SinkDataset.json"),
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

/// The multi-table watermark tutorial as published: its sink hands each
/// table's delta to `usp_upsert_<table>` as an array of the composite type
/// `DataTypefor<Table>` (PostgreSQL's table type), bound by the parameter
/// name `storedProcedureTableTypeParameterName`. Run by name from the
/// factory root with the tutorial's `Parameters.json`, twice, with the
/// tutorial's changes between: the targets end as the article states.
#[tokio::test]
async fn multi_table_tutorial_with_its_stored_procedure_sink() {
    let src = PgDb::new("adf_sp_src").await;
    let dst = PgDb::new("adf_sp_dst").await;
    src.exec(
        "CREATE TABLE customer_table (PersonID int, Name varchar(255), LastModifytime timestamp);
         CREATE TABLE project_table (Project varchar(255), Creationtime timestamp);
         INSERT INTO customer_table VALUES
           (1, 'John', '2017-09-01 00:56:00'), (2, 'Mike', '2017-09-02 05:23:00'),
           (3, 'Alice', '2017-09-03 02:36:00'), (4, 'Andy', '2017-09-04 03:21:00'),
           (5, 'Anny', '2017-09-05 08:06:00');
         INSERT INTO project_table VALUES
           ('project1', '2015-01-01 00:00:00'), ('project2', '2016-02-02 01:23:00'),
           ('project3', '2017-03-04 05:16:00');",
    )
    .await;
    dst.exec(
        "CREATE TABLE customer_table (PersonID int, Name varchar(255), LastModifytime timestamp);
         CREATE TABLE project_table (Project varchar(255), Creationtime timestamp);
         CREATE TABLE watermarktable (TableName varchar(255), WatermarkValue timestamp);
         INSERT INTO watermarktable VALUES
           ('customer_table', '2010-01-01 00:00:00'), ('project_table', '2010-01-01 00:00:00');
         CREATE SCHEMA dbo;
         CREATE PROCEDURE dbo.usp_write_watermark(LastModifiedtime timestamp, TableName varchar(50))
         LANGUAGE sql AS $$
             UPDATE watermarktable SET WatermarkValue = LastModifiedtime
             WHERE watermarktable.TableName = usp_write_watermark.TableName
         $$;
         CREATE TYPE DataTypeforCustomerTable AS (PersonID int, Name varchar(255), LastModifytime timestamp);
         CREATE PROCEDURE usp_upsert_customer_table(customer_table DataTypeforCustomerTable[])
         LANGUAGE sql AS $$
             MERGE INTO customer_table AS target
             USING unnest(customer_table) AS source ON target.PersonID = source.PersonID
             WHEN MATCHED THEN UPDATE SET Name = source.Name, LastModifytime = source.LastModifytime
             WHEN NOT MATCHED THEN INSERT (PersonID, Name, LastModifytime)
                 VALUES (source.PersonID, source.Name, source.LastModifytime)
         $$;
         CREATE TYPE DataTypeforProjectTable AS (Project varchar(255), Creationtime timestamp);
         CREATE PROCEDURE usp_upsert_project_table(project_table DataTypeforProjectTable[])
         LANGUAGE sql AS $$
             MERGE INTO project_table AS target
             USING unnest(project_table) AS source ON target.Project = source.Project
             WHEN MATCHED THEN UPDATE SET Creationtime = source.Creationtime
             WHEN NOT MATCHED THEN INSERT (Project, Creationtime)
                 VALUES (source.Project, source.Creationtime)
         $$;",
    )
    .await;
    // A factory's git root, as Data Factory's git integration lays it out.
    let dir = Dir::new("adf_sp");
    dir.write("pipeline/IncrementalCopyPipeline.json", TUTORIAL);
    for (name, text) in TUTORIAL_DATASETS {
        dir.write(&format!("dataset/{name}"), text);
    }
    dir.write("linkedService/README.txt", "mapped by highwater.yaml\n");
    dir.write("trigger/README.txt", "\n");
    dir.write("Parameters.json", TUTORIAL_PARAMETERS);
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  SqlServerLinkedService: {}\n  AzureSQLDatabaseLinkedService: {}\n",
            src.url, dst.url
        ),
    );
    let run = |dir: &Dir| {
        let o = dir.hw(&[
            "pipeline",
            "run",
            "IncrementalCopyPipeline",
            "--factory",
            ".",
            "--parameters",
            "Parameters.json",
            "--json",
        ]);
        assert_code(&o, 0);
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()
    };
    let customers = "SELECT PersonID, Name, to_char(LastModifytime, 'YYYY-MM-DD HH24:MI') FROM customer_table ORDER BY PersonID";
    let projects = "SELECT Project, to_char(Creationtime, 'YYYY-MM-DD HH24:MI') FROM project_table ORDER BY Creationtime";
    let watermarks = "SELECT TableName, to_char(WatermarkValue, 'YYYY-MM-DD HH24:MI') FROM watermarktable ORDER BY TableName";
    let first = run(&dir);
    assert_eq!(
        pg_rows(&dst, customers).await,
        [
            s(&["1", "John", "2017-09-01 00:56"]),
            s(&["2", "Mike", "2017-09-02 05:23"]),
            s(&["3", "Alice", "2017-09-03 02:36"]),
            s(&["4", "Andy", "2017-09-04 03:21"]),
            s(&["5", "Anny", "2017-09-05 08:06"]),
        ]
    );
    assert_eq!(
        pg_rows(&dst, projects).await,
        [
            s(&["project1", "2015-01-01 00:00"]),
            s(&["project2", "2016-02-02 01:23"]),
            s(&["project3", "2017-03-04 05:16"]),
        ]
    );
    assert_eq!(
        pg_rows(&dst, watermarks).await,
        [
            s(&["customer_table", "2017-09-05 08:06"]),
            s(&["project_table", "2017-03-04 05:16"]),
        ]
    );
    let copies: Vec<&Value> = first["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["stream"]
                .as_str()
                .unwrap()
                .ends_with("IncrementalCopyActivity")
        })
        .collect();
    let mut copied: Vec<u64> = copies
        .iter()
        .map(|a| a["rows_written"].as_u64().unwrap())
        .collect();
    copied.sort();
    assert_eq!(copied, [3, 5]);

    src.exec(
        "UPDATE customer_table SET LastModifytime = '2017-09-08T00:00:00Z', name = 'NewName' WHERE PersonID = 3;
         INSERT INTO project_table VALUES ('NewProject', '2017-10-01 00:00:00');",
    )
    .await;
    run(&dir);
    assert_eq!(
        pg_rows(&dst, customers).await,
        [
            s(&["1", "John", "2017-09-01 00:56"]),
            s(&["2", "Mike", "2017-09-02 05:23"]),
            s(&["3", "NewName", "2017-09-08 00:00"]),
            s(&["4", "Andy", "2017-09-04 03:21"]),
            s(&["5", "Anny", "2017-09-05 08:06"]),
        ]
    );
    assert_eq!(
        pg_rows(&dst, projects).await,
        [
            s(&["project1", "2015-01-01 00:00"]),
            s(&["project2", "2016-02-02 01:23"]),
            s(&["project3", "2017-03-04 05:16"]),
            s(&["NewProject", "2017-10-01 00:00"]),
        ]
    );
    assert_eq!(
        pg_rows(&dst, watermarks).await,
        [
            s(&["customer_table", "2017-09-08 00:00"]),
            s(&["project_table", "2017-10-01 00:00"]),
        ]
    );

    // A name the factory does not have lists the ones it has.
    let o = dir.hw(&["pipeline", "run", "Nope", "--factory", "."]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("IncrementalCopyPipeline"),
        "{}",
        stderr(&o)
    );
}

/// A stored-procedure sink whose procedure's parameter is not the one
/// named fails naming both, and nothing lands; on MariaDB (no table
/// types) the sink is refused before the run (exit 2).
#[tokio::test]
async fn stored_procedure_sink_errors_are_named() {
    let (dir, dst) = setup(Backend::Postgres, "adf_sp_bad").await;
    dst.exec(
        "CREATE TABLE dst (id int, name text);
         CREATE TYPE row_t AS (id int, name text);
         CREATE PROCEDURE put(rows_in row_t[]) LANGUAGE sql AS $$
             INSERT INTO dst SELECT * FROM unnest(rows_in) $$;",
    )
    .await;
    let a = |param: &str| {
        copy(
            "Sp",
            "Out",
            r#"{"type": "SqlSource", "sqlReaderQuery": "select id, name from t"}"#,
            &format!(
                r#", "sink": {{"type": "AzurePostgreSqlSink", "sqlWriterStoredProcedureName": "put",
                "sqlWriterTableType": "row_t", "storedProcedureTableTypeParameterName": "{param}"}}"#
            ),
        )
    };
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "p", "properties": {{"activities": [{}]}}}}"#,
            a("wrong")
        ),
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("wrong") && stderr(&o).contains("rows_in"),
        "{}",
        stderr(&o)
    );
    assert_eq!(dst.rows("SELECT count(*) FROM dst").await, [s(&["0"])]);
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "p", "properties": {{"activities": [{}]}}}}"#,
            a("ROWS_IN")
        ),
    );
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    assert_eq!(
        dst.rows("SELECT id, name FROM dst ORDER BY id").await,
        [s(&["1", "a"]), s(&["2", "b"]), s(&["3", "c"])]
    );

    let (dir, _my) = setup(Backend::Mariadb, "adf_sp_my").await;
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "p", "properties": {{"activities": [{}]}}}}"#,
            a("rows_in")
        ),
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("activity Sp")
            && stderr(&o).contains("sqlWriterStoredProcedureName")
            && stderr(&o).contains("table types"),
        "refused before the run: {}",
        stderr(&o)
    );
}

// ------------------------------------------------------------ parameters

/// `--parameters` in both published shapes (flat, ARM-style); typed
/// values; an explicit `--param` wins; a name the pipeline does not
/// declare is a usage error.
#[tokio::test]
async fn parameter_files() {
    let (dir, dst) = setup(Backend::Sqlite, "adf_params").await;
    let a = copy(
        "C",
        "Out",
        r#"{"type": "SqlSource", "sqlReaderQuery": "select '@{pipeline().parameters.a}' as a, @{add(pipeline().parameters.n, 1)} as n, @{length(pipeline().parameters.list)} as l"}"#,
        "",
    );
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "p", "properties": {{
            "parameters": {{"a": {{"type": "String"}}, "n": {{"type": "Int"}},
                           "list": {{"type": "Array", "defaultValue": []}}}},
            "activities": [{a}]}}}}"#
        ),
    );
    dir.write(
        "arm.json",
        r#"{"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentParameters.json#",
            "contentVersion": "1.0.0.0",
            "parameters": {"a": {"value": "from-file"}, "n": {"value": 5}, "list": {"value": [1, 2, 3]}}}"#,
    );
    dir.write("flat.json", r#"{"a": "flat", "n": 1}"#);
    assert_code(
        &dir.hw(&[
            "pipeline",
            "run",
            "pipeline.json",
            "--parameters",
            "arm.json",
        ]),
        0,
    );
    assert_code(
        &dir.hw(&[
            "pipeline",
            "run",
            "pipeline.json",
            "--parameters",
            "arm.json",
            "--param",
            "A=cli",
        ]),
        0,
    );
    assert_code(
        &dir.hw(&[
            "pipeline",
            "run",
            "pipeline.json",
            "--parameters",
            "flat.json",
        ]),
        0,
    );
    assert_eq!(
        dst.rows("SELECT a, n, l FROM dst ORDER BY a").await,
        [
            s(&["cli", "6", "3"]),
            s(&["flat", "2", "0"]),
            s(&["from-file", "6", "3"]),
        ]
    );
    dir.write("bad.json", r#"{"a": "x", "n": 1, "nope": 2}"#);
    let o = dir.hw(&[
        "pipeline",
        "run",
        "pipeline.json",
        "--parameters",
        "bad.json",
    ]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("--parameters bad.json")
            && stderr(&o).contains("no parameter nope")
            && stderr(&o).contains("list"),
        "{}",
        stderr(&o)
    );
}

// ------------------------------------------------------- maxRowsPerFile

/// `maxRowsPerFile` + `fileNamePrefix`: Data Factory's
/// `<prefix>_00000.<ext>` … in the dataset's folder, each file with its
/// header and at most that many rows; without a prefix,
/// `data_<activity run id>_00000.<ext>`; `filesWritten` counts them. All
/// files of a copy are published by its one commit: a crash before the
/// commit leaves none visible, a crash after it is finished by the next run.
#[tokio::test]
async fn max_rows_per_file_writes_every_file_or_none() {
    let (dir, dst) = setup(Backend::Sqlite, "adf_split").await;
    dir.write(
        "dataset/Folder.json",
        r#"{"name": "Folder", "properties": {"type": "DelimitedText",
            "linkedServiceName": {"referenceName": "Lake", "type": "LinkedServiceReference"},
            "typeProperties": {"location": {"type": "AzureBlobStorageLocation", "container": "out", "folderPath": "@dataset().folder"},
                "columnDelimiter": ",", "firstRowAsHeader": true, "quoteChar": "\"", "escapeChar": "\\"},
            "parameters": {"folder": {"type": "String"}}}}"#,
    );
    let split = |name: &str, folder: &str, settings: &str| {
        copy(
            name,
            "Folder",
            r#"{"type": "SqlSource", "sqlReaderQuery": "select id, name from t order by id"}"#,
            &format!(
                r#", "sink": {{"type": "DelimitedTextSink", "formatSettings": {{"type": "DelimitedTextWriteSettings", "fileExtension": ".csv", {settings}}}}}"#
            ),
        )
        .replace(
            r#""referenceName": "Folder", "type": "DatasetReference"}"#,
            &format!(
                r#""referenceName": "Folder", "type": "DatasetReference", "parameters": {{"folder": "{folder}"}}}}"#
            ),
        )
    };
    let named = split(
        "Named",
        "named",
        r#""maxRowsPerFile": 2, "fileNamePrefix": "part""#,
    );
    // After Named: the crashes below stop the process in Named.
    let generated = split("Generated", "gen", r#""maxRowsPerFile": "1""#).replace(
        r#""type": "Copy","#,
        r#""type": "Copy", "dependsOn": [{"activity": "Named", "dependencyConditions": ["Succeeded"]}],"#,
    );
    let report = copy(
        "Report",
        "Out3",
        r#"{"type": "SqlSource", "sqlReaderQuery": "select @{activity('Named').output.filesWritten} as named, @{activity('Generated').output.filesWritten} as gen, @{activity('Named').output.rowsCopied} as rows_named"}"#,
        "",
    )
    .replace(
        r#""type": "Copy","#,
        r#""type": "Copy", "dependsOn": [{"activity": "Named", "dependencyConditions": ["Succeeded"]}, {"activity": "Generated", "dependencyConditions": ["Succeeded"]}],"#,
    );
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "p", "properties": {{"activities": [{named}, {generated}, {report}]}}}}"#
        ),
    );
    let names = |sub: &str| -> Vec<String> {
        let mut l: Vec<String> = std::fs::read_dir(dir.join(sub))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        l.sort();
        l
    };
    // A crash before the commit: no file of the copy is visible.
    let o = dir.hw_env(
        &["pipeline", "run", "pipeline.json"],
        &[("HIGHWATER_FAILPOINT", "files.after_data_before_marker")],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(
        names("lake/out/named").is_empty(),
        "{:?}",
        names("lake/out/named")
    );
    assert!(
        names("lake/out/gen").is_empty(),
        "{:?}",
        names("lake/out/gen")
    );
    // A crash after the commit: the next run publishes every file of it.
    let o = dir.hw_env(
        &["pipeline", "run", "pipeline.json"],
        &[("HIGHWATER_FAILPOINT", "files.after_marker_before_publish")],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(
        names("lake/out/named").is_empty(),
        "{:?}",
        names("lake/out/named")
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("its output was published"),
        "the crashed copy's files are settled: {}",
        stdout(&o)
    );
    assert_eq!(
        names("lake/out/named"),
        ["part_00000.csv", "part_00001.csv"]
    );
    let text = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(
        text("lake/out/named/part_00000.csv"),
        "id,name\r\n1,a\r\n2,b\r\n"
    );
    assert_eq!(text("lake/out/named/part_00001.csv"), "id,name\r\n3,c\r\n");
    // Generated names, one row each.
    let generated_files = names("lake/out/gen");
    assert_eq!(generated_files.len(), 3, "{generated_files:?}");
    let mut rows: Vec<String> = Vec::new();
    for g in &generated_files {
        let (stem, index) = g
            .strip_suffix(".csv")
            .and_then(|s| s.rsplit_once('_'))
            .unwrap_or_else(|| panic!("{g}"));
        assert!(stem.starts_with("data_") && index.len() == 5, "{g}");
        let t = text(&format!("lake/out/gen/{g}"));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "header and one row: {t}");
        rows.push(lines[1].to_string());
    }
    rows.sort();
    assert_eq!(rows, ["1,a", "2,b", "3,c"]);
    assert_eq!(
        dst.rows("SELECT named, gen, rows_named FROM report").await,
        [s(&["2", "3", "3"])]
    );
}
