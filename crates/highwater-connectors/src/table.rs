//! What the three database sinks (`postgres/sink.rs`, `mysql/sink.rs`,
//! `sqlite/sink.rs`) share: the target's name, the column layout, the SQL
//! of the commit transaction, and Arrow values cell by cell.
//!
//! An attempt, step by step (each backend runs these statements; values
//! are always bound, identifiers always quoted):
//!
//! ```text
//! begin    CREATE TABLE IF NOT EXISTS _highwater_commits (SQLite: at commit;
//!            PostgreSQL, MariaDB: only when a catalog query misses it)
//!          CREATE staging table (the batch's columns + a row sequence;
//!            MariaDB: a temporary table with a unique key on the key)
//! write    rows → staging (PostgreSQL COPY; SQLite multi-row INSERT;
//!            MariaDB LOAD DATA … REPLACE: the last row of a key replaces
//!            earlier ones as it loads)
//! commit   index staging by key (PostgreSQL, SQLite); then ONE transaction:
//!            CREATE TABLE IF NOT EXISTS target (types mapped from Arrow)
//!            Replace: DELETE FROM target
//!            key given (not Append): keep the last staged row of each key
//!            Merge + change tracking: DELETE target rows whose key has a `D`
//!            Append/Replace: INSERT INTO target SELECT … FROM staging
//!            Merge: UPDATE target rows whose key is staged, then INSERT the
//!              staged rows whose key is absent (by the key columns alone:
//!              the target needs no unique constraint, as in Data Factory)
//!            INSERT INTO _highwater_commits (stream, run_id, info, committed_at)
//!            DROP staging
//!          COMMIT
//! recover  SELECT info FROM _highwater_commits WHERE (stream, run_id)
//!          → Published { info } / NotPublished; DROP leftover staging
//! ```
//!
//! MariaDB commits DDL implicitly, so there the target table is created
//! before `START TRANSACTION`; its temporary staging table goes with the
//! session: the rows and the commit record still become visible together.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use highwater_core::{Error, Result, TableWrite, TableWriteMode};

use crate::util::quote_ident;

/// The table that records published attempts, in the target's schema.
pub const COMMITS: &str = "_highwater_commits";

/// The `info` of a fenced (abandoned) attempt's commit record.
pub const ABANDONED: &str = "abandoned";
/// The staging table's row sequence column (last row of a key wins).
pub const SEQ: &str = "_highwater_seq";
pub const SYS_OP: &str = "SYS_CHANGE_OPERATION";
pub const SYS_VERSION: &str = "SYS_CHANGE_VERSION";

/// `schema.table` or `table`, split at the first dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    pub fn parse(into: &str) -> Result<TableName> {
        let (schema, name) = match into.split_once('.') {
            Some((s, n)) => (Some(s.to_string()), n.to_string()),
            None => (None, into.to_string()),
        };
        if name.is_empty() || schema.as_deref() == Some("") {
            return Err(Error::config(
                "into",
                format!("`{into}` is not a table name (expected `schema.table` or `table`)"),
            ));
        }
        Ok(TableName { schema, name })
    }

    /// `"schema"."name"` with `q` quotes.
    pub fn sql(&self, q: char) -> String {
        self.sibling(&self.name, q)
    }

    /// Another table in the same schema.
    pub fn sibling(&self, name: &str, q: char) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote_ident(s, q), quote_ident(name, q)),
            None => quote_ident(name, q),
        }
    }
}

/// FNV-1a: stable across builds and platforms.
fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The staging table's name for an attempt: fixed by `(stream, run_id)` so
/// `recover` finds what a crashed attempt left.
pub fn staging_name(stream: &str, run_id: &str) -> String {
    let h = fnv(stream.bytes().chain([0u8]).chain(run_id.bytes()));
    format!("_highwater_stage_{h:016x}")
}

/// An advisory-lock key for a target table (PostgreSQL): commits into one
/// table run one at a time, so two streams cannot race to create it.
pub fn lock_key(target: &str) -> i64 {
    fnv(target.bytes()) as i64
}

/// The SQL flavours of the three backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Postgres,
    Mysql,
    Sqlite,
}

impl Flavor {
    pub fn quote(self) -> char {
        match self {
            Flavor::Mysql => '`',
            _ => '"',
        }
    }

    pub fn q(self, ident: &str) -> String {
        quote_ident(ident, self.quote())
    }

    /// The column type an Arrow type is stored as. `key`: part of the
    /// primary key (MariaDB cannot index unbounded TEXT/BLOB).
    pub fn column_type(self, dt: &DataType, key: bool) -> String {
        use DataType as D;
        match self {
            Flavor::Postgres => match dt {
                D::Boolean => "boolean".into(),
                D::Int8 | D::Int16 | D::UInt8 => "smallint".into(),
                D::Int32 | D::UInt16 => "integer".into(),
                D::Int64 | D::UInt32 => "bigint".into(),
                D::UInt64 => "numeric(20)".into(),
                D::Float16 | D::Float32 => "real".into(),
                D::Float64 => "double precision".into(),
                D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => {
                    "bytea".into()
                }
                D::Date32 | D::Date64 => "date".into(),
                D::Timestamp(_, None) => "timestamp".into(),
                D::Timestamp(_, Some(_)) => "timestamptz".into(),
                D::Time32(_) | D::Time64(_) => "time".into(),
                D::Decimal128(p, s) | D::Decimal256(p, s) => {
                    format!("numeric({p}, {})", (*s).max(0))
                }
                _ => "text".into(),
            },
            Flavor::Mysql => match dt {
                D::Boolean => "boolean".into(),
                D::Int8 => "tinyint".into(),
                D::Int16 | D::UInt8 => "smallint".into(),
                D::Int32 | D::UInt16 => "int".into(),
                D::Int64 | D::UInt32 => "bigint".into(),
                D::UInt64 => "bigint unsigned".into(),
                D::Float16 | D::Float32 => "float".into(),
                D::Float64 => "double".into(),
                D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => {
                    if key { "varbinary(255)" } else { "longblob" }.into()
                }
                D::Date32 | D::Date64 => "date".into(),
                D::Timestamp(_, _) => "datetime(6)".into(),
                D::Time32(_) | D::Time64(_) => "time(6)".into(),
                D::Decimal128(p, s) | D::Decimal256(p, s) => {
                    format!("decimal({}, {})", (*p).min(65), (*s).clamp(0, 30))
                }
                _ => if key { "varchar(255)" } else { "longtext" }.into(),
            },
            Flavor::Sqlite => match dt {
                D::Boolean
                | D::Int8
                | D::Int16
                | D::Int32
                | D::Int64
                | D::UInt8
                | D::UInt16
                | D::UInt32
                | D::UInt64 => "INTEGER".into(),
                D::Float16 | D::Float32 | D::Float64 => "REAL".into(),
                D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => "BLOB".into(),
                // Text keeps every digit; SQLite's NUMERIC would round to a double.
                _ => "TEXT".into(),
            },
        }
    }
}

/// The column layout of one attempt, and the SQL built from it.
#[derive(Debug, Clone)]
pub struct Layout {
    pub flavor: Flavor,
    pub target: TableName,
    pub staging: String,
    pub schema: SchemaRef,
    /// Indexes (into `schema`) of the columns stored in the target.
    pub stored: Vec<usize>,
    pub key: Vec<String>,
    pub mode: TableWriteMode,
    /// Index of `SYS_CHANGE_OPERATION` when deletes are applied.
    pub op: Option<usize>,
    /// Column types of an existing target, by column name, as the database
    /// spells them (PostgreSQL `format_type`): staging takes them, so text
    /// values are parsed into the target's types on the way in.
    pub existing: std::collections::HashMap<String, String>,
    /// Run first in the commit transaction (Data Factory `preCopyScript`).
    pub pre_copy_script: Option<String>,
    /// Hand the rows to this procedure instead of applying them.
    pub procedure: Option<highwater_core::ProcedureWrite>,
}

impl Layout {
    pub fn new(
        flavor: Flavor,
        target: &str,
        stream: &str,
        run_id: &str,
        schema: SchemaRef,
        table: Option<&TableWrite>,
    ) -> Result<Layout> {
        let target = TableName::parse(target)?;
        let default = TableWrite {
            mode: TableWriteMode::Append,
            primary_key: vec![],
            change_tracking: false,
            pre_copy_script: None,
            procedure: None,
        };
        let table = table.unwrap_or(&default);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for k in &table.primary_key {
            if !names.contains(&k.as_str()) {
                return Err(Error::config(
                    format!("primary_key column {k}"),
                    format!("not among the copied columns ({})", names.join(", ")),
                ));
            }
        }
        if table.mode == TableWriteMode::Merge && table.primary_key.is_empty() {
            return Err(Error::config("write", "merge needs `primary_key`"));
        }
        // A merge target holds the rows, not the change log.
        let drop_sys = table.change_tracking && table.mode != TableWriteMode::Append;
        let stored = (0..names.len())
            .filter(|i| !(drop_sys && (names[*i] == SYS_OP || names[*i] == SYS_VERSION)))
            .collect();
        let op = if drop_sys {
            names.iter().position(|n| *n == SYS_OP)
        } else {
            None
        };
        Ok(Layout {
            flavor,
            target,
            staging: staging_name(stream, run_id),
            schema,
            stored,
            key: table.primary_key.clone(),
            mode: table.mode,
            op,
            existing: Default::default(),
            pre_copy_script: table
                .pre_copy_script
                .clone()
                .filter(|s| !s.trim().is_empty()),
            procedure: table.procedure.clone(),
        })
    }

    fn q(&self, s: &str) -> String {
        self.flavor.q(s)
    }

    /// The staging table as SQL: a temporary table, gone with the session
    /// (PostgreSQL, SQLite: unqualified names find temporary tables first,
    /// and the hashed name collides with nothing; MariaDB: in the target's
    /// database, where earlier versions staged in a real table of that
    /// name, which `recover` still drops).
    pub fn staging_sql(&self) -> String {
        match self.flavor {
            Flavor::Postgres | Flavor::Sqlite => self.q(&self.staging),
            Flavor::Mysql => self.target.sibling(&self.staging, '`'),
        }
    }

    pub fn commits_sql(&self) -> String {
        match self.flavor {
            Flavor::Sqlite => self.q(COMMITS),
            _ => self.target.sibling(COMMITS, self.flavor.quote()),
        }
    }

    pub fn target_sql(&self) -> String {
        match self.flavor {
            // `main.t` and `t` are the same table; other schemas are refused
            // by the SQLite sink.
            Flavor::Sqlite => self.q(&self.target.name),
            _ => self.target.sql(self.flavor.quote()),
        }
    }

    /// `CREATE TABLE IF NOT EXISTS` for the commit records.
    pub fn create_commits(&self) -> String {
        let (text, key) = match self.flavor {
            Flavor::Mysql => ("longtext", "varchar(255)"),
            Flavor::Postgres => ("text", "text"),
            Flavor::Sqlite => ("TEXT", "TEXT"),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {} (stream {key} NOT NULL, run_id {key} NOT NULL, info {text} NOT NULL, committed_at {text} NOT NULL, PRIMARY KEY (stream, run_id))",
            self.commits_sql()
        )
    }

    pub fn create_staging(&self) -> String {
        let cols: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                let key = self.key.contains(f.name());
                let ty = match self.existing.get(f.name()) {
                    Some(t) => t.clone(),
                    None => self.flavor.column_type(f.data_type(), key),
                };
                format!("{} {ty}", self.q(f.name()))
            })
            .collect();
        let seq = format!("{} bigint NOT NULL", self.q(SEQ));
        match self.flavor {
            Flavor::Postgres => format!(
                "CREATE TEMPORARY TABLE {} ({}, {seq})",
                self.q(&self.staging),
                cols.join(", ")
            ),
            Flavor::Sqlite => format!(
                "CREATE TEMP TABLE {} ({}, {seq})",
                self.q(&self.staging),
                cols.join(", ")
            ),
            // A temporary table is named once per statement in MariaDB,
            // so the last row of a key cannot be found by joining staging
            // to itself: the unique key makes `LOAD DATA … REPLACE` keep
            // it instead.
            Flavor::Mysql => format!(
                "CREATE TEMPORARY TABLE {} ({}, {seq}{}) ENGINE=InnoDB",
                self.staging_sql(),
                cols.join(", "),
                if self.keyed() {
                    format!(", UNIQUE KEY ({})", self.key_list())
                } else {
                    String::new()
                }
            ),
        }
    }

    pub fn drop_staging(&self) -> String {
        format!("DROP TABLE IF EXISTS {}", self.staging_sql())
    }

    /// The staging columns in order (incoming columns, then the sequence).
    pub fn staging_columns(&self) -> String {
        let mut cols: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| self.q(f.name()))
            .collect();
        cols.push(self.q(SEQ));
        cols.join(", ")
    }

    fn stored_names(&self) -> Vec<&str> {
        self.stored
            .iter()
            .map(|i| self.schema.field(*i).name().as_str())
            .collect()
    }

    pub fn create_target(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {}",
            self.target_definition(true)
        )
    }

    /// `name (columns[, PRIMARY KEY (…)])`: the target as this attempt
    /// creates it; without the key when it is added after a direct load.
    fn target_definition(&self, with_key: bool) -> String {
        let mut cols: Vec<String> = self
            .stored
            .iter()
            .map(|i| {
                let f = self.schema.field(*i);
                let key = self.keyed() && self.key.contains(f.name());
                format!(
                    "{} {}{}",
                    self.q(f.name()),
                    self.flavor.column_type(f.data_type(), key),
                    if key { " NOT NULL" } else { "" }
                )
            })
            .collect();
        if self.keyed() && with_key {
            cols.push(format!("PRIMARY KEY ({})", self.key_list()));
        }
        format!("{} ({})", self.target_sql(), cols.join(", "))
    }

    fn key_list(&self) -> String {
        let k: Vec<String> = self.key.iter().map(|k| self.q(k)).collect();
        k.join(", ")
    }

    /// Can rows go straight into the target when this attempt creates it
    /// (a direct load, no staging)? Not when a script or a procedure
    /// takes part, nor when change-tracking deletes must be applied.
    pub fn direct_load(&self) -> bool {
        self.procedure.is_none() && self.pre_copy_script.is_none() && self.op.is_none()
    }

    /// `CREATE TABLE` (no `IF NOT EXISTS`: it fails when another attempt
    /// made the table first) for a direct load. PostgreSQL gets the
    /// primary key after the load ([`Layout::add_key`]), MariaDB with the
    /// table (its DDL would commit the load).
    pub fn create_direct_target(&self) -> String {
        format!(
            "CREATE TABLE {}",
            self.target_definition(self.flavor != Flavor::Postgres)
        )
    }

    /// The statement that adds the primary key after a direct load into
    /// PostgreSQL; `None` when the target has no key.
    pub fn add_key(&self) -> Option<String> {
        self.keyed().then(|| {
            format!(
                "ALTER TABLE {} ADD PRIMARY KEY ({})",
                self.target_sql(),
                self.key_list()
            )
        })
    }

    /// Keep the last row of each key of a direct load into PostgreSQL,
    /// when [`Layout::add_key`] found a key twice. Physical order is load
    /// order here: COPY into a table created in the same transaction skips
    /// the free space map, so it only ever appends pages, and each page
    /// fills in order (`ti_options |= TABLE_INSERT_SKIP_FSM` in
    /// PostgreSQL's `copyfrom.c`).
    pub fn dedupe_direct(&self) -> String {
        let t = self.target_sql();
        let eq: Vec<String> = self
            .key
            .iter()
            .map(|k| format!("a.{k} = b.{k}", k = self.q(k)))
            .collect();
        format!(
            "DELETE FROM {t} a USING {t} b WHERE {} AND a.ctid < b.ctid",
            eq.join(" AND ")
        )
    }

    /// The stored columns in order (a direct load's column list).
    pub fn stored_columns(&self) -> String {
        let cols: Vec<String> = self.stored_names().iter().map(|n| self.q(n)).collect();
        cols.join(", ")
    }

    /// Does the target have (and staging get de-duplicated on) the key? An
    /// append target is a log: the same key may appear many times.
    fn keyed(&self) -> bool {
        !self.key.is_empty() && self.mode != TableWriteMode::Append
    }

    /// Statements run first (PostgreSQL, SQLite: in the commit
    /// transaction): index staging by key for the de-duplication. None for
    /// MariaDB, whose staging is keyed from the start (and which creates
    /// the target before its transaction, when it is missing).
    pub fn prepare(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.keyed() && self.flavor != Flavor::Mysql {
            let mut k: Vec<String> = self.key.iter().map(|k| self.q(k)).collect();
            k.push(self.q(SEQ));
            let idx = self.q(&format!("{}_key", self.staging));
            out.push(match self.flavor {
                Flavor::Postgres => {
                    format!("CREATE INDEX ON {} ({})", self.staging_sql(), k.join(", "))
                }
                Flavor::Sqlite => format!(
                    "CREATE INDEX temp.{idx} ON {} ({})",
                    self.q(&self.staging),
                    k.join(", ")
                ),
                Flavor::Mysql => format!(
                    "CREATE INDEX {idx} ON {} ({})",
                    self.staging_sql(),
                    k.join(", ")
                ),
            });
        }
        out
    }

    /// The data statements of the commit transaction, in order. The commit
    /// record (bound values) and the staging drop follow them.
    pub fn apply(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.flavor != Flavor::Mysql {
            out.push(self.create_target());
        }
        let target = self.target_sql();
        let staging = self.staging_sql();
        if self.mode == TableWriteMode::Replace {
            out.push(format!("DELETE FROM {target}"));
        }
        let key_eq = |a: &str, b: &str| -> String {
            self.key
                .iter()
                .map(|k| format!("{b}.{k} = {a}.{k}", k = self.q(k)))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        // Last row of each key wins (MariaDB's staging kept only it).
        if self.keyed() && self.flavor != Flavor::Mysql {
            out.push(format!(
                "DELETE FROM {staging} WHERE EXISTS (SELECT 1 FROM {staging} l WHERE {} AND l.{seq} > {staging}.{seq})",
                key_eq(&staging, "l"),
                seq = self.q(SEQ)
            ));
        }
        // Staged rows that carry data (not change-tracking deletes), as
        // seen through `alias`.
        let op = self.op.map(|op| self.q(self.schema.field(op).name()));
        let filter = |alias: &str| match &op {
            Some(op) => format!("COALESCE({alias}{op}, '') <> 'D'"),
            None => "1 = 1".to_string(),
        };
        if let Some(op) = &op {
            out.push(format!(
                "DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {staging} s WHERE {} AND s.{op} = 'D')",
                key_eq(&target, "s")
            ));
        }
        let names = self.stored_names();
        let cols = self.stored_columns();
        if self.mode != TableWriteMode::Merge {
            out.push(format!(
                "INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging} WHERE {} ORDER BY {}",
                filter(""),
                self.q(SEQ)
            ));
            return out;
        }
        // Merge by the key columns alone, as Data Factory's upsert does: the
        // target needs no unique constraint on them. Update the rows whose
        // key is staged, then insert the staged rows whose key is absent;
        // columns the copy does not carry keep their values.
        let rest: Vec<String> = names
            .iter()
            .filter(|n| !self.key.iter().any(|k| k == **n))
            .map(|n| self.q(n))
            .collect();
        if !rest.is_empty() {
            out.push(match self.flavor {
                Flavor::Mysql => format!(
                    "UPDATE {target} t JOIN {staging} s ON {} SET {} WHERE {}",
                    key_eq("s", "t"),
                    rest.iter()
                        .map(|c| format!("t.{c} = s.{c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    filter("s.")
                ),
                _ => format!(
                    "UPDATE {target} AS t SET {} FROM {staging} AS s WHERE {} AND {}",
                    rest.iter()
                        .map(|c| format!("{c} = s.{c}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    key_eq("s", "t"),
                    filter("s.")
                ),
            });
        }
        out.push(format!(
            "INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging} s WHERE {} AND NOT EXISTS (SELECT 1 FROM {target} t WHERE {}) ORDER BY {}",
            filter("s."),
            key_eq("s", "t"),
            self.q(SEQ)
        ));
        out
    }

    /// `INSERT INTO _highwater_commits` with four placeholders.
    pub fn insert_commit(&self) -> String {
        let p = match self.flavor {
            Flavor::Postgres => "$1, $2, $3, $4",
            _ => "?, ?, ?, ?",
        };
        format!(
            "INSERT INTO {} (stream, run_id, info, committed_at) VALUES ({p})",
            self.commits_sql()
        )
    }

    /// Fence an attempt that `recover` found unpublished: a tombstone in
    /// its commit record's place. A commit of that attempt still in flight
    /// (its answer lost, its transaction not yet ended) either committed
    /// first (the insert waits for it and does nothing) or can never
    /// commit afterwards (its own insert now conflicts). So `NotPublished`
    /// stays true.
    pub fn fence_commit(&self) -> String {
        match self.flavor {
            Flavor::Postgres => format!(
                "INSERT INTO {} (stream, run_id, info, committed_at) VALUES ($1, $2, '{ABANDONED}', now()::text) \
                 ON CONFLICT (stream, run_id) DO NOTHING",
                self.commits_sql()
            ),
            _ => format!(
                "INSERT IGNORE INTO {} (stream, run_id, info, committed_at) VALUES (?, ?, '{ABANDONED}', NOW(6))",
                self.commits_sql()
            ),
        }
    }

    pub fn select_commit(&self) -> String {
        let p = match self.flavor {
            Flavor::Postgres => ("$1", "$2"),
            _ => ("?", "?"),
        };
        format!(
            "SELECT info FROM {} WHERE stream = {} AND run_id = {}",
            self.commits_sql(),
            p.0,
            p.1
        )
    }
}

/// The first statement of `script` that MariaDB commits implicitly (DDL:
/// `TRUNCATE`, `CREATE`, `DROP`, `ALTER`, `RENAME`, …), which would end the
/// commit transaction early. Statements are split at `;` (a heuristic:
/// a `;` inside a string splits too, which can only find more).
pub fn implicit_commit(script: &str) -> Option<String> {
    const DDL: &[&str] = &[
        "truncate", "create", "drop", "alter", "rename", "grant", "revoke", "lock", "unlock",
        "begin", "commit", "rollback", "start", "analyze", "optimize", "repair",
    ];
    script.split(';').map(str::trim).find_map(|st| {
        let first = st
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()?
            .to_ascii_lowercase();
        DDL.contains(&first.as_str()).then(|| st.to_string())
    })
}

/// One value, typed enough for each backend to bind or encode it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// Exact decimal text.
    Decimal(String),
    Date(NaiveDate),
    /// `utc`: the Arrow type had a time zone (the value is UTC).
    Timestamp(NaiveDateTime, bool),
    Time(NaiveTime),
}

impl Cell {
    pub fn timestamp_text(ts: &NaiveDateTime) -> String {
        ts.format("%Y-%m-%d %H:%M:%S%.f").to_string()
    }
}

/// Read row `i` of column `a`. Types without a dedicated case travel as
/// their display text.
pub fn cell(a: &ArrayRef, i: usize) -> Result<Cell> {
    use DataType as D;
    if a.is_null(i) {
        return Ok(Cell::Null);
    }
    let bad = || Error::data(format!("cannot read a {} value", a.data_type()));
    Ok(match a.data_type() {
        D::Boolean => Cell::Bool(a.as_boolean().value(i)),
        D::Int8 => Cell::Int(a.as_primitive::<Int8Type>().value(i).into()),
        D::Int16 => Cell::Int(a.as_primitive::<Int16Type>().value(i).into()),
        D::Int32 => Cell::Int(a.as_primitive::<Int32Type>().value(i).into()),
        D::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(i)),
        D::UInt8 => Cell::Int(a.as_primitive::<UInt8Type>().value(i).into()),
        D::UInt16 => Cell::Int(a.as_primitive::<UInt16Type>().value(i).into()),
        D::UInt32 => Cell::Int(a.as_primitive::<UInt32Type>().value(i).into()),
        D::UInt64 => Cell::UInt(a.as_primitive::<UInt64Type>().value(i)),
        D::Float32 => Cell::Float(a.as_primitive::<Float32Type>().value(i).into()),
        D::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(i)),
        D::Utf8 => Cell::Text(a.as_string::<i32>().value(i).to_string()),
        D::LargeUtf8 => Cell::Text(a.as_string::<i64>().value(i).to_string()),
        D::Binary => Cell::Bytes(a.as_binary::<i32>().value(i).to_vec()),
        D::LargeBinary => Cell::Bytes(a.as_binary::<i64>().value(i).to_vec()),
        D::Decimal128(_, _) => Cell::Decimal(a.as_primitive::<Decimal128Type>().value_as_string(i)),
        D::Decimal256(_, _) => Cell::Decimal(a.as_primitive::<Decimal256Type>().value_as_string(i)),
        D::Date32 => Cell::Date(
            a.as_primitive::<Date32Type>()
                .value_as_date(i)
                .ok_or_else(bad)?,
        ),
        D::Date64 => Cell::Date(
            a.as_primitive::<Date64Type>()
                .value_as_date(i)
                .ok_or_else(bad)?,
        ),
        D::Timestamp(unit, tz) => {
            let ts = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value_as_datetime(i),
                TimeUnit::Millisecond => a
                    .as_primitive::<TimestampMillisecondType>()
                    .value_as_datetime(i),
                TimeUnit::Microsecond => a
                    .as_primitive::<TimestampMicrosecondType>()
                    .value_as_datetime(i),
                TimeUnit::Nanosecond => a
                    .as_primitive::<TimestampNanosecondType>()
                    .value_as_datetime(i),
            };
            Cell::Timestamp(ts.ok_or_else(bad)?, tz.is_some())
        }
        D::Time64(TimeUnit::Microsecond) => Cell::Time(
            a.as_primitive::<Time64MicrosecondType>()
                .value_as_time(i)
                .ok_or_else(bad)?,
        ),
        D::Time64(TimeUnit::Nanosecond) => Cell::Time(
            a.as_primitive::<Time64NanosecondType>()
                .value_as_time(i)
                .ok_or_else(bad)?,
        ),
        _ => {
            let f = arrow_cast::display::ArrayFormatter::try_new(
                a.as_ref(),
                &arrow_cast::display::FormatOptions::default(),
            )
            .map_err(Error::data)?;
            Cell::Text(f.value(i).to_string())
        }
    })
}

/// Say (debug) where an attempt's rows go: straight into the table it
/// creates, or into staging.
pub fn log_load(stream: &str, target: &str, direct: bool) {
    tracing::debug!(
        stream,
        table = target,
        direct,
        "{}",
        if direct {
            "Loading straight into the table this attempt creates."
        } else {
            "Loading into staging."
        }
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{Field, Schema};

    use super::*;

    fn layout(flavor: Flavor, mode: TableWriteMode, ct: bool) -> Layout {
        let mut fields = vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ];
        if ct {
            fields.push(Field::new(SYS_VERSION, DataType::Int64, true));
            fields.push(Field::new(SYS_OP, DataType::Utf8, true));
        }
        Layout::new(
            flavor,
            "s.t",
            "st",
            "r1",
            Arc::new(Schema::new(fields)),
            Some(&TableWrite {
                mode,
                primary_key: vec!["id".into()],
                change_tracking: ct,
                pre_copy_script: None,
                procedure: None,
            }),
        )
        .unwrap()
    }

    #[test]
    fn hostile_names_stay_quoted() {
        let n = TableName::parse("a\"b.c\"; DROP TABLE x; --").unwrap();
        assert_eq!(n.sql('"'), "\"a\"\"b\".\"c\"\"; DROP TABLE x; --\"");
        assert!(TableName::parse(".x").is_err());
        assert!(TableName::parse("x.").is_err());
    }

    #[test]
    fn staging_names_are_stable() {
        assert_eq!(staging_name("s", "r"), staging_name("s", "r"));
        assert_ne!(staging_name("s", "r"), staging_name("s", "r2"));
        assert!(staging_name("a", "b").len() <= 64);
    }

    #[test]
    fn merge_with_deletes_drops_sys_columns() {
        let l = layout(Flavor::Postgres, TableWriteMode::Merge, true);
        let sql = l.apply().join(";\n");
        assert!(!l.create_target().contains(SYS_OP));
        assert!(sql.contains("= 'D'"), "{sql}");
        assert!(
            sql.contains("UPDATE \"s\".\"t\" AS t SET \"name\" = s.\"name\" FROM"),
            "{sql}"
        );
        assert!(
            sql.contains("AND NOT EXISTS (SELECT 1 FROM \"s\".\"t\" t WHERE"),
            "{sql}"
        );
        assert!(
            !sql.contains("ON CONFLICT"),
            "no unique constraint needed: {sql}"
        );
        let l = layout(Flavor::Mysql, TableWriteMode::Append, true);
        assert!(l.create_target().contains(SYS_OP));
        assert!(!l.apply().join(";").contains("DELETE"));
    }
}
