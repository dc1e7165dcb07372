//! `state: postgres://…`: positions, attempts, locks and run history in a
//! PostgreSQL database shared by several "machines" (here: two folders with
//! their own configs naming the same source, lake and state database).

use crate::util::*;

fn config(state_url: &str, src: &std::path::Path, lake: &std::path::Path) -> String {
    format!(
        "state: {state_url}\nconnections:\n  src: sqlite://{}\n  lake: file://{}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n    batch_size: 100\n",
        src.display(),
        lake.display()
    )
}

#[tokio::test]
async fn two_machines_share_positions_and_settle_each_others_crashes() {
    let state_db = PgDb::new("pgstate").await;
    let state_url = state_db.url.replace("postgres@", "postgres:StatePw123@");
    let shared = Dir::new("pgstate_shared");
    let src = shared.join("src.db");
    let lake = shared.join("lake");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id integer primary key, v text); INSERT INTO t (v) VALUES ('a'), ('b');",
    )
    .unwrap();
    let a = Dir::new("machine_a");
    let b = Dir::new("machine_b");
    for d in [&a, &b] {
        d.write("highwater.yaml", &config(&state_url, &src, &lake));
    }
    assert_code(&a.hw(&["run"]), 0);
    // Machine B sees A's position: nothing new.
    let o = b.hw(&["run"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("no changes"), "{}", stdout(&o));
    let state: serde_json::Value =
        serde_json::from_str(&stdout(&b.hw(&["state", "--json"]))).unwrap();
    assert_eq!(state[0]["watermark"], "2");

    // A crashes after publishing; B settles it from the commit marker.
    conn.execute_batch("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500) INSERT INTO t (v) SELECT 'x' FROM c").unwrap();
    let o = a.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", "engine.after_publish")]);
    assert_eq!(o.status.code(), None);
    conn.execute_batch("INSERT INTO t (v) VALUES ('late')")
        .unwrap();
    let o = b.hw(&["run"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("settled run"), "{}", stdout(&o));
    // A crashes mid-write; B re-reads the range.
    conn.execute_batch("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300) INSERT INTO t (v) SELECT 'y' FROM c").unwrap();
    let o = a.hw_env(&["run"], &[("HIGHWATER_FAILPOINT", "engine.mid_write")]);
    assert_eq!(o.status.code(), None);
    assert_code(&b.hw(&["run"]), 0);

    let lake_dir = Dir { path: lake.clone() };
    let mut ids: Vec<i64> = all_csv_rows(&lake_dir, "t")
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    std::mem::forget(lake_dir);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    ids.sort();
    let len = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), len, "rows copied twice");
    assert_eq!(ids.len() as i64, n, "rows missing");

    // History is shared too, and the password never shows.
    let o = a.hw(&["runs", "--json"]);
    assert_code(&o, 0);
    let runs: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(runs.as_array().unwrap().len() >= 5);
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "Failed"),
        "the killed runs show as failed"
    );
    for args in [&["runs"][..], &["state"], &["check"]] {
        let o = a.hw(args);
        assert!(!format!("{}{}", stdout(&o), stderr(&o)).contains("StatePw123"));
    }
    // Reset through either machine.
    assert_code(&b.hw(&["state", "reset", "t"]), 0);
    let state: serde_json::Value =
        serde_json::from_str(&stdout(&a.hw(&["state", "--json"]))).unwrap();
    assert!(state[0]["position"].is_null());
}

#[test]
fn unreachable_state_database_is_a_clear_failure() {
    let d = Dir::new("pgstate_down");
    let src = d.join("src.db");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch("CREATE TABLE t (id integer)")
        .unwrap();
    d.write(
        "highwater.yaml",
        &config(
            "postgres://u:DownPw999@127.0.0.1:1/x",
            &src,
            &d.join("lake"),
        ),
    );
    let o = d.hw(&["run"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("DownPw999"), "{err}");
}

fn two_db_config(state_url: &str, src_url: &str) -> String {
    format!(
        "state: {state_url}\nconnections:\n  pg: {src_url}\n  lake: file://./lake\nstreams:\n  t:\n    from: pg\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n    batch_size: 50\n"
    )
}

/// A source of `n` rows, a state database, and a folder configured for both.
async fn source_and_state(tag: &str, n: i64) -> (PgDb, PgDb, Dir) {
    let src = PgDb::new(&format!("{tag}_src")).await;
    src.exec(&format!(
        "CREATE TABLE t (id bigint primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, {n}) g;"
    ))
    .await;
    let state = PgDb::new(&format!("{tag}_state")).await;
    let dir = Dir::new(tag);
    dir.write("highwater.yaml", &two_db_config(&state.url, &src.url));
    (src, state, dir)
}

/// Backends holding a stream lock (an advisory lock) in the state database.
async fn lock_holders(state: &PgDb) -> Vec<i32> {
    state
        .client
        .query(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND pid IN (SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'highwater lock: %')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Wait until the running process holds its stream lock; its backend.
async fn wait_for_lock(state: &PgDb, child: &mut std::process::Child) -> i32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(pid) = lock_holders(state).await.first() {
            return *pid;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was seen holding its stream lock"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn ids_once(dir: &Dir) -> Vec<i64> {
    let mut ids: Vec<i64> = all_csv_rows(dir, "lake/t")
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    ids.sort();
    let len = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), len, "rows copied twice");
    ids
}

fn watermark(dir: &Dir) -> serde_json::Value {
    let o = dir.hw(&["state", "--json"]);
    assert_code(&o, 0);
    let state: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    state[0]["watermark"].clone()
}

/// The state store's own connection is dropped again and again during a
/// run (as a failover or a network blip would): it reconnects, the run
/// succeeds, every row arrives once.
#[tokio::test]
async fn state_connection_drops_during_a_run_are_survived() {
    let (_src, state, dir) = source_and_state("pgstate_drops", 100_000).await;
    let mut child = dir
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock(&state, &mut child).await;
    let mut killed = 0i64;
    while child.try_wait().unwrap().is_none() {
        // Every session of the state database but the lock's and ours.
        let n: i64 = state
            .client
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        killed += n;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 0);
    assert!(
        killed >= 1,
        "no state connection was dropped during the run"
    );
    assert_eq!(ids_once(&dir).len(), 100_000, "rows missing");
    assert_eq!(watermark(&dir), "100000");
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("no changes"), "{}", stdout(&o));
}

/// The session holding a run's stream lock dies: another worker may now
/// take the stream, so the run must not move the position; it fails
/// clearly, and the next run settles what it left.
#[tokio::test]
async fn lost_stream_lock_fails_the_run_and_the_next_run_settles() {
    let (_src, state, dir) = source_and_state("pgstate_lostlock", 100_000).await;
    let mut child = dir
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let holder = wait_for_lock(&state, &mut child).await;
    let ended: bool = state
        .client
        .query_one("SELECT pg_terminate_backend($1, 10000)", &[&holder])
        .await
        .unwrap()
        .get(0);
    assert!(ended);
    let o = child.wait_with_output().unwrap();
    assert_code(&o, 1);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(out.contains("lost the lock of stream t"), "{out}");
    assert!(
        watermark(&dir).is_null(),
        "the position moved after the lock was lost"
    );
    // The next run settles the attempt (published or not) and finishes the copy.
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("settled run"), "{}", stdout(&o));
    assert_eq!(ids_once(&dir).len(), 100_000, "rows missing");
    assert_eq!(watermark(&dir), "100000");
}
