//! Change tracking on MariaDB/MySQL: triggers, a change log and a version
//! counter row (see [`crate::change_tracking`] for the objects and the
//! net-change semantics).
//!
//! Why a run never skips a change. Each trigger first increments the
//! table's counter row in `_highwater_ct` (InnoDB) and stamps the log row
//! with the new value. The UPDATE takes the counter row's exclusive lock and
//! InnoDB holds it until the writing transaction commits or rolls back, so
//! a second writer of the same table waits at its first tracked change until
//! the first one has finished: versions are handed out in commit order.
//! A run reads the counter in a consistent snapshot (`START TRANSACTION WITH
//! CONSISTENT SNAPSHOT`, a non-locking read that never waits); every change
//! with a version ≤ that value committed before the snapshot and is visible
//! in it, and any change not visible gets a larger version, read next time.
//! Two transactions therefore cannot commit in the opposite order of their
//! versions.
//!
//! The cost, documented for users: writers of one tracked table are
//! serialised from their first tracked change to their commit, and two
//! transactions that lock rows of the table in opposite orders can now meet
//! at the counter and deadlock (InnoDB detects it and rolls one back; the
//! application retries as for any deadlock). Lock order is always counter
//! row, then log rows: pruning takes the counter row first as well, so
//! highwater's own statements never deadlock with writers. The log's
//! `INSERT … ON DUPLICATE KEY UPDATE` only runs while the counter is held,
//! so its next-key/gap locks never meet another writer's.
//!
//! Setup cannot be one transaction: MariaDB commits each DDL statement on
//! its own. So it is ordered for a kill at any instant: the meta row is
//! made (or its generation cleared) first, leftovers are dropped, the log
//! and the three triggers are created, and the generation — the marker
//! that setup finished — is written last. Every run checks the marker, the
//! log and the triggers before trusting a position; anything missing is
//! repaired (as a new generation) and the table reloaded in full.

use highwater_core::{ChangeVersion, Error, Relation, Result, failpoint};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::source::{connect, my_err, q};
use super::types::MyKind;
use crate::change_tracking::{
    Installed, META_TABLE, Names, OPERATION_COLUMN, ROW_TRIGGERS, Status, VERSION_COLUMN, table_of,
    trigger_name,
};

async fn names(conn: &mut Conn, rel: &Relation) -> Result<Names> {
    let (schema, table) = table_of(rel)?;
    let db = match schema {
        Some(s) => s.to_string(),
        None => conn
            .query_first::<Option<String>, _>("SELECT DATABASE()")
            .await
            .map_err(my_err)?
            .flatten()
            .ok_or_else(|| {
                Error::config(
                    "connection",
                    "the mysql:// URL names no database; add /DATABASE or qualify the table",
                )
            })?,
    };
    Ok(Names::new(db, table, '`'))
}

async fn table_exists(conn: &mut Conn, db: &str, name: &str) -> Result<bool> {
    let n: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, name),
        )
        .await
        .map_err(my_err)?;
    Ok(n.unwrap_or(0) > 0)
}

async fn has_generation_column(conn: &mut Conn, db: &str) -> Result<bool> {
    let n: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.COLUMNS
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = 'generation'",
            (db, META_TABLE),
        )
        .await
        .map_err(my_err)?;
    Ok(n.unwrap_or(0) > 0)
}

/// `(version, min_valid_version, generation)` of the meta row, if there is
/// one (the generation is NULL until setup finishes).
async fn meta_row(conn: &mut Conn, n: &Names) -> Result<Option<(i64, i64, Option<String>)>> {
    if !table_exists(conn, &n.space, META_TABLE).await? {
        return Ok(None);
    }
    let generation = if has_generation_column(conn, &n.space).await? {
        "generation"
    } else {
        "NULL"
    };
    conn.exec_first(
        format!(
            "SELECT version, min_valid_version, {generation} FROM {} WHERE table_name = ?",
            n.meta()
        ),
        (n.table.as_str(),),
    )
    .await
    .map_err(my_err)
}

/// What exists of the table's tracking objects.
async fn inspect(conn: &mut Conn, n: &Names) -> Result<Installed> {
    let mut found = Installed::default();
    match meta_row(conn, n).await? {
        None => found.lacks(format!("row {} in {META_TABLE}", n.table)),
        Some((_, _, None)) => {
            found.any = true;
            found.lacks(crate::change_tracking::no_generation());
        }
        Some((_, _, Some(g))) => {
            found.any = true;
            found.generation = Some(g);
        }
    }
    if table_exists(conn, &n.space, &n.log).await? {
        found.any = true;
    } else {
        found.lacks(format!("table {}", n.log));
    }
    let names: Vec<String> = ROW_TRIGGERS
        .iter()
        .map(|ev| trigger_name(&n.table, ev))
        .collect();
    let present: Vec<String> = conn
        .exec(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
              WHERE TRIGGER_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? AND TRIGGER_NAME IN (?, ?, ?)",
            (
                n.space.as_str(),
                n.table.as_str(),
                names[0].as_str(),
                names[1].as_str(),
                names[2].as_str(),
            ),
        )
        .await
        .map_err(my_err)?;
    for name in names {
        if present.contains(&name) {
            found.any = true;
        } else {
            found.lacks(format!("trigger {name}"));
        }
    }
    Ok(found)
}

/// Verify the tracking objects (install or repair them if incomplete) and
/// prune, before the snapshot. Returns notes.
pub(super) async fn prepare(
    conn: &mut Conn,
    rel: &Relation,
    pk: &[String],
    retention_secs: i64,
) -> Result<Vec<String>> {
    let n = names(conn, rel).await?;
    let mut notes = Vec::new();
    if !inspect(conn, &n).await?.complete() {
        // Two streams on one table must not set it up twice at once.
        let lock = format!("highwater-ct:{}", n.t());
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, 60)", (lock.as_str(),))
            .await
            .map_err(my_err)?;
        if got.flatten() != Some(1) {
            return Err(Error::source(
                "mysql",
                format!(
                    "another run has been setting up change tracking on {} for 60 s; try again",
                    n.t()
                ),
            ));
        }
        let res = async {
            let found = inspect(conn, &n).await?;
            if found.complete() {
                return Ok(None);
            }
            let generation = crate::change_tracking::new_generation();
            let created = install(conn, &n, pk, &generation).await?;
            Ok(Some(crate::change_tracking::install_note(
                &format!("{}.{}", n.space, n.table),
                &found,
                &created,
                &generation,
            )))
        }
        .await;
        let _ = conn
            .exec_drop("SELECT RELEASE_LOCK(?)", (lock.as_str(),))
            .await;
        notes.extend(res?);
    }
    // Prune only when something is older than the retention (a plain
    // consistent read first, so steady-state runs take no lock).
    let cutoff = format!("-{retention_secs}");
    let stale: Option<i64> = conn
        .exec_first(
            format!(
                "SELECT 1 FROM {} WHERE hw_changed_at < UTC_TIMESTAMP(6) + INTERVAL ? SECOND LIMIT 1",
                n.log()
            ),
            (cutoff.as_str(),),
        )
        .await
        .map_err(my_err)?;
    if stale.is_some() {
        conn.query_drop("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(my_err)?;
        conn.query_drop("START TRANSACTION").await.map_err(my_err)?;
        let res: Result<()> = async {
            // Counter row first: the writers' lock order.
            conn.exec_drop(
                format!(
                    "SELECT version FROM {} WHERE table_name = ? FOR UPDATE",
                    n.meta()
                ),
                (n.table.as_str(),),
            )
            .await
            .map_err(my_err)?;
            let row: Option<(i64, Option<i64>)> = conn
                .exec_first(
                    format!(
                        "SELECT COUNT(*), MAX(hw_version) FROM {} WHERE hw_changed_at < UTC_TIMESTAMP(6) + INTERVAL ? SECOND",
                        n.log()
                    ),
                    (cutoff.as_str(),),
                )
                .await
                .map_err(my_err)?;
            if let Some((count, Some(max))) = row {
                conn.exec_drop(
                    format!(
                        "DELETE FROM {} WHERE hw_version <= ? AND hw_changed_at < UTC_TIMESTAMP(6) + INTERVAL ? SECOND",
                        n.log()
                    ),
                    (max, cutoff.as_str()),
                )
                .await
                .map_err(my_err)?;
                conn.exec_drop(
                    format!(
                        "UPDATE {} SET min_valid_version = GREATEST(min_valid_version, ?) WHERE table_name = ?",
                        n.meta()
                    ),
                    (max, n.table.as_str()),
                )
                .await
                .map_err(my_err)?;
                tracing::info!(table = %n.t(), rows = count, min_valid_version = max, "Pruned the change log.");
            }
            Ok(())
        }
        .await;
        match res {
            Ok(()) => conn.query_drop("COMMIT").await.map_err(my_err)?,
            Err(e) => {
                let _ = conn.query_drop("ROLLBACK").await;
                return Err(e);
            }
        }
    }
    Ok(notes)
}

/// Install the tracking objects, in an order that a kill at any instant
/// leaves detectably incomplete: meta row without a generation first, then
/// leftovers dropped, log and triggers created, generation written last.
async fn install(
    conn: &mut Conn,
    n: &Names,
    pk: &[String],
    generation: &str,
) -> Result<Vec<String>> {
    let mut defs = Vec::new();
    for c in pk {
        let ty: Option<String> = conn
            .exec_first(
                "SELECT COLUMN_TYPE FROM information_schema.COLUMNS
                  WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                (n.space.as_str(), n.table.as_str(), c.as_str()),
            )
            .await
            .map_err(my_err)?;
        let Some(ty) = ty else {
            return Err(Error::config(
                format!("primary_key column {c}"),
                format!("not found in {}.{}", n.space, n.table),
            ));
        };
        defs.push(format!("{} {ty}", q(c)));
    }
    let cols = pk.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    let of = |r: &str| {
        pk.iter()
            .map(|c| format!("{r}.{}", q(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same_key = pk
        .iter()
        .map(|c| format!("OLD.{0} <=> NEW.{0}", q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let (log, meta, t) = (n.log(), n.meta(), n.t());
    let ins = |row: &str, op: &str, created: &str, set: &str| {
        format!(
            "INSERT INTO {log} ({cols}, hw_op, hw_version, hw_created, hw_changed_at)
             VALUES ({}, '{op}', v, {created}, UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE {set};",
            of(row)
        )
    };
    let set_i = "hw_op = 'I', hw_version = v, hw_created = v, hw_changed_at = UTC_TIMESTAMP(6)";
    let set_u = "hw_op = 'U', hw_version = v, hw_changed_at = UTC_TIMESTAMP(6)";
    let set_d = "hw_op = 'D', hw_version = v, hw_changed_at = UTC_TIMESTAMP(6)";
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {meta} (
            table_name VARCHAR(192) NOT NULL PRIMARY KEY,
            id BIGINT NOT NULL AUTO_INCREMENT UNIQUE,
            version BIGINT NOT NULL,
            min_valid_version BIGINT NOT NULL,
            created_at DATETIME(6) NOT NULL,
            generation VARCHAR(64) NULL) ENGINE=InnoDB"
    ))
    .await
    .map_err(my_err)?;
    if !has_generation_column(conn, &n.space).await? {
        conn.query_drop(format!(
            "ALTER TABLE {meta} ADD COLUMN generation VARCHAR(64) NULL"
        ))
        .await
        .map_err(my_err)?;
    }
    // 1. The meta row, marked incomplete (no generation) before anything
    //    else changes. The counter never goes back; older versions become
    //    invalid.
    conn.exec_drop(
        format!(
            "INSERT INTO {meta} (table_name, version, min_valid_version, created_at, generation)
             VALUES (?, 0, 0, UTC_TIMESTAMP(6), NULL)
             ON DUPLICATE KEY UPDATE min_valid_version = version, created_at = UTC_TIMESTAMP(6),
               generation = NULL"
        ),
        (n.table.as_str(),),
    )
    .await
    .map_err(my_err)?;
    // 2. Leftovers of an earlier setup: the new generation starts from an
    //    empty log and triggers that point at the current meta row.
    for ev in ROW_TRIGGERS {
        conn.query_drop(format!("DROP TRIGGER IF EXISTS {}", n.trigger(ev)))
            .await
            .map_err(my_err)?;
    }
    conn.query_drop(format!("DROP TABLE IF EXISTS {log}"))
        .await
        .map_err(my_err)?;
    // 3. The log and the triggers.
    conn.query_drop(format!(
        "CREATE TABLE {log} (
            {defs},
            hw_op CHAR(1) NOT NULL,
            hw_version BIGINT NOT NULL,
            hw_created BIGINT NULL,
            hw_changed_at DATETIME(6) NOT NULL,
            PRIMARY KEY ({cols}),
            KEY hw_version (hw_version)) ENGINE=InnoDB",
        defs = defs.join(", ")
    ))
    .await
    .map_err(my_err)?;
    // Triggers find their counter row by its numeric id: no table name
    // (which may hold quotes or backslashes) is spliced into their bodies.
    let id: i64 = conn
        .exec_first(
            format!("SELECT id FROM {meta} WHERE table_name = ?"),
            (n.table.as_str(),),
        )
        .await
        .map_err(my_err)?
        .ok_or_else(|| Error::source("mysql", "the meta row vanished during setup"))?;
    let bump = format!(
        "DECLARE v BIGINT;
         UPDATE {meta} SET version = version + 1 WHERE id = {id};
         SELECT version INTO v FROM {meta} WHERE id = {id};"
    );
    let bodies = [
        ("ins", "INSERT", ins("NEW", "I", "v", set_i)),
        (
            "upd",
            "UPDATE",
            format!(
                "IF {same_key} THEN {} ELSE {} {} END IF;",
                ins("NEW", "U", "NULL", set_u),
                ins("OLD", "D", "NULL", set_d),
                ins("NEW", "I", "v", set_i)
            ),
        ),
        ("del", "DELETE", ins("OLD", "D", "NULL", set_d)),
    ];
    for (i, (ev, event, body)) in bodies.into_iter().enumerate() {
        if i == 1 {
            failpoint("change_tracking.mid_setup");
        }
        conn.query_drop(format!(
            "CREATE TRIGGER {} AFTER {event} ON {t} FOR EACH ROW BEGIN {bump} {body} END",
            n.trigger(ev)
        ))
        .await
        .map_err(|e| super::errors::source_at(format!("setting up change tracking on {t}"), e))?;
    }
    failpoint("change_tracking.before_complete");
    // 4. The marker that setup finished: the generation, written last.
    conn.exec_drop(
        format!("UPDATE {meta} SET generation = ? WHERE table_name = ?"),
        (generation, n.table.as_str()),
    )
    .await
    .map_err(my_err)?;
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

/// Inside the consistent snapshot: the window, the reload decision and the
/// query.
pub(super) async fn plan(
    conn: &mut Conn,
    rel: &Relation,
    cols: &[(String, MyKind)],
    pk: &[String],
    after: Option<&ChangeVersion>,
) -> Result<Plan> {
    let n = names(conn, rel).await?;
    let Some((to, min_valid, Some(generation))) = meta_row(conn, &n).await? else {
        return Err(Error::source(
            "mysql",
            format!(
                "change tracking on {} was removed or left incomplete during the run; run again",
                n.t()
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
    let (vc, oc) = (q(VERSION_COLUMN), q(OPERATION_COLUMN));
    if reload {
        let list: Vec<String> = cols.iter().map(|(c, _)| format!("t.{}", q(c))).collect();
        return Ok(Plan {
            sql: format!(
                "SELECT {}, CAST(? AS SIGNED) AS {vc}, 'I' AS {oc} FROM {} AS t",
                list.join(", "),
                n.t()
            ),
            params: vec![Value::Int(to)],
            version_to,
            full_reload: true,
            notes,
        });
    }
    let list: Vec<String> = cols
        .iter()
        .map(|(c, _)| format!("{}.{}", if pk.contains(c) { "c" } else { "t" }, q(c)))
        .collect();
    let join = pk
        .iter()
        .map(|c| format!("t.{0} = c.{0}", q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let a = after.map_or(0, |a| a.version);
    Ok(Plan {
        sql: format!(
            "SELECT {}, c.hw_version AS {vc},
                    CASE WHEN c.hw_op = 'D' THEN 'D' WHEN c.hw_created > ? THEN 'I' ELSE 'U' END AS {oc}
               FROM {} AS c LEFT JOIN {} AS t ON {join}
              WHERE c.hw_version > ? AND c.hw_version <= ?
              ORDER BY c.hw_version",
            list.join(", "),
            n.log(),
            n.t()
        ),
        params: vec![Value::Int(a), Value::Int(a), Value::Int(to)],
        version_to,
        full_reload: false,
        notes,
    })
}

pub async fn status(url: &str, rel: &Relation, after: Option<i64>) -> Result<Status> {
    let mut conn = connect(url).await?;
    let n = names(&mut conn, rel).await?;
    let found = inspect(&mut conn, &n).await?;
    if !found.any {
        let _ = conn.disconnect().await;
        return Ok(Status::default());
    }
    let versions = meta_row(&mut conn, &n).await?;
    let has_log = table_exists(&mut conn, &n.space, &n.log).await?;
    let log_rows: Option<i64> = if has_log {
        conn.query_first(format!("SELECT COUNT(*) FROM {}", n.log()))
            .await
            .map_err(my_err)?
    } else {
        None
    };
    let changed_after: Option<i64> = match after {
        Some(a) if has_log => conn
            .exec_first(
                format!("SELECT COUNT(*) FROM {} WHERE hw_version > ?", n.log()),
                (a,),
            )
            .await
            .map_err(my_err)?,
        _ => None,
    };
    let _ = conn.disconnect().await;
    Ok(Status {
        set_up: true,
        missing: found.missing,
        generation: found.generation,
        current_version: versions.as_ref().map(|v| v.0),
        min_valid_version: versions.as_ref().map(|v| v.1),
        log_rows,
        changed_after,
    })
}

pub async fn disable(url: &str, rel: &Relation) -> Result<Vec<String>> {
    let mut conn = connect(url).await?;
    let n = names(&mut conn, rel).await?;
    let mut removed = Vec::new();
    for ev in ROW_TRIGGERS {
        let name = trigger_name(&n.table, ev);
        let exists: Option<i64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME = ?",
                (n.space.as_str(), name.as_str()),
            )
            .await
            .map_err(my_err)?;
        if exists.unwrap_or(0) > 0 {
            conn.query_drop(format!("DROP TRIGGER IF EXISTS {}", n.trigger(ev)))
                .await
                .map_err(my_err)?;
            removed.push(format!("trigger {name}"));
        }
    }
    if table_exists(&mut conn, &n.space, &n.log).await? {
        conn.query_drop(format!("DROP TABLE {}", n.log()))
            .await
            .map_err(my_err)?;
        removed.push(format!("table {}", n.log));
    }
    if meta_row(&mut conn, &n).await?.is_some() {
        conn.exec_drop(
            format!("DELETE FROM {} WHERE table_name = ?", n.meta()),
            (n.table.as_str(),),
        )
        .await
        .map_err(my_err)?;
        removed.push(format!("row {} in {META_TABLE}", n.table));
        let left: Option<i64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {}", n.meta()))
            .await
            .map_err(my_err)?;
        if left.unwrap_or(0) == 0 {
            conn.query_drop(format!("DROP TABLE {}", n.meta()))
                .await
                .map_err(my_err)?;
            removed.push(format!("table {META_TABLE}"));
        }
    }
    let _ = conn.disconnect().await;
    Ok(removed)
}
