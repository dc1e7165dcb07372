//! Bounded memory: peak memory does not grow with the table's size.

use std::process::Command;

use crate::util::*;

/// Peak resident set size (KiB) of `highwater run` per GNU time.
pub fn peak_kib(dir: &Dir) -> u64 {
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(bin())
        .arg("-c")
        .arg(dir.config())
        .arg("run")
        .env("NO_COLOR", "1")
        .output()
        .expect("/usr/bin/time (Debian package `time`)");
    assert_code(&o, 0);
    stderr(&o)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("a peak RSS figure")
}

#[tokio::test]
async fn peak_memory_does_not_grow_with_table_size() {
    let db = PgDb::new("memory").await;
    db.exec(
        "CREATE TABLE small (id bigint primary key, v text, at timestamptz);
         INSERT INTO small SELECT g, repeat('x', 100), now() FROM generate_series(1, 50000) g;
         CREATE TABLE big (id bigint primary key, v text, at timestamptz);
         INSERT INTO big SELECT g, repeat('x', 100), now() FROM generate_series(1, 400000) g;",
    )
    .await;
    let mut peaks = Vec::new();
    for (table, format) in [
        ("small", "csv"),
        ("big", "csv"),
        ("small", "parquet"),
        ("big", "parquet"),
    ] {
        let dir = Dir::new("memory");
        dir.write(
            "highwater.yaml",
            &format!(
                "connections:\n  pg: {}\n  lake: file://./lake\nstreams:\n  t:\n    from: pg\n    table: {table}\n    to: lake\n    path: \"t.{format}\"\n    batch_size: 8192\n",
                db.url
            ),
        );
        peaks.push(peak_kib(&dir));
        let size = std::fs::metadata(dir.join(&format!("lake/t.{format}")))
            .unwrap()
            .len();
        assert!(size > 0);
    }
    // 8x the rows (about 45 MB of CSV) may not cost more than 32 MiB extra.
    assert!(
        peaks[1] < peaks[0] + 32 * 1024,
        "CSV: small {} KiB, big {} KiB",
        peaks[0],
        peaks[1]
    );
    assert!(
        peaks[3] < peaks[2] + 32 * 1024,
        "Parquet: small {} KiB, big {} KiB",
        peaks[2],
        peaks[3]
    );
}

/// Peak memory does not grow with the rows' width either: 200 rows of
/// 1 MB each (one default batch of 16,384 rows would hold them all, 200
/// MB) stay within 128 MiB of what 200 rows of 100 bytes cost (debug
/// build: about 90 MiB more, the same for 120 or 300 rows), into files and
/// into both database targets, from PostgreSQL and from MariaDB.
#[tokio::test]
async fn peak_memory_does_not_grow_with_row_width() {
    use mysql_async::prelude::Queryable;
    let pg = PgDb::new("memory_wide").await;
    let my = MyDb::new("memory_wide").await;
    let mut mc = my.connect().await;
    for (table, width) in [("narrow", 100), ("wide", 1_000_000)] {
        pg.exec(&format!(
            "CREATE TABLE {table} (id bigint primary key, v text);
             INSERT INTO {table} SELECT g, repeat(chr(65 + g % 26), {width}) FROM generate_series(1, 200) g;"
        ))
        .await;
        mc.query_drop(format!(
            "CREATE TABLE {table} (id bigint primary key, v longtext);
             INSERT INTO {table} SELECT seq, REPEAT(CHAR(65 + seq % 26), {width}) FROM seq_1_to_200;"
        ))
        .await
        .unwrap();
    }
    let _ = mc.disconnect().await;
    let targets = [
        ("pg", "lake", "    path: \"t.csv\"\n"),
        ("pg", "lake", "    path: \"t.parquet\"\n"),
        (
            "pg",
            "pgdst",
            "    into: copy_t\n    write: merge\n    primary_key: [id]\n",
        ),
        (
            "my",
            "mydst",
            "    into: copy_t\n    write: merge\n    primary_key: [id]\n",
        ),
        ("my", "lake", "    path: \"t.csv\"\n"),
    ];
    for (from, to, how) in targets {
        let mut peaks = Vec::new();
        for table in ["narrow", "wide"] {
            let dir = Dir::new("memory_wide");
            let dst_pg = PgDb::new("memory_wide_dst").await;
            let dst_my = MyDb::new("memory_wide_dst").await;
            dir.write(
                "highwater.yaml",
                &format!(
                    "connections:\n  pg: {}\n  my: {}\n  lake: file://./lake\n  pgdst: {}\n  mydst: {}\nstreams:\n  t:\n    from: {from}\n    table: {table}\n    to: {to}\n{how}",
                    pg.url, my.url, dst_pg.url, dst_my.url
                ),
            );
            peaks.push(peak_kib(&dir));
            // The copy is whole: 200 rows, the wide ones 1 MB each.
            let n = match to {
                "pgdst" => pg_rows(
                    &dst_pg,
                    "SELECT count(*)::text || '/' || sum(length(v))::text FROM copy_t",
                )
                .await[0][0]
                    .clone(),
                "mydst" => {
                    let mut c = dst_my.connect().await;
                    let r: Option<String> = c
                        .query_first("SELECT CONCAT(count(*), '/', sum(length(v))) FROM copy_t")
                        .await
                        .unwrap();
                    r.unwrap()
                }
                _ => {
                    let f = dir.files("lake", "").into_iter().next().unwrap();
                    if f.to_string_lossy().ends_with(".csv") {
                        let (_, rows) = read_csv(&f);
                        format!(
                            "{}/{}",
                            rows.len(),
                            rows.iter().map(|r| r[1].len()).sum::<usize>()
                        )
                    } else {
                        let file = std::fs::File::open(&f).unwrap();
                        let batches: Vec<arrow_array::RecordBatch> =
                            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                                file,
                            )
                            .unwrap()
                            .build()
                            .unwrap()
                            .map(|b| b.unwrap())
                            .collect();
                        let (mut rows, mut len) = (0, 0);
                        for b in &batches {
                            let v = arrow_array::cast::AsArray::as_string::<i32>(
                                b.column_by_name("v").unwrap().as_ref(),
                            );
                            rows += b.num_rows();
                            len += v.iter().map(|x| x.unwrap().len()).sum::<usize>();
                        }
                        format!("{rows}/{len}")
                    }
                }
            };
            let width = if table == "wide" { 1_000_000 } else { 100 };
            assert_eq!(n, format!("200/{}", 200 * width), "{from} → {to} {how}");
        }
        assert!(
            peaks[1] < peaks[0] + 128 * 1024,
            "{from} → {to} {how}: 200 narrow rows {} KiB, 200 rows of 1 MB {} KiB",
            peaks[0],
            peaks[1]
        );
    }
}
