//! The `Source` trait: describe a relation and read one delta of it from one
//! consistent snapshot.

use std::path::PathBuf;

use arrow_schema::SchemaRef;
use async_trait::async_trait;

use crate::Result;
use crate::position::{ChangeVersion, CursorValue, Position, WatermarkPosition};
use crate::stream::BatchStream;

/// What to read: a table (schema-qualified name, split but not quoted) or a
/// user query, around which the delta condition is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// `schema.table` or `table`; each part is quoted by the source's dialect.
    Table {
        schema: Option<String>,
        name: String,
    },
    /// A `SELECT` written by the user; wrapped as a subquery.
    Query(String),
}

/// A user's query as a subquery: trailing `;` dropped (Data Factory users
/// end their queries with one) and the closing parenthesis on its own line
/// (a query may end in a `--` comment).
pub fn subquery(q: &str) -> String {
    let body = q
        .trim_end()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    format!("({body}\n) AS q")
}

impl Relation {
    /// Parse `schema.table` or `table`. Quoted parts (`"a.b"`) are not split.
    pub fn table(text: &str) -> Relation {
        let parts = split_qualified(text);
        match parts.as_slice() {
            [schema, name] => Relation::Table {
                schema: Some(schema.clone()),
                name: name.clone(),
            },
            _ => Relation::Table {
                schema: None,
                name: parts.join("."),
            },
        }
    }
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Relation::Table {
                schema: Some(s),
                name,
            } => write!(f, "{s}.{name}"),
            Relation::Table { schema: None, name } => f.write_str(name),
            Relation::Query(_) => f.write_str("(query)"),
        }
    }
}

fn split_qualified(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

/// How the delta is found.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// Every row.
    Full,
    /// Rows whose cursor (the first non-NULL of `cursor`) lies in
    /// `[after.value, to]`; `after = None` means a first, full load.
    Watermark {
        cursor: Vec<String>,
        after: Option<WatermarkPosition>,
        /// Hold back the upper bound by this much where the database cannot
        /// tell which transactions are still open.
        lag: Option<Lag>,
        /// The UTC offset (minutes east) in which writers write a zone-less
        /// time cursor; `None`: unknown, any zone (the bound is held back by
        /// the widest offset).
        writer_offset_minutes: Option<i32>,
    },
    /// Net changes after version `after`; `None` means set up and load in
    /// full, as does a version of another generation of the change log.
    ChangeTracking {
        after: Option<ChangeVersion>,
        retention_secs: i64,
    },
    /// A tumbling window of a stream's `window:`: the rows whose cursor
    /// (the first non-NULL of `cursor`, a time column) lies in
    /// `[start, end)`, read like a full load of those rows (no cursor
    /// column is added; never a full reload). A cursor with a zone is
    /// compared as the instant; a zone-less one as wall-clock time in the
    /// writers' zone (`writer_offset_minutes`, minutes east; UTC when
    /// `None`).
    Window {
        cursor: Vec<String>,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
        writer_offset_minutes: Option<i32>,
    },
    /// Log-based capture (PostgreSQL logical decoding): net changes after
    /// the LSN `after.version` of the slot generation `after.generation`;
    /// `None` (or another generation) creates the slot and loads in full.
    Cdc { after: Option<ChangeVersion> },
    /// One part of a full load whose parts are read by several processes
    /// (`share_partitions:`): the rows of one key range, in a snapshot
    /// another session exported (see [`Source::export_parts`]).
    Part(PartRange),
}

/// One key range of a shared full load.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartRange {
    /// The exported snapshot every part is read in.
    pub snapshot: String,
    /// The single integer key the ranges split.
    pub key: String,
    /// Inclusive bounds of the key.
    pub lo: i64,
    pub hi: i64,
    /// This part also reads the rows whose key is NULL (part 0).
    pub nulls: bool,
}

/// A snapshot exported for a shared full load, and its key ranges. The
/// snapshot lives while `hold` (the exporting session) is kept.
pub struct ExportedParts {
    pub snapshot: String,
    pub key: String,
    pub ranges: Vec<(i64, i64)>,
    /// How the parts were chosen, for the run record.
    pub note: String,
    pub hold: Box<dyn std::any::Any + Send>,
}

/// How far behind the newest cursor value a run stops, so that
/// transactions still open cannot commit rows below the new watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// For timestamp and date cursors.
    Micros(i64),
    /// For integer cursors.
    Units(i64),
}

/// What to do with rows whose cursor is NULL after the full load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NullCursorPolicy {
    /// Fail the run, naming the column and the count of new NULL rows.
    #[default]
    Error,
    /// Leave such rows out of incremental runs.
    Skip,
}

/// One read.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub stream: String,
    pub relation: Relation,
    pub delta: Delta,
    /// Primary-key columns; required by change tracking.
    pub primary_key: Vec<String>,
    pub batch_size: usize,
    pub on_null_cursor: NullCursorPolicy,
    /// A full load read over this many connections in one snapshot (1:
    /// one; 0: the source decides). Sources that cannot ignore it.
    pub partitions: usize,
}

/// Columns of a relation.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Arrow schema of the rows as they will be written.
    pub schema: SchemaRef,
}

/// The result of [`Source::read`]: the upper bound chosen in the snapshot,
/// and the rows, streamed.
pub struct Extract {
    /// Schema of `batches` (with [`crate::CURSOR_COLUMN`] last in watermark mode).
    pub schema: SchemaRef,
    /// Watermark mode: the new upper bound (inclusive); `None` when the
    /// relation holds no row with a cursor in range.
    pub to: Option<CursorValue>,
    /// Change tracking: the version the changes run up to, in the
    /// generation of the change log they were read from.
    pub version_to: Option<ChangeVersion>,
    /// The source read everything although a delta was asked (first run,
    /// or change tracking past retention).
    pub full_reload: bool,
    /// Rows whose cursor is NULL in the snapshot.
    pub null_rows: u64,
    /// Watermark mode: rows above the new bound, left for a later run (a
    /// note says why and when).
    pub held_back: u64,
    /// Things the user should know (printed and kept in the run record).
    pub notes: Vec<String>,
    pub batches: BatchStream,
}

/// A database (or file) that rows are read from.
///
/// `read` opens one snapshot (`REPEATABLE READ` or equivalent), reads the new
/// upper bound in it, and streams the rows in the range from the same
/// snapshot. Errors name the stream, relation and column involved. Dropping
/// the returned stream early cancels the read. Calls for different streams
/// may run concurrently.
#[async_trait]
pub trait Source: Send + Sync {
    /// The relation's columns as Arrow types; an error names a missing table.
    async fn describe(&self, relation: &Relation) -> Result<TableInfo>;

    /// The relation's primary-key columns, in key order; empty for a query
    /// or when the database knows none. Asked only where it is used
    /// (`init --from`): a run's describe skips the catalog query.
    async fn primary_key(&self, relation: &Relation) -> Result<Vec<String>> {
        let _ = relation;
        Ok(vec![])
    }

    /// Read one delta (see the trait doc).
    async fn read(&self, req: &ReadRequest) -> Result<Extract>;

    /// The newest cursor value in `relation` now (`max` of the first
    /// non-NULL of `cursor`): how far the source is ahead of a stream's
    /// position (`/metrics`). `None` when no row has one.
    async fn newest(&self, relation: &Relation, cursor: &[String]) -> Result<Option<CursorValue>>;

    /// Called after `stream`'s position `to` committed in the state store
    /// (log-based capture): release what the source keeps for changes up
    /// to it (PostgreSQL advances the stream's replication slot). Never
    /// moves past `to`; idempotent. An error only delays the release (the
    /// next read catches up from the committed position). By default
    /// nothing is kept.
    async fn confirm(&self, stream: &str, to: &Position) -> Result<()> {
        let _ = (stream, to);
        Ok(())
    }

    /// A full load of `req` split for several processes: export a snapshot
    /// that other sessions can import and cut the key into ranges, each
    /// then read with [`Delta::Part`]. `None`: the table cannot be split
    /// (no single integer key, empty, too small for `auto`). Sources that
    /// cannot share a snapshot across sessions say so.
    async fn export_parts(&self, req: &ReadRequest) -> Result<Option<ExportedParts>> {
        let _ = req;
        Err(crate::Error::config(
            format!("stream {}", req.stream),
            "share_partitions: needs a PostgreSQL source (only it can hand one snapshot to other processes)",
        ))
    }
}

/// The closed set of backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnKind {
    Sqlite(PathBuf),
    Postgres,
    Mysql,
    Mssql,
    /// Local folder (resolved, absolute or relative to the process).
    File(PathBuf),
    /// Azure Blob: container and prefix.
    Azure {
        container: String,
        prefix: String,
    },
    /// S3: bucket and prefix.
    S3 {
        bucket: String,
        prefix: String,
    },
}

impl ConnKind {
    /// `az://` or `s3://` without a container or bucket: a whole storage
    /// account, whose Data Factory datasets name the container.
    pub fn is_account(&self) -> bool {
        matches!(self, ConnKind::Azure { container: b, .. } | ConnKind::S3 { bucket: b, .. } if b.is_empty())
    }

    pub fn is_database(&self) -> bool {
        matches!(
            self,
            ConnKind::Sqlite(_) | ConnKind::Postgres | ConnKind::Mysql | ConnKind::Mssql
        )
    }
}
