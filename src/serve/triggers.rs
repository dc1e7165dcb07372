//! The factory's triggers under `serve` (see
//! `highwater_engine::pipeline::trigger` for what they mean).
//!
//! ```text
//! tumbling trigger: windows due (end + delay ≤ now), oldest first, not yet
//!   succeeded, retries left, self-dependency met, the windows of the
//!   triggers it depends on succeeded (their markers) → at most
//!   maxConcurrency at once → fire (lock window key, check marker, run,
//!   mark) → next due
//! schedule trigger: next firing in its zone → sleep → fire (no backfill)
//! ```
//!
//! A window waiting on another trigger's windows is checked again when a
//! window of this process succeeds (a `watch` channel shared by the
//! trigger tasks) and every [`RECHECK`] (a window another worker ran, or a
//! `windows rerun`): no polling while nothing waits.
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

/// How often windows that wait on other triggers' windows look at the
/// state store again for success markers this process did not write.
const RECHECK: Duration = Duration::from_secs(5);

/// Start one task per started trigger; they stop when `stop` turns true,
/// after the runs they started have ended.
pub fn start(
    root: PathBuf,
    plan: Plan,
    state: Arc<dyn StateStore>,
    triggers: Vec<Trigger>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (succeeded, _) = watch::channel(0u64);
    let ctx = Arc::new(Ctx {
        root,
        plan,
        state,
        triggers: triggers.clone(),
        succeeded,
    });
    for t in &triggers {
        let Some(tw) = windows::tumbling(t) else {
            continue;
        };
        for name in windows::referenced(tw) {
            if t.started && triggers.iter().any(|o| o.name == name && !o.started) {
                println!(
                    "trigger {}: depends on trigger {name}, whose runtimeState is not Started: its windows wait until {name}'s windows succeed elsewhere",
                    t.name
                );
            }
        }
    }
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
                    let l = Loop {
                        state: ctx.state.clone(),
                        name: t.name.clone(),
                        triggers: ctx.triggers.clone(),
                        succeeded: ctx.succeeded.clone(),
                    };
                    let rt = tokio::runtime::Handle::current();
                    // The pipeline interpreter's futures are not `Send`:
                    // each firing runs on a blocking thread of its own.
                    let fire: Fire =
                        Arc::new(move |w: Window| rt.block_on(fire(&ctx, &t, Some(w), w.end)));
                    tokio::spawn(tumbling(l, tw, fire, stop))
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
    /// Every trigger of the factory (the ones dependencies name).
    triggers: Vec<Trigger>,
    /// Counts the windows this process ran to success: wakes the windows
    /// that wait on them.
    succeeded: watch::Sender<u64>,
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

/// What the window loop of one tumbling schedule — a factory's trigger or
/// a stream's `window:` — works with.
pub struct Loop {
    pub state: Arc<dyn StateStore>,
    pub name: String,
    /// The factory's triggers (the ones dependencies name; none for a
    /// stream).
    pub triggers: Vec<Trigger>,
    /// Counts the windows this process ran to success: wakes the windows
    /// that wait on them.
    pub succeeded: watch::Sender<u64>,
}

/// The windows of one tumbling schedule, each run by `fire`.
pub async fn tumbling(l: Loop, tw: Tumbling, fire: Fire, mut stop: watch::Receiver<bool>) {
    let mut done: HashSet<DateTime<Utc>> = HashSet::new();
    let mut attempts: HashMap<DateTime<Utc>, u32> = HashMap::new();
    match windows::statuses(l.state.as_ref(), &l.name, &tw, Utc::now(), &l.triggers).await {
        Ok(list) => {
            if let Err(e) = windows::mark_succeeded(l.state.as_ref(), &list).await {
                crate::cli::output::error(&format!("trigger {}: {e}", l.name));
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
                    l.name,
                    behind.len(),
                    iso(first.start),
                    tw.max_concurrency
                );
            }
        }
        Err(e) => crate::cli::output::error(&format!("trigger {}: {e}", l.name)),
    }
    println!(
        "trigger {}: tumbling windows of {} {:?} from {}",
        l.name,
        tw.interval,
        tw.frequency,
        iso(tw.start)
    );
    let mut running: JoinSet<(Window, Fired)> = JoinSet::new();
    let mut in_flight: HashSet<DateTime<Utc>> = HashSet::new();
    let mut not_before: HashMap<DateTime<Utc>, DateTime<Utc>> = HashMap::new();
    let mut others_succeeded = l.succeeded.subscribe();
    let referenced = windows::referenced(&tw);
    // Windows said to wait, so that each is said once.
    let mut told: HashSet<DateTime<Utc>> = HashSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let now = Utc::now();
        let due = tw.due(now, usize::MAX);
        // The referenced triggers' markers, read once a pass, when a
        // window needs them.
        let mut markers: Option<windows::Succeeded> = None;
        let mut waiting = false;
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
            if !referenced.is_empty() {
                if markers.is_none() {
                    match windows::succeeded(l.state.as_ref(), &referenced).await {
                        Ok(m) => markers = Some(m),
                        Err(e) => {
                            crate::cli::output::error(&format!("trigger {}: {e}", l.name));
                            waiting = true;
                            break;
                        }
                    }
                }
                let on = markers
                    .as_ref()
                    .map(|m| windows::waiting_for(&tw, *w, &l.triggers, m))
                    .unwrap_or_default();
                if !on.is_empty() {
                    waiting = true;
                    if told.insert(w.start) {
                        println!(
                            "trigger {} window {} → {}: waiting for {}",
                            l.name,
                            iso(w.start),
                            iso(w.end),
                            on.join(", ")
                        );
                    }
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
            waiting.then(|| now + chrono::Duration::from_std(RECHECK).unwrap_or_default()),
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
                        println!("trigger {} window {} → {}: run {id} succeeded", l.name, iso(w.start), iso(w.end));
                        done.insert(w.start);
                        l.succeeded.send_modify(|n| *n += 1);
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
                                l.name, iso(w.start), iso(w.end), *n, l.name, iso(w.start));
                        } else {
                            println!("trigger {} window {} → {}: run {id} failed; retrying in {}s",
                                l.name, iso(w.start), iso(w.end), tw.retry_interval.as_secs());
                            let wait = chrono::Duration::from_std(tw.retry_interval).unwrap_or_default();
                            not_before.insert(w.start, Utc::now() + wait);
                        }
                    }
                }
            }
            Ok(()) = others_succeeded.changed(), if waiting => {}
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
