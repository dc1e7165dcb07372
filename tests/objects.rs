//! Object-store targets against real emulators: Azurite (Azure Blob) on
//! 127.0.0.1:10000 and moto (S3) on 127.0.0.1:5555, both started by
//! `.ci/run`. Containers and buckets are created by `tests/objstore.py`
//! (object_store cannot create them), run with `HIGHWATER_TEST_PYTHON`
//! (default: the venv `.ci/run` makes).

use std::collections::BTreeMap;

use crate::util::*;

fn objstore(cmd: &str, kind: &str, name: &str) -> String {
    crate::util::objstore(&[cmd, kind, name], "")
}

/// Data objects (not commit markers) of the container, by name.
fn data_objects(kind: &str, name: &str) -> BTreeMap<String, String> {
    let all: BTreeMap<String, String> =
        serde_json::from_str(&objstore("dump", kind, name)).unwrap();
    all.into_iter()
        .filter(|(k, _)| !k.contains("_highwater/"))
        .collect()
}

fn run_object_store_flow(kind: &str) {
    let container = unique(kind).replace('_', "-");
    objstore("create", kind, &container);
    let dir = Dir::new("objects");
    let conn = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id integer primary key, name text, at datetime);
         INSERT INTO t VALUES (1, 'a', '2024-01-01 00:00:00'), (2, 'b,\"quoted\"', '2024-01-02 00:00:00');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: sqlite://src.db\n  lake: {kind}://{container}/landing\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: at\n    primary_key: [id]\n    to: lake\n    path: \"t/{{yyyy}}/t-{{run_id}}.csv\"\n"
        ),
    );
    let env = object_store_env(kind);
    let o = dir.hw_env(&["check"], &env);
    assert_code(&o, 0);
    assert_code(&dir.hw_env(&["run"], &env), 0);
    conn.execute_batch("INSERT INTO t VALUES (3, 'c', '2024-01-03 00:00:00')")
        .unwrap();
    // A crash after the data object is complete but before its commit marker…
    let o = dir.hw_env(
        &["run"],
        &[
            env.clone(),
            vec![("HIGHWATER_FAILPOINT", "files.after_data_before_marker")],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), None, "{}", stderr(&o));
    assert_eq!(
        data_objects(kind, &container).len(),
        1,
        "an uncommitted delta is never visible at its final name (staged under _highwater/)"
    );
    // …is settled by the next run: the staged data is removed and the range read again.
    conn.execute_batch("INSERT INTO t VALUES (4, 'd', '2024-01-04 00:00:00')")
        .unwrap();
    assert_code(&dir.hw_env(&["run"], &env), 0);
    let objects = data_objects(kind, &container);
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(
        objects.keys().all(|k| k.starts_with("landing/t/")),
        "{objects:?}"
    );
    let mut ids = Vec::new();
    for text in objects.values() {
        let rows = parse_csv(text);
        assert_eq!(rows[0], ["id", "name", "at"]);
        ids.extend(rows[1..].iter().map(|r| r[0].clone()));
        if let Some(r) = rows.iter().find(|r| r[0] == "2") {
            assert_eq!(r[1], "b,\"quoted\"");
        }
    }
    ids.sort();
    assert_eq!(ids, ["1", "2", "3", "4"]);
}

#[test]
fn azure_blob_target_with_crash_recovery() {
    run_object_store_flow("az");
}

#[test]
fn s3_target_with_crash_recovery() {
    run_object_store_flow("s3");
}

/// The answer to the commit marker's PUT is lost (issue 7, item 4, file
/// targets): settling asks the store, which has the marker; the delta is
/// published once and the position moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_lost_marker_answer_is_settled_not_repeated() {
    let container = unique("s3ack").replace('_', "-");
    objstore("create", "s3", &container);
    let proxy = crate::lost_ack::FaultyProxy::start(
        "127.0.0.1:5555",
        crate::lost_ack::Fault::LoseAnswerTo(&[b"_highwater/commits"]),
    )
    .await;
    let dir = Dir::new("s3ack");
    let conn = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id integer primary key, name text);
         INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: sqlite://src.db\n  lake: s3://{container}/landing\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    cursor: id\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n"
        ),
    );
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut env = object_store_env("s3");
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    let o = dir.hw_env(&["run"], &env);
    assert!(
        proxy.fired.load(std::sync::atomic::Ordering::SeqCst),
        "the proxy cut the marker's answer"
    );
    // Whether the client retried the PUT (and learnt the marker exists) or
    // the run failed and the next run settles it, nothing is repeated.
    assert!(
        matches!(o.status.code(), Some(0) | Some(1)),
        "{}",
        stderr(&o)
    );
    conn.execute_batch("INSERT INTO t VALUES (4, 'd')").unwrap();
    assert_code(&dir.hw_env(&["run"], &env), 0);
    let objects = data_objects("s3", &container);
    let mut ids: Vec<String> = objects
        .values()
        .flat_map(|text| parse_csv(text).into_iter().skip(1).map(|r| r[0].clone()))
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3", "4"], "{objects:?}");
}
