//! Values arrive exactly through the database targets' bulk loads
//! (PostgreSQL `COPY`, MariaDB `LOAD DATA LOCAL INFILE`, both fed the text
//! of `load_text`): the first run loads straight into the table it creates
//! (the direct load), the second into the existing table through staging.
//! Every type the PostgreSQL source maps, with NULLs, empty strings,
//! escapes, unicode, extreme numbers, dates and timestamps, and text that
//! looks like the loaders' own NULL marker.

use mysql_async::prelude::Queryable;

use crate::util::*;

const SOURCE: &str = r#"
CREATE TABLE src (
  id int PRIMARY KEY, s smallint, b bigint, r real, f double precision,
  n numeric(38, 10), big numeric(60, 5), flag boolean, t text, j jsonb, u uuid,
  d date, tm time, ts timestamp, tsz timestamptz, bin bytea, arr int[], tarr text[]);
INSERT INTO src VALUES
  (1, -32768, 9223372036854775807, 1.5, 1e300, 1234567890123456789012345678.0123456789,
   123456789012345678901234567890123456789012345678901234.56789, true,
   E'tab\t nl\n cr\r back\\ "q" ü 日本 🎉', '{"a": [1, "x\ty"]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '0001-01-01', '23:59:59.999999', '2017-09-01 00:56:00.123456', '2017-09-01 02:56:00.5+02',
   '\x00ff5c0a09', '{1,NULL,3}', '{"a,b",NULL}'),
  (2, 0, -9223372036854775808, -2.5, -1.25e-300, -0.0000000001, 0, false, '', '[]', NULL,
   '9999-12-31', '00:00:00', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999+00',
   '\x', '{}', '{}'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, 1, 1, 0, 0, 0, 0, true, E'\\N', '"\\N"', NULL, '2024-02-29', '12:00:00', '2024-02-29 12:00:00',
   '2024-02-29 12:00:00+00', '\x5c4e', NULL, '{"\\N","NULL"}'),
  (5, 2, 2, 0, 0, 0, 0, false, 'NULL', 'null', NULL, NULL, NULL, NULL, NULL, '\x00', NULL, NULL);
"#;

type Rows = Vec<Vec<Option<String>>>;

/// What arrives, in the columns the readers below select; `pg` picks
/// PostgreSQL's text where the two targets render a value differently.
fn want(pg: bool) -> Rows {
    let s = |v: &str| Some(v.to_string());
    let v = |p: &str, m: &str| s(if pg { p } else { m });
    vec![
        vec![
            s("1"),
            s("-32768"),
            s("9223372036854775807"),
            s("1.5"),
            v("1e+300", "1e300"),
            s("1234567890123456789012345678.0123456789"),
            s("123456789012345678901234567890123456789012345678901234.56789"),
            v("true", "1"),
            s("tab\t nl\n cr\r back\\ \"q\" ü 日本 🎉"),
            s("{\"a\": [1, \"x\\ty\"]}"),
            s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            s("0001-01-01"),
            s("23:59:59.999999"),
            s("2017-09-01 00:56:00.123456"),
            v("2017-09-01 00:56:00.5", "2017-09-01 00:56:00.500000"),
            s("00ff5c0a09"),
            s("[1, , 3]"),
            s("[a,b, ]"),
        ],
        vec![
            s("2"),
            s("0"),
            s("-9223372036854775808"),
            s("-2.5"),
            s("-1.25e-300"),
            s("-0.0000000001"),
            s("0.00000"),
            v("false", "0"),
            s(""),
            s("[]"),
            None,
            s("9999-12-31"),
            v("00:00:00", "00:00:00.000000"),
            v("1970-01-01 00:00:00", "1970-01-01 00:00:00.000000"),
            s("1969-12-31 23:59:59.999999"),
            s(""),
            s("[]"),
            s("[]"),
        ],
        std::iter::once(s("3"))
            .chain(std::iter::repeat_n(None, 17))
            .collect(),
        vec![
            s("4"),
            s("1"),
            s("1"),
            s("0"),
            s("0"),
            s("0.0000000000"),
            s("0.00000"),
            v("true", "1"),
            s("\\N"),
            s("\"\\\\N\""),
            None,
            s("2024-02-29"),
            v("12:00:00", "12:00:00.000000"),
            v("2024-02-29 12:00:00", "2024-02-29 12:00:00.000000"),
            v("2024-02-29 12:00:00", "2024-02-29 12:00:00.000000"),
            s("5c4e"),
            None,
            s("[\\N, NULL]"),
        ],
        vec![
            s("5"),
            s("2"),
            s("2"),
            s("0"),
            s("0"),
            s("0.0000000000"),
            s("0.00000"),
            v("false", "0"),
            s("NULL"),
            s("null"),
            None,
            None,
            None,
            None,
            None,
            s("00"),
            None,
            None,
        ],
    ]
}

/// Two full runs: the direct load, then the load through staging.
async fn both_loads(
    dir: &Dir,
    src: &PgDb,
    dst_url: &str,
    read: impl AsyncFn() -> Rows,
    want: Rows,
) {
    src.exec(SOURCE).await;
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  dst: {dst_url}\nstreams:\n  t:\n    from: src\n    table: src\n    mode: full\n    primary_key: [id]\n    batch_size: 2\n    to: dst\n    into: typed\n    write: merge\n",
            src.url
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(read().await, want, "the direct load into a new table");
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(
        read().await,
        want,
        "the load through staging into the existing table"
    );
}

#[tokio::test]
async fn postgres_target() {
    let dir = Dir::new("load_values_pg");
    let src = PgDb::new("lvsrc").await;
    let dst = PgDb::new("lvdst").await;
    let read = async || -> Rows {
        let types: Vec<String> = dst
            .client
            .query(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'typed'::regclass AND attname IN ('tsz', 'big', 'bin') ORDER BY attname",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            types,
            ["numeric(60,5)", "bytea", "timestamp with time zone"]
        );
        dst.client
            .query(
                "SELECT id::text, s::text, b::text, r::text, f::text, n::text, big::text, flag::text, t, j, u,
                        d::text, tm::text, ts::text, (tsz AT TIME ZONE 'UTC')::text, encode(bin, 'hex'), arr, tarr
                 FROM typed ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
            .collect()
    };
    both_loads(&dir, &src, &dst.url, read, want(true)).await;
}

#[tokio::test]
async fn mariadb_target() {
    let dir = Dir::new("load_values_my");
    let src = PgDb::new("lvsrc").await;
    let dst = MyDb::new("lvdst").await;
    let read = async || -> Rows {
        let mut c = dst.connect().await;
        let rows: Vec<mysql_async::Row> = c
            .query(
                "SELECT CAST(id AS CHAR), CAST(s AS CHAR), CAST(b AS CHAR), CAST(r AS CHAR), CAST(f AS CHAR),
                        CAST(n AS CHAR), CAST(big AS CHAR), CAST(flag AS CHAR), t, j, u, CAST(d AS CHAR),
                        CAST(tm AS CHAR), CAST(ts AS CHAR), CAST(tsz AS CHAR), LOWER(HEX(bin)), arr, tarr
                 FROM typed ORDER BY id",
            )
            .await
            .unwrap();
        let _ = c.disconnect().await;
        rows.into_iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<Option<String>, _>(i).unwrap())
                    .collect()
            })
            .collect()
    };
    both_loads(&dir, &src, &dst.url, read, want(false)).await;
}
