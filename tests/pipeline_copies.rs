//! The pipeline Copy goes through the one attempt executor (issue 7, item 6):
//! a Copy into a dataset that names only a folder writes files inside the
//! folder, one per copy, so a parallel ForEach loses nothing; a killed
//! `pipeline run` leaves no partial file and no file that later disappears.

use crate::util::*;

/// A factory on SQLite: `t (id, grp)` with 5 groups of 200 rows, a folder
/// dataset `Out` (no fileName), and a pipeline whose parallel ForEach copies
/// each group into the folder.
fn factory() -> Dir {
    let dir = Dir::new("adf_folder");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, grp INTEGER, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO t SELECT i, i % 5, 'v' || i FROM n;",
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
            "typeProperties": {"location": {"type": "AzureBlobStorageLocation", "folderPath": "out"},
               "columnDelimiter": ",", "firstRowAsHeader": true}}}"#,
    );
    dir.write(
        "pipeline.json",
        r#"{"name": "Groups", "properties": {"activities": [
            {"name": "EachGroup", "type": "ForEach", "typeProperties": {
               "items": {"value": "@createArray(0, 1, 2, 3, 4)", "type": "Expression"},
               "isSequential": false, "batchCount": 5,
               "activities": [{"name": "CopyGroup", "type": "Copy",
                 "typeProperties": {"source": {"type": "SqlSource",
                    "sqlReaderQuery": "select id, grp, v from t where grp = @{item()}"}},
                 "inputs": [{"referenceName": "T", "type": "DatasetReference"}],
                 "outputs": [{"referenceName": "Out", "type": "DatasetReference"}]}]}}]}}"#,
    );
    dir
}

fn ids(dir: &Dir) -> Vec<i64> {
    let mut ids: Vec<i64> = dir
        .files("lake/out", "")
        .iter()
        .flat_map(|f| read_csv(f).1)
        .map(|r| r[0].parse().unwrap())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_folder_dataset_gets_one_file_per_copy_and_loses_nothing() {
    let dir = factory();
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    assert_code(&o, 0);
    let files = dir.files("lake/out", "");
    assert_eq!(files.len(), 5, "one file per copy: {files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("data_") && name.ends_with(".txt"),
            "{name}"
        );
    }
    assert_eq!(ids(&dir), (1..=1000).collect::<Vec<_>>(), "every row once");
    // A second run adds five more files; nothing is overwritten.
    assert_code(&dir.hw(&["pipeline", "run", "pipeline.json"]), 0);
    assert_eq!(dir.files("lake/out", "").len(), 10);
    assert_eq!(ids(&dir).len(), 2000);
}

#[test]
fn a_killed_pipeline_run_leaves_nothing_partial_and_is_settled() {
    for point in [
        "engine.after_begin_attempt",
        "engine.before_sink_commit",
        "files.after_data_before_marker",
        "files.after_marker_before_publish",
        "engine.after_publish",
    ] {
        let dir = factory();
        let o = dir.hw_env(
            &["pipeline", "run", "pipeline.json"],
            &[("HIGHWATER_FAILPOINT", point)],
        );
        assert_eq!(o.status.code(), None, "{point}: aborted\n{}", stderr(&o));
        let after_kill = dir.files("lake/out", "");
        // Whatever is visible is complete (a published copy of one group).
        for f in &after_kill {
            let (_, rows) = read_csv(f);
            assert_eq!(rows.len(), 200, "{point}: {f:?} is complete");
        }
        let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
        assert_code(&o, 0);
        for f in &after_kill {
            assert!(
                f.exists(),
                "{point}: {f:?} was visible and then disappeared"
            );
        }
        // Every row of the completed run arrived; a copy the killed run
        // committed stays (published by recovery if it was not yet), and
        // every file is one whole copy of a group.
        for f in dir.files("lake/out", "") {
            let (_, rows) = read_csv(&f);
            assert_eq!(rows.len(), 200, "{point}: {f:?} is one whole copy");
        }
        let all = ids(&dir);
        let mut uniq = all.clone();
        uniq.dedup();
        assert_eq!(uniq, (1..=1000).collect::<Vec<_>>(), "{point}: every row");
        assert!(
            all.len() >= 1000 + 200 * after_kill.len(),
            "{point}: visible copies kept"
        );
        // Nothing left in staging.
        let staging = dir.join("lake/_highwater/staging");
        let left: Vec<_> = std::fs::read_dir(&staging)
            .map(|rd| {
                rd.flatten()
                    .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{point}: staging leftovers {left:?}");
    }
}
