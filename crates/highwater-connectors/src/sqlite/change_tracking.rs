//! Change tracking on SQLite: triggers, a change log and a version counter
//! (see [`crate::change_tracking`] for the objects and the semantics).
//!
//! Why the versions never let a run skip a change: SQLite has one writer at
//! a time. Each trigger increments the counter row of `_highwater_ct` and
//! stamps the log row with the new value inside the writing transaction, so
//! a transaction that commits later holds larger versions than every
//! transaction committed before it: versions are in commit order. A run
//! reads the counter and the log in one read transaction (a snapshot), so
//! every change with a version ≤ the counter it read is visible to it, and
//! every change it cannot see gets a larger version and is read next time.
//!
//! Steady-state runs only read. Setup (first run) and pruning (only when a
//! log row is older than the retention) take a short write transaction
//! before the snapshot.

use std::path::Path;

use highwater_core::{Error, Relation, Result};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::types::Kind;
use crate::change_tracking::{
    META_TABLE, OPERATION_COLUMN, Status, VERSION_COLUMN, literal, log_table, table_of,
    trigger_name,
};
use crate::util::quote_ident;

const BACKEND: &str = "sqlite";

fn q(s: &str) -> String {
    quote_ident(s, '"')
}

fn err(e: rusqlite::Error) -> Error {
    Error::source(BACKEND, e)
}

/// Names used for one tracked table.
struct Names {
    /// Schema prefix for statements outside trigger bodies (`"aux".`).
    prefix: String,
    table: String,
    log: String,
}

fn names(rel: &Relation) -> Result<Names> {
    let (schema, table) = table_of(rel)?;
    Ok(Names {
        prefix: schema.map(|s| format!("{}.", q(s))).unwrap_or_default(),
        table: table.to_string(),
        log: log_table(table),
    })
}

fn open_rw(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| Error::Connection {
        target: format!("sqlite://{}", path.display()),
        message: e.to_string(),
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(err)?;
    Ok(conn)
}

fn meta_exists(conn: &Connection, n: &Names) -> Result<bool> {
    let has_meta: bool = conn
        .query_row(
            &format!(
                "SELECT count(*) > 0 FROM {}sqlite_master WHERE type = 'table' AND name = ?1",
                n.prefix
            ),
            [META_TABLE],
            |r| r.get(0),
        )
        .map_err(err)?;
    if !has_meta {
        return Ok(false);
    }
    conn.query_row(
        &format!(
            "SELECT count(*) > 0 FROM {}{} WHERE table_name = ?1",
            n.prefix,
            q(META_TABLE)
        ),
        [&n.table],
        |r| r.get(0),
    )
    .map_err(err)
}

/// Seconds since the epoch, as the triggers store them.
const NOW: &str = "((julianday('now') - 2440587.5) * 86400.0)";

/// Set up (if needed) and prune, before the read snapshot. Returns notes
/// for the user and whether tracking was set up just now.
pub(super) fn prepare(
    path: &Path,
    rel: &Relation,
    pk: &[String],
    retention_secs: i64,
) -> Result<(Vec<String>, bool)> {
    let n = names(rel)?;
    let mut notes = Vec::new();
    let ro = super::source::open(path)?;
    let set_up = meta_exists(&ro, &n)?;
    let cutoff = chrono::Utc::now().timestamp_micros() as f64 / 1e6 - retention_secs as f64;
    let stale = set_up
        && ro
            .query_row(
                &format!(
                    "SELECT 1 FROM {}{} WHERE hw_changed_at < ?1 LIMIT 1",
                    n.prefix,
                    q(&n.log)
                ),
                [cutoff],
                |_| Ok(()),
            )
            .optional()
            .map_err(err)?
            .is_some();
    drop(ro);
    if set_up && !stale {
        return Ok((notes, false));
    }
    let mut conn = open_rw(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let fresh = !meta_exists(&tx, &n)?;
    if fresh {
        let created = setup(&tx, &n, pk)?;
        notes.push(format!(
            "set up change tracking on {}: created {}",
            n.table,
            created.join(", ")
        ));
    } else {
        let pruned: (i64, Option<i64>) = tx
            .query_row(
                &format!(
                    "SELECT count(*), max(hw_version) FROM {}{} WHERE hw_changed_at < ?1",
                    n.prefix,
                    q(&n.log)
                ),
                [cutoff],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        if let (count, Some(max)) = pruned {
            tx.execute(
                &format!(
                    "DELETE FROM {}{} WHERE hw_changed_at < ?1",
                    n.prefix,
                    q(&n.log)
                ),
                [cutoff],
            )
            .map_err(err)?;
            tx.execute(
                &format!(
                    "UPDATE {}{} SET min_valid_version = max(min_valid_version, ?1) WHERE table_name = ?2",
                    n.prefix,
                    q(META_TABLE)
                ),
                rusqlite::params![max, n.table],
            )
            .map_err(err)?;
            tracing::info!(table = %n.table, rows = count, min_valid_version = max, "Pruned the change log.");
        }
    }
    tx.commit().map_err(err)?;
    Ok((notes, fresh))
}

/// Create the meta table (if missing), its row, the log and the triggers.
fn setup(conn: &Connection, n: &Names, pk: &[String]) -> Result<Vec<String>> {
    let decl: Vec<(String, String)> = {
        let mut st = conn
            .prepare(&format!(
                "SELECT name, type FROM {}pragma_table_info(?1)",
                n.prefix
            ))
            .map_err(err)?;
        st.query_map([&n.table], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?
    };
    let mut pk_defs = Vec::new();
    for c in pk {
        let Some((_, t)) = decl.iter().find(|(name, _)| name == c) else {
            return Err(Error::config(
                format!("primary_key column {c}"),
                format!("not found in {}", n.table),
            ));
        };
        pk_defs.push(format!("{} {}", q(c), t));
    }
    let cols: Vec<String> = pk.iter().map(|c| q(c)).collect();
    let cols = cols.join(", ");
    let of = |row: &str| -> String {
        pk.iter()
            .map(|c| format!("{row}.{}", q(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key_changed = pk
        .iter()
        .map(|c| format!("OLD.{0} IS NOT NEW.{0}", q(c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let (p, meta, log, t) = (&n.prefix, q(META_TABLE), q(&n.log), q(&n.table));
    let tl = literal(&n.table);
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {p}{meta} (
            table_name TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            min_valid_version INTEGER NOT NULL,
            created_at TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS {p}{log} (
            {defs},
            hw_op TEXT NOT NULL,
            hw_version INTEGER NOT NULL,
            hw_created INTEGER,
            hw_changed_at REAL NOT NULL,
            PRIMARY KEY ({cols}));
         CREATE INDEX IF NOT EXISTS {p}{log_idx} ON {log} (hw_version);
         CREATE TRIGGER IF NOT EXISTS {p}{ins} AFTER INSERT ON {t} BEGIN
            UPDATE {meta} SET version = version + 1 WHERE table_name = {tl};
            INSERT INTO {log} ({cols}, hw_op, hw_version, hw_created, hw_changed_at)
              SELECT {new}, 'I', version, version, {NOW} FROM {meta} WHERE table_name = {tl}
              ON CONFLICT ({cols}) DO UPDATE SET hw_op = excluded.hw_op, hw_version = excluded.hw_version,
                hw_created = excluded.hw_created, hw_changed_at = excluded.hw_changed_at;
         END;
         CREATE TRIGGER IF NOT EXISTS {p}{upd} AFTER UPDATE ON {t} BEGIN
            UPDATE {meta} SET version = version + 1 WHERE table_name = {tl};
            INSERT INTO {log} ({cols}, hw_op, hw_version, hw_created, hw_changed_at)
              SELECT {old}, 'D', version, NULL, {NOW} FROM {meta} WHERE table_name = {tl} AND ({key_changed})
              ON CONFLICT ({cols}) DO UPDATE SET hw_op = 'D', hw_version = excluded.hw_version,
                hw_changed_at = excluded.hw_changed_at;
            INSERT INTO {log} ({cols}, hw_op, hw_version, hw_created, hw_changed_at)
              SELECT {new}, CASE WHEN {key_changed} THEN 'I' ELSE 'U' END, version,
                     CASE WHEN {key_changed} THEN version END, {NOW}
                FROM {meta} WHERE table_name = {tl}
              ON CONFLICT ({cols}) DO UPDATE SET hw_op = excluded.hw_op, hw_version = excluded.hw_version,
                hw_created = coalesce(excluded.hw_created, hw_created), hw_changed_at = excluded.hw_changed_at;
         END;
         CREATE TRIGGER IF NOT EXISTS {p}{del} AFTER DELETE ON {t} BEGIN
            UPDATE {meta} SET version = version + 1 WHERE table_name = {tl};
            INSERT INTO {log} ({cols}, hw_op, hw_version, hw_created, hw_changed_at)
              SELECT {old}, 'D', version, NULL, {NOW} FROM {meta} WHERE table_name = {tl}
              ON CONFLICT ({cols}) DO UPDATE SET hw_op = 'D', hw_version = excluded.hw_version,
                hw_changed_at = excluded.hw_changed_at;
         END;",
        defs = pk_defs.join(", "),
        log_idx = q(&format!("{}_version", n.log)),
        ins = q(&trigger_name(&n.table, "ins")),
        upd = q(&trigger_name(&n.table, "upd")),
        del = q(&trigger_name(&n.table, "del")),
        new = of("NEW"),
        old = of("OLD"),
    ))
    .map_err(err)?;
    conn.execute(
        &format!("INSERT OR IGNORE INTO {p}{meta} (table_name, version, min_valid_version, created_at) VALUES (?1, 0, 0, datetime('now'))"),
        [&n.table],
    )
    .map_err(err)?;
    Ok(crate::change_tracking::row_trigger_objects(
        &n.log, &n.table,
    ))
}

/// What to read, decided in the snapshot.
pub(super) struct Plan {
    pub sql: String,
    pub params: Vec<Value>,
    pub version_to: i64,
    pub full_reload: bool,
    pub notes: Vec<String>,
}

/// In the read transaction: the current version, the reload decision, and
/// the query. `cols` are the table's columns in order.
pub(super) fn plan(
    conn: &Connection,
    rel: &Relation,
    cols: &[(String, Kind)],
    pk: &[String],
    after: Option<i64>,
    fresh: bool,
) -> Result<Plan> {
    let n = names(rel)?;
    let (to, min_valid): (i64, i64) = conn
        .query_row(
            &format!(
                "SELECT version, min_valid_version FROM {}{} WHERE table_name = ?1",
                n.prefix,
                q(META_TABLE)
            ),
            [&n.table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(err)?;
    let (reload, note) = crate::change_tracking::reload_decision(
        after,
        fresh,
        min_valid,
        to,
        "changes were pruned after change_retention",
    );
    let notes: Vec<String> = note.into_iter().collect();
    let t = format!("{}{}", n.prefix, q(&n.table));
    let (vc, oc) = (q(VERSION_COLUMN), q(OPERATION_COLUMN));
    if reload {
        let list: Vec<String> = cols.iter().map(|(c, _)| format!("t.{}", q(c))).collect();
        return Ok(Plan {
            sql: format!(
                "SELECT {}, ?1 AS {vc}, 'I' AS {oc} FROM {t} AS t",
                list.join(", ")
            ),
            params: vec![Value::Integer(to)],
            version_to: to,
            full_reload: true,
            notes,
        });
    }
    let after = after.unwrap_or_default();
    let list: Vec<String> = cols
        .iter()
        .map(|(c, _)| {
            if pk.contains(c) {
                format!("c.{}", q(c))
            } else {
                format!("t.{}", q(c))
            }
        })
        .collect();
    let join: Vec<String> = pk.iter().map(|c| format!("t.{0} = c.{0}", q(c))).collect();
    Ok(Plan {
        sql: format!(
            "SELECT {}, c.hw_version AS {vc},
                    CASE WHEN c.hw_op = 'D' THEN 'D' WHEN c.hw_created > ?1 THEN 'I' ELSE 'U' END AS {oc}
               FROM {}{} AS c LEFT JOIN {t} AS t ON {}
              WHERE c.hw_version > ?1 AND c.hw_version <= ?2
              ORDER BY c.hw_version",
            list.join(", "),
            n.prefix,
            q(&n.log),
            join.join(" AND ")
        ),
        params: vec![Value::Integer(after), Value::Integer(to)],
        version_to: to,
        full_reload: false,
        notes,
    })
}

pub fn status(path: &Path, rel: &Relation) -> Result<Status> {
    let n = names(rel)?;
    let conn = super::source::open(path)?;
    if !meta_exists(&conn, &n)? {
        return Ok(Status::default());
    }
    let (v, m): (i64, i64) = conn
        .query_row(
            &format!(
                "SELECT version, min_valid_version FROM {}{} WHERE table_name = ?1",
                n.prefix,
                q(META_TABLE)
            ),
            [&n.table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(err)?;
    let rows: Option<i64> = conn
        .query_row(
            &format!("SELECT count(*) FROM {}{}", n.prefix, q(&n.log)),
            [],
            |r| r.get(0),
        )
        .ok();
    let triggers: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM {}sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 AND name LIKE '\\_hw\\_ct\\_%' ESCAPE '\\'",
                n.prefix
            ),
            [&n.table],
            |r| r.get(0),
        )
        .map_err(err)?;
    Ok(Status {
        set_up: rows.is_some() && triggers == 3,
        current_version: Some(v),
        min_valid_version: Some(m),
        log_rows: rows,
    })
}

pub fn disable(path: &Path, rel: &Relation) -> Result<Vec<String>> {
    let n = names(rel)?;
    let mut conn = open_rw(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut removed = Vec::new();
    for ev in ["ins", "upd", "del"] {
        let name = trigger_name(&n.table, ev);
        let exists: bool = tx
            .query_row(
                &format!(
                    "SELECT count(*) > 0 FROM {}sqlite_master WHERE type = 'trigger' AND name = ?1",
                    n.prefix
                ),
                [&name],
                |r| r.get(0),
            )
            .map_err(err)?;
        if exists {
            tx.execute_batch(&format!("DROP TRIGGER {}{}", n.prefix, q(&name)))
                .map_err(err)?;
            removed.push(format!("trigger {name}"));
        }
    }
    let log_exists: bool = tx
        .query_row(
            &format!(
                "SELECT count(*) > 0 FROM {}sqlite_master WHERE type = 'table' AND name = ?1",
                n.prefix
            ),
            [&n.log],
            |r| r.get(0),
        )
        .map_err(err)?;
    if log_exists {
        tx.execute_batch(&format!("DROP TABLE {}{}", n.prefix, q(&n.log)))
            .map_err(err)?;
        removed.push(format!("table {}", n.log));
    }
    if meta_exists(&tx, &n)? {
        tx.execute(
            &format!(
                "DELETE FROM {}{} WHERE table_name = ?1",
                n.prefix,
                q(META_TABLE)
            ),
            [&n.table],
        )
        .map_err(err)?;
        removed.push(format!("row {} in {META_TABLE}", n.table));
        let left: i64 = tx
            .query_row(
                &format!("SELECT count(*) FROM {}{}", n.prefix, q(META_TABLE)),
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if left == 0 {
            tx.execute_batch(&format!("DROP TABLE {}{}", n.prefix, q(META_TABLE)))
                .map_err(err)?;
            removed.push(format!("table {META_TABLE}"));
        }
    }
    tx.commit().map_err(err)?;
    Ok(removed)
}
