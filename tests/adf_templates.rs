//! Microsoft's published Data Factory templates and a real user's factory
//! (issue 8), run as published (`tests/fixtures/adf/`), only the linked
//! services mapped to local connections, with the rows that arrived:
//!
//! - "Delta copy from Database": refused at load as published (its stored
//!   procedure activity names no procedure), then with the article's fix two
//!   runs copy 9 rows, then exactly the 2 new ones, on PostgreSQL and
//!   MariaDB;
//! - "Bulk Copy from Database": a control table's five partitions copied in
//!   parallel into one folder, one file each, nothing overwritten;
//! - "Copy delta data from AWS S3 to Azure Data Lake Storage Gen2": S3
//!   (moto) to Azure Blob (Azurite) through account-level connections
//!   (`s3://`, `az://`: the datasets name the bucket and container), two
//!   pipelines through ExecutePipeline, new files only on the second run, and
//!   the Failed branch recorded when a copy fails;
//! - a user's metadata-driven upsert (JSON metadata file, sequential
//!   ForEach, keys from an expression, queries ending in `;`, upper-case
//!   table names in a PostgreSQL database of lower-case tables, a
//!   try-catch Web alert).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use serde_json::Value;

use crate::util::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Postgres,
    Mariadb,
}

async fn db(b: Backend, dir: &Dir, tag: &str) -> SrcDb {
    SrcDb::new(
        match b {
            Backend::Postgres => "postgres",
            Backend::Mariadb => "mariadb",
        },
        dir,
        tag,
    )
    .await
}

/// A copy of the fixture folder `tests/fixtures/adf/<name>` in a new test
/// folder.
fn fixture(name: &str, tag: &str) -> Dir {
    let dir = Dir::new(tag);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/adf")
        .join(name);
    for entry in walk(&root) {
        let rel = entry
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        dir.write(&rel, &std::fs::read_to_string(&entry).unwrap());
    }
    dir
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(p).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Edit a pipeline file's JSON in place.
fn edit(dir: &Dir, file: &str, f: impl FnOnce(&mut Value)) {
    let mut j: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
    f(&mut j);
    dir.write(file, &serde_json::to_string_pretty(&j).unwrap());
}

fn activity<'a>(pipeline: &'a mut Value, name: &str) -> &'a mut Value {
    pipeline["properties"]["activities"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no activity {name}"))
}

/// The CSV files of a folder (name → rows without the header), sorted.
fn csv_files(dir: &Dir, folder: &str) -> Vec<(String, Vec<Vec<String>>)> {
    let mut files: Vec<_> = dir
        .files(folder, "txt")
        .into_iter()
        .map(|p| {
            let (_, rows) = read_csv(&p);
            (p.file_name().unwrap().to_string_lossy().to_string(), rows)
        })
        .collect();
    files.sort();
    files
}

fn ids(rows: &[Vec<String>]) -> Vec<i64> {
    let mut v: Vec<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------- delta copy

const DELTA_PARAMS: [&str; 10] = [
    "--param",
    "Data_Source_Table_Name=data_source_table",
    "--param",
    "Data_Source_WaterMarkColumn=LastModifytime",
    "--param",
    "Data_Destination_Folder_Path=delta",
    "--param",
    "Control_Table_Table_Name=watermarktable",
    "--param",
    "Control_Table_Column_Name=WatermarkValue",
];

fn delta_copy_factory(tag: &str, url: &str) -> Dir {
    let dir = fixture("delta-copy", tag);
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  ExternalControlTableConnection: {url}\n  DataSourceConnection: {url}\n  DataDestinationConnection: file://./out\n"
        ),
    );
    dir
}

#[test]
fn delta_copy_template_as_published_is_refused_at_load() {
    let dir = delta_copy_factory("tpl_delta_refused", "sqlite://src.db");
    let mut args = vec!["pipeline", "run", "DeltaCopyfromDB_using_ControlTable"];
    args.extend(DELTA_PARAMS);
    let o = dir.hw(&args);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("activity UpdateWaterMark") && err.contains("storedProcedureName is required"),
        "{err}"
    );
    assert!(
        !dir.join("out").exists(),
        "nothing may run before the refusal"
    );
}

async fn delta_copy_template(b: Backend) {
    let tag = format!("tpl_delta_{b:?}").to_lowercase();
    let dir0 = Dir::new(&tag);
    let src = db(b, &dir0, &tag).await;
    let dir = delta_copy_factory(&tag, &src.url());
    // The article's tables and procedure (T-SQL there), in this dialect.
    let procedure = match b {
        Backend::Postgres => {
            r#"CREATE PROCEDURE update_watermark("LastModifiedtime" timestamp) LANGUAGE sql AS $$ UPDATE watermarktable SET WatermarkValue = "LastModifiedtime" $$"#
        }
        Backend::Mariadb => {
            "CREATE PROCEDURE update_watermark(LastModifiedtime datetime) UPDATE watermarktable SET WatermarkValue = LastModifiedtime"
        }
    };
    let ts = match b {
        Backend::Postgres => "timestamp",
        Backend::Mariadb => "datetime",
    };
    src.exec(&format!(
        "CREATE TABLE watermarktable (WatermarkValue {ts});
         INSERT INTO watermarktable VALUES ('2010-01-01 00:00:00');
         CREATE TABLE data_source_table (PersonID int, Name varchar(255), LastModifytime {ts});
         INSERT INTO data_source_table VALUES
           (1, 'aaaa', '2017-09-01 00:56:00'), (2, 'bbbb', '2017-09-02 05:23:00'),
           (3, 'cccc', '2017-09-03 02:36:00'), (4, 'dddd', '2017-09-04 03:21:00'),
           (5, 'eeee', '2017-09-05 08:06:00'), (6, 'fffffff', '2017-09-06 02:23:00'),
           (7, 'gggg', '2017-09-07 09:01:00'), (8, 'hhhh', '2017-09-08 09:01:00'),
           (9, 'iiiiiiiii', '2017-09-09 09:01:00');"
    ))
    .await;
    src.exec(procedure).await;
    // The article's fix: pick [update_watermark], "Import parameter".
    let file = "pipelines/DeltaCopyfromDB_using_ControlTable.json";
    edit(&dir, file, |p| {
        let tp = &mut activity(p, "UpdateWaterMark")["typeProperties"];
        tp["storedProcedureName"] = "[update_watermark]".into();
        let value = tp["storedProcedureParameters"]["LastModifyDate"].take();
        tp["storedProcedureParameters"] = serde_json::json!({ "LastModifiedtime": value });
    });
    let mut args = vec!["pipeline", "run", "DeltaCopyfromDB_using_ControlTable"];
    args.extend(DELTA_PARAMS);

    assert_code(&dir.hw(&args), 0);
    let files = csv_files(&dir, "out/delta");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(ids(&files[0].1), (1..=9).collect::<Vec<_>>());
    assert_eq!(files[0].1[5][1], "fffffff");

    src.exec(
        "INSERT INTO data_source_table VALUES (10, 'newdata', '2017-09-10 02:23:00');
         INSERT INTO data_source_table VALUES (11, 'newdata', '2017-09-11 09:01:00');",
    )
    .await;
    assert_code(&dir.hw(&args), 0);
    let files = csv_files(&dir, "out/delta");
    assert_eq!(files.len(), 2, "{files:?}");
    let new: Vec<_> = files
        .iter()
        .filter(|(_, r)| ids(r) != (1..=9).collect::<Vec<_>>())
        .collect();
    assert_eq!(new.len(), 1, "{files:?}");
    assert_eq!(ids(&new[0].1), vec![10, 11]);
    assert_eq!(
        src.rows("SELECT CAST(WatermarkValue AS char(19)) FROM watermarktable")
            .await,
        vec![vec!["2017-09-11 09:01:00".to_string()]]
    );

    // Nothing new: an empty copy (Data Factory writes the empty file too).
    assert_code(&dir.hw(&args), 0);
    let files = csv_files(&dir, "out/delta");
    assert_eq!(files.len(), 3);
    assert_eq!(files.iter().map(|(_, r)| r.len()).sum::<usize>(), 11);
}

// ----------------------------------------------------------------- bulk copy

async fn bulk_copy_template(b: Backend) {
    let tag = format!("tpl_bulk_{b:?}").to_lowercase();
    let dir = fixture("bulk-copy", &tag);
    let src = db(b, &dir, &tag).await;
    let url = src.url();
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  ExternalControlTableConnection: {url}\n  DataSourceConnection: {url}\n  DataDestinationConnection: file://./out\n"
        ),
    );
    let ts = match b {
        Backend::Postgres => "timestamp(3)",
        Backend::Mariadb => "datetime(3)",
    };
    // The article's control table, verbatim apart from the dialect.
    src.exec(&format!(
        "CREATE TABLE ControlTableForTemplate (PartitionID int, SourceTableName varchar(255), FilterQuery varchar(255));
         INSERT INTO ControlTableForTemplate (PartitionID, SourceTableName, FilterQuery) VALUES
         (1, 'datasource_table', 'select * from datasource_table where LastModifytime >= ''2015-01-01 00:00:00'' and LastModifytime <= ''2015-12-31 23:59:59.999'''),
         (2, 'datasource_table', 'select * from datasource_table where LastModifytime >= ''2016-01-01 00:00:00'' and LastModifytime <= ''2016-12-31 23:59:59.999'''),
         (3, 'datasource_table', 'select * from datasource_table where LastModifytime >= ''2017-01-01 00:00:00'' and LastModifytime <= ''2017-12-31 23:59:59.999'''),
         (4, 'project_table', 'select * from project_table where ID >= 0 and ID < 1000'),
         (5, 'project_table', 'select * from project_table where ID >= 1000 and ID < 2000');
         CREATE TABLE datasource_table (PersonID int, Name varchar(255), LastModifytime {ts});
         INSERT INTO datasource_table VALUES (1, 'a', '2015-03-01 00:00:00'), (2, 'b', '2016-05-01 00:00:00'),
           (3, 'c', '2017-12-31 23:59:59.999'), (4, 'd', '2016-01-01 00:00:00'), (5, 'e', '2018-01-01 00:00:00');
         CREATE TABLE project_table (ID int, Project varchar(50));
         INSERT INTO project_table VALUES (1, 'p1'), (999, 'p999'), (1000, 'p1000'), (1999, 'x'), (2000, 'out');"
    ))
    .await;
    let o = dir.hw(&[
        "pipeline",
        "run",
        "BulkCopyfromDB_with_ControlTable",
        "--param",
        "Control_Table_Name=ControlTableForTemplate",
        "--param",
        "Control_Table_Schema_PartitionID=PartitionID",
        "--param",
        "Control_Table_Schema_SourceTableName=SourceTableName",
        "--param",
        "Control_Table_Schema_FilterQuery=FilterQuery",
        "--param",
        "Data_Destination_Folder_Path=bulk",
    ]);
    assert_code(&o, 0);
    let files = csv_files(&dir, "out/bulk");
    assert_eq!(
        files.len(),
        5,
        "one file per partition, none overwritten: {files:?}"
    );
    let mut got: Vec<Vec<i64>> = files.iter().map(|(_, r)| ids(r)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![vec![1], vec![1, 999], vec![2, 4], vec![3], vec![1000, 1999]]
    );
    assert!(
        files.iter().all(|(n, _)| n.starts_with("data_")),
        "{files:?}"
    );
}

// ------------------------------------------------------ S3 → ADLS partitions

fn put_objects(kind: &str, bucket: &str, files: &[(&str, &str)]) {
    let map: serde_json::Map<String, Value> = files
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    objstore(&["put", kind, bucket], &Value::Object(map).to_string());
}

fn objects(kind: &str, bucket: &str) -> std::collections::BTreeMap<String, String> {
    let all: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&objstore(&["dump", kind, bucket], "")).unwrap();
    all.into_iter()
        .filter(|(k, _)| !k.contains("_highwater/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_partitions_template_between_account_level_connections() {
    let tag = "tpl_s3parts";
    let dir = fixture("s3-partitions", tag);
    let pg = PgDb::new(tag).await;
    let bucket = unique("src").replace('_', "-").to_lowercase();
    let container = unique("dst").replace('_', "-").to_lowercase();
    objstore(&["create", "s3", &bucket], "");
    objstore(&["create", "az", &container], "");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  Azure_SQL_Database_Connection: {}\n  AWS_S3_Connection: s3://\n  Azure_Storage_Connection: az://\n",
            pg.url
        ),
    );
    // The article's control table and procedure, in PostgreSQL.
    pg.exec(
        "CREATE SCHEMA dbo;
         CREATE TABLE s3_partition_delta_control_table (PartitionPrefix varchar(255), JobRunTime timestamp, SuccessOrFailure smallint);
         INSERT INTO s3_partition_delta_control_table VALUES
           ('a', '2019-01-01', 1), ('b', '2019-01-01', 1), ('c', '2019-01-01', 1), ('d', '2019-01-01', 1);
         CREATE PROCEDURE dbo.sp_insert_partition_JobRunTime_success(PartPrefix varchar(255), JobRunTime timestamp, SuccessOrFailure boolean)
           LANGUAGE sql AS $$ INSERT INTO s3_partition_delta_control_table VALUES (PartPrefix, JobRunTime, SuccessOrFailure::int) $$;",
    )
    .await;
    put_objects(
        "s3",
        &bucket,
        &[
            ("a/1.txt", "one"),
            ("a/sub/2.txt", "two"),
            ("b/3.txt", "three"),
            ("c/4.txt", "four"),
            ("x/5.txt", "not a partition"),
        ],
    );
    let env = [object_store_env("s3"), object_store_env("az")].concat();
    let run = |container: &str| {
        dir.hw_env(
            &[
                "pipeline",
                "run",
                "DeltaCopyFromS3",
                "--param",
                &format!("AWS_S3_bucketName={bucket}"),
                "--param",
                &format!("Azure_Storage_fileSystem={container}"),
            ],
            &env,
        )
    };
    let o = run(&container);
    assert_code(&o, 0);
    let want = |extra: &[(&str, &str)]| {
        let mut m: std::collections::BTreeMap<String, String> = [
            ("a/1.txt", "one"),
            ("a/sub/2.txt", "two"),
            ("b/3.txt", "three"),
            ("c/4.txt", "four"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        m.retain(|_, v| !v.is_empty());
        m
    };
    assert_eq!(objects("az", &container), want(&[]));
    let ok = "SELECT PartitionPrefix, count(*) FROM s3_partition_delta_control_table \
              WHERE SuccessOrFailure = 1 AND JobRunTime > '2020-01-01' GROUP BY 1 ORDER BY 1";
    let counts = |n: &str| -> Vec<Vec<String>> {
        ["a", "b", "c", "d"]
            .iter()
            .map(|p| vec![p.to_string(), n.to_string()])
            .collect()
    };
    assert_eq!(pg_rows(&pg, ok).await, counts("1"));

    // A new file in b/ after the first run: only it is copied.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    put_objects("s3", &bucket, &[("b/new.txt", "new")]);
    assert_code(&run(&container), 0);
    assert_eq!(objects("az", &container), want(&[("b/new.txt", "new")]));
    assert_eq!(pg_rows(&pg, ok).await, counts("2"));

    // A destination that does not exist: the copies with files fail, each
    // records its failure through the Failed branch, and the run fails.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    put_objects(
        "s3",
        &bucket,
        &[("a/late.txt", "late"), ("c/late.txt", "late")],
    );
    let o = run("no-such-container-anywhere");
    assert_code(&o, 1);
    let failed = "SELECT PartitionPrefix FROM s3_partition_delta_control_table \
                  WHERE SuccessOrFailure = 0 ORDER BY 1";
    assert_eq!(
        pg_rows(&pg, failed).await,
        vec![vec!["a".to_string()], vec!["c".to_string()]]
    );
    // Nothing arrived anywhere, and the failed partitions copy on the next run.
    assert_code(&run(&container), 0);
    assert_eq!(
        objects("az", &container),
        want(&[
            ("b/new.txt", "new"),
            ("a/late.txt", "late"),
            ("c/late.txt", "late")
        ])
    );
}

// ------------------------------------------------ a user's metadata upsert

/// A local server answering 200 to every request and handing over each
/// request's body.
fn alert_server() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alert", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut want = None;
            loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if want.is_none()
                    && let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n")
                {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    want = Some(i + 4 + len);
                }
                if want.is_some_and(|w| buf.len() >= w) {
                    break;
                }
            }
            let head_end = buf
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |i| i + 4);
            let _ = tx.send(String::from_utf8_lossy(&buf[head_end..]).to_string());
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn realworld_metadata_upsert_into_lower_case_tables() {
    let tag = "tpl_realworld";
    let dir = fixture("realworld", tag);
    let src = PgDb::new(&format!("{tag}_src")).await;
    let dst = PgDb::new(&format!("{tag}_dst")).await;
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  ls_onprem_ss: {}\n  ls_az_ss: {}\n  ls_adls: file://./lake\n",
            src.url, dst.url
        ),
    );
    dir.write(
        "lake/metadata/metadata.json",
        r#"[
  { "TABLE_NAME": "CATEGORIES", "WaterMark_Column": "updated_at", "MERGE_KEY": ["category_id"] },
  { "TABLE_NAME": "CUSTOMERS",  "WaterMark_Column": "updated_at", "MERGE_KEY": ["customer_id"] }
]"#,
    );
    let (url, bodies) = alert_server();
    edit(&dir, "pipeline.json", |p| {
        activity(p, "Failure_Alert")["typeProperties"]["url"] = url.clone().into();
    });
    let tables = "CREATE TABLE categories (category_id int PRIMARY KEY, category_name varchar(255), created_at timestamp, updated_at timestamp);
                  CREATE TABLE customers (customer_id int PRIMARY KEY, first_name varchar(255), email varchar(255), created_at timestamp, updated_at timestamp);";
    src.exec(tables).await;
    src.exec(
        "INSERT INTO categories VALUES (1, 'books', '2024-01-01', '2024-01-01'), (2, 'toys', '2024-01-01', '2024-01-02');
         INSERT INTO customers VALUES (1, 'ann', 'a@x', '2024-01-01', '2024-01-05'), (2, 'bob', 'b@x', '2024-01-01', '2024-01-06');",
    )
    .await;
    dst.exec(&format!(
        "CREATE SCHEMA dbo; SET search_path = dbo; {tables} SET search_path = public;
         CREATE TABLE watermarktable (TableName varchar(50), WatermarkValue timestamp);
         INSERT INTO watermarktable VALUES ('CATEGORIES', '1900-01-01'), ('CUSTOMERS', '1900-01-01');
         CREATE PROCEDURE dbo.usp_write_watermark(\"LastModifiedtime\" timestamp, \"TableName\" varchar)
           LANGUAGE sql AS $$ UPDATE watermarktable SET WatermarkValue = \"LastModifiedtime\" WHERE TableName = \"TableName\" $$;"
    ))
    .await;
    let run = || dir.hw(&["pipeline", "run", "pipeline.json", "--json"]);
    assert_code(&run(), 0);

    src.exec(
        "UPDATE categories SET category_name = 'Books', updated_at = '2024-02-01' WHERE category_id = 1;
         INSERT INTO customers VALUES (3, 'cy', 'c@x', '2024-03-01', '2024-03-01');",
    )
    .await;
    assert_code(&run(), 0);
    assert_eq!(
        pg_rows(
            &dst,
            "SELECT category_id, category_name FROM dbo.categories ORDER BY 1"
        )
        .await,
        vec![
            vec!["1".to_string(), "Books".into()],
            vec!["2".into(), "toys".into()]
        ]
    );
    assert_eq!(
        pg_rows(
            &dst,
            "SELECT customer_id, first_name FROM dbo.customers ORDER BY 1"
        )
        .await,
        vec![
            vec!["1".to_string(), "ann".into()],
            vec!["2".into(), "bob".into()],
            vec!["3".into(), "cy".into()]
        ]
    );
    assert_eq!(
        pg_rows(
            &dst,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'dbo' AND tablename <> lower(tablename)"
        )
        .await,
        vec![vec!["0".to_string()]],
        "no upper-case twin tables created"
    );
    assert_eq!(
        pg_rows(
            &dst,
            "SELECT TableName, WatermarkValue FROM watermarktable ORDER BY 1"
        )
        .await,
        vec![
            vec!["CATEGORIES".to_string(), "2024-02-01 00:00:00".into()],
            vec!["CUSTOMERS".into(), "2024-03-01 00:00:00".into()]
        ]
    );
    assert!(
        bodies.try_recv().is_err(),
        "no alert while everything succeeds"
    );

    // A table gone from the source: the loop fails, the alert is posted, and
    // the run succeeds (try-catch: only an upon-failure path is defined).
    src.exec("DROP TABLE customers").await;
    let o = run();
    assert_code(&o, 0);
    let body: Value = serde_json::from_str(
        &bodies
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["PipelineName"], "pl_onprem_copy");
    let record: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(body["RunID"], record["run_id"], "{record}");
}

// ------------------------------------------- names and queries as ADF users write them

/// A Lookup whose query ends in `;` or a `--` comment, and a Copy into a
/// table dataset named in upper case where the table is lower case, on
/// every backend.
async fn queries_and_names_as_written_for_sql_server(b: Backend) {
    let tag = format!("tpl_names_{b:?}").to_lowercase();
    let dir = Dir::new(&tag);
    let dst = db(b, &dir, &tag).await;
    dst.exec("CREATE TABLE orders (id int, name varchar(20))")
        .await;
    dir.write(
        "highwater.yaml",
        &format!("connections:\n  Db: {}\n", dst.url()),
    );
    for (name, table) in [("Src", "orders"), ("Out", "ORDERS"), ("Twin", "twins")] {
        dir.write(
            &format!("datasets/{name}.json"),
            &format!(
                r#"{{"name": "{name}", "properties": {{"type": "AzureSqlTable",
                "linkedServiceName": {{"referenceName": "Db", "type": "LinkedServiceReference"}},
                "typeProperties": {{"tableName": "{table}"}}}}}}"#
            ),
        );
    }
    let copy = |name: &str, query: &str, out: &str, after: &str| {
        format!(
            r#"{{"name": "{name}", "type": "Copy", {after}
              "typeProperties": {{"source": {{"type": "AzureSqlSource", "sqlReaderQuery": "{query}"}},
                                  "sink": {{"type": "AzureSqlSink"}}}},
              "inputs": [{{"referenceName": "Src", "type": "DatasetReference"}}],
              "outputs": [{{"referenceName": "{out}", "type": "DatasetReference"}}]}}"#
        )
    };
    let pipeline = format!(
        r#"{{"name": "p", "properties": {{"activities": [
          {}, {},
          {{"name": "Count", "type": "Lookup", "dependsOn": [{{"activity": "Two", "dependencyConditions": ["Succeeded"]}}],
            "typeProperties": {{"source": {{"type": "AzureSqlSource",
              "sqlReaderQuery": "select count(*) as n from orders -- all of them"}},
              "dataset": {{"referenceName": "Src", "type": "DatasetReference"}}}}}}]}}}}"#,
        copy("One", "select 1 as id, 'one' as name; ", "Out", ""),
        copy(
            "Two",
            "select 2 as id, 'two' as name ;\\n",
            "Out",
            r#""dependsOn": [{"activity": "One", "dependencyConditions": ["Succeeded"]}],"#
        ),
    );
    dir.write("pipeline.json", &pipeline);
    let o = dir.hw(&["pipeline", "run", "pipeline.json", "--json"]);
    assert_code(&o, 0);
    let record: Value = serde_json::from_slice(&o.stdout).unwrap();
    let count = record["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["stream"] == "Count")
        .unwrap()["output"]["firstRow"]["n"]
        .clone();
    assert_eq!(count, 2, "{record}");
    assert_eq!(
        dst.rows("SELECT id, name FROM orders ORDER BY id").await,
        vec![
            vec!["1".to_string(), "one".into()],
            vec!["2".into(), "two".into()]
        ]
    );

    // Two tables that differ only in case: which one is meant is an error.
    dst.exec(match b {
        Backend::Postgres => r#"CREATE TABLE "Twins" (id int); CREATE TABLE "TWINS" (id int)"#,
        Backend::Mariadb => "CREATE TABLE Twins (id int); CREATE TABLE TWINS (id int)",
    })
    .await;
    let pipeline = format!(
        r#"{{"name": "p2", "properties": {{"activities": [{}]}}}}"#,
        copy("Ambiguous", "select 3 as id, 'three' as name", "Twin", "")
    );
    dir.write("pipeline2.json", &pipeline);
    let o = dir.hw(&["pipeline", "run", "pipeline2.json"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("several tables match it ignoring case"),
        "{err}"
    );
}

// On PostgreSQL and MariaDB (the templates call stored procedures, which
// SQLite has not).
conformance!(
    no_sqlite:
    delta_copy_template,
    bulk_copy_template,
    queries_and_names_as_written_for_sql_server
);
