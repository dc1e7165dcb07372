//! Source discovery for `highwater init --from`: the tables and views of a
//! database (or of one schema), without highwater's own objects. Columns
//! and primary keys come from [`highwater_core::Source::describe`], as for
//! `check` and `run`.

use highwater_core::{ConnKind, Error, Result};

use crate::change_tracking::META_TABLE;
use crate::table::COMMITS;

/// One relation found in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// PostgreSQL schema, or MariaDB/MySQL database when `--schema` named
    /// one; `None` for SQLite and the URL's own MariaDB database.
    pub schema: Option<String>,
    pub name: String,
    /// A view (no triggers, so no change tracking).
    pub view: bool,
}

/// Whether highwater created the table (change logs, commit records).
pub fn is_internal(name: &str) -> bool {
    name.starts_with("_hw_ct_")
        || name == META_TABLE
        || name == COMMITS
        || name.starts_with("_highwater_")
}

/// The tables and views of the database at `url`, in `schema` when given
/// (PostgreSQL: every schema but the system ones otherwise; MariaDB: the
/// URL's database otherwise), sorted by schema and name.
pub async fn tables(kind: &ConnKind, url: &str, schema: Option<&str>) -> Result<Vec<Found>> {
    let mut found = match kind {
        ConnKind::Sqlite(path) => {
            if schema.is_some_and(|s| s != "main") {
                return Err(Error::config(
                    "--schema",
                    "a SQLite file has one schema (main); leave --schema out",
                ));
            }
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<Found>> {
                let conn = crate::sqlite::source::open(&path)?;
                let err = |e: rusqlite::Error| {
                    Error::source("sqlite", format!("{}: {e}", path.display()))
                };
                let mut st = conn
                    .prepare(
                        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') \
                         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                    )
                    .map_err(err)?;
                let rows = st
                    .query_map([], |r| {
                        Ok(Found {
                            schema: None,
                            name: r.get(0)?,
                            view: r.get::<_, String>(1)? == "view",
                        })
                    })
                    .map_err(err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
            })
            .await
            .map_err(|e| Error::source("sqlite", e))??
        }
        ConnKind::Postgres => {
            let client = crate::postgres::connect(url).await?;
            let rows = client
                .query(
                    "SELECT n.nspname::text, c.relname::text, c.relkind IN ('v', 'm')
                       FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
                        AND NOT c.relispartition
                        AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                        AND n.nspname NOT LIKE 'pg\\_toast%'
                        AND n.nspname NOT LIKE 'pg\\_temp%'
                        AND ($1::text IS NULL OR n.nspname = $1)
                        AND has_table_privilege(c.oid, 'SELECT')
                      ORDER BY 1, 2",
                    &[&schema],
                )
                .await
                .map_err(|e| Error::source("postgres", crate::postgres::errors::message(&e)))?;
            rows.iter()
                .map(|r| Found {
                    schema: Some(r.get(0)),
                    name: r.get(1),
                    view: r.get(2),
                })
                .collect()
        }
        ConnKind::Mysql => {
            use mysql_async::prelude::Queryable;
            let mut conn = crate::mysql::connect(url).await?;
            let db: Option<String> = conn
                .query_first("SELECT DATABASE()")
                .await
                .map_err(|e| Error::source("mysql", crate::mysql::errors::message(&e)))?
                .flatten();
            if schema.is_none() && db.is_none() {
                let _ = conn.disconnect().await;
                return Err(Error::config(
                    "--from",
                    "the URL names no database: add it (mysql://user@host:3306/DB) or pass --schema DB",
                ));
            }
            let rows: Vec<(String, String, String)> = conn
                .exec(
                    "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
                      WHERE TABLE_SCHEMA = COALESCE(?, DATABASE())
                      ORDER BY TABLE_NAME",
                    (schema,),
                )
                .await
                .map_err(|e| Error::source("mysql", crate::mysql::errors::message(&e)))?;
            let _ = conn.disconnect().await;
            rows.into_iter()
                .map(|(s, name, ty)| Found {
                    // The URL's database needs no qualification.
                    schema: (db.as_deref() != Some(s.as_str())).then_some(s),
                    name,
                    view: ty.contains("VIEW"),
                })
                .collect()
        }
        _ => {
            return Err(Error::config(
                "--from",
                "init --from reads a database: sqlite://, postgres:// or mysql://",
            ));
        }
    };
    found.retain(|f| !is_internal(&f.name));
    Ok(found)
}
