//! "No changes" must not hide rows that exist but are held back: a run
//! says how many rows wait above the watermark, why (an open transaction,
//! `lag:`, values in the future, the zone margin of zone-less cursors) and
//! when a run picks them up — and a later run delivers exactly those rows.
//! PostgreSQL, MariaDB and SQLite.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::util::*;

/// SQL that differs per backend.
struct Dialect {
    /// A zoned time cursor (SQLite: text timestamps).
    ts: &'static str,
    /// A zone-less time cursor (the zone margin applies).
    local: &'static str,
    now: &'static str,
    old: &'static str,
    future: &'static str,
    /// Moves `at` a day into the past.
    day_earlier: &'static str,
}

fn dialect(src: &SrcDb) -> Dialect {
    match src {
        SrcDb::Pg(_) => Dialect {
            ts: "timestamptz",
            local: "timestamp",
            now: "now()",
            old: "now() - interval '2 days'",
            future: "now() + interval '1 day'",
            day_earlier: "at - interval '1 day'",
        },
        SrcDb::My(_) => Dialect {
            ts: "timestamp(6) NULL DEFAULT NULL",
            local: "datetime(6)",
            now: "NOW(6)",
            old: "NOW(6) - INTERVAL 2 DAY",
            future: "NOW(6) + INTERVAL 1 DAY",
            day_earlier: "at - INTERVAL 1 DAY",
        },
        SrcDb::Lite(_) => Dialect {
            ts: "text",
            local: "text",
            now: "datetime('now')",
            old: "datetime('now', '-2 days')",
            future: "datetime('now', '+1 day')",
            day_earlier: "datetime(at, '-1 day')",
        },
    }
}

/// Every note recorded for `stream` by `runs --json`.
fn recorded_notes(dir: &Dir, stream: &str) -> Vec<String> {
    let o = dir.hw(&["runs", "--json"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, stream: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, stream, out)),
            serde_json::Value::Object(m) => {
                if m.get("stream").and_then(|s| s.as_str()) == Some(stream)
                    && let Some(serde_json::Value::Array(notes)) = m.get("notes")
                {
                    out.extend(notes.iter().filter_map(|n| n.as_str().map(String::from)));
                }
                m.values().for_each(|x| walk(x, stream, out));
            }
            _ => {}
        }
    }
    walk(&v, stream, &mut out);
    out
}

/// Run one stream; its output and its run record both say `expect`
/// (every fragment), and the run delivered nothing.
#[track_caller]
fn run_held(dir: &Dir, stream: &str, expect: &[&str]) -> String {
    let o = dir.hw(&["run", stream]);
    assert_code(&o, 0);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    let notes = recorded_notes(dir, stream).join("\n");
    for e in expect
        .iter()
        .chain(&["no changes delivered (1 row(s) held back"])
    {
        assert!(out.contains(e), "output of {stream} lacks {e:?}:\n{out}");
        assert!(
            notes.contains(e),
            "run record of {stream} lacks {e:?}:\n{notes}"
        );
    }
    assert!(!out.contains("no changes;"), "{out}");
    out
}

fn ids(dir: &Dir, stream: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = all_csv_rows(dir, &format!("lake/{stream}"))
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    ids.sort();
    ids
}

/// Run `stream` until it holds `want` (MariaDB's cap is server-wide: other
/// tests' open transactions may hold it for a while), then compare.
async fn run_until(dir: &Dir, stream: &str, want: &[i64]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert_code(&dir.hw(&["run", stream]), 0);
        if ids(dir, stream).len() >= want.len() || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        ids(dir, stream),
        want,
        "stream {stream}: every row exactly once"
    );
}

async fn held_back_rows_are_said_and_delivered_later(kind: &str) {
    let dir = Dir::new("held");
    let src = SrcDb::new(kind, &dir, "held").await;
    let d = dialect(&src);
    let lite = matches!(src, SrcDb::Lite(_));
    let mut yaml = format!(
        "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n",
        src.url()
    );
    // No `lag:` on `fut`: the late-commit cap holds future values back
    // (SQLite too: its cap is the time read under the write lock).
    let mut streams = vec![("lagged", d.ts, "    lag: 2s\n"), ("fut", d.ts, "")];
    if !lite {
        streams.push(("trx", d.ts, ""));
        streams.push(("zoneless", d.local, ""));
    }
    for (name, ty, extra) in &streams {
        src.exec(&format!(
            "CREATE TABLE {name} (id int primary key, at {ty}); INSERT INTO {name} VALUES (0, {})",
            d.old
        ))
        .await;
        yaml.push_str(&format!(
            "  {name}:\n    from: src\n    table: {name}\n    mode: watermark\n    cursor: at\n    primary_key: [id]\n    to: lake\n    path: \"{name}/{{run_id}}.csv\"\n{extra}"
        ));
    }
    dir.write("highwater.yaml", &yaml);
    src.exec(&format!("INSERT INTO fut VALUES (1, {})", d.future))
        .await;
    for (name, ..) in &streams {
        assert_code(&dir.hw(&["run", name]), 0);
        assert_eq!(ids(&dir, name), [0], "stream {name}: the first run");
    }
    // The future-dated row was held back by the first run already.
    let notes = recorded_notes(&dir, "fut").join("\n");
    assert!(
        notes.contains("1 row(s) with at above")
            && notes.contains("values in the future (1 of them after "),
        "{notes}"
    );

    // An integer cursor with `lag: 2` leaves the newest two ids.
    src.exec("CREATE TABLE seq (id int primary key, v int); INSERT INTO seq VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)")
        .await;
    yaml.push_str("  seq:\n    from: src\n    table: seq\n    mode: watermark\n    cursor: id\n    primary_key: [id]\n    lag: 2\n    to: lake\n    path: \"seq/{run_id}.csv\"\n");
    dir.write("highwater.yaml", &yaml);
    assert_code(&dir.hw(&["run", "seq"]), 0);
    assert_eq!(ids(&dir, "seq"), [1, 2, 3]);
    let notes = recorded_notes(&dir, "seq").join("\n");
    assert!(
        notes.contains("2 row(s) with id above 3 are held back by lag: 2; a later run copies them once newer rows move id 2 past them"),
        "{notes}"
    );
    src.exec("INSERT INTO seq VALUES (6, 0), (7, 0)").await;
    assert_code(&dir.hw(&["run", "seq"]), 0);
    assert_eq!(ids(&dir, "seq"), [1, 2, 3, 4, 5]);

    // `lag:` holds a fresh row back until it is 2 s old.
    src.exec(&format!("INSERT INTO lagged VALUES (1, {})", d.now))
        .await;
    run_held(
        &dir,
        "lagged",
        &["1 row(s) with at above", "lag: 2s", " UTC on copies them"],
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    run_until(&dir, "lagged", &[0, 1]).await;

    // A future-dated row: said again, and delivered once it is moved to now.
    run_held(&dir, "fut", &["values in the future (1 of them after "]);
    src.exec(&format!("UPDATE fut SET at = {} WHERE id = 1", d.now))
        .await;
    if lite {
        // SQLite's cap is truncated to whole seconds.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    run_until(&dir, "fut", &[0, 1]).await;

    if lite {
        return;
    }
    // An open transaction holds back a row committed after it began.
    let open = match &src {
        SrcDb::Pg(db) => {
            let c = db.connect().await;
            c.batch_execute(&format!("BEGIN; INSERT INTO trx VALUES (1, {})", d.now))
                .await
                .unwrap();
            Ok(c)
        }
        SrcDb::My(db) => {
            let mut c = db.connect().await;
            c.query_drop("START TRANSACTION").await.unwrap();
            c.query_drop(format!("INSERT INTO trx VALUES (1, {})", d.now))
                .await
                .unwrap();
            Err(c)
        }
        SrcDb::Lite(_) => unreachable!(),
    };
    tokio::time::sleep(Duration::from_millis(1100)).await;
    src.exec(&format!("INSERT INTO trx VALUES (2, {})", d.now))
        .await;
    run_held(
        &dir,
        "trx",
        &[
            "1 row(s) with at above",
            "held back by an open transaction (since ",
            "; a run after that transaction ends",
        ],
    );
    match open {
        Ok(c) => c.batch_execute("COMMIT").await.unwrap(),
        Err(mut c) => c.query_drop("COMMIT").await.unwrap(),
    }
    run_until(&dir, "trx", &[0, 1, 2]).await;

    // A zone-less cursor holds the newest 12 (PostgreSQL) / 13 (MariaDB)
    // hours back; moving the row a day back stands in for the wait.
    src.exec(&format!("INSERT INTO zoneless VALUES (1, {})", d.now))
        .await;
    let hours = if matches!(src, SrcDb::Pg(_)) { 12 } else { 13 };
    run_held(
        &dir,
        "zoneless",
        &[
            "1 row(s) with at above",
            &format!("the {hours}-hour zone margin of zone-less cursors"),
            "`writer_time_zone: \"+00:00\"` on the stream",
            " UTC on copies them",
        ],
    );
    src.exec(&format!(
        "UPDATE zoneless SET at = {} WHERE id = 1",
        d.day_earlier
    ))
    .await;
    run_until(&dir, "zoneless", &[0, 1]).await;
}

#[tokio::test]
async fn held_back_rows_are_said_postgres() {
    held_back_rows_are_said_and_delivered_later("postgres").await;
}

#[tokio::test]
async fn held_back_rows_are_said_mariadb() {
    held_back_rows_are_said_and_delivered_later("mariadb").await;
}

#[tokio::test]
async fn held_back_rows_are_said_sqlite() {
    held_back_rows_are_said_and_delivered_later("sqlite").await;
}
