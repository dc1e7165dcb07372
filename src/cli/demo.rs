//! `highwater demo [--dir D]`: the Data Factory watermark and change-tracking
//! tutorials, end to end, on embedded SQLite databases and a local folder.
//!
//! Watermark: it writes `D/source.db` and `D/highwater.yaml` (so the user
//! can go on with `highwater -c D/highwater.yaml run`), runs the full copy,
//! applies the tutorial's inserts and an update, runs the delta copy, and
//! prints both output files and the run history.
//!
//! Change tracking: the same in `D/change-tracking/`: the tutorial's
//! `data_source_table(PersonID, Name, Age)` with five rows, a first run that
//! sets change tracking up and copies the table, the tutorial's insert of
//! row 6 and update of row 1 plus a delete of row 3, and the delta run
//! (`SYS_CHANGE_VERSION`, `SYS_CHANGE_OPERATION` = `I`/`U`/`D`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use highwater_engine::{RunOptions, run_streams};

use super::output;

const CONFIG: &str = "# Written by `highwater demo`: the Data Factory watermark tutorial.
connections:
  source: sqlite://source.db
  lake: file://./lake
streams:
  data_source_table:
    from: source
    table: data_source_table
    mode: watermark
    cursor: LastModifytime
    primary_key: [PersonID]
    to: lake
    path: \"incrementalcopy/Incremental-{run_id}.csv\"
    format: csv
";

const CT_CONFIG: &str = "# Written by `highwater demo`: the Data Factory change-tracking tutorial.
connections:
  source: sqlite://source.db
  lake: file://./lake
streams:
  data_source_table:
    from: source
    table: data_source_table
    mode: change_tracking
    primary_key: [PersonID]
    change_retention: 2d
    to: lake
    path: \"incchgtracking/Incremental-{run_id}.csv\"
    format: csv
";

const CT_SETUP: &str = "
CREATE TABLE data_source_table (PersonID int NOT NULL, Name varchar(255), Age int, PRIMARY KEY (PersonID));
INSERT INTO data_source_table (PersonID, Name, Age) VALUES
  (1, 'aaaa', 21),
  (2, 'bbbb', 24),
  (3, 'cccc', 20),
  (4, 'dddd', 26),
  (5, 'eeee', 22);
";

const CT_CHANGES: &str = "
INSERT INTO data_source_table (PersonID, Name, Age) VALUES (6, 'new', 50);
UPDATE data_source_table SET Age = 10, Name = 'update' WHERE PersonID = 1;
DELETE FROM data_source_table WHERE PersonID = 3;
";

const SETUP: &str = "
CREATE TABLE data_source_table (PersonID int, Name varchar(255), LastModifytime datetime);
INSERT INTO data_source_table (PersonID, Name, LastModifytime) VALUES
  (1, 'aaaa', '2017-09-01 00:56:00'),
  (2, 'bbbb', '2017-09-02 05:23:00'),
  (3, 'cccc', '2017-09-03 02:36:00'),
  (4, 'dddd', '2017-09-04 03:21:00'),
  (5, 'eeee', '2017-09-05 08:06:00');
";

const CHANGES: &str = "
INSERT INTO data_source_table VALUES (6, 'newdata', '2017-09-06 02:23:00');
INSERT INTO data_source_table VALUES (7, 'newdata', '2017-09-07 09:01:00');
UPDATE data_source_table SET Name = 'NewUpdate', LastModifytime = '2017-09-08 10:00:00' WHERE PersonID = 3;
";

pub async fn run(dir: &Path) -> i32 {
    match demo(dir).await {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            1
        }
    }
}

async fn demo(dir: &Path) -> Result<i32, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Start from scratch: remove only what an earlier demo wrote.
    for name in [
        "source.db",
        "source.db-wal",
        "source.db-shm",
        "highwater.yaml",
    ] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    for name in [".highwater", "lake"] {
        let _ = std::fs::remove_dir_all(dir.join(name));
    }
    let db = rusqlite::Connection::open(dir.join("source.db")).map_err(|e| e.to_string())?;
    db.execute_batch(SETUP).map_err(|e| e.to_string())?;
    let config = dir.join("highwater.yaml");
    std::fs::write(&config, CONFIG)
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;

    println!("== The watermark tutorial (Data Factory: incrementally copy one table) ==");
    println!(
        "Source: {} with data_source_table(PersonID, Name, LastModifytime), 5 rows.",
        dir.join("source.db").display()
    );
    println!("Config: {}\n", config.display());

    println!("-- Run 1: the full copy --");
    let first = run_once(&config).await?;
    println!("\n-- Changes: insert rows 6 and 7, update row 3 --{CHANGES}");
    db.execute_batch(CHANGES).map_err(|e| e.to_string())?;
    println!("-- Run 2: the delta copy --");
    let second = run_once(&config).await?;

    println!(
        "\n-- Run history (`highwater -c {} runs`) --",
        config.display()
    );
    let code = super::runs::list(&config, 10, false).await;
    println!("\nTry: highwater -c {} state", config.display());
    let ct = change_tracking(&dir.join("change-tracking")).await?;
    Ok(if first == 0 && second == 0 && ct == 0 {
        code
    } else {
        1
    })
}

/// The change-tracking tutorial in its own folder.
async fn change_tracking(dir: &Path) -> Result<i32, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let db = rusqlite::Connection::open(dir.join("source.db")).map_err(|e| e.to_string())?;
    db.execute_batch(CT_SETUP).map_err(|e| e.to_string())?;
    let config = dir.join("highwater.yaml");
    std::fs::write(&config, CT_CONFIG)
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;

    println!(
        "\n== The change-tracking tutorial (Data Factory: incrementally copy with change tracking) =="
    );
    println!(
        "Source: {} with data_source_table(PersonID primary key, Name, Age), 5 rows.",
        dir.join("source.db").display()
    );
    println!("Config: {}\n", config.display());
    println!("-- Run 1: set up change tracking, take the baseline version, copy the table --");
    let first = run_once(&config).await?;
    println!("\n-- Changes: insert row 6, update row 1, delete row 3 --{CT_CHANGES}");
    db.execute_batch(CT_CHANGES).map_err(|e| e.to_string())?;
    println!("-- Run 2: the delta copy (net changes since the baseline) --");
    let second = run_once(&config).await?;
    println!(
        "\nTry: highwater -c {0} changes status   (and `changes disable data_source_table` to remove the triggers)",
        config.display()
    );
    Ok(if first == 0 && second == 0 { 0 } else { 1 })
}

async fn run_once(config: &Path) -> Result<i32, String> {
    let plan =
        super::load_plan(config).map_err(|_| "the demo configuration is invalid".to_string())?;
    let state = highwater_engine::open_state(&plan).map_err(|e| e.to_string())?;
    let outcome = run_streams(
        &plan,
        state,
        &RunOptions::default(),
        Arc::new(highwater_engine::events::Quiet),
    )
    .await
    .map_err(|e| e.to_string())?;
    for s in &outcome.streams {
        println!("{}", output::stream_line(s));
        for n in &s.notes {
            println!("          note: {n}");
        }
        for o in &s.outputs {
            if let Some(path) = o.strip_prefix("file://") {
                let text = std::fs::read_to_string(PathBuf::from(path)).unwrap_or_default();
                println!("\n{path}:");
                for line in text.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    Ok(outcome.exit_code)
}
