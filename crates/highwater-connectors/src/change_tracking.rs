//! Change tracking installed by highwater, shared by the SQLite, PostgreSQL
//! and MariaDB/MySQL backends (each has its own `change_tracking.rs` with
//! the SQL of its dialect).
//!
//! SQL Server has change tracking built in (`CHANGETABLE(CHANGES …)`); the
//! other databases get the same semantics from objects highwater creates
//! next to the tracked table `t`:
//!
//! ```text
//! _highwater_ct            one row per tracked table: table_name, version
//!                          counter (SQLite, MariaDB; MariaDB also a numeric
//!                          id the triggers use), min_valid_version
//! _hw_ct_<t>               the change log, ONE ROW PER PRIMARY KEY:
//!                          pk columns, hw_op (I/U/D of the last change),
//!                          hw_version (version of the last change),
//!                          hw_created (version of the insert that began the
//!                          row's current life; NULL if it predates tracking),
//!                          hw_changed_at (time of the last change)
//! _hw_ct_<t>_ins/_upd/_del AFTER … FOR EACH ROW triggers writing the log
//! ```
//!
//! A run (see each backend for how the snapshot is taken):
//!
//! ```text
//! 1. set up if the meta row is missing (logged as a note)   own transaction
//! 2. prune log rows older than change_retention;           own transaction
//!    min_valid_version = max(min_valid_version, max pruned version)
//! 3. one snapshot: to = current version;
//!    reload = after is None, after < min_valid_version, after > to
//!    reload → every row of t, SYS_CHANGE_VERSION = to, SYS_CHANGE_OPERATION = 'I'
//!    else   → log LEFT JOIN t on the primary key, after < hw_version <= to
//! ```
//!
//! Net changes, as `CHANGETABLE(CHANGES t, after)`: one row per primary key
//! and run, with the values of the snapshot. The operation is `D` when the
//! last change deleted the row (primary key from the log, NULL elsewhere),
//! `I` when the row's current life began after `after` (`hw_created >
//! after`: inserted, maybe updated since), `U` otherwise. A row inserted and
//! deleted within one window appears once as `D`: telling it apart from
//! "deleted, re-inserted, deleted again" would need the full history, and
//! deleting a key a consumer never saw is harmless. Consumers apply `I` and
//! `U` as upserts and `D` as deletes.
//!
//! Full loads (the first run, and reloads past retention) carry the same
//! two columns, with the baseline version and `I`, so every file of a stream
//! has one schema (friendly to Parquet and to readers that glob a folder).
//! After a reload the consumer replaces its copy: the run says so.

use arrow_schema::{DataType, Field, Schema};
use highwater_core::{ConnKind, Error, Relation, Result};

/// Name of the version column appended to change-tracking output.
pub const VERSION_COLUMN: &str = "SYS_CHANGE_VERSION";
/// Name of the operation column appended to change-tracking output.
pub const OPERATION_COLUMN: &str = "SYS_CHANGE_OPERATION";
/// The table holding one row per tracked table.
pub const META_TABLE: &str = "_highwater_ct";

/// The change log of `table`.
pub fn log_table(table: &str) -> String {
    format!("_hw_ct_{table}")
}

/// The trigger of `table` for `event` (`ins`, `upd`, `del`).
pub fn trigger_name(table: &str, event: &str) -> String {
    format!("_hw_ct_{table}_{event}")
}

/// What `check` reports about one stream's change tracking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The meta row, the log and the triggers exist.
    pub set_up: bool,
    /// The newest version (SQLite, MariaDB: the counter; PostgreSQL: the
    /// newest transaction id all of whose predecessors have finished).
    pub current_version: Option<i64>,
    /// Streams whose last version is older than this reload in full.
    pub min_valid_version: Option<i64>,
    /// Rows in the change log.
    pub log_rows: Option<i64>,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.set_up {
            return f.write_str("change tracking is not set up (the first run sets it up)");
        }
        write!(
            f,
            "change tracking is set up: current version {}, minimum valid version {}, {} row(s) in the change log",
            self.current_version.unwrap_or_default(),
            self.min_valid_version.unwrap_or_default(),
            self.log_rows.unwrap_or_default()
        )
    }
}

/// The table's fields followed by the two change-tracking columns.
pub(crate) fn output_schema(fields: Vec<Field>) -> Schema {
    let mut fields = fields;
    fields.push(Field::new(VERSION_COLUMN, DataType::Int64, true));
    fields.push(Field::new(OPERATION_COLUMN, DataType::Utf8, true));
    Schema::new(fields)
}

/// A text as an SQLite string literal (for trigger bodies, which take no
/// parameters): single quotes doubled, SQLite's only escape. Not for
/// MariaDB (backslash escapes) nor PostgreSQL
/// (`standard_conforming_strings`): their triggers splice no text.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The table part of a relation, or a config error for queries.
pub(crate) fn table_of(relation: &Relation) -> Result<(Option<&str>, &str)> {
    match relation {
        Relation::Table { schema, name } => Ok((schema.as_deref(), name.as_str())),
        Relation::Query(_) => Err(Error::config(
            "query",
            "change_tracking needs `table:`, not `query:`",
        )),
    }
}

/// Whether change tracking is set up for `relation`, with its versions.
pub async fn status(kind: &ConnKind, url: &str, relation: &Relation) -> Result<Status> {
    match kind {
        ConnKind::Sqlite(path) => {
            let (path, rel) = (path.clone(), relation.clone());
            tokio::task::spawn_blocking(move || crate::sqlite::change_tracking::status(&path, &rel))
                .await
                .map_err(|e| Error::source("sqlite", e))?
        }
        ConnKind::Postgres => crate::postgres::change_tracking::status(url, relation).await,
        ConnKind::Mysql => crate::mysql::change_tracking::status(url, relation).await,
        _ => Err(Error::config(
            "connection",
            "change tracking is available on SQLite, PostgreSQL and MariaDB/MySQL",
        )),
    }
}

/// Remove what setup created (triggers, change log, meta row). Returns the
/// names of the objects removed; empty when nothing was set up.
pub async fn disable(kind: &ConnKind, url: &str, relation: &Relation) -> Result<Vec<String>> {
    match kind {
        ConnKind::Sqlite(path) => {
            let (path, rel) = (path.clone(), relation.clone());
            tokio::task::spawn_blocking(move || {
                crate::sqlite::change_tracking::disable(&path, &rel)
            })
            .await
            .map_err(|e| Error::source("sqlite", e))?
        }
        ConnKind::Postgres => crate::postgres::change_tracking::disable(url, relation).await,
        ConnKind::Mysql => crate::mysql::change_tracking::disable(url, relation).await,
        _ => Err(Error::config(
            "connection",
            "change tracking is available on SQLite, PostgreSQL and MariaDB/MySQL",
        )),
    }
}

/// Whether a change-tracking read must reload the table in full, and the
/// note that says why. `after` is the stream's last synchronised version,
/// `fresh` says setup ran in this read, `min_valid`/`to` are the log's
/// minimum valid and current versions, `pruned_cause` explains how versions
/// become invalid on this backend.
pub(crate) fn reload_decision(
    after: Option<i64>,
    fresh: bool,
    min_valid: i64,
    to: i64,
    pruned_cause: &str,
) -> (bool, Option<String>) {
    match after {
        None => (true, None),
        Some(_) if fresh => (
            true,
            Some("change tracking was not set up (disabled since the last run?): reloading the table in full".into()),
        ),
        Some(a) if a < min_valid => (
            true,
            Some(format!(
                "full reload: the last synchronised version {a} is older than the minimum valid version {min_valid} \
                 ({pruned_cause}); replace your copy with this output"
            )),
        ),
        Some(a) if a > to => (
            true,
            Some(format!(
                "full reload: the last synchronised version {a} is newer than the current version {to} \
                 (change tracking was set up again)"
            )),
        ),
        Some(_) => (false, None),
    }
}

/// What setup created on backends with one trigger per operation (SQLite,
/// MariaDB), for the run's notes.
pub(crate) fn row_trigger_objects(log: &str, table: &str) -> Vec<String> {
    vec![
        format!("table {log}"),
        format!(
            "triggers {}, {}, {}",
            trigger_name(table, "ins"),
            trigger_name(table, "upd"),
            trigger_name(table, "del")
        ),
        format!("row {table} in {META_TABLE}"),
    ]
}

/// Names of one tracked table in a schema (PostgreSQL) or database
/// (MariaDB): the table, its change log, the meta table and the triggers,
/// each qualified and quoted with the backend's quote character.
pub(crate) struct Names {
    /// The schema or database that holds the table.
    pub space: String,
    pub table: String,
    pub log: String,
    quote: char,
}

impl Names {
    pub fn new(space: String, table: &str, quote: char) -> Names {
        Names {
            space,
            table: table.to_string(),
            log: log_table(table),
            quote,
        }
    }

    fn qualify(&self, name: &str) -> String {
        format!(
            "{}.{}",
            crate::util::quote_ident(&self.space, self.quote),
            crate::util::quote_ident(name, self.quote)
        )
    }

    /// The tracked table.
    pub fn t(&self) -> String {
        self.qualify(&self.table)
    }

    /// Its change log.
    pub fn log(&self) -> String {
        self.qualify(&self.log)
    }

    /// The meta table of the schema or database.
    pub fn meta(&self) -> String {
        self.qualify(META_TABLE)
    }

    /// A trigger (or trigger function) of the table: `ins`, `upd`, `fn`, …
    pub fn trigger(&self, event: &str) -> String {
        self.qualify(&trigger_name(&self.table, event))
    }
}
