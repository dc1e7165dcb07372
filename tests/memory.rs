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
