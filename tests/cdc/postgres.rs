//! `mode: cdc` on PostgreSQL: the shared suite, then what only a
//! replication slot has (the slot and publication `changes disable`
//! removes; unchanged TOAST values and replica identity).

use super::*;

cdc_suite!(Backend::Postgres);

#[tokio::test]
async fn disable_removes_the_slot_and_the_next_run_reloads_loudly() {
    let db = CdcDb::new(Backend::Postgres, "cdc_disable").await;
    db.exec(&format!(
        "{SCHEMA}; INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)"
    ))
    .await;
    let dir = Dir::new("cdc_disable");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    let o = dir.hw(&["changes", "status"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("bytes of WAL"), "{}", stdout(&o));
    assert_eq!(db.slots().await.len(), 1);

    let o = dir.hw(&["changes", "disable", "t"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("replication slot"), "{}", stdout(&o));
    assert!(db.slots().await.is_empty());
    let pubs = db.value("SELECT count(*)::text FROM pg_publication").await;
    assert_eq!(pubs.as_deref(), Some("0"));

    // The slot is gone: the next run says so and loads everything again.
    db.exec("INSERT INTO t VALUES (3, 'c', 3)").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(text(&o).contains("FULL RELOAD"), "{}", text(&o));
    let last = changes(&dir, "t");
    assert_eq!(last.len(), 5, "2 rows, then 3 rows of the reload: {last:?}");
    assert_eq!(db.slots().await.len(), 1);

    // Someone drops the slot: the next run says so and reloads.
    db.exec(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()",
    )
    .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let t = text(&o);
    assert!(t.contains("FULL RELOAD") && t.contains("missing"), "{t}");
    assert_eq!(changes(&dir, "t").len(), 8);
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
}

#[tokio::test]
async fn unchanged_large_values_need_replica_identity_full_and_then_arrive_intact() {
    let db = CdcDb::new(Backend::Postgres, "cdc_toast").await;
    // 16 kB that do not compress: stored out of line (TOAST).
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n int);
         INSERT INTO t SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 500) g",
    )
    .await;
    let dir = Dir::new("cdc_toast");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("UPDATE t SET n = 1 WHERE id = 1").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("column v") && stderr(&o).contains("REPLICA IDENTITY FULL"),
        "{}",
        stderr(&o)
    );
    db.exec("ALTER TABLE t REPLICA IDENTITY FULL").await;
    assert_code(&dir.hw(&["changes", "disable", "t"]), 0);
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("UPDATE t SET n = 2 WHERE id = 1").await;
    assert_code(&dir.hw(&["run"]), 0);
    let all = changes(&dir, "t");
    let last = all.last().unwrap();
    assert_eq!((last.2.as_deref(), last.4.as_str()), (Some("2"), "U"));
    assert_eq!(last.1.as_ref().map(String::len), Some(16_000));
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
}
