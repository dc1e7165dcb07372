//! Data Factory sinks that must not be silently wrong (issue 8): upserts
//! in every published spelling (on targets without a unique constraint),
//! stored-procedure parameters bound by name, and every DelimitedText
//! setting the tutorials and templates use, each file read back.

use std::io::Read;

use crate::util::*;

/// A factory with a SQLite source `t (id, name)` holding (1,a) (2,b) (3,c),
/// and the given extra connections.
fn factory(tag: &str, connections: &str) -> Dir {
    let dir = sqlite_factory(tag, connections);
    dataset(&dir, "T", "Db", "AzureSqlTable", r#"{"tableName": "t"}"#);
    dir
}

fn dataset(dir: &Dir, name: &str, ls: &str, kind: &str, type_properties: &str) {
    dir.write(
        &format!("dataset/{name}.json"),
        &format!(
            r#"{{"name": "{name}", "properties": {{"type": "{kind}",
                "linkedServiceName": {{"referenceName": "{ls}", "type": "LinkedServiceReference"}},
                "typeProperties": {type_properties}}}}}"#
        ),
    );
}

/// A pipeline with one Copy from `T` (query `query`) into `output` with `sink`.
fn copy_pipeline(dir: &Dir, query: &str, output: &str, sink: &str) {
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "p", "properties": {{"activities": [
            {{"name": "CopyRows", "type": "Copy",
             "typeProperties": {{"source": {{"type": "SqlSource", "sqlReaderQuery": "{query}"}},
                                "sink": {sink}}},
             "inputs": [{{"referenceName": "T", "type": "DatasetReference"}}],
             "outputs": [{{"referenceName": "{output}", "type": "DatasetReference"}}]}}]}}}}"#
        ),
    );
}

fn change_source(dir: &Dir) {
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch("UPDATE t SET name = 'B' WHERE id = 2; INSERT INTO t VALUES (4, 'd');")
        .unwrap();
}

// ---------------------------------------------------------------- upserts

/// `AzurePostgreSqlSink` + `writeMethod: Upsert` (the form Data Factory
/// writes for PostgreSQL) on a table with no unique constraint: one row per
/// key, updated in place; a column the copy does not carry keeps its value.
#[tokio::test]
async fn postgres_write_method_upsert_without_a_unique_constraint() {
    let pg = PgDb::new("adf_pg_upsert").await;
    pg.exec("CREATE TABLE up (id bigint, name text, note text); INSERT INTO up VALUES (1, 'old', 'kept');")
        .await;
    let dir = factory("adf_pg_upsert", &format!("  Pg: {}\n", pg.url));
    dataset(
        &dir,
        "Up",
        "Pg",
        "AzurePostgreSqlTable",
        r#"{"schema": "public", "table": "up"}"#,
    );
    copy_pipeline(
        &dir,
        "select id, name from t",
        "Up",
        r#"{"type": "AzurePostgreSqlSink", "writeMethod": "Upsert", "upsertSettings": {"keys": ["id"]}}"#,
    );
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    change_source(&dir);
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    let rows: Vec<(i64, String, Option<String>)> = pg
        .client
        .query("SELECT id, name, note FROM up ORDER BY id, name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, "a".to_string(), Some("kept".to_string())),
            (2, "B".to_string(), None),
            (3, "c".to_string(), None),
            (4, "d".to_string(), None),
        ],
        "one row per key"
    );
}

/// The SQL sinks' spelling (`writeBehavior: upsert`, keys from an
/// array-valued expression, as a metadata-driven factory writes it) into a
/// MariaDB table without a unique key; and `AzureMySqlSink` inserts.
#[tokio::test]
async fn mariadb_write_behavior_upsert_without_a_unique_key() {
    use mysql_async::prelude::Queryable;
    let my = MyDb::new("adf_my_upsert").await;
    let mut conn = my.connect().await;
    conn.query_drop(
        "CREATE TABLE up (id BIGINT, name VARCHAR(20), note VARCHAR(20));
         INSERT INTO up VALUES (1, 'old', 'kept');",
    )
    .await
    .unwrap();
    let dir = factory("adf_my_upsert", &format!("  My: {}\n", my.url));
    dataset(
        &dir,
        "Up",
        "My",
        "AzureMySqlTable",
        r#"{"tableName": "up"}"#,
    );
    dataset(
        &dir,
        "Log",
        "My",
        "AzureMySqlTable",
        r#"{"tableName": "log"}"#,
    );
    dir.write(
        "pipeline.json",
        r#"{"name": "p", "properties": {
        "parameters": {"keys": {"type": "Array", "defaultValue": ["id"]}},
        "activities": [
            {"name": "Upsert", "type": "Copy",
             "typeProperties": {"source": {"type": "SqlSource", "sqlReaderQuery": "select id, name from t"},
                "sink": {"type": "SqlServerSink", "writeBehavior": "upsert",
                         "upsertSettings": {"useTempDB": false,
                            "keys": {"value": "@pipeline().parameters.keys", "type": "Expression"}}}},
             "inputs": [{"referenceName": "T", "type": "DatasetReference"}],
             "outputs": [{"referenceName": "Up", "type": "DatasetReference"}]},
            {"name": "Insert", "type": "Copy",
             "typeProperties": {"source": {"type": "SqlSource", "sqlReaderQuery": "select id, name from t"},
                "sink": {"type": "AzureMySqlSink", "writeBatchSize": 10000}},
             "inputs": [{"referenceName": "T", "type": "DatasetReference"}],
             "outputs": [{"referenceName": "Log", "type": "DatasetReference"}]}]}}"#,
    );
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    change_source(&dir);
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    let rows: Vec<(i64, String, Option<String>)> = conn
        .query("SELECT id, name, note FROM up ORDER BY id, name")
        .await
        .unwrap();
    assert_eq!(
        rows,
        [
            (1, "a".to_string(), Some("kept".to_string())),
            (2, "B".to_string(), None),
            (3, "c".to_string(), None),
            (4, "d".to_string(), None),
        ],
        "one row per key"
    );
    let n: Option<i64> = conn.query_first("SELECT count(*) FROM log").await.unwrap();
    assert_eq!(n, Some(7), "AzureMySqlSink inserts: 3 + 4 rows");
    let _ = conn.disconnect().await;
}

/// A write behaviour highwater does not understand is refused at load,
/// naming the activity and the property, before anything runs.
#[tokio::test]
async fn unknown_sink_write_settings_are_refused_at_load() {
    let pg = PgDb::new("adf_sink_refused").await;
    let dir = factory("adf_sink_refused", &format!("  Pg: {}\n", pg.url));
    dataset(
        &dir,
        "Up",
        "Pg",
        "AzurePostgreSqlTable",
        r#"{"table": "up"}"#,
    );
    for (sink, says) in [
        (
            r#"{"type": "AzurePostgreSqlSink", "writeMethod": "Merge", "upsertSettings": {"keys": ["id"]}}"#,
            "sink.writeMethod",
        ),
        (
            r#"{"type": "AzureSqlSink", "writeBehavior": "overwrite"}"#,
            "sink.writeBehavior",
        ),
        (
            r#"{"type": "AzurePostgreSqlSink", "writeMethod": "Upsert"}"#,
            "upsertSettings.keys",
        ),
        (
            r#"{"type": "AzureSqlSink", "writeBehavior": "upsert", "upsertSettings": {"keys": []}}"#,
            "upsertSettings.keys",
        ),
        (
            r#"{"type": "AzureSqlSink", "writeBehavior": "upsert", "upsertSettings": {"keys": ["id"], "mergeHints": 1}}"#,
            "sink.upsertSettings.mergeHints",
        ),
        (
            r#"{"type": "AzureMySqlSink", "truncateTable": true}"#,
            "sink.truncateTable",
        ),
        (
            r#"{"type": "AzurePostgreSqlSink", "writeMethod": "BulkInsert", "writeBehavior": "upsert", "upsertSettings": {"keys": ["id"]}}"#,
            "sink.writeBehavior",
        ),
    ] {
        // A Wait that would run first shows nothing ran.
        dir.write(
            "pipeline.json",
            &format!(
                r#"{{"name": "p", "properties": {{"activities": [
                {{"name": "First", "type": "Copy",
                 "typeProperties": {{"source": {{"type": "SqlSource"}}, "sink": {{"type": "AzurePostgreSqlSink"}}}},
                 "inputs": [{{"referenceName": "T"}}], "outputs": [{{"referenceName": "Up"}}]}},
                {{"name": "CopyRows", "type": "Copy",
                 "dependsOn": [{{"activity": "First", "dependencyConditions": ["Succeeded"]}}],
                 "typeProperties": {{"source": {{"type": "SqlSource"}}, "sink": {sink}}},
                 "inputs": [{{"referenceName": "T"}}], "outputs": [{{"referenceName": "Up"}}]}}]}}}}"#
            ),
        );
        let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
        assert_code(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains("activity CopyRows") && err.contains(says),
            "{sink}: {err}"
        );
        let n: i64 = pg
            .client
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'up'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{sink}: nothing ran");
    }
}

// ------------------------------------------------------ stored procedures

fn proc_pipeline(dir: &Dir, ls: &str, proc: &str, params: &str) {
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{"name": "p", "properties": {{"activities": [
            {{"name": "Log", "type": "SqlServerStoredProcedure",
             "linkedServiceName": {{"referenceName": "{ls}", "type": "LinkedServiceReference"}},
             "typeProperties": {{"storedProcedureName": "{proc}", "storedProcedureParameters": {params}}}}}]}}}}"#
        ),
    );
}

/// Parameters are bound by name, as Data Factory binds them: JSON order
/// `b, a` against `usp(a, b)` keeps each value with its parameter; names
/// match case-insensitively; an unknown name fails the activity, naming it.
#[tokio::test]
async fn stored_procedure_parameters_bind_by_name_on_postgres() {
    let pg = PgDb::new("adf_sp_name").await;
    pg.exec(
        "CREATE TABLE log (a text, b text, n int);
         CREATE PROCEDURE usp_log(a text, b text, n int DEFAULT 7)
         LANGUAGE sql AS $$ INSERT INTO log VALUES (a, b, n) $$;",
    )
    .await;
    let dir = factory("adf_sp_name", &format!("  Pg: {}\n", pg.url));
    proc_pipeline(
        &dir,
        "Pg",
        "[usp_log]",
        r#"{"B": {"value": "bee", "type": "String"}, "A": {"value": "ay", "type": "String"}}"#,
    );
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    let rows: Vec<(String, String, i32)> = pg
        .client
        .query("SELECT a, b, n FROM log", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows, [("ay".to_string(), "bee".to_string(), 7)]);

    proc_pipeline(
        &dir,
        "Pg",
        "usp_log",
        r#"{"b": {"value": "x", "type": "String"}, "zz": {"value": "1", "type": "Int32"}, "a": {"value": "y", "type": "String"}}"#,
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("activity Log") && err.contains("zz") && err.contains("usp_log"),
        "{err}"
    );
    let n: i64 = pg
        .client
        .query_one("SELECT count(*) FROM log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the failed call wrote nothing");
}

#[tokio::test]
async fn stored_procedure_parameters_bind_by_name_on_mariadb() {
    use mysql_async::prelude::Queryable;
    let my = MyDb::new("adf_sp_name").await;
    let mut conn = my.connect().await;
    conn.query_drop(
        "CREATE TABLE log (a VARCHAR(10), b VARCHAR(10), n INT);
         CREATE PROCEDURE usp_log(IN a VARCHAR(10), IN b VARCHAR(10), IN n INT) INSERT INTO log VALUES (a, b, n);",
    )
    .await
    .unwrap();
    let dir = factory("adf_sp_name", &format!("  My: {}\n", my.url));
    proc_pipeline(
        &dir,
        "My",
        "usp_log",
        r#"{"n": {"value": "@add(40, 2)", "type": "Int32"}, "B": {"value": "bee", "type": "String"}, "a": {"value": "ay", "type": "String"}}"#,
    );
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    let rows: Vec<(String, String, i32)> = conn.query("SELECT a, b, n FROM log").await.unwrap();
    assert_eq!(rows, [("ay".to_string(), "bee".to_string(), 42)]);

    // An unknown name, and a parameter the activity does not give (MariaDB
    // has no defaults), fail naming them.
    for (params, says) in [
        (
            r#"{"a": {"value": "y", "type": "String"}, "b": {"value": "x", "type": "String"}, "n": {"value": "1", "type": "Int32"}, "zz": {"value": "1", "type": "Int32"}}"#,
            "zz",
        ),
        (
            r#"{"a": {"value": "y", "type": "String"}, "b": {"value": "x", "type": "String"}}"#,
            "parameter n",
        ),
    ] {
        proc_pipeline(&dir, "My", "usp_log", params);
        let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
        assert_code(&o, 1);
        let err = stderr(&o);
        assert!(err.contains("activity Log") && err.contains(says), "{err}");
    }
    let n: Option<i64> = conn.query_first("SELECT count(*) FROM log").await.unwrap();
    assert_eq!(n, Some(1), "the failed calls wrote nothing");
    let _ = conn.disconnect().await;
}

// ---------------------------------------------------------- DelimitedText

/// Copy `select id, name, note from u` (with a NULL, a delimiter, a quote
/// and a non-ASCII letter in the values) into a DelimitedText dataset with
/// `settings`; return the single file written under `lake/out` (its name
/// and bytes).
fn delimited(tag: &str, settings: &str, sink: &str) -> (String, Vec<u8>) {
    let dir = factory(tag, "");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE u (id INTEGER, name TEXT, note TEXT);
         INSERT INTO u VALUES (1, 'a;b', NULL), (2, 'say \"hi\"', 'café');",
    )
    .unwrap();
    let sep = if settings.trim().is_empty() { "" } else { ", " };
    dataset(
        &dir,
        "Out",
        "Lake",
        "DelimitedText",
        &format!(
            r#"{{"location": {{"type": "AzureBlobStorageLocation", "container": "out"}}{sep}{settings}}}"#
        ),
    );
    copy_pipeline(
        &dir,
        "select id, name, note from u order by id",
        "Out",
        sink,
    );
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 0);
    let files = dir.files("lake/out", "");
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    (name, std::fs::read(&files[0]).unwrap())
}

const SINK: &str = r#"{"type": "DelimitedTextSink", "formatSettings": {"type": "DelimitedTextWriteSettings", "fileExtension": ".csv"}}"#;

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// `firstRowAsHeader` defaults to false, as in Data Factory; rows end with
/// `\r\n` (the Copy activity's default row delimiter); values holding the
/// delimiter are quoted; a quote inside is escaped with the default
/// escape character `\`; NULL is the empty string.
#[test]
fn delimited_text_defaults_write_no_header() {
    let (name, bytes) = delimited("adf_csv_default", "", SINK);
    assert!(
        name.starts_with("data_") && name.ends_with(".csv"),
        "{name}"
    );
    assert_eq!(
        text(&bytes),
        "1,a;b,\r\n2,\"say \\\"hi\\\"\",café\r\n",
        "no header"
    );
    let (_, bytes) = delimited(
        "adf_csv_header_false",
        r#""firstRowAsHeader": false, "columnDelimiter": ",""#,
        SINK,
    );
    assert!(!text(&bytes).starts_with("id,"), "{}", text(&bytes));
}

#[test]
fn delimited_text_header_delimiter_quote_escape_and_null() {
    let (_, bytes) = delimited(
        "adf_csv_settings",
        r#""firstRowAsHeader": true, "columnDelimiter": ";", "quoteChar": "'", "escapeChar": "'",
           "nullValue": "NULL", "rowDelimiter": "\n""#,
        SINK,
    );
    assert_eq!(
        text(&bytes),
        "id;name;note\n1;'a;b';NULL\n2;say \"hi\";café\n"
    );
    // Tab-separated, RFC quotes, every text value quoted (quoteAllText).
    let (_, bytes) = delimited(
        "adf_csv_tab",
        r#""firstRowAsHeader": true, "columnDelimiter": "\t", "quoteChar": "\"", "escapeChar": "\"""#,
        r#"{"type": "DelimitedTextSink", "formatSettings": {"type": "DelimitedTextWriteSettings", "quoteAllText": true, "fileExtension": ".tsv"}}"#,
    );
    assert_eq!(
        text(&bytes),
        "\"id\"\t\"name\"\t\"note\"\r\n\"1\"\t\"a;b\"\t\r\n\"2\"\t\"say \"\"hi\"\"\"\t\"café\"\r\n"
    );
    // No quote character: the escape character escapes the delimiter.
    let (_, bytes) = delimited(
        "adf_csv_noquote",
        r#""columnDelimiter": ";", "quoteChar": "", "escapeChar": "\\""#,
        SINK,
    );
    assert_eq!(text(&bytes), "1;a\\;b;\r\n2;say \"hi\";café\r\n");
}

#[test]
fn delimited_text_encoding_compression_and_extension() {
    // ISO-8859-1: one byte per letter.
    let (_, bytes) = delimited(
        "adf_csv_latin1",
        r#""encodingName": "ISO-8859-1", "quoteChar": "\"", "escapeChar": "\"""#,
        SINK,
    );
    let latin1: String = bytes.iter().map(|b| *b as char).collect();
    assert_eq!(latin1, "1,a;b,\r\n2,\"say \"\"hi\"\"\",café\r\n");
    assert!(bytes.contains(&0xE9), "é is one byte");
    // UTF-16 (little endian, with its byte order mark).
    let (_, bytes) = delimited("adf_csv_utf16", r#""encodingName": "UTF-16""#, SINK);
    assert_eq!(&bytes[..2], &[0xFF, 0xFE]);
    let units: Vec<u16> = bytes[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(
        String::from_utf16(&units).unwrap(),
        "1,a;b,\r\n2,\"say \\\"hi\\\"\",café\r\n"
    );
    // gzip: the name gets `.gz` after the extension, the bytes are gzip.
    let (name, bytes) = delimited(
        "adf_csv_gzip",
        r#""firstRowAsHeader": true, "compressionCodec": "gzip", "compressionLevel": "Optimal""#,
        SINK,
    );
    assert!(name.ends_with(".csv.gz"), "{name}");
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        out,
        "id,name,note\r\n1,a;b,\r\n2,\"say \\\"hi\\\"\",café\r\n"
    );
}

/// The legacy `AzureBlob` + `TextFormat` dataset of the tutorials: no
/// header unless `firstRowAsHeader`; its settings are honoured the same way.
#[test]
fn text_format_datasets_honour_their_settings() {
    let dir = factory("adf_textformat", "");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch("CREATE TABLE v (id INTEGER, name TEXT, z TEXT); INSERT INTO v VALUES (1, 'a', NULL), (2, 'b,c', 'x');")
        .unwrap();
    dataset(
        &dir,
        "Out",
        "Lake",
        "AzureBlob",
        r#"{"folderPath": "out", "fileName": "x.txt",
            "format": {"type": "TextFormat", "columnDelimiter": "|", "nullValue": "\\N"}}"#,
    );
    copy_pipeline(
        &dir,
        "select id, name, z from v order by id",
        "Out",
        r#"{"type": "BlobSink"}"#,
    );
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    assert_eq!(
        std::fs::read_to_string(dir.join("lake/out/x.txt")).unwrap(),
        "1|a|\\N\r\n2|b,c|x\r\n"
    );
    // Without settings: `\N` for NULL (TextFormat's default on write), a
    // comma delimiter, values holding it quoted.
    dataset(
        &dir,
        "Out",
        "Lake",
        "AzureBlob",
        r#"{"folderPath": "out", "fileName": "x.txt", "format": {"type": "TextFormat"}}"#,
    );
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    assert_eq!(
        std::fs::read_to_string(dir.join("lake/out/x.txt")).unwrap(),
        "1,a,\\N\r\n2,\"b,c\",x\r\n"
    );
}

/// Settings highwater cannot honour are refused at load, naming the
/// activity (or dataset) and the property.
#[test]
fn unsupported_delimited_text_settings_are_refused_at_load() {
    for (settings, sink, says) in [
        (r#""compressionCodec": "bzip2""#, SINK, "compressionCodec"),
        (
            r#""compressionCodec": "ZipDeflate""#,
            SINK,
            "compressionCodec",
        ),
        (r#""encodingName": "UTF-7""#, SINK, "encodingName"),
        (r#""columnDelimiter": ";;""#, SINK, "columnDelimiter"),
        (r#""quoteChar": "ab""#, SINK, "quoteChar"),
        (
            "",
            r#"{"type": "DelimitedTextSink", "formatSettings": {"type": "DelimitedTextWriteSettings", "fileExtension": ".csv", "maxRowsPerFile": 0}}"#,
            "maxRowsPerFile",
        ),
    ] {
        let dir = factory("adf_csv_refused", "");
        let sep = if settings.is_empty() { "" } else { ", " };
        dataset(
            &dir,
            "Out",
            "Lake",
            "DelimitedText",
            &format!(
                r#"{{"location": {{"type": "AzureBlobStorageLocation", "container": "out"}}{sep}{settings}}}"#
            ),
        );
        copy_pipeline(&dir, "select id from t", "Out", sink);
        let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
        assert_code(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains("activity CopyRows") && err.contains(says),
            "{settings} {sink}: {err}"
        );
        assert!(dir.files("lake", "").is_empty(), "nothing ran");
    }
}
