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
//! Steady-state runs only read (the completeness check included). Setup
//! (first run, or repair of an incomplete setup, in one transaction: a
//! killed setup leaves nothing) and pruning (only when a log row is older
//! than the retention) take a short write transaction before the snapshot.

use std::path::Path;

use highwater_core::{ChangeVersion, Error, Relation, Result, failpoint};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::types::Kind;
use crate::change_tracking::{
    Installed, META_TABLE, OPERATION_COLUMN, ROW_TRIGGERS, Status, VERSION_COLUMN, literal,
    log_table, table_of, trigger_name,
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

fn object_exists(conn: &Connection, n: &Names, kind: &str, name: &str) -> Result<bool> {
    conn.query_row(
        &format!(
            "SELECT count(*) > 0 FROM {}sqlite_master WHERE type = ?1 AND name = ?2",
            n.prefix
        ),
        [kind, name],
        |r| r.get(0),
    )
    .map_err(err)
}

fn has_generation_column(conn: &Connection, n: &Names) -> Result<bool> {
    conn.query_row(
        &format!(
            "SELECT count(*) > 0 FROM {}pragma_table_info(?1) WHERE name = 'generation'",
            n.prefix
        ),
        [META_TABLE],
        |r| r.get(0),
    )
    .map_err(err)
}

/// What exists of the table's tracking objects.
fn inspect(conn: &Connection, n: &Names) -> Result<Installed> {
    let mut found = Installed::default();
    let meta_row = if object_exists(conn, n, "table", META_TABLE)? {
        let generation = if has_generation_column(conn, n)? {
            "generation"
        } else {
            "NULL"
        };
        conn.query_row(
            &format!(
                "SELECT {generation} FROM {}{} WHERE table_name = ?1",
                n.prefix,
                q(META_TABLE)
            ),
            [&n.table],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()
        .map_err(err)?
    } else {
        None
    };
    match meta_row {
        None => found.lacks(format!("row {} in {META_TABLE}", n.table)),
        Some(None) => {
            found.any = true;
            found.lacks(crate::change_tracking::no_generation());
        }
        Some(Some(g)) => {
            found.any = true;
            found.generation = Some(g);
        }
    }
    if object_exists(conn, n, "table", &n.log)? {
        found.any = true;
    } else {
        found.lacks(format!("table {}", n.log));
    }
    for ev in ROW_TRIGGERS {
        let name = trigger_name(&n.table, ev);
        if object_exists(conn, n, "trigger", &name)? {
            found.any = true;
        } else {
            found.lacks(format!("trigger {name}"));
        }
    }
    Ok(found)
}

/// Seconds since the epoch, as the triggers store them.
const NOW: &str = "((julianday('now') - 2440587.5) * 86400.0)";

/// Verify the tracking objects (install or repair them if incomplete) and
/// prune, before the read snapshot. Returns notes for the user.
pub(super) fn prepare(
    path: &Path,
    rel: &Relation,
    pk: &[String],
    retention_secs: i64,
) -> Result<Vec<String>> {
    let n = names(rel)?;
    let mut notes = Vec::new();
    let ro = super::source::open(path)?;
    let complete = inspect(&ro, &n)?.complete();
    let cutoff = chrono::Utc::now().timestamp_micros() as f64 / 1e6 - retention_secs as f64;
    let stale = complete
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
    if complete && !stale {
        return Ok(notes);
    }
    let mut conn = open_rw(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    // Again, under the write lock: another run may have installed it.
    let found = inspect(&tx, &n)?;
    if !found.complete() {
        let generation = crate::change_tracking::new_generation();
        let created = install(&tx, &n, pk, &generation)?;
        notes.push(crate::change_tracking::install_note(
            &n.table,
            &found,
            &created,
            &generation,
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
    Ok(notes)
}

/// Remove what is left of an earlier setup, then create the meta table (if
/// missing), the log and the triggers, and write the meta row's generation
/// last. Runs inside the caller's transaction: all or nothing.
fn install(conn: &Connection, n: &Names, pk: &[String], generation: &str) -> Result<Vec<String>> {
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
    // Leftovers of an earlier (incomplete) setup go: a new generation
    // starts from an empty log.
    let mut drop = String::new();
    for ev in ROW_TRIGGERS {
        drop.push_str(&format!(
            "DROP TRIGGER IF EXISTS {p}{};",
            q(&trigger_name(&n.table, ev))
        ));
    }
    drop.push_str(&format!("DROP TABLE IF EXISTS {p}{log};"));
    conn.execute_batch(&drop).map_err(err)?;
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {p}{meta} (
            table_name TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            min_valid_version INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            generation TEXT);"
    ))
    .map_err(err)?;
    if !has_generation_column(conn, n)? {
        conn.execute_batch(&format!("ALTER TABLE {p}{meta} ADD COLUMN generation TEXT"))
            .map_err(err)?;
    }
    // The counter never goes back; every older version becomes invalid.
    conn.execute(
        &format!(
            "INSERT INTO {p}{meta} (table_name, version, min_valid_version, created_at, generation)
             VALUES (?1, 0, 0, datetime('now'), NULL)
             ON CONFLICT (table_name) DO UPDATE SET min_valid_version = version,
               created_at = excluded.created_at, generation = NULL"
        ),
        [&n.table],
    )
    .map_err(err)?;
    conn.execute_batch(&format!(
        "CREATE TABLE {p}{log} (
            {defs},
            hw_op TEXT NOT NULL,
            hw_version INTEGER NOT NULL,
            hw_created INTEGER,
            hw_changed_at REAL NOT NULL,
            PRIMARY KEY ({cols}));
         CREATE INDEX {p}{log_idx} ON {log} (hw_version);
         CREATE TRIGGER {p}{ins} AFTER INSERT ON {t} BEGIN
            UPDATE {meta} SET version = version + 1 WHERE table_name = {tl};
            INSERT INTO {log} ({cols}, hw_op, hw_version, hw_created, hw_changed_at)
              SELECT {new}, 'I', version, version, {NOW} FROM {meta} WHERE table_name = {tl}
              ON CONFLICT ({cols}) DO UPDATE SET hw_op = excluded.hw_op, hw_version = excluded.hw_version,
                hw_created = excluded.hw_created, hw_changed_at = excluded.hw_changed_at;
         END;",
        defs = pk_defs.join(", "),
        log_idx = q(&format!("{}_version", n.log)),
        ins = q(&trigger_name(&n.table, "ins")),
        new = of("NEW"),
    ))
    .map_err(err)?;
    failpoint("change_tracking.mid_setup");
    conn.execute_batch(&format!(
        "CREATE TRIGGER {p}{upd} AFTER UPDATE ON {t} BEGIN
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
         CREATE TRIGGER {p}{del} AFTER DELETE ON {t} BEGIN
            UPDATE {meta} SET version = version + 1 WHERE table_name = {tl};
            INSERT INTO {log} ({cols}, hw_op, hw_version, hw_created, hw_changed_at)
              SELECT {old}, 'D', version, NULL, {NOW} FROM {meta} WHERE table_name = {tl}
              ON CONFLICT ({cols}) DO UPDATE SET hw_op = 'D', hw_version = excluded.hw_version,
                hw_changed_at = excluded.hw_changed_at;
         END;",
        upd = q(&trigger_name(&n.table, "upd")),
        del = q(&trigger_name(&n.table, "del")),
        new = of("NEW"),
        old = of("OLD"),
    ))
    .map_err(err)?;
    failpoint("change_tracking.before_complete");
    // The marker that setup finished: the generation, written last.
    conn.execute(
        &format!("UPDATE {p}{meta} SET generation = ?1 WHERE table_name = ?2"),
        [generation, n.table.as_str()],
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
    pub version_to: ChangeVersion,
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
    after: Option<&ChangeVersion>,
) -> Result<Plan> {
    let n = names(rel)?;
    let row: Option<(i64, i64, Option<String>)> = conn
        .query_row(
            &format!(
                "SELECT version, min_valid_version, generation FROM {}{} WHERE table_name = ?1",
                n.prefix,
                q(META_TABLE)
            ),
            [&n.table],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(err)?;
    let Some((to, min_valid, Some(generation))) = row else {
        return Err(Error::source(
            BACKEND,
            format!(
                "change tracking on {} was removed or left incomplete during the run; run again",
                n.table
            ),
        ));
    };
    let (reload, note) = crate::change_tracking::reload_decision(
        &n.table,
        after,
        &generation,
        min_valid,
        to,
        "changes were pruned after change_retention",
    );
    let version_to = ChangeVersion::new(to, generation);
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
            version_to,
            full_reload: true,
            notes,
        });
    }
    let after = after.map_or(0, |a| a.version);
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
        version_to,
        full_reload: false,
        notes,
    })
}

pub fn status(path: &Path, rel: &Relation, after: Option<i64>) -> Result<Status> {
    let n = names(rel)?;
    let conn = super::source::open(path)?;
    let found = inspect(&conn, &n)?;
    if !found.any {
        return Ok(Status::default());
    }
    let versions: Option<(i64, i64)> = conn
        .query_row(
            &format!(
                "SELECT version, min_valid_version FROM {}{} WHERE table_name = ?1",
                n.prefix,
                q(META_TABLE)
            ),
            [&n.table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .unwrap_or(None);
    let rows: Option<i64> = conn
        .query_row(
            &format!("SELECT count(*) FROM {}{}", n.prefix, q(&n.log)),
            [],
            |r| r.get(0),
        )
        .ok();
    let changed_after: Option<i64> = after.and_then(|a| {
        conn.query_row(
            &format!(
                "SELECT count(*) FROM {}{} WHERE hw_version > ?1",
                n.prefix,
                q(&n.log)
            ),
            [a],
            |r| r.get(0),
        )
        .ok()
    });
    Ok(Status {
        set_up: true,
        missing: found.missing,
        generation: found.generation,
        current_version: versions.map(|v| v.0),
        min_valid_version: versions.map(|v| v.1),
        log_rows: rows,
        changed_after,
    })
}

pub fn disable(path: &Path, rel: &Relation) -> Result<Vec<String>> {
    let n = names(rel)?;
    let mut conn = open_rw(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut removed = Vec::new();
    for ev in ROW_TRIGGERS {
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
    let has_meta_row = object_exists(&tx, &n, "table", META_TABLE)?
        && tx
            .query_row(
                &format!(
                    "SELECT count(*) > 0 FROM {}{} WHERE table_name = ?1",
                    n.prefix,
                    q(META_TABLE)
                ),
                [&n.table],
                |r| r.get::<_, bool>(0),
            )
            .map_err(err)?;
    if has_meta_row {
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
