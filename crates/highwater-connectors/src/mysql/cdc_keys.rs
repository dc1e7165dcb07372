//! The changed keys of one binlog window, with bounded memory: the reader
//! ([`super::cdc`]) reports each row change's key as it reads it, and the
//! keys go to the session's temporary key table (`hw_cdc_keys`, whose
//! unique key over the key columns makes one row per key) in batches, so
//! a window of a million changed keys costs the server a table, not the
//! run its memory.
//!
//! ```text
//! row event of the table  -> touch(key, inserted)     the open transaction's keys
//!   more than LIMIT open  -> spill them to hw_cdc_txn  (a huge transaction)
//! XID / COMMIT at V       -> commit(V)                 net per key, in memory
//!   more than LIMIT keys  -> flush: INSERT … ON DUPLICATE KEY UPDATE
//!                            (hw_cdc_txn moves over with INSERT … SELECT)
//! BEGIN / GTID / ROLLBACK -> forget the open transaction
//! end of the window       -> finish(): flush the rest
//! ```
//!
//! Each key row carries `hw_n`, the order of its last change (increasing
//! across the window, so every flush is later than the rows it updates),
//! `hw_v`, the commit position of that change, and `hw_c`, whether the
//! key's current life began in the window (a change of the window
//! inserted it: `I`, as change tracking says).
//!
//! Without the unique key (MariaDB cannot build one for a key of this
//! type) the table cannot merge: the keys are then kept in memory until
//! the window ends, as they are merged nowhere else.

use std::collections::HashMap;

use highwater_core::Result;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::cdc::Table;
use super::source::{my_err, q};

/// The session's temporary table of changed keys (created by `prepare`).
pub(super) const KEYS: &str = "hw_cdc_keys";

/// The session's temporary table of a huge open transaction's keys
/// (created by `prepare`).
pub(super) const TXN: &str = "hw_cdc_txn";

/// How many keys a window keeps in memory before it writes them to the
/// key table (about 200 bytes each).
const LIMIT: usize = 50_000;

/// Rows per `INSERT` statement (bound parameters stay far below 65,535).
const ROWS_PER_INSERT: usize = 1_000;

/// A key's net change so far in the window.
struct Changed {
    key: Vec<Value>,
    n: i64,
    version: i64,
    created: bool,
}

/// The changed keys of a window (see the module doc).
pub(super) struct KeySpill<'a> {
    conn: &'a mut Conn,
    table: &'a Table,
    /// Keys per batch, and whether batches may be written before the end
    /// (the key table merges keys).
    limit: usize,
    merges: bool,
    /// Committed net changes not written yet, and where each key is.
    batch: Vec<Changed>,
    index: HashMap<String, usize>,
    /// The open transaction's keys (key, inserted), in order, and whether
    /// earlier ones of it are in `hw_cdc_txn`.
    open: Vec<(Vec<Value>, bool)>,
    open_spilled: bool,
    /// The order of the next change.
    n: i64,
    /// Whether any key committed in this window.
    any: bool,
}

impl<'a> KeySpill<'a> {
    /// Start a window's keys; the key table `prepare` made is empty.
    pub(super) async fn new(conn: &'a mut Conn, table: &'a Table) -> Result<KeySpill<'a>> {
        let merges = conn
            .query_first::<mysql_async::Row, _>(format!(
                "SHOW INDEX FROM {KEYS} WHERE Key_name = 'hw_key'"
            ))
            .await
            .map_err(my_err)?
            .is_some();
        let limit = std::env::var("HIGHWATER_TEST_CDC_KEY_BATCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(LIMIT)
            .max(1);
        Ok(KeySpill {
            conn,
            table,
            limit,
            merges,
            batch: Vec::new(),
            index: HashMap::new(),
            open: Vec::new(),
            open_spilled: false,
            n: 0,
            any: false,
        })
    }

    /// Whether the open transaction changed a key.
    pub(super) fn in_transaction(&self) -> bool {
        !self.open.is_empty() || self.open_spilled
    }

    /// Whether any key's change committed in the window so far.
    pub(super) fn any(&self) -> bool {
        self.any
    }

    /// A row change of the open transaction: its key, and whether it
    /// inserted the key.
    pub(super) async fn touch(&mut self, key: Vec<Value>, inserted: bool) -> Result<()> {
        self.open.push((key, inserted));
        if self.merges && self.open.len() >= self.limit {
            self.spill_open().await?;
        }
        Ok(())
    }

    /// The open transaction ended without committing (or a new one began).
    pub(super) async fn forget(&mut self) -> Result<()> {
        self.open.clear();
        if self.open_spilled {
            self.exec(format!("DELETE FROM {TXN}"), vec![]).await?;
            self.open_spilled = false;
        }
        Ok(())
    }

    /// The open transaction committed at `version`.
    pub(super) async fn commit(&mut self, version: i64) -> Result<()> {
        self.any |= self.in_transaction();
        if self.open_spilled {
            // Order: what is in memory is older than the spilled keys.
            self.spill_open().await?;
            self.flush().await?;
            let cols = self.key_columns();
            let set = Self::merge_set(&cols);
            self.exec(
                format!(
                    "INSERT INTO {KEYS} (hw_n, hw_v, hw_c, {cols}) SELECT hw_n, ?, hw_c, {cols} FROM {TXN} ORDER BY hw_n
                     ON DUPLICATE KEY UPDATE {set}",
                    cols = cols.join(", "),
                ),
                vec![Value::Int(version)],
            )
            .await?;
            return self.forget().await;
        }
        for (key, created) in std::mem::take(&mut self.open) {
            let k = format!("{key:?}");
            let n = self.next();
            match self.index.get(&k) {
                Some(&i) => {
                    let c = &mut self.batch[i];
                    c.version = version;
                    c.n = n;
                    c.created |= created;
                }
                None => {
                    self.index.insert(k, self.batch.len());
                    self.batch.push(Changed {
                        key,
                        n,
                        version,
                        created,
                    });
                }
            }
        }
        if self.merges && self.batch.len() >= self.limit {
            self.flush().await?;
        }
        Ok(())
    }

    /// The window ended: every committed key is in the key table.
    pub(super) async fn finish(mut self) -> Result<()> {
        self.flush().await
    }

    fn next(&mut self) -> i64 {
        self.n += 1;
        self.n
    }

    fn key_columns(&self) -> Vec<String> {
        self.table
            .key
            .iter()
            .map(|&i| q(&self.table.columns[i].0))
            .collect()
    }

    /// A later change of a key the table holds: its order, version and
    /// spelling (keys the collation equates). `hw_c`: an insert of the
    /// same key (spelled the same) makes its current life begin in the
    /// window; a key the collation equates but spelled otherwise (`'a'`
    /// updated to `'A'`) is the same row, whose life goes on. (`hw_c` is
    /// assigned first: later assignments see the new values.)
    fn merge_set(cols: &[String]) -> String {
        // Qualified: an `INSERT … SELECT` from hw_cdc_txn has the same names.
        let same: Vec<String> = cols
            .iter()
            .map(|c| format!("CAST({KEYS}.{c} AS BINARY) <=> CAST(VALUES({c}) AS BINARY)"))
            .collect();
        let created = format!(
            "{KEYS}.hw_c = IF({}, {KEYS}.hw_c | VALUES(hw_c), {KEYS}.hw_c)",
            same.join(" AND ")
        );
        std::iter::once(created)
            .chain(
                ["hw_n", "hw_v"]
                    .iter()
                    .map(|c| c.to_string())
                    .chain(cols.iter().cloned())
                    .map(|c| format!("{KEYS}.{c} = VALUES({c})")),
            )
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The placeholders of one key's values: a TIMESTAMP key arrives as
    /// seconds since the epoch.
    fn key_holders(&self) -> Vec<&'static str> {
        self.table
            .key
            .iter()
            .map(|&i| match self.table.columns[i].2.as_str() {
                "timestamp" => "FROM_UNIXTIME(?)",
                _ => "?",
            })
            .collect()
    }

    /// Write the open transaction's keys so far to `hw_cdc_txn`.
    async fn spill_open(&mut self) -> Result<()> {
        let open = std::mem::take(&mut self.open);
        let cols = self.key_columns().join(", ");
        let one = format!("(?, ?, {})", self.key_holders().join(", "));
        for chunk in open.chunks(ROWS_PER_INSERT) {
            let mut params = Vec::with_capacity(chunk.len() * (2 + self.table.key.len()));
            for (key, created) in chunk {
                params.push(Value::Int(self.next()));
                params.push(Value::Int(i64::from(*created)));
                params.extend(key.iter().cloned());
            }
            let rows = vec![one.as_str(); chunk.len()].join(", ");
            self.exec(
                format!("INSERT INTO {TXN} (hw_n, hw_c, {cols}) VALUES {rows}"),
                params,
            )
            .await?;
        }
        self.open_spilled = true;
        Ok(())
    }

    /// Write the batch to the key table, in order.
    async fn flush(&mut self) -> Result<()> {
        let mut batch = std::mem::take(&mut self.batch);
        self.index.clear();
        batch.sort_by_key(|c| c.n);
        let cols = self.key_columns();
        let set = Self::merge_set(&cols);
        let one = format!("(?, ?, ?, {})", self.key_holders().join(", "));
        for chunk in batch.chunks(ROWS_PER_INSERT) {
            let mut params = Vec::with_capacity(chunk.len() * (3 + self.table.key.len()));
            for c in chunk {
                params.push(Value::Int(c.n));
                params.push(Value::Int(c.version));
                params.push(Value::Int(i64::from(c.created)));
                params.extend(c.key.iter().cloned());
            }
            let rows = vec![one.as_str(); chunk.len()].join(", ");
            self.exec(
                format!(
                    "INSERT INTO {KEYS} (hw_n, hw_v, hw_c, {}) VALUES {rows} ON DUPLICATE KEY UPDATE {set}",
                    cols.join(", ")
                ),
                params,
            )
            .await?;
        }
        Ok(())
    }

    async fn exec(&mut self, sql: String, params: Vec<Value>) -> Result<()> {
        self.conn.exec_drop(sql, params).await.map_err(|e| {
            super::errors::source_at(format!("the changed keys of {}", self.table.t()), e)
        })
    }
}
