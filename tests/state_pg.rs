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
