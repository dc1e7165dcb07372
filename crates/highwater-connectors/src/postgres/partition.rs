//! `partitions: N` — a full load read over N connections in one snapshot.
//!
//! ```text
//! reader 0 (the read's own transaction, REPEATABLE READ)
//!   SELECT min(k), max(k), pg_export_snapshot()       -- the ranges, the snapshot
//! readers 1..N-1 (new connections)
//!   BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
//!   SET TRANSACTION SNAPSHOT '<id>'                   -- before reader 0 may end
//! each reader
//!   COPY (SELECT … WHERE k BETWEEN lo AND hi) TO STDOUT (FORMAT binary)
//! ```
//!
//! The ranges split `[min, max]` of a single integer key evenly; reader 0
//! also reads the rows whose key is NULL (a declared key without a
//! constraint). All readers feed one batch stream, so the sink writes one
//! output and the attempt publishes it with one commit, as for one reader.
//! Another key (text, composite) or a table too small reads over one
//! connection, and the note says why.

use tokio_postgres::Client;

use super::types::PgKind;
use crate::util::quote_ident;
use highwater_core::{Error, Result};

/// A partitioned read: the exported snapshot and one key range per reader.
pub(super) struct Parts {
    pub(super) snapshot: String,
    pub(super) key: String,
    pub(super) ranges: Vec<(i64, i64)>,
}

/// `BEGIN` in the snapshot `snapshot` (exported by another session).
pub(super) fn import_sql(snapshot: &str) -> String {
    format!(
        "{}; SET TRANSACTION SNAPSHOT '{}'",
        super::source::BEGIN_READ,
        snapshot.replace('\'', "''")
    )
}

/// The COPY of the rows whose `key` lies in `[lo, hi]` (and, with
/// `nulls`, whose key is NULL).
pub(super) fn range_sql(
    select: &[String],
    from: &str,
    key: &str,
    (lo, hi): (i64, i64),
    nulls: bool,
) -> String {
    let k = quote_ident(key, '"');
    let nulls = if nulls {
        format!(" OR {k} IS NULL")
    } else {
        String::new()
    };
    format!(
        "COPY (SELECT {} FROM {from} WHERE {k} BETWEEN {lo} AND {hi}{nulls}) TO STDOUT (FORMAT binary)",
        select.join(", ")
    )
}

impl Parts {
    /// Run on a new connection before its COPY.
    pub(super) fn import_sql(&self) -> String {
        import_sql(&self.snapshot)
    }

    pub(super) fn copy_sql(
        &self,
        select: &[String],
        from: &str,
        range: &(i64, i64),
        first: bool,
    ) -> String {
        range_sql(select, from, &self.key, *range, first)
    }

    pub(super) fn note(&self) -> String {
        format!(
            "read in {} partitions of {} over {} connections, one snapshot",
            self.ranges.len(),
            self.key,
            self.ranges.len()
        )
    }
}

/// The ranges for `wanted` readers (0: `auto`), or `None` for one reader.
/// Inside the read's transaction, before its COPY.
pub(super) async fn plan(
    client: &Client,
    from: &str,
    key: &[String],
    names: &[String],
    kinds: &[PgKind],
    wanted: usize,
) -> Result<Option<Parts>> {
    let [k] = key else {
        return Ok(None);
    };
    let integer = names
        .iter()
        .position(|n| n == k)
        .is_some_and(|i| matches!(kinds[i], PgKind::Int2 | PgKind::Int4 | PgKind::Int8));
    if !integer {
        return Ok(None);
    }
    let qk = quote_ident(k, '"');
    let row = client
        .query_one(
            &format!("SELECT min({qk})::int8, max({qk})::int8, pg_export_snapshot() FROM {from}"),
            &[],
        )
        .await
        .map_err(|e| Error::source("postgres", format!("partitioning the read by {k}: {e}")))?;
    let (Some(lo), Some(hi)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)) else {
        return Ok(None);
    };
    let rows: f32 = if wanted == 0 {
        // The planner's estimate; a query (no table) reads over one.
        client
            .query_one(
                "SELECT coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)), 0)::float4",
                &[&from],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0.0)
    } else {
        0.0
    };
    let Some(n) = crate::partition::readers(wanted, rows as f64) else {
        return Ok(None);
    };
    Ok(Some(Parts {
        snapshot: row.get(2),
        key: k.clone(),
        ranges: crate::partition::split(lo as i128, hi as i128, n)
            .into_iter()
            .map(|(a, b)| (a as i64, b as i64))
            .collect(),
    })
    .filter(|p| p.ranges.len() > 1))
}
