//! PostgreSQL values copied exactly: numeric boundaries, arrays, interval,
//! money, uuid, json and the rest of docs/types.md, read back from CSV,
//! Parquet and JSON Lines; infinite dates and timestamps fail clearly.

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};

use crate::util::*;

/// Three full streams of `table` (CSV, Parquet, JSONL) in one config.
fn three_formats(dir: &Dir, url: &str, table: &str) {
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {url}\n  lake: file://./lake\nstreams:\n\
             \x20 c:\n    from: src\n    table: {table}\n    to: lake\n    path: c.csv\n\
             \x20 p:\n    from: src\n    table: {table}\n    to: lake\n    path: p.parquet\n\
             \x20 j:\n    from: src\n    table: {table}\n    to: lake\n    path: j.jsonl\n"
        ),
    );
}

fn read_parquet(dir: &Dir, name: &str) -> Vec<RecordBatch> {
    let file = std::fs::File::open(dir.join(name)).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Parquet column `col` of every row, rendered by Arrow's formatter.
fn parquet_column(batches: &[RecordBatch], col: &str) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(col).unwrap();
        let f = ArrayFormatter::try_new(a.as_ref(), &opts).unwrap();
        for i in 0..a.len() {
            out.push(f.value(i).to_string());
        }
    }
    out
}

/// The raw JSON text of field `col` in a JSONL line (numbers stay exact).
fn json_raw(line: &str, col: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(v.get(col).is_some(), "{col} missing in {line}");
    let key = format!("\"{col}\":");
    let start = line.find(&key).unwrap() + key.len();
    let rest = &line[start..];
    // Up to the next top-level comma or the closing brace.
    let mut depth = 0i32;
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in rest.char_indices() {
        match (in_str, esc, c) {
            (true, true, _) => esc = false,
            (true, false, '\\') => esc = true,
            (true, false, '"') => in_str = false,
            (false, _, '"') => in_str = true,
            (false, _, '[' | '{') => depth += 1,
            (false, _, ']') => depth -= 1,
            (false, _, '}') if depth == 0 => return rest[..i].to_string(),
            (false, _, '}') => depth -= 1,
            (false, _, ',') if depth == 0 => return rest[..i].to_string(),
            _ => {}
        }
    }
    rest.to_string()
}

fn jsonl_lines(dir: &Dir, name: &str) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(dir.join(name))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort_by_key(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64());
    lines
}

/// Every value that fits its declared numeric type copies exactly, to
/// every format: 38 significant digits at scale 10 failed before.
#[tokio::test]
async fn numeric_boundaries_copy_exactly() {
    let db = PgDb::new("numeric").await;
    db.exec(
        "CREATE TABLE t (id int primary key, a numeric(38,10), b numeric(38,0), c numeric(10,2), u numeric, w numeric(60,5));
         INSERT INTO t VALUES
           (1, '9999999999999999999999999999.9999999999', '99999999999999999999999999999999999999', '99999999.99', '123456789012345678901234567890123456789012345.000000000000000000001', '1234567890123456789012345678901234567890123456789012345.12345'),
           (2, '-9999999999999999999999999999.9999999999', '-99999999999999999999999999999999999999', '-99999999.99', 'NaN', '-1234567890123456789012345678901234567890123456789012345.12345'),
           (3, 0, 0, '-0.01', 0, 0),
           (4, '0.0000000001', '-1', '-12.5', '-0.5', '0.00001'),
           (5, NULL, NULL, NULL, NULL, NULL);",
    )
    .await;
    let dir = Dir::new("numeric");
    three_formats(&dir, &db.url, "t");
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let expected: [[&str; 6]; 5] = [
        [
            "1",
            "9999999999999999999999999999.9999999999",
            "99999999999999999999999999999999999999",
            "99999999.99",
            "123456789012345678901234567890123456789012345.000000000000000000001",
            "1234567890123456789012345678901234567890123456789012345.12345",
        ],
        [
            "2",
            "-9999999999999999999999999999.9999999999",
            "-99999999999999999999999999999999999999",
            "-99999999.99",
            "NaN",
            "-1234567890123456789012345678901234567890123456789012345.12345",
        ],
        ["3", "0.0000000000", "0", "-0.01", "0", "0.00000"],
        ["4", "0.0000000001", "-1", "-12.50", "-0.5", "0.00001"],
        ["5", "", "", "", "", ""],
    ];
    // CSV
    let (header, mut rows) = read_csv(&dir.join("lake/c.csv"));
    assert_eq!(header, ["id", "a", "b", "c", "u", "w"]);
    rows.sort_by_key(|r| r[0].parse::<i32>().unwrap());
    assert_eq!(
        rows,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );
    // Parquet: real decimals for constrained numerics, exact text for `numeric`.
    let pq = read_parquet(&dir, "lake/p.parquet");
    let schema = pq[0].schema();
    use arrow_schema::DataType::*;
    assert_eq!(
        schema.field_with_name("a").unwrap().data_type(),
        &Decimal128(38, 10)
    );
    assert_eq!(
        schema.field_with_name("b").unwrap().data_type(),
        &Decimal128(38, 0)
    );
    assert_eq!(
        schema.field_with_name("c").unwrap().data_type(),
        &Decimal128(10, 2)
    );
    assert_eq!(schema.field_with_name("u").unwrap().data_type(), &Utf8);
    assert_eq!(
        schema.field_with_name("w").unwrap().data_type(),
        &Decimal256(60, 5)
    );
    let ids = parquet_column(&pq, "id");
    for (ci, col) in ["a", "b", "c", "u", "w"].iter().enumerate() {
        let vals = parquet_column(&pq, col);
        for (id, v) in ids.iter().zip(vals) {
            let want = expected[id.parse::<usize>().unwrap() - 1][ci + 1];
            let want = if want.is_empty() { "NULL" } else { want };
            assert_eq!(v, want, "parquet {col} of row {id}");
        }
    }
    // JSONL: decimals as exact JSON numbers, `numeric` as a string.
    let lines = jsonl_lines(&dir, "lake/j.jsonl");
    assert_eq!(lines.len(), 5);
    for (line, want) in lines.iter().zip(expected) {
        for (ci, col) in ["a", "b", "c", "u", "w"].iter().enumerate() {
            let w = want[ci + 1];
            let w = match (*col, w) {
                (_, "") => "null".to_string(),
                ("u", w) => format!("\"{w}\""),
                (_, w) => w.to_string(),
            };
            assert_eq!(json_raw(line, col), w, "jsonl {col} in {line}");
        }
    }
}

/// A value outside Arrow's reach (NaN in a constrained numeric) fails the
/// run, naming the column and the row's key; nothing is written.
#[tokio::test]
async fn numeric_nan_in_constrained_column_fails_clearly() {
    let db = PgDb::new("numnan").await;
    db.exec(
        "CREATE TABLE t (id int primary key, c numeric(10,2));
         INSERT INTO t VALUES (1, 1.5), (42, 'NaN');",
    )
    .await;
    let dir = Dir::new("numnan");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  c:\n    from: src\n    table: t\n    to: lake\n    path: c.csv\n",
            db.url
        ),
    );
    let o = dir.hw(&["run"]);
    assert_code(&o, 1);
    let err = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        err.contains("column c") && err.contains("id=42") && err.contains("NaN"),
        "{err}"
    );
    assert!(
        dir.files("lake", ".csv").is_empty(),
        "no file after a failure"
    );
}

/// Infinite dates and timestamps were written as `5881580-07-11`: now the
/// run fails naming the column and the row key, and as a cursor they
/// neither vanish nor move the position.
#[tokio::test]
async fn infinite_dates_and_timestamps_fail_clearly() {
    let db = PgDb::new("infinity").await;
    db.exec(
        "CREATE TABLE d (id int primary key, v date);
         INSERT INTO d VALUES (1, '2024-01-01'), (7, 'infinity');
         CREATE TABLE ts (id int primary key, v timestamp);
         INSERT INTO ts VALUES (1, '2024-01-01'), (8, '-infinity');
         CREATE TABLE tz (id int primary key, v timestamptz);
         INSERT INTO tz VALUES (9, 'infinity');
         CREATE TABLE w (id int primary key, at timestamptz);
         INSERT INTO w VALUES (1, '2024-01-01 00:00:00+00');",
    )
    .await;
    let dir = Dir::new("infinity");
    let full = |name: &str| {
        format!("  {name}:\n    from: src\n    table: {name}\n    to: lake\n    path: {name}.csv\n")
    };
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n{}{}{}  w:\n    from: src\n    table: w\n    mode: watermark\n    cursor: at\n    primary_key: [id]\n    to: lake\n    path: \"w/{{run_id}}.csv\"\n",
            db.url,
            full("d"),
            full("ts"),
            full("tz")
        ),
    );
    for (stream, key, word) in [
        ("d", "id=7", "infinity"),
        ("ts", "id=8", "-infinity"),
        ("tz", "id=9", "infinity"),
    ] {
        let o = dir.hw(&["run", stream]);
        assert_code(&o, 1);
        let err = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            err.contains("column v") && err.contains(key) && err.contains(&format!("'{word}'")),
            "{stream}: {err}"
        );
        assert!(
            !dir.join(&format!("lake/{stream}.csv")).exists(),
            "{stream}: garbage written"
        );
    }
    // As a watermark cursor.
    assert_code(&dir.hw(&["run", "w"]), 0);
    let state = |dir: &Dir| {
        let o = dir.hw(&["state", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|s| s["stream"] == "w")
            .map(|s| s["watermark"].clone())
            .unwrap()
    };
    let before = state(&dir);
    assert_eq!(before, "2024-01-01T00:00:00.000000+00:00");
    db.exec("INSERT INTO w VALUES (2, 'infinity')").await;
    let o = dir.hw(&["run", "w"]);
    assert_code(&o, 1);
    let err = format!("{}{}", stdout(&o), stderr(&o));
    assert!(err.contains("'infinity'") && err.contains("at"), "{err}");
    assert_eq!(
        state(&dir),
        before,
        "a failed run does not move the position"
    );
    db.exec("UPDATE w SET at = '2024-02-01 00:00:00+00' WHERE id = 2")
        .await;
    assert_code(&dir.hw(&["run", "w"]), 0);
    let mut ids: Vec<String> = all_csv_rows(&dir, "lake/w")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2"]);
}

/// Arrays are lists (JSON arrays in CSV), interval is ISO 8601, money a
/// decimal (never `$12.50`), and the other types read back as documented
/// in docs/types.md, whatever the database's DateStyle/IntervalStyle.
#[tokio::test]
async fn types_map_as_documented() {
    let db = PgDb::new("types").await;
    db.exec(&format!(
        "ALTER DATABASE {} SET DateStyle = 'SQL, DMY';
         ALTER DATABASE {} SET IntervalStyle = 'postgres_verbose';",
        db.name, db.name
    ))
    .await;
    db.exec(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE DOMAIN posint AS int CHECK (VALUE > 0);
         CREATE DOMAIN code AS text;
         CREATE TABLE t (id int primary key, ia int[], ta text[], ma money[], iva interval[],
           iv interval, m money, u uuid, j json, jb jsonb, b bytea, tm time, tmz timetz,
           ip inet, mo mood, d posint, dc code, ts timestamp);
         INSERT INTO t VALUES
           (1, '{1,NULL,3}', '{\"a\",NULL,\"b,c\",\"NULL\"}', '{12.50,NULL}', '{\"1 day\"}',
            '1 year 2 mons 3 days 04:05:06.789', 12.50, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
            '{\"a\": [1, 2]}', '{\"b\": {\"c\": null}}', '\\x00ff', '13:14:15.123456', '13:14:15+05:30',
            '192.168.0.1/24', 'happy', 5, 'x', '2024-03-10 12:00:00'),
           (2, '{}', NULL, NULL, NULL, '-1 day -00:00:01', -0.01, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL);",
    )
    .await;
    let dir = Dir::new("types");
    three_formats(&dir, &db.url, "t");
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    let (header, mut rows) = read_csv(&dir.join("lake/c.csv"));
    rows.sort_by_key(|r| r[0].parse::<i32>().unwrap());
    let row1: std::collections::BTreeMap<&str, &str> = header
        .iter()
        .map(String::as_str)
        .zip(rows[0].iter().map(String::as_str))
        .collect();
    let want = [
        ("ia", "[1,null,3]"),
        ("ta", r#"["a",null,"b,c","NULL"]"#),
        ("ma", "[12.50,null]"),
        ("iva", r#"["P1D"]"#),
        ("iv", "P1Y2M3DT4H5M6.789S"),
        ("m", "12.50"),
        ("u", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ("j", r#"{"a": [1, 2]}"#),
        ("jb", r#"{"b": {"c": null}}"#),
        ("b", "00ff"),
        ("tm", "13:14:15.123456"),
        ("tmz", "13:14:15+05:30"),
        ("ip", "192.168.0.1/24"),
        ("mo", "happy"),
        ("d", "5"),
        ("dc", "x"),
        ("ts", "2024-03-10T12:00:00"),
    ];
    for (col, v) in want {
        assert_eq!(row1[col], v, "csv {col}");
    }
    assert_eq!(rows[1][1], "[]", "an empty array is an empty list");
    assert_eq!(rows[1][2], "", "a NULL array is NULL");
    assert_eq!(rows[1][5], "P-1DT-1S");
    assert_eq!(rows[1][6], "-0.01");
    // Parquet: real lists and decimals.
    let pq = read_parquet(&dir, "lake/p.parquet");
    let schema = pq[0].schema();
    use arrow_schema::DataType;
    let list_of = |c: &str| match schema.field_with_name(c).unwrap().data_type() {
        DataType::List(f) => f.data_type().clone(),
        other => panic!("{c} is {other:?}, not a list"),
    };
    assert_eq!(list_of("ia"), DataType::Int32);
    assert_eq!(list_of("ta"), DataType::Utf8);
    assert_eq!(list_of("ma"), DataType::Decimal128(19, 2));
    assert_eq!(
        schema.field_with_name("m").unwrap().data_type(),
        &DataType::Decimal128(19, 2)
    );
    assert_eq!(parquet_column(&pq, "ia"), ["[1, NULL, 3]", "[]"]);
    assert_eq!(parquet_column(&pq, "m"), ["12.50", "-0.01"]);
    assert_eq!(parquet_column(&pq, "iv")[0], "P1Y2M3DT4H5M6.789S");
    // JSONL: lists are JSON arrays, money a number.
    let lines = jsonl_lines(&dir, "lake/j.jsonl");
    assert_eq!(json_raw(&lines[0], "ia"), "[1,null,3]");
    assert_eq!(json_raw(&lines[0], "ta"), r#"["a",null,"b,c","NULL"]"#);
    assert_eq!(json_raw(&lines[0], "m"), "12.50");
    assert_eq!(
        json_raw(&lines[0], "u"),
        "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""
    );
    assert_eq!(json_raw(&lines[1], "ia"), "[]");
}
