//! The factory's triggers under `serve` (see
//! `highwater_engine::pipeline::trigger` for what they mean).
//!
//! ```text
//! tumbling trigger: windows due (end + delay ≤ now), oldest first, not yet
//!   succeeded, retries left, self-dependency met → at most maxConcurrency
//!   at once → fire (lock window key, check marker, run, mark) → next due
//! schedule trigger: next firing in its zone → sleep → fire (no backfill)
//! ```
//!
//! A `serve` stopped for a day catches up on start, oldest window first,
//! bounded by `maxConcurrency`, and says so.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use highwater_config::Plan;
use highwater_core::{RunStatus, StateStore};
use highwater_engine::pipeline::trigger::{Trigger, TriggerKind, Tumbling, Window};
use highwater_engine::pipeline::windows::{self, Fired};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Start one task per started trigger; they stop when `stop` turns true,
/// after the runs they started have ended.
pub fn start(
    root: PathBuf,
    plan: Plan,
    state: Arc<dyn StateStore>,
    triggers: Vec<Trigger>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ctx = Arc::new(Ctx { root, plan, state });
    triggers
        .into_iter()
        .filter(|t| {
            if !t.started {
                println!(
                    "trigger {}: runtimeState is not Started; not running it",
                    t.name
                );
            }
            t.started
        })
        .map(|t| {
            let ctx = ctx.clone();
            let stop = stop.clone();
            match t.kind.clone() {
                TriggerKind::Tumbling(tw) => {
                    let state = ctx.state.clone();
                    let name = t.name.clone();
                    let rt = tokio::runtime::Handle::current();
                    // The pipeline interpreter's futures are not `Send`:
                    // each firing runs on a blocking thread of its own.
                    let fire: Fire =
                        Arc::new(move |w: Window| rt.block_on(fire(&ctx, &t, Some(w), w.end)));
                    tokio::spawn(tumbling(state, name, tw, fire, stop))
                }
                TriggerKind::Schedule(r) => tokio::spawn(schedule(ctx, t, r, stop)),
            }
        })
        .collect()
}

struct Ctx {
    root: PathBuf,
    plan: Plan,
    state: Arc<dyn StateStore>,
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn fire(ctx: &Ctx, t: &Trigger, w: Option<Window>, at: DateTime<Utc>) -> Fired {
    match windows::fire(&ctx.root, &ctx.plan, ctx.state.clone(), t, w, at, false).await {
        Ok(f) => f,
        Err(e) => {
            let what = w.map_or(String::new(), |w| format!(" window {}", iso(w.start)));
            crate::cli::output::error(&format!(
                "trigger {}{what}: {}",
                t.name,
                ctx.plan.secrets.redact(&e.to_string())
            ));
            Fired::Ran(String::new(), RunStatus::Failed)
        }
    }
}

/// Runs one window (on a blocking thread) and says what came of it.
pub type Fire = Arc<dyn Fn(Window) -> Fired + Send + Sync>;

/// The windows of one tumbling schedule — a factory's trigger or a
/// stream's `window:` — named `name`, each run by `fire`.
pub async fn tumbling(
    state: Arc<dyn StateStore>,
    name: String,
    tw: Tumbling,
    fire: Fire,
    mut stop: watch::Receiver<bool>,
) {
    let mut done: HashSet<DateTime<Utc>> = HashSet::new();
    let mut attempts: HashMap<DateTime<Utc>, u32> = HashMap::new();
    match windows::statuses(state.as_ref(), &name, &tw, Utc::now()).await {
        Ok(list) => {
            if let Err(e) = windows::mark_succeeded(state.as_ref(), &list).await {
                crate::cli::output::error(&format!("trigger {}: {e}", name));
            }
            for w in &list {
                match w.status.as_str() {
                    "succeeded" => {
                        done.insert(w.start);
                    }
                    // A run left `InProgress` by a killed worker is settled
                    // by the next run; count what failed.
                    _ => {
                        attempts.insert(
                            w.start,
                            w.attempts.saturating_sub(u32::from(w.status == "running")),
                        );
                    }
                }
            }
            let behind: Vec<_> = list
                .iter()
                .filter(|w| w.status != "succeeded" && w.status != "failed")
                .collect();
            if let Some(first) = behind.first() {
                println!(
                    "trigger {}: catching up {} window(s) since {} (at most {} at once)",
                    name,
                    behind.len(),
                    iso(first.start),
                    tw.max_concurrency
                );
            }
        }
        Err(e) => crate::cli::output::error(&format!("trigger {}: {e}", name)),
    }
    println!(
        "trigger {}: tumbling windows of {} {:?} from {}",
        name,
        tw.interval,
        tw.frequency,
        iso(tw.start)
    );
    let mut running: JoinSet<(Window, Fired)> = JoinSet::new();
    let mut in_flight: HashSet<DateTime<Utc>> = HashSet::new();
    let mut not_before: HashMap<DateTime<Utc>, DateTime<Utc>> = HashMap::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let now = Utc::now();
        let due = tw.due(now, usize::MAX);
        for (i, w) in due.iter().enumerate() {
            if running.len() >= tw.max_concurrency {
                break;
            }
            if done.contains(&w.start)
                || in_flight.contains(&w.start)
                || attempts.get(&w.start).copied().unwrap_or(0) > tw.retry_count
                || not_before.get(&w.start).is_some_and(|t| *t > now)
            {
                continue;
            }
            if let Some(offset) = tw.self_dependency {
                let dep = i as i64 + offset;
                if dep >= 0 && !done.contains(&due[dep as usize].start) {
                    continue;
                }
            }
            in_flight.insert(w.start);
            let (fire, w) = (fire.clone(), *w);
            running.spawn_blocking(move || (w, fire(w)));
        }
        let wake = [
            tw.next_due(now),
            not_before.values().filter(|t| **t > now).min().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|t| (t - now).to_std().unwrap_or_default())
        .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let Ok((w, fired)) = joined else { continue };
                in_flight.remove(&w.start);
                match fired {
                    Fired::Ran(id, RunStatus::Succeeded) => {
                        println!("trigger {} window {} → {}: run {id} succeeded", name, iso(w.start), iso(w.end));
                        done.insert(w.start);
                    }
                    Fired::AlreadyDone => {
                        done.insert(w.start);
                    }
                    Fired::Busy => {
                        not_before.insert(w.start, Utc::now() + chrono::Duration::seconds(5));
                    }
                    Fired::Ran(id, _) => {
                        let n = attempts.entry(w.start).or_insert(0);
                        *n += 1;
                        if *n > tw.retry_count {
                            println!("trigger {} window {} → {}: run {id} failed; no retries left ({} attempt(s)); `highwater windows rerun {} --from {}` runs it again",
                                name, iso(w.start), iso(w.end), *n, name, iso(w.start));
                        } else {
                            println!("trigger {} window {} → {}: run {id} failed; retrying in {}s",
                                name, iso(w.start), iso(w.end), tw.retry_interval.as_secs());
                            let wait = chrono::Duration::from_std(tw.retry_interval).unwrap_or_default();
                            not_before.insert(w.start, Utc::now() + wait);
                        }
                    }
                }
            }
            _ = tokio::time::sleep(wake) => {}
            _ = stop.changed() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

async fn schedule(
    ctx: Arc<Ctx>,
    t: Trigger,
    r: highwater_engine::pipeline::trigger::Recurrence,
    mut stop: watch::Receiver<bool>,
) {
    let mut running: JoinSet<()> = JoinSet::new();
    let mut after = Utc::now();
    loop {
        let Some(next) = r.next_after(after) else {
            println!("trigger {}: past its endTime; no more firings", t.name);
            break;
        };
        println!("trigger {}: next firing {}", t.name, iso(next));
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        after = next;
        let (ctx, t) = (ctx.clone(), t.clone());
        let rt = tokio::runtime::Handle::current();
        running.spawn_blocking(move || {
            rt.block_on(async {
                if let Fired::Ran(id, status) = fire(&ctx, &t, None, next).await {
                    println!(
                        "trigger {} at {}: run {id} {}",
                        t.name,
                        iso(next),
                        status.as_str()
                    );
                }
            })
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}
