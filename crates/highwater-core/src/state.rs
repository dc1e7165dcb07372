//! The `StateStore` trait: positions, write-ahead attempts, stream locks and
//! the run history.
//!
//! The commit protocol (see ARCHITECTURE.md) in the store's terms:
//!
//! ```text
//! lock_stream(s)                       one process per stream at a time
//! open_attempts(s) → settle each       Published → commit_attempt, else abandon_attempt
//! begin_attempt(a)                     write-ahead, before any row is written
//! … sink writes and commits …
//! commit_attempt(a, to)                compare-and-swap: position must still be a.from
//! ```

use std::any::Any;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::position::Position;

/// A write-ahead record of one stream's attempt in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub stream: String,
    pub run_id: String,
    /// The position the attempt started from (`None`: first run).
    pub from: Option<Position>,
    /// The rendered target (path or table), fixed before writing.
    pub target: String,
    pub started_at: DateTime<Utc>,
}

/// Where an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptStatus {
    Open,
    Committed,
    Abandoned,
}

/// Status of a run or of one stream in it, with Data Factory's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    InProgress,
    Succeeded,
    Failed,
    /// Not run: another process held the stream (a busy stream is not a
    /// failure; its holder is copying it).
    Skipped,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::InProgress => "InProgress",
            RunStatus::Succeeded => "Succeeded",
            RunStatus::Failed => "Failed",
            RunStatus::Skipped => "Skipped",
        }
    }

    pub fn parse(s: &str) -> RunStatus {
        match s {
            "Succeeded" => RunStatus::Succeeded,
            "Failed" => RunStatus::Failed,
            "Skipped" => RunStatus::Skipped,
            _ => RunStatus::InProgress,
        }
    }
}

/// One stream's activity in a run (`runs show`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRun {
    pub stream: String,
    pub mode: String,
    pub status: RunStatus,
    pub rows_read: u64,
    pub rows_written: u64,
    pub watermark_from: Option<String>,
    pub watermark_to: Option<String>,
    pub outputs: Vec<String>,
    pub error: Option<String>,
    pub full_reload: bool,
    pub notes: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The pipeline an activity ran in (`None` for a stream); records
    /// written before this field read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// A pipeline activity's input: its `typeProperties` as evaluated for
    /// the execution recorded (Data Factory's activity-run input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// A pipeline activity's output, as `activity('X').output` saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

/// One invocation of `highwater run` (or a pipeline run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub streams: Vec<StreamRun>,
    /// What started a pipeline run (pipeline, file, parameters, the run it
    /// reruns), for `pipeline rerun`; `None` for stream runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// Which runs [`StateStore::find_runs`] returns: every filter that is set
/// must hold; then `offset` runs are skipped and at most `limit` returned,
/// newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunQuery {
    /// Only runs with this status (a run whose process died reads as Failed).
    pub status: Option<RunStatus>,
    /// A stream's name (stream runs that ran it) or a pipeline's name
    /// (its runs); exact.
    pub name: Option<String>,
    /// Only runs started at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only runs started before this instant.
    pub to: Option<DateTime<Utc>>,
    pub offset: usize,
    pub limit: usize,
}

impl RunQuery {
    /// Whether `run` passes the filters (paging aside).
    pub fn matches(&self, run: &RunRecord) -> bool {
        self.status.is_none_or(|s| run.status == s)
            && self.from.is_none_or(|f| run.started_at >= f)
            && self.to.is_none_or(|t| run.started_at < t)
            && self.name.as_deref().is_none_or(|n| match run.pipeline() {
                Some(p) => p == n,
                None => run.streams.iter().any(|s| s.stream == n),
            })
    }
}

impl RunRecord {
    /// The pipeline a pipeline run ran (`None` for a run of streams).
    pub fn pipeline(&self) -> Option<&str> {
        self.info
            .as_ref()
            .and_then(|i| i.get("pipeline"))
            .and_then(|p| p.as_str())
    }
}

/// Proof that this process holds a stream; dropping it releases the lock.
pub struct StreamLock(pub Box<dyn Any + Send>);

/// Where positions and history live. Calls may come concurrently from
/// several streams of one process; the store serialises what must be.
/// Every method that changes state does so in one transaction.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Take the stream's lock without waiting; `None` when another process
    /// holds it. A crashed process's lock is released by the OS.
    async fn lock_stream(&self, stream: &str) -> Result<Option<StreamLock>>;

    /// The stream's committed position.
    async fn position(&self, stream: &str) -> Result<Option<Position>>;

    /// Every stream's position with the time it last moved and the run that moved it.
    async fn positions(&self) -> Result<Vec<(String, Position, DateTime<Utc>, String)>>;

    /// Forget the stream's position (the next run is a full load). True if one existed.
    async fn reset(&self, stream: &str) -> Result<bool>;

    /// Record an attempt before any row is written. Fails if the stream
    /// has an open attempt already.
    async fn begin_attempt(&self, attempt: &Attempt) -> Result<()>;

    /// Open attempts of a stream (left by a crash), oldest first.
    async fn open_attempts(&self, stream: &str) -> Result<Vec<Attempt>>;

    /// Move the position from `attempt.from` to `to` and close the attempt,
    /// in one transaction. Fails, changing nothing, if the position is no
    /// longer `attempt.from`, or if this store no longer holds the stream's
    /// lock (`abandon_attempt` and `reset` need the lock too).
    async fn commit_attempt(&self, attempt: &Attempt, to: &Position) -> Result<()>;

    /// Close the attempt without moving the position.
    async fn abandon_attempt(&self, attempt: &Attempt, why: &str) -> Result<()>;

    /// Fails if this store no longer holds the stream's lock (e.g. the
    /// session holding a PostgreSQL advisory lock died, so another process
    /// may have taken the stream). Call it right before publishing output;
    /// `commit_attempt` checks again. Stores whose locks cannot be lost
    /// keep the default.
    async fn verify_lock(&self, _stream: &str) -> Result<()> {
        Ok(())
    }

    /// Start a run record.
    async fn begin_run(&self, run_id: &str, started_at: DateTime<Utc>) -> Result<()>;

    /// Add or replace one stream's activity in a run.
    async fn record_stream_run(&self, run_id: &str, run: &StreamRun) -> Result<()>;

    /// Attach what started a run (see [`RunRecord::info`]).
    async fn set_run_info(&self, run_id: &str, info: &serde_json::Value) -> Result<()>;

    /// Close a run record.
    async fn finish_run(&self, run_id: &str, status: RunStatus, at: DateTime<Utc>) -> Result<()>;

    /// Runs, newest first.
    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>>;

    /// One run, by id or unique id prefix.
    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>>;

    /// The page of runs `query` selects, newest first, and how many runs
    /// match in all. The default reads the whole history; stores override
    /// it with a query.
    async fn find_runs(&self, query: &RunQuery) -> Result<(Vec<RunRecord>, usize)> {
        let all: Vec<RunRecord> = self
            .runs(i64::MAX as usize)
            .await?
            .into_iter()
            .filter(|r| query.matches(r))
            .collect();
        let total = all.len();
        let page = all
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect();
        Ok((page, total))
    }
}
