//! `highwater verify`: does a stream's target hold what its source held up
//! to the stream's committed position? And `--repair`: re-copy exactly the
//! keys that differ.
//!
//! ```text
//! position (state store, read only)
//!   ─► source: Source::read of every row, in one snapshot
//!        full         every row is due
//!        watermark    the run's full-load request (cursor column appended);
//!                     due = cursor below the position, or equal and in its
//!                     boundary (boundary::delivered); NULL cursors are due
//!                     unless `on_null_cursor: skip`
//!        change_tr.   every row; keys whose last change in the change log
//!                     is newer than the position's version are not due
//!   ─► target: the `into:` table read back through the target's own
//!        Source (Delta::Full)
//!   ─► both sides: key (canonical text) → 64-bit hash of the row's values
//!        rendered canonically (see `canon`), so a PostgreSQL timestamptz and
//!        the MariaDB DATETIME it became, or an int and a bigint, compare
//!        equal, and NULL differs from ''
//!   ─► missing (due in the source, absent in the target), extra (in the
//!        target, not in the source, not a key that is not yet due), and
//!        different (both, other values)
//! --repair: under the stream's lock, settle open attempts, then ONE attempt
//!   through attempt::execute: the source rows of missing and different
//!   keys as upserts and the extra keys as `D` rows of a change-tracking
//!   merge; the position does not move. Then verify again.
//! ```
//!
//! PostgreSQL → PostgreSQL and MariaDB → MariaDB, every row due: counts and
//! hash sums computed inside both databases first ([`in_database`]); when
//! they differ in full mode, the key range is bisected by per-bucket
//! checksums ([`bisect`]; buckets of the key's hash for a key that is not
//! one integer column, [`hashed`]) and only the small parts that differ are
//! compared row by row. Otherwise rows are compared client
//! side: every row of both sides crosses the network once, in memory of
//! 16 bytes a source row ([`hashes`]).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::StreamExt;
use highwater_config::{Mode, Plan, StreamPlan, Target, WriteMode};
use highwater_core::{
    CURSOR_COLUMN, ConnKind, Delta, Error, ErrorKind, NullCursorPolicy, Position, ReadRequest,
    Relation, Result, StateStore, TableWrite, TableWriteMode, WriteRequest,
};

use crate::attempt::{self, Rows};
use crate::runner::{self, RunOptions};

mod hashes;
use hashes::{Hashes, Latest, Matcher, SourceRows};

/// What `verify` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Streams (empty: all).
    pub streams: Vec<String>,
    /// Re-copy the differing keys, then verify again.
    pub repair: bool,
}

/// The result for one stream.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StreamVerify {
    pub stream: String,
    pub mode: String,
    /// `table (merge)` or the file target's folder.
    pub target: String,
    /// The committed position compared against (`-` for full mode).
    pub position: Option<String>,
    /// Source rows due at the position (compared).
    pub compared: u64,
    /// Source rows past the position (not yet due), left out.
    pub not_due: u64,
    pub missing_count: u64,
    pub extra_count: u64,
    pub different_count: u64,
    /// Keys, sorted (numbers by value).
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub different: Vec<String>,
    pub seconds: f64,
    pub notes: Vec<String>,
    /// `--repair`: what the repair attempt wrote (the counts above are
    /// those of the verification after it).
    pub repaired: Option<Repaired>,
    pub error: Option<String>,
    #[serde(skip)]
    pub error_kind: Option<ErrorKind>,
}

/// What a repair wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Repaired {
    /// Rows upserted (missing and different keys).
    pub upserted: u64,
    /// Keys deleted (extra).
    pub deleted: u64,
    /// The attempt id (in the target's commit records).
    pub attempt: String,
}

impl StreamVerify {
    pub fn equal(&self) -> bool {
        self.error.is_none()
            && self.missing_count == 0
            && self.extra_count == 0
            && self.different_count == 0
    }

    /// 0: every stream equal; 2: every failure a configuration one (bad
    /// usage); else 1 (a difference, or a failure).
    pub fn exit_code(results: &[StreamVerify]) -> i32 {
        if results.iter().all(StreamVerify::equal) {
            return 0;
        }
        let kinds: Vec<ErrorKind> = results.iter().filter_map(|r| r.error_kind).collect();
        let differ = results.iter().any(|r| r.error.is_none() && !r.equal());
        if !differ && !kinds.is_empty() && kinds.iter().all(|k| *k == ErrorKind::Config) {
            2
        } else {
            1
        }
    }
}

/// Verify (and with `repair`, repair) the streams `opts` selects, one after
/// the other.
pub async fn verify_streams(
    plan: &Plan,
    state: Arc<dyn StateStore>,
    opts: &VerifyOptions,
) -> Result<Vec<StreamVerify>> {
    let selected = runner::select(
        plan,
        &RunOptions {
            streams: opts.streams.clone(),
            ..RunOptions::default()
        },
    )?;
    let mut out = Vec::new();
    for s in selected {
        let started = Instant::now();
        let mut r = StreamVerify {
            stream: s.name.clone(),
            mode: s.mode.as_str().to_string(),
            target: match &s.target {
                Target::File { path, .. } => path.clone(),
                Target::Table { into, write } => format!("{into} ({write:?})").to_lowercase(),
            },
            ..StreamVerify::default()
        };
        let res = match opts.repair {
            false => verify_locked(plan, state.as_ref(), s, &mut r).await,
            true => repair_one(plan, state.as_ref(), s, &mut r).await,
        };
        if let Err(e) = res {
            let place = format!("{}:{}", plan.file, s.line);
            r.error = Some(
                plan.secrets
                    .redact(&format!("stream {} ({place}): {e}", s.name)),
            );
            r.error_kind = Some(e.kind());
        }
        for n in r.notes.iter_mut() {
            *n = plan.secrets.redact(n);
        }
        r.seconds = started.elapsed().as_secs_f64();
        out.push(r);
    }
    Ok(out)
}

/// How long verify waits for a run of a `cdc` stream to end.
const CDC_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Verify one stream; a `cdc` stream under its lock: what is not yet due
/// is read from the log with the stream's own slot or replica identity,
/// which a run holds while it reads.
async fn verify_locked(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    r: &mut StreamVerify,
) -> Result<()> {
    let mut lock = None;
    if s.mode == Mode::Cdc {
        // A run of the stream ends soon, usually: wait a little for it.
        let until = Instant::now() + CDC_LOCK_WAIT;
        lock = loop {
            if let Some(l) = state.lock_stream(&s.name).await? {
                break Some(l);
            }
            if Instant::now() >= until {
                return Err(Error::state(format!(
                    "another highwater process has been running this stream for over {} s; \
                     verify it later",
                    CDC_LOCK_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
    }
    let _lock = lock;
    verify_one(plan, state, s, r).await.map(drop)
}

/// The keys that differ, as found by one comparison.
struct Diff {
    missing: Vec<String>,
    extra: Vec<String>,
    different: Vec<String>,
}

async fn verify_one(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    r: &mut StreamVerify,
) -> Result<Diff> {
    let into = check_target(plan, s)?;
    let position = state.position(&s.name).await?;
    r.position = position.as_ref().map(Position::display_value);
    if position.is_none() {
        r.notes.push(
            "the stream has no committed position yet (never run, or reset): no source row is \
             due, so the target should be empty"
                .to_string(),
        );
    }
    if !state.open_attempts(&s.name).await?.is_empty() {
        r.notes.push(
            "an attempt left open by an interrupted run is waiting: the next run settles it; \
             the comparison is with the committed position"
                .to_string(),
        );
    }
    if let Some(into) = &into
        && let Some(diff) = in_database(plan, state, s, into, position.as_ref(), r).await?
    {
        return Ok(diff);
    }
    let target = into.as_ref().map(|i| (i.as_str(), Relation::table(i)));
    let (diff, src) = diff_rows(plan, state, s, target, position.as_ref(), r).await?;
    r.compared = src.due;
    r.not_due = src.rows.not_due_count() as u64;
    record(r, &diff);
    Ok(diff)
}

/// Set the counts and keys of `r` from `diff`.
fn record(r: &mut StreamVerify, diff: &Diff) {
    r.missing_count = diff.missing.len() as u64;
    r.extra_count = diff.extra.len() as u64;
    r.different_count = diff.different.len() as u64;
    r.missing = diff.missing.clone();
    r.extra = diff.extra.clone();
    r.different = diff.different.clone();
}

/// Compare row by row: the source's due rows (of `s.relation`) with the
/// target table (`target`: its name and the relation read, the table or
/// some of its keys) or the file target's replayed outputs. The keys that
/// differ, sorted, and the source side read.
async fn diff_rows(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    target: Option<(&str, Relation)>,
    position: Option<&Position>,
    r: &mut StreamVerify,
) -> Result<(Diff, Side)> {
    let src = read_source(plan, s, position, r, None).await?;
    let types: Vec<DataType> = src
        .schema
        .as_ref()
        .map(|sch| sch.fields().iter().map(|f| f.data_type().clone()).collect())
        .unwrap_or_default();
    let tgt = match target {
        Some((into, relation)) => read_table(plan, s, into, relation, &src, &types).await?,
        None => read_files(plan, state, s, &src, &types, r).await?,
    };
    let hashes = tgt;
    // The texts of the source's keys that differ: a second read, only
    // when something differs (the maps hold 64-bit key hashes only).
    let want: HashSet<u64> = hashes
        .missing
        .iter()
        .chain(&hashes.different)
        .chain(&hashes.extra_in_source)
        .copied()
        .collect();
    let texts = match want.is_empty() {
        true => HashMap::new(),
        false => {
            let mut again = StreamVerify::default();
            read_source(plan, s, position, &mut again, Some(&want))
                .await?
                .texts
        }
    };
    let text = |h: &u64| {
        texts
            .get(h)
            .cloned()
            .unwrap_or_else(|| format!("#{h:016x}"))
    };
    let mut diff = Diff {
        missing: hashes.missing.iter().map(text).collect(),
        extra: hashes.extra_in_source.iter().map(text).collect(),
        different: hashes.different.iter().map(text).collect(),
    };
    diff.extra.extend(hashes.extra);
    for v in [&mut diff.missing, &mut diff.extra, &mut diff.different] {
        v.sort_by(|a, b| natural(a, b));
    }
    Ok((diff, src))
}

/// PostgreSQL → PostgreSQL or MariaDB → MariaDB table, when every source
/// row is due (full mode; change tracking with no change after the
/// position): compare the row count and the sum of row hashes computed
/// inside each database. Equal: done, no row moved (`Some`). Unequal
/// tables in full mode: [`bisect`]. Otherwise, or for any other
/// pair, `None`: the row-by-row comparison finds the keys.
async fn in_database(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    into: &str,
    position: Option<&Position>,
    r: &mut StreamVerify,
) -> Result<Option<Diff>> {
    let (from, to) = (&plan.connections[&s.from], &plan.connections[&s.to]);
    // Each backend renders values its own way: the sums compare only
    // between two databases of one backend.
    let same = matches!(
        (&from.kind, &to.kind),
        (ConnKind::Postgres, ConnKind::Postgres) | (ConnKind::Mysql, ConnKind::Mysql)
    );
    if !same {
        return Ok(None);
    }
    let all_due = match (s.mode, position) {
        (Mode::Full, Some(_)) => true,
        (Mode::ChangeTracking, Some(Position::Version(v))) => {
            let status = highwater_connectors::change_tracking::status_after(
                &from.kind,
                from.url.expose(),
                &s.relation,
                Some(v.version),
            )
            .await?;
            status.complete()
                && status.generation == v.generation
                && status.changed_after == Some(0)
        }
        (Mode::Cdc, Some(Position::Version(v))) => {
            let source = highwater_connectors::source(&from.kind, from.url.expose()).await?;
            !cdc_log_moved(source.as_ref(), s, v).await?
        }
        _ => false,
    };
    if !all_due || s.primary_key.is_empty() {
        return Ok(None);
    }
    let source = highwater_connectors::source(&from.kind, from.url.expose()).await?;
    let info = runner::describe_checked(source.as_ref(), s, &from.kind).await?;
    let columns: Vec<String> = info
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let idle = attempt::idle_timeout();
    let target = Relation::table(into);
    // Both databases at once.
    let (a, b) = futures::join!(
        attempt::bounded(
            "checksumming the source",
            idle,
            highwater_connectors::checksum(&from.kind, from.url.expose(), &s.relation, &columns),
        ),
        attempt::bounded(
            "checksumming the target",
            idle,
            highwater_connectors::checksum(&to.kind, to.url.expose(), &target, &columns),
        )
    );
    // A target that cannot answer (a column renamed, another type) is
    // compared row by row, which names what differs.
    let (Some(a), Ok(Some(b))) = (a?, b) else {
        return Ok(None);
    };
    // Change tracking: a change whose version is not yet settled (an
    // older transaction still open) is in the table but not counted as
    // after the position; the row-by-row comparison asks the change log
    // key by key.
    if a != b && s.mode != Mode::Full {
        return Ok(None);
    }
    if a != b {
        r.compared = a.0.max(0) as u64;
        let rows = a.0.max(b.0);
        return bisect(
            plan,
            state,
            s,
            into,
            position,
            r,
            &info.schema,
            &columns,
            rows,
        )
        .await;
    }
    r.compared = a.0.max(0) as u64;
    r.notes.push(
        "equal by checksum: row count and sum of row hashes computed inside both databases \
         (no rows moved)"
            .to_string(),
    );
    Ok(Some(Diff {
        missing: vec![],
        extra: vec![],
        different: vec![],
    }))
}

/// Bisection: key ranges whose rows differ hold at most this many rows
/// (either side) before they are compared row by row.
const LEAF_ROWS: i64 = 2048;
/// Bisection: a differing key range of `n` rows is split into about
/// `n / BUCKET_ROWS` buckets, at least [`FANOUT`] and at most
/// [`MAX_FANOUT`]: one `GROUP BY` over a 2M-row table answers with a few
/// thousand small rows (kilobytes) and its differing buckets are leaves
/// already, so a few differences cost one pass over the table, not one
/// per level.
const BUCKET_ROWS: i64 = 512;
const FANOUT: i64 = 64;
const MAX_FANOUT: i64 = 4096;
/// Leaf ranges compared row by row in one read, up to this many rows.
const LEAF_BATCH_ROWS: i64 = 100_000;

/// PostgreSQL → PostgreSQL or MariaDB → MariaDB, checksums differ, one
/// integer key column:
/// split the key range into buckets, checksum each inside both databases,
/// and split again only the buckets that differ, until a bucket is small;
/// then compare those ranges row by row. Equal tables move kilobytes; a
/// few differing rows among millions move a few thousand rows, and memory
/// stays bounded by the ranges compared at once. Any other key: buckets of
/// the key's hash ([`hashed`]). `None` (compare every row) when most rows
/// differ (another column type in the target renders every row
/// differently: the row-by-row comparison, which aligns types, says what
/// differs).
#[allow(clippy::too_many_arguments)]
async fn bisect(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    into: &str,
    position: Option<&Position>,
    r: &mut StreamVerify,
    schema: &Schema,
    columns: &[String],
    rows: i64,
) -> Result<Option<Diff>> {
    let (from, to) = (&plan.connections[&s.from], &plan.connections[&s.to]);
    use highwater_connectors::KeyChecksums;
    let target = Relation::table(into);
    let idle = attempt::idle_timeout();
    let (x, y) = futures::join!(
        attempt::bounded(
            "checksumming the source",
            idle,
            KeyChecksums::open(&from.kind, from.url.expose())
        ),
        attempt::bounded(
            "checksumming the target",
            idle,
            KeyChecksums::open(&to.kind, to.url.expose())
        )
    );
    let (Ok(Some(x)), Ok(Some(y))) = (x, y) else {
        return Ok(None);
    };
    let integer = |key: &String| {
        schema.field_with_name(key).is_ok_and(|f| {
            matches!(
                f.data_type(),
                DataType::Int16 | DataType::Int32 | DataType::Int64
            )
        })
    };
    let sides = Sides {
        plan,
        state,
        s,
        into,
        position,
        x: &x,
        y: &y,
    };
    let key = match s.primary_key.as_slice() {
        [key] if integer(key) => key,
        _ => return hashed(&sides, r, columns, rows).await,
    };
    let (a, b) = futures::join!(
        attempt::bounded("checksumming the source", idle, x.bounds(&s.relation, key)),
        attempt::bounded("checksumming the target", idle, y.bounds(&target, key))
    );
    let (Ok(a), Ok(b)) = (a, b) else {
        return Ok(None);
    };
    let Some((lo, hi)) = [a, b]
        .into_iter()
        .flatten()
        .reduce(|p, q| (p.0.min(q.0), p.1.max(q.1)))
    else {
        return Ok(None);
    };
    // Ranges (bounds included) whose checksums differ, split until small.
    let mut todo = vec![((lo, hi), rows)];
    let mut leaves: Vec<((i64, i64), i64)> = Vec::new();
    let mut leaf_rows = 0i64;
    while let Some(((a, b), n)) = todo.pop() {
        let width = i128::from(b) - i128::from(a) + 1;
        let parts = i128::from((n / BUCKET_ROWS).clamp(FANOUT, MAX_FANOUT));
        let step = i64::try_from((width + parts - 1) / parts)
            .unwrap_or(i64::MAX)
            .max(1);
        let (p, q) = futures::join!(
            attempt::bounded(
                "checksumming the source",
                idle,
                x.buckets(&s.relation, columns, key, (a, b), step)
            ),
            attempt::bounded(
                "checksumming the target",
                idle,
                y.buckets(&target, columns, key, (a, b), step)
            )
        );
        let (Ok(p), Ok(q)) = (p, q) else {
            return Ok(None);
        };
        for (i, n) in differing(p, q) {
            let start = i128::from(a) + i128::from(i) * i128::from(step);
            let end = (start + i128::from(step) - 1).min(i128::from(b));
            let (Ok(start), Ok(end)) = (i64::try_from(start), i64::try_from(end)) else {
                return Ok(None);
            };
            if n <= LEAF_ROWS || i128::from(end) - i128::from(start) < parts {
                leaves.push(((start, end), n));
                leaf_rows += n;
                if leaf_rows > rows / 2 + LEAF_ROWS {
                    return Ok(None);
                }
            } else {
                todo.push(((start, end), n));
            }
        }
    }
    // The leaves, row by row, a batch of ranges at a time.
    leaves.sort();
    let diff = sides
        .read_leaves(leaves, |x, rel, batch: &[(i64, i64)]| {
            x.key_ranges(rel, key, batch)
        })
        .await?;
    r.notes.push(format!(
        "compared by checksums of key ranges inside both databases; only the ranges that differ \
         were read row by row ({leaf_rows} row(s) at most)"
    ));
    record(r, &diff);
    Ok(Some(diff))
}

/// The buckets (`(number, rows, hash sum)` from each side) whose row count
/// or sum differ, in order, each with the larger side's row count.
fn differing(p: Vec<(i64, i64, String)>, q: Vec<(i64, i64, String)>) -> Vec<(i64, i64)> {
    let p: HashMap<i64, (i64, String)> = p.into_iter().map(|(i, n, h)| (i, (n, h))).collect();
    let q: HashMap<i64, (i64, String)> = q.into_iter().map(|(i, n, h)| (i, (n, h))).collect();
    let mut buckets: Vec<i64> = p.keys().chain(q.keys()).copied().collect();
    buckets.sort_unstable();
    buckets.dedup();
    buckets
        .into_iter()
        .filter(|i| p.get(i) != q.get(i))
        .map(|i| {
            let rows = |m: &HashMap<i64, (i64, String)>| m.get(&i).map_or(0, |v| v.0);
            (i, rows(&p).max(rows(&q)))
        })
        .collect()
}

/// One stream's source and target, each with its checksum connection, for
/// [`bisect`] and [`hashed`].
struct Sides<'a> {
    plan: &'a Plan,
    state: &'a dyn StateStore,
    s: &'a StreamPlan,
    into: &'a str,
    position: Option<&'a Position>,
    x: &'a highwater_connectors::KeyChecksums,
    y: &'a highwater_connectors::KeyChecksums,
}

impl Sides<'_> {
    /// Compare the leaves (`(part, rows)`, sorted) row by row, a batch of
    /// parts of up to [`LEAF_BATCH_ROWS`] rows at a time; `restrict` makes
    /// a side's relation hold only a batch's parts.
    async fn read_leaves<T: Clone>(
        &self,
        leaves: Vec<(T, i64)>,
        restrict: impl Fn(&highwater_connectors::KeyChecksums, &Relation, &[T]) -> Relation,
    ) -> Result<Diff> {
        let mut diff = Diff {
            missing: vec![],
            extra: vec![],
            different: vec![],
        };
        let target = Relation::table(self.into);
        let mut batch: Vec<T> = Vec::new();
        let mut batch_rows = 0;
        let mut last = leaves.len();
        for (part, n) in leaves {
            batch.push(part);
            batch_rows += n;
            last -= 1;
            if batch_rows < LEAF_BATCH_ROWS && last > 0 {
                continue;
            }
            // Every row is due here (see `in_database`): the parts are read
            // as a full copy would read them.
            let part = StreamPlan {
                relation: restrict(self.x, &self.s.relation, &batch),
                mode: Mode::Full,
                ..self.s.clone()
            };
            let target = restrict(self.y, &target, &batch);
            let mut scratch = StreamVerify::default();
            let (d, _) = diff_rows(
                self.plan,
                self.state,
                &part,
                Some((self.into, target)),
                self.position,
                &mut scratch,
            )
            .await?;
            diff.missing.extend(d.missing);
            diff.extra.extend(d.extra);
            diff.different.extend(d.different);
            batch.clear();
            batch_rows = 0;
        }
        for v in [&mut diff.missing, &mut diff.extra, &mut diff.different] {
            v.sort_by(|a, b| natural(a, b));
        }
        Ok(diff)
    }
}

/// Checksums differ and the key is not one integer column (text, a
/// composite key): one `GROUP BY` per side over buckets of the hash of the
/// key's text (about one bucket per [`BUCKET_ROWS`] rows, [`FANOUT`] to
/// [`MAX_FANOUT`]), then the rows of the buckets that differ, row by row.
/// `None` (compare every row) when more than half the rows would be read.
async fn hashed(
    sides: &Sides<'_>,
    r: &mut StreamVerify,
    columns: &[String],
    rows: i64,
) -> Result<Option<Diff>> {
    let (s, idle) = (sides.s, attempt::idle_timeout());
    let key = &s.primary_key;
    let parts = (rows / BUCKET_ROWS).clamp(FANOUT, MAX_FANOUT);
    let target = Relation::table(sides.into);
    let (p, q) = futures::join!(
        attempt::bounded(
            "checksumming the source",
            idle,
            sides.x.hash_buckets(&s.relation, columns, key, parts)
        ),
        attempt::bounded(
            "checksumming the target",
            idle,
            sides.y.hash_buckets(&target, columns, key, parts)
        )
    );
    let (Ok(p), Ok(q)) = (p, q) else {
        return Ok(None);
    };
    let mut leaves = Vec::new();
    let mut leaf_rows = 0i64;
    for (i, n) in differing(p, q) {
        leaves.push((i, n));
        leaf_rows += n;
        if leaf_rows > rows / 2 + LEAF_ROWS {
            return Ok(None);
        }
    }
    let diff = sides
        .read_leaves(leaves, |x, rel, batch: &[i64]| {
            x.key_buckets(rel, key, parts, batch)
        })
        .await?;
    r.notes.push(format!(
        "compared by checksums of key-hash buckets inside both databases; only the buckets that \
         differ were read row by row ({leaf_rows} row(s) at most)"
    ));
    record(r, &diff);
    Ok(Some(diff))
}

/// The `into:` table (`None`: a file target), or a clear refusal.
fn check_target(plan: &Plan, s: &StreamPlan) -> Result<Option<String>> {
    let place = format!("{}:{}", plan.file, s.line);
    match &s.target {
        Target::Table { into, write } => {
            if *write == WriteMode::Append && s.mode != Mode::Full {
                return Err(Error::config(
                    format!("stream {} ({place}), write: append", s.name),
                    "verify compares one row per key, and an append target keeps every \
                     delivered version of a row (a log): there is nothing to compare it with. \
                     Verify a `write: merge` target instead",
                ));
            }
            Ok(Some(into.clone()))
        }
        Target::File { .. } => Ok(None),
    }
}

/// The source side: its due rows by key hash, sealed.
struct Side {
    /// Compared columns, by source name.
    columns: Vec<String>,
    /// Indexes into `columns` of the key columns.
    key: Vec<usize>,
    /// Key hash (of the key's canonical text) and row hash of each due
    /// row, and the keys past the position.
    rows: SourceRows,
    /// Key texts of the keys asked for.
    texts: HashMap<u64, String>,
    /// Rows due.
    due: u64,
    /// The compared schema (repair).
    schema: Option<SchemaRef>,
}

impl Side {
    /// The whole row is the key (a full copy without `primary_key`).
    fn keyless(&self) -> bool {
        self.key.len() == self.columns.len()
    }
}

/// The stream's source, its checked description, the columns compared
/// (without the cursor column a watermark read adds) and the key's
/// indexes among them.
/// A read of every row of `relation` in one connection (no cursor, no
/// key), as verify compares them.
fn whole_read(s: &StreamPlan, relation: Relation) -> ReadRequest {
    ReadRequest {
        stream: s.name.clone(),
        relation,
        delta: Delta::Full,
        primary_key: vec![],
        batch_size: s.batch_size,
        on_null_cursor: NullCursorPolicy::Error,
        partitions: 1,
    }
}

async fn open_source<'a>(
    plan: &'a Plan,
    s: &StreamPlan,
) -> Result<(
    &'a highwater_config::ConnectionSpec,
    std::sync::Arc<dyn highwater_core::Source>,
    highwater_core::TableInfo,
    Vec<String>,
    Vec<usize>,
)> {
    let conn = &plan.connections[&s.from];
    let source = highwater_connectors::source(&conn.kind, conn.url.expose()).await?;
    let info = runner::describe_checked(source.as_ref(), s, &conn.kind).await?;
    let columns: Vec<String> = info
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != CURSOR_COLUMN)
        .collect();
    let key = key_indexes(s, &columns)?;
    Ok((conn, source, info, columns, key))
}

async fn read_source(
    plan: &Plan,
    s: &StreamPlan,
    position: Option<&Position>,
    r: &mut StreamVerify,
    want: Option<&HashSet<u64>>,
) -> Result<Side> {
    let (conn, source, _, columns, key) = open_source(plan, s).await?;

    // The run's own request: a watermark full load carries the cursor
    // column; other modes read every row.
    let mut req = runner::read_request(s, None);
    if s.mode != Mode::Watermark {
        req.delta = Delta::Full;
    }
    let mut side = Side {
        columns: columns.clone(),
        key,
        rows: SourceRows::default(),
        texts: HashMap::new(),
        due: 0,
        schema: None,
    };

    let idle = attempt::idle_timeout();
    let mut extract = attempt::bounded("reading the source", idle, source.read(&req)).await?;
    r.notes.append(&mut extract.notes);
    let visible: Vec<usize> = indexes_of(&extract.schema, &columns)?;
    side.schema = Some(Arc::new(
        extract
            .schema
            .project(&visible)
            .map_err(|e| Error::source("engine", e))?,
    ));
    let skip_null = s.on_null_cursor == NullCursorPolicy::Skip;
    loop {
        let next = attempt::bounded("reading the source", idle, async {
            Ok(extract.batches.next().await)
        })
        .await?;
        let Some(b) = next else { break };
        let b = b?;
        let due: Vec<bool> = match (s.mode, position) {
            (_, None) => vec![false; b.num_rows()],
            (Mode::Watermark, Some(Position::Watermark(w))) => crate::boundary::delivered(&b, w)?
                .into_iter()
                .map(|d| d.unwrap_or(!skip_null))
                .collect(),
            _ => vec![true; b.num_rows()],
        };
        let cols: Vec<ArrayRef> = visible.iter().map(|i| b.column(*i).clone()).collect();
        for (row, due) in due.into_iter().enumerate() {
            let text = key_text(&cols, &side.key, row);
            let k = key_hash(&text);
            if want.is_some_and(|w| w.contains(&k)) {
                side.texts.insert(k, text);
            }
            if !due {
                side.rows.not_due(k);
                continue;
            }
            side.due += 1;
            side.rows.push(k, row_hash(&cols, row));
        }
    }
    // Change tracking and log-based capture: keys changed after the
    // position (deleted ones too) are not due, on either side; a key due in
    // one version and not in another (updated past the position) is not
    // due. Read after the source's snapshot, so every change the snapshot
    // holds and the position does not is among them.
    let later = match (s.mode, position, want) {
        (Mode::ChangeTracking, Some(Position::Version(v)), None) => {
            Some(changed_keys(source.as_ref(), &conn.kind, s, v.version).await?)
        }
        (Mode::Cdc, Some(Position::Version(v)), None) => {
            let (keys, reload) =
                cdc_changed_keys(source.as_ref(), s, v, &columns, &side.key).await?;
            if reload {
                r.notes.push(
                    "the log no longer holds the stream's position: its next run reloads in \
                     full; rows were compared as of now"
                        .to_string(),
                );
            }
            Some(keys)
        }
        _ => None,
    };
    let recount = later.is_some();
    for k in later.into_iter().flatten() {
        side.rows.not_due(k);
    }
    side.rows.seal();
    if recount {
        side.due = side.rows.len() as u64;
    }
    // Watermark: rows the source held back above its bound (`lag:`, the
    // late-commit cap) were not read; their keys are not due either (a row
    // copied before and updated since would otherwise look extra).
    if s.mode == Mode::Watermark && extract.held_back > 0 {
        let full = ReadRequest {
            delta: Delta::Full,
            ..req.clone()
        };
        let mut all = attempt::bounded("reading the source", idle, source.read(&full)).await?;
        let mut held = Vec::new();
        let visible: Vec<usize> = indexes_of(&all.schema, &columns)?;
        while let Some(b) = attempt::bounded("reading the source", idle, async {
            Ok(all.batches.next().await)
        })
        .await?
        {
            let b = b?;
            let cols: Vec<ArrayRef> = visible.iter().map(|i| b.column(*i).clone()).collect();
            for row in 0..b.num_rows() {
                let k = key_hash(&key_text(&cols, &side.key, row));
                if !side.rows.contains(k) {
                    held.push(k);
                }
            }
        }
        for k in held {
            side.rows.not_due(k);
        }
        side.rows.seal();
    }
    Ok(side)
}

fn key_indexes(s: &StreamPlan, columns: &[String]) -> Result<Vec<usize>> {
    if s.primary_key.is_empty() {
        // Full copies without a key: the whole row is the key.
        return Ok((0..columns.len()).collect());
    }
    s.primary_key
        .iter()
        .map(|k| {
            columns.iter().position(|c| c == k).ok_or_else(|| {
                Error::config(format!("primary_key column {k}"), "not in the source")
            })
        })
        .collect()
}

/// The positions of `columns` in `schema`.
fn indexes_of(schema: &SchemaRef, columns: &[String]) -> Result<Vec<usize>> {
    columns
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::source("engine", e))
}

/// Whether a mode's outputs are changes (`SYS_CHANGE_OPERATION` I/U/D)
/// whose full reloads replace the copy.
fn delivers_changes(mode: Mode) -> bool {
    matches!(mode, Mode::ChangeTracking | Mode::Cdc)
}

/// Read the database's log after `after` with the stream's own `cdc`
/// request, never committed (the slot or binlog position stays): `f` sees
/// the read's schema and each batch. Returns whether the log lost the
/// position (the read is a reload). Call under the stream's lock: the read
/// uses the stream's slot or replica identity.
async fn read_cdc_log(
    source: &dyn highwater_core::Source,
    s: &StreamPlan,
    after: &highwater_core::ChangeVersion,
    mut f: impl FnMut(&SchemaRef, &RecordBatch) -> Result<()>,
) -> Result<bool> {
    let mut req = runner::read_request(s, None);
    req.delta = Delta::Cdc {
        after: Some(after.clone()),
    };
    let idle = attempt::idle_timeout();
    let mut extract = attempt::bounded("reading the log", idle, source.read(&req)).await?;
    while let Some(b) = attempt::bounded("reading the log", idle, async {
        Ok(extract.batches.next().await)
    })
    .await?
    {
        f(&extract.schema, &b?)?;
    }
    Ok(extract.full_reload)
}

/// Whether the database's log holds a change after `after`, or lost the
/// position.
async fn cdc_log_moved(
    source: &dyn highwater_core::Source,
    s: &StreamPlan,
    after: &highwater_core::ChangeVersion,
) -> Result<bool> {
    let mut changes = false;
    let reload = read_cdc_log(source, s, after, |_, b| {
        changes |= b.num_rows() > 0;
        Ok(())
    })
    .await?;
    Ok(reload || changes)
}

/// The keys with a change in the database's log after `after`, and whether
/// the log lost the position (then no key is left out).
async fn cdc_changed_keys(
    source: &dyn highwater_core::Source,
    s: &StreamPlan,
    after: &highwater_core::ChangeVersion,
    columns: &[String],
    key: &[usize],
) -> Result<(HashSet<u64>, bool)> {
    let mut keys = HashSet::new();
    let reload = read_cdc_log(source, s, after, |schema, b| {
        let visible = indexes_of(schema, columns)?;
        let cols: Vec<ArrayRef> = visible.iter().map(|i| b.column(*i).clone()).collect();
        for row in 0..b.num_rows() {
            keys.insert(key_hash(&key_text(&cols, key, row)));
        }
        Ok(())
    })
    .await?;
    if reload {
        keys.clear();
    }
    Ok((keys, reload))
}

/// The keys of `s`'s change log whose last change is newer than `after`
/// (read only).
async fn changed_keys(
    source: &dyn highwater_core::Source,
    kind: &ConnKind,
    s: &StreamPlan,
    after: i64,
) -> Result<HashSet<u64>> {
    let q = match kind {
        ConnKind::Mysql => '`',
        _ => '"',
    };
    let quote = |n: &str| format!("{q}{}{q}", n.replace(q, &format!("{q}{q}")));
    let Relation::Table { schema, name } = &s.relation else {
        return Err(Error::config(
            "query",
            "change tracking needs a table, not a query",
        ));
    };
    let log = highwater_connectors::change_tracking::log_table(name);
    let log = match schema {
        Some(sch) => format!("{}.{}", quote(sch), quote(&log)),
        None => quote(&log),
    };
    let cols: Vec<String> = s.primary_key.iter().map(|c| quote(c)).collect();
    let sql = format!(
        "SELECT {} FROM {log} WHERE hw_version > {after}",
        cols.join(", ")
    );
    let req = whole_read(s, Relation::Query(sql));
    let idle = attempt::idle_timeout();
    let mut extract = attempt::bounded("reading the change log", idle, source.read(&req)).await?;
    let mut keys = HashSet::new();
    let key: Vec<usize> = (0..s.primary_key.len()).collect();
    while let Some(b) = attempt::bounded("reading the change log", idle, async {
        Ok(extract.batches.next().await)
    })
    .await?
    {
        let b = b?;
        let cols: Vec<ArrayRef> = b.columns().to_vec();
        for row in 0..b.num_rows() {
            keys.insert(key_hash(&key_text(&cols, &key, row)));
        }
    }
    Ok(keys)
}

/// Read the target table through the target connection's own source.
async fn read_table(
    plan: &Plan,
    s: &StreamPlan,
    into: &str,
    relation: Relation,
    src: &Side,
    types: &[DataType],
) -> Result<Hashes> {
    let columns = &src.columns;
    let conn = &plan.connections[&s.to];
    let source = highwater_connectors::source(&conn.kind, conn.url.expose()).await?;
    let idle = attempt::idle_timeout();
    let info = attempt::bounded("describing the target", idle, source.describe(&relation))
        .await
        .map_err(|e| match e.cause() {
            Some(highwater_core::Cause::MissingRelation) => {
                Error::config(format!("target table {into}"), e)
            }
            _ => e,
        })?;
    let names: Vec<&str> = info
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut idx = Vec::new();
    for c in columns {
        let i = names
            .iter()
            .position(|n| n == c)
            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(c)))
            .ok_or_else(|| {
                Error::config(
                    format!("target table {into}"),
                    format!("has no column {c} (columns: {})", names.join(", ")),
                )
            })?;
        idx.push(i);
    }
    let req = whole_read(s, relation);
    let mut extract = attempt::bounded("reading the target", idle, source.read(&req)).await?;
    // Streamed: each target row is matched against the source's and
    // dropped.
    let mut matcher = Matcher::new(&src.rows, src.keyless());
    while let Some(b) = attempt::bounded("reading the target", idle, async {
        Ok(extract.batches.next().await)
    })
    .await?
    {
        let b = b?;
        let cols: Vec<ArrayRef> = idx
            .iter()
            .zip(types)
            .map(|(i, t)| align(b.column(*i), t))
            .collect();
        for row in 0..b.num_rows() {
            let text = key_text(&cols, &src.key, row);
            matcher.add(key_hash(&text), row_hash(&cols, row), || text);
        }
    }
    Ok(matcher.finish())
}

/// Replay a file target's committed outputs in commit order: full mode
/// the last commit's files; watermark the latest row of each key; change
/// tracking `I`/`U` upserted and `D` deleted, a reload starting afresh.
async fn read_files(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    src: &Side,
    types: &[DataType],
    r: &mut StreamVerify,
) -> Result<Hashes> {
    let key = &src.key;
    let keyless = src.keyless();
    // Full copies (the last output) and whole-row keys count every row;
    // otherwise the latest version of each key wins.
    let mut side = match keyless || s.mode == Mode::Full {
        true => Against::All(Matcher::new(&src.rows, keyless)),
        false => Against::Latest(Latest::new(&src.rows)),
    };
    // Texts of the replayed keys the source does not have (extra).
    let mut texts: HashMap<u64, String> = HashMap::new();
    replay_outputs(plan, state, s, &src.columns, types, r, |event| {
        let (cols, op) = match event {
            Replayed::Reload => {
                match &mut side {
                    Against::All(m) => m.clear(),
                    Against::Latest(l) => l.clear(),
                }
                texts.clear();
                return;
            }
            Replayed::Rows(cols, op) => (cols, op),
        };
        for row in 0..cols.first().map_or(0, |c| c.len()) {
            let text = key_text(cols, key, row);
            let k = key_hash(&text);
            match &mut side {
                Against::All(m) => m.add(k, row_hash(cols, row), || text),
                Against::Latest(l) if deleted(op, row) => {
                    l.delete(k);
                    texts.remove(&k);
                }
                Against::Latest(l) => {
                    if !src.rows.contains(k) && !src.rows.is_not_due(k) {
                        texts.insert(k, text);
                    }
                    l.upsert(k, row_hash(cols, row));
                }
            }
        }
    })
    .await?;
    Ok(match side {
        Against::All(m) => m.finish(),
        Against::Latest(l) => {
            l.finish(|k| texts.remove(&k).unwrap_or_else(|| format!("#{k:016x}")))
        }
    })
}

/// How a file target's replayed rows are compared with the source.
enum Against<'a> {
    /// Every row counts (a full copy's last output, whole-row keys).
    All(Matcher<'a>),
    /// The latest row of each key, deletes applied.
    Latest(Latest<'a>),
}

/// Whether `row` of a change-tracking output is a `D` row.
fn deleted(op: Option<&ArrayRef>, row: usize) -> bool {
    op.is_some_and(|o| !o.is_null(row) && o.as_string::<i32>().value(row) == "D")
}

/// What [`replay_outputs`] hands over, in commit order.
enum Replayed<'a> {
    /// A full reload's output follows: the copy starts afresh.
    Reload,
    /// A batch of an output: the compared columns in the source's types,
    /// and a change-tracking output's `SYS_CHANGE_OPERATION`.
    Rows(&'a [ArrayRef], Option<&'a ArrayRef>),
}

/// Read a file target's committed outputs in commit order (full mode: the
/// last commit's), a batch at a time, into `f`. A file a marker names that
/// is gone is a note in `r`.
async fn replay_outputs(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    columns: &[String],
    types: &[DataType],
    r: &mut StreamVerify,
    mut f: impl FnMut(Replayed<'_>),
) -> Result<()> {
    let Target::File { format, .. } = &s.target else {
        return Err(Error::config("target", "not a file target"));
    };
    let conn = &plan.connections[&s.to];
    let reader = highwater_connectors::files::read::Reader::open(&conn.kind)?;
    let idle = attempt::idle_timeout();
    let mut commits =
        attempt::bounded("listing the commit markers", idle, reader.commits(&s.name)).await?;
    order_commits(&mut commits);
    if s.mode == Mode::Full && commits.len() > 1 {
        commits.drain(..commits.len() - 1);
    }
    // Change tracking: the outputs of full reloads replace the copy.
    let mut reloads = HashSet::new();
    if delivers_changes(s.mode) {
        for run in state.runs(100_000).await? {
            for sr in run.streams {
                if sr.stream == s.name && sr.full_reload {
                    reloads.extend(sr.outputs);
                }
            }
        }
    }
    for c in &commits {
        if c.files.iter().any(|(_, url)| reloads.contains(url)) {
            f(Replayed::Reload);
        }
        for (path, url) in &c.files {
            let read = attempt::bounded(
                "reading an output",
                idle,
                reader.read(path, format.as_str()),
            )
            .await?;
            let batches = match read {
                highwater_connectors::files::read::ReadOutput::Missing => {
                    r.notes.push(format!(
                        "output {url} of run {} is gone: its rows count as missing",
                        c.run_id
                    ));
                    continue;
                }
                highwater_connectors::files::read::ReadOutput::Batches(b) => b,
            };
            for b in batches {
                let b = b?;
                let names: Vec<String> = b
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                let mut cols = Vec::with_capacity(columns.len());
                for (c, t) in columns.iter().zip(types) {
                    let i = names
                        .iter()
                        .position(|n| n == c)
                        .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(c)))
                        .ok_or_else(|| {
                            Error::data(format!(
                                "output {url} has no column {c} (columns: {})",
                                names.join(", ")
                            ))
                        })?;
                    cols.push(align(b.column(i), t));
                }
                let op = names
                    .iter()
                    .position(|n| n == highwater_connectors::change_tracking::OPERATION_COLUMN)
                    .filter(|_| delivers_changes(s.mode))
                    .map(|i| align(b.column(i), &DataType::Utf8));
                f(Replayed::Rows(&cols, op.as_ref()));
            }
        }
    }
    Ok(())
}

/// Commit order: object stores may keep markers' times to the second, so
/// the positions the commits carried order them first (a change version,
/// a watermark value), then the markers' times, then (same position, same
/// time) a repair after the commit it repaired.
fn order_commits(commits: &mut [highwater_connectors::files::read::CommitRecord]) {
    use std::cmp::Ordering;
    let pos =
        |c: &highwater_connectors::files::read::CommitRecord| Position::from_json(&c.info).ok();
    commits.sort_by(|a, b| {
        let by_pos = match (pos(a), pos(b)) {
            (Some(Position::Version(x)), Some(Position::Version(y))) => x.version.cmp(&y.version),
            (Some(Position::Watermark(x)), Some(Position::Watermark(y))) => {
                match (x.value, y.value) {
                    (Some(x), Some(y)) => x.compare(&y).unwrap_or(Ordering::Equal),
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                }
            }
            _ => Ordering::Equal,
        };
        let repair = |c: &highwater_connectors::files::read::CommitRecord| {
            c.run_id.starts_with("verify-repair-")
        };
        by_pos
            .then_with(|| a.committed_at.cmp(&b.committed_at))
            .then_with(|| repair(a).cmp(&repair(b)))
            .then_with(|| a.run_id.cmp(&b.run_id))
    });
}

/// A target column in the source column's type, so values compare by type:
/// a SQLite target keeps decimals, timestamps and dates as text, MariaDB
/// booleans as integers. Values that do not convert keep their own form
/// (and so differ), never become NULL.
fn align(col: &ArrayRef, to: &DataType) -> ArrayRef {
    if col.data_type() == to || !arrow_cast::can_cast_types(col.data_type(), to) {
        return col.clone();
    }
    match arrow_cast::cast(col.as_ref(), to) {
        Ok(c) if c.null_count() == col.null_count() => c,
        _ => col.clone(),
    }
}

/// The 64-bit hash of a key's canonical text.
fn key_hash(text: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Numbers by value, other keys as text.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// The key of a row as text: the canonical values of the key columns,
/// `(a, b)` for composite keys.
fn key_text(cols: &[ArrayRef], key: &[usize], row: usize) -> String {
    let mut parts = Vec::with_capacity(key.len());
    for i in key {
        let mut s = String::new();
        if !canon(cols[*i].as_ref(), row, &mut s) {
            s = "NULL".to_string();
        }
        parts.push(s);
    }
    match parts.len() {
        1 => parts.pop().unwrap_or_default(),
        _ => format!("({})", parts.join(", ")),
    }
}

/// A 64-bit hash of the canonical rendering of every column of `row`.
fn row_hash(cols: &[ArrayRef], row: usize) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    let mut s = String::new();
    for c in cols {
        s.clear();
        if canon(c.as_ref(), row, &mut s) {
            1u8.hash(&mut h);
            s.hash(&mut h);
        } else {
            0u8.hash(&mut h);
        }
    }
    h.finish()
}

/// Render the value at `row` canonically into `out` (false: NULL). The same
/// value reads back as different Arrow types from different databases
/// (bool / tinyint, int / bigint / decimal(p,0), timestamptz / DATETIME,
/// float4 / double): each renders to the same text.
///   integers, decimals: the number, no trailing fraction zeros (`12.5`, `-3`)
///   booleans: `1` / `0`
///   floats: integral values as integers; a double that is exactly a float
///     renders as the float's shortest form; else the shortest form
///   timestamps: `YYYY-MM-DD HH:MM:SS.ffffff` (zoned ones in UTC)
///   dates `YYYY-MM-DD`; times `HH:MM:SS.ffffff`; binary: lowercase hex
///   text: as is; other types: Arrow's display form
pub fn canon(col: &dyn Array, row: usize, out: &mut String) -> bool {
    use std::fmt::Write;
    if col.is_null(row) {
        return false;
    }
    match col.data_type() {
        DataType::Boolean => out.push(if col.as_boolean().value(row) {
            '1'
        } else {
            '0'
        }),
        DataType::Int8 => write_int(out, col.as_primitive::<Int8Type>().value(row) as i128),
        DataType::Int16 => write_int(out, col.as_primitive::<Int16Type>().value(row) as i128),
        DataType::Int32 => write_int(out, col.as_primitive::<Int32Type>().value(row) as i128),
        DataType::Int64 => write_int(out, col.as_primitive::<Int64Type>().value(row) as i128),
        DataType::UInt8 => write_int(out, col.as_primitive::<UInt8Type>().value(row) as i128),
        DataType::UInt16 => write_int(out, col.as_primitive::<UInt16Type>().value(row) as i128),
        DataType::UInt32 => write_int(out, col.as_primitive::<UInt32Type>().value(row) as i128),
        DataType::UInt64 => write_int(out, col.as_primitive::<UInt64Type>().value(row) as i128),
        DataType::Float32 => write_float(out, col.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => write_float(out, col.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            let v = col.as_primitive::<Decimal128Type>().value(row);
            out.push_str(&number_text(&v.to_string(), *scale as i32));
        }
        DataType::Decimal256(_, scale) => {
            let v = col.as_primitive::<Decimal256Type>().value(row);
            out.push_str(&number_text(&v.to_string(), *scale as i32));
        }
        DataType::Utf8 => out.push_str(col.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => out.push_str(col.as_string::<i64>().value(row)),
        DataType::Utf8View => out.push_str(col.as_string_view().value(row)),
        DataType::Binary => hex(out, col.as_binary::<i32>().value(row)),
        DataType::LargeBinary => hex(out, col.as_binary::<i64>().value(row)),
        DataType::FixedSizeBinary(_) => hex(out, col.as_fixed_size_binary().value(row)),
        DataType::Date32 => {
            let d = col.as_primitive::<Date32Type>().value(row);
            out.push_str(&highwater_core::CursorValue::Date(d).to_sql_text());
        }
        DataType::Date64 => {
            let ms = col.as_primitive::<Date64Type>().value(row);
            write_micros(out, ms.saturating_mul(1000));
            out.truncate(out.len() - 16);
        }
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => col
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => col
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1000),
                TimeUnit::Microsecond => col.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => {
                    col.as_primitive::<TimestampNanosecondType>().value(row) / 1000
                }
            };
            write_micros(out, v);
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let us = col.as_primitive::<Time64MicrosecondType>().value(row);
            let _ = write!(
                out,
                "{:02}:{:02}:{:02}.{:06}",
                us / 3_600_000_000,
                us / 60_000_000 % 60,
                us / 1_000_000 % 60,
                us % 1_000_000
            );
        }
        _ => {
            let opts = arrow_cast::display::FormatOptions::default();
            match arrow_cast::display::ArrayFormatter::try_new(col, &opts) {
                Ok(f) => {
                    let _ = write!(out, "{}", f.value(row));
                }
                Err(_) => out.push('?'),
            }
        }
    }
    true
}

fn write_int(out: &mut String, v: i128) {
    use std::fmt::Write;
    let _ = write!(out, "{v}");
}

fn write_float(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else if (v as f32) as f64 == v {
        let _ = write!(out, "{}", v as f32);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn write_micros(out: &mut String, us: i64) {
    let secs = us.div_euclid(1_000_000);
    let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => out.push_str(&t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
        None => out.push_str(&us.to_string()),
    }
}

fn hex(out: &mut String, bytes: &[u8]) {
    use std::fmt::Write;
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// An unscaled integer `digits` with `scale` fraction digits, as the
/// shortest exact decimal text.
fn number_text(digits: &str, scale: i32) -> String {
    let (neg, digits) = match digits.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, digits),
    };
    let mut s = if scale <= 0 {
        let zeros = "0".repeat((-scale) as usize);
        format!("{digits}{zeros}")
    } else {
        let scale = scale as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        }
    };
    let int_part = s.trim_start_matches('0');
    s = if int_part.is_empty() || int_part.starts_with('.') {
        format!("0{int_part}")
    } else {
        int_part.to_string()
    };
    if neg && s != "0" { format!("-{s}") } else { s }
}

// ---------------------------------------------------------------- repair

async fn repair_one(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    r: &mut StreamVerify,
) -> Result<()> {
    let into = check_target(plan, s)?;
    let place = format!("stream {} ({}:{})", s.name, plan.file, s.line);
    // A full copy's file target is its last output, and a keyless table
    // has no key to merge by: the repair writes the whole copy again (a
    // new last output; the table's rows replaced), as one attempt.
    let whole = s.mode == Mode::Full && (into.is_none() || s.primary_key.is_empty());
    if s.primary_key.is_empty() && !whole {
        return Err(Error::config(
            place,
            "--repair needs the stream's `primary_key` (the keys to re-copy and delete)",
        ));
    }
    let Some(_lock) = state.lock_stream(&s.name).await? else {
        return Err(Error::state(
            "another highwater process is running this stream now; repair later",
        ));
    };
    let to_conn = &plan.connections[&s.to];
    let sink = highwater_connectors::sink(&to_conn.kind, to_conn.url.expose()).await?;
    let env = attempt::Env {
        state,
        sink: sink.as_ref(),
        secrets: &plan.secrets,
    };
    for n in attempt::settle(env, &s.name, s.mode != Mode::Full).await? {
        r.notes.push(n);
    }
    let Some(position) = state.position(&s.name).await? else {
        return Err(Error::config(
            place,
            "has no committed position yet: run it before repairing",
        ));
    };
    let mut first = StreamVerify::default();
    let diff = verify_one(plan, state, s, &mut first).await?;
    r.notes.append(&mut first.notes);
    let mut delete: HashSet<String> = diff.extra.iter().cloned().collect();
    if into.is_none() && s.mode == Mode::Watermark && !delete.is_empty() {
        r.notes.push(format!(
            "{} extra key(s) stay: a watermark file target has no deletes (readers take the \
             latest version of each key), so --repair only re-copies missing and different \
             rows; remove the extra rows from the files, or reset the stream and run it again",
            delete.len()
        ));
        delete.clear();
    }
    let upsert: HashSet<String> = diff
        .missing
        .iter()
        .chain(diff.different.iter())
        .cloned()
        .collect();
    if upsert.is_empty() && delete.is_empty() {
        r.notes.push("nothing to repair".to_string());
        r.repaired = Some(Repaired::default());
        verify_one(plan, state, s, r).await?;
        return Ok(());
    }

    let batches = match whole {
        true => {
            repair_batches(
                plan,
                state,
                s,
                &position,
                into.as_deref(),
                None,
                &HashSet::new(),
            )
            .await?
        }
        false => {
            repair_batches(
                plan,
                state,
                s,
                &position,
                into.as_deref(),
                Some(&upsert),
                &delete,
            )
            .await?
        }
    };
    if whole {
        r.notes.push(format!(
            "a full copy{}: the repair wrote it again in full ({} rows)",
            if into.is_some() {
                " without a key"
            } else {
                "'s file target is its last output"
            },
            batches.upserted
        ));
    }
    let attempt_id = format!("verify-repair-{}", uuid::Uuid::new_v4());
    let (target, format, table) = match (&s.target, &into) {
        (_, Some(into)) => (
            into.clone(),
            "table".to_string(),
            Some(TableWrite {
                mode: match whole {
                    true => TableWriteMode::Replace,
                    false => TableWriteMode::Merge,
                },
                primary_key: s.primary_key.clone(),
                change_tracking: !whole,
                pre_copy_script: None,
                procedure: None,
            }),
        ),
        (Target::File { path, format }, None) => (
            crate::template::render(path, &s.name, &attempt_id, chrono::Utc::now()),
            format.as_str().to_string(),
            None,
        ),
        (Target::Table { .. }, None) => unreachable!("check_target gives the table"),
    };
    let copy = attempt::Copy {
        key: s.name.clone(),
        attempt_id: attempt_id.clone(),
        from: Some(position.clone()),
        request: WriteRequest {
            stream: s.name.clone(),
            run_id: attempt_id.clone(),
            target,
            format,
            schema: batches.schema.clone(),
            overwrite: whole,
            table,
            split: None,
        },
        owned: true,
    };
    let (upserted, deleted) = (batches.upserted, batches.deleted);
    let mut rows = RepairRows {
        batches: batches.batches.into_iter(),
        position: Some(position),
    };
    let outcome = attempt::execute(env, copy, &mut rows).await?;
    r.notes.extend(outcome.notes);
    if into.is_none() {
        r.notes.extend(
            outcome
                .committed
                .outputs
                .iter()
                .map(|o| format!("repair output: {o}")),
        );
    }
    r.repaired = Some(Repaired {
        upserted,
        deleted,
        attempt: attempt_id,
    });
    // Verify again.
    verify_one(plan, state, s, r).await?;
    Ok(())
}

struct RepairBatches {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    upserted: u64,
    deleted: u64,
}

/// The source rows of the `upsert` keys (due at `position`) plus one `D`
/// row per `delete` key, with `SYS_CHANGE_OPERATION` appended.
async fn repair_batches(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    position: &Position,
    into: Option<&str>,
    upsert: Option<&HashSet<String>>,
    delete: &HashSet<String>,
) -> Result<RepairBatches> {
    let (_, source, info, columns, key) = open_source(plan, s).await?;
    let visible_schema = Schema::new(
        columns
            .iter()
            .map(|c| {
                let f = info
                    .schema
                    .field_with_name(c)
                    .map_err(|e| Error::source("engine", e))?;
                Ok(Field::new(c, f.data_type().clone(), true))
            })
            .collect::<Result<Vec<_>>>()?,
    );
    let mut fields: Vec<Field> = visible_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    // A table merge takes the operation; a change-tracking file carries
    // the version and the operation, as every output of the stream; a
    // watermark file only the rows.
    let version = match (into, position) {
        (None, Position::Version(v)) => Some(v.version),
        _ => None,
    };
    let with_op = (into.is_some() && upsert.is_some()) || version.is_some();
    if version.is_some() {
        fields.push(Field::new(
            highwater_connectors::change_tracking::VERSION_COLUMN,
            DataType::Int64,
            true,
        ));
    }
    if with_op {
        fields.push(Field::new(
            highwater_connectors::change_tracking::OPERATION_COLUMN,
            DataType::Utf8,
            true,
        ));
    }
    let tail = |arrays: &mut Vec<ArrayRef>, n: usize, op: &str| {
        if let Some(v) = version {
            arrays.push(Arc::new(arrow_array::Int64Array::from(vec![v; n])) as ArrayRef);
        }
        if with_op {
            arrays.push(Arc::new(StringArray::from(vec![op; n])) as ArrayRef);
        }
    };
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut out = RepairBatches {
        schema: schema.clone(),
        batches: vec![],
        upserted: 0,
        deleted: 0,
    };

    let mut req = runner::read_request(s, None);
    if s.mode != Mode::Watermark {
        req.delta = Delta::Full;
    }
    let idle = attempt::idle_timeout();
    let mut extract = attempt::bounded("reading the source", idle, source.read(&req)).await?;
    let visible: Vec<usize> = indexes_of(&extract.schema, &columns)?;
    let skip_null = s.on_null_cursor == NullCursorPolicy::Skip;
    while let Some(b) = attempt::bounded("reading the source", idle, async {
        Ok(extract.batches.next().await)
    })
    .await?
    {
        let b = b?;
        let due: Vec<bool> = match (s.mode, position) {
            (Mode::Watermark, Position::Watermark(w)) => crate::boundary::delivered(&b, w)?
                .into_iter()
                .map(|d| d.unwrap_or(!skip_null))
                .collect(),
            _ => vec![true; b.num_rows()],
        };
        let cols: Vec<ArrayRef> = visible.iter().map(|i| b.column(*i).clone()).collect();
        let keep: Vec<bool> = (0..b.num_rows())
            .map(|row| due[row] && upsert.is_none_or(|u| u.contains(&key_text(&cols, &key, row))))
            .collect();
        let n = keep.iter().filter(|k| **k).count();
        if n == 0 {
            continue;
        }
        let mask = arrow_array::BooleanArray::from(keep);
        let mut arrays = Vec::new();
        for c in &cols {
            arrays.push(
                arrow_select::filter::filter(c.as_ref(), &mask)
                    .map_err(|e| Error::source("engine", e))?,
            );
        }
        tail(&mut arrays, n, "U");
        out.batches.push(
            RecordBatch::try_new(schema.clone(), arrays).map_err(|e| Error::source("engine", e))?,
        );
        out.upserted += n as u64;
    }

    if let (false, None) = (delete.is_empty(), into) {
        // A file target: the extra keys' values as the replayed outputs
        // hold them (any key, text or composite), the other columns NULL.
        let types: Vec<DataType> = visible_schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let mut seen = HashSet::new();
        let mut found: Vec<RecordBatch> = Vec::new();
        let mut failed = None;
        let mut scratch = StreamVerify::default();
        replay_outputs(plan, state, s, &columns, &types, &mut scratch, |event| {
            let Replayed::Rows(cols, op) = event else {
                return;
            };
            let keep: Vec<bool> = (0..cols.first().map_or(0, |c| c.len()))
                .map(|row| {
                    let k = key_text(cols, &key, row);
                    !deleted(op, row) && delete.contains(&k) && seen.insert(k)
                })
                .collect();
            let n = keep.iter().filter(|k| **k).count();
            if n == 0 {
                return;
            }
            let mask = arrow_array::BooleanArray::from(keep);
            let mut arrays = Vec::new();
            for (i, f) in visible_schema.fields().iter().enumerate() {
                match key.contains(&i) {
                    true => match arrow_select::filter::filter(cols[i].as_ref(), &mask) {
                        Ok(a) => arrays.push(a),
                        Err(e) => failed = Some(Error::source("engine", e)),
                    },
                    false => arrays.push(arrow_array::new_null_array(f.data_type(), n)),
                }
            }
            tail(&mut arrays, n, "D");
            match RecordBatch::try_new(schema.clone(), arrays) {
                Ok(b) => found.push(b),
                Err(e) => failed = Some(Error::source("engine", e)),
            }
        })
        .await?;
        if let Some(e) = failed {
            return Err(e);
        }
        out.deleted += found.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        out.batches.extend(found);
    }
    if let (false, Some(into)) = (delete.is_empty(), into) {
        // The extra keys, read back from the target and cast to the
        // source's key types; the other columns NULL.
        let conn = &plan.connections[&s.to];
        let tsource = highwater_connectors::source(&conn.kind, conn.url.expose()).await?;
        let relation = Relation::table(into);
        let tinfo =
            attempt::bounded("describing the target", idle, tsource.describe(&relation)).await?;
        let tnames: Vec<String> = tinfo
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let tkey: Vec<usize> = key
            .iter()
            .map(|k| {
                let c = &columns[*k];
                tnames
                    .iter()
                    .position(|n| n == c)
                    .or_else(|| tnames.iter().position(|n| n.eq_ignore_ascii_case(c)))
                    .ok_or_else(|| {
                        Error::config(format!("target table {into}"), format!("has no column {c}"))
                    })
            })
            .collect::<Result<_>>()?;
        let req = whole_read(s, relation);
        let mut extract = attempt::bounded("reading the target", idle, tsource.read(&req)).await?;
        let mut seen = HashSet::new();
        while let Some(b) = attempt::bounded("reading the target", idle, async {
            Ok(extract.batches.next().await)
        })
        .await?
        {
            let b = b?;
            let kcols: Vec<ArrayRef> = tkey
                .iter()
                .zip(&key)
                .map(|(i, k)| align(b.column(*i), visible_schema.field(*k).data_type()))
                .collect();
            let all: Vec<usize> = (0..kcols.len()).collect();
            let keep: Vec<bool> = (0..b.num_rows())
                .map(|row| {
                    let k = key_text(&kcols, &all, row);
                    delete.contains(&k) && seen.insert(k)
                })
                .collect();
            let n = keep.iter().filter(|k| **k).count();
            if n == 0 {
                continue;
            }
            let mask = arrow_array::BooleanArray::from(keep);
            let mut arrays = Vec::new();
            for (i, f) in visible_schema.fields().iter().enumerate() {
                match key.iter().position(|k| *k == i) {
                    Some(j) => {
                        let filtered = arrow_select::filter::filter(kcols[j].as_ref(), &mask)
                            .map_err(|e| Error::source("engine", e))?;
                        arrays.push(
                            arrow_cast::cast(&filtered, f.data_type())
                                .map_err(|e| Error::source("engine", e))?,
                        );
                    }
                    None => arrays.push(arrow_array::new_null_array(f.data_type(), n)),
                }
            }
            tail(&mut arrays, n, "D");
            out.batches.push(
                RecordBatch::try_new(schema.clone(), arrays)
                    .map_err(|e| Error::source("engine", e))?,
            );
            out.deleted += n as u64;
        }
    }
    Ok(out)
}

struct RepairRows {
    batches: std::vec::IntoIter<RecordBatch>,
    position: Option<Position>,
}

#[async_trait::async_trait]
impl Rows for RepairRows {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        Ok(self.batches.next())
    }

    /// A repair does not move the position.
    fn position(&mut self) -> Position {
        self.position.take().unwrap_or(Position::Full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_by_value() {
        assert_eq!(number_text("1250", 2), "12.5");
        assert_eq!(number_text("-1200", 2), "-12");
        assert_eq!(number_text("5", 3), "0.005");
        assert_eq!(number_text("-5", 3), "-0.005");
        assert_eq!(number_text("0", 2), "0");
        assert_eq!(number_text("12", -2), "1200");
        let mut s = String::new();
        write_float(&mut s, 0.1f32 as f64);
        assert_eq!(s, "0.1");
        s.clear();
        write_float(&mut s, 3.0);
        assert_eq!(s, "3");
    }
}
