//! `mode: cdc` on PostgreSQL: net changes read from the write-ahead log
//! through a logical replication slot with the built-in `pgoutput` plugin,
//! using the slot's SQL functions (no replication connection; see
//! docs/decisions.md "Log-based capture on PostgreSQL").
//!
//! Objects, named after the stream ([`slot_name`]): a publication for the
//! stream's table, and a logical slot. The publication's comment holds the
//! slot's generation (its consistent point): a position of another
//! generation means a full reload.
//!
//! A run, step by step:
//!
//! ```text
//! first run (or missing/invalidated slot, TRUNCATE, other generation):
//!   create publication; drop + create slot  -> L, its consistent point
//!   BEGIN REPEATABLE READ; S = pg_current_snapshot(); U = insert LSN
//!   copy every row (version L); position L + "skip xids visible in S
//!   for commits before U"
//! later runs:
//!   advance the slot to the committed position P if it is behind
//!   to = pg_current_wal_flush_lsn()
//!   pg_logical_slot_peek_binary_changes(slot, to)     -- peek, never consume
//!   keep transactions with commit LSN >= P (and not in S, see above)
//!   net changes per key; position `to`
//! after the target committed:  pg_replication_slot_advance(slot, position)
//! ```
//!
//! Why no change is lost or duplicated. The slot outputs exactly the
//! transactions whose commit record starts at or after its confirmed
//! position, in commit order; a peek up to `to` outputs every commit record
//! that starts before `to` (decoding stops after the record that reaches
//! `to`), so consecutive windows `[P, to)` partition the commits. The slot
//! is only ever advanced to a committed position, so a kill -9 anywhere
//! re-reads from the committed position. The first load: every transaction
//! that committed before L is visible in S (S is taken after the slot
//! exists), and the slot outputs every transaction committed after L; those
//! also visible in S (committed between L and S) are skipped by xid. Open
//! transactions are not output until they commit, and then with their
//! commit LSN, so a long transaction never holds others back.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Buf;
use futures::StreamExt;
use highwater_core::{ChangeVersion, Error, Position, Relation, Result};
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::source::pg_err;
use super::types::PgKind;
use crate::change_tracking::{OPERATION_COLUMN, VERSION_COLUMN, table_of};
use crate::util::quote_ident;

fn q(s: &str) -> String {
    quote_ident(s, '"')
}

/// The slot and publication name of a stream reading database `db`:
/// `hw_cdc_<db>_<stream>` in lower-case letters, digits and `_`; a hash of
/// both is appended when that changed them or the name is too long (slot
/// names are unique per cluster, so the database is part of it).
pub fn slot_name(db: &str, stream: &str) -> String {
    let raw = format!("{db}_{stream}");
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("hw_cdc_{clean}");
    if clean == raw && name.len() <= 63 {
        return name;
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in raw.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    let keep = name.len().min(54);
    format!("{}_{h:08x}", &name[..keep])
}

/// The slot name of `stream` in the database `client` is connected to.
async fn slot_of(client: &Client, stream: &str) -> Result<String> {
    let db: String = client
        .query_typed_one("SELECT current_database()::text", &[])
        .await
        .map_err(pg_err)?
        .get(0);
    Ok(slot_name(&db, stream))
}

fn lsn_text(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xffff_ffff)
}

fn parse_u64(s: &str, what: &str) -> Result<u64> {
    s.trim()
        .parse()
        .map_err(|_| Error::source("postgres", format!("unreadable {what}: {s}")))
}

/// The snapshot of a first load: transactions visible in it are in the
/// load and skipped by the first deltas (those whose commit is before
/// `until`).
#[derive(Debug, Clone, PartialEq)]
struct SnapFilter {
    until: u64,
    xmax: u64,
    xip: Vec<u64>,
}

impl SnapFilter {
    /// Whether the 32-bit `xid` of a transaction committed at `lsn` is
    /// visible in the snapshot.
    fn visible(&self, xid: u32, lsn: u64) -> bool {
        if lsn >= self.until {
            return false;
        }
        // The 64-bit xid nearest to xmax with these low 32 bits.
        let base = self.xmax & !0xffff_ffff;
        let mut x = base | xid as u64;
        if x > self.xmax + (1 << 31) && x >= (1 << 32) {
            x -= 1 << 32;
        } else if x + (1 << 31) < self.xmax {
            x += 1 << 32;
        }
        x < self.xmax && !self.xip.contains(&x)
    }
}

/// A position's generation: the slot's consistent point, and the first
/// load's snapshot while it still matters.
#[derive(Debug, Clone, PartialEq)]
struct Gen {
    slot_lsn: u64,
    filter: Option<SnapFilter>,
}

impl Gen {
    fn encode(&self) -> String {
        let mut s = format!("slot@{}", self.slot_lsn);
        if let Some(f) = &self.filter {
            let xip: Vec<String> = f.xip.iter().map(|x| x.to_string()).collect();
            s.push_str(&format!(
                ";until={};xmax={};xip={}",
                f.until,
                f.xmax,
                xip.join(",")
            ));
        }
        s
    }

    fn decode(s: &str) -> Option<Gen> {
        let mut parts = s.split(';');
        let slot_lsn = parts.next()?.strip_prefix("slot@")?.parse().ok()?;
        let mut until = None;
        let mut xmax = None;
        let mut xip = Vec::new();
        for p in parts {
            let (k, v) = p.split_once('=')?;
            match k {
                "until" => until = Some(v.parse().ok()?),
                "xmax" => xmax = Some(v.parse().ok()?),
                "xip" => {
                    for x in v.split(',').filter(|x| !x.is_empty()) {
                        xip.push(x.parse().ok()?);
                    }
                }
                _ => return None,
            }
        }
        let filter = match (until, xmax) {
            (Some(until), Some(xmax)) => Some(SnapFilter { until, xmax, xip }),
            _ => None,
        };
        Some(Gen { slot_lsn, filter })
    }
}

fn comment_of(g: u64) -> String {
    format!("highwater:{g}")
}

/// What is missing for logical decoding, each with the statement that
/// fixes it (empty: nothing).
pub(super) async fn missing(client: &Client, slot: &str) -> Result<Vec<String>> {
    let row = client
        .query_typed_one(
            "SELECT current_setting('wal_level'),
                    current_setting('max_replication_slots')::int,
                    (SELECT count(*)::int FROM pg_replication_slots),
                    EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
                    (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user),
                    current_user::text",
            &[(&slot, Type::TEXT)],
        )
        .await
        .map_err(pg_err)?;
    let (level, max, used, has_slot, repl, user): (String, i32, i32, bool, Option<bool>, String) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    );
    let mut out = Vec::new();
    if level != "logical" {
        out.push(format!(
            "wal_level is {level}, logical decoding needs logical: run `ALTER SYSTEM SET wal_level = logical;` and restart PostgreSQL"
        ));
    }
    if repl != Some(true) {
        out.push(format!(
            "role {user} lacks the REPLICATION attribute: run `ALTER ROLE {} REPLICATION;` as a superuser",
            q(&user)
        ));
    }
    if !has_slot && used >= max {
        out.push(format!(
            "max_replication_slots is {max} and {used} slot(s) exist, so no slot can be created: run `ALTER SYSTEM SET max_replication_slots = {};` and restart PostgreSQL",
            (used + 1).max(10)
        ));
    }
    Ok(out)
}

/// `check`: whether the stream can run (or runs), in one line.
pub async fn check(url: &str, stream: &str) -> Result<(bool, String)> {
    let client = super::connect(url).await?;
    let slot = slot_of(&client, stream).await?;
    let m = missing(&client, &slot).await?;
    if !m.is_empty() {
        return Ok((false, m.join("; ")));
    }
    let st = status_line(&client, &slot).await?;
    Ok((true, format!("logical decoding ready; {st}")))
}

struct SlotRow {
    confirmed: u64,
    lost: bool,
    database: String,
}

async fn slot_row(client: &Client, slot: &str) -> Result<Option<SlotRow>> {
    let row = client
        .query_typed_opt(
            "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::text, coalesce(wal_status, ''),
                    coalesce(database::text, ''), plugin::text
               FROM pg_replication_slots WHERE slot_name = $1",
            &[(&slot, Type::TEXT)],
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = row else { return Ok(None) };
    let confirmed: Option<String> = row.get(0);
    let status: String = row.get(1);
    Ok(Some(SlotRow {
        confirmed: match confirmed {
            Some(c) => parse_u64(&c, "confirmed_flush_lsn")?,
            None => 0,
        },
        lost: status == "lost",
        database: row.get(2),
    }))
}

/// The publication's comment (the slot generation) and whether it
/// publishes `table` (`None`: no publication).
async fn publication(client: &Client, name: &str, t: &str) -> Result<Option<(String, bool)>> {
    let row = client
        .query_typed_opt(
            "SELECT coalesce(obj_description(p.oid, 'pg_publication'), ''),
                    EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid
                             AND r.prrelid = to_regclass($2))
               FROM pg_publication p WHERE p.pubname = $1",
            &[(&name, Type::TEXT), (&t, Type::TEXT)],
        )
        .await
        .map_err(pg_err)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// The session's temporary tables: every change of a window in log order
/// ([`RAW`]), and the net change per key ([`ROWS`]); each with the change's
/// order, version, operation and unchanged-TOAST column numbers, then the
/// table's columns with their types.
const RAW: &str = "hw_cdc_raw";
const ROWS: &str = "hw_cdc_rows";
const N: &str = "\"hw cdc n\"";
const V: &str = "\"hw cdc v\"";
const O: &str = "\"hw cdc o\"";
const M: &str = "\"hw cdc m\"";
/// A window's changes stay in memory up to this many bytes of COPY text,
/// then go to a temporary file (bounded memory, however large the window).
const SPILL_AT: usize = 1 << 20;

/// What [`prepare`] decided, finished by [`plan`] in the snapshot.
pub(super) struct Prepared {
    full: bool,
    generation: Gen,
    to: u64,
    /// The column lists of the relation messages seen.
    relations: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

/// Before the snapshot: check, set up or verify the slot and publication,
/// and read the changes (or decide on a full load).
pub(super) async fn prepare(
    client: &Client,
    stream: &str,
    rel: &Relation,
    pk: &[String],
    after: Option<&ChangeVersion>,
) -> Result<Prepared> {
    let slot = slot_of(client, stream).await?;
    let place = format!("stream {stream}");
    let m = missing(client, &slot).await?;
    if !m.is_empty() {
        return Err(Error::config(&place, m.join("; ")));
    }
    let t = super::change_tracking::names(client, rel).await?.t();
    table_of(rel)?;
    // Deletes and key changes must carry the key.
    let ident: Option<(String, bool)> = client
        .query_typed_opt(
            "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
               FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[(&t, Type::TEXT)],
        )
        .await
        .map_err(pg_err)?
        .map(|r| (r.get(0), r.get(1)));
    match ident {
        None => {
            return Err(Error::missing_relation(
                "postgres",
                format!("table {rel} not found"),
            ));
        }
        Some((ident, has_pk)) if (ident == "d" && !has_pk) || ident == "n" => {
            return Err(Error::config(
                &place,
                format!(
                    "table {t} has no replica identity (no primary key), so its updates and deletes cannot be captured: add a primary key or run `ALTER TABLE {t} REPLICA IDENTITY FULL;`"
                ),
            ));
        }
        _ => {}
    }

    let mut notes = Vec::new();
    let mut reload: Option<String> = None;
    match publication(client, &slot, &t).await? {
        None => {
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {} FOR TABLE {t} WITH (publish_via_partition_root = true)",
                    q(&slot)
                ))
                .await
                .map_err(|e| super::errors::source_at(format!("creating publication {slot}"), e))?;
            reload.get_or_insert(match after {
                None => format!("first run: created publication {slot} for {t}"),
                Some(_) => format!(
                    "FULL RELOAD: publication {slot} was missing (removed by `changes disable`?); created it for {t}"
                ),
            });
        }
        Some((_, false)) => {
            client
                .batch_execute(&format!("ALTER PUBLICATION {} SET TABLE {t}", q(&slot)))
                .await
                .map_err(|e| super::errors::source_at(format!("altering publication {slot}"), e))?;
            reload.get_or_insert(format!(
                "FULL RELOAD: publication {slot} did not publish {t}; it does now"
            ));
        }
        Some(_) => {}
    }
    let comment = publication(client, &slot, &t)
        .await?
        .map(|p| p.0)
        .unwrap_or_default();
    wait_idle(client, &slot).await?;
    let slot_row = slot_row(client, &slot).await?;
    if let Some(s) = &slot_row {
        let db: String = client
            .query_typed_one("SELECT current_database()::text", &[])
            .await
            .map_err(pg_err)?
            .get(0);
        if s.database != db {
            return Err(Error::config(
                &place,
                format!(
                    "replication slot {slot} belongs to database {} (not {db}); drop it with `SELECT pg_drop_replication_slot('{slot}');` or rename the stream",
                    s.database
                ),
            ));
        }
    }
    let generation = after.and_then(|a| a.generation.as_deref().and_then(Gen::decode));
    let p = after.map(|a| a.version.max(0) as u64);
    if reload.is_none() {
        reload = match (&slot_row, &generation, p) {
            (_, None, None) => Some("first run: creating the replication slot".to_string()),
            (None, _, _) => Some(format!(
                "FULL RELOAD: replication slot {slot} is missing (dropped, or never created for this position)"
            )),
            (Some(s), _, _) if s.lost => Some(format!(
                "FULL RELOAD: replication slot {slot} was invalidated (the WAL it needed was removed, max_slot_wal_keep_size)"
            )),
            (_, None, _) => Some(
                "FULL RELOAD: this stream's position is not of a replication slot (mode changed?)"
                    .to_string(),
            ),
            (Some(_), Some(g), _) if comment != comment_of(g.slot_lsn) => Some(format!(
                "FULL RELOAD: replication slot {slot} was created again since this stream's position"
            )),
            (Some(s), Some(_), Some(p)) if s.confirmed > p => Some(format!(
                "FULL RELOAD: replication slot {slot} was advanced past this stream's position; changes in between are gone"
            )),
            _ => None,
        };
    }
    if reload.is_none() {
        let (g, p) = (
            generation.clone().unwrap_or(Gen {
                slot_lsn: 0,
                filter: None,
            }),
            p.unwrap_or(0),
        );
        let confirmed = slot_row.as_ref().map_or(0, |s| s.confirmed);
        if confirmed < p {
            advance(client, &slot, p).await?;
        }
        let to: u64 = parse_u64(
            &client
                .query_typed_one(
                    "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::text",
                    &[],
                )
                .await
                .map_err(pg_err)?
                .get::<_, String>(0),
            "WAL position",
        )?;
        if to <= p {
            return Ok(Prepared {
                full: false,
                generation: g,
                to: p,
                relations: vec![],
                notes,
            });
        }
        let columns = table_columns(client, &t).await?;
        let read = peek(client, &slot, &t, pk, &columns, p, to, g.filter.as_ref()).await?;
        match read {
            Peeked::Truncated => {
                reload = Some(format!(
                    "FULL RELOAD: {t} was truncated; a truncate carries no keys"
                ));
            }
            Peeked::Changes(changes) => {
                // Staged and netted for `plan` (no CREATE in its read-only
                // snapshot).
                let relations = changes.relations.clone();
                stage(client, &t, pk, &columns, changes).await?;
                let mut g = g;
                if g.filter.as_ref().is_some_and(|f| to >= f.until) {
                    g.filter = None;
                }
                return Ok(Prepared {
                    full: false,
                    generation: g,
                    to,
                    relations,
                    notes,
                });
            }
        }
    }
    // Full load from a new slot.
    let why = reload.unwrap_or_default();
    tracing::warn!(stream, slot = %slot, "{why}");
    notes.push(why);
    if slot_row.is_some() {
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .map_err(|e| {
                super::errors::source_at(format!("dropping replication slot {slot}"), e)
            })?;
    }
    let lsn: String = client
        .query_one(
            "SELECT (lsn - '0/0'::pg_lsn)::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(|e| super::errors::source_at(format!("creating replication slot {slot}"), e))?
        .get(0);
    let slot_lsn = parse_u64(&lsn, "slot LSN")?;
    // Tests widen the window between the slot and the snapshot, where
    // commits are both in the load and in the slot (see the module doc).
    if let Some(ms) = std::env::var("HIGHWATER_TEST_CDC_SNAPSHOT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    client
        .batch_execute(&format!(
            "COMMENT ON PUBLICATION {} IS '{}'",
            q(&slot),
            comment_of(slot_lsn)
        ))
        .await
        .map_err(pg_err)?;
    Ok(Prepared {
        full: true,
        generation: Gen {
            slot_lsn,
            filter: None,
        },
        to: slot_lsn,
        relations: vec![],
        notes,
    })
}

async fn advance(client: &Client, slot: &str, to: u64) -> Result<()> {
    client
        .execute_typed(
            "SELECT pg_replication_slot_advance($1::text::name, $2::text::pg_lsn)",
            &[(&slot, Type::TEXT), (&lsn_text(to), Type::TEXT)],
        )
        .await
        .map_err(|e| super::errors::source_at(format!("advancing replication slot {slot}"), e))?;
    Ok(())
}

enum Peeked<'a> {
    Changes(Changes<'a>),
    Truncated,
}

fn bad(m: impl std::fmt::Display) -> Error {
    Error::source("postgres", format!("decoding the replication stream: {m}"))
}

fn take_str(b: &mut &[u8]) -> Result<String> {
    let end = b
        .iter()
        .position(|c| *c == 0)
        .ok_or_else(|| bad("unterminated string"))?;
    let s = String::from_utf8_lossy(&b[..end]).into_owned();
    b.advance(end + 1);
    Ok(s)
}

fn need(b: &[u8], n: usize) -> Result<()> {
    if b.len() < n {
        Err(bad("message ends early"))
    } else {
        Ok(())
    }
}

/// A tuple: per column, `None` for NULL, `Some(None)` for an unchanged
/// TOAST value, `Some(Some(text))`.
type Tuple = Vec<Option<Option<String>>>;

fn take_tuple(b: &mut &[u8]) -> Result<Tuple> {
    need(b, 2)?;
    let n = b.get_i16() as usize;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        need(b, 1)?;
        match b.get_u8() {
            b'n' => out.push(None),
            b'u' => out.push(Some(None)),
            b't' | b'b' => {
                need(b, 4)?;
                let len = b.get_i32().max(0) as usize;
                need(b, len)?;
                out.push(Some(Some(String::from_utf8_lossy(&b[..len]).into_owned())));
                b.advance(len);
            }
            k => return Err(bad(format!("unknown tuple value kind {k}"))),
        }
    }
    Ok(out)
}

/// A window's changes, in log order, as lines of COPY text for [`RAW`].
struct Changes<'a> {
    pk: &'a [String],
    table: String,
    /// The table's columns, in [`RAW`]'s order.
    columns: &'a [String],
    spill: Spill,
    /// The next change's order number.
    seq: u64,
    /// Numbers (into `columns`, from 1) of the columns some change left as
    /// an unchanged TOAST value that the log did not carry.
    masked: std::collections::BTreeSet<usize>,
    /// The column lists of the relation messages seen.
    relations: Vec<Vec<String>>,
}

impl Changes<'_> {
    fn key(&self, cols: &[String], tup: &Tuple) -> Result<Vec<String>> {
        let mut key = Vec::with_capacity(self.pk.len());
        for k in self.pk {
            let v = cols
                .iter()
                .position(|c| c == k)
                .and_then(|i| tup.get(i).cloned().flatten().flatten());
            match v {
                Some(v) => key.push(v),
                None => {
                    return Err(Error::config(
                        format!("primary_key column {k}"),
                        format!(
                            "the change carries no value for it: it must be the primary key of {} or the table needs `ALTER TABLE {} REPLICA IDENTITY FULL;`",
                            self.table, self.table
                        ),
                    ));
                }
            }
        }
        Ok(key)
    }

    /// One change as a line: its order, version, operation, the numbers of
    /// its unchanged TOAST columns the log did not carry (filled in from
    /// the key's earlier change by [`stage`]), then the values. A delete
    /// carries the key's values only.
    fn add(
        &mut self,
        op: char,
        cols: &[String],
        tup: &Tuple,
        old: Option<&Tuple>,
        version: u64,
    ) -> Result<()> {
        self.key(cols, tup)?;
        let mut masked = Vec::new();
        let mut values: Vec<Option<&str>> = Vec::with_capacity(self.columns.len());
        for (n, c) in self.columns.iter().enumerate() {
            let i = cols.iter().position(|x| x == c);
            let v = match i.and_then(|i| tup.get(i)) {
                _ if op == 'D' && !self.pk.contains(c) => None,
                None | Some(None) => None,
                Some(Some(Some(v))) => Some(v.as_str()),
                // Unchanged TOAST: the old image, or the key's earlier change.
                Some(Some(None)) => match old.and_then(|o| o.get(i.unwrap_or(usize::MAX))) {
                    Some(Some(Some(v))) => Some(v.as_str()),
                    _ => {
                        masked.push(n + 1);
                        None
                    }
                },
            };
            values.push(v);
        }
        let line = self.spill.line();
        line.extend_from_slice(format!("{}\t{version}\t{op}\t{{", self.seq).as_bytes());
        for (j, n) in masked.iter().enumerate() {
            if j > 0 {
                line.extend_from_slice(b",");
            }
            line.extend_from_slice(n.to_string().as_bytes());
        }
        line.extend_from_slice(b"}");
        for v in values {
            line.extend_from_slice(b"\t");
            copy_text(line, v);
        }
        line.extend_from_slice(b"\n");
        self.spill.end_line()?;
        self.masked.extend(masked);
        self.seq += 1;
        Ok(())
    }
}

/// Lines of COPY text: in memory up to [`SPILL_AT`] bytes, the rest in an
/// anonymous temporary file (removed by the system when closed).
struct Spill {
    buf: bytes::BytesMut,
    file: Option<std::fs::File>,
}

impl Spill {
    fn new() -> Spill {
        Spill {
            buf: bytes::BytesMut::with_capacity(1 << 16),
            file: None,
        }
    }

    fn line(&mut self) -> &mut bytes::BytesMut {
        &mut self.buf
    }

    fn end_line(&mut self) -> Result<()> {
        use std::io::Write;
        if self.buf.len() < SPILL_AT {
            return Ok(());
        }
        let spill_err = |e: std::io::Error| {
            Error::source(
                "postgres",
                format!("writing a window's changes to a temporary file: {e}"),
            )
        };
        if self.file.is_none() {
            self.file = Some(tempfile::tempfile().map_err(spill_err)?);
        }
        if let Some(f) = &mut self.file {
            f.write_all(&self.buf).map_err(spill_err)?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Send every line to `sink`, file first.
    async fn send_to<S>(
        self,
        sink: &mut std::pin::Pin<Box<S>>,
    ) -> std::result::Result<(), SendError>
    where
        S: futures::Sink<bytes::Bytes, Error = tokio_postgres::Error>,
    {
        use futures::SinkExt;
        use std::io::{Read, Seek};
        if let Some(mut f) = self.file {
            f.seek(std::io::SeekFrom::Start(0)).map_err(SendError::Io)?;
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut chunk).map_err(SendError::Io)?;
                if n == 0 {
                    break;
                }
                sink.send(bytes::Bytes::copy_from_slice(&chunk[..n]))
                    .await
                    .map_err(SendError::Pg)?;
            }
        }
        if !self.buf.is_empty() {
            sink.send(self.buf.freeze()).await.map_err(SendError::Pg)?;
        }
        Ok(())
    }
}

enum SendError {
    Io(std::io::Error),
    Pg(tokio_postgres::Error),
}

/// The table's column names, in order.
async fn table_columns(client: &Client, t: &str) -> Result<Vec<String>> {
    Ok(client
        .query_typed(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1)
               AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[(&t, Type::TEXT)],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Peek at the slot's changes up to `to`: every change of the
/// transactions that commit in `[after, to)`, in log order.
#[allow(clippy::too_many_arguments)]
async fn peek<'a>(
    client: &Client,
    slot: &str,
    t: &str,
    pk: &'a [String],
    columns: &'a [String],
    after: u64,
    to: u64,
    filter: Option<&SnapFilter>,
) -> Result<Peeked<'a>> {
    let rows = client
        .query_typed_raw(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1::text::name, $2::text::pg_lsn, NULL,
                 'proto_version', '1', 'publication_names', $1::text)",
            [
                (&slot as &(dyn tokio_postgres::types::ToSql + Sync), Type::TEXT),
                (&lsn_text(to), Type::TEXT),
            ],
        )
        .await
        .map_err(|e| super::errors::source_at(format!("reading replication slot {slot}"), e))?;
    let mut rows = Box::pin(rows);
    let mut rels: HashMap<u32, (String, Arc<Vec<String>>)> = HashMap::new();
    let mut net = Changes {
        pk,
        table: t.to_string(),
        columns,
        spill: Spill::new(),
        seq: 0,
        masked: Default::default(),
        relations: Vec::new(),
    };
    let mut skip = false;
    let mut version = 0u64;
    while let Some(row) = rows.next().await {
        let row = row
            .map_err(|e| super::errors::source_at(format!("reading replication slot {slot}"), e))?;
        let data: Vec<u8> = row.get(0);
        let mut b: &[u8] = &data;
        need(b, 1)?;
        let kind = b.get_u8();
        match kind {
            b'B' => {
                need(b, 20)?;
                let final_lsn = b.get_u64();
                let _ts = b.get_i64();
                let xid = b.get_u32();
                version = final_lsn;
                skip = final_lsn < after || filter.is_some_and(|f| f.visible(xid, final_lsn));
            }
            b'C' => skip = false,
            b'R' => {
                need(b, 4)?;
                let id = b.get_u32();
                let ns = take_str(&mut b)?;
                let name = take_str(&mut b)?;
                need(b, 3)?;
                let _ident = b.get_u8();
                let n = b.get_i16() as usize;
                let mut cols = Vec::with_capacity(n);
                for _ in 0..n {
                    need(b, 1)?;
                    let _flags = b.get_u8();
                    cols.push(take_str(&mut b)?);
                    need(b, 8)?;
                    b.advance(8);
                }
                if !skip && !net.relations.contains(&cols) {
                    net.relations.push(cols.clone());
                }
                rels.insert(id, (format!("{ns}.{name}"), Arc::new(cols)));
            }
            b'I' | b'U' | b'D' => {
                need(b, 5)?;
                let id = b.get_u32();
                let (_, cols) = rels
                    .get(&id)
                    .ok_or_else(|| bad(format!("change for unknown relation {id}")))?;
                let cols = cols.clone();
                let mut old = None;
                let mut new = None;
                while !b.is_empty() {
                    let tag = b.get_u8();
                    let tup = take_tuple(&mut b)?;
                    match tag {
                        b'K' | b'O' => old = Some(tup),
                        b'N' => new = Some(tup),
                        other => return Err(bad(format!("unknown tuple tag {other}"))),
                    }
                }
                if skip {
                    continue;
                }
                match (kind, old, new) {
                    (b'I', _, Some(n)) => net.add('I', &cols, &n, None, version)?,
                    (b'U', old, Some(n)) => {
                        if let Some(o) = &old {
                            let (ko, kn) = (net.key(&cols, o), net.key(&cols, &n));
                            if let (Ok(ko), Ok(kn)) = (ko, kn)
                                && ko != kn
                            {
                                net.add('D', &cols, o, None, version)?;
                                net.add('I', &cols, &n, None, version)?;
                                continue;
                            }
                        }
                        net.add('U', &cols, &n, old.as_ref(), version)?
                    }
                    (b'D', Some(o), _) => net.add('D', &cols, &o, None, version)?,
                    _ => return Err(bad("change without its tuple")),
                }
            }
            b'T' if !skip => return Ok(Peeked::Truncated),
            // Origin, type, logical message: nothing to do.
            _ => {}
        }
    }
    Ok(Peeked::Changes(net))
}

/// What to read, decided in the snapshot.
pub(super) struct Plan {
    pub sql: String,
    pub version_to: ChangeVersion,
    pub full_reload: bool,
}

/// Inside the REPEATABLE READ transaction: the `COPY` query (and, for a
/// full load, the snapshot to skip in later deltas).
pub(super) async fn plan(
    client: &Client,
    stream: &str,
    rel: &Relation,
    names: &[String],
    kinds: &[PgKind],
    prepared: Prepared,
) -> Result<Plan> {
    let t = super::change_tracking::names(client, rel).await?.t();
    let (vc, oc) = (q(VERSION_COLUMN), q(OPERATION_COLUMN));
    if prepared.full {
        let row = client
            .query_one(
                "SELECT pg_current_snapshot()::text, (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text",
                &[],
            )
            .await
            .map_err(pg_err)?;
        let (snap, until): (String, String) = (row.get(0), row.get(1));
        let mut parts = snap.split(':');
        let _xmin = parts.next();
        let xmax = parse_u64(parts.next().unwrap_or(""), "snapshot xmax")?;
        let xip = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| parse_u64(x, "snapshot xip"))
            .collect::<Result<Vec<_>>>()?;
        let generation = Gen {
            slot_lsn: prepared.generation.slot_lsn,
            filter: Some(SnapFilter {
                until: parse_u64(&until, "WAL insert position")?,
                xmax,
                xip,
            }),
        };
        let list: Vec<String> = names
            .iter()
            .zip(kinds)
            .map(|(c, k)| k.select_expr(&q(c)))
            .collect();
        return Ok(Plan {
            sql: format!(
                "COPY (SELECT {}, {}::int8 AS {vc}, 'I'::text AS {oc} FROM {t}) TO STDOUT (FORMAT binary)",
                list.join(", "),
                prepared.to
            ),
            version_to: ChangeVersion::new(prepared.to as i64, generation.encode()),
            full_reload: true,
        });
    }
    // Columns added or dropped since the changes were written.
    for cols in &prepared.relations {
        if let Some(c) = cols.iter().find(|c| !names.contains(c)) {
            return Err(Error::config(
                format!("column {c}"),
                format!(
                    "dropped from {t} (or renamed) after changes to be delivered were written; run `highwater changes disable {stream}` and run again to reload in full"
                ),
            ));
        }
        if let Some(c) = names.iter().find(|c| !cols.contains(c)) {
            return Err(Error::config(
                format!("column {c}"),
                format!(
                    "added to {t} (or renamed) after changes to be delivered were written; their rows lack it. Run `highwater changes disable {stream}` and run again to reload in full"
                ),
            ));
        }
    }
    let list: Vec<String> = names
        .iter()
        .zip(kinds)
        .map(|(c, k)| format!("{} AS {}", k.select_expr(&q(c)), q(c)))
        .collect();
    Ok(Plan {
        sql: format!(
            "COPY (SELECT {}, {V} AS {vc}, {O} AS {oc} FROM {ROWS} ORDER BY {N}) TO STDOUT (FORMAT binary)",
            list.join(", ")
        ),
        version_to: ChangeVersion::new(prepared.to as i64, prepared.generation.encode()),
        full_reload: false,
    })
}

/// Stage a window's changes and net them per key, in one transaction of
/// the session (its commit need not wait for the WAL flush: the tables are
/// the session's own):
///
/// ```text
/// RAW  <- COPY every change, in log order
/// ROWS <- the last change per key; `I` if the window inserted the key
///         (even if it changed again), `D` if the last was a delete, else `U`
/// ROWS unchanged TOAST values <- the key's latest earlier change that
///         carried the value (none, or a delete in between: an error)
/// ```
///
/// The server holds the window, not highwater: memory stays bounded
/// however many changes a window has.
async fn stage(
    client: &Client,
    t: &str,
    pk: &[String],
    columns: &[String],
    changes: Changes<'_>,
) -> Result<()> {
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL synchronous_commit = off;
             DROP TABLE IF EXISTS pg_temp.{RAW}, pg_temp.{ROWS};
             CREATE TEMP TABLE {RAW} AS SELECT 0::int8 AS {N}, 0::int8 AS {V}, ''::text AS {O}, '{{}}'::int4[] AS {M}, * FROM {t} LIMIT 0;
             CREATE TEMP TABLE {ROWS} AS TABLE {RAW} WITH NO DATA"
        ))
        .await
        .map_err(|e| super::errors::source_at(format!("creating temporary table {ROWS}"), e))?;
    let out = net(client, t, pk, columns, changes).await;
    let end = match out {
        Ok(()) => "COMMIT",
        Err(_) => "ROLLBACK",
    };
    let ended = client.batch_execute(end).await;
    out?;
    ended.map_err(|e| super::errors::source_at(format!("staging the changes in {ROWS}"), e))
}

/// The statements of [`stage`] inside its transaction.
async fn net(
    client: &Client,
    t: &str,
    pk: &[String],
    columns: &[String],
    changes: Changes<'_>,
) -> Result<()> {
    let failed = |e| super::errors::source_at(format!("staging the changes in {ROWS}"), e);
    let cols: Vec<String> = columns.iter().map(|c| q(c)).collect();
    let cols = cols.join(", ");
    let sink = client
        .copy_in(&format!(
            "COPY {RAW} ({N}, {V}, {O}, {M}, {cols}) FROM STDIN"
        ))
        .await
        .map_err(failed)?;
    let mut sink = Box::pin(sink);
    let masked = changes.masked;
    match changes.spill.send_to(&mut sink).await {
        Ok(()) => {}
        Err(SendError::Pg(e)) => return Err(failed(e)),
        Err(SendError::Io(e)) => {
            return Err(Error::source(
                "postgres",
                format!("reading a window's changes back from a temporary file: {e}"),
            ));
        }
    }
    sink.as_mut().finish().await.map_err(failed)?;
    let key: Vec<String> = pk.iter().map(|c| q(c)).collect();
    let key = key.join(", ");
    client
        .batch_execute(&format!(
            "INSERT INTO {ROWS} ({N}, {V}, {O}, {M}, {cols})
             SELECT {N}, {V}, CASE WHEN {O} = 'D' THEN 'D' WHEN \"hw cdc i\" THEN 'I' ELSE 'U' END, {M}, {cols}
               FROM (SELECT DISTINCT ON ({key}) *, bool_or({O} = 'I') OVER (PARTITION BY {key}) AS \"hw cdc i\"
                       FROM {RAW} ORDER BY {key}, {N} DESC) last"
        ))
        .await
        .map_err(failed)?;
    if !masked.is_empty() {
        resolve_toast(client, t, pk, columns, masked).await?;
    }
    client
        .batch_execute(&format!("DROP TABLE {RAW}"))
        .await
        .map_err(failed)
}

/// Unchanged TOAST values the log did not carry, in [`ROWS`]: from the
/// key's latest earlier change in [`RAW`] that did (rare: large values, no
/// REPLICA IDENTITY FULL).
async fn resolve_toast(
    client: &Client,
    t: &str,
    pk: &[String],
    columns: &[String],
    masked: std::collections::BTreeSet<usize>,
) -> Result<()> {
    let failed = |e| super::errors::source_at(format!("staging the changes in {ROWS}"), e);
    let key: Vec<String> = pk.iter().map(|c| q(c)).collect();
    let key = key.join(", ");
    client
        .batch_execute(&format!("CREATE INDEX ON {RAW} ({key}, {N})"))
        .await
        .map_err(failed)?;
    let same_key: Vec<String> = pk.iter().map(|c| format!("r.{0} = n.{0}", q(c))).collect();
    let same_key = same_key.join(" AND ");
    for m in masked {
        let c = q(&columns[m - 1]);
        let earlier = format!(
            "FROM {RAW} r WHERE {same_key} AND r.{N} < n.{N} AND (r.{O} = 'D' OR NOT ({m} = ANY(r.{M})))
             ORDER BY r.{N} DESC LIMIT 1"
        );
        let unknown: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {ROWS} n WHERE {m} = ANY(n.{M}) AND n.{O} <> 'D'
                       AND coalesce((SELECT r.{O} {earlier}), 'D') = 'D'"
                ),
                &[],
            )
            .await
            .map_err(failed)?
            .get(0);
        if unknown > 0 {
            return Err(Error::config(
                format!("column {}", columns[m - 1]),
                format!(
                    "an update of {t} left this large (TOAST) value unchanged and the log does not carry it: run `ALTER TABLE {t} REPLICA IDENTITY FULL;`, then `highwater changes disable` the stream and run it again"
                ),
            ));
        }
        client
            .batch_execute(&format!(
                "UPDATE {ROWS} n SET {c} = (SELECT r.{c} {earlier})
                  WHERE {m} = ANY(n.{M}) AND n.{O} <> 'D'"
            ))
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// One value in COPY's text format: `\N` for NULL, else escaped.
fn copy_text(out: &mut bytes::BytesMut, v: Option<&str>) {
    let Some(v) = v else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[b]),
        }
    }
}

/// Whether `to` is a `cdc` position (a slot generation and an LSN).
pub(crate) fn is_position(to: &Position) -> bool {
    generation_of(to).is_some()
}

/// The version and slot generation of a `cdc` position (`None`: not one).
fn generation_of(to: &Position) -> Option<(&ChangeVersion, Gen)> {
    let Position::Version(v) = to else {
        return None;
    };
    Some((v, v.generation.as_deref().and_then(Gen::decode)?))
}

/// After the stream's position committed: advance the slot to it (never
/// past, never backwards), on a session of the source with no transaction
/// open (the source's [`highwater_core::Source::confirm`]).
pub(crate) async fn confirm_on(client: &Client, stream: &str, to: &Position) -> Result<()> {
    let Some((v, generation)) = generation_of(to) else {
        return Ok(());
    };
    let slot = slot_of(client, stream).await?;
    let comment: Option<String> = client
        .query_typed_opt(
            "SELECT coalesce(obj_description(oid, 'pg_publication'), '') FROM pg_publication WHERE pubname = $1",
            &[(&slot, Type::TEXT)],
        )
        .await
        .map_err(pg_err)?
        .map(|r| r.get(0));
    if comment.as_deref() != Some(comment_of(generation.slot_lsn).as_str()) {
        return Ok(());
    }
    wait_idle(client, &slot).await?;
    if let Some(s) = slot_row(client, &slot).await?
        && !s.lost
        && s.confirmed < v.version as u64
    {
        advance(client, &slot, v.version as u64).await?;
    }
    Ok(())
}

async fn status_line(client: &Client, slot: &str) -> Result<String> {
    let row = client
        .query_opt(
            "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::text, coalesce(wal_status, ''),
                    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::int8, active
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(pg_err)?;
    Ok(match row {
        None => format!("replication slot {slot} not created yet (the first run creates it)"),
        Some(r) => {
            let c: Option<String> = r.get(0);
            let st: String = r.get(1);
            let retained: i64 = r.get(2);
            let active: bool = r.get(3);
            format!(
                "replication slot {slot}: confirmed LSN {}, retains {retained} bytes of WAL, wal_status {st}{}",
                c.unwrap_or_else(|| "-".into()),
                if active { ", in use" } else { "" }
            )
        }
    })
}

/// The bytes of WAL the stream's slot retains (`None`: no slot).
pub async fn retained_bytes(url: &str, stream: &str) -> Result<Option<i64>> {
    let client = super::connect(url).await?;
    let slot = slot_of(&client, stream).await?;
    let row = client
        .query_opt(
            "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::int8
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(pg_err)?;
    Ok(row.map(|r| r.get(0)))
}

/// Wait (up to 30 s) until no session uses the slot: a run killed during
/// a peek leaves its server session reading until the statement ends.
async fn wait_idle(client: &Client, slot: &str) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let active: Option<bool> = client
            .query_typed_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[(&slot, Type::TEXT)],
            )
            .await
            .map_err(pg_err)?
            .map(|r| r.get(0));
        if active != Some(true) {
            return Ok(());
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            return Err(Error::source(
                "postgres",
                format!(
                    "replication slot {slot} is in use by another session (another reader of this slot?) for 30 s"
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `changes status`: the slot's confirmed position and retained WAL.
pub async fn status(url: &str, stream: &str) -> Result<String> {
    let client = super::connect(url).await?;
    let slot = slot_of(&client, stream).await?;
    status_line(&client, &slot).await
}

/// `changes disable`: drop the slot and the publication.
pub async fn disable(url: &str, stream: &str) -> Result<Vec<String>> {
    let client = super::connect(url).await?;
    let slot = slot_of(&client, stream).await?;
    let mut removed = Vec::new();
    wait_idle(&client, &slot).await?;
    if slot_row(&client, &slot).await?.is_some() {
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .map_err(|e| {
                super::errors::source_at(format!("dropping replication slot {slot}"), e)
            })?;
        removed.push(format!("replication slot {slot}"));
    }
    let has_pub: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&slot],
        )
        .await
        .map_err(pg_err)?
        .get(0);
    if has_pub {
        client
            .batch_execute(&format!("DROP PUBLICATION {}", q(&slot)))
            .await
            .map_err(pg_err)?;
        removed.push(format!("publication {slot}"));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        let mut b = bytes::BytesMut::new();
        copy_text(&mut b, Some("a\\b\tc\nd\re"));
        b.extend_from_slice(b"|");
        copy_text(&mut b, None);
        assert_eq!(&b[..], b"a\\\\b\\tc\\nd\\re|\\N");
    }

    #[test]
    fn names_are_safe_and_distinct() {
        assert_eq!(slot_name("shop", "orders"), "hw_cdc_shop_orders");
        assert_ne!(slot_name("shop", "a-b"), slot_name("shop", "a_b"));
        assert!(slot_name("shop", &"x".repeat(100)).len() <= 63);
    }

    #[test]
    fn generations_round_trip() {
        let g = Gen {
            slot_lsn: 42,
            filter: Some(SnapFilter {
                until: 50,
                xmax: 900,
                xip: vec![890, 895],
            }),
        };
        assert_eq!(Gen::decode(&g.encode()), Some(g.clone()));
        let f = g.filter.unwrap();
        assert!(f.visible(800, 10));
        assert!(!f.visible(890, 10));
        assert!(!f.visible(900, 10));
        assert!(!f.visible(800, 50));
    }
}
