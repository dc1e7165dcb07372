//! Late commits against the PostgreSQL cap: writers in several session
//! time zones, every cursor type, and a reader role without privileges.

use crate::util::*;

fn watermark_of(dir: &Dir, stream: &str) -> serde_json::Value {
    let o = dir.hw(&["state", "--json"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == stream)
        .map(|s| s["watermark"].clone())
        .unwrap_or(serde_json::Value::Null)
}

/// Writers whose session TimeZone differs from the database's insert with
/// `now()`/`current_date` and commit after a run: the watermark of every
/// cursor type stays at or below every late row's value, so a later
/// (inclusive) range reads it. A `timestamp` cursor lost the New York row.
#[tokio::test]
async fn late_commits_from_writers_in_other_time_zones_are_not_lost() {
    let db = PgDb::new("zones").await;
    db.exec(
        "CREATE TABLE t (id int primary key, tz timestamptz NOT NULL DEFAULT now(),
           tl timestamp NOT NULL DEFAULT now(), d date NOT NULL DEFAULT current_date);
         INSERT INTO t (id, tz, tl, d) VALUES (0, now() - interval '2 days', now() - interval '2 days', current_date - 2);",
    )
    .await;
    let dir = Dir::new("zones");
    let s = |name: &str, cursor: &str| {
        format!(
            "  {name}:\n    from: src\n    table: t\n    mode: watermark\n    cursor: {cursor}\n    primary_key: [id]\n    to: lake\n    path: \"{name}/{{run_id}}.csv\"\n"
        )
    };
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n{}{}{}",
            db.url,
            s("tz", "tz"),
            s("tl", "tl"),
            s("d", "d")
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    // Committed before the writers begin, in UTC: a zoneless cursor's
    // watermark must not pass the writers' wall clocks.
    db.exec("SET TimeZone = 'UTC'; INSERT INTO t (id) VALUES (99)")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let zones = [
        "UTC",
        "America/New_York",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "Etc/GMT+12",
    ];
    let mut writers = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        let w = db.connect().await;
        w.batch_execute(&format!(
            "SET TimeZone = '{z}'; BEGIN; INSERT INTO t (id) VALUES ({});",
            i + 1
        ))
        .await
        .unwrap();
        writers.push(w);
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // Committed rows newer than the open transactions, in UTC.
    db.exec("SET TimeZone = 'UTC'; INSERT INTO t (id) VALUES (100)")
        .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    for w in &writers {
        w.batch_execute("COMMIT").await.unwrap();
    }
    // Every late row is at or above its stream's watermark.
    let c = db.connect().await;
    for (stream, col) in [("tz", "tz"), ("tl", "tl"), ("d", "d")] {
        let wm = watermark_of(&dir, stream);
        let Some(wm) = wm.as_str() else { continue };
        let below: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM t WHERE id BETWEEN 1 AND {} AND {col} < $1::text::{}",
                    zones.len(),
                    match col {
                        "tz" => "timestamptz",
                        "tl" => "timestamp",
                        _ => "date",
                    }
                ),
                &[&wm],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            below, 0,
            "stream {stream}: late rows below watermark {wm} are lost"
        );
    }
    assert_code(&dir.hw(&["run"]), 0);
    // The timestamptz stream has them all by now, each once.
    let mut ids: Vec<i32> = all_csv_rows(&dir, "lake/tz")
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5, 99, 100]);
}

/// A role with only SELECT cannot see other roles' `xact_start`: the cap
/// waits for their transactions instead of silently becoming "now".
#[tokio::test]
async fn late_commit_cap_works_without_privileges() {
    let db = PgDb::new("unpriv").await;
    let role = unique("r");
    db.exec(&format!(
        "CREATE TABLE t (id int primary key, at timestamptz NOT NULL DEFAULT now());
         INSERT INTO t VALUES (0, now() - interval '1 day');
         DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;
         GRANT CONNECT ON DATABASE {} TO {role}; GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT ON t TO {role};",
        db.name
    ))
    .await;
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names the postgres user");
    let dir = Dir::new("unpriv");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {url}\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: at\n    primary_key: [id]\n    to: lake\n    path: \"t/{{run_id}}.csv\"\n"
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    let late = db.connect().await;
    late.batch_execute("BEGIN; INSERT INTO t (id) VALUES (1);")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    db.exec("INSERT INTO t (id) VALUES (2)").await;
    let child = dir
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    late.batch_execute("COMMIT").await.unwrap();
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 0);
    db.exec("INSERT INTO t (id) VALUES (3)").await;
    assert_code(&dir.hw(&["run"]), 0);
    let mut ids: Vec<i32> = all_csv_rows(&dir, "lake/t")
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3], "late row 1 must arrive exactly once");
    drop(dir);
    let admin = pg_connect(&pg_admin_url()).await;
    let _ = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE); DROP ROLE IF EXISTS {role}",
            db.name
        ))
        .await;
}

/// MariaDB: writers whose session `time_zone` differs from the reader's
/// insert with `NOW()`/`CURDATE()` in transactions that stay open across a
/// run and commit after it. `datetime(6)`, `datetime`, `date` and
/// `timestamp` cursors: no late row falls below its stream's watermark, and
/// every row arrives exactly once. A `datetime` cursor lost the rows of
/// writers west of UTC; `timestamp` (stored in UTC) needed no change.
#[tokio::test]
async fn late_commits_from_mariadb_writers_in_other_time_zones_are_not_lost() {
    use mysql_async::prelude::Queryable;
    let db = MyDb::new("my_zones").await;
    let mut c = db.connect().await;
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    c.query_drop(
        "CREATE TABLE t (id int primary key, dt6 datetime(6) NOT NULL, dt datetime NOT NULL,
           d date NOT NULL, ts timestamp(6) NULL DEFAULT NULL)",
    )
    .await
    .unwrap();
    c.query_drop(
        "INSERT INTO t VALUES (0, NOW(6) - INTERVAL 5 DAY, NOW() - INTERVAL 5 DAY,
           CURDATE() - INTERVAL 5 DAY, NOW(6) - INTERVAL 5 DAY)",
    )
    .await
    .unwrap();
    let streams = ["dt6", "dt", "d", "ts"];
    let dir = Dir::new("my_zones");
    let mut yaml = format!(
        "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n",
        db.url
    );
    for name in streams {
        yaml.push_str(&format!(
            "  {name}:\n    from: src\n    table: t\n    mode: watermark\n    cursor: {name}\n    primary_key: [id]\n    to: lake\n    path: \"{name}/{{run_id}}.csv\"\n"
        ));
    }
    dir.write("highwater.yaml", &yaml);
    assert_code(&dir.hw(&["run"]), 0);
    let insert =
        |id: usize| format!("INSERT INTO t VALUES ({id}, NOW(6), NOW(), CURDATE(), NOW(6))");
    // Committed before the writers begin (a second before: `trx_started`
    // has whole seconds), in UTC.
    c.query_drop(insert(99)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let zones = ["+00:00", "-05:00", "+05:30", "+13:00", "-12:00"];
    let mut writers = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        let mut w = db.connect().await;
        w.query_drop(format!("SET time_zone = '{z}'"))
            .await
            .unwrap();
        w.query_drop("START TRANSACTION").await.unwrap();
        w.query_drop(insert(i + 1)).await.unwrap();
        writers.push(w);
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Committed after the writers began, in UTC.
    c.query_drop(insert(100)).await.unwrap();
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    for w in &mut writers {
        w.query_drop("COMMIT").await.unwrap();
    }
    // Every late row is at or above its stream's watermark.
    for col in streams {
        let wm = watermark_of(&dir, col);
        let Some(wm) = wm.as_str() else { continue };
        let wm = wm.trim_end_matches("+00:00").replace('T', " ");
        let below: Vec<i64> = c
            .exec(
                format!(
                    "SELECT id FROM t WHERE id BETWEEN 1 AND {} AND `{col}` < ?",
                    zones.len()
                ),
                (wm.clone(),),
            )
            .await
            .unwrap();
        assert!(
            below.is_empty(),
            "stream {col}: late rows {below:?} are below watermark {wm}: lost"
        );
    }
    let ids = |stream: &str| {
        let mut ids: Vec<i32> = all_csv_rows(&dir, &format!("lake/{stream}"))
            .into_iter()
            .map(|r| r[0].parse().unwrap())
            .collect();
        ids.sort();
        ids
    };
    let all = [0, 1, 2, 3, 4, 5, 99, 100];
    // The timestamp stream gets them as soon as no transaction holds the
    // cap (INNODB_TRX is server-wide: other tests' transactions may).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert_code(&dir.hw(&["run"]), 0);
        if ids("ts").len() >= all.len() || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(ids("ts"), all, "timestamp stream: every row exactly once");
    // Zone-less cursors hold the newest 13 hours back. Moving the rows two
    // days into the past (still above row 0, the watermark) stands in for
    // the wait: the next run reads them all. (The `ts` stream delivers
    // row 100 again: it sits at its watermark and its content changed.)
    for s in ["dt6", "dt"] {
        assert_eq!(ids(s), [0], "stream {s}: recent rows are held back");
    }
    // A `date` bound 13 hours back is today's date from 13:00 UTC on, so
    // what the `d` stream delivered by now depends on the time of day; no
    // late row is below its watermark (checked above) and none came twice.
    let d = ids("d");
    let mut uniq = d.clone();
    uniq.dedup();
    assert_eq!(d, uniq, "stream d: no row twice");
    assert!(d.iter().all(|i| all.contains(i)), "stream d: {d:?}");
    c.query_drop("UPDATE t SET dt6 = dt6 - INTERVAL 2 DAY, dt = dt - INTERVAL 2 DAY WHERE id <> 0")
        .await
        .unwrap();
    assert_code(&dir.hw(&["run"]), 0);
    for s in ["dt6", "dt"] {
        assert_eq!(ids(s), all, "stream {s}: every row exactly once");
    }
}

// ---------------------------------------------------------------- SQLite

/// A SQLite source file in WAL mode (or `journal`, e.g. `delete`) holding
/// `t (id INTEGER PRIMARY KEY, at <ty>)` with row 0 at `old`.
fn lite_source(dir: &Dir, file: &str, journal: &str, ty: &str, old: &str) -> std::path::PathBuf {
    let p = dir.join(file);
    rusqlite::Connection::open(&p)
        .unwrap()
        .execute_batch(&format!(
            "PRAGMA journal_mode={journal}; CREATE TABLE t (id INTEGER PRIMARY KEY, at {ty});
             INSERT INTO t VALUES (0, {old});"
        ))
        .unwrap();
    p
}

fn lite_exec(p: &std::path::Path, sql: &str) {
    let c = rusqlite::Connection::open(p).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
    c.execute_batch(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn lite_text(p: &std::path::Path, sql: &str) -> String {
    let c = rusqlite::Connection::open(p).unwrap();
    c.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
        .map(|v| match v {
            rusqlite::types::Value::Text(t) => t,
            rusqlite::types::Value::Integer(i) => i.to_string(),
            other => format!("{other:?}"),
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Another process's write transaction: `BEGIN; <sql>` on its own
/// connection, then COMMIT after `hold`. Returns once the insert is done.
fn lite_late_writer(
    p: &std::path::Path,
    sql: &str,
    hold: std::time::Duration,
) -> std::thread::JoinHandle<()> {
    let (p, sql) = (p.to_path_buf(), sql.to_string());
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&p).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(60)).unwrap();
        c.execute_batch(&format!("BEGIN; {sql}"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        tx.send(()).unwrap();
        std::thread::sleep(hold);
        c.execute_batch("COMMIT").unwrap();
    });
    rx.recv().expect("the late writer began");
    h
}

/// Wait until the current second is at most 250 ms old, so the statements
/// that follow share it.
fn start_of_second() {
    loop {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        if ms < 250 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1005 - ms as u64));
    }
}

/// A watermark stream `name` on `t` of the connection of the same name.
fn lite_stream(name: &str) -> String {
    format!(
        "  {name}:\n    from: {name}\n    table: t\n    mode: watermark\n    cursor: at\n    primary_key: [id]\n    to: lake\n    path: \"{name}/{{run_id}}.csv\"\n"
    )
}

fn lite_ids(dir: &Dir, stream: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = all_csv_rows(dir, &format!("lake/{stream}"))
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    ids.sort();
    ids
}

/// SQLite: a write transaction of another process (`BEGIN; INSERT … 'now'`)
/// is open while a run reads its snapshot and commits after it. Its row
/// must arrive exactly once, for text cursors with and without fractional
/// seconds, mixed in one column, and for integer cursors assigned in the
/// transaction; in WAL and rollback-journal mode. The mixed column lost the
/// row: a row committed just before with `strftime('%f')` ('…:05.120')
/// moved the watermark above the late row's `datetime('now')` ('…:05').
#[test]
fn sqlite_late_commits_arrive_exactly_once() {
    let dir = Dir::new("lite_late");
    let frac = "strftime('%Y-%m-%d %H:%M:%f', 'now')";
    let whole = "datetime('now')";
    let old = "datetime('now', '-2 days')";
    // (stream, journal mode, column type, committed row 1, late row 2)
    let cases = [
        ("mixed", "wal", "TEXT", frac, whole),
        ("frac", "wal", "TEXT", frac, frac),
        ("whole", "wal", "TEXT", whole, whole),
        (
            "iso",
            "wal",
            "TEXT",
            "strftime('%Y-%m-%dT%H:%M:%f', 'now')",
            "strftime('%Y-%m-%dT%H:%M:%S', 'now')",
        ),
        (
            "int",
            "wal",
            "INTEGER",
            "(SELECT max(at) + 1 FROM t)",
            "(SELECT max(at) + 1 FROM t)",
        ),
        ("journal", "delete", "TEXT", frac, whole),
    ];
    let mut yaml = "connections:\n  lake: file://./lake\n".to_string();
    let mut streams = String::new();
    let mut files = Vec::new();
    for (name, journal, ty, ..) in &cases {
        let old = if *ty == "INTEGER" { "1" } else { old };
        files.push(lite_source(&dir, &format!("{name}.db"), journal, ty, old));
        yaml.push_str(&format!("  {name}: sqlite://{name}.db\n"));
        streams.push_str(&lite_stream(name));
    }
    dir.write("highwater.yaml", &format!("{yaml}streams:\n{streams}"));
    assert_code(&dir.hw(&["run"]), 0);
    start_of_second();
    let mut writers = Vec::new();
    for ((_, _, _, committed, late), p) in cases.iter().zip(&files) {
        lite_exec(p, &format!("INSERT INTO t VALUES (1, {committed})"));
        writers.push(lite_late_writer(
            p,
            &format!("INSERT INTO t VALUES (2, {late})"),
            std::time::Duration::from_millis(1500),
        ));
    }
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    for w in writers {
        w.join().unwrap();
    }
    // The mixed cases are the ones meant: the late row sorts below the one
    // committed before it.
    for (i, (name, ..)) in cases.iter().enumerate() {
        if ["mixed", "iso", "journal"].contains(name) {
            let (a, b) = (
                lite_text(&files[i], "SELECT at FROM t WHERE id = 1"),
                lite_text(&files[i], "SELECT at FROM t WHERE id = 2"),
            );
            assert!(b < a, "{name}: timing: {b:?} should sort below {a:?}");
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o2 = dir.hw(&["run"]);
    assert_code(&o2, 0);
    for (name, ..) in &cases {
        assert_eq!(
            lite_ids(&dir, name),
            [0, 1, 2],
            "stream {name}: every row exactly once\nfirst run: {}{}\nsecond run: {}{}",
            stdout(&o),
            stderr(&o),
            stdout(&o2),
            stderr(&o2)
        );
    }
}

/// SQLite: a row dated in the future (no `lag:`) is held back and said,
/// instead of moving the watermark past now and hiding the rows written
/// later with real timestamps below it (they were lost for good).
#[test]
fn sqlite_future_dated_rows_wait_and_do_not_hide_later_rows() {
    let dir = Dir::new("lite_future");
    let p = lite_source(&dir, "src.db", "wal", "TEXT", "datetime('now', '-2 days')");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: sqlite://src.db\n  lake: file://./lake\nstreams:\n{}",
            lite_stream("src")
        ),
    );
    lite_exec(&p, "INSERT INTO t VALUES (1, datetime('now', '+1 day'))");
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(lite_ids(&dir, "src"), [0], "{out}");
    assert!(
        out.contains("1 row(s) with at above")
            && out.contains("values in the future (1 of them after "),
        "{out}"
    );
    let wm = watermark_of(&dir, "src");
    let wm = wm.as_str().unwrap_or_default().to_string();
    let tomorrow = lite_text(&p, "SELECT at FROM t WHERE id = 1");
    assert!(
        wm < tomorrow,
        "watermark {wm} passed the future row {tomorrow}"
    );
    // Rows written now, after that run.
    lite_exec(
        &p,
        "INSERT INTO t VALUES (2, datetime('now')); INSERT INTO t VALUES (3, strftime('%Y-%m-%d %H:%M:%f', 'now'))",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert_eq!(
        lite_ids(&dir, "src"),
        [0, 2, 3],
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // Once its time has come (moved to now here), the future row arrives, once.
    lite_exec(&p, "UPDATE t SET at = datetime('now') WHERE id = 1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_code(&dir.hw(&["run"]), 0);
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(lite_ids(&dir, "src"), [0, 1, 2, 3]);
}

/// SQLite: a write transaction that keeps the write lock longer than the
/// cap's bounded wait (here 2 s: half of `HIGHWATER_IDLE_TIMEOUT=4`) does
/// not hang the run: the watermark stays where it was, the run says why,
/// and a run after the transaction ends copies everything exactly once. The
/// first run of a stream cannot stay anywhere: it fails transiently, and
/// the runner's retry gets the lock once the writer is done.
#[test]
fn sqlite_long_write_transaction_keeps_the_watermark() {
    let dir = Dir::new("lite_busy");
    let old = "datetime('now', '-2 days')";
    let a = lite_source(&dir, "a.db", "wal", "TEXT", old);
    let b = lite_source(&dir, "b.db", "wal", "TEXT", old);
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  a: sqlite://a.db\n  b: sqlite://b.db\n  lake: file://./lake\nstreams:\n{}{}",
            lite_stream("a"),
            lite_stream("b")
        ),
    );
    let env = [("HIGHWATER_IDLE_TIMEOUT", "4")];
    assert_code(&dir.hw_env(&["run", "a"], &env), 0);
    lite_exec(&a, "INSERT INTO t VALUES (1, datetime('now', '-1 day'))");
    let hold = std::time::Duration::from_secs(5);
    let wa = lite_late_writer(&a, "INSERT INTO t VALUES (2, datetime('now'))", hold);
    let t0 = std::time::Instant::now();
    let o = dir.hw_env(&["run", "a"], &env);
    assert_code(&o, 0);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(t0.elapsed() < hold, "the run waited for the writer:\n{out}");
    assert!(
        out.contains("warning: a write transaction held the write lock of sqlite://")
            && out.contains("the upper bound stays at the previous watermark")
            && out.contains("1 row(s) with at above")
            && out.contains("held back by an open transaction (since "),
        "{out}"
    );
    assert_eq!(lite_ids(&dir, "a"), [0], "{out}");
    wa.join().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = dir.hw_env(&["run", "a"], &env);
    assert_code(&o, 0);
    assert_eq!(lite_ids(&dir, "a"), [0, 1, 2], "{}", stdout(&o));

    // The first run of `b` while a writer holds its lock.
    let wb = lite_late_writer(&b, "INSERT INTO t VALUES (1, datetime('now'))", hold);
    let o = dir.hw_env(&["run", "b"], &env);
    wb.join().unwrap();
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert_code(&o, 0);
    assert!(
        out.contains("attempt 1 failed")
            && out.contains("needs it for a moment to bound late commits"),
        "{out}"
    );
    assert_eq!(lite_ids(&dir, "b"), [0, 1], "{out}");
}

/// `writer_time_zone:` says in which offset writers write a zone-less
/// cursor: the bound is the cap in that zone, so fresh rows arrive at once
/// instead of waiting out the 12 h (PostgreSQL) / 13 h (MariaDB) margin, and
/// a late commit from such a writer still arrives exactly once.
async fn writer_time_zone_removes_the_margin(
    backend: &str,
    ty: &str,
    now: &str,
    ten_minutes: &str,
) {
    let dir = Dir::new(&format!("wtz_{backend}"));
    let src = SrcDb::new(backend, &dir, "wtz").await;
    src.exec(&format!("CREATE TABLE t (id int primary key, at {ty})"))
        .await;
    // Ten minutes old: inside the margin, but older than any transaction
    // other tests may hold open on the shared servers.
    src.exec(&format!("INSERT INTO t VALUES (1, {now} - {ten_minutes})"))
        .await;
    let cfg = |zone: &str| {
        format!(
            "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    \
             cursor: at\n    primary_key: [id]\n    writer_time_zone: \"{zone}\"\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n",
            src.url()
        )
    };
    // A zone with daylight saving time has no single offset: refused at load.
    dir.write("highwater.yaml", &cfg("America/New_York"));
    let o = dir.hw(&["check"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("writer_time_zone"), "{}", stderr(&o));
    dir.write("highwater.yaml", &cfg("+00:00"));
    assert_code(&dir.hw(&["run"]), 0);
    let ids = |dir: &Dir| -> Vec<String> {
        let mut v: Vec<String> = all_csv_rows(dir, "lake/t")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&dir), ["1"], "a fresh row arrives at once");
    // A writer (in UTC) whose transaction commits after the next run.
    let late = match &src {
        SrcDb::Pg(db) => {
            let c = db.connect().await;
            c.batch_execute(&format!("BEGIN; INSERT INTO t VALUES (2, {now})"))
                .await
                .unwrap();
            Ok(c)
        }
        SrcDb::My(db) => {
            use mysql_async::prelude::Queryable;
            let mut c = db.connect().await;
            c.query_drop("SET time_zone = '+00:00'").await.unwrap();
            c.query_drop("START TRANSACTION").await.unwrap();
            c.query_drop(format!("INSERT INTO t VALUES (2, {now})"))
                .await
                .unwrap();
            Err(c)
        }
        SrcDb::Lite(_) => unreachable!(),
    };
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    src.exec(&format!("INSERT INTO t VALUES (3, {now})")).await;
    assert_code(&dir.hw(&["run"]), 0);
    match late {
        Ok(c) => c.batch_execute("COMMIT").await.unwrap(),
        Err(mut c) => {
            use mysql_async::prelude::Queryable;
            c.query_drop("COMMIT").await.unwrap()
        }
    }
    // Other tests' transactions on the shared server may hold the cap back
    // for a moment: run until the rows are due.
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_code(&dir.hw(&["run"]), 0);
        if ids(&dir).len() >= 3 {
            break;
        }
    }
    assert_eq!(ids(&dir), ["1", "2", "3"], "every row exactly once");
}

#[tokio::test]
async fn writer_time_zone_removes_the_margin_postgres() {
    writer_time_zone_removes_the_margin(
        "postgres",
        "timestamp",
        "(now() AT TIME ZONE 'UTC')",
        "interval '10 minutes'",
    )
    .await;
}

#[tokio::test]
async fn writer_time_zone_removes_the_margin_mariadb() {
    writer_time_zone_removes_the_margin(
        "mariadb",
        "datetime(6)",
        "UTC_TIMESTAMP(6)",
        "INTERVAL 10 MINUTE",
    )
    .await;
}
