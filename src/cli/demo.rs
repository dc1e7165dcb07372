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

/// One tutorial: a source table, a config, a first run, the tutorial's
/// changes, a second run.
struct Tutorial {
    title: &'static str,
    table: &'static str,
    setup: &'static str,
    config: &'static str,
    first: &'static str,
    changes_title: &'static str,
    changes: &'static str,
    second: &'static str,
}

const WATERMARK: Tutorial = Tutorial {
    title: "The watermark tutorial (Data Factory: incrementally copy one table)",
    table: "data_source_table(PersonID, Name, LastModifytime)",
    setup: SETUP,
    config: CONFIG,
    first: "Run 1: the full copy",
    changes_title: "Changes: insert rows 6 and 7, update row 3",
    changes: CHANGES,
    second: "Run 2: the delta copy",
};

const CHANGE_TRACKING: Tutorial = Tutorial {
    title: "The change-tracking tutorial (Data Factory: incrementally copy with change tracking)",
    table: "data_source_table(PersonID primary key, Name, Age)",
    setup: CT_SETUP,
    config: CT_CONFIG,
    first: "Run 1: set up change tracking, take the baseline version, copy the table",
    changes_title: "Changes: insert row 6, update row 1, delete row 3",
    changes: CT_CHANGES,
    second: "Run 2: the delta copy (net changes since the baseline)",
};

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
    for name in [".highwater", "lake", "change-tracking"] {
        let _ = std::fs::remove_dir_all(dir.join(name));
    }
    let (wm, config) = play(&WATERMARK, dir).await?;
    println!(
        "\n-- Run history (`highwater -c {} runs`) --",
        config.display()
    );
    let code = super::runs::list(&config, 10, false).await;
    println!("\nTry: highwater -c {} state", config.display());

    let (ct, config) = play(&CHANGE_TRACKING, &dir.join("change-tracking")).await?;
    println!(
        "\nTry: highwater -c {0} changes status   (and `changes disable data_source_table` to remove the triggers)",
        config.display()
    );
    Ok(if wm == 0 && ct == 0 { code } else { 1 })
}

/// Set the tutorial up in `dir`, run, apply its changes, run again; the
/// exit code (0 when both runs succeeded) and the config's path.
async fn play(t: &Tutorial, dir: &Path) -> Result<(i32, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let db = rusqlite::Connection::open(dir.join("source.db")).map_err(|e| e.to_string())?;
    db.execute_batch(t.setup).map_err(|e| e.to_string())?;
    let config = dir.join("highwater.yaml");
    std::fs::write(&config, t.config)
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;

    println!("\n== {} ==", t.title);
    println!(
        "Source: {} with {}, 5 rows.",
        dir.join("source.db").display(),
        t.table
    );
    println!("Config: {}\n", config.display());
    println!("-- {} --", t.first);
    let first = run_once(&config).await?;
    println!("\n-- {} --{}", t.changes_title, t.changes);
    db.execute_batch(t.changes).map_err(|e| e.to_string())?;
    println!("-- {} --", t.second);
    let second = run_once(&config).await?;
    Ok((if first == 0 && second == 0 { 0 } else { 1 }, config))
}

async fn run_once(config: &Path) -> Result<i32, String> {
    let plan =
        super::load_plan(config).map_err(|_| "the demo configuration is invalid".to_string())?;
    let state = highwater_engine::open_state(&plan)
        .await
        .map_err(|e| e.to_string())?;
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
