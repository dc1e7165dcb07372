//! `share_partitions:` — one full load read by several processes.
//!
//! ```text
//! coordinator (`highwater run`, holds the stream's lock)   helpers (`highwater serve`, same config, same state)
//!   export a snapshot; cut the integer key into ranges
//!   begin_attempt(stream)            write-ahead, as for any copy
//!   begin_attempt(parts/<stream>)    the plan: snapshot, ranges ──► poll open_attempts(parts/<stream>)
//!   claim part i: lock part/<stream>/<i>                           claim part i: lock part/<stream>/<i>
//!     read range i in the snapshot, stage it + its .done record      (the same)
//!   wait until every part is staged (a dead helper's lock is released: the part is claimed again)
//!   abandon parts/<stream>; end the snapshot
//!   commit_parts: ONE marker lists every part, then publish         (the same recovery as any split write)
//!   commit_attempt(stream)
//! ```
//!
//! Every part is read in the one exported snapshot, so parts written by
//! different processes, or written twice (a helper stopped after staging
//! and another claimed the part again), hold the same rows: the published
//! files are the table as of one instant, each row once. Nothing is visible
//! before the one marker; a coordinator that dies leaves an open attempt
//! that its next run settles (no marker: the staged parts are removed) and
//! a snapshot that no helper can import any more.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use highwater_config::{Plan, StreamPlan, Target};
use highwater_core::{
    Attempt, Delta, Error, PartRange, Result, Sink, Source, StateStore, WriteRequest, failpoint,
};
use serde::{Deserialize, Serialize};

use crate::attempt::{self, bounded};

/// The state key of a stream's open plan.
pub fn plan_key(stream: &str) -> String {
    format!("parts/{stream}")
}

/// The state key (the lock) of one part.
fn part_key(stream: &str, index: usize) -> String {
    format!("part/{stream}/{index}")
}

/// What a helper needs to read and stage the parts of one attempt; kept as
/// the `target` of the plan's attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartPlan {
    /// The stream (its state key).
    pub stream: String,
    /// The coordinator's attempt id: the staged parts are named after it.
    pub run_id: String,
    /// The rendered output path; part `i` is published as
    /// [`highwater_core::part_file_name`]`(target, i)`.
    pub target: String,
    pub format: String,
    pub overwrite: bool,
    pub snapshot: String,
    pub key: String,
    pub ranges: Vec<(i64, i64)>,
    /// The source and target connections (passwords masked): a process
    /// whose config names other ones does not help.
    pub source: String,
    pub sink: String,
}

impl PartPlan {
    fn range(&self, index: usize) -> PartRange {
        let (lo, hi) = self.ranges[index];
        PartRange {
            snapshot: self.snapshot.clone(),
            key: self.key.clone(),
            lo,
            hi,
            nulls: index == 0,
        }
    }
}

/// How many parts this process reads at once: `HIGHWATER_PARTS_LOCAL`
/// (0: a coordinator only coordinates), else one per core (each part in
/// flight holds its own batches and encoder, so memory grows with this
/// number, not with the number of parts).
pub fn local_parallelism(parts: usize) -> usize {
    std::env::var("HIGHWATER_PARTS_LOCAL")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|p| p.get())
                .unwrap_or(1)
                .min(parts)
        })
}

/// Where parts are read from and staged to.
#[derive(Clone, Copy)]
pub struct PartEnv<'a> {
    pub state: &'a dyn StateStore,
    pub source: &'a dyn Source,
    pub sink: &'a dyn Sink,
    pub stream: &'a StreamPlan,
}

/// The rows of the parts of `plan` staged so far, and the parts not yet
/// staged.
async fn unstaged(env: PartEnv<'_>, plan: &PartPlan) -> Result<(u64, Vec<usize>)> {
    let (mut rows, mut waiting) = (0, Vec::new());
    for i in 0..plan.ranges.len() {
        match part_written(env, plan, i).await? {
            Some(r) => rows += r,
            None => waiting.push(i),
        }
    }
    Ok((rows, waiting))
}

async fn part_written(env: PartEnv<'_>, plan: &PartPlan, index: usize) -> Result<Option<u64>> {
    let written = env.sink.part_written(&plan.stream, &plan.run_id, index);
    bounded(
        "asking the target about a part",
        attempt::idle_timeout(),
        written,
    )
    .await
}

/// Claim and stage those of `parts` (not staged when last asked) that no
/// other process holds, at most `parallel` at once. Returns the parts
/// staged here with their rows. The first failure ends the pass (its
/// part's lock is released, so it is claimed again).
pub async fn claim_parts(
    env: PartEnv<'_>,
    plan: &PartPlan,
    parts: &[usize],
    parallel: usize,
) -> Result<Vec<(usize, u64)>> {
    if parallel == 0 {
        return Ok(vec![]);
    }
    let staged: Vec<Option<(usize, u64)>> = futures::stream::iter(parts.iter().copied())
        .map(|i| claim_one(env, plan, i))
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    Ok(staged.into_iter().flatten().collect())
}

async fn claim_one(
    env: PartEnv<'_>,
    plan: &PartPlan,
    index: usize,
) -> Result<Option<(usize, u64)>> {
    let Some(_lock) = env
        .state
        .lock_stream(&part_key(&plan.stream, index))
        .await?
    else {
        return Ok(None);
    };
    // Staged meanwhile by the process that held the lock before.
    if part_written(env, plan, index).await?.is_some() {
        return Ok(None);
    }
    let rows = stage_part(env, plan, index).await?;
    Ok(Some((index, rows)))
}

/// Read range `index` in the plan's snapshot and stage it.
async fn stage_part(env: PartEnv<'_>, plan: &PartPlan, index: usize) -> Result<u64> {
    let idle = attempt::idle_timeout();
    let mut req = crate::runner::read_request(env.stream, None);
    req.delta = Delta::Part(plan.range(index));
    req.partitions = 1;
    let extract = bounded("reading the source", idle, env.source.read(&req)).await?;
    let request = WriteRequest {
        stream: plan.stream.clone(),
        run_id: plan.run_id.clone(),
        target: plan.target.clone(),
        format: plan.format.clone(),
        schema: extract.schema.clone(),
        overwrite: plan.overwrite,
        table: None,
        split: None,
    };
    let mut writer = bounded(
        "opening the target",
        idle,
        env.sink.begin_part(request, index),
    )
    .await?;
    let mut batches = extract.batches;
    let wrote: Result<()> = async {
        let mut n = 0u32;
        loop {
            let next = async { batches.next().await.transpose() };
            let Some(b) = bounded("reading the source", idle, next).await? else {
                break;
            };
            bounded("writing to the target", idle, writer.write(b)).await?;
            n += 1;
            if n == 2 {
                failpoint("parts.mid_part");
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = wrote {
        let _ = writer.abort().await;
        return Err(e.context(format!("part {index} of stream {}", plan.stream)));
    }
    let committed = bounded(
        "staging a part",
        attempt::commit_timeout(),
        writer.commit(""),
    )
    .await?;
    failpoint("parts.after_part");
    Ok(committed.rows)
}

/// What the coordinator of a shared load needs besides the parts.
pub struct Coordinate<'a> {
    pub env: PartEnv<'a>,
    pub plan: PartPlan,
    /// Keeps the exported snapshot alive until every part is staged.
    pub hold: Box<dyn std::any::Any + Send>,
    /// Called with the rows staged so far (here and by helpers).
    pub progress: &'a (dyn Fn(u64) + Sync),
}

/// The coordinator's staging: publish the plan, stage parts here while
/// helpers stage others, and return once every part is staged (parts,
/// rows). Fails when a part of its own fails, or when parts stay claimed
/// by other processes without progress for the idle timeout.
pub async fn coordinate(c: Coordinate<'_>) -> Result<(usize, u64)> {
    let Coordinate {
        env,
        plan,
        hold,
        progress,
    } = c;
    let key = plan_key(&plan.stream);
    let Some(_plan_lock) = env.state.lock_stream(&key).await? else {
        return Err(Error::state(format!(
            "another process coordinates a shared load of {} (it holds {key})",
            plan.stream
        )));
    };
    for old in env.state.open_attempts(&key).await? {
        env.state
            .abandon_attempt(&old, "its run stopped before every part was staged")
            .await?;
    }
    let target = serde_json::to_string(&plan).map_err(|e| Error::state(e.to_string()))?;
    let a = Attempt {
        stream: key.clone(),
        run_id: plan.run_id.clone(),
        from: None,
        target,
        started_at: chrono::Utc::now(),
    };
    env.state.begin_attempt(&a).await?;
    let result = stage_all(env, &plan, progress).await;
    // The plan closes either way: its workers stop looking at it. (The
    // error itself goes to the run record, where secrets are redacted.)
    let why = match &result {
        Ok(_) => "every part was staged",
        Err(_) => "the coordination failed (see the stream's run)",
    };
    env.state.abandon_attempt(&a, why).await?;
    drop(hold);
    result
}

async fn stage_all(
    env: PartEnv<'_>,
    plan: &PartPlan,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(usize, u64)> {
    let n = plan.ranges.len();
    let idle = attempt::idle_timeout();
    let local = local_parallelism(n);
    let mut missing = n;
    let mut last_progress = Instant::now();
    let mut pause = Duration::from_millis(200);
    loop {
        let (rows, waiting) = unstaged(env, plan).await?;
        progress(rows);
        if waiting.is_empty() {
            return Ok((n, rows));
        }
        if waiting.len() < missing {
            missing = waiting.len();
            last_progress = Instant::now();
            pause = Duration::from_millis(200);
        } else if last_progress.elapsed() > idle {
            return Err(Error::data(format!(
                "parts {waiting:?} of stream {} were not staged for {} s: the processes holding them \
                 stopped answering (HIGHWATER_IDLE_TIMEOUT)",
                plan.stream,
                idle.as_secs()
            ))
            .with_cause(highwater_core::Cause::Timeout));
        }
        if claim_parts(env, plan, &waiting, local).await?.is_empty() {
            // Parts held elsewhere: ask less often the longer they take
            // (each claim is a session of the state store).
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// A helper's pass over one stream (`highwater serve`): stage what it can
/// of every open plan of the stream. Plans it failed on before (`failed`:
/// their run ids) are left to others. Returns one line per part staged or
/// plan given up.
pub async fn help(
    plan: &Plan,
    state: &dyn StateStore,
    stream: &StreamPlan,
    failed: &mut HashSet<String>,
) -> Result<Vec<String>> {
    let open = state.open_attempts(&plan_key(&stream.name)).await?;
    if open.is_empty() {
        return Ok(vec![]);
    }
    let from = &plan.connections[&stream.from];
    let to = &plan.connections[&stream.to];
    let (source_id, sink_id) = (from.url.redacted(), to.url.redacted());
    let mut lines = Vec::new();
    for a in open {
        if failed.contains(&a.run_id) {
            continue;
        }
        let Ok(p) = serde_json::from_str::<PartPlan>(&a.target) else {
            failed.insert(a.run_id.clone());
            continue;
        };
        if p.source != source_id
            || p.sink != sink_id
            || !matches!(stream.target, Target::File { .. })
        {
            failed.insert(a.run_id.clone());
            lines.push(format!(
                "not helping stream {} (run {}): its connections differ from this config's",
                stream.name, p.run_id
            ));
            continue;
        }
        let source = highwater_connectors::source(&from.kind, from.url.expose()).await?;
        let sink = highwater_connectors::sink(&to.kind, to.url.expose()).await?;
        let env = PartEnv {
            state,
            source: source.as_ref(),
            sink: sink.as_ref(),
            stream,
        };
        let claimed = match unstaged(env, &p).await {
            Ok((_, waiting)) => {
                claim_parts(env, &p, &waiting, local_parallelism(p.ranges.len())).await
            }
            Err(e) => Err(e),
        };
        match claimed {
            Ok(staged) => {
                for (i, rows) in staged {
                    lines.push(format!(
                        "staged part {i} of stream {} (run {}): {rows} rows",
                        stream.name, p.run_id
                    ));
                }
            }
            Err(e) => {
                failed.insert(a.run_id.clone());
                lines.push(plan.secrets.redact(&format!(
                    "gave up on stream {} (run {}): {e}; its coordinator reads the part itself",
                    stream.name, p.run_id
                )));
            }
        }
    }
    Ok(lines)
}
