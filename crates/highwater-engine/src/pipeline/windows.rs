//! Running a factory's triggers: one firing is one pipeline run with the
//! trigger's parameters; a tumbling window's run is recorded so that each
//! window runs to success once, across restarts and workers.
//!
//! A window is **succeeded** when a run of its trigger for it succeeded
//! (the run record, `info.trigger` + `info.windowStart`) — and then a
//! marker position `window/<trigger>/<start>` is written, so later checks
//! need no history scan. A window runs only under the state lock of that
//! key, and the marker is checked again under it: two `serve` workers on
//! one state store never run the same window twice.
//!
//! The markers are also what a dependent trigger waits for: a window of a
//! trigger with a `TumblingWindowTriggerDependencyReference` is ready when
//! the markers of every overlapping window of the referenced trigger are
//! there ([`waiting_for`]); until then its status is `waiting`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use highwater_config::Plan;
use highwater_core::{Attempt, Error, Position, Result, RunRecord, RunStatus, StateStore};
use serde_json::Value;

use super::trigger::{self, Trigger, TriggerKind, Tumbling, Window};
use super::{Factory, Start, run_pipeline_with};

/// How many runs of history are read to find earlier window runs.
pub const HISTORY: usize = 5000;

/// What one window has come to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowStatus {
    pub trigger: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `pending`, `waiting` (not run yet: a window it depends on has not
    /// succeeded), `running`, `succeeded`, `failed` (retries used up) or
    /// `retrying` (failed, retries left).
    pub status: String,
    pub attempts: u32,
    pub last_run_id: Option<String>,
    /// What a `waiting` window waits for: `TRIGGER@START` per window of a
    /// trigger it depends on (itself, for a self-dependency) that has not
    /// succeeded, or `TRIGGER after its endTime`.
    pub waiting_for: Vec<String>,
}

/// The windows that succeeded (their markers), by trigger.
pub type Succeeded = HashMap<String, HashSet<DateTime<Utc>>>;

/// The markers of the windows of `triggers` that succeeded.
pub async fn succeeded(state: &dyn StateStore, triggers: &[&str]) -> Result<Succeeded> {
    let mut out: Succeeded = triggers
        .iter()
        .map(|t| (t.to_string(), HashSet::new()))
        .collect();
    for (key, ..) in state.positions().await? {
        for (name, set) in out.iter_mut() {
            if let Some(start) = key
                .strip_prefix("window/")
                .and_then(|k| k.strip_prefix(name.as_str()))
                .and_then(|k| k.strip_prefix('/'))
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            {
                set.insert(start.with_timezone(&Utc));
            }
        }
    }
    Ok(out)
}

/// The triggers whose windows `t`'s windows wait for (not itself).
pub fn referenced(t: &Tumbling) -> Vec<&str> {
    let mut names: Vec<&str> = t.depends_on.iter().map(|d| d.trigger.as_str()).collect();
    names.sort();
    names.dedup();
    names
}

/// What window `w` of a trigger with `t`'s dependencies on other triggers
/// waits for, given the windows that `succeeded` (which holds every
/// [`referenced`] trigger): `TRIGGER@START` for each overlapping window of
/// a referenced trigger without a success marker, `TRIGGER after its
/// endTime` when the range reaches past its last window. Empty: ready.
pub fn waiting_for(
    t: &Tumbling,
    w: Window,
    triggers: &[Trigger],
    succeeded: &Succeeded,
) -> Vec<String> {
    let mut out = Vec::new();
    for d in &t.depends_on {
        // `trigger::load` checked that it names a tumbling window trigger.
        let Some(other) = triggers
            .iter()
            .find(|o| o.name == d.trigger)
            .and_then(tumbling)
        else {
            continue;
        };
        let (from, to) = d.range(w);
        let done = succeeded.get(&d.trigger);
        match other.overlapping(from, to) {
            Some(list) => out.extend(
                list.into_iter()
                    .filter(|o| !done.is_some_and(|s| s.contains(&o.start)))
                    .map(|o| format!("{}@{}", d.trigger, iso(o.start))),
            ),
            None => out.push(format!("{} after its endTime", d.trigger)),
        }
    }
    out.dedup();
    out
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The marker key of a window.
pub fn window_key(trigger: &str, start: DateTime<Utc>) -> String {
    format!("window/{trigger}/{}", iso(start))
}

/// Claim a firing at `at` of `key` (`tick/<stream>` for a stream's
/// `schedule:`, `schedule/<trigger>` for a schedule trigger): true for the
/// first worker to ask, false for every other. The key's position is the
/// last firing claimed (its Unix time), moved forward under the key's lock
/// with the state store's compare-and-set; one lock and one position per
/// stream or trigger, however many firings.
pub async fn claim(state: &dyn StateStore, key: &str, at: DateTime<Utc>) -> Result<bool> {
    let Some(_lock) = state.lock_stream(key).await? else {
        return Ok(false);
    };
    let from = state.position(key).await?;
    if let Some(Position::Version(v)) = &from
        && v.version >= at.timestamp()
    {
        return Ok(false);
    }
    let a = Attempt {
        stream: key.to_string(),
        run_id: uuid::Uuid::new_v4().to_string(),
        from,
        target: String::new(),
        started_at: Utc::now(),
    };
    state.begin_attempt(&a).await?;
    let to = Position::Version(highwater_core::ChangeVersion::new(
        at.timestamp(),
        "claimed firing",
    ));
    if let Err(e) = state.commit_attempt(&a, &to).await {
        let _ = state.abandon_attempt(&a, &e.to_string()).await;
        return Err(e);
    }
    Ok(true)
}

/// Earlier runs of `trigger` by window start: (attempts, succeeded, running, last run id).
type History = HashMap<DateTime<Utc>, (u32, bool, bool, Option<String>)>;

async fn history(state: &dyn StateStore, trigger: &str) -> Result<History> {
    let mut out: History = HashMap::new();
    // Newest first: the first run seen of a window is its last.
    for r in state.runs(HISTORY).await? {
        let Some(info) = &r.info else { continue };
        if info.get("trigger").and_then(Value::as_str) != Some(trigger) {
            continue;
        }
        let Some(start) = info
            .get("windowStart")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        else {
            continue;
        };
        let e = out.entry(start.with_timezone(&Utc)).or_insert((
            0,
            false,
            false,
            Some(r.run_id.clone()),
        ));
        // A run whose worker died is not an attempt that failed.
        e.0 += u32::from(!died(&r));
        // A stream window's run that found the window busy or done
        // (skipped) did not copy it (a pipeline's skipped activities are
        // another matter).
        let stream_skipped = info.get("stream").is_some()
            && r.streams.iter().any(|s| s.status == RunStatus::Skipped);
        e.1 |= r.status == RunStatus::Succeeded && !stream_skipped;
        e.2 |= r.status == RunStatus::InProgress;
    }
    Ok(out)
}

/// A failed run that no activity of its own failed: its process stopped
/// (killed, its host lost) before it ended.
fn died(r: &RunRecord) -> bool {
    r.status == RunStatus::Failed
        && !r.streams.iter().any(|s| {
            s.status == RunStatus::Failed && s.error.as_deref() != Some(highwater_state::DEAD_RUN)
        })
}

/// Every window of `t` due at `now`, with what it has come to;
/// `triggers` are the factory's (for dependencies on other triggers).
pub async fn statuses(
    state: &dyn StateStore,
    name: &str,
    t: &Tumbling,
    now: DateTime<Utc>,
    triggers: &[Trigger],
) -> Result<Vec<WindowStatus>> {
    let hist = history(state, name).await?;
    let mut names = referenced(t);
    names.push(name);
    let markers = succeeded(state, &names).await?;
    let done = &markers[name];
    let due = t.due(now, usize::MAX);
    let mut out: Vec<WindowStatus> = Vec::new();
    for (i, w) in due.iter().enumerate() {
        let (attempts, succeeded, running, last) = hist
            .get(&w.start)
            .cloned()
            .unwrap_or((0, false, false, None));
        let succeeded = succeeded || done.contains(&w.start);
        let mut waiting = Vec::new();
        if !succeeded && !running && attempts == 0 {
            if let Some(offset) = t.self_dependency {
                let dep = i as i64 + offset;
                if dep >= 0 && out[dep as usize].status != "succeeded" {
                    waiting.push(format!("{name}@{}", iso(due[dep as usize].start)));
                }
            }
            waiting.extend(waiting_for(t, *w, triggers, &markers));
        }
        let status = if succeeded {
            "succeeded"
        } else if running {
            "running"
        } else if !waiting.is_empty() {
            "waiting"
        } else if attempts == 0 {
            "pending"
        } else if attempts > t.retry_count {
            "failed"
        } else {
            "retrying"
        };
        out.push(WindowStatus {
            trigger: name.to_string(),
            start: w.start,
            end: w.end,
            status: status.to_string(),
            attempts,
            last_run_id: last,
            waiting_for: waiting,
        });
    }
    Ok(out)
}

/// Write the marker of a succeeded window (a position-only attempt).
async fn mark(state: &dyn StateStore, key: &str, run_id: &str) -> Result<()> {
    if state.position(key).await?.is_some() {
        return Ok(());
    }
    let a = Attempt {
        stream: key.to_string(),
        run_id: run_id.to_string(),
        from: None,
        target: String::new(),
        started_at: Utc::now(),
    };
    state.begin_attempt(&a).await?;
    if let Err(e) = state.commit_attempt(&a, &Position::Full).await {
        let _ = state.abandon_attempt(&a, &e.to_string()).await;
        return Err(e);
    }
    Ok(())
}

/// Record, as markers, the windows whose success only the history knows
/// (a worker stopped between the run's end and its marker).
pub async fn mark_succeeded(state: &dyn StateStore, list: &[WindowStatus]) -> Result<()> {
    for w in list.iter().filter(|w| w.status == "succeeded") {
        let key = window_key(&w.trigger, w.start);
        if let Some(id) = &w.last_run_id {
            mark(state, &key, id).await?;
        }
    }
    Ok(())
}

/// The last run of the window of `trigger` starting at `start`, when it
/// did not succeed. Called under the window's lock, which a worker holds
/// until its run of the window has ended: a run still `InProgress` is one
/// whose worker stopped (killed, or its host lost), and is recorded as
/// failed here.
async fn unfinished_run(
    state: &dyn StateStore,
    trigger: &str,
    start: DateTime<Utc>,
) -> Result<Option<RunRecord>> {
    let Some(id) = history(state, trigger)
        .await?
        .get(&start)
        .and_then(|h| h.3.clone())
    else {
        return Ok(None);
    };
    let Some(mut run) = state.run(&id).await? else {
        return Ok(None);
    };
    match run.status {
        RunStatus::Succeeded => Ok(None),
        RunStatus::InProgress => {
            highwater_state::record_dead_run(state, &run.run_id, &mut run.streams).await?;
            run.status = RunStatus::Failed;
            Ok(Some(run))
        }
        _ => Ok(Some(run)),
    }
}

/// What one firing did.
#[derive(Debug)]
pub enum Fired {
    /// The pipeline ran: its run id and status.
    Ran(String, RunStatus),
    /// The window already succeeded (another worker ran it).
    AlreadyDone,
    /// Another worker is running it now.
    Busy,
}

/// Run the trigger's pipeline(s) once: for `window` (tumbling) or at
/// `scheduled` (schedule). `force` reruns a window that succeeded.
pub async fn fire(
    root: &Path,
    plan: &Plan,
    state: Arc<dyn StateStore>,
    trigger: &Trigger,
    window: Option<Window>,
    scheduled: DateTime<Utc>,
    force: bool,
) -> Result<Fired> {
    // A window runs under its own lock (windows run at once, up to
    // maxConcurrency) and is marked when it succeeds; a schedule firing is
    // claimed first (one worker gets it) and then runs.
    let key = match window {
        Some(w) => window_key(&trigger.name, w.start),
        None => format!("schedule/{}", trigger.name),
    };
    let _lock = match window {
        Some(_) => {
            let Some(lock) = state.lock_stream(&key).await? else {
                return Ok(Fired::Busy);
            };
            if !force && state.position(&key).await?.is_some() {
                return Ok(Fired::AlreadyDone);
            }
            Some(lock)
        }
        None => {
            if !force && !claim(state.as_ref(), &key, scheduled).await? {
                return Ok(Fired::AlreadyDone);
            }
            None
        }
    };
    // A window that ran before and did not succeed continues from its last
    // run's failed activity: what that run published is not published again.
    let earlier = match window {
        Some(w) => unfinished_run(state.as_ref(), &trigger.name, w.start).await?,
        None => None,
    };
    let value = trigger::trigger_value(trigger, scheduled, window);
    let mut last = Fired::AlreadyDone;
    for (name, params) in &trigger.pipelines {
        let file = trigger::pipeline_file(root, name).ok_or_else(|| {
            Error::config(
                &trigger.file,
                format!(
                    "trigger {}: pipeline {name} is not in {}/pipeline/",
                    trigger.name,
                    root.display()
                ),
            )
        })?;
        let factory = Factory::load(&file)?;
        let names: Vec<&str> = plan.connections.keys().map(String::as_str).collect();
        factory.check_connections(&names, &plan.file)?;
        let values = trigger::evaluate_parameters(trigger, params, &value)?;
        let given: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        let parameters = super::parameters(&factory, &given)?;
        let start = Start {
            file: Some(
                std::fs::canonicalize(&file)
                    .unwrap_or(file.clone())
                    .display()
                    .to_string(),
            ),
            trigger: Some(value.clone()),
            rerun: earlier
                .as_ref()
                .filter(|r| {
                    r.info
                        .as_ref()
                        .and_then(|i| i.get("pipeline"))
                        .and_then(Value::as_str)
                        == Some(factory.name.as_str())
                })
                .map(|r| super::rerun::Rerun::of_run(r, true)),
            ..Start::default()
        };
        let outcome =
            run_pipeline_with(factory, plan.clone(), state.clone(), parameters, start).await?;
        if window.is_some() && outcome.status == RunStatus::Succeeded {
            mark(state.as_ref(), &key, &outcome.run_id).await?;
        }
        last = Fired::Ran(outcome.run_id, outcome.status);
    }
    Ok(last)
}

/// The tumbling part of a trigger, if it is one.
pub fn tumbling(t: &Trigger) -> Option<&Tumbling> {
    match &t.kind {
        TriggerKind::Tumbling(tw) => Some(tw),
        TriggerKind::Schedule(_) => None,
    }
}
