//! Hostile input: passwords with URL-reserved characters never leak, no
//! config panics the process, and `check` catches what `run` would reject.

use crate::util::*;

/// A password with every character a URL parser trips on.
const PW: &str = "p@ss/w:rd#%41";
/// `PW` percent-encoded, as a user writes it inline in a URL.
const PW_ENC: &str = "p%40ss%2Fw%3Ard%23%2541";

/// Every form of `PW` that must never appear, and fragments a misparsed
/// URL would print (host `ss`, database `w:rd#…`).
fn forms() -> Vec<&'static str> {
    vec![
        PW,
        PW_ENC,
        "p%40ss%2fw%3ard%23%2541",
        "p@ss/w:rd#A",
        "p%40ss",
        "ss/w:rd",
        "w:rd#",
        "rd#%41",
        "rd%23",
    ]
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for f in forms() {
        assert!(!text.contains(f), "{what} contains `{f}`:\n{text}");
    }
}

/// Every file under `.highwater` (state.db, -wal, -shm, locks), as bytes.
fn assert_state_clean(dir: &Dir) {
    let mut files = Vec::new();
    let mut stack = vec![dir.join(".highwater")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    assert!(!files.is_empty(), "no state files");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert_no_secret(
            &format!("{}", f.display()),
            &String::from_utf8_lossy(&bytes),
        );
    }
}

/// Run every command that prints or stores something; collect all output.
fn everything(dir: &Dir, env: &[(&str, &str)]) -> String {
    let mut seen = String::new();
    for args in [
        &["check"][..],
        &["check", "--json"],
        &["run"],
        &["run", "--json"],
        &["runs", "--json"],
        &["runs"],
        &["state", "--json"],
        &["-vv", "run"],
    ] {
        let o = dir.hw_env(args, env);
        assert_ne!(o.status.code(), Some(101), "{args:?} panicked");
        seen.push_str(&stdout(&o));
        seen.push_str(&stderr(&o));
    }
    seen
}

fn lake_config(url: &str, stream: &str) -> String {
    format!("connections:\n  db: {url}\n  lake: file://./lake\nstreams:\n{stream}")
}

fn full_stream(name: &str, table: &str) -> String {
    format!(
        "  {name}:\n    from: db\n    table: {table}\n    to: lake\n    path: \"{name}/{name}-{{run_id}}.csv\"\n"
    )
}

#[tokio::test]
async fn postgres_password_with_reserved_characters_never_leaks() {
    let db = PgDb::new("pwpg").await;
    let role = unique("pwrole");
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{PW}';
         CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');
         GRANT SELECT ON t TO {role};"
    ))
    .await;
    let host = "127.0.0.1:5432";
    let env = [("HW_PW", PW)];
    for (tag, url) in [
        (
            "env",
            format!("postgres://{role}:${{HW_PW}}@{host}/{}", db.name),
        ),
        (
            "inline",
            format!("postgres://{role}:{PW_ENC}@{host}/{}", db.name),
        ),
    ] {
        let dir = Dir::new(&format!("pwpg{tag}"));
        dir.write("highwater.yaml", &lake_config(&url, &full_stream("t", "t")));
        let o = dir.hw_env(&["run"], &env);
        assert_code(&o, 0);
        assert_eq!(all_csv_rows(&dir, "lake/t").len(), 2, "{tag}");
        let seen = everything(&dir, &env);
        assert_no_secret(tag, &seen);
        assert_state_clean(&dir);

        // Failing variants: a missing database, an unreachable port, and a
        // missing table; each fails, none prints the password.
        for (what, bad, code) in [
            (
                "nodb",
                url.replace(&db.name, &format!("{}_missing", db.name)),
                1,
            ),
            ("port", url.replace(host, "127.0.0.1:1"), 1),
            ("table", url.clone(), 2),
        ] {
            let dir = Dir::new(&format!("pwpg{tag}{what}"));
            let table = if what == "table" { "missing" } else { "t" };
            dir.write(
                "highwater.yaml",
                &lake_config(&bad, &full_stream("t", table)),
            );
            let o = dir.hw_env(&["run"], &env);
            assert_code(&o, code);
            let seen = everything(&dir, &env);
            assert_no_secret(&format!("{tag} {what}"), &seen);
            assert_state_clean(&dir);
        }
    }
    // The same password as the state store's (shared state) URL.
    let dir = Dir::new("pwpgstate");
    sqlite_source(&dir);
    dir.write(
        "highwater.yaml",
        &format!(
            "state: postgres://{role}:${{HW_PW}}@127.0.0.1:1/{}\n{}",
            db.name,
            lake_config("sqlite://shop.db", &full_stream("t", "t"))
        ),
    );
    for args in [&["check"][..], &["run"], &["runs", "--json"]] {
        let o = dir.hw_env(args, &env);
        assert_code(&o, 1);
        assert_no_secret("state url", &format!("{}{}", stdout(&o), stderr(&o)));
    }
    drop(db);
    let admin = pg_connect(&pg_admin_url()).await;
    let _ = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
}

#[tokio::test]
async fn mysql_password_with_reserved_characters_never_leaks() {
    use mysql_async::prelude::Queryable;
    let db = MyDb::new("pwmy").await;
    let user = unique("pwu");
    let mut c = db.connect().await;
    c.query_drop("CREATE TABLE t (id int primary key, v text)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    c.query_drop(format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{PW}'; GRANT SELECT ON `{}`.* TO '{user}'@'%'",
        db.name
    ))
    .await
    .unwrap();
    let host = "127.0.0.1:3306";
    let env = [("HW_PW", PW)];
    for (tag, url) in [
        (
            "env",
            format!("mysql://{user}:${{HW_PW}}@{host}/{}", db.name),
        ),
        (
            "inline",
            format!("mysql://{user}:{PW_ENC}@{host}/{}", db.name),
        ),
    ] {
        let dir = Dir::new(&format!("pwmy{tag}"));
        dir.write("highwater.yaml", &lake_config(&url, &full_stream("t", "t")));
        let o = dir.hw_env(&["run"], &env);
        assert_code(&o, 0);
        assert_eq!(all_csv_rows(&dir, "lake/t").len(), 2, "{tag}");
        assert_no_secret(tag, &everything(&dir, &env));
        assert_state_clean(&dir);
    }
    // A wrong password: access denied, exit 1, nothing leaks (neither
    // the wrong one nor the right one).
    let dir = Dir::new("pwmywrong");
    let url = format!("mysql://{user}:${{HW_PW}}@{host}/{}", db.name);
    dir.write("highwater.yaml", &lake_config(&url, &full_stream("t", "t")));
    let wrong = "p@ss/w:rd#%42";
    let o = dir.hw_env(&["run"], &[("HW_PW", wrong)]);
    assert_code(&o, 1);
    let seen = everything(&dir, &[("HW_PW", wrong)]);
    assert_no_secret("wrong", &seen);
    assert!(
        !seen.contains("rd#%42") && !seen.contains("%2542"),
        "{seen}"
    );
    assert_state_clean(&dir);
    let _ = c.query_drop(format!("DROP USER '{user}'@'%'")).await;
}

#[test]
fn yaml_errors_print_no_source_line() {
    let dir = Dir::new("yamlerr");
    // A syntax error on the URL's line, and one on the line after it.
    for bad in [
        format!("connections:\n  db: postgres://u:{PW_ENC}@h/db: [\n"),
        format!("connections:\n  db: postgres://u:{PW_ENC}@h/db\n   lake: [\n"),
        format!("connections:\n  db: \"postgres://u:{PW_ENC}@h/db\n"),
        format!("connections:\n  db: [postgres://u:{PW_ENC}@h/db]\nstreams: {{}}\n"),
        format!("concurrency: \"postgres://u:{PW_ENC}@h/db\"\n"),
        format!("connections:\n  db: postgres://u:{PW}@h/db\nstreams:\n  x: [\n"),
    ] {
        dir.write("highwater.yaml", &bad);
        for args in [&["check"][..], &["run"]] {
            let o = dir.hw(args);
            assert_code(&o, 2);
            let err = stderr(&o);
            assert!(err.contains("highwater.yaml:"), "{err}");
            assert_no_secret("yaml error", &format!("{}{err}", stdout(&o)));
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        }
    }
    // An unclosed `${` does not echo the URL.
    dir.write(
        "highwater.yaml",
        &format!("connections:\n  db: postgres://u:{PW_ENC}@h/${{DB\n"),
    );
    let o = dir.hw(&["check"]);
    assert_code(&o, 2);
    assert_no_secret("unclosed", &stderr(&o));
    assert!(stderr(&o).contains("highwater.yaml:2"), "{}", stderr(&o));
}

#[test]
fn inline_password_with_reserved_characters_is_refused_without_echo() {
    let dir = Dir::new("inlineraw");
    dir.write(
        "highwater.yaml",
        &lake_config(
            &format!("postgres://app:{PW}@127.0.0.1:1/db"),
            &full_stream("t", "t"),
        ),
    );
    for args in [&["check"][..], &["run"]] {
        let o = dir.hw(args);
        assert_code(&o, 2);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert_no_secret("raw inline", &all);
        assert!(all.contains("highwater.yaml:2"), "{all}");
        assert!(all.contains("percent-encode"), "{all}");
    }
}

fn sqlite_source(dir: &Dir) {
    let c = rusqlite::Connection::open(dir.join("shop.db")).unwrap();
    c.execute_batch(
        "CREATE TABLE t (id integer primary key, ts text, num integer);
         INSERT INTO t VALUES (1, '2024-01-01 00:00:00', 1), (2, '2024-01-02 00:00:00', 2);",
    )
    .unwrap();
}

fn sqlite_config(stream_extra: &str) -> String {
    format!(
        "connections:\n  shop: sqlite://shop.db\n  lake: file://./lake\nstreams:\n  t:\n    from: shop\n    table: t\n    to: lake\n{stream_extra}"
    )
}

/// A config that must fail `check` and `run` at load: exit 2, one line
/// naming file:line and the stream, no panic, no file written.
#[track_caller]
fn refused_at_load(dir: &Dir, extra: &str, expect: &str) {
    dir.write("highwater.yaml", &sqlite_config(extra));
    for args in [&["check"][..], &["run"]] {
        let o = dir.hw(args);
        assert_code(&o, 2);
        let err = stderr(&o);
        assert!(err.contains("highwater.yaml:5: stream t"), "{err}");
        assert!(err.contains(expect), "{expect}: {err}");
    }
    assert!(dir.files("lake", "").is_empty(), "nothing written");
}

#[test]
fn out_of_range_and_mistyped_values_are_refused_at_load() {
    let dir = Dir::new("badvalues");
    sqlite_source(&dir);
    let wm = "    mode: watermark\n    cursor: ts\n    path: \"t-{run_id}.csv\"\n";
    refused_at_load(&dir, &format!("{wm}    lag: 100000000d\n"), "lag");
    refused_at_load(&dir, &format!("{wm}    lag: 9223372036854775807\n"), "lag");
    refused_at_load(
        &dir,
        &format!("{wm}    lag: 99999999999999999999s\n"),
        "lag",
    );
    refused_at_load(
        &dir,
        &format!("{wm}    change_retention: 100000000d\n"),
        "change_retention",
    );
    // A watermark or change-tracking file path must be unique per run.
    refused_at_load(
        &dir,
        "    mode: watermark\n    cursor: ts\n    path: t.csv\n",
        "{run_id}",
    );
    refused_at_load(
        &dir,
        "    mode: change_tracking\n    primary_key: id\n    path: \"{yyyy}/t.csv\"\n",
        "{run_id}",
    );
    // An unknown file extension without `format:`.
    refused_at_load(&dir, "    path: \"t-{run_id}.xlsx\"\n", "xlsx");
    refused_at_load(&dir, "    path: \"t-{run_id}\"\n", "format");
    // Paths the object store would refuse at run time, or that would mix
    // data with the commit markers.
    refused_at_load(&dir, "    path: \"a//t-{run_id}.csv\"\n", "empty");
    refused_at_load(&dir, "    path: \"./t-{run_id}.csv\"\n", "empty");
    refused_at_load(
        &dir,
        "    path: \"_highwater/t-{run_id}.csv\"\n",
        "_highwater",
    );
    refused_at_load(&dir, "    path: \"a\\tb-{run_id}.csv\"\n", "control");
}

#[test]
fn hostile_stream_names_are_refused_at_load() {
    let dir = Dir::new("badnames");
    sqlite_source(&dir);
    for name in ["../../x", "a/b", ".hidden", "x\\y", "", "a b"] {
        let cfg = format!(
            "connections:\n  shop: sqlite://shop.db\n  lake: file://./lake\nstreams:\n  \"{}\":\n    from: shop\n    table: t\n    to: lake\n    path: \"{{stream}}-{{run_id}}.csv\"\n",
            name.replace('\\', "\\\\")
        );
        dir.write("highwater.yaml", &cfg);
        for args in [&["check"][..], &["run"]] {
            let o = dir.hw(args);
            assert_code(&o, 2);
            assert!(
                stderr(&o).contains("highwater.yaml:5: stream"),
                "{name}: {}",
                stderr(&o)
            );
        }
    }
    assert!(dir.files("", ".csv").is_empty());
}

#[test]
fn lag_of_the_wrong_kind_for_the_cursor_is_refused() {
    let dir = Dir::new("lagkind");
    sqlite_source(&dir);
    // A number on a (text) timestamp cursor, a duration on an integer cursor.
    for (cursor, lag) in [("ts", "100"), ("num", "30s")] {
        dir.write(
            "highwater.yaml",
            &sqlite_config(&format!(
                "    mode: watermark\n    cursor: {cursor}\n    lag: {lag}\n    path: \"t-{{run_id}}.csv\"\n"
            )),
        );
        for args in [&["check"][..], &["run"]] {
            let o = dir.hw(args);
            assert_code(&o, 2);
            let all = format!("{}{}", stdout(&o), stderr(&o));
            assert!(all.contains("stream t"), "{all}");
            assert!(all.contains("highwater.yaml:5"), "{all}");
            assert!(all.contains("lag"), "{all}");
        }
        assert!(dir.files("lake", "").is_empty());
    }
    // The right kinds run.
    dir.write(
        "highwater.yaml",
        &sqlite_config(
            "    mode: watermark\n    cursor: num\n    lag: 1\n    path: \"t-{run_id}.csv\"\n",
        ),
    );
    assert_code(&dir.hw(&["check"]), 0);
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(all_csv_rows(&dir, "lake").len(), 1, "lag 1 holds back id 2");
}

#[tokio::test]
async fn check_rejects_unusable_cursor_columns_on_postgres() {
    let db = PgDb::new("ckcursor").await;
    db.exec("CREATE TABLE t (id int primary key, s text, b boolean, ts timestamptz); INSERT INTO t VALUES (1, 'x', true, now());")
        .await;
    let dir = Dir::new("ckcursor");
    for (extra, expect) in [
        ("    mode: watermark\n    cursor: s\n", "type"),
        ("    mode: watermark\n    cursor: b\n", "type"),
        ("    mode: watermark\n    cursor: nope\n", "nope"),
        (
            "    mode: watermark\n    cursor: ts\n    primary_key: [id, nope]\n",
            "nope",
        ),
        ("    mode: watermark\n    cursor: ts\n    lag: 5\n", "lag"),
    ] {
        dir.write(
            "highwater.yaml",
            &format!(
                "connections:\n  db: {}\n  lake: file://./lake\nstreams:\n  t:\n    from: db\n    table: t\n    to: lake\n    path: \"t-{{run_id}}.csv\"\n{extra}",
                db.url
            ),
        );
        let o = dir.hw(&["check"]);
        assert_code(&o, 2);
        let out = stdout(&o);
        assert!(
            out.contains("stream t (") && out.contains("highwater.yaml:5)"),
            "{out}"
        );
        assert!(out.contains(expect), "{expect}: {out}");
        let o = dir.hw(&["run"]);
        assert_code(&o, 2);
        assert!(dir.files("lake", "").is_empty());
    }
}

#[tokio::test]
async fn check_reports_an_unusable_state_store() {
    let dir = Dir::new("ckstate");
    sqlite_source(&dir);
    let stream = "    path: \"t-{run_id}.csv\"\n";
    // Shared state on a server that does not answer.
    dir.write(
        "highwater.yaml",
        &format!(
            "state: postgres://postgres@127.0.0.1:1/x\n{}",
            sqlite_config(stream)
        ),
    );
    let o = dir.hw(&["check"]);
    assert_code(&o, 1);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("state") && all.contains("highwater.yaml:1"),
        "{all}"
    );
    // A SQLite state path under a regular file: it can never be created.
    dir.write("blocker", "not a folder");
    dir.write(
        "highwater.yaml",
        &format!("state: blocker/state.db\n{}", sqlite_config(stream)),
    );
    let o = dir.hw(&["check"]);
    assert_code(&o, 1);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("state") && all.contains("highwater.yaml:1"),
        "{all}"
    );
    assert_code(&dir.hw(&["run"]), 1);
    // check does not create the state store.
    dir.write("highwater.yaml", &sqlite_config(stream));
    assert_code(&dir.hw(&["check"]), 0);
    assert!(!dir.join(".highwater/state.db").exists());
}

/// Random configs built from the keys and values users write (valid,
/// borderline and hostile): `check` never panics (exit 101).
#[test]
fn random_configs_never_panic_check() {
    let dir = Dir::new("fuzzcli");
    sqlite_source(&dir);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let keys = [
        "mode",
        "cursor",
        "primary_key",
        "lag",
        "path",
        "format",
        "batch_size",
        "schedule",
        "change_retention",
        "table",
        "query",
        "on_null_cursor",
        "into",
        "write",
    ];
    let values = [
        "watermark",
        "change_tracking",
        "full",
        "ts",
        "num",
        "[id, num]",
        "100000000d",
        "-1",
        "9223372036854775807",
        "\"{run_id}.csv\"",
        "\"{\"",
        "\"}{run_id}\"",
        "\"../x-{run_id}.csv\"",
        "0",
        "\"* * * * * * * *\"",
        "\"\"",
        "[]",
        "{}",
        "1e308",
        "\"t-{run_id}.xlsx\"",
        "parquet",
        "skip",
        "\"${NOPE\"",
        "\"t;drop\"",
        "18446744073709551616",
        "merge",
        "~",
        "\"\\u0000\"",
    ];
    for i in 0..40 {
        let mut s = String::from("    from: shop\n    to: lake\n");
        for _ in 0..next(6) {
            s.push_str(&format!(
                "    {}: {}\n",
                keys[next(keys.len())],
                values[next(values.len())]
            ));
        }
        let head = match next(4) {
            0 => format!("concurrency: {}\n", values[next(values.len())]),
            1 => format!("batch_size: {}\n", values[next(values.len())]),
            _ => String::new(),
        };
        let cfg = format!(
            "{head}connections:\n  shop: sqlite://shop.db\n  lake: file://./lake{}\nstreams:\n  t{i}:\n    table: t\n{s}",
            i
        );
        dir.write("highwater.yaml", &cfg);
        let o = dir.hw(&["check"]);
        assert!(
            matches!(o.status.code(), Some(0..=2)),
            "config:\n{cfg}\n--- stdout\n{}\n--- stderr\n{}",
            stdout(&o),
            stderr(&o)
        );
    }
}
