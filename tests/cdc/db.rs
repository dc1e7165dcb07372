//! The two sources of `mode: cdc`, behind one [`CdcDb`]: a database on a
//! PostgreSQL cluster with `wal_level=logical` (127.0.0.1:5434, or
//! `HIGHWATER_TEST_PG_LOGICAL`; the lossy cluster 127.0.0.1:5435 or
//! `HIGHWATER_TEST_PG_LOSSY` keeps 1 MB of WAL per slot) and a database on
//! a MariaDB with the binary log (127.0.0.1:3307, or
//! `HIGHWATER_TEST_MARIADB_BINLOG`). `.ci/run` starts all three.
//!
//! MariaDB tests share the server's binary log: each holds a shared lock
//! on a file while it runs, and a test that purges or resets the binlog
//! holds it exclusively, so no other test's position is purged under it.

use std::collections::BTreeMap;
use std::process::Command;

use mysql_async::prelude::Queryable;

use crate::util::*;

/// The backend a suite test runs on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    Postgres,
    Mariadb,
}

/// A table's rows as text, by id: `id -> [v, n]`.
pub type Rows = BTreeMap<String, Vec<Option<String>>>;

fn logical_admin_url() -> String {
    std::env::var("HIGHWATER_TEST_PG_LOGICAL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5434/postgres".into())
}

fn lossy_admin_url() -> String {
    std::env::var("HIGHWATER_TEST_PG_LOSSY")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5435/postgres".into())
}

pub fn binlog_admin_url() -> String {
    std::env::var("HIGHWATER_TEST_MARIADB_BINLOG")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3307".into())
}

/// An administrator's connection to the binlog server.
pub async fn binlog_admin() -> mysql_async::Conn {
    let url = binlog_admin_url();
    let opts = mysql_async::Opts::from_url(&url).unwrap();
    match mysql_async::Conn::new(opts).await {
        Ok(c) => c,
        Err(e) => panic!(
            "the MariaDB with the binary log is not reachable at {url}: {e}\nstart it with the \
             'A second MariaDB with the binary log' section of .ci/run"
        ),
    }
}

/// `mysql -uroot -h HOST -P PORT -e SQL` on the binlog server (for drops
/// that must also run while a test panics).
pub fn binlog_mysql(sql: &str) {
    let url = binlog_admin_url();
    let hostport = url.rsplit('@').next().unwrap_or("127.0.0.1:3307");
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3307"));
    let _ = Command::new("mysql")
        .args(["-uroot", "-h", host, "-P", port, "-e", sql])
        .output();
}

/// A fresh database on the backend's log-enabled server, dropped at the
/// end (with its replication slots on PostgreSQL).
pub struct CdcDb {
    pub backend: Backend,
    pub name: String,
    pub url: String,
    /// PostgreSQL: the cluster's `postgres` database, which drops this one.
    admin: String,
    _lock: Option<std::fs::File>,
}

impl CdcDb {
    pub async fn new(backend: Backend, tag: &str) -> CdcDb {
        match backend {
            Backend::Postgres => Self::pg(&logical_admin_url(), tag).await,
            Backend::Mariadb => Self::my(tag, false).await,
        }
    }

    /// A database whose log the test may lose: on PostgreSQL on the lossy
    /// cluster, on MariaDB alone on the binlog (it purges it).
    pub async fn losable(backend: Backend, tag: &str) -> CdcDb {
        match backend {
            Backend::Postgres => Self::pg(&lossy_admin_url(), tag).await,
            Backend::Mariadb => Self::my(tag, true).await,
        }
    }

    /// On MariaDB: alone on the server's binlog (for purging or resetting it).
    pub async fn exclusive(tag: &str) -> CdcDb {
        Self::my(tag, true).await
    }

    async fn pg(admin_url: &str, tag: &str) -> CdcDb {
        let name = unique(tag);
        let admin = pg_connect(admin_url).await;
        let level: String = admin.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
        assert_eq!(
            level, "logical",
            "the PostgreSQL at {admin_url} must run with wal_level=logical (see .ci/run)"
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((b, _)) => format!("{b}/{name}"),
            None => admin_url.to_string(),
        };
        CdcDb {
            backend: Backend::Postgres,
            name,
            url,
            admin: admin_url.to_string(),
            _lock: None,
        }
    }

    async fn my(tag: &str, exclusive: bool) -> CdcDb {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("highwater-binlog-tests.lock"))
            .unwrap();
        let l = lock.try_clone().unwrap();
        tokio::task::spawn_blocking(move || {
            if exclusive {
                l.lock().unwrap()
            } else {
                l.lock_shared().unwrap()
            }
        })
        .await
        .unwrap();
        let name = unique(tag);
        let mut a = binlog_admin().await;
        let (log_bin, format, image): (i64, String, String) = a
            .query_first("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (log_bin, format.as_str(), image.as_str()),
            (1, "ROW", "FULL"),
            "the MariaDB at {} must run with --log-bin --binlog-format=ROW --binlog-row-image=FULL (see .ci/run)",
            binlog_admin_url()
        );
        a.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        let _ = a.disconnect().await;
        CdcDb {
            backend: Backend::Mariadb,
            url: format!("{}/{name}", binlog_admin_url()),
            name,
            admin: String::new(),
            _lock: Some(lock),
        }
    }

    /// A new session on the database.
    pub async fn session(&self) -> Session {
        Session::open(self.backend, &self.url).await
    }

    /// Run `sql` in one new session (on PostgreSQL, several statements
    /// are one transaction).
    pub async fn exec(&self, sql: &str) {
        let mut s = self.session().await;
        s.exec(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        s.close().await;
    }

    /// The value of a one-row, one-column query, as text.
    pub async fn value(&self, sql: &str) -> Option<String> {
        match self.session().await {
            Session::Pg(c) => c.query_one(sql, &[]).await.unwrap().get(0),
            Session::My(mut c) => {
                let v: Option<Option<String>> = c.query_first(sql).await.unwrap();
                let _ = c.disconnect().await;
                v.flatten()
            }
        }
    }

    /// The table's rows `(id, v, n)` as text, by id.
    pub async fn rows(&self, table: &str) -> Rows {
        self.session().await.rows(table).await
    }

    /// `INSERT INTO t` the ids `from..=to` with `n = id` and `v` the SQL
    /// expression `v` of the id `g` (both dialects: `concat('v', g)`).
    pub fn insert_series(&self, from: i64, to: i64, v: &str) -> String {
        match self.backend {
            Backend::Postgres => {
                format!("INSERT INTO t SELECT g, {v}, g FROM generate_series({from}, {to}) g;")
            }
            Backend::Mariadb => format!(
                "INSERT INTO t SELECT g, {v}, g FROM (SELECT seq AS g FROM seq_{from}_to_{to}) s;"
            ),
        }
    }

    /// A statement that makes the server start a new log file.
    pub fn rotate_log(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "SELECT pg_switch_wal()",
            Backend::Mariadb => "FLUSH BINARY LOGS",
        }
    }

    /// A statement that sleeps `seconds` inside a transaction.
    pub fn sleep(&self, seconds: f64) -> String {
        match self.backend {
            Backend::Postgres => format!("SELECT pg_sleep({seconds});"),
            Backend::Mariadb => format!("DO SLEEP({seconds});"),
        }
    }

    /// The stream's replication slots left on the server (none on MariaDB).
    pub async fn slots(&self) -> Vec<String> {
        if self.backend == Backend::Mariadb {
            return vec![];
        }
        pg_connect(&self.url)
            .await
            .query(
                "SELECT slot_name::text FROM pg_replication_slots WHERE database = current_database() ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Make the server drop the log the stream's position needs: fill the
    /// lossy cluster's WAL past what a slot may keep, or purge every binlog
    /// file but the newest. Returns what the run's note must then say.
    pub async fn lose_log(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => {
                self.exec("CREATE TABLE filler (x text)").await;
                for _ in 0..4 {
                    self.exec(
                        "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 20000); SELECT pg_switch_wal()",
                    )
                    .await;
                }
                self.exec("CHECKPOINT").await;
                let status = self
                    .value("SELECT wal_status FROM pg_replication_slots WHERE database = current_database()")
                    .await;
                assert_eq!(
                    status.as_deref(),
                    Some("lost"),
                    "the slot should have lost its WAL"
                );
                "invalidated"
            }
            Backend::Mariadb => {
                purge_binlogs().await;
                "no longer on the server"
            }
        }
    }
}

/// Purge every binlog file but the newest. The server keeps a file until
/// InnoDB no longer needs it for crash recovery (its binlog checkpoint):
/// purge until only the newest is left.
pub async fn purge_binlogs() {
    let mut a = binlog_admin().await;
    a.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let mut left = 0;
    for _ in 0..100 {
        let logs: Vec<mysql_async::Row> = a.query("SHOW BINARY LOGS").await.unwrap();
        left = logs.len();
        if left == 1 {
            break;
        }
        let newest: String = logs.last().unwrap().get(0).unwrap();
        a.query_drop(format!("PURGE BINARY LOGS TO '{newest}'"))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 1, "the binlog files were not purged");
    let _ = a.disconnect().await;
}

impl Drop for CdcDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        match self.backend {
            Backend::Postgres => {
                let _ = Command::new("psql")
                    .args([
                        &self.admin,
                        "-q",
                        "-c",
                        &format!(
                            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}'"
                        ),
                        "-c",
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    ])
                    .output();
            }
            Backend::Mariadb => binlog_mysql(&format!("DROP DATABASE IF EXISTS `{name}`")),
        }
    }
}

/// An open connection of either backend.
pub enum Session {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

/// A statement's failure: whether the server rolled the transaction back
/// for a deadlock or lock timeout (write it again), and the message.
#[derive(Debug)]
pub struct Failed {
    pub retry: bool,
    pub message: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Session {
    /// A session on the database `url` of `backend`.
    pub async fn open(backend: Backend, url: &str) -> Session {
        match backend {
            Backend::Postgres => Session::Pg(pg_connect(url).await),
            Backend::Mariadb => Session::My(my_connect(url).await),
        }
    }

    /// Any database's session: `dst` of [`SrcDb`] for a target's rows.
    pub async fn of(db: &SrcDb) -> Session {
        match db {
            SrcDb::Pg(db) => Session::Pg(db.connect().await),
            SrcDb::My(db) => Session::My(db.connect().await),
            SrcDb::Lite(_) => unreachable!("cdc has no SQLite source"),
        }
    }

    pub async fn exec(&mut self, sql: &str) -> Result<(), Failed> {
        match self {
            Session::Pg(c) => c.batch_execute(sql).await.map_err(|e| Failed {
                retry: e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED),
                message: format!("{e} {:?}", e.as_db_error()),
            }),
            Session::My(c) => c.query_drop(sql).await.map_err(|e| Failed {
                retry: matches!(&e, mysql_async::Error::Server(s) if s.code == 1213 || s.code == 1205),
                message: e.to_string(),
            }),
        }
    }

    /// The rows `(id, v, n)` of `table` as text, by id.
    pub async fn rows(&mut self, table: &str) -> Rows {
        match self {
            Session::Pg(c) => c
                .query(
                    &format!("SELECT id::text, v::text, n::text FROM {table} ORDER BY id"),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, String>(0), vec![r.get(1), r.get(2)]))
                .collect(),
            Session::My(c) => {
                let rows: Vec<(String, Option<String>, Option<String>)> = c
                    .query(format!(
                        "SELECT CAST(id AS CHAR), v, CAST(n AS CHAR) FROM {table} ORDER BY id"
                    ))
                    .await
                    .unwrap();
                rows.into_iter()
                    .map(|(id, v, n)| (id, vec![v, n]))
                    .collect()
            }
        }
    }

    pub async fn close(self) {
        if let Session::My(c) = self {
            let _ = c.disconnect().await;
        }
    }
}
