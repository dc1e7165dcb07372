//! `highwater run --dry-run` / `highwater plan` (issue 13): the bounds a
//! run would read, the rows it would deliver and its output, with nothing
//! written: state, run history, target and source unchanged.

use serde_json::Value;

use crate::util::*;

const CONFIG: &str = "connections:
  src: sqlite://src.db
  lake: file://./lake
streams:
  wm:
    from: src
    table: t
    mode: watermark
    cursor: updated_at
    primary_key: [id]
    to: lake
    path: \"wm/{yyyy}/wm-{run_id}.csv\"
  lagged:
    from: src
    table: t
    mode: watermark
    cursor: id
    lag: 1
    to: lake
    path: \"lagged/lagged-{run_id}.csv\"
  ct:
    from: src
    table: t
    mode: change_tracking
    primary_key: [id]
    to: lake
    path: \"ct/ct-{run_id}.csv\"
  all:
    from: src
    table: t
    mode: full
    to: lake
    path: \"all/all-{run_id}.csv\"
";

/// Everything a dry run must leave alone: positions (with boundary rows
/// and generations) and run history as the state store reports them,
/// every file of the folder (targets, commit markers, staging), and the
/// source's objects.
#[derive(Debug, PartialEq)]
struct Snapshot {
    state: String,
    runs: String,
    files: Vec<std::path::PathBuf>,
    source_objects: Vec<String>,
}

fn snapshot(dir: &Dir) -> Snapshot {
    let state = stdout(&dir.hw(&["state", "--json"]));
    let runs = stdout(&dir.hw(&["runs", "--json"]));
    // Every file but the state store's (compared by content above).
    let files = dir.files(".", "");
    let source_objects = if dir.join("src.db").exists() {
        let src = rusqlite::Connection::open(dir.join("src.db")).unwrap();
        let mut st = src
            .prepare("SELECT type || ' ' || name FROM sqlite_master ORDER BY 1")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<Vec<String>, _>>()
            .unwrap()
    } else {
        vec![]
    };
    Snapshot {
        state,
        runs,
        files: files
            .into_iter()
            .filter(|f| !f.to_string_lossy().contains("/.highwater/"))
            .collect(),
        source_objects,
    }
}

fn plan(dir: &Dir, args: &[&str]) -> Vec<Value> {
    let o = dir.hw(args);
    assert_code(&o, 0);
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    v.as_array().unwrap().clone()
}

fn stream<'a>(v: &'a [Value], name: &str) -> &'a Value {
    v.iter().find(|s| s["stream"] == name).unwrap()
}

#[test]
fn dry_run_shows_bounds_and_rows_and_changes_nothing() {
    let dir = Dir::new("dry_run");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, updated_at TEXT, v TEXT);
         INSERT INTO t VALUES (1, '2024-01-01 00:00:00', 'a'), (2, '2024-01-02 00:00:00', 'b'),
                              (3, '2024-01-03 00:00:00', 'c');",
    )
    .unwrap();
    dir.write("highwater.yaml", CONFIG);

    // Before any run: everything, up to the newest value.
    let before = snapshot(&dir);
    let p = plan(&dir, &["run", "--dry-run", "--json"]);
    assert_eq!(p.len(), 4);
    let wm = stream(&p, "wm");
    assert_eq!(wm["from"], Value::Null);
    assert_eq!(wm["to"], "2024-01-03 00:00:00");
    assert_eq!(wm["rows"], 3);
    assert_eq!(wm["full_load"], true);
    assert!(
        wm["output"].as_str().unwrap().starts_with("wm/20")
            && wm["output"].as_str().unwrap().ends_with("/wm-{run_id}.csv"),
        "{wm}"
    );
    let lagged = stream(&p, "lagged");
    assert_eq!(lagged["to"], "2", "lag: 1 holds the bound back");
    assert_eq!(lagged["rows"], 2);
    assert_eq!(lagged["held_back"], 1);
    let ct = stream(&p, "ct");
    assert_eq!(ct["rows"], 3);
    assert_eq!(ct["full_load"], true);
    assert_eq!(stream(&p, "all")["rows"], 3);
    assert_eq!(snapshot(&dir), before, "the dry run changed something");
    assert!(
        !before.source_objects.iter().any(|o| o.contains("_hw_ct")),
        "change tracking not set up by a dry run: {:?}",
        before.source_objects
    );

    // A real run, then changes.
    assert_code(&dir.hw(&["run"]), 0);
    db.execute_batch(
        "INSERT INTO t VALUES (4, '2024-01-04 00:00:00', 'd'), (5, '2024-01-05 00:00:00', 'e');
         UPDATE t SET v = 'B' WHERE id = 2;",
    )
    .unwrap();
    let before = snapshot(&dir);
    let text = stdout(&dir.hw(&["plan"]));
    assert!(text.contains("nothing is written"), "{text}");
    assert!(
        text.contains("2024-01-03 00:00:00 → 2024-01-05 00:00:00  2 rows"),
        "{text}"
    );
    let p = plan(&dir, &["plan", "--json"]);
    let wm = stream(&p, "wm");
    assert_eq!(wm["from"], "2024-01-03 00:00:00");
    assert_eq!(wm["to"], "2024-01-05 00:00:00");
    assert_eq!(wm["rows"], 2, "the update kept its cursor: not in range");
    assert_eq!(wm["full_load"], false);
    let lagged = stream(&p, "lagged");
    assert_eq!(lagged["from"], "2");
    assert_eq!(lagged["to"], "4");
    assert_eq!(
        lagged["rows"], 3,
        "ids 3 and 4, and 2: updated at the boundary value, so delivered again"
    );
    assert_eq!(lagged["held_back"], 1);
    let ct = stream(&p, "ct");
    assert_eq!(ct["full_load"], false);
    assert_eq!(ct["rows"], 3, "two inserts and one update");
    assert_eq!(stream(&p, "all")["rows"], 5);
    // One stream only.
    let p = plan(&dir, &["plan", "--json", "lagged"]);
    assert_eq!(p.len(), 1);
    assert_eq!(snapshot(&dir), before, "the dry run changed something");

    // The real run delivers what the plan said.
    let o = dir.hw(&["run", "--json"]);
    assert_code(&o, 0);
    let run: Value = serde_json::from_slice(&o.stdout).unwrap();
    let written = |name: &str| {
        run["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stream"] == name)
            .unwrap_or_else(|| panic!("{run}"))["rows_written"]
            .clone()
    };
    assert_eq!(written("wm"), 2);
    assert_eq!(written("lagged"), 3);
    assert_eq!(written("ct"), 3);
    assert_eq!(written("all"), 5);

    // Unknown stream: exit 2, named.
    let o = dir.hw(&["plan", "nope"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("unknown stream nope"), "{}", stderr(&o));
}

pub(crate) enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

/// highwater's objects in the source (change logs, meta table).
async fn hw_objects(db: &SrcDb) -> Vec<String> {
    use mysql_async::prelude::Queryable;
    let mut names: Vec<String> = match db {
        SrcDb::Lite(p) => {
            let c = rusqlite::Connection::open(p).unwrap();
            let mut st = c.prepare("SELECT name FROM sqlite_master").unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }
        SrcDb::Pg(pg) => pg
            .client
            .query(
                "SELECT relname::text FROM pg_class UNION ALL SELECT tgname::text FROM pg_trigger",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect(),
        SrcDb::My(my) => {
            let mut c = my.connect().await;
            let v: Vec<String> = c
                .query(format!(
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{0}'
                     UNION ALL SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{0}'",
                    my.name
                ))
                .await
                .unwrap();
            let _ = c.disconnect().await;
            v
        }
    };
    names.retain(|n| n.starts_with("_hw") || n.starts_with("_highwater"));
    names.sort();
    names
}

/// The bounds `plan` prints are the ones the following run takes, on
/// every backend, for watermark and change-tracking streams; the plan
/// sets nothing up and writes nothing.
async fn plan_matches_the_next_run(b: Backend) {
    let dir = Dir::new("dry_run_backends");
    let name = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::Mariadb => "mariadb",
    };
    let db = SrcDb::new(name, &dir, "dryrun").await;
    let time = match b {
        Backend::Sqlite => "TEXT",
        Backend::Postgres => "timestamptz",
        Backend::Mariadb => "datetime(6)",
    };
    db.exec(&format!(
        "CREATE TABLE t (id integer PRIMARY KEY, v varchar(20), updated_at {time});
         INSERT INTO t VALUES (1, 'a', '2024-01-01 00:00:00'), (2, 'b', '2024-01-02 00:00:00');"
    ))
    .await;
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  wm:\n    from: src\n    table: t\n    mode: watermark\n    cursor: updated_at\n    writer_time_zone: \"+00:00\"\n    to: lake\n    path: \"wm/wm-{{run_id}}.csv\"\n  ct:\n    from: src\n    table: t\n    mode: change_tracking\n    primary_key: [id]\n    to: lake\n    path: \"ct/ct-{{run_id}}.csv\"\n",
            db.url()
        ),
    );
    let wait = || async {
        if let SrcDb::Pg(pg) = &db {
            pg.wait_for_older_transactions().await;
        }
    };
    let check = |p: &[Value], run: &Value, name: &str, round: usize| {
        let planned = stream(p, name);
        let ran = run["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stream"] == name)
            .unwrap();
        assert_eq!(
            planned["rows"], ran["rows_written"],
            "{name}: {planned} vs {ran}"
        );
        // A first change-tracking run picks its version when it sets up;
        // PostgreSQL's version is the cluster's transaction horizon, which
        // other sessions move on between plan and run.
        if name == "ct" && matches!(b, Backend::Postgres) && round == 1 {
            let v = |x: &Value| x.as_str().unwrap().parse::<i64>().unwrap();
            assert!(
                v(&planned["to"]) <= v(&ran["watermark_to"]),
                "{planned} vs {ran}"
            );
        } else if !(name == "ct" && round == 0) {
            assert_eq!(
                planned["to"], ran["watermark_to"],
                "{name}: {planned} vs {ran}"
            );
        }
        assert_eq!(
            planned["from"], ran["watermark_from"],
            "{name}: {planned} vs {ran}"
        );
    };
    for round in 0..2 {
        wait().await;
        let objects = hw_objects(&db).await;
        if round == 0 {
            assert!(objects.is_empty(), "{objects:?}");
        }
        let before = snapshot(&dir);
        let p = plan(&dir, &["plan", "--json"]);
        assert_eq!(
            snapshot(&dir),
            before,
            "round {round}: the plan changed something"
        );
        assert_eq!(
            hw_objects(&db).await,
            objects,
            "round {round}: the plan set something up"
        );
        let o = dir.hw(&["run", "--json"]);
        assert_code(&o, 0);
        let run: Value = serde_json::from_slice(&o.stdout).unwrap();
        check(&p, &run, "wm", round);
        check(&p, &run, "ct", round);
        if round == 0 {
            assert_eq!(stream(&p, "wm")["rows"], 2);
            assert_eq!(stream(&p, "ct")["full_load"], true);
        } else {
            assert_eq!(stream(&p, "wm")["rows"], 2, "{p:?}");
            assert_eq!(stream(&p, "ct")["rows"], 3, "{p:?}");
        }
        if round == 1 {
            break;
        }
        db.exec(
            "INSERT INTO t VALUES (3, 'c', '2024-01-03 00:00:00');
             UPDATE t SET v = 'B', updated_at = '2024-01-04 00:00:00' WHERE id = 2;
             DELETE FROM t WHERE id = 1;",
        )
        .await;
    }
}

conformance!(plan_matches_the_next_run);

/// A stream a run would fail (a missing table, a missing cursor column) is
/// marked in the plan with the run's message, the others still planned;
/// exit 2 as `run` would.
#[test]
fn plan_reports_what_a_run_would_fail_with() {
    let dir = Dir::new("dry_run_fail");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
        .unwrap();
    dir.write(
        "highwater.yaml",
        "connections:\n  src: sqlite://src.db\n  lake: file://./lake\nstreams:\n  good:\n    from: src\n    table: t\n    mode: full\n    to: lake\n    path: \"g/g-{run_id}.csv\"\n  gone:\n    from: src\n    table: nope\n    mode: full\n    to: lake\n    path: \"n/n-{run_id}.csv\"\n  nocursor:\n    from: src\n    table: t\n    mode: watermark\n    cursor: updated_at\n    to: lake\n    path: \"c/c-{run_id}.csv\"\n",
    );
    let o = dir.hw(&["plan"]);
    assert_code(&o, 2);
    let out = stdout(&o);
    assert!(
        out.contains("ok      good") && out.contains("1 rows"),
        "{out}"
    );
    assert!(
        out.contains("FAILED  gone") && out.contains("FAILED  nocursor"),
        "{out}"
    );
    let err = stderr(&o);
    assert!(err.contains("stream gone") && err.contains("nope"), "{err}");
    assert!(err.contains("cursor column updated_at"), "{err}");
    let o = dir.hw(&["plan", "--json"]);
    assert_code(&o, 2);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let gone = stream(v.as_array().unwrap(), "gone");
    assert!(gone["error"].as_str().unwrap().contains("nope"), "{v}");
    assert_eq!(stream(v.as_array().unwrap(), "good")["error"], Value::Null);
    assert!(dir.files("lake", "").is_empty(), "nothing written");
}
