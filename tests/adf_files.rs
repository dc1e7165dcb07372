//! Data Factory pipelines that read files (issue 8), each on a local
//! folder (`file://`), Azurite (`az://`) and moto (`s3://`): Copy and
//! Lookup from DelimitedText, Json, Parquet and Binary datasets with
//! `storeSettings` filters, delete after copy, GetMetadata, Delete and
//! Validation. The published templates "Copy new files only by
//! LastModifiedDate" and "Identify file with latest epoch as prefix" run in
//! their shape. Every test asserts the exact files or rows that arrived.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::util::*;

fn objstore(cmd: &str, kind: &str, name: &str, stdin: &str) -> String {
    crate::util::objstore(&[cmd, kind, name], stdin)
}

/// The store a test runs on: the `Lake` connection, whose root holds the
/// dataset containers (`data/…`).
struct Lake {
    kind: &'static str,
    dir: Dir,
    /// Container or bucket (object stores).
    bucket: String,
}

impl Lake {
    fn new(kind: &'static str, tag: &str) -> Lake {
        let dir = Dir::new(tag);
        let bucket = unique(tag).replace('_', "-").to_lowercase();
        let url = match kind {
            "file" => "file://./lake".to_string(),
            _ => {
                objstore("create", kind, &bucket, "");
                format!("{kind}://{bucket}/root")
            }
        };
        let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE t (id INTEGER, name TEXT); INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c');",
        )
        .unwrap();
        dir.write(
            "highwater.yaml",
            &format!(
                "connections:\n  Db: sqlite://src.db\n  Out: file://./out\n  Lake: {url}\n  DataSourceConnection: {url}\n  DataDestinationConnection: {url}\n"
            ),
        );
        dataset(
            &dir,
            "Report",
            "Out",
            "Json",
            r#"{"location": {"type": "AzureBlobStorageLocation", "fileName": "report.json"}}"#,
        );
        Lake { kind, dir, bucket }
    }

    fn env(&self) -> Vec<(&'static str, &'static str)> {
        object_store_env(self.kind)
    }

    /// Put files (path under the connection root → text).
    fn put(&self, files: &[(&str, &str)]) {
        if self.kind == "file" {
            for (k, v) in files {
                self.dir.write(&format!("lake/{k}"), v);
            }
            return;
        }
        let m: BTreeMap<String, &str> = files
            .iter()
            .map(|(k, v)| (format!("root/{k}"), *v))
            .collect();
        objstore(
            "put",
            self.kind,
            &self.bucket,
            &serde_json::to_string(&m).unwrap(),
        );
    }

    /// Every data file under the connection root (path → text).
    fn files(&self) -> BTreeMap<String, String> {
        if self.kind == "file" {
            let root = self.dir.join("lake");
            return self
                .dir
                .files("lake", "")
                .into_iter()
                .map(|p| {
                    let k = p.strip_prefix(&root).unwrap().to_string_lossy().to_string();
                    (k, std::fs::read_to_string(&p).unwrap_or_default())
                })
                .collect();
        }
        let all: BTreeMap<String, String> =
            serde_json::from_str(&objstore("dump", self.kind, &self.bucket, "")).unwrap();
        all.into_iter()
            .filter(|(k, _)| !k.contains("_highwater/"))
            .filter_map(|(k, v)| k.strip_prefix("root/").map(|k| (k.to_string(), v)))
            .collect()
    }

    fn names(&self) -> Vec<String> {
        self.files().into_keys().collect()
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["pipeline", "run", "pipeline.json", "--json"];
        all.extend_from_slice(args);
        self.dir.hw_env(&all, &self.env())
    }

    /// Run the pipeline, expecting `code`; the run record.
    fn run_ok(&self, args: &[&str], code: i32) -> Value {
        let o = self.run(args);
        assert_code(&o, code);
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
    }

    /// The one row of `out/report.json`, each value parsed as JSON.
    fn report(&self) -> BTreeMap<String, Value> {
        let text = std::fs::read_to_string(self.dir.join("out/report.json")).unwrap();
        let row: BTreeMap<String, Value> = serde_json::from_str(text.lines().next().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        row.into_iter()
            .map(|(k, v)| {
                let parsed = serde_json::from_str(v.as_str().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{k}: {e}: {v}"));
                (k, parsed)
            })
            .collect()
    }
}

fn dataset(dir: &Dir, name: &str, ls: &str, kind: &str, type_properties: &str) {
    dir.write(
        &format!("datasets/{name}.json"),
        &format!(
            r#"{{"name": "{name}", "properties": {{"type": "{kind}",
                "linkedServiceName": {{"referenceName": "{ls}", "type": "LinkedServiceReference"}},
                "parameters": {{"folder": {{"type": "string", "defaultValue": ""}}, "file": {{"type": "string", "defaultValue": ""}}}},
                "typeProperties": {type_properties}}}}}"#
        ),
    );
}

/// A file dataset in container `data` with folder and file parameters.
fn file_dataset(dir: &Dir, name: &str, kind: &str, extra: &str) {
    dataset(
        dir,
        name,
        "Lake",
        kind,
        &format!(
            r#"{{"location": {{"type": "AzureBlobStorageLocation", "container": "data",
                 "folderPath": {{"value": "@dataset().folder", "type": "Expression"}},
                 "fileName": {{"value": "@dataset().file", "type": "Expression"}}}}{extra}}}"#
        ),
    );
}

fn pipeline(dir: &Dir, activities: &str, extra: &str) {
    dir.write(
        "pipeline.json",
        &format!(r#"{{"name": "p", "properties": {{"activities": [{activities}]{extra}}}}}"#),
    );
}

/// A Copy that writes one row into `out/report.json`: each column the
/// JSON text of an expression.
fn report_activity(after: &[&str], columns: &[(&str, &str)]) -> String {
    let select = columns
        .iter()
        .map(|(k, e)| format!("'@{{string({e})}}' as {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let deps = after
        .iter()
        .map(|a| format!(r#"{{"activity": "{a}", "dependencyConditions": ["Succeeded"]}}"#))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"{{"name": "Report", "type": "Copy", "dependsOn": [{deps}],
            "typeProperties": {{"source": {{"type": "SqlSource", "sqlReaderQuery": "select {select}"}},
                               "sink": {{"type": "JsonSink"}}}},
            "inputs": [{{"referenceName": "T", "type": "DatasetReference"}}],
            "outputs": [{{"referenceName": "Report", "type": "DatasetReference"}}]}}"#
    )
}

fn table_dataset(dir: &Dir) {
    dir.write(
        "datasets/T.json",
        r#"{"name": "T", "properties": {"type": "AzureSqlTable",
            "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "t"}}}"#,
    );
}

fn reference(name: &str, folder: &str, file: &str) -> String {
    format!(
        r#"{{"referenceName": "{name}", "type": "DatasetReference", "parameters": {{"folder": "{folder}", "file": "{file}"}}}}"#
    )
}

fn activity<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == name)
        .unwrap_or_else(|| panic!("no activity {name} in {run:#}"))
}

/// Set a local file's last-modified time.
fn touch(lake: &Lake, path: &str, at: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(lake.dir.join(&format!("lake/{path}")))
        .unwrap()
        .set_modified(at)
        .unwrap();
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Now, truncated to the second (object stores keep whole seconds).
fn whole_second_now() -> SystemTime {
    let s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

macro_rules! on_every_store {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn file() {
                super::$name("file").await
            }
            #[tokio::test]
            async fn az() {
                super::$name("az").await
            }
            #[tokio::test]
            async fn s3() {
                super::$name("s3").await
            }
        }
    };
}

// ------------------------------------------ template: new files by date

/// The published template as it is (Binary → Binary, `recursive`,
/// `wildcardFileName: *`, the modified window from parameters): files
/// last modified in `[From, To)` are copied with their folders; one
/// before, and one at `To` (local) or after it (object stores, whose
/// last-modified is the upload time), are not.
async fn copy_new_files_by_last_modified_date(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_lmd");
    lake.dir.write(
        "pipeline.json",
        include_str!("fixtures/adf/copy-new-files/pipeline.json"),
    );
    for d in ["BinaryDataSourceStore", "BinaryDataDestinationStore"] {
        lake.dir.write(
            &format!("datasets/{d}.json"),
            &std::fs::read_to_string(format!(
                "{}/tests/fixtures/adf/copy-new-files/datasets/{d}.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        );
    }
    let (from, to);
    if kind == "file" {
        let base = whole_second_now() - Duration::from_secs(3600);
        from = base;
        to = base + Duration::from_secs(600);
        lake.put(&[
            ("src/in/old.txt", "old"),
            ("src/in/new1.txt", "new one"),
            ("src/in/deep/new2.txt", "new two"),
            ("src/in/atend.txt", "at the end"),
        ]);
        touch(&lake, "src/in/old.txt", from - Duration::from_secs(1));
        touch(&lake, "src/in/new1.txt", from);
        touch(
            &lake,
            "src/in/deep/new2.txt",
            from + Duration::from_secs(60),
        );
        touch(&lake, "src/in/atend.txt", to);
    } else {
        lake.put(&[("src/in/old.txt", "old")]);
        std::thread::sleep(Duration::from_millis(2100));
        from = whole_second_now();
        lake.put(&[
            ("src/in/new1.txt", "new one"),
            ("src/in/deep/new2.txt", "new two"),
        ]);
        std::thread::sleep(Duration::from_millis(2100));
        to = whole_second_now();
        lake.put(&[("src/in/atend.txt", "after the end")]);
    }
    let run = lake.run_ok(
        &[
            "--param",
            "FolderPath_Source=src",
            "--param",
            "Directory_Source=in",
            "--param",
            "FolderPath_Destination=dst",
            "--param",
            "Directory_Destination=copied",
            "--param",
            &format!("LastModified_From={}", rfc3339(from)),
            "--param",
            &format!("LastModified_To={}", rfc3339(to)),
        ],
        0,
    );
    assert_eq!(run["status"], "Succeeded");
    let copied: BTreeMap<String, String> = lake
        .files()
        .into_iter()
        .filter(|(k, _)| k.starts_with("dst/"))
        .collect();
    assert_eq!(
        copied,
        BTreeMap::from([
            (
                "dst/copied/deep/new2.txt".to_string(),
                "new two".to_string()
            ),
            ("dst/copied/new1.txt".to_string(), "new one".to_string()),
        ])
    );
    // The sources stay (no deleteFilesAfterCompletion).
    assert_eq!(lake.names().len(), 6, "{:?}", lake.names());
}
on_every_store!(copy_new_files_by_last_modified_date);

/// The shape of the tutorial "Incrementally copy new files based on time
/// partitioned folder name": Binary datasets whose folder is the window
/// start formatted `yyyy/MM/dd/HH`; only that hour's files are copied, to
/// the same folder under the destination.
async fn copy_time_partitioned_folder(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_partitioned");
    lake.put(&[
        ("source/2024/03/01/09/early.txt", "9"),
        ("source/2024/03/01/10/a.txt", "10a"),
        ("source/2024/03/01/10/more/b.txt", "10b"),
        ("source/2024/03/01/11/late.txt", "11"),
    ]);
    for (name, container) in [("SourceBinary", "source"), ("SinkBinary", "destination")] {
        lake.dir.write(
            &format!("datasets/{name}.json"),
            &format!(
                r#"{{"name": "{name}", "properties": {{"type": "Binary",
                    "linkedServiceName": {{"referenceName": "Lake", "type": "LinkedServiceReference"}},
                    "parameters": {{"FolderPath": {{"type": "String"}}}},
                    "typeProperties": {{"location": {{"type": "AzureBlobStorageLocation", "container": "{container}",
                        "folderPath": {{"value": "@dataset().FolderPath", "type": "Expression"}}}}}}}}}}"#
            ),
        );
    }
    let folder = r#"{"value": "@formatDateTime(pipeline().parameters.windowStartTime,'yyyy/MM/dd/HH')", "type": "Expression"}"#;
    pipeline(
        &lake.dir,
        &format!(
            r#"{{"name": "CopyOneHour", "type": "Copy",
                "typeProperties": {{"source": {{"type": "BinarySource", "storeSettings": {{"type": "AzureBlobStorageReadSettings", "recursive": true}}}},
                                   "sink": {{"type": "BinarySink", "storeSettings": {{"type": "AzureBlobStorageWriteSettings"}}}},
                                   "enableStaging": false}},
                "inputs": [{{"referenceName": "SourceBinary", "type": "DatasetReference", "parameters": {{"FolderPath": {folder}}}}}],
                "outputs": [{{"referenceName": "SinkBinary", "type": "DatasetReference", "parameters": {{"FolderPath": {folder}}}}}]}}"#
        ),
        r#", "parameters": {"windowStartTime": {"type": "String"}}"#,
    );
    lake.run_ok(&["--param", "windowStartTime=2024-03-01T10:00:00Z"], 0);
    let copied: BTreeMap<String, String> = lake
        .files()
        .into_iter()
        .filter(|(k, _)| k.starts_with("destination/"))
        .collect();
    assert_eq!(
        copied,
        BTreeMap::from([
            (
                "destination/2024/03/01/10/a.txt".to_string(),
                "10a".to_string()
            ),
            (
                "destination/2024/03/01/10/more/b.txt".to_string(),
                "10b".to_string()
            ),
        ])
    );
}
on_every_store!(copy_time_partitioned_folder);

// ------------------------------- template: latest file by epoch prefix

/// The shape of "Identify file with latest epoch as prefix": GetMetadata
/// `childItems` of a folder, a sequential ForEach with an If comparing the
/// epoch prefix, then a Copy of the latest file (DelimitedText with a
/// header) into `latest-file.json` in the same folder.
async fn latest_file_by_epoch_prefix(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_epoch");
    lake.put(&[
        ("data/drop/1650000000-a.csv", "id,name\n1,a\n"),
        ("data/drop/1660000000-b.csv", "id,name\n2,b\n3,c\n"),
        ("data/drop/1655000000-c.csv", "id,name\n4,d\n"),
        ("data/drop/1999999999-x.json", "{}"),
        ("data/drop/1999999999-sub/z.csv", "id,name\n9,z\n"),
    ]);
    file_dataset(
        &lake.dir,
        "Folder",
        "DelimitedText",
        r#", "columnDelimiter": ",", "escapeChar": "\\", "quoteChar": "\"", "firstRowAsHeader": true"#,
    );
    file_dataset(&lake.dir, "Result", "Json", "");
    pipeline(
        &lake.dir,
        &format!(
            r#"{{"name": "GetAllFiles", "type": "GetMetadata",
                "typeProperties": {{"dataset": {folder}, "fieldList": ["childItems"],
                   "storeSettings": {{"type": "AzureBlobStorageReadSettings", "recursive": true, "enablePartitionDiscovery": false}},
                   "formatSettings": {{"type": "DelimitedTextReadSettings"}}}}}},
               {{"name": "IterateFolder", "type": "ForEach",
                 "dependsOn": [{{"activity": "GetAllFiles", "dependencyConditions": ["Completed"]}}],
                 "typeProperties": {{"items": {{"value": "@activity('GetAllFiles').output.childItems", "type": "Expression"}},
                   "isSequential": true,
                   "activities": [{{"name": "CheckGreaterEpoch", "type": "IfCondition",
                     "typeProperties": {{"expression": {{"value": "@and(and(equals(item().type,'File'),not(endswith(item().name,'.json'))), greater(first(split(item().name, '-')),variables('greatestEpochVal')))", "type": "Expression"}},
                       "ifTrueActivities": [
                         {{"name": "SetGreaterEpoch", "type": "SetVariable",
                           "typeProperties": {{"variableName": "greatestEpochVal", "value": {{"value": "@first(split(item().name, '-'))", "type": "Expression"}}}}}},
                         {{"name": "SetFileName", "type": "SetVariable",
                           "dependsOn": [{{"activity": "SetGreaterEpoch", "dependencyConditions": ["Succeeded"]}}],
                           "typeProperties": {{"variableName": "latestFileName", "value": {{"value": "@item().name", "type": "Expression"}}}}}}]}}}}]}}}},
               {{"name": "WriteLatest", "type": "Copy",
                 "dependsOn": [{{"activity": "IterateFolder", "dependencyConditions": ["Completed"]}}],
                 "typeProperties": {{"source": {{"type": "DelimitedTextSource",
                     "storeSettings": {{"type": "AzureBlobStorageReadSettings", "recursive": true}},
                     "formatSettings": {{"type": "DelimitedTextReadSettings"}}}},
                   "sink": {{"type": "JsonSink", "storeSettings": {{"type": "AzureBlobStorageWriteSettings"}},
                     "formatSettings": {{"type": "JsonWriteSettings"}}}}}},
                 "inputs": [{{"referenceName": "Folder", "type": "DatasetReference",
                    "parameters": {{"folder": "drop", "file": {{"value": "@variables('latestFileName')", "type": "Expression"}}}}}}],
                 "outputs": [{result}]}}"#,
            folder = reference("Folder", "drop", ""),
            result = reference("Result", "drop", "latest-file.json"),
        ),
        r#", "variables": {"latestFileName": {"type": "String"}, "greatestEpochVal": {"type": "String", "defaultValue": "0"}}"#,
    );
    let run = lake.run_ok(&[], 0);
    assert_eq!(activity(&run, "WriteLatest")["rows_written"], 2);
    let files = lake.files();
    let latest: Vec<Value> = files["data/drop/latest-file.json"]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Rows of a delimited text file are strings.
    assert_eq!(
        latest,
        [
            json!({"id": "2", "name": "b"}),
            json!({"id": "3", "name": "c"})
        ]
    );
}
on_every_store!(latest_file_by_epoch_prefix);

/// The published template itself (GetMetadata, Filter, ForEach + If,
/// a Json copy with `additionalColumns`), unchanged: the linked service
/// `BlobStorage` is the `Lake` connection.
async fn latest_file_template_as_published(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_epoch_tpl");
    let yaml = std::fs::read_to_string(lake.dir.config()).unwrap();
    let url = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("Lake: "))
        .unwrap()
        .to_string();
    lake.dir
        .write("highwater.yaml", &format!("{yaml}  BlobStorage: {url}\n"));
    let fixture = |f: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/adf/latest-file/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    lake.dir.write("pipeline.json", &fixture("pipeline.json"));
    for d in [
        "DummyJsonUsedToCreateResultFile",
        "FolderPathToFindTheLatestFile",
        "LatestFileResult",
    ] {
        lake.dir.write(
            &format!("datasets/{d}.json"),
            &fixture(&format!("datasets/{d}.json")),
        );
    }
    lake.put(&[
        ("code-samples/latest-file/dummy-file.json", r#"{"id": 1}"#),
        ("test-sample/latest-file-folder/1650000000-a.csv", "a\n"),
        ("test-sample/latest-file-folder/1660000000-b.csv", "b\n"),
        ("test-sample/latest-file-folder/1655000000-c.csv", "c\n"),
        ("test-sample/latest-file-folder/1999999999-x.json", "{}"),
    ]);
    let run = lake.run_ok(&[], 0);
    assert_eq!(run["status"], "Succeeded");
    let files = lake.files();
    let out: Vec<Value> = files["test-sample/latest-file-folder/latest-file.json"]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        out,
        [json!({"id": 1, "latestFileName": "1660000000-b.csv"})]
    );
}
on_every_store!(latest_file_template_as_published);

// --------------------------------------- lookups, wildcards, formats

/// Lookups from DelimitedText (recursive or not, wildcard folder and file,
/// prefix), Json (an array) and Parquet (written by a Copy first).
async fn lookups_with_wildcards_and_formats(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_lookup");
    lake.put(&[
        ("data/in/a.csv", "id,name\n1,a\n2,b\n"),
        ("data/in/sub/b.csv", "id,name\n3,\"c, d\"\n"),
        ("data/in/c.txt", "id,name\n9,z\n"),
        (
            "data/j/rows.json",
            r#"[{"k": 1, "v": "x"}, {"k": 2, "v": "y"}]"#,
        ),
        (
            "data/j/lines.json",
            "{\"k\": 3, \"v\": \"z\"}\n{\"k\": 4, \"v\": \"w\"}\n",
        ),
    ]);
    table_dataset(&lake.dir);
    file_dataset(
        &lake.dir,
        "Csv",
        "DelimitedText",
        r#", "firstRowAsHeader": true"#,
    );
    file_dataset(&lake.dir, "JsonFiles", "Json", "");
    file_dataset(&lake.dir, "Pq", "Parquet", "");
    let lookup = |name: &str, store: &str, r: &str| {
        format!(
            r#"{{"name": "{name}", "type": "Lookup",
                "typeProperties": {{"source": {{"type": "DelimitedTextSource", "storeSettings": {store}}},
                                   "dataset": {r}, "firstRowOnly": false}}}}"#
        )
    };
    let acts = [
        lookup(
            "All",
            r#"{"recursive": true, "wildcardFileName": "*.csv"}"#,
            &reference("Csv", "in", ""),
        ),
        lookup(
            "Flat",
            r#"{"recursive": false, "wildcardFileName": "*.csv"}"#,
            &reference("Csv", "in", ""),
        ),
        lookup(
            "WildFolder",
            r#"{"wildcardFolderPath": "in/s*", "wildcardFileName": "?.csv"}"#,
            &reference("Csv", "", ""),
        ),
        lookup("Prefix", r#"{"prefix": "in/c"}"#, &reference("Csv", "", "")),
        lookup("OneFile", "{}", &reference("Csv", "in", "a.csv")),
        lookup("Json", "{}", &reference("JsonFiles", "j", "")),
        format!(
            r#"{{"name": "ToParquet", "type": "Copy",
                "typeProperties": {{"source": {{"type": "SqlSource", "sqlReaderQuery": "select id, name from t order by id"}},
                                   "sink": {{"type": "ParquetSink"}}}},
                "inputs": [{{"referenceName": "T", "type": "DatasetReference"}}],
                "outputs": [{}]}}"#,
            reference("Pq", "pq", "t.parquet")
        ),
        format!(
            r#"{{"name": "Parquet", "type": "Lookup", "dependsOn": [{{"activity": "ToParquet", "dependencyConditions": ["Succeeded"]}}],
                "typeProperties": {{"source": {{"type": "ParquetSource"}}, "dataset": {}, "firstRowOnly": false}}}}"#,
            reference("Pq", "pq", "")
        ),
        format!(
            r#"{{"name": "First", "type": "Lookup",
                "typeProperties": {{"source": {{"type": "DelimitedTextSource"}}, "dataset": {}}}}}"#,
            reference("Csv", "in", "a.csv")
        ),
    ];
    let names = [
        "All",
        "Flat",
        "WildFolder",
        "Prefix",
        "OneFile",
        "Json",
        "Parquet",
        "First",
    ];
    let columns: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            let what = if *n == "First" { "firstRow" } else { "value" };
            (
                format!("r_{}", n.to_lowercase()),
                format!("activity('{n}').output.{what}"),
            )
        })
        .collect();
    let columns: Vec<(&str, &str)> = columns
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    pipeline(
        &lake.dir,
        &format!("{}, {}", acts.join(", "), report_activity(&names, &columns)),
        "",
    );
    lake.run_ok(&[], 0);
    let r = lake.report();
    let abc = json!([
        {"id": "1", "name": "a"}, {"id": "2", "name": "b"}, {"id": "3", "name": "c, d"}
    ]);
    assert_eq!(r["r_all"], abc);
    assert_eq!(
        r["r_flat"],
        json!([{"id": "1", "name": "a"}, {"id": "2", "name": "b"}])
    );
    assert_eq!(r["r_wildfolder"], json!([{"id": "3", "name": "c, d"}]));
    assert_eq!(r["r_prefix"], json!([{"id": "9", "name": "z"}]));
    assert_eq!(
        r["r_onefile"],
        json!([{"id": "1", "name": "a"}, {"id": "2", "name": "b"}])
    );
    assert_eq!(r["r_first"], json!({"id": "1", "name": "a"}));
    // Files in name order: lines.json, then rows.json.
    assert_eq!(
        r["r_json"],
        json!([{"k": 3, "v": "z"}, {"k": 4, "v": "w"}, {"k": 1, "v": "x"}, {"k": 2, "v": "y"}])
    );
    assert_eq!(
        r["r_parquet"],
        json!([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}])
    );
}
on_every_store!(lookups_with_wildcards_and_formats);

/// A legacy `AzureBlob` dataset with `format: TextFormat` and its own
/// `fileFilter`; files whose headers differ are not read as one (the
/// activity fails, naming the file) rather than mapped by position.
async fn legacy_dataset_and_differing_headers(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_legacy");
    lake.put(&[
        ("leg/a.csv", "id,name\n1,a\n"),
        ("leg/b.txt", "id,name\n2,b\n"),
        ("mixed/a.csv", "id,name\n1,a\n"),
        ("mixed/b.csv", "name,id\nb,2\n"),
    ]);
    table_dataset(&lake.dir);
    dataset(
        &lake.dir,
        "Legacy",
        "Lake",
        "AzureBlob",
        r#"{"folderPath": {"value": "@dataset().folder", "type": "Expression"}, "fileFilter": "*.csv",
            "format": {"type": "TextFormat", "columnDelimiter": ",", "firstRowAsHeader": true}}"#,
    );
    let lookup = |name: &str, folder: &str| {
        format!(
            r#"{{"name": "{name}", "type": "Lookup",
                "typeProperties": {{"source": {{"type": "BlobSource"}}, "dataset": {}, "firstRowOnly": false}}}}"#,
            reference("Legacy", folder, "")
        )
    };
    pipeline(
        &lake.dir,
        &format!(
            "{}, {}",
            lookup("Leg", "leg"),
            report_activity(&["Leg"], &[("leg", "activity('Leg').output.value")])
        ),
        "",
    );
    lake.run_ok(&[], 0);
    assert_eq!(lake.report()["leg"], json!([{"id": "1", "name": "a"}]));
    pipeline(&lake.dir, &lookup("Mixed", "mixed"), "");
    let run = lake.run_ok(&[], 1);
    let e = activity(&run, "Mixed")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        e.contains("mixed/b.csv") && e.contains("differ from the first file's (id, name)"),
        "{e}"
    );
}
on_every_store!(legacy_dataset_and_differing_headers);

// ------------------------------ file → PostgreSQL, delete after copy

/// CSV files (recursive wildcard) copied into a PostgreSQL table, then
/// deleted (`deleteFilesAfterCompletion`); a file the filter does not
/// select stays. A copy that fails deletes nothing. Files copied into a
/// folder keep their paths (PreserveHierarchy) or names
/// (FlattenHierarchy); MergeFiles writes one file.
async fn file_to_postgres_and_delete_after_copy(kind: &'static str) {
    let pg = PgDb::new("adf_files_pg").await;
    pg.exec("CREATE TABLE people (id text, name text); CREATE TABLE strict (id text, name text NOT NULL);")
        .await;
    let lake = Lake::new(kind, "adf_files_pg");
    let yaml = std::fs::read_to_string(lake.dir.config()).unwrap();
    lake.dir
        .write("highwater.yaml", &format!("{yaml}  Pg: {}\n", pg.url));
    lake.put(&[
        ("data/in/a.csv", "id;name\n1;a\n2;b\n"),
        ("data/in/sub/b.csv", "id;name\n3;c\n"),
        ("data/in/keep.txt", "id;name\n4;\n"),
    ]);
    file_dataset(
        &lake.dir,
        "Csv",
        "DelimitedText",
        r#", "columnDelimiter": ";", "firstRowAsHeader": true"#,
    );
    file_dataset(
        &lake.dir,
        "Copied",
        "DelimitedText",
        r#", "firstRowAsHeader": true"#,
    );
    for t in ["people", "strict"] {
        lake.dir.write(
            &format!("datasets/{t}.json"),
            &format!(
                r#"{{"name": "{t}", "properties": {{"type": "AzurePostgreSqlTable",
                    "linkedServiceName": {{"referenceName": "Pg", "type": "LinkedServiceReference"}},
                    "typeProperties": {{"tableName": "{t}"}}}}}}"#
            ),
        );
    }
    let copy = |name: &str, store: &str, input: &str, output: &str, sink: &str| {
        format!(
            r#"{{"name": "{name}", "type": "Copy",
                "typeProperties": {{"source": {{"type": "DelimitedTextSource", "storeSettings": {store}}},
                                   "sink": {sink}}},
                "inputs": [{input}],
                "outputs": [{output}]}}"#
        )
    };
    let people = r#"{"referenceName": "people", "type": "DatasetReference"}"#;
    let strict = r#"{"referenceName": "strict", "type": "DatasetReference"}"#;
    // A failing copy (NULL into NOT NULL) deletes nothing.
    pipeline(
        &lake.dir,
        &copy(
            "Strict",
            r#"{"wildcardFileName": "*", "deleteFilesAfterCompletion": true}"#,
            &reference("Csv", "in", ""),
            strict,
            r#"{"type": "AzurePostgreSqlSink"}"#,
        ),
        "",
    );
    lake.run_ok(&[], 1);
    assert_eq!(lake.names().len(), 3, "{:?}", lake.names());
    let n: i64 = pg
        .client
        .query_one("SELECT count(*) FROM strict", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // Several files into a folder: one file each, by path
    // (PreserveHierarchy, the default) or by name (FlattenHierarchy).
    pipeline(
        &lake.dir,
        &format!(
            "{}, {}",
            copy(
                "Each",
                r#"{"wildcardFileName": "*.csv"}"#,
                &reference("Csv", "in", ""),
                &reference("Copied", "each", ""),
                r#"{"type": "DelimitedTextSink"}"#,
            ),
            copy(
                "Flat",
                r#"{"wildcardFileName": "*.csv"}"#,
                &reference("Csv", "in", ""),
                &reference("Copied", "flat", ""),
                r#"{"type": "DelimitedTextSink", "storeSettings": {"copyBehavior": "FlattenHierarchy"}}"#,
            )
        ),
        "",
    );
    let run = lake.run_ok(&[], 0);
    assert_eq!(activity(&run, "Each")["rows_written"], 3);
    let files = lake.files();
    for (path, rows) in [
        (
            "data/each/a.csv",
            vec![vec!["id", "name"], vec!["1", "a"], vec!["2", "b"]],
        ),
        (
            "data/each/sub/b.csv",
            vec![vec!["id", "name"], vec!["3", "c"]],
        ),
        (
            "data/flat/a.csv",
            vec![vec!["id", "name"], vec!["1", "a"], vec!["2", "b"]],
        ),
        ("data/flat/b.csv", vec![vec!["id", "name"], vec!["3", "c"]]),
    ] {
        let text = files
            .get(path)
            .unwrap_or_else(|| panic!("no {path} in {files:?}"));
        assert_eq!(parse_csv(text), rows, "{path}");
    }
    assert_eq!(
        files
            .keys()
            .filter(|k| k.starts_with("data/each/") || k.starts_with("data/flat/"))
            .count(),
        4
    );
    pipeline(
        &lake.dir,
        &format!(
            "{}, {}",
            copy(
                "Merge",
                r#"{"wildcardFileName": "*.csv"}"#,
                &reference("Csv", "in", ""),
                &reference("Copied", "merged", ""),
                r#"{"type": "DelimitedTextSink", "storeSettings": {"copyBehavior": "MergeFiles"}, "formatSettings": {"type": "DelimitedTextWriteSettings", "fileExtension": ".csv"}}"#,
            ),
            copy(
                "One",
                r#"{"wildcardFileName": "*.txt", "recursive": false}"#,
                &reference("Csv", "in", ""),
                &reference("Copied", "single", ""),
                r#"{"type": "DelimitedTextSink"}"#,
            )
        ),
        "",
    );
    lake.run_ok(&[], 0);
    let files = lake.files();
    let merged: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("data/merged/"))
        .collect();
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(
        parse_csv(&files[merged[0]]),
        [["id", "name"], ["1", "a"], ["2", "b"], ["3", "c"]]
    );
    assert_eq!(
        parse_csv(&files["data/single/keep.txt"]),
        [vec!["id", "name"], vec!["4", ""]]
    );

    // Into PostgreSQL, then the copied files are deleted.
    pipeline(
        &lake.dir,
        &copy(
            "ToPg",
            r#"{"recursive": true, "wildcardFileName": "*.csv", "deleteFilesAfterCompletion": true}"#,
            &reference("Csv", "in", ""),
            people,
            r#"{"type": "AzurePostgreSqlSink"}"#,
        ),
        "",
    );
    let run = lake.run_ok(&[], 0);
    assert_eq!(activity(&run, "ToPg")["rows_written"], 3);
    let rows: Vec<(String, String)> = pg
        .client
        .query("SELECT id, name FROM people ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        [
            ("1".to_string(), "a".to_string()),
            ("2".to_string(), "b".to_string()),
            ("3".to_string(), "c".to_string())
        ]
    );
    let left: Vec<String> = lake
        .names()
        .into_iter()
        .filter(|k| k.starts_with("data/in/"))
        .collect();
    assert_eq!(left, ["data/in/keep.txt"]);
}
on_every_store!(file_to_postgres_and_delete_after_copy);

// ------------------------------------------- DelimitedText settings

/// Rows written with every DelimitedText setting (delimiter, quote,
/// escape, NULL text, a code page, gzip) read back with the same dataset;
/// a file without a header reads as `Prop_0`, `Prop_1`, the empty field as
/// NULL.
async fn delimited_text_settings_read_back(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_settings");
    let db = rusqlite::Connection::open(lake.dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE u (id INTEGER, name TEXT, note TEXT);
         INSERT INTO u VALUES (1, 'a;b', NULL), (2, 'say \"hi\"', 'café'), (3, '', 'x');",
    )
    .unwrap();
    lake.put(&[("data/plain/p.csv", "1,x\n2,\n")]);
    table_dataset(&lake.dir);
    file_dataset(
        &lake.dir,
        "Gz",
        "DelimitedText",
        r#", "firstRowAsHeader": true, "columnDelimiter": ";", "quoteChar": "\"", "escapeChar": "\\",
           "nullValue": "NULL", "encodingName": "ISO-8859-1", "compressionCodec": "gzip""#,
    );
    file_dataset(&lake.dir, "Plain", "DelimitedText", "");
    pipeline(
        &lake.dir,
        &format!(
            r#"{{"name": "Write", "type": "Copy",
                "typeProperties": {{"source": {{"type": "SqlSource", "sqlReaderQuery": "select id, name, note from u order by id"}},
                                   "sink": {{"type": "DelimitedTextSink"}}}},
                "inputs": [{{"referenceName": "T", "type": "DatasetReference"}}],
                "outputs": [{gz}]}},
               {{"name": "ReadGz", "type": "Lookup", "dependsOn": [{{"activity": "Write", "dependencyConditions": ["Succeeded"]}}],
                "typeProperties": {{"source": {{"type": "DelimitedTextSource"}}, "dataset": {gz}, "firstRowOnly": false}}}},
               {{"name": "ReadPlain", "type": "Lookup",
                "typeProperties": {{"source": {{"type": "DelimitedTextSource"}}, "dataset": {plain}, "firstRowOnly": false}}}},
               {report}"#,
            gz = reference("Gz", "gz", "u.csv.gz"),
            plain = reference("Plain", "plain", ""),
            report = report_activity(
                &["ReadGz", "ReadPlain"],
                &[
                    ("gz", "activity('ReadGz').output.value"),
                    ("plain", "activity('ReadPlain').output.value")
                ]
            )
        ),
        "",
    );
    lake.run_ok(&[], 0);
    let r = lake.report();
    assert_eq!(
        r["gz"],
        json!([
            {"id": "1", "name": "a;b", "note": null},
            {"id": "2", "name": "say \"hi\"", "note": "café"},
            {"id": "3", "name": "", "note": "x"}
        ])
    );
    assert_eq!(
        r["plain"],
        json!([{"Prop_0": "1", "Prop_1": "x"}, {"Prop_0": "2", "Prop_1": null}])
    );
}
on_every_store!(delimited_text_settings_read_back);

/// A file source copy killed before its commit publishes nothing and
/// deletes nothing; the next run copies every row once and then deletes
/// the files.
async fn crash_before_commit_deletes_nothing(kind: &'static str) {
    let pg = PgDb::new("adf_files_crash").await;
    pg.exec("CREATE TABLE people (id text, name text);").await;
    let lake = Lake::new(kind, "adf_files_crash");
    let yaml = std::fs::read_to_string(lake.dir.config()).unwrap();
    lake.dir
        .write("highwater.yaml", &format!("{yaml}  Pg: {}\n", pg.url));
    lake.put(&[
        ("data/in/a.csv", "id,name\n1,a\n2,b\n"),
        ("data/in/b.csv", "id,name\n3,c\n"),
    ]);
    file_dataset(
        &lake.dir,
        "Csv",
        "DelimitedText",
        r#", "firstRowAsHeader": true"#,
    );
    lake.dir.write(
        "datasets/people.json",
        r#"{"name": "people", "properties": {"type": "AzurePostgreSqlTable",
            "linkedServiceName": {"referenceName": "Pg", "type": "LinkedServiceReference"},
            "typeProperties": {"tableName": "people"}}}"#,
    );
    pipeline(
        &lake.dir,
        &format!(
            r#"{{"name": "ToPg", "type": "Copy",
                "typeProperties": {{"source": {{"type": "DelimitedTextSource",
                    "storeSettings": {{"wildcardFileName": "*.csv", "deleteFilesAfterCompletion": true}}}},
                                   "sink": {{"type": "AzurePostgreSqlSink"}}}},
                "inputs": [{}],
                "outputs": [{{"referenceName": "people", "type": "DatasetReference"}}]}}"#,
            reference("Csv", "in", "")
        ),
        "",
    );
    let mut env = lake.env();
    env.push(("HIGHWATER_FAILPOINT", "engine.before_sink_commit"));
    let o = lake.dir.hw_env(&["pipeline", "run", "pipeline.json"], &env);
    assert_eq!(o.status.code(), None, "{}", stderr(&o));
    let n: i64 = pg
        .client
        .query_one("SELECT count(*) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing committed");
    assert_eq!(lake.names(), ["data/in/a.csv", "data/in/b.csv"]);
    lake.run_ok(&[], 0);
    let rows: Vec<String> = pg
        .client
        .query("SELECT id || name FROM people ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["1a", "2b", "3c"]);
    assert!(lake.names().is_empty(), "{:?}", lake.names());
}
on_every_store!(crash_before_commit_deletes_nothing);

/// `maxRowsPerFile` with a file source: each source file is split on its
/// own; `fileNamePrefix` does not apply to file sources (Data Factory's
/// docs), so no copy overwrites another's parts.
async fn max_rows_per_file_from_files(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_split");
    lake.put(&[
        ("data/in/a.csv", "id\n1\n2\n3\n"),
        ("data/in/b.csv", "id\n4\n"),
    ]);
    file_dataset(
        &lake.dir,
        "Csv",
        "DelimitedText",
        r#", "firstRowAsHeader": true"#,
    );
    pipeline(
        &lake.dir,
        &format!(
            r#"{{"name": "Split", "type": "Copy",
                "typeProperties": {{"source": {{"type": "DelimitedTextSource", "storeSettings": {{"wildcardFileName": "*.csv"}}}},
                    "sink": {{"type": "DelimitedTextSink", "formatSettings": {{"type": "DelimitedTextWriteSettings",
                        "maxRowsPerFile": 2, "fileNamePrefix": "part", "fileExtension": ".csv"}}}}}},
                "inputs": [{}], "outputs": [{}]}}"#,
            reference("Csv", "in", ""),
            reference("Csv", "split", "")
        ),
        "",
    );
    lake.run_ok(&[], 0);
    let files = lake.files();
    let parts: Vec<(&String, Vec<Vec<String>>)> = files
        .iter()
        .filter(|(k, _)| k.starts_with("data/split/"))
        .map(|(k, v)| (k, parse_csv(v)))
        .collect();
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(parts.iter().all(|(k, _)| !k.contains("part_")), "{parts:?}");
    let mut ids: Vec<String> = parts
        .iter()
        .flat_map(|(_, rows)| rows[1..].iter().map(|r| r[0].clone()))
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3", "4"]);
}
on_every_store!(max_rows_per_file_from_files);

// ------------------------------------------------------- GetMetadata

async fn get_metadata_fields(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_meta");
    lake.put(&[
        ("data/in/a.csv", "id,name\n1,a\n"),
        ("data/in/c.txt", "x"),
        ("data/in/sub/b.csv", "id\n3\n"),
    ]);
    table_dataset(&lake.dir);
    file_dataset(
        &lake.dir,
        "Csv",
        "DelimitedText",
        r#", "firstRowAsHeader": true"#,
    );
    let meta = |name: &str, r: &str, fields: &str| {
        format!(
            r#"{{"name": "{name}", "type": "GetMetadata",
                "typeProperties": {{"dataset": {r}, "fieldList": {fields}}}}}"#
        )
    };
    pipeline(
        &lake.dir,
        &format!(
            "{}, {}, {}, {}",
            meta(
                "File",
                &reference("Csv", "in", "a.csv"),
                r#"["exists", "itemName", "itemType", "size", "structure", "columnCount", "lastModified"]"#
            ),
            meta(
                "Folder",
                &reference("Csv", "in", ""),
                r#"["exists", "itemName", "itemType", "childItems"]"#
            ),
            meta("Missing", &reference("Csv", "nope", ""), r#"["exists"]"#),
            report_activity(
                &["File", "Folder", "Missing"],
                &[
                    ("file", "activity('File').output"),
                    ("folder", "activity('Folder').output"),
                    ("missing", "activity('Missing').output"),
                ]
            )
        ),
        "",
    );
    lake.run_ok(&[], 0);
    let r = lake.report();
    let mut file = r["file"].clone();
    let modified = file
        .as_object_mut()
        .unwrap()
        .remove("lastModified")
        .unwrap();
    let modified = chrono::DateTime::parse_from_rfc3339(modified.as_str().unwrap()).unwrap();
    let age = chrono::Utc::now().signed_duration_since(modified);
    assert!(age.num_minutes().abs() < 10, "{modified}");
    assert_eq!(
        file,
        json!({"exists": true, "itemName": "a.csv", "itemType": "File", "size": 12,
               "structure": [{"name": "id", "type": "String"}, {"name": "name", "type": "String"}],
               "columnCount": 2})
    );
    assert_eq!(
        r["folder"],
        json!({"exists": true, "itemName": "in", "itemType": "Folder",
               "childItems": [{"name": "a.csv", "type": "File"}, {"name": "c.txt", "type": "File"},
                              {"name": "sub", "type": "Folder"}]})
    );
    assert_eq!(r["missing"], json!({"exists": false}));

    // Without `exists`, a missing item fails the activity.
    pipeline(
        &lake.dir,
        &meta("Missing", &reference("Csv", "nope", ""), r#"["itemName"]"#),
        "",
    );
    let run = lake.run_ok(&[], 1);
    let e = activity(&run, "Missing")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}
on_every_store!(get_metadata_fields);

// ------------------------------------------------------------ Delete

/// Delete by wildcard, first in the folder only, then recursively; a
/// filter that reaches outside the dataset's folder deletes nothing.
async fn delete_files(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_delete");
    lake.put(&[
        ("data/tmp/a.tmp", "a"),
        ("data/tmp/b.csv", "b"),
        ("data/tmp/sub/c.tmp", "c"),
        ("data/other/d.tmp", "d"),
    ]);
    file_dataset(&lake.dir, "Bin", "Binary", "");
    let delete = |name: &str, after: &str, props: &str| {
        format!(
            r#"{{"name": "{name}", "type": "Delete", "dependsOn": [{after}],
                "typeProperties": {{"dataset": {}, {props}}}}}"#,
            reference("Bin", "tmp", "")
        )
    };
    pipeline(
        &lake.dir,
        &format!(
            "{}, {}",
            delete(
                "Top",
                "",
                r#""enableLogging": false, "storeSettings": {"type": "AzureBlobStorageReadSettings", "wildcardFileName": "*.tmp"}"#
            ),
            delete(
                "Deep",
                r#"{"activity": "Top", "dependencyConditions": ["Succeeded"]}"#,
                r#""recursive": true, "storeSettings": {"wildcardFileName": "*.tmp"}"#
            )
        ),
        "",
    );
    let run = lake.run_ok(&[], 0);
    assert_eq!(
        activity(&run, "Top")["outputs"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        lake.names(),
        ["data/other/d.tmp", "data/tmp/b.csv"],
        "a.tmp deleted by Top, sub/c.tmp by Deep"
    );
    if kind == "file" {
        assert!(
            !lake.dir.join("lake/data/tmp/sub").exists(),
            "emptied folder removed"
        );
    }
    pipeline(
        &lake.dir,
        &delete(
            "Outside",
            "",
            r#""storeSettings": {"wildcardFolderPath": "oth*", "wildcardFileName": "*"}"#,
        ),
        "",
    );
    let run = lake.run_ok(&[], 1);
    let e = activity(&run, "Outside")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.contains("outside the dataset's folder"), "{e}");
    assert_eq!(lake.names(), ["data/other/d.tmp", "data/tmp/b.csv"]);
}
on_every_store!(delete_files);

// -------------------------------------------------------- Validation

/// Validation passes on a file of at least `minimumSize` bytes and a
/// folder with child items; it fails after `timeout` on a missing file
/// and on a file that is too small.
async fn validation_waits_then_times_out(kind: &'static str) {
    let lake = Lake::new(kind, "adf_files_validation");
    lake.put(&[("data/v/ready.csv", "12345")]);
    file_dataset(&lake.dir, "Bin", "Binary", "");
    let validation = |name: &str, r: &str, props: &str| {
        format!(
            r#"{{"name": "{name}", "type": "Validation",
                "typeProperties": {{"dataset": {r}, "timeout": "0.00:00:02", "sleep": 1{props}}}}}"#
        )
    };
    pipeline(
        &lake.dir,
        &[
            validation(
                "Ready",
                &reference("Bin", "v", "ready.csv"),
                r#", "minimumSize": 5"#,
            ),
            validation(
                "Folder",
                &reference("Bin", "v", ""),
                r#", "childItems": true"#,
            ),
            validation("Missing", &reference("Bin", "v", "late.csv"), ""),
            validation(
                "Small",
                &reference("Bin", "v", "ready.csv"),
                r#", "minimumSize": 6"#,
            ),
        ]
        .join(", "),
        "",
    );
    let run = lake.run_ok(&[], 1);
    assert_eq!(activity(&run, "Ready")["status"], "Succeeded");
    assert_eq!(activity(&run, "Folder")["status"], "Succeeded");
    for (name, why) in [
        ("Missing", "it does not exist"),
        ("Small", "it holds 5 bytes"),
    ] {
        let a = activity(&run, name);
        assert_eq!(a["status"], "Failed");
        let e = a["error"].as_str().unwrap();
        assert!(e.contains("timed out after 2s") && e.contains(why), "{e}");
    }
}
on_every_store!(validation_waits_then_times_out);

// ------------------------------------------------- refused at load

/// What stays unsupported is refused before anything runs, naming the
/// activity and property.
#[test]
fn unsupported_file_settings_are_refused_at_load() {
    let lake = Lake::new("file", "adf_files_refused");
    table_dataset(&lake.dir);
    file_dataset(&lake.dir, "Csv", "DelimitedText", "");
    file_dataset(&lake.dir, "Bin", "Binary", "");
    for (activity, expected) in [
        (
            format!(
                r#"{{"name": "L", "type": "Lookup", "typeProperties": {{"dataset": {},
                    "source": {{"type": "DelimitedTextSource", "storeSettings": {{"fileListPath": "list.txt"}}}}}}}}"#,
                reference("Csv", "in", "")
            ),
            "storeSettings.fileListPath is not supported",
        ),
        (
            format!(
                r#"{{"name": "L", "type": "Lookup", "typeProperties": {{"dataset": {},
                    "source": {{"type": "DelimitedTextSource", "formatSettings": {{"skipLineCount": 2}}}}}}}}"#,
                reference("Csv", "in", "")
            ),
            "formatSettings.skipLineCount is not supported",
        ),
        (
            format!(
                r#"{{"name": "L", "type": "Lookup", "typeProperties": {{"dataset": {},
                    "source": {{"type": "DelimitedTextSource", "storeSettings": {{"modifiedDatetimeStart": "yesterday"}}}}}}}}"#,
                reference("Csv", "in", "")
            ),
            "storeSettings.modifiedDatetimeStart",
        ),
        (
            format!(
                r#"{{"name": "M", "type": "GetMetadata", "typeProperties": {{"dataset": {}, "fieldList": ["contentMD5"]}}}}"#,
                reference("Csv", "in", "")
            ),
            "fieldList: contentMD5 is not supported",
        ),
        (
            format!(
                r#"{{"name": "C", "type": "Copy", "typeProperties": {{"source": {{"type": "BinarySource"}}, "sink": {{"type": "DelimitedTextSink"}}}},
                    "inputs": [{}], "outputs": [{}]}}"#,
                reference("Bin", "in", ""),
                reference("Csv", "out", "")
            ),
            "activity C: inputs[0]: dataset Bin is a Binary dataset: a Binary dataset copies only to and from another Binary dataset",
        ),
        (
            r#"{"name": "D", "type": "Delete", "typeProperties": {"dataset": {"referenceName": "T", "type": "DatasetReference"}}}"#
                .to_string(),
            "not a file or folder",
        ),
        (
            format!(
                r#"{{"name": "D", "type": "Delete", "typeProperties": {{"dataset": {}, "enableLogging": true}}}}"#,
                reference("Bin", "in", "")
            ),
            "enableLogging is not supported",
        ),
    ] {
        pipeline(&lake.dir, &activity, "");
        let o = lake.run(&[]);
        assert_code(&o, 2);
        assert!(stderr(&o).contains(expected), "{expected}: {}", stderr(&o));
    }
}
