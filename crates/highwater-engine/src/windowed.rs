//! Tumbling windows of a declarative stream (`window:`): each window
//! `[start, end)` copies the rows whose cursor lies in it, once, as a run
//! of its own under the window's state key `window/<stream>/<start>`
//! (its lock, its attempts, and its position, which says it is done).
//!
//! ```text
//! due windows (end + delay ≤ now), oldest first, not yet copied
//!   → lock window/<stream>/<start> → position there? done : read the
//!     window (Delta::Window) → write → commit the attempt (moves the
//!     window's position) → the run record says which window
//! ```
//!
//! The same [`Tumbling`] as a factory's TumblingWindowTrigger: `serve`,
//! `highwater windows` and `windows rerun` treat both alike.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use highwater_config::{Plan, StreamPlan, WindowPlan};
use highwater_core::{Result, RunStatus, StateStore};
use serde_json::json;

use crate::events::Observer;
use crate::pipeline::trigger::{Frequency, Tumbling, Window};
use crate::pipeline::windows::{self, Fired, WindowStatus, window_key};
use crate::runner::{RunOptions, RunOutcome, run_streams};

/// The windows of a stream's `window:`.
pub fn tumbling(w: &WindowPlan) -> Tumbling {
    Tumbling {
        frequency: Frequency::Minute,
        interval: u32::try_from(w.size_secs / 60).unwrap_or(u32::MAX),
        start: w.start,
        end: w.end,
        delay: std::time::Duration::from_secs(w.delay_secs.max(0) as u64),
        max_concurrency: w.max_concurrency,
        retry_count: w.retry_count,
        retry_interval: std::time::Duration::from_secs(w.retry_interval_secs.max(0) as u64),
        self_dependency: None,
        depends_on: vec![],
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Copy one window of `stream` (a run of its own). `rerun` copies it
/// again although it was copied before.
pub async fn fire(
    plan: &Plan,
    state: Arc<dyn StateStore>,
    stream: &str,
    w: Window,
    rerun: bool,
    observer: Arc<dyn Observer>,
) -> Result<(Fired, Option<RunOutcome>)> {
    // Looked at first, so a window another worker runs (or ran) leaves no
    // run record here; the run checks again under the lock.
    let key = window_key(stream, w.start);
    {
        let Some(_lock) = state.lock_stream(&key).await? else {
            return Ok((Fired::Busy, None));
        };
        if !rerun && state.position(&key).await?.is_some() {
            return Ok((Fired::AlreadyDone, None));
        }
    }
    let opts = RunOptions {
        streams: vec![stream.to_string()],
        info: Some(json!({
            "trigger": stream,
            "stream": stream,
            "windowStart": iso(w.start),
            "windowEnd": iso(w.end),
        })),
        window: Some((w.start, w.end)),
        rerun_window: rerun,
        ..RunOptions::default()
    };
    let outcome = run_streams(plan, state.clone(), &opts, observer).await?;
    let fired = match outcome.streams.first().map(|s| s.status) {
        Some(RunStatus::Skipped) if state.position(&key).await?.is_some() => Fired::AlreadyDone,
        Some(RunStatus::Skipped) => Fired::Busy,
        _ => Fired::Ran(outcome.run_id.clone(), outcome.status),
    };
    Ok((fired, Some(outcome)))
}

/// The windows of `s` due now, with what each has come to.
pub async fn statuses(state: &dyn StateStore, s: &StreamPlan) -> Result<Vec<WindowStatus>> {
    match &s.window {
        Some(w) => windows::statuses(state, &s.name, &tumbling(w), Utc::now(), &[]).await,
        None => Ok(vec![]),
    }
}

/// The due windows of `s` a run copies: not copied yet, retries left.
pub async fn to_copy(state: &dyn StateStore, s: &StreamPlan) -> Result<Vec<WindowStatus>> {
    let mut l = statuses(state, s).await?;
    l.retain(|w| matches!(w.status.as_str(), "pending" | "retrying"));
    Ok(l)
}

/// `highwater run` of a windowed stream: every due window not yet copied
/// (nor failed past its retries), oldest first, one after another.
pub async fn run_due(
    plan: &Plan,
    state: Arc<dyn StateStore>,
    s: &StreamPlan,
    observer: Arc<dyn Observer>,
) -> Result<Vec<RunOutcome>> {
    let mut out = Vec::new();
    for ws in to_copy(state.as_ref(), s).await? {
        let w = Window {
            start: ws.start,
            end: ws.end,
        };
        let (_, outcome) = fire(plan, state.clone(), &s.name, w, false, observer.clone()).await?;
        out.extend(outcome);
    }
    Ok(out)
}
