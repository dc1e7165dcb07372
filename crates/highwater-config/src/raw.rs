//! The file as written: `highwater.yaml` deserialized, not yet validated.
//!
//! These structs are the user documentation of the config: every field has a
//! `///` with an example, and unknown keys are errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The whole `highwater.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where state lives: a path (`.highwater/state.db`, the default) or a
    /// `postgres://` URL for state shared between machines.
    pub state: Option<Spanned<String>>,
    /// How many streams one `run` copies at the same time (default 4).
    pub concurrency: Option<Spanned<i64>>,
    /// Rows per batch between source and target (default 16384).
    pub batch_size: Option<Spanned<i64>>,
    /// Named connections: `name: url`. `${VAR}` is replaced from the environment.
    #[serde(default)]
    pub connections: BTreeMap<String, Spanned<String>>,
    /// Streams by name.
    #[serde(default)]
    pub streams: BTreeMap<String, Spanned<RawStream>>,
}

/// A string or a list of strings (`cursor: updated_at` or `cursor: [updated_at, created_at]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A duration (`30s`, `5m`, `2h`, `2d`) or a plain number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationOrNumber {
    Number(i64),
    Text(String),
}

/// One stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    /// Source connection name: `from: shop`.
    pub from: Option<String>,
    /// Source table, optionally schema-qualified: `table: public.orders`.
    pub table: Option<String>,
    /// Or a query: `query: "select * from orders where region = 'EU'"`.
    pub query: Option<String>,
    /// `full` | `watermark` | `change_tracking` | `cdc` (PostgreSQL, MariaDB).
    pub mode: Option<String>,
    /// Watermark column, or a list meaning the first non-NULL: `cursor: updated_at`.
    pub cursor: Option<OneOrMany>,
    /// Primary-key columns: `primary_key: [id]`.
    pub primary_key: Option<OneOrMany>,
    /// Target connection name: `to: lake`.
    pub to: Option<String>,
    /// File targets: path template, `"orders/{yyyy}/{MM}/{dd}/orders-{run_id}.parquet"`.
    pub path: Option<String>,
    /// File targets: `csv` | `parquet` | `jsonl` (default from the path's extension).
    pub format: Option<String>,
    /// Database targets: the table to write: `into: public.orders`.
    pub into: Option<String>,
    /// Database targets: `append` | `merge`.
    pub write: Option<String>,
    /// Cron schedule for `highwater serve`: `"*/5 * * * *"`.
    pub schedule: Option<String>,
    /// Or tumbling windows of the cursor (mode watermark): each window
    /// `[start, end)` copies the rows whose cursor lies in it, once.
    pub window: Option<RawWindow>,
    /// Cron schedule on which `highwater serve` verifies the stream
    /// (`highwater verify`): `verify: "0 3 * * *"`.
    pub verify: Option<String>,
    /// `error` (default) | `skip`: rows whose cursor is NULL after the full load.
    pub on_null_cursor: Option<String>,
    /// Hold back the upper bound: `lag: 30s` (timestamps) or `lag: 100` (integers).
    pub lag: Option<DurationOrNumber>,
    /// The UTC offset in which every writer writes a zone-less `timestamp` /
    /// `datetime` / `date` cursor: `writer_time_zone: "+00:00"` (or `UTC`,
    /// `-05:00`). Without it highwater cannot know the writers' zones and
    /// holds the newest 12 h (PostgreSQL) / 13 h (MariaDB) of such cursors
    /// back, so a late commit from any zone is not lost.
    pub writer_time_zone: Option<String>,
    /// Rows per batch for this stream.
    pub batch_size: Option<i64>,
    /// Read a full load over N connections in one snapshot, each a range of
    /// the integer key: `partitions: 4`, or `auto` (PostgreSQL).
    pub partitions: Option<DurationOrNumber>,
    /// The parts of a full load are claimed by every process sharing this
    /// state (`highwater serve` workers), each reading its own in the one
    /// snapshot; one commit publishes a file per part (PostgreSQL source,
    /// file target).
    pub share_partitions: Option<bool>,
    /// Change tracking: how long changes are kept, `change_retention: 2d` (default).
    pub change_retention: Option<DurationOrNumber>,
}

/// `window:` of a stream: `{size: 1h, start: "2026-01-01T00:00:00Z"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Window length: `15m`, `1h`, `1d` (whole minutes).
    pub size: Option<String>,
    /// The first window's start (UTC): `"2026-01-01T00:00:00Z"`.
    pub start: Option<String>,
    /// No window starts at or after this (UTC); open-ended without it.
    pub end: Option<String>,
    /// How long after its end a window waits before it runs: `delay: 5m`.
    pub delay: Option<String>,
    /// Windows run at once (`serve`), default 1.
    pub max_concurrency: Option<i64>,
    /// How many times a failed window is retried (default 0).
    pub retry: Option<i64>,
    /// Between retries: `retry_interval: 30s` (default).
    pub retry_interval: Option<String>,
}
