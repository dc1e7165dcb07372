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

/// An unchanged large value the log does not carry is taken from the
/// key's earlier change in the same window (an insert, or an update that
/// carried it), through any number of updates that did not; a key deleted
/// after such an update needs no value. Only a value nothing in the window
/// carries is an error (the test above).
#[tokio::test]
async fn unchanged_large_values_come_from_the_keys_earlier_change_in_the_window() {
    let db = CdcDb::new(Backend::Postgres, "cdc_toast_window").await;
    let big = |seed: &str| {
        format!("(SELECT string_agg(md5('{seed}' || g::text), '') FROM generate_series(1, 500) g)")
    };
    db.exec(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n int);
         INSERT INTO t VALUES (1, {}, 0), (2, {}, 0)",
        big("a"),
        big("b")
    ))
    .await;
    let dir = Dir::new("cdc_toast_window");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    // 3: inserted, then updated twice without touching v.
    // 1: v rewritten, then updated twice without touching v.
    // 2: updated without touching v, then deleted.
    db.exec(&format!(
        "INSERT INTO t VALUES (3, {}, 0);
         UPDATE t SET n = 1 WHERE id = 3;
         UPDATE t SET n = 2 WHERE id = 3;
         UPDATE t SET v = {} WHERE id = 1;
         UPDATE t SET n = 5 WHERE id = 1;
         UPDATE t SET n = 6 WHERE id = 1;
         UPDATE t SET n = 7 WHERE id = 2;
         DELETE FROM t WHERE id = 2",
        big("c"),
        big("d")
    ))
    .await;
    let before = changes(&dir, "t").len();
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let all = changes(&dir, "t");
    let mut delta: Vec<(String, Option<usize>, Option<String>, String)> = all[before..]
        .iter()
        .map(|c| {
            (
                c.0.clone(),
                c.1.as_ref().map(String::len),
                c.2.clone(),
                c.4.clone(),
            )
        })
        .collect();
    delta.sort();
    assert_eq!(
        delta,
        [
            (
                "1".to_string(),
                Some(16_000),
                Some("6".to_string()),
                "U".to_string()
            ),
            ("2".to_string(), None, None, "D".to_string()),
            (
                "3".to_string(),
                Some(16_000),
                Some("2".to_string()),
                "I".to_string()
            ),
        ]
    );
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
}

/// Bounded memory: a window of many changes is staged and netted by the
/// server, so a run's peak memory does not grow with the window's size.
#[tokio::test]
async fn peak_memory_does_not_grow_with_the_windows_changes() {
    let db = CdcDb::new(Backend::Postgres, "cdc_memory").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text, n int)")
        .await;
    let dir = Dir::new("cdc_memory");
    dir.write(
        "highwater.yaml",
        &cfg(&db.url, &["t"]).replace("batch_size: 3", "batch_size: 8192"),
    );
    assert_code(&dir.hw(&["run"]), 0);
    let mut peaks = Vec::new();
    let mut total = 0;
    for (from, to) in [(1, 20_000), (20_001, 320_000)] {
        db.exec(&format!(
            "INSERT INTO t SELECT g, repeat('x', 100) || g, 0 FROM generate_series({from}, {to}) g;
             UPDATE t SET n = 1 WHERE id BETWEEN {from} AND {to}"
        ))
        .await;
        peaks.push(crate::memory::peak_kib(&dir));
        total += to - from + 1;
        let rows = replay(&dir, "t");
        assert_eq!(rows.len(), total as usize);
    }
    assert_eq!(replay(&dir, "t"), db.rows("t").await);
    eprintln!("peak memory: {peaks:?} KiB");
    // 15x the changes (600,000 log entries, about 75 MB of values) may not
    // cost more than 32 MiB extra.
    assert!(
        peaks[1] < peaks[0] + 32 * 1024,
        "20,000 changes: {} KiB; 300,000: {} KiB",
        peaks[0],
        peaks[1]
    );
}

/// Values of many types, with the characters COPY's text format escapes,
/// arrive in a delta exactly as the full load wrote them.
#[tokio::test]
async fn values_of_many_types_arrive_in_deltas_as_in_the_full_load() {
    let db = CdcDb::new(Backend::Postgres, "cdc_types").await;
    db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, s text, n numeric(12,3), f float8, ts timestamptz,
                         d date, j jsonb, a int[], b bytea, u uuid, flag bool);
         INSERT INTO t VALUES
           (1, E'tab\\there\\nnew line\\\\back\\rcr', 12.345, 1.5e300, '2024-05-06 07:08:09.123456+02',
            '2024-02-29', '{\"k\": [1, \"x\\ty\"]}', '{1,NULL,3}', '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (3, 'ünï ✓ \\N', -0.001, 'NaN', '1999-12-31 23:59:59.5+00', '1900-01-01', 'null', '{}', '\\x', '00000000-0000-0000-0000-000000000000', false)",
    )
    .await;
    let dir = Dir::new("cdc_types");
    dir.write("highwater.yaml", &cfg(&db.url, &["t"]));
    assert_code(&dir.hw(&["run"]), 0);
    let full = read_csv(&newest_file(&dir, "t"));
    db.exec("UPDATE t SET id = id").await;
    assert_code(&dir.hw(&["run"]), 0);
    let delta = read_csv(&newest_file(&dir, "t"));
    assert_eq!(full.0, delta.0);
    let strip = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
        let mut r: Vec<Vec<String>> = rows
            .into_iter()
            .map(|mut r| {
                r.truncate(r.len() - 2);
                r
            })
            .collect();
        r.sort();
        r
    };
    assert_eq!(strip(delta.1.clone()), strip(full.1));
    assert!(
        delta.1.iter().all(|r| r.last().unwrap() == "U"),
        "{:?}",
        delta.1
    );
}
