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
//!                          counter (SQLite, MariaDB; on MariaDB runs bump
//!                          it when they stamp pending changes),
//!                          min_valid_version
//! _hw_ct_<t>               the change log, ONE ROW PER PRIMARY KEY
//!                          (PostgreSQL: append-only, one row per change,
//!                          netted at read time; see its module):
//!                          pk columns, hw_op (I/U/D of the last change),
//!                          hw_version (version of the last change;
//!                          MariaDB: i64::MAX until a run stamps it),
//!                          hw_created (version of the insert that began the
//!                          row's current life; NULL if it predates tracking),
//!                          hw_changed_at (time of the last change)
//! _hw_ct_<t>_ins/_upd/_del AFTER … FOR EACH ROW triggers writing the log
//!                          (PostgreSQL: FOR EACH STATEMENT, transition tables)
//! ```
//!
//! Every installation of these objects is a *generation*: a random id
//! (with its creation time) written in the table's meta row as the very
//! last step of setup, so the meta row's `generation` is also the marker
//! that setup finished. A stream's position is a version *and* the
//! generation it was read from (`ChangeVersion`); a version means nothing in
//! another generation, where the counter restarted and changes made while
//! nothing tracked the table were never logged.
//!
//! A run (see each backend for how the snapshot is taken):
//!
//! ```text
//! 1. inspect: meta row with a generation, log, every trigger
//!    complete  → go on
//!    otherwise → under a lock, inspect again, then install: remove what
//!                is left, create everything, write a new generation last
//!                (logged loudly: set up, or repaired naming what was missing)
//! 2. prune log rows older than change_retention;           own transaction
//!    min_valid_version = max(min_valid_version, max pruned version)
//!    (MariaDB: then stamp the pending changes, see its module)
//! 3. one snapshot: to = current version, g = current generation;
//!    reload = after is None, after.generation != g (or unknown),
//!             after < min_valid_version, after > to
//!    reload → every row of t, SYS_CHANGE_VERSION = to, SYS_CHANGE_OPERATION = 'I'
//!    else   → log LEFT JOIN t on the primary key, after < hw_version <= to
//!    the new position is (to, g)
//! ```
//!
//! Setup is one transaction on SQLite and PostgreSQL. MariaDB commits each
//! DDL statement on its own: there the meta row's generation is cleared
//! first and written last, so a setup killed at any step leaves a meta row
//! without a generation (or no meta row and stray objects), which the next
//! run sees as incomplete and repairs.
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
use highwater_core::{ChangeVersion, ConnKind, Error, Relation, Result};

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

/// What `check` and `changes status` report about one stream's change
/// tracking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Some of the objects exist (complete or not).
    pub set_up: bool,
    /// The objects a complete setup has and this one lacks (empty when
    /// complete or not set up), e.g. `trigger _hw_ct_t_del`.
    pub missing: Vec<String>,
    /// The generation of the installed objects (complete setups only).
    pub generation: Option<String>,
    /// The newest version (SQLite: the counter; MariaDB: the counter plus
    /// one per stamp batch its pending changes need, i.e. the version a run
    /// would reach now; PostgreSQL: the newest transaction id all of whose
    /// predecessors have finished).
    pub current_version: Option<i64>,
    /// Streams whose last version is older than this reload in full.
    pub min_valid_version: Option<i64>,
    /// Rows in the change log.
    pub log_rows: Option<i64>,
    /// With [`status_after`]: keys whose last change is newer than the
    /// version asked about: what a run from
    /// there would deliver, bar changes still being committed.
    pub changed_after: Option<i64>,
}

impl Status {
    /// Every object is there, with a generation.
    pub fn complete(&self) -> bool {
        self.set_up && self.missing.is_empty() && self.generation.is_some()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.set_up {
            return f.write_str("change tracking is not set up (the first run sets it up)");
        }
        if !self.complete() {
            return write!(
                f,
                "change tracking is incomplete: missing {} (the next run repairs it and reloads in full)",
                self.missing.join(", ")
            );
        }
        write!(
            f,
            "change tracking is complete (generation {}): current version {}, minimum valid version {}, {} row(s) in the change log",
            self.generation.as_deref().unwrap_or_default(),
            self.current_version.unwrap_or_default(),
            self.min_valid_version.unwrap_or_default(),
            self.log_rows.unwrap_or_default()
        )
    }
}

/// What a backend found of one table's tracking objects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Installed {
    /// Some object of this table exists (meta row, log or trigger).
    pub any: bool,
    /// What a complete setup has and this one lacks.
    pub missing: Vec<String>,
    /// The meta row's generation (written last by setup).
    pub generation: Option<String>,
}

impl Installed {
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.generation.is_some()
    }

    /// Record a missing object.
    pub fn lacks(&mut self, what: impl Into<String>) {
        self.missing.push(what.into());
    }
}

/// What `missing` says when the meta row has no generation.
pub(crate) fn no_generation() -> String {
    format!("the generation in {META_TABLE} (setup did not finish, or predates generations)")
}

/// A new generation id: creation time (UTC) and random bits.
pub(crate) fn new_generation() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        &id[..12]
    )
}

/// The note of a run that (re)installed the tracking objects of `table`.
/// `before` is what the run found.
pub(crate) fn install_note(
    table: &str,
    before: &Installed,
    created: &[String],
    generation: &str,
) -> String {
    if before.any {
        let missing = if before.missing.is_empty() {
            no_generation()
        } else {
            before.missing.join(", ")
        };
        tracing::warn!(
            table,
            missing,
            generation,
            "Repaired incomplete change tracking."
        );
        format!(
            "change tracking on {table} was incomplete (missing {missing}): changes may not have been logged; \
             re-created it as generation {generation}; every change-tracking stream on {table} reloads in full"
        )
    } else {
        format!(
            "set up change tracking on {table} (generation {generation}): created {}",
            created.join(", ")
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
    status_after(kind, url, relation, None).await
}

/// [`status`], and with `after` the changes logged after that version
/// ([`Status::changed_after`]). Reads only: nothing is set up or pruned.
pub async fn status_after(
    kind: &ConnKind,
    url: &str,
    relation: &Relation,
    after: Option<i64>,
) -> Result<Status> {
    match kind {
        ConnKind::Sqlite(path) => {
            let (path, rel) = (path.clone(), relation.clone());
            tokio::task::spawn_blocking(move || {
                crate::sqlite::change_tracking::status(&path, &rel, after)
            })
            .await
            .map_err(|e| Error::source("sqlite", e))?
        }
        ConnKind::Postgres => crate::postgres::change_tracking::status(url, relation, after).await,
        ConnKind::Mysql => crate::mysql::change_tracking::status(url, relation, after).await,
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
/// note that says why. `after` is the stream's position, `generation` the
/// generation read in the snapshot, `min_valid`/`to` the log's minimum valid
/// and current versions, `pruned_cause` explains how versions become invalid
/// on this backend.
pub(crate) fn reload_decision(
    table: &str,
    after: Option<&ChangeVersion>,
    generation: &str,
    min_valid: i64,
    to: i64,
    pruned_cause: &str,
) -> (bool, Option<String>) {
    let Some(after) = after else {
        return (true, None);
    };
    let a = after.version;
    match after.generation.as_deref() {
        None => {
            return (
                true,
                Some(format!(
                    "this stream's position (version {a}) predates change-tracking generations \
                     (saved by an older highwater), so it cannot be matched to the change log of {table}; \
                     reloading in full"
                )),
            );
        }
        Some(g) if g != generation => {
            return (
                true,
                Some(format!(
                    "change tracking on {table} was re-created since this stream's last run; reloading in full \
                     (position of generation {g}, change log of generation {generation})"
                )),
            );
        }
        Some(_) => {}
    }
    if a < min_valid {
        return (
            true,
            Some(format!(
                "full reload: the last synchronised version {a} is older than the minimum valid version {min_valid} \
                 ({pruned_cause}); replace your copy with this output"
            )),
        );
    }
    if a > to {
        return (
            true,
            Some(format!(
                "full reload: the last synchronised version {a} is newer than the current version {to} \
                 of the change log of {table}; reloading in full"
            )),
        );
    }
    (false, None)
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

/// The row triggers of backends with one trigger per operation.
pub(crate) const ROW_TRIGGERS: [&str; 3] = ["ins", "upd", "del"];

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

    /// The sequence ordering the writes in the change log (PostgreSQL):
    /// `_hw_seq_<t>`, not `_hw_ct_…`, which would be another table's log.
    pub fn seq(&self) -> String {
        self.qualify(&format!("_hw_seq_{}", self.table))
    }

    /// A trigger (or trigger function) of the table: `ins`, `upd`, `fn`, …
    pub fn trigger(&self, event: &str) -> String {
        self.qualify(&trigger_name(&self.table, event))
    }
}
