//! Change tracking on MariaDB/MySQL: triggers, a change log and a version
//! counter row (see [`crate::change_tracking`] for the objects and the
//! net-change semantics).
//!
//! Writers never wait for each other because of tracking. The triggers do
//! not touch the counter: each upserts its row's key into the log (one row
//! per key) with `hw_version = PENDING` (`i64::MAX`, "not yet stamped"), the
//! operation and the time (`hw_created = PENDING` too when the change is an
//! insert, which begins the row's current life). An upsert of an existing
//! key takes that log row's record lock only (InnoDB locks a duplicate
//! primary key of `INSERT … ON DUPLICATE KEY UPDATE` without its gap); a
//! new key takes an insert-intention lock, which waits only for gap locks,
//! and nothing takes gap locks on the log. So two writers wait for each
//! other only when they change the same key, as they would without
//! tracking.
//!
//! Versions are handed out by the reader. Each run, before its snapshot,
//! stamps the pending rows in batches, each one READ COMMITTED transaction:
//!
//! ```text
//! 1. keys of up to STAMP_BATCH log rows with hw_version = PENDING,
//!    SELECT … FOR UPDATE SKIP LOCKED, into a temporary table
//!    (a row locked by an open writer is skipped: its change is not
//!    committed, a later run stamps it)
//! 2. v = counter + 1 (UPDATE of the counter row, held to commit)
//! 3. those log rows: hw_version = v, hw_created = v where it is PENDING
//! 4. COMMIT                       (failpoint change_tracking.mid_stamp)
//! until a batch finds fewer rows than STAMP_BATCH
//! ```
//!
//! Why a run never skips nor repeats a change:
//!
//! - A stamped row holds a committed change: step 1 locks it, so the writer
//!   that made it has committed, and no writer can change it until step 4.
//!   A writer that changes it afterwards sets it back to PENDING: a new
//!   change, stamped by a later run with a larger version.
//! - Versions are assigned in commit order: the counter row's lock is held
//!   from step 2 to commit, so of two stampers (two streams on one table)
//!   the one with the larger version commits later. The counter and the
//!   rows stamped with its value commit together, so a snapshot that sees
//!   counter `c` sees every row stamped with a version `<= c`, and none
//!   stamped later. The window `(after, c]` read in the run's snapshot
//!   (`START TRANSACTION WITH CONSISTENT SNAPSHOT`, after stamping) is
//!   therefore final: no version `<= c` can appear afterwards, and every
//!   row still PENDING in the snapshot (skipped, committed after stamping)
//!   is stamped by a later run with a version `> c`. `changes status` and
//!   other readers only read.
//! - A killed run leaves its stamped batches committed and its position
//!   unsaved: the next run's window starts at the old position and covers
//!   them.
//! - A full load copies the snapshot except the keys still PENDING in it:
//!   their changes are stamped later, with versions after the full load's,
//!   and arrive once, with the next delta (as PostgreSQL leaves out keys
//!   written after its window).
//!
//! Lock order of highwater's own statements: log rows (SKIP LOCKED, so
//! never waiting for a writer), then the counter row. A writer waits at
//! most for one stamp batch that holds its key. Pruning (rows older than
//! the retention, stamped only: a PENDING row is never pruned) takes its
//! rows the same way, then the counter row for `min_valid_version`.
//!
//! Setup cannot be one transaction: MariaDB commits each DDL statement on
//! its own. So it is ordered for a kill at any instant: the meta row is
//! made (or its generation cleared) first, leftovers are dropped, the log
//! and the three triggers are created, and the generation — the marker
//! that setup finished — is written last. Every run checks the marker, the
//! log and the triggers (their bodies: triggers of an earlier highwater
//! that bumped the counter, serialising writers, count as missing) before
//! trusting a position; anything missing is repaired (as a new generation)
//! and the table reloaded in full.
//!
//! `SKIP LOCKED` needs MariaDB 10.6 or MySQL 8.0; setup and `check` refuse
//! older servers.

use highwater_core::{ChangeVersion, Error, Relation, Result, failpoint};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::source::{connect, my_err, q};
use super::types::MyKind;
use crate::change_tracking::{
    Installed, META_TABLE, Names, OPERATION_COLUMN, ROW_TRIGGERS, Status, VERSION_COLUMN, table_of,
    trigger_name,
};

/// `hw_version` (and `hw_created`) of a change not stamped yet.
const PENDING: i64 = i64::MAX;

/// Log rows stamped per transaction.
const STAMP_BATCH: u64 = 10_000;

/// The session-local table holding one stamp (or prune) batch's keys.
const BATCH_TABLE: &str = "_highwater_batch";

/// Rows per stamp or prune batch: [`STAMP_BATCH`], or
/// `HIGHWATER_CT_STAMP_BATCH` (for tests that need several batches).
fn batch_size() -> u64 {
    std::env::var("HIGHWATER_CT_STAMP_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(STAMP_BATCH)
}

/// Refuse servers without `SELECT … FOR UPDATE SKIP LOCKED` (MariaDB 10.6,
/// MySQL 8.0), which stamping needs.
async fn check_server(conn: &mut Conn) -> Result<()> {
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(my_err)?
        .unwrap_or_default();
    match skip_locked_missing(&version) {
        Some(need) => Err(Error::config(
            "connection",
            format!(
                "change tracking on MariaDB/MySQL needs {need} or later (for SELECT … FOR UPDATE SKIP LOCKED); \
                 this server is {version}"
            ),
        )),
        None => Ok(()),
    }
}

/// The release a server of `version` (as `SELECT VERSION()` says) lacks for
/// `SKIP LOCKED`, if any.
fn skip_locked_missing(version: &str) -> Option<&'static str> {
    // Some proxies report MariaDB as "5.5.5-10.x" (its handshake prefix).
    let number = version.strip_prefix("5.5.5-").unwrap_or(version);
    let mut parts = number
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version.to_ascii_lowercase().contains("mariadb") {
        ((major, minor) < (10, 6)).then_some("MariaDB 10.6")
    } else {
        (major < 8).then_some("MySQL 8.0")
    }
}

/// `ER_BINLOG_STMT_MODE_AND_ROW_ENGINE`: InnoDB refuses to write in READ
/// COMMITTED while the binary log is statement-based.
const BINLOG_STATEMENT: u16 = 1665;

/// A stamping or pruning error, naming `binlog_format` when it is the cause.
fn stamp_err(t: &str, e: mysql_async::Error) -> Error {
    if matches!(&e, mysql_async::Error::Server(s) if s.code == BINLOG_STATEMENT) {
        return Error::config(
            "connection",
            format!(
                "change tracking on {t} stamps its change log in READ COMMITTED transactions, which the server \
                 refuses while binlog_format = STATEMENT; set binlog_format to ROW or MIXED \
                 (SET GLOBAL binlog_format = 'MIXED', and in the server's configuration)"
            ),
        );
    }
    super::errors::source_at(format!("stamping the change log of {t}"), e)
}

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
    let present: Vec<(String, String)> = conn
        .exec(
            "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS
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
    let mut earlier = Vec::new();
    for name in names {
        match present.iter().find(|(p, _)| *p == name) {
            // Triggers of an earlier highwater stamp the version themselves,
            // bumping the counter row: every writer waits for the last one.
            Some((_, body)) if !body.contains(&PENDING.to_string()) => {
                found.any = true;
                earlier.push(name);
            }
            Some(_) => found.any = true,
            None => found.lacks(format!("trigger {name}")),
        }
    }
    if !earlier.is_empty() {
        found.lacks(format!(
            "{} {} of the current kind ({} of an earlier highwater, which serialised the table's writers \
             on one counter row; rebuilt)",
            if earlier.len() == 1 { "trigger" } else { "triggers" },
            earlier.join(", "),
            if earlier.len() == 1 { "it is" } else { "they are" },
        ));
    }
    Ok(found)
}

/// Whether `found` lacks only current triggers (an earlier highwater's are
/// there).
fn earlier_triggers(found: &Installed) -> bool {
    found
        .missing
        .iter()
        .any(|m| m.contains("of an earlier highwater"))
}

/// Verify the tracking objects (install or repair them if incomplete),
/// prune and stamp the pending changes, before the snapshot. Returns notes.
pub(super) async fn prepare(
    conn: &mut Conn,
    rel: &Relation,
    pk: &[String],
    retention_secs: i64,
) -> Result<Vec<String>> {
    let n = names(conn, rel).await?;
    check_server(conn).await?;
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
            if earlier_triggers(&found) {
                tracing::warn!(
                    table = %n.t(),
                    "Rebuilding change tracking: its triggers are of an earlier highwater, which serialised \
                     the table's writers; every change-tracking stream on the table reloads in full once."
                );
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
    let res = async {
        conn.query_drop(format!(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {batch} (PRIMARY KEY ({cols})) SELECT {cols}, hw_version FROM {log} LIMIT 0",
            batch = batch_table(&n),
            cols = pk.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "),
            log = n.log()
        ))
        .await?;
        prune(conn, &n, pk, retention_secs).await?;
        stamp(conn, &n, pk).await?;
        conn.query_drop(format!("DROP TEMPORARY TABLE IF EXISTS {}", batch_table(&n)))
            .await
    }
    .await;
    if let Err(e) = res {
        let _ = conn.query_drop("ROLLBACK").await;
        return Err(stamp_err(&n.t(), e));
    }
    Ok(notes)
}

/// The session's batch table, in the tracked table's database.
fn batch_table(n: &Names) -> String {
    format!("{}.{}", q(&n.space), q(BATCH_TABLE))
}

/// `log.k = batch.k AND …` over the primary key.
fn join_on(pk: &[String]) -> String {
    pk.iter()
        .map(|c| format!("l.{0} = b.{0}", q(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Take up to one batch of log rows matching `filter` into the batch table,
/// locked, skipping rows an open transaction holds (READ COMMITTED: no gap
/// locks, so no writer waits for rows this does not take). Begins the
/// batch's transaction; returns the number of rows taken.
async fn take_batch(
    conn: &mut Conn,
    n: &Names,
    pk: &[String],
    filter: &str,
    params: Vec<Value>,
    size: u64,
) -> std::result::Result<u64, mysql_async::Error> {
    let cols = pk.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    conn.query_drop("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await?;
    conn.query_drop("START TRANSACTION").await?;
    conn.query_drop(format!("DELETE FROM {}", batch_table(n)))
        .await?;
    conn.exec_drop(
        format!(
            "INSERT INTO {} ({cols}, hw_version) SELECT {cols}, hw_version FROM {} WHERE {filter} LIMIT {size} \
             FOR UPDATE SKIP LOCKED",
            batch_table(n),
            n.log()
        ),
        params,
    )
    .await?;
    Ok(conn.affected_rows())
}

/// Give the committed pending changes their versions, one batch per
/// transaction (the protocol in the module docs).
async fn stamp(
    conn: &mut Conn,
    n: &Names,
    pk: &[String],
) -> std::result::Result<(), mysql_async::Error> {
    let size = batch_size();
    // Stop after the rows pending now (and a batch for luck): writers
    // faster than the stamper must not keep one run stamping forever.
    let pending: Option<i64> = conn
        .exec_first(
            format!("SELECT COUNT(*) FROM {} WHERE hw_version = ?", n.log()),
            (PENDING,),
        )
        .await?;
    let mut batches = pending.unwrap_or(0) as u64 / size + 2;
    let mut stamped = 0;
    while batches > 0 {
        batches -= 1;
        let taken = take_batch(
            conn,
            n,
            pk,
            "hw_version = ?",
            vec![Value::Int(PENDING)],
            size,
        )
        .await?;
        if taken == 0 {
            conn.query_drop("COMMIT").await?;
            break;
        }
        conn.exec_drop(
            format!(
                "UPDATE {} SET version = version + 1 WHERE table_name = ?",
                n.meta()
            ),
            (n.table.as_str(),),
        )
        .await?;
        let v: i64 = conn
            .exec_first(
                format!("SELECT version FROM {} WHERE table_name = ?", n.meta()),
                (n.table.as_str(),),
            )
            .await?
            .unwrap_or_default();
        // The batch table drives the join: only the rows taken above are
        // touched (the log's version index would reach rows writers hold).
        conn.exec_drop(
            format!(
                "UPDATE {} AS b STRAIGHT_JOIN {} AS l ON {} \
                 SET l.hw_version = ?, l.hw_created = IF(l.hw_created = ?, ?, l.hw_created)",
                batch_table(n),
                n.log(),
                join_on(pk)
            ),
            (v, PENDING, v),
        )
        .await?;
        conn.query_drop("COMMIT").await?;
        stamped += taken;
        failpoint("change_tracking.mid_stamp");
        if taken < size {
            break;
        }
    }
    if stamped > 0 {
        tracing::debug!(table = %n.t(), rows = stamped, "Stamped the change log.");
    }
    Ok(())
}

/// Delete stamped log rows older than the retention and raise the table's
/// `min_valid_version` to the greatest version deleted, one batch per
/// transaction. A PENDING row is never pruned: its change has no version
/// yet, so no position can have passed it.
async fn prune(
    conn: &mut Conn,
    n: &Names,
    pk: &[String],
    retention_secs: i64,
) -> std::result::Result<(), mysql_async::Error> {
    let cutoff = format!("-{retention_secs}");
    let filter = "hw_version < ? AND hw_changed_at < UTC_TIMESTAMP(6) + INTERVAL ? SECOND";
    // A plain consistent read first, so steady-state runs take no lock.
    let stale: Option<i64> = conn
        .exec_first(
            format!("SELECT 1 FROM {} WHERE {filter} LIMIT 1", n.log()),
            (PENDING, cutoff.as_str()),
        )
        .await?;
    if stale.is_none() {
        return Ok(());
    }
    let size = batch_size();
    loop {
        let taken = take_batch(
            conn,
            n,
            pk,
            filter,
            vec![Value::Int(PENDING), Value::from(cutoff.as_str())],
            size,
        )
        .await?;
        if taken == 0 {
            conn.query_drop("COMMIT").await?;
            break;
        }
        let max: Option<i64> = conn
            .query_first(format!("SELECT MAX(hw_version) FROM {}", batch_table(n)))
            .await?;
        conn.query_drop(format!(
            "DELETE l FROM {} AS b STRAIGHT_JOIN {} AS l ON {}",
            batch_table(n),
            n.log(),
            join_on(pk)
        ))
        .await?;
        conn.exec_drop(
            format!(
                "UPDATE {} SET min_valid_version = GREATEST(min_valid_version, ?) WHERE table_name = ?",
                n.meta()
            ),
            (max.unwrap_or(0), n.table.as_str()),
        )
        .await?;
        conn.query_drop("COMMIT").await?;
        tracing::info!(table = %n.t(), rows = taken, min_valid_version = max, "Pruned the change log.");
        if taken < size {
            break;
        }
    }
    Ok(())
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
    // Every change is logged as pending: the reader stamps it (module docs).
    let ins = |row: &str, op: &str, created: &str, set: &str| {
        format!(
            "INSERT INTO {log} ({cols}, hw_op, hw_version, hw_created, hw_changed_at)
             VALUES ({}, '{op}', {PENDING}, {created}, UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE {set};",
            of(row)
        )
    };
    let set_i = format!(
        "hw_op = 'I', hw_version = {PENDING}, hw_created = {PENDING}, hw_changed_at = UTC_TIMESTAMP(6)"
    );
    let set_u = format!("hw_op = 'U', hw_version = {PENDING}, hw_changed_at = UTC_TIMESTAMP(6)");
    let set_d = format!("hw_op = 'D', hw_version = {PENDING}, hw_changed_at = UTC_TIMESTAMP(6)");
    let pending = PENDING.to_string();
    let (set_i, set_u, set_d) = (set_i.as_str(), set_u.as_str(), set_d.as_str());
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
    let bodies = [
        ("ins", "INSERT", ins("NEW", "I", &pending, set_i)),
        (
            "upd",
            "UPDATE",
            format!(
                "IF {same_key} THEN {} ELSE {} {} END IF;",
                ins("NEW", "U", "NULL", set_u),
                ins("OLD", "D", "NULL", set_d),
                ins("NEW", "I", &pending, set_i)
            ),
        ),
        ("del", "DELETE", ins("OLD", "D", "NULL", set_d)),
    ];
    for (i, (ev, event, body)) in bodies.into_iter().enumerate() {
        if i == 1 {
            failpoint("change_tracking.mid_setup");
        }
        conn.query_drop(format!(
            "CREATE TRIGGER {} AFTER {event} ON {t} FOR EACH ROW BEGIN {body} END",
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
        // Keys whose change committed after the stamping (still PENDING in
        // this snapshot) come with the next delta, once, with the values
        // of its snapshot: left out here, as PostgreSQL leaves out keys
        // written after its window. Checked first: usually there are none.
        let pending: Option<i64> = conn
            .exec_first(
                format!("SELECT 1 FROM {} WHERE hw_version = ? LIMIT 1", n.log()),
                (PENDING,),
            )
            .await
            .map_err(my_err)?;
        let (filter, mut params) = match pending {
            None => (String::new(), vec![]),
            Some(_) => {
                let same = pk
                    .iter()
                    .map(|c| format!("l.{0} = t.{0}", q(c)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                (
                    format!(
                        " WHERE NOT EXISTS (SELECT 1 FROM {} AS l WHERE {same} AND l.hw_version = ?)",
                        n.log()
                    ),
                    vec![Value::Int(PENDING)],
                )
            }
        };
        params.insert(0, Value::Int(to));
        return Ok(Plan {
            sql: format!(
                "SELECT {}, CAST(? AS SIGNED) AS {vc}, 'I' AS {oc} FROM {} AS t{filter}",
                list.join(", "),
                n.t()
            ),
            params,
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
    check_server(&mut conn).await?;
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
    // The version a run would reach now: the counter plus one per stamp
    // batch the pending changes need (bar changes still being committed).
    let pending: Option<i64> = if has_log {
        conn.exec_first(
            format!("SELECT COUNT(*) FROM {} WHERE hw_version = ?", n.log()),
            (PENDING,),
        )
        .await
        .map_err(my_err)?
    } else {
        None
    };
    let batches = (pending.unwrap_or(0).max(0) as u64).div_ceil(batch_size()) as i64;
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
        current_version: versions.as_ref().map(|v| v.0 + batches),
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

#[cfg(test)]
mod tests {
    use super::{BINLOG_STATEMENT, skip_locked_missing, stamp_err};

    #[test]
    fn a_statement_binlog_is_named() {
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "Cannot execute statement".into(),
                state: "HY000".into(),
            })
        };
        let e = stamp_err("`d`.`t`", server(BINLOG_STATEMENT)).to_string();
        assert!(
            e.contains("binlog_format = STATEMENT") && e.contains("ROW or MIXED"),
            "{e}"
        );
        let e = stamp_err("`d`.`t`", server(1213));
        assert!(e.is_transient(), "{e}");
        assert!(
            e.to_string().contains("stamping the change log of `d`.`t`"),
            "{e}"
        );
    }

    #[test]
    fn servers_without_skip_locked_are_named() {
        assert_eq!(skip_locked_missing("10.11.19-MariaDB-0+deb12u1"), None);
        assert_eq!(skip_locked_missing("10.6.0-MariaDB"), None);
        assert_eq!(skip_locked_missing("11.4.2-MariaDB-log"), None);
        assert_eq!(
            skip_locked_missing("10.5.23-MariaDB-1:10.5.23+maria~ubu2004"),
            Some("MariaDB 10.6")
        );
        assert_eq!(
            skip_locked_missing("5.5.5-10.3.39-MariaDB"),
            Some("MariaDB 10.6")
        );
        assert_eq!(skip_locked_missing("8.0.36"), None);
        assert_eq!(skip_locked_missing("8.4.0-commercial"), None);
        assert_eq!(skip_locked_missing("5.7.44-log"), Some("MySQL 8.0"));
    }
}
