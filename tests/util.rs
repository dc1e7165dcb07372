//! Test helpers: temporary folders, the real binary, unique databases.

#![allow(dead_code)]

/// `conformance!(test_a, test_b)`: each `async fn test_x(b: Backend)` of the
/// calling module run as a test on SQLite, PostgreSQL and MariaDB
/// (`<module>::sqlite::test_x`, …); `conformance!(no_sqlite: …)` on the
/// servers only.
macro_rules! conformance {
    // Only the servers (a suite that needs stored procedures, say).
    (no_sqlite: $($test:ident),* $(,)?) => {
        conformance!(@backend postgres Postgres $($test),*);
        conformance!(@backend mariadb Mariadb $($test),*);
    };
    (@backend $module:ident $variant:ident $($test:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::Backend::$variant).await
                }
            )*
        }
    };
    ($($test:ident),* $(,)?) => {
        conformance!(@backend sqlite Sqlite $($test),*);
        conformance!(@backend postgres Postgres $($test),*);
        conformance!(@backend mariadb Mariadb $($test),*);
    };
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, NoTls};

/// The failpoints of a run's commit protocol, in the order a run meets
/// them (`HIGHWATER_FAILPOINT` aborts the process there, as kill -9 would).
pub const FAILPOINTS: &[&str] = &[
    "engine.before_attempt",
    "engine.after_begin_attempt",
    "engine.mid_write",
    "engine.before_sink_commit",
    "files.after_data_before_marker",
    "engine.after_publish",
    "engine.after_state_commit",
];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name for databases and folders: `hw_<pid>_<n>_<tag>`.
pub fn unique(tag: &str) -> String {
    format!(
        "hw_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        tag
    )
}

/// A temporary folder, removed on drop (kept when HIGHWATER_KEEP_TEST_DIRS is set).
pub struct Dir {
    pub path: PathBuf,
}

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&path).unwrap();
        Dir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    pub fn write(&self, name: &str, text: &str) {
        let p = self.path.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }

    pub fn config(&self) -> PathBuf {
        self.path.join("highwater.yaml")
    }

    /// Run `highwater -c <dir>/highwater.yaml ARGS…`.
    pub fn hw(&self, args: &[&str]) -> Output {
        self.hw_env(args, &[])
    }

    pub fn hw_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run highwater")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        command_in(&self.path, args)
    }

    /// Start highwater with `args`, its output discarded (to be killed).
    pub fn spawn_quiet(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start highwater")
    }

    /// All files under `sub` (recursive) whose name ends with `ext`, sorted.
    pub fn files(&self, sub: &str, ext: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.path.join(sub), &mut out);
        out.retain(|p| {
            p.to_string_lossy().ends_with(ext) && !p.to_string_lossy().contains("/_highwater/")
        });
        out.sort();
        out
    }
}

/// `highwater -c <path>/highwater.yaml ARGS…` run in `path` (for threads
/// that cannot borrow a [`Dir`]).
pub fn command_in(path: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("-c")
        .arg(path.join("highwater.yaml"))
        .args(args)
        .current_dir(path);
    c.env("NO_COLOR", "1");
    c.env_remove("HIGHWATER_FAILPOINT");
    c
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if std::env::var_os("HIGHWATER_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_highwater"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Assert the exit code, printing both streams when it differs.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Parse CSV files (header + rows) into rows of fields; NULL is "".
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = parse_csv(&text);
    let header = if rows.is_empty() {
        vec![]
    } else {
        rows.remove(0)
    };
    (header, rows)
}

/// A small RFC 4180 parser for test assertions.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// All data rows of all CSV files under `sub`, each file's header checked equal.
pub fn all_csv_rows(dir: &Dir, sub: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for f in dir.files(sub, ".csv") {
        out.extend(read_csv(&f).1);
    }
    out
}

pub fn pg_admin_url() -> String {
    std::env::var("HIGHWATER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database, dropped at the end of the test.
pub struct PgDb {
    pub name: String,
    pub url: String,
    pub client: Client,
}

pub async fn pg_connect(url: &str) -> Client {
    let (client, conn) = match tokio_postgres::connect(url, NoTls).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {url}: {e}\nstart it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        ),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl PgDb {
    pub async fn new(tag: &str) -> PgDb {
        let name = unique(tag);
        let admin = pg_connect(&pg_admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = pg_admin_url();
        let url = match base.rsplit_once('/') {
            Some((b, _)) => format!("{b}/{name}"),
            None => base.clone(),
        };
        let client = pg_connect(&url).await;
        PgDb { name, url, client }
    }

    pub async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e} {:?}", e.as_db_error()));
    }

    /// Wait until every transaction that began before now has finished
    /// (in the whole cluster), so a change-tracking run's window covers
    /// every change made so far. Other tests may hold transactions open.
    pub async fn wait_for_older_transactions(&self) {
        let c = self.connect().await;
        let x: i64 = c
            .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
            .await
            .unwrap()
            .get(0);
        let start = std::time::Instant::now();
        loop {
            let xmin: i64 = c
                .query_one(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if xmin > x {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "transactions older than this test's changes stayed open for a minute"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A second connection (for concurrent transactions).
    pub async fn connect(&self) -> Client {
        pg_connect(&self.url).await
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop synchronously with psql so it works from any context.
        let _ = Command::new("psql")
            .args([
                &pg_admin_url(),
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ])
            .output();
    }
}

pub fn my_admin_url() -> String {
    std::env::var("HIGHWATER_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

pub async fn my_connect(url: &str) -> mysql_async::Conn {
    let opts =
        mysql_async::Opts::from_url(url).unwrap_or_else(|e| panic!("bad MariaDB URL {url}: {e}"));
    match mysql_async::Conn::new(opts).await {
        Ok(c) => c,
        Err(e) => panic!(
            "MariaDB is not reachable at {url}: {e}\nstart it with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"
        ),
    }
}

/// A fresh MariaDB/MySQL database, dropped at the end of the test.
pub struct MyDb {
    pub name: String,
    pub url: String,
}

impl MyDb {
    pub async fn new(tag: &str) -> MyDb {
        use mysql_async::prelude::Queryable;
        let name = unique(tag);
        let base = my_admin_url();
        let mut admin = my_connect(&format!("{base}/")).await;
        admin
            .query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        let _ = admin.disconnect().await;
        MyDb {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// A new connection to the database.
    pub async fn connect(&self) -> mysql_async::Conn {
        my_connect(&self.url).await
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let url = my_admin_url();
        let hostport = url
            .rsplit('@')
            .next()
            .unwrap_or("127.0.0.1:3306")
            .trim_end_matches('/');
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
        let _ = Command::new("mysql")
            .args([
                "-uroot",
                "-h",
                host,
                "-P",
                port,
                "-e",
                &format!("DROP DATABASE IF EXISTS `{}`", self.name),
            ])
            .output();
    }
}

/// A source database of one backend, for suites run on every backend:
/// `postgres`, `mariadb`, or `sqlite` (the file `src.db` in the test's
/// folder, named `sqlite://src.db` in its config).
pub enum SrcDb {
    Pg(PgDb),
    My(MyDb),
    Lite(PathBuf),
}

impl SrcDb {
    pub async fn new(backend: &str, dir: &Dir, tag: &str) -> SrcDb {
        match backend {
            "postgres" => SrcDb::Pg(PgDb::new(tag).await),
            "mariadb" => SrcDb::My(MyDb::new(tag).await),
            _ => {
                let p = dir.join("src.db");
                rusqlite::Connection::open(&p).unwrap();
                SrcDb::Lite(p)
            }
        }
    }

    /// The connection URL for `highwater.yaml`.
    pub fn url(&self) -> String {
        match self {
            SrcDb::Pg(db) => db.url.clone(),
            SrcDb::My(db) => db.url.clone(),
            SrcDb::Lite(_) => "sqlite://src.db".into(),
        }
    }

    /// Run `sql` (one or more statements); panics with the statement on error.
    pub async fn exec(&self, sql: &str) {
        use mysql_async::prelude::Queryable;
        match self {
            SrcDb::Pg(db) => db.exec(sql).await,
            SrcDb::My(db) => {
                let mut c = db.connect().await;
                c.query_drop(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.disconnect().await;
            }
            SrcDb::Lite(p) => rusqlite::Connection::open(p)
                .unwrap()
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// Every value as text (`NULL` for null), rows in the query's order.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        use mysql_async::prelude::Queryable;
        match self {
            SrcDb::Lite(p) => {
                let c = rusqlite::Connection::open(p).unwrap();
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = st.column_count();
                st.query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            use rusqlite::types::ValueRef as V;
                            Ok(match r.get_ref(i)? {
                                V::Null => "NULL".to_string(),
                                V::Integer(x) => x.to_string(),
                                V::Real(x) => x.to_string(),
                                V::Text(t) | V::Blob(t) => String::from_utf8_lossy(t).into(),
                            })
                        })
                        .collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            }
            SrcDb::Pg(db) => pg_rows(db, sql).await,
            SrcDb::My(db) => {
                let mut c = db.connect().await;
                let rows: Vec<mysql_async::Row> =
                    c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.disconnect().await;
                rows.into_iter()
                    .map(|r| {
                        r.unwrap()
                            .into_iter()
                            .map(|v| match v {
                                mysql_async::Value::NULL => "NULL".to_string(),
                                mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into(),
                                mysql_async::Value::Int(x) => x.to_string(),
                                mysql_async::Value::UInt(x) => x.to_string(),
                                other => other.as_sql(true),
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }
}

/// A Data Factory test folder: `src.db` (SQLite) holding `t (id, name)` with
/// (1,a) (2,b) (3,c), and a `highwater.yaml` with the connections `Db` (that
/// file), `Lake` (`./lake`) and `extra` (more YAML lines under `connections:`).
pub fn sqlite_factory(tag: &str, extra: &str) -> Dir {
    let dir = Dir::new(tag);
    let db = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE t (id INTEGER, name TEXT); INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c');",
    )
    .unwrap();
    dir.write(
        "highwater.yaml",
        &format!("connections:\n  Db: sqlite://src.db\n  Lake: file://./lake\n{extra}"),
    );
    dir
}

/// `highwater serve --listen 127.0.0.1:0` in `dir`: the child and the
/// address it printed on its first line; the rest of stdout is drained.
pub fn spawn_serve(dir: &Dir) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = dir
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// One plain HTTP/1.1 request: (status code, body).
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|b| b.1.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The environment that points highwater at the emulators `.ci/run`
/// starts: Azurite for `az`, moto for `s3`; nothing for `file`.
pub fn object_store_env(kind: &str) -> Vec<(&'static str, &'static str)> {
    match kind {
        "file" => vec![],
        "az" => vec![("AZURE_STORAGE_USE_EMULATOR", "true")],
        _ => vec![
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5555"),
        ],
    }
}

/// The Python of `.ci/run`'s virtualenv (boto3, the Azure SDK).
pub fn python() -> String {
    std::env::var("HIGHWATER_TEST_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/highwater-ci/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

/// `tests/objstore.py CMD az|s3 NAME [KEY]` with `stdin`: create, dump,
/// put or delete containers and objects in Azurite and moto.
pub fn objstore(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/objstore.py");
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run `bash .ci/run` once to install the emulators",
                python()
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "objstore {args:?} failed (is the emulator running? `bash .ci/run` starts Azurite and moto):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Every value of `sql`'s rows as text (`NULL` for null).
pub async fn pg_rows(db: &PgDb, sql: &str) -> Vec<Vec<String>> {
    db.client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
