//! A small delta into an existing PostgreSQL table (one batch of at most
//! 1,000 rows) is applied by one statement instead of through a staging
//! table. The same rows must arrive either way: each test copies one
//! source into two identical targets, one stream with the default batch
//! size (the one-statement path) and one with `batch_size: 1` (two or more
//! batches: staging), and compares them with each other and with the
//! values expected, including what the targets' type modifiers do (numeric
//! scale, timestamp precision, varchar length) and the errors they raise.

use crate::util::*;

/// The target, created before the first run: modifiers that round
/// (`numeric(8,2)`, `timestamptz(0)`), refuse (`varchar(5)`), and a column
/// the source does not have.
const TARGET: &str = "(id int PRIMARY KEY, v varchar(5), n numeric(8,2), ts timestamptz(0), j jsonb, b bytea, ver int, extra text DEFAULT 'kept')";

struct Pair {
    dir: Dir,
    src: PgDb,
    dst: PgDb,
}

impl Pair {
    async fn new(tag: &str, mode: &str, write: &str, source: &str) -> Pair {
        let dir = Dir::new(tag);
        let src = PgDb::new(&format!("{tag}s")).await;
        let dst = PgDb::new(&format!("{tag}d")).await;
        src.exec(source).await;
        dst.exec(&format!(
            "CREATE TABLE one {TARGET}; CREATE TABLE staged {TARGET}"
        ))
        .await;
        let cursor = match mode {
            "watermark" => "    cursor: ver\n",
            _ => "",
        };
        let mut yaml = format!(
            "connections:\n  src: {}\n  dst: {}\nstreams:\n",
            src.url, dst.url
        );
        for (name, batch) in [("one", 16384), ("staged", 1)] {
            yaml.push_str(&format!(
                "  {name}:\n    from: src\n    table: src\n    mode: {mode}\n{cursor}    primary_key: [id]\n    batch_size: {batch}\n    to: dst\n    into: {name}\n    write: {write}\n"
            ));
        }
        dir.write("highwater.yaml", &yaml);
        Pair { dir, src, dst }
    }

    /// Run both streams; the debug log of the `one` stream's run.
    fn run(&self, code: i32) -> (String, String) {
        let env = [("HIGHWATER_LOG", "debug")];
        let one = self.dir.hw_env(&["run", "one"], &env);
        assert_code(&one, code);
        let staged = self.dir.hw_env(&["run", "staged"], &env);
        assert_code(&staged, code);
        (stderr(&one), stderr(&staged))
    }

    /// Both targets' rows as text, by id.
    async fn rows(&self) -> (Vec<Vec<Option<String>>>, Vec<Vec<Option<String>>>) {
        let read = async |t: &str| -> Vec<Vec<Option<String>>> {
            self.dst
                .client
                .query(
                    &format!(
                        "SELECT id::text, v, n::text, (ts AT TIME ZONE 'UTC')::text, j::text, encode(b, 'hex'), ver::text, extra FROM {t} ORDER BY id"
                    ),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                .collect()
        };
        (read("one").await, read("staged").await)
    }

    /// Both targets hold `want`, and the same rows.
    async fn assert_rows(&self, what: &str, want: &[&[Option<&str>]]) {
        let (one, staged) = self.rows().await;
        assert_eq!(one, staged, "{what}: the two paths differ");
        let want: Vec<Vec<Option<String>>> = want
            .iter()
            .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
            .collect();
        assert_eq!(one, want, "{what}");
    }
}

/// The one-statement path ran (no staging table) for `one`, and staging
/// for `staged`.
fn assert_paths(one: &str, staged: &str) {
    assert!(
        one.contains("Holding a first small batch") && !one.contains("CREATE TEMPORARY TABLE"),
        "the small delta went through staging:\n{one}"
    );
    assert!(
        staged.contains("CREATE TEMPORARY TABLE"),
        "the multi-batch delta did not stage:\n{staged}"
    );
}

const SOURCE: &str = "CREATE TABLE src (id int PRIMARY KEY, v text, n numeric, ts timestamptz, j jsonb, b bytea, ver int);
INSERT INTO src VALUES (1, 'a', 1, '2024-01-01 00:00:00+00', '{\"k\": 1}', '\\x00', 1),
                       (2, 'b', 2, '2024-01-02 00:00:00+00', NULL, NULL, 2),
                       (3, NULL, NULL, NULL, NULL, NULL, 3);";

#[tokio::test]
async fn a_watermark_delta_merges_as_staging_does() {
    let p = Pair::new("smallwm", "watermark", "merge", SOURCE).await;
    p.run(0);
    // Updates and an insert: values that the target's modifiers round, and
    // text that needs escaping in COPY's text format.
    p.src
        .exec(
            "UPDATE src SET n = 1.005, ts = '2024-05-05 10:00:00.6+02', v = E'\\t\\\\\"', j = '[\"a\\tb\", {\"x\": null}]', ver = 10 WHERE id = 2;
             INSERT INTO src VALUES (4, 'abcde', -123456.789, '1999-12-31 23:59:59.4+00', '\"s\"', '\\x5c4e0a', 11),
                                    (5, '', 0, NULL, 'null', '\\x', 12);",
        )
        .await;
    let (one, staged) = p.run(0);
    assert_paths(&one, &staged);
    let r = |v: [Option<&'static str>; 8]| v;
    p.assert_rows(
        "after a small delta",
        &[
            &r([
                Some("1"),
                Some("a"),
                Some("1.00"),
                Some("2024-01-01 00:00:00"),
                Some("{\"k\": 1}"),
                Some("00"),
                Some("1"),
                Some("kept"),
            ]),
            &r([
                Some("2"),
                Some("\t\\\""),
                Some("1.01"),
                Some("2024-05-05 08:00:01"),
                Some("[\"a\\tb\", {\"x\": null}]"),
                None,
                Some("10"),
                Some("kept"),
            ]),
            &r([
                Some("3"),
                None,
                None,
                None,
                None,
                None,
                Some("3"),
                Some("kept"),
            ]),
            &r([
                Some("4"),
                Some("abcde"),
                Some("-123456.79"),
                Some("1999-12-31 23:59:59"),
                Some("\"s\""),
                Some("5c4e0a"),
                Some("11"),
                Some("kept"),
            ]),
            &r([
                Some("5"),
                Some(""),
                Some("0.00"),
                None,
                Some("null"),
                Some(""),
                Some("12"),
                Some("kept"),
            ]),
        ],
    )
    .await;
}

/// A value the target refuses fails both paths alike: exit 1, the error
/// names it, nothing is written and the position stays (the next run
/// copies the row once it fits).
#[tokio::test]
async fn a_refused_value_fails_the_run_and_keeps_the_position() {
    let p = Pair::new("smallerr", "watermark", "merge", SOURCE).await;
    p.run(0);
    let before = p.rows().await;
    p.src
        .exec("UPDATE src SET v = 'toolong', ver = 20 WHERE id = 1; UPDATE src SET v = 'ok', ver = 21 WHERE id = 3")
        .await;
    let (one, staged) = p.run(1);
    for log in [&one, &staged] {
        assert!(log.contains("value too long"), "{log}");
    }
    assert_eq!(p.rows().await, before, "a failed run wrote rows");
    p.src.exec("UPDATE src SET v = 'fits' WHERE id = 1").await;
    p.run(0);
    let (one, staged) = p.rows().await;
    assert_eq!(one, staged, "after the fix: the two paths differ");
    assert_eq!(one[0][1].as_deref(), Some("fits"));
    assert_eq!(one[2][1].as_deref(), Some("ok"));
}

/// Change tracking: deletes, updates and a key deleted and inserted again
/// between runs, in one small batch.
#[tokio::test]
async fn change_tracking_deletes_and_updates_in_one_statement() {
    let p = Pair::new("smallct", "change_tracking", "merge", SOURCE).await;
    p.run(0);
    p.src
        .exec(
            "DELETE FROM src WHERE id = 1; UPDATE src SET v = 'new', n = 2.499 WHERE id = 2;
             DELETE FROM src WHERE id = 3; INSERT INTO src VALUES (3, 'back', 3, NULL, NULL, NULL, 30);
             INSERT INTO src VALUES (6, 'six', 6, NULL, NULL, NULL, 6);",
        )
        .await;
    p.src.wait_for_older_transactions().await;
    let (one, staged) = p.run(0);
    assert_paths(&one, &staged);
    let r = |v: [Option<&'static str>; 8]| v;
    p.assert_rows(
        "after deletes and updates",
        &[
            &r([
                Some("2"),
                Some("new"),
                Some("2.50"),
                Some("2024-01-02 00:00:00"),
                None,
                None,
                Some("2"),
                Some("kept"),
            ]),
            &r([
                Some("3"),
                Some("back"),
                Some("3.00"),
                None,
                None,
                None,
                Some("30"),
                Some("kept"),
            ]),
            &r([
                Some("6"),
                Some("six"),
                Some("6.00"),
                None,
                None,
                None,
                Some("6"),
                Some("kept"),
            ]),
        ],
    )
    .await;
}

/// An append target gets every row of the delta, in order, once.
#[tokio::test]
async fn an_append_delta_adds_each_row_once() {
    let source = "CREATE TABLE src (id int PRIMARY KEY, v text, n numeric, ts timestamptz, j jsonb, b bytea, ver int);
                  INSERT INTO src VALUES (1, 'a', 1, NULL, NULL, NULL, 1);";
    let p = Pair::new("smallapp", "watermark", "append", source).await;
    for t in ["one", "staged"] {
        p.dst
            .exec(&format!("ALTER TABLE {t} DROP CONSTRAINT {t}_pkey"))
            .await;
    }
    p.run(0);
    p.src
        .exec("UPDATE src SET v = 'a2', ver = 5 WHERE id = 1; INSERT INTO src VALUES (2, 'b', 2.345, NULL, NULL, NULL, 6)")
        .await;
    let (one, staged) = p.run(0);
    assert_paths(&one, &staged);
    let (rows, _) = p.rows().await;
    let mut got: Vec<(Option<&str>, Option<&str>)> = rows
        .iter()
        .map(|r| (r[0].as_deref(), r[1].as_deref()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (Some("1"), Some("a")),
            (Some("1"), Some("a2")),
            (Some("2"), Some("b"))
        ]
    );
    let (one, staged) = p.rows().await;
    let sorted = |mut v: Vec<Vec<Option<String>>>| {
        v.sort();
        v
    };
    assert_eq!(sorted(one), sorted(staged), "the two paths differ");
}

/// A key twice in one small delta: its last row wins, as in staging.
#[tokio::test]
async fn a_key_twice_in_one_delta_keeps_its_last_row() {
    let source = "CREATE TABLE base (id int PRIMARY KEY, v text, n numeric, ts timestamptz, j jsonb, b bytea, ver int);
                  INSERT INTO base VALUES (1, 'a', 1, NULL, NULL, NULL, 1), (2, 'b', 2, NULL, NULL, NULL, 2);
                  CREATE VIEW src AS SELECT id, v, n, ts, j, b, ver FROM (
                    SELECT *, 0 AS o FROM base
                    UNION ALL SELECT id, 'last', 99, ts, j, b, ver, 1 FROM base WHERE id = 2) x
                  ORDER BY o, id;";
    let p = Pair::new("smalldup", "watermark", "merge", source).await;
    p.run(0);
    p.src
        .exec("UPDATE base SET v = 'first', ver = 7 WHERE id = 2; UPDATE base SET v = 'one', ver = 8 WHERE id = 1")
        .await;
    let (one, staged) = p.run(0);
    assert_paths(&one, &staged);
    let r = |v: [Option<&'static str>; 8]| v;
    p.assert_rows(
        "a repeated key",
        &[
            &r([
                Some("1"),
                Some("one"),
                Some("1.00"),
                None,
                None,
                None,
                Some("8"),
                Some("kept"),
            ]),
            &r([
                Some("2"),
                Some("last"),
                Some("99.00"),
                None,
                None,
                None,
                Some("7"),
                Some("kept"),
            ]),
        ],
    )
    .await;
}

/// A run logs in once per database: the source's describe, read and
/// settle share one session, and the target's login, started before the
/// state store opens, is the one `begin` uses (each login is a server
/// process's start, a large part of a small delta's time).
#[tokio::test]
async fn a_run_logs_in_once_per_database() {
    let p = Pair::new("smalllogin", "watermark", "merge", SOURCE).await;
    p.run(0);
    p.src
        .exec("UPDATE src SET v = 'x', ver = 40 WHERE id = 1")
        .await;
    let sessions = async |db: &PgDb| -> i64 {
        db.client
            .query_one(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    };
    let (src0, dst0) = (sessions(&p.src).await, sessions(&p.dst).await);
    assert_code(&p.dir.hw(&["run", "one"]), 0);
    let (src1, dst1) = (sessions(&p.src).await, sessions(&p.dst).await);
    assert_eq!(
        (src1 - src0, dst1 - dst0),
        (1, 1),
        "logins: (source, target)"
    );
    let (one, _) = p.rows().await;
    assert_eq!(one[0][1].as_deref(), Some("x"));
}
