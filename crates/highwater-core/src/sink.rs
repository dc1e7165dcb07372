//! The `Sink` trait: where rows go, with an atomic commit that a crashed
//! attempt can be checked against.
//!
//! ```text
//! begin(req) ─► write(batch)* ─► commit(info)   data and a commit marker for
//!          └──────────────► abort()             (stream, run_id) become visible
//! recover(stream, run_id, target) after a crash: Published { info } or NotPublished
//! ```

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;

use crate::Result;

/// What to write.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub stream: String,
    pub run_id: String,
    /// The rendered output path (file targets) or table (database targets).
    /// Fixed before any row is written and recorded in the attempt.
    pub target: String,
    /// Output format name for file targets: `csv`, `parquet`, `jsonl`.
    pub format: String,
    pub schema: SchemaRef,
    /// May an existing output of the same name be replaced? False for
    /// incremental modes: each delta must land in a name of its own.
    pub overwrite: bool,
    /// Database targets only: how rows are applied to the table. `None`
    /// for file targets.
    pub table: Option<TableWrite>,
    /// File targets only: several files of at most `max_rows` rows each,
    /// all published by the one commit (Data Factory `maxRowsPerFile`).
    pub split: Option<FileSplit>,
}

/// Files `<target>_00000<extension>`, `<target>_00001<extension>`, … of
/// at most `max_rows` rows (Data Factory's
/// `<fileNamePrefix>_<fileIndex>.<fileExtension>`); `target` is then the
/// folder and the prefix. At least one file is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSplit {
    pub max_rows: u64,
    /// With its dot: `.txt`, `.csv.gz`, `.parquet`.
    pub extension: String,
}

impl FileSplit {
    /// The name of file `index` of `target`.
    pub fn name(&self, target: &str, index: usize) -> String {
        format!("{target}_{index:05}{}", self.extension)
    }
}

/// The file name of part `index` of a shared full load writing `target`:
/// `orders/full.parquet` → `orders/full_00002.parquet` (a compression
/// suffix stays with its format: `t.csv.gz` → `t_00002.csv.gz`).
pub fn part_file_name(target: &str, index: usize) -> String {
    let name_at = target.rfind('/').map(|i| i + 1).unwrap_or(0);
    let name = &target[name_at..];
    let mut dot = name.rfind('.');
    if let Some(d) = dot
        && matches!(
            &name[d..],
            ".gz" | ".bz2" | ".zst" | ".lz4" | ".snappy" | ".deflate" | ".xz"
        )
        && let Some(inner) = name[..d].rfind('.')
    {
        dot = Some(inner);
    }
    let (stem, ext) = match dot.filter(|d| *d > 0) {
        Some(d) => target.split_at(name_at + d),
        None => (target, ""),
    };
    FileSplit {
        max_rows: u64::MAX,
        extension: ext.to_string(),
    }
    .name(stem, index)
}

/// How a database target applies an attempt's rows (see `docs/decisions.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableWrite {
    pub mode: TableWriteMode,
    /// Key columns: the target's primary key when the sink creates it, the
    /// upsert key for `Merge`, the de-duplication key for `Replace`.
    pub primary_key: Vec<String>,
    /// Batches carry `SYS_CHANGE_VERSION` and `SYS_CHANGE_OPERATION`
    /// (`I`/`U`/`D`): a merge applies `D` rows as deletes by key and does
    /// not store the two columns; an append keeps them (a change log).
    pub change_tracking: bool,
    /// Data Factory's `sink.preCopyScript`: SQL run in the commit's one
    /// transaction, before the rows are applied (so a failed copy leaves
    /// it unapplied too).
    pub pre_copy_script: Option<String>,
    /// Data Factory's stored-procedure sink: the rows are handed to a
    /// procedure in the commit's transaction instead of written to the
    /// table (PostgreSQL only).
    pub procedure: Option<ProcedureWrite>,
}

/// `sqlWriterStoredProcedureName` + `sqlWriterTableType` +
/// `storedProcedureTableTypeParameterName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcedureWrite {
    /// The procedure (`name`, `schema.name`, `[dbo].[name]`).
    pub name: String,
    /// The composite type whose array the procedure takes.
    pub table_type: String,
    /// The procedure's parameter that takes the rows; `None`: the first.
    pub parameter: Option<String>,
}

/// The three ways rows reach a table, each applied in the commit's one
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableWriteMode {
    /// Insert every row (a log; updates add rows).
    Append,
    /// Upsert by key, last row of a key wins; change-tracking deletes delete.
    Merge,
    /// The table's rows become exactly this attempt's rows (full copies,
    /// and full reloads of a merge target).
    Replace,
}

/// What a committed write produced.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Full names of the published outputs (URLs or tables).
    pub outputs: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
}

/// The answer of [`Sink::recover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The attempt's output is visible; `info` is what was passed to `commit`.
    Published { info: String },
    /// Nothing of the attempt is visible (leftovers were removed).
    NotPublished,
}

/// A destination. Implementations are cheap to share between streams.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Start writing one attempt. Nothing is visible until `commit`.
    async fn begin(&self, req: WriteRequest) -> Result<Box<dyn SinkWriter>>;

    /// After a crash: did attempt `(stream, run_id)` writing `target`
    /// publish? Removes staging leftovers of an unpublished attempt, and its
    /// output too when `owned` (the name belongs to that attempt alone).
    /// Idempotent; called only while the caller holds the stream's lock.
    async fn recover(
        &self,
        stream: &str,
        run_id: &str,
        target: &str,
        owned: bool,
    ) -> Result<Recovered>;

    /// Test that the target is reachable and writable ("Test connection").
    async fn check(&self) -> Result<String>;

    /// A hint that `begin` will likely follow soon, into `target`: a
    /// database target starts connecting in the background (and reads
    /// what it needs of the target's catalog), so the login overlaps the
    /// source's read. Never fails (a failed early connection is not used;
    /// `begin` connects again and reports its own error). By default
    /// nothing.
    fn connect_early(&self, target: &str) {
        let _ = target;
    }

    /// Whether nothing `begin` and the writer do before `commit` outlives
    /// this process, beyond at most an empty new target table: rows go
    /// into a temporary table or an uncommitted transaction. Then the
    /// runner writes the attempt's write-ahead record while the rows
    /// stream in instead of before (a crash before the record is durable
    /// leaves nothing to settle; the commit still waits for it). Staged
    /// files are not private: by default `false`.
    fn stages_privately(&self) -> bool {
        false
    }

    /// One part of a shared full load (`share_partitions:`), written by
    /// whichever process claimed it: staged under `(stream, run_id)` as
    /// part `index`, never visible until [`Sink::commit_parts`]. The
    /// writer's `commit` only finishes the staged part. Writing a part
    /// again replaces it.
    async fn begin_part(&self, req: WriteRequest, index: usize) -> Result<Box<dyn SinkWriter>> {
        let _ = (req, index);
        Err(crate::Error::config(
            "share_partitions",
            "needs a file target (local folder, Azure Blob or S3)",
        ))
    }

    /// The rows of part `index` of `(stream, run_id)` once it is staged
    /// in full; `None` while it is not.
    async fn part_written(&self, stream: &str, run_id: &str, index: usize) -> Result<Option<u64>> {
        let _ = (stream, run_id, index);
        Ok(None)
    }

    /// Publish parts `0..parts` of `req`'s attempt with one commit marker,
    /// as [`SinkWriter::commit`] publishes one output. Fails, publishing
    /// nothing, when a part is not staged.
    async fn commit_parts(
        &self,
        req: &WriteRequest,
        parts: usize,
        info: &str,
    ) -> Result<Committed> {
        let _ = (req, parts, info);
        Err(crate::Error::config(
            "share_partitions",
            "needs a file target (local folder, Azure Blob or S3)",
        ))
    }
}

/// One attempt's writer. Memory stays bounded: batches are encoded and
/// flushed as they come.
#[async_trait]
pub trait SinkWriter: Send {
    async fn write(&mut self, batch: RecordBatch) -> Result<()>;

    /// Publish data and the commit marker carrying `info` atomically:
    /// afterwards `recover` answers `Published { info }`; on error nothing
    /// is visible.
    async fn commit(self: Box<Self>, info: &str) -> Result<Committed>;

    /// Drop everything written; nothing becomes visible.
    async fn abort(self: Box<Self>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::part_file_name;

    #[test]
    fn part_names_keep_the_extension() {
        assert_eq!(part_file_name("o/full.parquet", 2), "o/full_00002.parquet");
        assert_eq!(part_file_name("o/t.csv.gz", 0), "o/t_00000.csv.gz");
        assert_eq!(part_file_name("o.d/full", 1), "o.d/full_00001");
        assert_eq!(
            part_file_name("a/2026.12.04.jsonl", 3),
            "a/2026.12.04_00003.jsonl"
        );
        assert_eq!(part_file_name(".hidden", 0), ".hidden_00000");
    }
}
