//! `highwater init --from URL` (issue 13): discover a real database with
//! awkward names, write a config that `check` accepts and `run` copies
//! correctly, and never write a password.

use crate::util::*;

pub(crate) enum Backend {
    Sqlite,
    Postgres,
    Mariadb,
}

/// Tables with awkward names, by backend:
/// - `Order Items` ("Item Id" key, "Last Modified" time) → watermark
/// - `select` (id key, "from" text) → change_tracking
/// - `we"ird` (no key) → full
/// - `prénoms` (id key, updated_at, created_at) → watermark on updated_at
/// - `MixedCase` (ID key, RowVersion integer) → watermark on RowVersion
fn ddl(b: &Backend) -> String {
    let (q, time, int, text) = match b {
        Backend::Sqlite => ('"', "TEXT", "INTEGER", "TEXT"),
        Backend::Postgres => ('"', "timestamptz", "integer", "text"),
        Backend::Mariadb => ('`', "datetime(6)", "integer", "varchar(50)"),
    };
    let i = |n: &str| format!("{q}{n}{q}");
    let weird = match b {
        Backend::Mariadb => "`we\"ird`".to_string(),
        _ => "\"we\"\"ird\"".to_string(),
    };
    format!(
        "CREATE TABLE {oi} ({iid} {int} PRIMARY KEY, {lm} {time}, qty {int});
         INSERT INTO {oi} VALUES (1, '2024-01-01 10:00:00', 3), (2, '2024-01-02 10:00:00', 4);
         CREATE TABLE {sel} (id {int} PRIMARY KEY, {from} {text});
         INSERT INTO {sel} VALUES (1, 'x'), (2, 'y');
         CREATE TABLE {weird} (a {text}, b {text});
         INSERT INTO {weird} VALUES ('p', 'q');
         CREATE TABLE {pre} (id {int} PRIMARY KEY, nom {text}, updated_at {time}, created_at {time});
         INSERT INTO {pre} VALUES (1, 'é', '2024-01-01 00:00:00', '2023-01-01 00:00:00');
         CREATE TABLE {mc} ({id} {int} PRIMARY KEY, {rv} bigint);
         INSERT INTO {mc} VALUES (1, 5);",
        oi = i("Order Items"),
        iid = i("Item Id"),
        lm = i("Last Modified"),
        sel = i("select"),
        from = i("from"),
        pre = i("prénoms"),
        mc = i("MixedCase"),
        id = i("ID"),
        rv = i("RowVersion"),
    )
}

async fn source(b: &Backend, dir: &Dir) -> SrcDb {
    let name = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::Mariadb => "mariadb",
    };
    let db = SrcDb::new(name, dir, "initfrom").await;
    if let SrcDb::Pg(pg) = &db {
        // A schema with a space; tables outside it are not proposed.
        pg.exec(
            "CREATE SCHEMA \"Sales Dept\"; CREATE TABLE public.elsewhere (id int primary key);",
        )
        .await;
        pg.exec(&format!("SET search_path = \"Sales Dept\"; {}", ddl(b)))
            .await;
    } else {
        db.exec(&ddl(b)).await;
    }
    db
}

/// The stream block `name:` of the written config (up to the next blank line).
fn block<'a>(yaml: &'a str, name: &str) -> &'a str {
    let start = yaml
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no stream {name} in\n{yaml}"));
    let rest = &yaml[start + 1..];
    &rest[..rest.find("\n\n").unwrap_or(rest.len())]
}

fn rows(dir: &Dir, stream: &str) -> Vec<Vec<String>> {
    let mut r = all_csv_rows(dir, &format!("lake/{stream}"));
    r.sort();
    r
}

async fn discovers_awkward_names_and_runs(b: Backend) {
    let dir = Dir::new("init_from");
    let db = source(&b, &dir).await;
    let mut args: Vec<String> = vec!["init".into(), "--from".into()];
    let secret = "s3cr3t-Pw";
    let mut env: Vec<(&str, &str)> = vec![];
    match &b {
        // Trust authentication: the password is accepted and ignored.
        Backend::Postgres => {
            let url = db
                .url()
                .replacen("postgres@", &format!("postgres:{secret}@"), 1);
            args.extend([url, "--schema".into(), "Sales Dept".into()]);
            env.push(("SOURCE_PASSWORD", secret));
        }
        _ => args.push(db.url()),
    }
    args.extend(["--to".into(), "file://./lake".into()]);
    args.extend(["--format".into(), "csv".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = dir.hw(&argv);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("5 stream(s) (3 watermark, 1 change_tracking, 1 full)"),
        "{out}"
    );
    let yaml = std::fs::read_to_string(dir.config()).unwrap();
    assert!(!yaml.contains(secret), "no secret in the file:\n{yaml}");
    if matches!(b, Backend::Postgres) {
        assert!(yaml.contains("${SOURCE_PASSWORD}"), "{yaml}");
        assert!(out.contains("SOURCE_PASSWORD"), "{out}");
        assert!(
            !yaml.contains("elsewhere"),
            "--schema limits discovery:\n{yaml}"
        );
    }

    let oi = block(&yaml, "Order_Items");
    assert!(oi.contains("mode: watermark"), "{oi}");
    assert!(oi.contains("cursor: \"Last Modified\""), "{oi}");
    assert!(oi.contains("primary_key: [\"Item Id\"]"), "{oi}");
    let sel = block(&yaml, "select");
    assert!(sel.contains("mode: change_tracking"), "{sel}");
    assert!(sel.contains("primary_key: [id]"), "{sel}");
    let weird = block(&yaml, "we_ird");
    assert!(weird.contains("mode: full"), "{weird}");
    let pre = block(&yaml, "\"prénoms\"");
    assert!(pre.contains("cursor: updated_at"), "{pre}");
    assert!(
        yaml.contains("created_at is not proposed") || !yaml.contains("created_at"),
        "{yaml}"
    );
    let mc = block(&yaml, "MixedCase");
    assert!(mc.contains("cursor: RowVersion"), "{mc}");
    assert!(mc.contains("primary_key: [ID]"), "{mc}");

    // Refuses to overwrite.
    let o = dir.hw(&argv);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));

    let o = dir.hw_env(&["check"], &env);
    assert_code(&o, 0);
    let o = dir.hw_env(&["run"], &env);
    assert_code(&o, 0);
    let ids = |stream: &str| -> Vec<String> {
        rows(&dir, stream)
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    };
    assert_eq!(ids("Order_Items"), ["1", "2"]);
    assert_eq!(ids("select"), ["1", "2"]);
    assert_eq!(rows(&dir, "we_ird"), [["p", "q"]]);
    assert_eq!(ids("prénoms"), ["1"]);
    assert_eq!(ids("MixedCase"), ["1"]);

    // Changes: the watermark and change-tracking streams deliver exactly them.
    let (q, setup) = match b {
        Backend::Mariadb => ('`', ""),
        Backend::Postgres => ('"', "SET search_path = \"Sales Dept\";"),
        Backend::Sqlite => ('"', ""),
    };
    db.exec(&format!(
        "{setup} INSERT INTO {q}Order Items{q} VALUES (3, '2024-02-01 10:00:00', 5);
         UPDATE {q}select{q} SET {q}from{q} = 'changed' WHERE id = 2;"
    ))
    .await;
    if let SrcDb::Pg(pg) = &db {
        pg.wait_for_older_transactions().await;
    }
    let o = dir.hw_env(&["run"], &env);
    assert_code(&o, 0);
    assert_eq!(
        ids("Order_Items"),
        ["1", "2", "3"],
        "only the new row added"
    );
    let sel = rows(&dir, "select");
    assert_eq!(sel.len(), 3, "{sel:?}");
    assert!(
        sel.iter().any(|r| r[0] == "2" && r[1] == "changed"),
        "{sel:?}"
    );
}

conformance!(discovers_awkward_names_and_runs);

#[test]
fn init_from_filters_tables_and_targets_a_database() {
    let dir = Dir::new("init_from_filter");
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, modified_on TEXT);
         INSERT INTO orders VALUES (1, '2024-01-01 00:00:00'), (2, '2024-01-02 00:00:00');
         CREATE TABLE customers (id INTEGER PRIMARY KEY);
         CREATE TABLE order_lines (id INTEGER PRIMARY KEY);",
    )
    .unwrap();
    let o = dir.hw(&[
        "init",
        "--from",
        "sqlite://src.db",
        "--tables",
        "ORDERS,nothing*",
        "--to",
        "sqlite://dwh.db",
    ]);
    assert_code(&o, 0);
    let yaml = std::fs::read_to_string(dir.config()).unwrap();
    assert!(yaml.contains("  orders:\n"), "{yaml}");
    assert!(
        !yaml.contains("customers") && !yaml.contains("order_lines"),
        "{yaml}"
    );
    assert!(
        yaml.contains("into: orders") && yaml.contains("write: merge"),
        "{yaml}"
    );
    assert!(yaml.contains("cursor: modified_on"), "{yaml}");
    assert_code(&dir.hw(&["run"]), 0);
    let dwh = rusqlite::Connection::open(dir.join("dwh.db")).unwrap();
    let n: i64 = dwh
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);

    // Nothing matches: nothing written, the reason given.
    let o = dir.hw(&[
        "init",
        "--force",
        "--from",
        "sqlite://src.db",
        "--tables",
        "zz*",
    ]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("no table matching zz*"),
        "{}",
        stderr(&o)
    );
}

/// The acceptance path: a PostgreSQL database with a password in
/// the URL → `init --from … --to s3://…` → check → run: Parquet objects in
/// S3 (moto), the password only ever in the environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_parquet_in_s3() {
    let pg = PgDb::new("init_s3").await;
    pg.exec(
        "CREATE TABLE orders (id int PRIMARY KEY, amount int, updated_at timestamptz);
         INSERT INTO orders VALUES (1, 10, '2024-01-01 00:00:00+00'), (2, 20, '2024-01-02 00:00:00+00');
         CREATE TABLE customers (id int PRIMARY KEY, name text);
         INSERT INTO customers VALUES (1, 'Ada');",
    )
    .await;
    let bucket = unique("init-s3").replace('_', "-");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/objstore.py");
    let python = std::env::var("HIGHWATER_TEST_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/highwater-ci/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let objstore = |cmd: &str| {
        let o = std::process::Command::new(&python)
            .args([script, cmd, "s3", &bucket])
            .output()
            .expect("python for tests/objstore.py (bash .ci/run installs it)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let dir = Dir::new("init_s3");
    let url = pg.url.replacen("postgres@", "postgres:pg-Secret-9@", 1);
    let to = format!("s3://{bucket}/raw");
    let o = dir.hw(&[
        "init",
        "--from",
        &url,
        "--to",
        &to,
        "--schedule",
        "*/15 * * * *",
    ]);
    assert_code(&o, 0);
    let yaml = std::fs::read_to_string(dir.config()).unwrap();
    assert_eq!(
        yaml.matches("    schedule: \"*/15 * * * *\"").count(),
        2,
        "{yaml}"
    );
    assert!(!yaml.contains("pg-Secret-9"), "{yaml}");
    assert!(
        yaml.contains("AWS_ENDPOINT_URL"),
        "cloud credentials named:\n{yaml}"
    );
    assert!(yaml.contains("orders-{run_id}.parquet"), "{yaml}");
    let env = [
        ("SOURCE_PASSWORD", "pg-Secret-9"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5555"),
    ];
    // The bucket does not exist yet: check says so in one line.
    let o = dir.hw_env(&["check"], &env);
    assert_code(&o, 1);
    assert!(
        stdout(&o).contains(&format!("bucket `{bucket}` does not exist")),
        "{}",
        stdout(&o)
    );
    objstore("create");
    assert_code(&dir.hw_env(&["check"], &env), 0);
    let o = dir.hw_env(&["run"], &env);
    assert_code(&o, 0);
    let objects: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&objstore("dump")).unwrap();
    let data: Vec<&String> = objects
        .keys()
        .filter(|k| !k.contains("_highwater/"))
        .collect();
    assert_eq!(data.len(), 2, "{data:?}");
    assert!(
        data.iter()
            .any(|k| k.starts_with("raw/orders/orders-") && k.ends_with(".parquet")),
        "{data:?}"
    );
    assert!(
        objects.values().all(|v| !v.contains("pg-Secret-9")),
        "no secret in any object"
    );
    let o = dir.hw_env(&["runs"], &env);
    assert!(stdout(&o).contains("3 rows"), "{}", stdout(&o));
}
