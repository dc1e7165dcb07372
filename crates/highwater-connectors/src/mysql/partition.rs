//! `partitions: N` on MariaDB/MySQL — a full load read over N connections
//! whose snapshots hold the same rows of the table.
//!
//! InnoDB cannot hand one snapshot to another connection (PostgreSQL's
//! `pg_export_snapshot`), but N snapshots taken while nobody can change
//! the table see the same rows of it:
//!
//! ```text
//! readers 1..N-1: connect                         -- before the lock
//! lock:    SET SESSION lock_wait_timeout = 3, wait_timeout = 10
//!          LOCK TABLES t READ                     -- waits for open writers of t
//! readers 0..N-1: START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY
//! lock:    UNLOCK TABLES                          -- writers go on
//! reader 0: SELECT min(k), max(k) FROM t          -- in its snapshot
//! reader i: SELECT * FROM t WHERE <range i>
//! ```
//!
//! `LOCK TABLES … READ` is granted once every transaction that wrote to
//! the table has ended, and until `UNLOCK TABLES` no transaction can write
//! to it: every snapshot taken in between sees the same committed rows of
//! `t` (what else those snapshots see is never read). Writers of the table
//! pause for the few milliseconds of N `START TRANSACTION`s. A writer that
//! keeps a transaction open for longer than `lock_wait_timeout` (3 s)
//! makes the lock fail: the load then reads over one connection and says
//! why — meanwhile MariaDB holds new writers of the table behind the
//! waiting lock, so the wait is kept short. The lock needs the `LOCK
//! TABLES` privilege; without it the load also reads over one connection.
//! The lock is never held for more than 10 s: snapshots not taken by then
//! fail the read and the lock's session is dropped, and the session's
//! `wait_timeout` ends it on the server if highwater vanishes.
//!
//! The ranges cut `[min, max]` of a single integer key evenly; the first
//! range is open below (and takes the rows whose key is NULL), the last
//! open above. All readers feed one batch stream: one output, one commit.

use futures::future::try_join_all;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::source::{connect, my_err, q, relation_sql};
use super::types::MyKind;
use highwater_core::{Relation, Result};

/// How long `LOCK TABLES` waits for open writers of the table.
const LOCK_WAIT_SECS: u32 = 3;

/// The longest the lock may be held (the snapshots take milliseconds); also
/// the lock session's `wait_timeout`.
const HOLD_SECS: u32 = 10;

const START: &str = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";

/// A partitioned read: the other readers, each in its snapshot, and the
/// `WHERE` condition of every reader (the first is reader 0's).
pub(super) struct Parts {
    pub(super) readers: Vec<Conn>,
    pub(super) conditions: Vec<String>,
    pub(super) note: String,
}

/// What came of asking for partitions.
pub(super) enum Opened {
    /// `conn` and the readers are in their snapshots.
    Parts(Parts),
    /// One reader: `conn` is not in a transaction yet; the note says why
    /// (`None`: nothing worth saying, e.g. `auto` on a small table).
    One(Option<String>),
}

/// Open the snapshots of a partitioned full load of `rel` by `key`, with
/// `conn` as reader 0. Call before `conn` starts its transaction.
pub(super) async fn open(
    url: &str,
    conn: &mut Conn,
    rel: &Relation,
    key: &[String],
    cols: &[(String, MyKind)],
    wanted: usize,
) -> Result<Opened> {
    let Relation::Table { schema, name } = rel else {
        return Ok(Opened::One(Some(
            "partitions: a query: reads over one connection".into(),
        )));
    };
    let [k] = key else {
        return Ok(Opened::One(Some(match key {
            [] => "partitions: the table has no primary key (set `primary_key:`): reads over \
                   one connection"
                .to_string(),
            _ => format!(
                "partitions: the key ({}) is not one integer column: reads over one connection",
                key.join(", ")
            ),
        })));
    };
    if !cols
        .iter()
        .any(|(n, kind)| n == k && matches!(kind, MyKind::Int | MyKind::UInt))
    {
        return Ok(Opened::One(Some(format!(
            "partitions: the key {k} is not an integer column: reads over one connection"
        ))));
    }
    let estimate: f64 = if wanted == 0 {
        conn.exec_first::<Option<f64>, _, _>(
            "SELECT CAST(TABLE_ROWS AS DOUBLE) FROM information_schema.TABLES
              WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            (schema.clone(), name.clone()),
        )
        .await
        .ok()
        .flatten()
        .flatten()
        .unwrap_or(0.0)
    } else {
        0.0
    };
    let Some(n) = crate::partition::readers(wanted, estimate) else {
        return Ok(Opened::One(None));
    };
    let table = relation_sql(rel);

    // The other readers first, so the table is locked only while the
    // snapshots are taken.
    let mut readers = try_join_all((1..n).map(|_| async {
        let mut c = connect(url).await?;
        c.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(my_err)?;
        Ok::<_, highwater_core::Error>(c)
    }))
    .await?;
    conn.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(my_err)?;
    let mut lock = connect(url).await?;
    let locked = async {
        // A lock left by a process that vanished (network gone) ends with
        // its idle session, after `wait_timeout`, not hours later.
        lock.query_drop(format!(
            "SET SESSION lock_wait_timeout = {LOCK_WAIT_SECS}, wait_timeout = {HOLD_SECS}"
        ))
        .await?;
        lock.query_drop(format!("LOCK TABLES {table} READ")).await
    }
    .await;
    if let Err(e) = locked {
        let _ = lock.disconnect().await;
        for r in readers {
            let _ = r.disconnect().await;
        }
        return Ok(Opened::One(Some(format!(
            "warning: partitions: could not lock {rel} to take {n} snapshots of the same rows \
             ({}): read over one connection",
            super::errors::message(&e)
        ))));
    }
    let hold = std::time::Duration::from_secs(HOLD_SECS.into());
    let started = tokio::time::timeout(
        hold,
        futures::future::join(
            conn.query_drop(START),
            try_join_all(readers.iter_mut().map(|r| r.query_drop(START))),
        ),
    )
    .await;
    let Ok(started) = started else {
        // Writers of the table wait while the lock is held: end its
        // session rather than wait for an answer.
        drop(lock);
        return Err(highwater_core::Error::source(
            "mysql",
            format!(
                "partitions: the snapshots of {rel} were not taken within {HOLD_SECS} s; \
                 the table lock was given up"
            ),
        ));
    };
    // Writers go on whatever happened; the session ends with the lock.
    let unlocked = tokio::time::timeout(hold, lock.query_drop("UNLOCK TABLES")).await;
    match unlocked {
        Ok(u) => {
            let _ = lock.disconnect().await;
            u.map_err(my_err)?;
        }
        Err(_) => drop(lock),
    }
    started.0.map_err(my_err)?;
    started.1.map_err(my_err)?;

    let qk = q(k);
    let bounds: Option<(Value, Value)> = conn
        .query_first(format!("SELECT min({qk}), max({qk}) FROM {table}"))
        .await
        .map_err(my_err)?;
    let as_int = |v: &Value| match v {
        Value::Int(i) => Some(*i as i128),
        Value::UInt(u) => Some(*u as i128),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    };
    let ranges = match bounds {
        Some((lo, hi)) => match (as_int(&lo), as_int(&hi)) {
            (Some(lo), Some(hi)) => crate::partition::split(lo, hi, n),
            _ => vec![],
        },
        None => vec![],
    };
    if ranges.len() < 2 {
        // Nothing to split (no keys, or a single one): reader 0 reads it all.
        for mut r in readers {
            let _ = r.query_drop("COMMIT").await;
            let _ = r.disconnect().await;
        }
        return Ok(Opened::Parts(Parts {
            readers: vec![],
            conditions: vec!["TRUE".into()],
            note: format!("partitions: {k} has fewer than two values: read over one connection"),
        }));
    }
    // Cut points only: the first range open below, the last open above,
    // so every key of the snapshot is in exactly one range.
    let last = ranges.len() - 1;
    let conditions: Vec<String> = ranges
        .iter()
        .enumerate()
        .map(|(i, (a, b))| match i {
            0 => format!("{qk} <= {b} OR {qk} IS NULL"),
            i if i == last => format!("{qk} >= {a}"),
            _ => format!("{qk} >= {a} AND {qk} <= {b}"),
        })
        .collect();
    // More readers than ranges (a narrow key span): the rest go.
    while readers.len() > last {
        if let Some(mut r) = readers.pop() {
            let _ = r.query_drop("COMMIT").await;
            let _ = r.disconnect().await;
        }
    }
    Ok(Opened::Parts(Parts {
        readers,
        note: format!(
            "read in {} partitions of {k} over {} connections, one snapshot of the table",
            conditions.len(),
            conditions.len()
        ),
        conditions,
    }))
}

/// For `highwater check`: `None` when this role may lock `rel` (its grants
/// hold `LOCK TABLES` or `ALL PRIVILEGES` on `*.*` or on the table's
/// database), else what a partitioned load will do and the statement that
/// fixes it. Role grants activated later are not seen, hence a warning,
/// never an error.
pub async fn check_lock_privilege(url: &str, rel: &Relation) -> Result<Option<String>> {
    let Relation::Table { schema, .. } = rel else {
        return Ok(None);
    };
    let mut conn = connect(url).await?;
    let db: Option<String> = match schema {
        Some(s) => Some(s.clone()),
        None => conn
            .query_first("SELECT DATABASE()")
            .await
            .map_err(my_err)?,
    };
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.map_err(my_err)?;
    let user: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(my_err)?;
    let _ = conn.disconnect().await;
    let db = db.unwrap_or_default();
    let on = |g: &str, what: &str| {
        g.contains(&format!(" ON {what} ")) || g.contains(&format!(" ON {what}\n"))
    };
    let quoted_db = format!("`{}`.*", db.replace('`', "``"));
    let may = grants.iter().any(|g| {
        let g = g.to_uppercase().replace("`*`", "*");
        let privileged = g.contains("ALL PRIVILEGES") || g.contains("LOCK TABLES");
        privileged && (on(&g, "*.*") || on(&g, &quoted_db.to_uppercase()))
    });
    Ok((!may).then(|| {
        format!(
            "no LOCK TABLES privilege on {quoted_db} among the grants of {}: a partitioned load \
             will read over one connection (GRANT LOCK TABLES ON {quoted_db} TO {0})",
            user.unwrap_or_else(|| "this user".into())
        )
    }))
}
