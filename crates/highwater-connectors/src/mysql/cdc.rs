//! `mode: cdc` on MariaDB: net changes read from the binary log (ROW
//! format) through the replication protocol (`COM_BINLOG_DUMP`, as a
//! replica would), with `mysql_async`'s binlog stream. Nothing is created
//! on the server: the stream's position is a binlog file and offset, held
//! in the state store only (see docs/decisions.md "Log-based capture on
//! MariaDB").
//!
//! The dump connection announces MariaDB's GTID capability (so XA
//! transactions of other tables do not stop it) and takes a fresh replica
//! id per read. A position's generation names the server (`server_id`,
//! binlog base name) and when the position's file was created, checked
//! against the file's format description when the next read starts.
//!
//! A run, step by step:
//!
//! ```text
//! before the snapshot:  check log_bin / ROW / FULL; temporary key table
//! START TRANSACTION WITH CONSISTENT SNAPSHOT
//!   S = Binlog_snapshot_file/position   -- the binlog point of the snapshot
//! first run (or purged binlog, other server, TRUNCATE):
//!   SELECT every row (version S, operation I); position S
//! later runs (position P):
//!   second connection: binlog dump from P, stop at S
//!   keep the stream's table's row events of transactions committed in [P, S)
//!   net per key: the commit position of its last change, and whether
//!     its current life began in the window (a change inserted it)
//!   keys -> temporary table, in batches (cdc_keys); SELECT the rows of those keys in the snapshot
//!   (missing: D, created: I, else U); position S
//! ```
//!
//! Why no change is lost or duplicated. `Binlog_snapshot_position` is the
//! binlog point exactly consistent with the snapshot: the snapshot sees
//! every transaction whose commit is before it and none after. The binlog
//! holds whole transactions in commit order, so consecutive windows
//! `[P, S)` partition the commits, and the values read in the snapshot
//! are each key's state after its last change in the window. The position
//! moves only with the run's commit (there is nothing to advance on the
//! server), so a kill -9 anywhere re-reads from the committed position.
//! `SYS_CHANGE_VERSION` is `file number << 32 | offset` of the commit
//! event's end: monotone across files.

use futures::StreamExt;
use highwater_core::{ChangeVersion, Error, Relation, Result};
use mysql_async::binlog::events::{EventData, RowsEventData};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Value};

use super::cdc_keys::{KEYS, KeySpill, TXN};
use super::source::{connect, my_err, q};
use super::types::MyKind;
use crate::change_tracking::{OPERATION_COLUMN, VERSION_COLUMN, table_of};

const BACKEND: &str = "mysql";

/// `MARIA_SLAVE_CAPABILITY_GTID` (MariaDB's `log_event.h`).
const MARIA_SLAVE_CAPABILITY_GTID: u32 = 4;

/// MariaDB's `GTID_EVENT` type code (unknown to `mysql_common`).
const MARIADB_GTID_EVENT: u8 = 162;

fn bad(m: impl std::fmt::Display) -> Error {
    Error::source(BACKEND, format!("reading the binary log: {m}"))
}

/// A point in the binary log: a file and an offset in it.
#[derive(Debug, Clone, PartialEq)]
struct BinlogPos {
    file: String,
    pos: u64,
}

/// The number of a binlog file (`mariadb-bin.000042` -> 42).
fn seq_of(file: &str) -> Result<u64> {
    file.rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| bad(format!("binlog file name without a number: {file}")))
}

impl BinlogPos {
    fn version(&self) -> Result<i64> {
        Ok(((seq_of(&self.file)? << 32) | (self.pos & 0xffff_ffff)) as i64)
    }

    /// The point a version of generation `g` stands for.
    fn of_version(v: i64, g: &Gen) -> BinlogPos {
        let v = v.max(0) as u64;
        BinlogPos {
            file: format!("{}.{:06}", g.base, v >> 32),
            pos: v & 0xffff_ffff,
        }
    }
}

impl std::fmt::Display for BinlogPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// A position's generation: the server's `server_id` and binlog base
/// name, and when the position's binlog file was created (its format
/// description event's timestamp). Another server id or base name means a
/// full reload; a file of that name created at another time (another
/// server, `RESET MASTER`) too.
#[derive(Debug, Clone, PartialEq)]
struct Gen {
    server_id: String,
    base: String,
    created: u32,
}

impl Gen {
    fn encode(&self) -> String {
        format!(
            "binlog;server_id={};base={};created={}",
            self.server_id, self.base, self.created
        )
    }

    fn decode(s: &str) -> Option<Gen> {
        let rest = s.strip_prefix("binlog;server_id=")?;
        let (server_id, rest) = rest.split_once(";base=")?;
        let (base, created) = rest.rsplit_once(";created=")?;
        Some(Gen {
            server_id: server_id.to_string(),
            base: base.to_string(),
            created: created.parse().ok()?,
        })
    }

    /// Whether a position of `self` is in the binlog of `server`.
    fn same_server(&self, server: &Gen) -> bool {
        self.server_id == server.server_id && self.base == server.base
    }
}

/// The server's binlog settings.
struct Server {
    log_bin: bool,
    format: String,
    row_image: String,
    generation: Gen,
    /// `VERSION()`: MariaDB's contains `MariaDB`.
    version: String,
    mariadb: bool,
    user: String,
    /// MariaDB's `log_bin_compress`: row events this reader cannot decode.
    compressed: bool,
}

async fn server(conn: &mut Conn) -> Result<Server> {
    let row: Option<mysql_async::Row> = conn
        .query_first(
            "SELECT @@server_id, '', '', COALESCE(@@log_bin_basename, ''), @@log_bin,
                    @@binlog_format, @@binlog_row_image, VERSION(), CURRENT_USER()",
        )
        .await
        .map_err(my_err)?;
    let row = row.ok_or_else(|| bad("no answer about the server"))?;
    let text = |i: usize| -> String {
        match row.as_ref(i) {
            Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::Int(n)) => n.to_string(),
            Some(Value::UInt(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    // MariaDB only (MySQL has no such variable).
    let compressed = conn
        .query_first::<i64, _>("SELECT @@log_bin_compress")
        .await
        .ok()
        .flatten()
        == Some(1);
    let base = text(3);
    let base = base.rsplit('/').next().unwrap_or_default().to_string();
    Ok(Server {
        log_bin: text(4) == "1",
        format: text(5),
        row_image: text(6),
        generation: Gen {
            server_id: text(0),
            base,
            created: 0,
        },
        version: text(7),
        mariadb: text(7).contains("MariaDB"),
        user: text(8),
        compressed,
    })
}

/// What is missing for reading the binlog, each with the statement that
/// fixes it (empty: nothing). Privileges are only reported when the
/// account's own grants lack them (`with_grants`).
async fn missing(conn: &mut Conn, s: &Server, with_grants: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if !s.mariadb {
        out.push(mysql_refusal(&s.version));
        return Ok(out);
    }
    if !s.log_bin {
        out.push(
            "the binary log is off (log_bin = OFF): add `log_bin = mariadb-bin`, `binlog_format = ROW` and `binlog_row_image = FULL` under [mariadbd] in the server's configuration and restart it"
                .to_string(),
        );
        return Ok(out);
    }
    if !s.format.eq_ignore_ascii_case("ROW") {
        out.push(format!(
            "binlog_format is {}, cdc needs ROW: run `SET GLOBAL binlog_format = 'ROW';` and set `binlog_format = ROW` in the server's configuration",
            s.format
        ));
    }
    if !s.row_image.eq_ignore_ascii_case("FULL") {
        out.push(format!(
            "binlog_row_image is {}, cdc needs FULL: run `SET GLOBAL binlog_row_image = 'FULL';` and set `binlog_row_image = FULL` in the server's configuration",
            s.row_image
        ));
    }
    if s.compressed {
        out.push(
            "log_bin_compress is ON and compressed row events cannot be read: run `SET GLOBAL log_bin_compress = OFF;` and set it in the server's configuration"
                .to_string(),
        );
    }
    if with_grants {
        let (user, host) = s.user.rsplit_once('@').unwrap_or((&s.user, "%"));
        let grantee = format!("'{user}'@'{host}'");
        let privs: Vec<String> = conn
            .exec(
                "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?",
                (grantee.clone(),),
            )
            .await
            .map_err(my_err)?;
        let has = |p: &str| privs.iter().any(|x| x.eq_ignore_ascii_case(p));
        let monitor = if s.mariadb {
            "BINLOG MONITOR"
        } else {
            "REPLICATION CLIENT"
        };
        let mut lack = Vec::new();
        if !has("REPLICATION SLAVE") {
            lack.push("REPLICATION SLAVE");
        }
        if !(has(monitor) || has("REPLICATION CLIENT") || has("SUPER")) {
            lack.push(monitor);
        }
        if !lack.is_empty() {
            out.push(format!(
                "{grantee} lacks {}: run `GRANT {} ON *.* TO {grantee};` as an administrator",
                lack.join(" and "),
                lack.join(", ")
            ));
        }
    }
    Ok(out)
}

/// Why a MySQL server cannot be read (see docs/mode-cdc.md "MySQL").
fn mysql_refusal(version: &str) -> String {
    format!(
        "mode cdc reads MariaDB's binary log; this server is MySQL {version}, which does not report the binlog position of a consistent snapshot (Binlog_snapshot_file/Binlog_snapshot_position), so a first load and its binlog position cannot be taken together without a global read lock: use mode change_tracking or watermark for this table (see docs/mode-cdc.md, MySQL)"
    )
}

/// The binlog point of the open consistent snapshot (MariaDB only).
async fn snapshot_pos(conn: &mut Conn) -> Result<BinlogPos> {
    let rows: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(my_err)?;
    let get = |n: &str| {
        rows.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    match (get("Binlog_snapshot_file"), get("Binlog_snapshot_position")) {
        (Some(file), Some(pos)) if !file.is_empty() => Ok(BinlogPos {
            file,
            pos: pos.parse().map_err(|_| bad(format!("position {pos}")))?,
        }),
        _ => Err(Error::source(
            BACKEND,
            "the server does not report Binlog_snapshot_file/Binlog_snapshot_position (the binlog position of a consistent snapshot): mode cdc needs MariaDB with the binary log on",
        )),
    }
}

/// The binlog files on the server, with their sizes.
async fn binary_logs(conn: &mut Conn) -> Result<Vec<(String, u64)>> {
    let rows: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| super::errors::source_at("SHOW BINARY LOGS", e))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name = match r.as_ref(0)? {
                Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                _ => return None,
            };
            let size = match r.as_ref(1)? {
                Value::Int(n) => *n as u64,
                Value::UInt(n) => *n,
                Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok()?,
                _ => 0,
            };
            Some((name, size))
        })
        .collect())
}

/// `check`: whether the stream can run, in one line.
pub async fn check(url: &str, _stream: &str) -> Result<(bool, String)> {
    let mut conn = connect(url).await?;
    let s = server(&mut conn).await?;
    let m = missing(&mut conn, &s, true).await?;
    if !m.is_empty() {
        let _ = conn.disconnect().await;
        return Ok((false, m.join("; ")));
    }
    let line = status_line(&mut conn).await?;
    let _ = conn.disconnect().await;
    Ok((true, format!("binary log ready (ROW, FULL images); {line}")))
}

async fn status_line(conn: &mut Conn) -> Result<String> {
    let logs = binary_logs(conn).await?;
    Ok(match (logs.first(), logs.last()) {
        (Some(first), Some(last)) => format!(
            "binlog files {} to {} (current end {}:{}); the stream's position is a file and offset in them",
            first.0, last.0, last.0, last.1
        ),
        _ => "no binlog files".to_string(),
    })
}

/// The binlog bytes from `from` to the end of the last file in `logs`
/// (`SHOW BINARY LOGS`: each file's size; the last one's is the server's
/// current end). `None`: `from`'s file is not among them (purged).
fn bytes_after(logs: &[(String, u64)], from: &BinlogPos) -> Option<u64> {
    let i = logs.iter().position(|(f, _)| *f == from.file)?;
    let rest: u64 = logs[i + 1..].iter().map(|(_, size)| size).sum();
    Some(logs[i].1.saturating_sub(from.pos) + rest)
}

/// How many bytes of binlog the server wrote after a stream's committed
/// position: what its next run reads. `None`: the position is not in this
/// server's binlog (another server, or purged: the next run reloads).
pub async fn behind_bytes(url: &str, position: &ChangeVersion) -> Result<Option<u64>> {
    let Some(g) = position.generation.as_deref().and_then(Gen::decode) else {
        return Ok(None);
    };
    let mut conn = connect(url).await?;
    let s = server(&mut conn).await;
    let logs = binary_logs(&mut conn).await;
    let _ = conn.disconnect().await;
    if !g.same_server(&s?.generation) {
        return Ok(None);
    }
    Ok(bytes_after(
        &logs?,
        &BinlogPos::of_version(position.version, &g),
    ))
}

/// `changes status`: the server's binlog files and current end.
pub async fn status(url: &str, _stream: &str) -> Result<String> {
    let mut conn = connect(url).await?;
    let line = status_line(&mut conn).await;
    let _ = conn.disconnect().await;
    line
}

/// `changes status`: where a stream's committed `position` is, and the
/// bytes of binlog its next run reads.
pub async fn position_status(url: &str, position: &ChangeVersion) -> Result<String> {
    let Some(g) = position.generation.as_deref().and_then(Gen::decode) else {
        return Ok(
            "this stream's position is not a binlog position: its next run reloads in full"
                .to_string(),
        );
    };
    let at = BinlogPos::of_version(position.version, &g);
    let mut conn = connect(url).await?;
    let s = server(&mut conn).await;
    let logs = binary_logs(&mut conn).await;
    let _ = conn.disconnect().await;
    if !g.same_server(&s?.generation) {
        return Ok(format!(
            "this stream is at {at} in the binlog of another server (server_id {}): its next run reloads in full",
            g.server_id
        ));
    }
    Ok(match bytes_after(&logs?, &at) {
        Some(n) => format!("this stream is at {at}, {n} bytes of binlog behind the current end"),
        None => format!(
            "this stream is at {at}, a file no longer on the server: its next run reloads in full"
        ),
    })
}

/// The stream's table: database, name, columns in order (name, unsigned
/// integer width in bits or 0, `DATA_TYPE`) and the key columns' ordinals.
pub(super) struct Table {
    pub(super) db: String,
    pub(super) name: String,
    pub(super) columns: Vec<(String, u32, String)>,
    pub(super) key: Vec<usize>,
}

impl Table {
    pub(super) fn t(&self) -> String {
        format!("{}.{}", q(&self.db), q(&self.name))
    }
}

async fn table(conn: &mut Conn, stream: &str, rel: &Relation, pk: &[String]) -> Result<Table> {
    let (schema, name) = table_of(rel)?;
    let rows: Vec<(String, String, String, String, String)> = conn
        .exec(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE
               FROM information_schema.COLUMNS
              WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?
              ORDER BY ORDINAL_POSITION",
            (schema.map(str::to_string), name.to_string()),
        )
        .await
        .map_err(my_err)?;
    let Some(first) = rows.first() else {
        return Err(Error::missing_relation(
            BACKEND,
            format!("table {rel} not found"),
        ));
    };
    let (db, tname) = (first.0.clone(), first.1.clone());
    let columns: Vec<(String, u32, String)> = rows
        .iter()
        .map(|(_, _, c, dt, ct)| {
            let bits = match dt.as_str() {
                "tinyint" => 8,
                "smallint" => 16,
                "mediumint" => 24,
                "int" => 32,
                "bigint" => 64,
                _ => 0,
            };
            let unsigned = ct.contains("unsigned");
            (c.clone(), if unsigned { bits } else { 0 }, dt.clone())
        })
        .collect();
    let mut key = Vec::new();
    for k in pk {
        match columns.iter().position(|(c, _, _)| c == k) {
            Some(i) => key.push(i),
            None => {
                return Err(Error::config(
                    format!("stream {stream}"),
                    format!("primary_key column {k} is not a column of {db}.{tname}"),
                ));
            }
        }
    }
    Ok(Table {
        db,
        name: tname,
        columns,
        key,
    })
}

/// Before the snapshot: the server can be read, and the session's
/// temporary key tables exist (empty) with the key columns' types: the
/// window's keys, and a huge open transaction's (see [`KeySpill`]).
pub(super) async fn prepare(
    conn: &mut Conn,
    stream: &str,
    rel: &Relation,
    pk: &[String],
) -> Result<()> {
    let s = server(conn).await?;
    let m = missing(conn, &s, false).await?;
    if !m.is_empty() {
        return Err(Error::config(format!("stream {stream}"), m.join("; ")));
    }
    let t = table(conn, stream, rel, pk).await?;
    let keys: Vec<String> = pk.iter().map(|k| q(k)).collect();
    conn.query_drop(format!("DROP TEMPORARY TABLE IF EXISTS {KEYS}, {TXN}"))
        .await
        .map_err(my_err)?;
    conn.query_drop(format!(
        "CREATE TEMPORARY TABLE {KEYS} (hw_n BIGINT NOT NULL DEFAULT 0, hw_v BIGINT NOT NULL DEFAULT 0, hw_c TINYINT NOT NULL DEFAULT 0)
         SELECT {} FROM {} LIMIT 0",
        keys.join(", "),
        t.t()
    ))
    .await
    .map_err(|e| super::errors::source_at(format!("creating temporary table {KEYS}"), e))?;
    // Keys the binlog spells differently but the table's collation equates
    // ('a' and 'A') are one key: one row, the later change's version. (Not
    // possible for long TEXT/BLOB keys; those are kept apart, as spelled.)
    let _ = conn
        .query_drop(format!(
            "ALTER TABLE {KEYS} ADD UNIQUE KEY hw_key ({})",
            keys.join(", ")
        ))
        .await;
    conn.query_drop(format!(
        "CREATE TEMPORARY TABLE {TXN} (hw_n BIGINT NOT NULL DEFAULT 0, hw_c TINYINT NOT NULL DEFAULT 0)
         SELECT {} FROM {} LIMIT 0",
        keys.join(", "),
        t.t()
    ))
    .await
    .map_err(|e| super::errors::source_at(format!("creating temporary table {TXN}"), e))?;
    Ok(())
}

/// What to read, decided in the snapshot: as change tracking decides it.
use super::change_tracking::Plan;

/// Inside the consistent snapshot: the window `[after, S)`, the reload
/// decision, the changed keys (into the temporary table) and the query.
pub(super) async fn plan(
    conn: &mut Conn,
    url: &str,
    stream: &str,
    rel: &Relation,
    cols: &[(String, MyKind)],
    pk: &[String],
    after: Option<&ChangeVersion>,
) -> Result<Plan> {
    let to = snapshot_pos(conn).await?;
    let s = server(conn).await?;
    let t = table(conn, stream, rel, pk).await?;
    let generation = s.generation.clone();
    let (vc, oc) = (q(VERSION_COLUMN), q(OPERATION_COLUMN));
    let tq = t.t();
    let mut reload: Option<String> = None;
    let from = match after {
        None => {
            reload = Some(format!("first run: full load at binlog position {to}"));
            None
        }
        Some(a) => match a.generation.as_deref().and_then(Gen::decode) {
            None => {
                reload = Some(
                    "FULL RELOAD: this stream's position is not a binlog position (mode changed?)"
                        .to_string(),
                );
                None
            }
            Some(g) if !g.same_server(&generation) => {
                reload = Some(format!(
                    "FULL RELOAD: this stream's position is in the binlog of another server (server_id {}, binlog {}; now server_id {}, binlog {})",
                    g.server_id, g.base, generation.server_id, generation.base
                ));
                None
            }
            Some(g) => Some((BinlogPos::of_version(a.version, &g), g.created)),
        },
    };
    if let Some((p, _)) = &from {
        let logs = binary_logs(conn).await?;
        match logs.iter().find(|(f, _)| *f == p.file) {
            None => {
                reload = Some(format!(
                    "FULL RELOAD: binlog file {} of this stream's position {p} is no longer on the server (purged, expire_logs_days / binlog_expire_logs_seconds, or RESET MASTER); the changes since are gone",
                    p.file
                ))
            }
            Some((_, size)) if p.pos > *size || p.version()? > to.version()? => {
                reload = Some(format!(
                    "FULL RELOAD: this stream's position {p} lies beyond the server's binlog (RESET MASTER?)"
                ))
            }
            _ => {}
        }
    }
    let mut notes = Vec::new();
    if reload.is_none()
        && let Some((p, created)) = &from
    {
        let mut keys = KeySpill::new(conn, &t).await?;
        let read = read_window(url, &t, p, *created, &to, &mut keys).await?;
        match read {
            Window::Reload(why) => reload = Some(why),
            Window::Changes(created) => {
                keys.finish().await?;
                let version_to = ChangeVersion::new(
                    to.version()?,
                    Gen {
                        created,
                        ..generation
                    }
                    .encode(),
                );
                let list: Vec<String> = cols
                    .iter()
                    .map(|(c, _)| format!("{}.{}", if pk.contains(c) { "k" } else { "t" }, q(c)))
                    .collect();
                let join = pk
                    .iter()
                    .map(|c| format!("t.{0} = k.{0}", q(c)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                return Ok(Plan {
                    sql: format!(
                        "SELECT {}, k.hw_v AS {vc},
                                CASE WHEN t.{} IS NULL THEN 'D' WHEN k.hw_c = 1 THEN 'I' ELSE 'U' END AS {oc}
                           FROM {KEYS} AS k LEFT JOIN {tq} AS t ON {join}
                          ORDER BY k.hw_n",
                        list.join(", "),
                        q(&pk[0])
                    ),
                    params: vec![],
                    version_to,
                    full_reload: false,
                    notes,
                });
            }
        }
    }
    let why = reload.unwrap_or_default();
    tracing::warn!(stream, "{why}");
    notes.push(why);
    let version_to = ChangeVersion::new(
        to.version()?,
        Gen {
            created: file_created(url, &to.file).await?,
            ..generation
        }
        .encode(),
    );
    let list: Vec<String> = cols.iter().map(|(c, _)| format!("t.{}", q(c))).collect();
    Ok(Plan {
        sql: format!(
            "SELECT {}, CAST(? AS SIGNED) AS {vc}, 'I' AS {oc} FROM {tq} AS t",
            list.join(", ")
        ),
        params: vec![Value::Int(to.version()?)],
        version_to,
        full_reload: true,
        notes,
    })
}

enum Window {
    /// The changes (in the key table), and when the file of the window's
    /// end was created.
    Changes(u32),
    Reload(String),
}

/// A replica server id for this read: MariaDB ends an older dump of the
/// same id, so each read takes its own (in a range real replicas rarely use).
fn replica_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    0x4800_0000 | ((std::process::id() ^ nanos.rotate_left(7)) & 0x00ff_ffff)
}

/// The key of a row image, as values the key table's columns store:
/// unsigned integers read as such, a SET from its member bitmap (little
/// endian) and BIT (big endian) as numbers; a TIMESTAMP (seconds since
/// the epoch) goes through `FROM_UNIXTIME` (see [`KeySpill`]).
fn key_of(t: &Table, row: &BinlogRow) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(t.key.len());
    for &i in &t.key {
        let (name, bits, data_type) = &t.columns[i];
        let v = match row.as_ref(i) {
            Some(BinlogValue::Value(v)) => v.clone(),
            _ => {
                return Err(Error::config(
                    format!("column {name}"),
                    format!(
                        "a binlog row image of {} lacks this key column: the server must run with `binlog_row_image = FULL`",
                        t.t()
                    ),
                ));
            }
        };
        let number =
            |b: &mut dyn Iterator<Item = u8>| b.fold(0u64, |acc, x| (acc << 8) | u64::from(x));
        out.push(match (data_type.as_str(), v) {
            ("set", Value::Bytes(b)) => Value::UInt(number(&mut b.into_iter().rev())),
            ("bit", Value::Bytes(b)) => Value::UInt(number(&mut b.into_iter())),
            (_, Value::Int(n)) if *bits > 0 && n < 0 => {
                let mask = if *bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                Value::UInt(n as u64 & mask)
            }
            (_, v) => v,
        });
    }
    Ok(out)
}

/// A table named in a statement: its database, if qualified, and name.
type TableName = (Option<String>, String);

/// The identifiers a DDL statement changes, when it is one that matters
/// here: `("alter" | "reload", [(db, table)])`, lower-cased.
fn ddl_targets(query: &str) -> Option<(&'static str, Vec<TableName>)> {
    let mut s = query.trim_start();
    while let Some(rest) = s.strip_prefix("/*") {
        s = rest
            .split_once("*/")
            .map(|x| x.1)
            .unwrap_or("")
            .trim_start();
    }
    let words = tokens(s);
    let w = |i: usize| {
        words
            .get(i)
            .map(|x| x.to_ascii_lowercase())
            .unwrap_or_default()
    };
    let mut i = 1;
    let kind = match w(0).as_str() {
        "alter" => {
            while ["online", "ignore"].contains(&w(i).as_str()) {
                i += 1;
            }
            "alter"
        }
        "truncate" | "drop" | "rename" => "reload",
        "create" => {
            if w(i) == "or" {
                i += 2;
            }
            "reload"
        }
        _ => return None,
    };
    while ["temporary"].contains(&w(i).as_str()) {
        i += 1;
    }
    if w(i) != "table" && !(kind == "reload" && w(0) == "truncate") {
        return None;
    }
    if w(i) == "table" {
        i += 1;
    }
    while ["if", "not", "exists"].contains(&w(i).as_str()) {
        i += 1;
    }
    let names: Vec<&String> = match w(0).as_str() {
        // Every name of `DROP TABLE a, b` and `RENAME TABLE a TO b, c TO d`.
        "drop" | "rename" => words[i.min(words.len())..]
            .iter()
            .filter(|x| !x.eq_ignore_ascii_case("to") && *x != ",")
            .collect(),
        _ => words.get(i).into_iter().collect(),
    };
    let targets = names
        .into_iter()
        .map(|n| {
            let parts: Vec<String> = n
                .split('.')
                .map(|p| p.trim_matches('`').to_lowercase())
                .collect();
            match parts.as_slice() {
                [d, t] => (Some(d.clone()), t.clone()),
                _ => (None, parts.concat()),
            }
        })
        .collect();
    Some((kind, targets))
}

/// Words of a statement: bare words, `quoted` names joined by dots, and
/// commas; stops at the first parenthesis or comment.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if !quoted && chars.peek() == Some(&'*') => break,
            '`' => {
                quoted = !quoted;
                cur.push(c);
            }
            _ if quoted => cur.push(c),
            '(' | ';' => break,
            ',' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(",".into());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether `query` is a data change (`INSERT`, `UPDATE`, `DELETE`,
/// `REPLACE`, `LOAD DATA`) that names `table` (lower-case) anywhere: a
/// change logged as a statement (conservative: a name that only looks
/// alike fails the run too, which a full refresh clears).
fn dml_names(query: &str, table: &str) -> bool {
    let mut s = query.trim_start();
    while let Some(rest) = s.strip_prefix("/*") {
        s = rest
            .split_once("*/")
            .map(|x| x.1)
            .unwrap_or("")
            .trim_start();
    }
    let first = s
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if !["insert", "update", "delete", "replace", "load"].contains(&first.as_str()) {
        return false;
    }
    s.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .any(|w| w.eq_ignore_ascii_case(table))
}

/// The column an `ALTER TABLE` names (`ADD COLUMN x`, `DROP x`, …).
fn altered_column(query: &str) -> Option<String> {
    let words: Vec<&str> = query.split_whitespace().collect();
    let verbs = ["add", "drop", "change", "modify", "rename"];
    let i = words
        .iter()
        .position(|w| verbs.contains(&w.to_ascii_lowercase().as_str()))?;
    words[i + 1..]
        .iter()
        .map(|w| w.trim_matches(|c| c == '`' || c == ',' || c == '('))
        .find(|w| !["column", "if", "not", "exists"].contains(&w.to_ascii_lowercase().as_str()))
        .map(str::to_string)
}

/// A binlog dump from `from` to the current end (non-blocking).
async fn dump(url: &str, from: &BinlogPos) -> Result<BinlogStream> {
    let mut conn = connect(url).await?;
    // A replica with MariaDB's GTID capability is sent GTID events as they
    // are (an older one gets `BEGIN` instead, which the server cannot
    // make for XA transactions, failing every reader of that stretch).
    conn.query_drop(format!(
        "SET @mariadb_slave_capability = {MARIA_SLAVE_CAPABILITY_GTID}"
    ))
    .await
    .map_err(my_err)?;
    let req = BinlogStreamRequest::new(replica_id())
        .with_filename(from.file.as_bytes())
        .with_pos(from.pos)
        .with_non_blocking();
    conn.get_binlog_stream(req)
        .await
        .map_err(|e| super::errors::source_at(format!("reading the binary log from {from}"), e))
}

/// When binlog file `file` was created: its format description event's
/// timestamp.
async fn file_created(url: &str, file: &str) -> Result<u32> {
    let from = BinlogPos {
        file: file.to_string(),
        pos: 4,
    };
    let mut stream = dump(url, &from).await?;
    while let Some(ev) = stream.next().await {
        let ev = ev.map_err(|e| super::errors::source_at("reading the binary log", e))?;
        if matches!(
            ev.read_data().map_err(bad)?,
            Some(EventData::FormatDescriptionEvent(_))
        ) {
            let created = ev.header().timestamp();
            let _ = stream.close().await;
            return Ok(created);
        }
    }
    Err(bad(format!("binlog file {file} has no format description")))
}

/// Read the binlog from `from` up to `to`: the keys the table's
/// transactions that commit in between changed, into `keys`.
async fn read_window(
    url: &str,
    t: &Table,
    from: &BinlogPos,
    created: u32,
    to: &BinlogPos,
    keys: &mut KeySpill<'_>,
) -> Result<Window> {
    if from.version()? >= to.version()? {
        return Ok(Window::Changes(created));
    }
    let mut stream = dump(url, from).await?;
    // When the file being read was created (`None`: its format
    // description not seen yet).
    let mut cur_created: Option<u32> = None;
    // Whether the first file's creation was compared with the position's.
    let mut checked = false;
    let to_v = to.version()?;
    let mut seq = seq_of(&from.file)?;
    let mut file = from.file.clone();
    let mut ours = false;
    let mut reached = false;
    let mut first = true;
    // The column count of row images not in the table's current layout.
    let mut layout: Option<u64> = None;
    let (db, name) = (t.db.to_lowercase(), t.name.to_lowercase());
    let ncols = t.columns.len() as u64;
    while let Some(ev) = stream.next().await {
        let ev = ev.map_err(|e| super::errors::source_at("reading the binary log", e))?;
        let end = ev.header().log_pos() as u64;
        let at = ((seq << 32) | end) as i64;
        let data = ev.read_data().map_err(bad)?;
        // MariaDB's compressed query and row events (log_bin_compress).
        if data.is_none() && (166..=171).contains(&ev.header().event_type_raw()) {
            return Err(bad(format!(
                "compressed event at {file}:{end} (log_bin_compress): run `SET GLOBAL log_bin_compress = OFF;`; the changes written compressed need a full reload (`highwater run --full-refresh`)"
            )));
        }
        if !matches!(data, Some(EventData::RotateEvent(_))) {
            first = false;
        }
        // A MariaDB GTID event opens each transaction (as `BEGIN` did).
        if data.is_none() && ev.header().event_type_raw() == MARIADB_GTID_EVENT {
            keys.forget().await?;
        }
        let mut commit = false;
        match data {
            Some(EventData::FormatDescriptionEvent(_)) => {
                let ts = ev.header().timestamp();
                if !checked && ts != created {
                    let _ = stream.close().await;
                    return Ok(Window::Reload(format!(
                        "FULL RELOAD: binlog file {file} is not the one of this stream's position (created at {ts}, not {created}: RESET MASTER, or another server)"
                    )));
                }
                checked = true;
                cur_created = Some(ts);
            }
            Some(EventData::RotateEvent(r)) => {
                if end != 0 && at >= to_v {
                    reached = true;
                    break;
                }
                // The artificial rotate that opens the dump names the file
                // asked for; it comes before the format description, so
                // its name is read with the checksum still attached.
                if first {
                    first = false;
                    continue;
                }
                file = r.name().into_owned();
                seq = seq_of(&file)?;
                cur_created = None;
                continue;
            }
            Some(EventData::RowsEvent(rows)) => {
                let Some(tme) = stream.get_tme(rows.table_id()) else {
                    return Err(bad(format!(
                        "rows of table id {} without its table map",
                        rows.table_id()
                    )));
                };
                let table_ours = tme.database_name().to_lowercase() == db
                    && tme.table_name().to_lowercase() == name;
                if table_ours && tme.columns_count() != ncols {
                    // Named by the ALTER TABLE later in the window, if any.
                    layout.get_or_insert(tme.columns_count());
                } else if table_ours {
                    ours = true;
                    let insert = matches!(
                        rows,
                        RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_)
                    );
                    for r in rows.rows(tme) {
                        let (before, after) = r.map_err(bad)?;
                        let b = before.as_ref().map(|r| key_of(t, r)).transpose()?;
                        let a = after.as_ref().map(|r| key_of(t, r)).transpose()?;
                        match (b, a) {
                            (Some(b), Some(a)) if b != a => {
                                keys.touch(b, false).await?;
                                keys.touch(a, true).await?;
                            }
                            (Some(k), _) => keys.touch(k, false).await?,
                            (None, Some(k)) => keys.touch(k, insert).await?,
                            (None, None) => {}
                        }
                    }
                }
            }
            Some(EventData::XidEvent(_)) => commit = true,
            // Its rows commit later, with an `XA COMMIT` that carries none.
            Some(EventData::XaPrepareLogEvent(_)) if keys.in_transaction() => {
                let _ = stream.close().await;
                return Err(Error::source(
                    BACKEND,
                    format!(
                        "an XA transaction changed {} (XA PREPARE at {file}:{end}); mode cdc on MariaDB does not read XA transactions. Run `highwater run --full-refresh` for this stream after it committed",
                        t.t()
                    ),
                ));
            }
            Some(EventData::QueryEvent(qe)) => {
                let text = qe.query();
                let word = text.trim().to_ascii_uppercase();
                if word == "BEGIN" || word.starts_with("ROLLBACK") {
                    keys.forget().await?;
                } else if word == "COMMIT" {
                    commit = true;
                } else if dml_names(&text, &name) {
                    let _ = stream.close().await;
                    return Err(Error::source(
                        BACKEND,
                        format!(
                            "a change of {} was written to the binary log as a statement, not as rows (binlog_format STATEMENT or MIXED in the writer's session), at {file}:{end}: `{}`. Its rows cannot be read; keep binlog_format = ROW for every session and run `highwater run --full-refresh` for this stream",
                            t.t(),
                            text.trim()
                        ),
                    ));
                } else if let Some((kind, targets)) = ddl_targets(&text) {
                    let default_db = qe.schema().to_lowercase();
                    let hit = targets.iter().any(|(d, n)| {
                        *n == name && d.as_deref().unwrap_or(default_db.as_str()) == db
                    });
                    if hit && kind == "reload" {
                        let _ = stream.close().await;
                        return Ok(Window::Reload(format!(
                            "FULL RELOAD: `{}` at binlog position {file}:{end} changed {} as a whole; a truncate or drop carries no keys",
                            text.trim(),
                            t.t()
                        )));
                    }
                    if hit && (ours || keys.any() || layout.is_some()) {
                        let _ = stream.close().await;
                        let col = altered_column(&text).unwrap_or_else(|| "?".into());
                        return Err(Error::config(
                            format!("column {col}"),
                            format!(
                                "`{}` changed {} after changes to be delivered were written in its earlier layout; run `highwater run --full-refresh` for this stream (or `highwater changes disable STREAM` and run again) to reload it in full",
                                text.trim(),
                                t.t()
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        if commit {
            keys.commit(at).await?;
            ours = false;
        }
        if end != 0 && at >= to_v {
            reached = true;
            break;
        }
    }
    let _ = stream.close().await;
    if let Some(logged) = layout {
        return Err(layout_error(t, logged));
    }
    if !reached {
        return Err(bad(format!(
            "the binary log ended before the snapshot's position {to}"
        )));
    }
    let created = match cur_created {
        Some(c) if file == to.file => c,
        _ => file_created(url, &to.file).await?,
    };
    Ok(Window::Changes(created))
}

/// The error for row images whose column count is not the table's.
fn layout_error(t: &Table, logged: u64) -> Error {
    let now = t.columns.len() as u64;
    let (place, what) = if logged < now {
        (
            format!("column {}", t.columns[logged as usize].0),
            format!("added to {} (or another column added before it)", t.t()),
        )
    } else {
        (
            format!("table {}", t.t()),
            format!(
                "a column was dropped (the binlog's rows have {logged} columns, the table now {now})"
            ),
        )
    };
    Error::config(
        place,
        format!(
            "{what} after changes to be delivered were written; run `highwater run --full-refresh` for this stream (or `highwater changes disable STREAM` and run again) to reload it in full"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_generations_round_trip() {
        let g = Gen {
            server_id: "1".into(),
            base: "mariadb-bin".into(),
            created: 1_700_000_000,
        };
        assert_eq!(Gen::decode(&g.encode()), Some(g.clone()));
        let p = BinlogPos {
            file: "mariadb-bin.000042".into(),
            pos: 1234,
        };
        let v = p.version().unwrap();
        assert_eq!(BinlogPos::of_version(v, &g), p);
        let later = BinlogPos {
            file: "mariadb-bin.000043".into(),
            pos: 4,
        };
        assert!(later.version().unwrap() > v);
    }

    #[test]
    fn a_mysql_server_is_refused_naming_what_it_lacks_and_what_to_use() {
        let m = mysql_refusal("8.0.36");
        assert!(m.contains("MySQL 8.0.36") && m.contains("Binlog_snapshot_position"));
        assert!(m.contains("mode change_tracking"));
    }

    #[test]
    fn bytes_behind_count_the_rest_of_the_file_and_every_later_one() {
        let logs = vec![
            ("b.000001".to_string(), 1000),
            ("b.000002".to_string(), 500),
            ("b.000003".to_string(), 300),
        ];
        let at = |file: &str, pos| BinlogPos {
            file: file.into(),
            pos,
        };
        assert_eq!(bytes_after(&logs, &at("b.000002", 200)), Some(300 + 300));
        assert_eq!(bytes_after(&logs, &at("b.000003", 300)), Some(0));
        assert_eq!(bytes_after(&logs, &at("b.000000", 4)), None);
    }

    #[test]
    fn ddl_statements_name_their_tables() {
        let t = |s: &str| ddl_targets(s);
        assert_eq!(
            t("ALTER TABLE t ADD COLUMN extra int"),
            Some(("alter", vec![(None, "t".into())]))
        );
        assert_eq!(
            t("TRUNCATE TABLE `shop`.`T`"),
            Some(("reload", vec![(Some("shop".into()), "t".into())]))
        );
        assert_eq!(
            t("DROP TABLE IF EXISTS `a`,`t` /* generated by server */"),
            Some(("reload", vec![(None, "a".into()), (None, "t".into())]))
        );
        assert_eq!(t("INSERT INTO t VALUES (1)"), None);
        assert!(dml_names("INSERT INTO `shop`.`t` VALUES (1)", "t"));
        assert!(dml_names("update T set x = 1", "t"));
        assert!(!dml_names("UPDATE other SET x = 1", "t"));
        assert!(!dml_names("SAVEPOINT t", "t"));
        assert_eq!(
            altered_column("ALTER TABLE t ADD COLUMN extra int DEFAULT 7"),
            Some("extra".into())
        );
        assert_eq!(altered_column("alter table t drop `n`"), Some("n".into()));
    }
}
