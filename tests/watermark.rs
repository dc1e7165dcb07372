//! Watermark mode against real PostgreSQL and SQLite: the tutorial flow,
//! ties at the boundary, late commits, precision and time zones, cursor
//! types, formats, queries and path templates.

use std::collections::BTreeMap;

use crate::util::*;

fn config(url: &str, streams: &str) -> String {
    format!("connections:\n  src: {url}\n  lake: file://./lake\nstreams:\n{streams}")
}

fn stream(name: &str, table: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    from: src\n    table: {table}\n    to: lake\n    path: \"{name}/{name}-{{run_id}}.csv\"\n{extra}"
    )
}

/// Rows of every CSV file of a stream, keyed by the first column; panics on duplicates.
fn rows_by_id(dir: &Dir, sub: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for r in all_csv_rows(dir, sub) {
        let id = r[0].clone();
        assert!(out.insert(id.clone(), r).is_none(), "row {id} copied twice");
    }
    out
}

#[tokio::test]
async fn tutorial_flow_on_postgres() {
    let db = PgDb::new("tutorial").await;
    db.exec(
        "CREATE TABLE data_source_table (PersonID int primary key, Name varchar(255), LastModifytime timestamp);
         INSERT INTO data_source_table VALUES
           (1, 'aaaa', '2017-09-01 00:56:00'), (2, 'bbbb', '2017-09-02 05:23:00'),
           (3, 'cccc', '2017-09-03 02:36:00'), (4, 'dddd', '2017-09-04 03:21:00'),
           (5, 'eeee', '2017-09-05 08:06:00');",
    )
    .await;
    let dir = Dir::new("tutorial");
    dir.write(
        "highwater.yaml",
        &config(
            &db.url,
            &stream(
                "people",
                "public.data_source_table",
                "    mode: watermark\n    cursor: lastmodifytime\n    primary_key: [personid]\n",
            ),
        ),
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let files = dir.files("lake/people", ".csv");
    assert_eq!(files.len(), 1);
    let (header, rows) = read_csv(&files[0]);
    assert_eq!(header, ["personid", "name", "lastmodifytime"]);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0], ["1", "aaaa", "2017-09-01T00:56:00"]);

    db.exec(
        "INSERT INTO data_source_table VALUES (6, 'newdata', '2017-09-06 02:23:00'), (7, 'newdata', '2017-09-07 09:01:00');
         UPDATE data_source_table SET Name = 'NewUpdate', LastModifytime = '2017-09-08 10:00:00' WHERE PersonID = 3;",
    )
    .await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let files = dir.files("lake/people", ".csv");
    assert_eq!(files.len(), 2);
    // The second file holds exactly rows 3 (updated), 6 and 7.
    let mut second: Vec<String> = files
        .iter()
        .map(|f| read_csv(f).1)
        .find(|rows| rows.len() == 3)
        .expect("a 3-row delta file")
        .into_iter()
        .map(|r| format!("{}:{}", r[0], r[1]))
        .collect();
    second.sort();
    assert_eq!(second, ["3:NewUpdate", "6:newdata", "7:newdata"]);

    // A third run without changes writes nothing and succeeds.
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("no changes"), "{}", stdout(&o));
    assert_eq!(dir.files("lake/people", ".csv").len(), 2);
}

/// A row inserted after a run with a cursor equal to that run's watermark
/// arrives in the next run; nothing is copied twice.
#[tokio::test]
async fn ties_at_the_boundary_postgres() {
    let db = PgDb::new("ties").await;
    db.exec(
        "CREATE TABLE t (id int primary key, v text, updated_at timestamptz);
         INSERT INTO t VALUES (1, 'a', '2024-01-01 10:00:00+00'), (2, 'b', '2024-01-01 10:00:05+00'), (3, 'c', '2024-01-01 10:00:05+00');",
    )
    .await;
    let dir = Dir::new("ties");
    dir.write(
        "highwater.yaml",
        &config(
            &db.url,
            &stream(
                "t",
                "t",
                "    mode: watermark\n    cursor: updated_at\n    primary_key: [id]\n",
            ),
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    // Same cursor value as the watermark, inserted after the run.
    db.exec("INSERT INTO t VALUES (4, 'd', '2024-01-01 10:00:05+00'), (5, 'e', '2024-01-01 10:00:05+00')").await;
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("INSERT INTO t VALUES (6, 'f', '2024-01-01 10:00:05+00'), (7, 'g', '2024-01-01 10:00:06+00')").await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_code(&dir.hw(&["run"]), 0);
    let rows = rows_by_id(&dir, "lake/t");
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5", "6", "7"]
    );
    assert_eq!(
        dir.files("lake/t", ".csv").len(),
        3,
        "the last run had no changes"
    );
}

#[tokio::test]
async fn ties_at_the_boundary_sqlite() {
    let dir = Dir::new("ties_sqlite");
    let path = dir.join("src.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id integer primary key, v text, updated_at datetime);
         INSERT INTO t VALUES (1, 'a', '2024-01-01 10:00:00'), (2, 'b', '2024-01-01 10:00:05'), (3, 'c', '2024-01-01 10:00:05');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        &config(
            "sqlite://src.db",
            &stream("t", "t", "    mode: watermark\n    cursor: updated_at\n"),
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    conn.execute_batch("INSERT INTO t VALUES (4, 'd', '2024-01-01 10:00:05'), (5, 'e', '2024-01-01 10:00:04.999999')").unwrap();
    assert_code(&dir.hw(&["run"]), 0);
    conn.execute_batch(
        "INSERT INTO t VALUES (6, 'f', '2024-01-01 10:00:05'), (7, 'g', '2024-01-01 10:00:06')",
    )
    .unwrap();
    assert_code(&dir.hw(&["run"]), 0);
    let rows = rows_by_id(&dir, "lake/t");
    // Row 5 was inserted behind the watermark with an explicit old timestamp:
    // no watermark tool can see it (documented); every other row arrives once.
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        ["1", "2", "3", "4", "6", "7"]
    );
    assert_eq!(rows["4"], ["4", "d", "2024-01-01T10:00:05"]);
}

/// A transaction that inserts with `now()`, stays open across a run and
/// commits after it: its row is copied by a later run.
#[tokio::test]
async fn late_commit_is_copied_by_a_later_run() {
    let db = PgDb::new("late").await;
    db.exec("CREATE TABLE t (id int primary key, updated_at timestamptz not null default now())")
        .await;
    db.exec("INSERT INTO t (id, updated_at) VALUES (1, now() - interval '1 hour')")
        .await;
    let dir = Dir::new("late");
    dir.write(
        "highwater.yaml",
        &config(
            &db.url,
            &stream(
                "t",
                "t",
                "    mode: watermark\n    cursor: updated_at\n    primary_key: [id]\n",
            ),
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);

    let late = db.connect().await;
    late.batch_execute("BEGIN; INSERT INTO t (id) VALUES (2);")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // Committed after the late transaction started, so its cursor is newer.
    db.exec("INSERT INTO t (id) VALUES (3)").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    late.batch_execute("COMMIT").await.unwrap();
    db.exec("INSERT INTO t (id) VALUES (4)").await;
    assert_code(&dir.hw(&["run"]), 0);
    let rows = rows_by_id(&dir, "lake/t");
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        ["1", "2", "3", "4"],
        "late row 2 must arrive exactly once"
    );
}

/// Timestamps that differ only in the last microsecond survive the round
/// trip through state; zoned values are written in UTC.
#[tokio::test]
async fn precision_and_time_zones_survive_state() {
    let db = PgDb::new("precision").await;
    db.exec(
        "CREATE TABLE t (id int primary key, updated_at timestamptz, local_ts timestamp);
         INSERT INTO t VALUES (1, '2024-03-10 12:00:00.000001+05:00', '2024-03-10 12:00:00.000001');",
    )
    .await;
    let dir = Dir::new("precision");
    dir.write(
        "highwater.yaml",
        &config(
            &db.url,
            &stream(
                "t",
                "t",
                "    mode: watermark\n    cursor: updated_at\n    primary_key: [id]\n",
            ),
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    let o = dir.hw(&["state", "--json"]);
    assert_code(&o, 0);
    let state: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(state[0]["watermark"], "2024-03-10T07:00:00.000001+00:00");
    // One microsecond later: only the new row arrives.
    db.exec(
        "INSERT INTO t VALUES (2, '2024-03-10 07:00:00.000002+00', '2024-03-10 12:00:00.000002')",
    )
    .await;
    assert_code(&dir.hw(&["run"]), 0);
    let files = dir.files("lake/t", ".csv");
    assert_eq!(files.len(), 2);
    let all = rows_by_id(&dir, "lake/t");
    assert_eq!(
        all["1"],
        [
            "1",
            "2024-03-10T07:00:00.000001+00:00",
            "2024-03-10T12:00:00.000001"
        ]
    );
    assert_eq!(
        all["2"],
        [
            "2",
            "2024-03-10T07:00:00.000002+00:00",
            "2024-03-10T12:00:00.000002"
        ]
    );
    let o = dir.hw(&["state", "--json"]);
    let state: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(state[0]["watermark"], "2024-03-10T07:00:00.000002+00:00");
}

#[tokio::test]
async fn integer_and_date_cursors() {
    let db = PgDb::new("cursors").await;
    db.exec(
        "CREATE TABLE i (id bigserial primary key, v text);
         INSERT INTO i (v) SELECT 'v' || g FROM generate_series(1, 10) g;
         CREATE TABLE d (id int primary key, day date);
         INSERT INTO d VALUES (1, '2024-01-01'), (2, '2024-01-02');",
    )
    .await;
    let dir = Dir::new("cursors");
    let streams = format!(
        "{}{}",
        stream("i", "i", "    mode: watermark\n    cursor: id\n"),
        stream(
            "d",
            "d",
            "    mode: watermark\n    cursor: day\n    primary_key: [id]\n"
        )
    );
    dir.write("highwater.yaml", &config(&db.url, &streams));
    assert_code(&dir.hw(&["run"]), 0);
    db.exec("INSERT INTO i (v) VALUES ('v11'), ('v12'); INSERT INTO d VALUES (3, '2024-01-02'), (4, '2024-01-03');").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let i = rows_by_id(&dir, "lake/i");
    assert_eq!(i.len(), 12);
    assert_eq!(i["12"], ["12", "v12"]);
    let d = rows_by_id(&dir, "lake/d");
    assert_eq!(d.keys().cloned().collect::<Vec<_>>(), ["1", "2", "3", "4"]);
    assert_eq!(d["4"], ["4", "2024-01-03"]);
}

#[tokio::test]
async fn parquet_and_jsonl_carry_types() {
    let db = PgDb::new("formats").await;
    db.exec(
        "CREATE TABLE t (id bigint primary key, amount numeric(12,2), name text, at timestamptz, ok bool, n int);
         INSERT INTO t SELECT g, g * 1.5, 'n' || g, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', g % 2 = 0, NULL
         FROM generate_series(1, 1000) g;",
    )
    .await;
    let dir = Dir::new("formats");
    let streams = "  pq:\n    from: src\n    table: t\n    mode: watermark\n    cursor: at\n    to: lake\n    path: \"pq/{yyyy}/{MM}/{dd}/{HH}{mm}-{run_id}.parquet\"\n    batch_size: 100\n  js:\n    from: src\n    query: \"select id, name, amount, n from t where id <= 10\"\n    to: lake\n    path: \"js/{stream}.jsonl\"\n";
    dir.write("highwater.yaml", &config(&db.url, streams));
    assert_code(&dir.hw(&["run"]), 0);
    let pq = dir.files("lake/pq", ".parquet");
    assert_eq!(pq.len(), 1);
    let today = chrono::Utc::now().format("%Y/%m/%d").to_string();
    assert!(pq[0].to_string_lossy().contains(&today), "{:?}", pq[0]);
    let file = std::fs::File::open(&pq[0]).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = reader.schema().clone();
    assert_eq!(
        schema.field_with_name("amount").unwrap().data_type(),
        &arrow_schema::DataType::Decimal128(12, 2)
    );
    assert!(matches!(
        schema.field_with_name("at").unwrap().data_type(),
        arrow_schema::DataType::Timestamp(_, Some(_))
    ));
    assert!(
        schema
            .field_with_name(highwater_core::CURSOR_COLUMN)
            .is_err(),
        "hidden column leaked"
    );
    let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 1000);
    let js = std::fs::read_to_string(dir.join("lake/js/js.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = js
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[2]["name"], "n3");
    assert!(
        lines
            .iter()
            .all(|l| l.as_object().unwrap().len() == 4 && l["n"].is_null()),
        "NULLs are explicit"
    );
    assert_eq!(lines[2]["id"], 3);
}

/// `cursor: [updated_at, created_at]` means the first non-NULL; a table
/// without a primary key de-duplicates the boundary by whole rows.
#[tokio::test]
async fn cursor_lists_and_tables_without_keys() {
    let db = PgDb::new("coalesce").await;
    db.exec(
        "CREATE TABLE t (id int, created_at timestamptz not null, updated_at timestamptz);
         INSERT INTO t VALUES (1, '2024-01-01 00:00:00+00', NULL), (2, '2024-01-01 00:00:00+00', '2024-01-02 00:00:00+00');",
    )
    .await;
    let dir = Dir::new("coalesce");
    dir.write(
        "highwater.yaml",
        &config(
            &db.url,
            &stream(
                "t",
                "t",
                "    mode: watermark\n    cursor: [updated_at, created_at]\n",
            ),
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    // Row 3 ties with the watermark through created_at; row 1 gets updated.
    db.exec("INSERT INTO t VALUES (3, '2024-01-02 00:00:00+00', NULL); UPDATE t SET updated_at = '2024-01-03 00:00:00+00' WHERE id = 1;").await;
    assert_code(&dir.hw(&["run"]), 0);
    assert_code(&dir.hw(&["run"]), 0);
    let mut ids: Vec<String> = all_csv_rows(&dir, "lake/t")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["1", "1", "2", "3"],
        "row 1 twice (insert, then update), others once"
    );
    assert_eq!(dir.files("lake/t", ".csv").len(), 2);
}

#[test]
fn sqlite_query_source_with_integer_cursor() {
    let dir = Dir::new("sqlite_query");
    let conn = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE events (seq integer primary key, kind text, payload blob, score real, ok boolean, day date);
         INSERT INTO events (kind, payload, score, ok, day) VALUES ('a', x'00ff', 1.5, 1, '2024-01-01'), ('b', NULL, NULL, 0, NULL), ('a', x'01', 2.5, 1, '2024-01-03');",
    )
    .unwrap();
    let streams = "  ev:\n    from: src\n    query: \"select seq, kind, score, ok, day from events where kind = 'a'\"\n    mode: watermark\n    cursor: seq\n    to: lake\n    path: \"ev/{run_id}.jsonl\"\n";
    dir.write("highwater.yaml", &config("sqlite://src.db", streams));
    assert_code(&dir.hw(&["run"]), 0);
    conn.execute_batch("INSERT INTO events (kind, score, ok) VALUES ('a', 3.5, 0), ('b', 0, 0)")
        .unwrap();
    assert_code(&dir.hw(&["run"]), 0);
    let mut lines = Vec::new();
    for f in dir.files("lake/ev", ".jsonl") {
        for l in std::fs::read_to_string(f).unwrap().lines() {
            lines.push(serde_json::from_str::<serde_json::Value>(l).unwrap());
        }
    }
    lines.sort_by_key(|v| v["seq"].as_i64());
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[0]["day"], "2024-01-01");
    assert_eq!(lines[2]["seq"], 4);
    assert_eq!(lines[2]["score"], 3.5);
}

/// Integer cursors from sequences can commit out of order: the run warns
/// when write transactions were open, and `lag:` holds the bound back.
#[tokio::test]
async fn integer_cursor_warns_about_open_writers_and_lag_holds_back() {
    let db = PgDb::new("intwarn").await;
    db.exec(
        "CREATE TABLE t (id bigserial primary key, v text); INSERT INTO t (v) VALUES ('a'), ('b');",
    )
    .await;
    let dir = Dir::new("intwarn");
    dir.write(
        "highwater.yaml",
        &config(
            &db.url,
            &stream("t", "t", "    mode: watermark\n    cursor: id\n"),
        ),
    );
    let open = db.connect().await;
    open.batch_execute("BEGIN; INSERT INTO t (v) VALUES ('late');")
        .await
        .unwrap();
    db.exec("INSERT INTO t (v) VALUES ('c')").await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(out.contains("warning") && out.contains("lag"), "{out}");
    open.batch_execute("ROLLBACK").await.unwrap();
    // With lag: 2 the newest two ids wait for a later run.
    let dir2 = Dir::new("intlag");
    dir2.write(
        "highwater.yaml",
        &config(
            &db.url,
            &stream(
                "t",
                "t",
                "    mode: watermark\n    cursor: id\n    lag: 2\n",
            ),
        ),
    );
    assert_code(&dir2.hw(&["run"]), 0);
    let ids: Vec<String> = all_csv_rows(&dir2, "lake/t")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        ids,
        ["1", "2"],
        "ids 3 (rolled back) and 4 are within the lag"
    );
}
