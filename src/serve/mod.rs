//! `highwater serve`: runs streams on their `schedule:` and serves the
//! monitor (`/`, `/runs/ID`), its JSON API (`/api/…`, docs/serve.md),
//! `/metrics` (Prometheus text format) and `/healthz`.
//!
//! ```text
//! scheduler loop ── next firing per stream (croner) ── sleep ── trigger(stream)
//!        │                                                     (skipped while that stream still runs;
//!        │                                                      at most `concurrency` at once)
//!        └─ metrics (per stream: runs by status, rows, last success, duration)
//! axum: GET  /  /runs/ID  /metrics  /healthz  /api/runs  /api/runs/ID  /api/streams
//!       POST /api/streams/NAME/trigger  /api/runs/ID/rerun  /api/runs/ID/cancel
//!            └─ auth: a bearer token (HIGHWATER_TOKEN) when set, and always
//!               when the listener is not loopback-only
//! ```
//!
//! Each firing is an ordinary run with the commit protocol and its own run
//! record (its `info` says what triggered it), so `highwater runs` shows
//! scheduled runs too. Runs this process started can be cancelled: the
//! task is dropped as a crash would stop it (locks released, the open
//! attempt settled by the stream's next run) and the record says
//! "Cancelled". The factory's triggers run in [`triggers`]; their pipeline
//! runs show in the monitor but are not cancellable from it. Ctrl-C
//! (SIGINT) or SIGTERM stops scheduling and waits for running streams to
//! finish.

mod triggers;
mod web;
mod windows_view;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use croner::Cron;
use highwater_config::Plan;
use highwater_core::{RunStatus, StateStore};
use highwater_engine::{RunOptions, run_streams};
use tokio::sync::Semaphore;

use crate::cli::output;

/// What the metrics endpoint reports per stream.
#[derive(Debug, Clone, Default)]
pub struct StreamMetrics {
    pub succeeded: u64,
    pub failed: u64,
    pub rows_read: u64,
    pub rows_written: u64,
    pub last_success: Option<DateTime<Utc>>,
    pub last_duration_secs: f64,
    pub running: bool,
    pub next: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The last scheduled verification (`verify:`).
    pub verify: Option<VerifyMetrics>,
}

/// What the last scheduled `verify` of a stream found.
#[derive(Debug, Clone, Default)]
pub struct VerifyMetrics {
    pub at: DateTime<Utc>,
    pub equal: bool,
    /// The verification itself failed (a connection, a refused target).
    pub failed: bool,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    pub seconds: f64,
}

/// How long `/metrics` reuses what it computed from the run history or
/// the sources (too much work for every scrape).
pub const METRICS_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// A value `/metrics` computed, reused while younger than [`METRICS_TTL`].
pub struct Cached<T>(Mutex<Option<(std::time::Instant, T)>>);

impl<T: Clone> Cached<T> {
    pub const fn new() -> Cached<T> {
        Cached(Mutex::new(None))
    }

    /// The value, when computed less than [`METRICS_TTL`] ago.
    pub fn fresh(&self) -> Option<T> {
        self.0
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .filter(|(at, _)| at.elapsed() < METRICS_TTL)
            .map(|(_, v)| v)
    }

    pub fn store(&self, v: T) {
        if let Ok(mut c) = self.0.lock() {
            *c = Some((std::time::Instant::now(), v));
        }
    }
}

/// Shared between the scheduler and the web handlers.
pub struct Shared {
    pub plan: Plan,
    pub state: Arc<dyn StateStore>,
    pub metrics: Mutex<BTreeMap<String, StreamMetrics>>,
    pub started: DateTime<Utc>,
    /// At most `concurrency:` streams run at once.
    pub limit: Arc<Semaphore>,
    /// Who may change something (trigger, rerun, cancel).
    pub auth: web::Auth,
    /// Runs this process started and has not seen end, by run id.
    pub tasks: Mutex<HashMap<String, Task>>,
    /// The factory's triggers and where the factory is (`/windows`).
    pub triggers: Vec<highwater_engine::pipeline::trigger::Trigger>,
    pub factory_root: Option<std::path::PathBuf>,
}

/// A run this process started: how to stop it and how to see it end.
pub struct Task {
    abort: futures::future::AbortHandle,
    pub done: tokio::task::JoinHandle<()>,
}

impl Task {
    /// Run `work` on the runtime.
    fn spawn(work: impl std::future::Future<Output = ()> + Send + 'static) -> Task {
        let (work, abort) = futures::future::abortable(work);
        let done = tokio::spawn(async move {
            let _ = work.await;
        });
        Task { abort, done }
    }

    /// Run `work`, whose future is not `Send` (a pipeline's), on a
    /// blocking thread of its own.
    fn spawn_blocking<F, W>(make: F) -> Task
    where
        F: FnOnce() -> W + Send + 'static,
        W: std::future::Future<Output = ()> + 'static,
    {
        let (abort, registration) = futures::future::AbortHandle::new_pair();
        let runtime = tokio::runtime::Handle::current();
        let done = tokio::task::spawn_blocking(move || {
            let _ = runtime.block_on(futures::future::Abortable::new(make(), registration));
        });
        Task { abort, done }
    }
}

/// Why [`trigger`] did not start a run.
#[derive(Debug, PartialEq)]
pub enum NotStarted {
    Unknown,
    Busy,
}

/// Start a run of `stream` now; its run id. `trigger` is recorded in the
/// run's info (`Schedule`, `Manual`).
pub fn trigger(shared: &Arc<Shared>, stream: &str, trigger: &str) -> Result<String, NotStarted> {
    {
        let mut m = shared.metrics.lock().map_err(|_| NotStarted::Busy)?;
        let s = m.get_mut(stream).ok_or(NotStarted::Unknown)?;
        if s.running {
            return Err(NotStarted::Busy);
        }
        // Marked here, not in the task, so the next firing cannot slip in first.
        s.running = true;
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let mut tasks = shared.tasks.lock().unwrap_or_else(|p| p.into_inner());
    tasks.retain(|_, t| !t.done.is_finished());
    tasks.insert(
        run_id.clone(),
        Task::spawn(fire(
            shared.clone(),
            stream.to_string(),
            run_id.clone(),
            trigger.to_string(),
        )),
    );
    Ok(run_id)
}

/// Start `rerun` (prepared by `pipeline rerun`'s checks) in the background.
pub fn start_rerun(shared: &Arc<Shared>, rerun: crate::cli::pipeline::Rerun) -> String {
    let run_id = rerun.run_id.clone();
    let (plan, state, me) = (shared.plan.clone(), shared.state.clone(), shared.clone());
    let id = run_id.clone();
    let mut tasks = shared.tasks.lock().unwrap_or_else(|p| p.into_inner());
    tasks.retain(|_, t| !t.done.is_finished());
    tasks.insert(
        run_id.clone(),
        Task::spawn_blocking(move || async move {
            let secrets = plan.secrets.clone();
            match rerun.run(plan, state).await {
                Ok(o) => {
                    output::log_activities(&o.run_id, &o.activities);
                    tracing::info!(
                        event = "pipeline_finished",
                        run_id = %o.run_id,
                        status = o.status.as_str(),
                        activities = o.activities.len(),
                        "A pipeline run ended."
                    );
                }
                Err(e) => tracing::warn!(
                    event = "pipeline_failed",
                    run_id = %id,
                    error = %secrets.redact(&e.to_string()),
                    "A pipeline run could not run."
                ),
            }
            if let Ok(mut t) = me.tasks.lock() {
                t.remove(&id);
            }
        }),
    );
    tracing::info!(event = "pipeline_started", run_id = %run_id, "A pipeline rerun started.");
    run_id
}

/// What [`cancel`] did.
#[derive(Debug, PartialEq)]
pub enum Cancelled {
    Done,
    /// Not a run this process is running (finished, or another process's).
    NotRunning,
}

/// Stop a run this process started: drop its task (as a crash would:
/// stream locks are released, an open attempt is settled by the stream's
/// next run) and record the run and its unfinished activities as failed,
/// "Cancelled".
pub async fn cancel(shared: &Arc<Shared>, run_id: &str) -> highwater_core::Result<Cancelled> {
    let handle = shared
        .tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(run_id);
    let Some(task) = handle else {
        return Ok(Cancelled::NotRunning);
    };
    if task.done.is_finished() {
        return Ok(Cancelled::NotRunning);
    }
    task.abort.abort();
    let _ = task.done.await;
    let Some(record) = shared.state.run(run_id).await? else {
        return Ok(Cancelled::Done);
    };
    if record.status != RunStatus::InProgress {
        return Ok(Cancelled::NotRunning);
    }
    let now = Utc::now();
    let why = "Cancelled from the monitor.";
    for mut s in record.streams.clone() {
        if s.status == RunStatus::InProgress {
            s.status = RunStatus::Failed;
            s.error = Some(why.to_string());
            s.finished_at = Some(now);
            shared.state.record_stream_run(run_id, &s).await?;
        }
    }
    // A stream run records its stream when it ends: say which one stopped.
    let stream = record
        .info
        .as_ref()
        .and_then(|i| i.get("stream"))
        .and_then(|s| s.as_str())
        .map(str::to_string);
    if let Some(name) = &stream {
        if !record.streams.iter().any(|s| &s.stream == name) {
            let mode = shared
                .plan
                .streams
                .iter()
                .find(|p| &p.name == name)
                .map(|p| p.mode.as_str().to_string())
                .unwrap_or_default();
            let s = highwater_core::StreamRun {
                stream: name.clone(),
                mode,
                status: RunStatus::Failed,
                rows_read: 0,
                rows_written: 0,
                watermark_from: None,
                watermark_to: None,
                outputs: vec![],
                error: Some(why.to_string()),
                full_reload: false,
                notes: vec![],
                started_at: record.started_at,
                finished_at: Some(now),
                pipeline: None,
                input: None,
                output: None,
            };
            shared.state.record_stream_run(run_id, &s).await?;
        }
        if let Ok(mut m) = shared.metrics.lock()
            && let Some(s) = m.get_mut(name)
        {
            s.running = false;
            s.failed += 1;
            s.last_error = Some(why.to_string());
        }
    }
    shared
        .state
        .finish_run(run_id, RunStatus::Failed, now)
        .await?;
    tracing::info!(event = "run_cancelled", run_id = %run_id, "A run was cancelled.");
    Ok(Cancelled::Done)
}

pub async fn run(config: &Path, listen: &str, factory: Option<&Path>) -> i32 {
    // A config without streams (pipelines only) serves the monitoring
    // page; it has nothing to schedule yet.
    let plan = match crate::cli::load_plan_with(config, highwater_config::plan::load_connections) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let state = match crate::cli::open_state(&plan).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut schedules: Vec<(String, Cron)> = Vec::new();
    for s in &plan.streams {
        if let Some(expr) = &s.schedule {
            match expr.parse::<Cron>() {
                Ok(c) => schedules.push((s.name.clone(), c)),
                Err(e) => {
                    output::error(&format!(
                        "{}:{}: stream {}: schedule `{expr}`: {e}",
                        plan.file, s.line, s.name
                    ));
                    return 2;
                }
            }
        }
    }
    // The factory's triggers: `--factory DIR`, else the config's folder
    // when it holds `trigger/`.
    let root = crate::cli::windows::factory_root(config, factory);
    let triggers = match &root {
        Some(r) => match highwater_engine::pipeline::trigger::load(r) {
            Ok(t) => t,
            Err(e) => {
                output::error(&e.to_string());
                return 2;
            }
        },
        None => vec![],
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            output::error(&format!("cannot listen on {listen}: {e}"));
            return 2;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| listen.to_string());
    let metrics = plan
        .streams
        .iter()
        .map(|s| (s.name.clone(), StreamMetrics::default()))
        .collect();
    let trigger_count = triggers.len();
    let (trigger_plan, trigger_state) = (plan.clone(), state.clone());
    let concurrency = plan.concurrency;
    let plan_streams = plan.streams.len();
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let auth = web::Auth::from_env(loopback);
    let shared = Arc::new(Shared {
        plan,
        state,
        metrics: Mutex::new(metrics),
        started: Utc::now(),
        limit: Arc::new(Semaphore::new(concurrency)),
        auth,
        tasks: Mutex::new(HashMap::new()),
        triggers: triggers.clone(),
        factory_root: root.clone(),
    });
    println!("listening on http://{addr}  (/, /runs/ID, /api/runs, /metrics, /healthz)");
    let mut verify_tasks = start_verify(&shared);
    verify_tasks.extend(start_part_helpers(&shared));
    if trigger_count > 0 {
        println!(
            "{trigger_count} trigger(s) of the factory in {}",
            root.as_deref().unwrap_or(Path::new(".")).display()
        );
    }
    // Started after the first line (the address), which scripts read.
    let (stop_triggers, stop_rx) = tokio::sync::watch::channel(false);
    let mut trigger_tasks = triggers::start(
        root.clone().unwrap_or_default(),
        trigger_plan,
        trigger_state,
        triggers,
        stop_rx.clone(),
    );
    trigger_tasks.extend(start_stream_windows(&shared, stop_rx));
    let windowed_streams = shared
        .plan
        .streams
        .iter()
        .filter(|s| s.window.is_some())
        .count();
    if plan_streams == 0 && trigger_count > 0 {
    } else if plan_streams == 0 {
        println!(
            "no streams in {}: nothing to schedule; serving the monitoring page only",
            config.display()
        );
    } else if schedules.is_empty() && windowed_streams == 0 {
        println!("no stream has a `schedule:`; serving the monitoring page only");
    } else {
        for (name, cron) in &schedules {
            println!("scheduled {name}: {}", cron.pattern);
        }
    }
    println!("{}", shared.auth.describe());

    let app = web::router(shared.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut next: Vec<Option<DateTime<Utc>>> = schedules
        .iter()
        .map(|(_, c)| c.find_next_occurrence(&Utc::now(), false).ok())
        .collect();
    loop {
        set_next(&shared, &schedules, &next);
        let soonest = next.iter().flatten().min().copied();
        let wait = soonest
            .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(std::time::Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown_signal() => break,
        }
        let now = Utc::now();
        for (i, (name, cron)) in schedules.iter().enumerate() {
            if next[i].is_none_or(|t| t > now) {
                continue;
            }
            let tick = next[i].unwrap_or(now);
            next[i] = cron.find_next_occurrence(&now, false).ok();
            // One worker per firing: the first to claim the tick runs it.
            let key = format!("tick/{name}");
            match highwater_engine::pipeline::windows::claim(shared.state.as_ref(), &key, tick)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(stream = %name, "Another worker took this firing.");
                    continue;
                }
                Err(e) => {
                    output::error(&format!("stream {name}: claiming the firing: {e}"));
                    continue;
                }
            }
            if trigger(&shared, name, "Schedule") == Err(NotStarted::Busy) {
                tracing::info!(stream = %name, "Skipped a firing: the previous run still runs.");
            }
        }
    }
    let running: Vec<_> = shared
        .tasks
        .lock()
        .map(|mut t| t.drain().map(|(_, t)| t.done).collect())
        .unwrap_or_default();
    println!(
        "stopping: waiting for {} running stream(s)",
        running.iter().filter(|h| !h.is_finished()).count()
    );
    let _ = stop_triggers.send(true);
    for h in running.into_iter().chain(trigger_tasks) {
        let _ = h.await;
    }
    // Verification only reads, and a part stopped midway is claimed
    // again by its load's coordinator: stopping either is harmless.
    for h in verify_tasks {
        h.abort();
    }
    server.abort();
    0
}

/// One task per stream with `window:`: its due windows, as for a
/// TumblingWindowTrigger (see [`triggers::tumbling`]).
fn start_stream_windows(
    shared: &Arc<Shared>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for s in &shared.plan.streams {
        let Some(w) = &s.window else { continue };
        let tw = highwater_engine::windowed::tumbling(w);
        println!(
            "windows of {}: every {} min from {}",
            s.name,
            w.size_secs / 60,
            w.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let (plan, state, name) = (shared.plan.clone(), shared.state.clone(), s.name.clone());
        let rt = tokio::runtime::Handle::current();
        let fire: triggers::Fire = Arc::new(move |w| {
            let quiet = Arc::new(highwater_engine::events::Quiet);
            match rt.block_on(highwater_engine::windowed::fire(
                &plan,
                state.clone(),
                &name,
                w,
                false,
                quiet,
            )) {
                Ok((fired, _)) => fired,
                Err(e) => {
                    output::error(&format!(
                        "stream {name} window {}: {}",
                        w.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        plan.secrets.redact(&e.to_string())
                    ));
                    highwater_engine::pipeline::windows::Fired::Ran(
                        String::new(),
                        RunStatus::Failed,
                    )
                }
            }
        });
        let l = triggers::Loop {
            state: shared.state.clone(),
            name: s.name.clone(),
            triggers: vec![],
            succeeded: tokio::sync::watch::channel(0).0,
        };
        tasks.push(tokio::spawn(triggers::tumbling(l, tw, fire, stop.clone())));
    }
    tasks
}

/// How often a worker looks for parts of shared full loads to read.
const PART_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// One task per stream with `share_partitions:`: read and stage parts of
/// the stream's full loads that other processes coordinate (see
/// `highwater_engine::parts`).
fn start_part_helpers(shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for s in shared.plan.streams.iter().filter(|s| s.share_partitions) {
        println!("helping with the parts of {}'s full loads", s.name);
        let (shared, stream) = (shared.clone(), s.name.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = std::collections::HashSet::new();
            loop {
                tokio::time::sleep(PART_POLL).await;
                let Some(s) = shared.plan.streams.iter().find(|p| p.name == stream) else {
                    return;
                };
                match highwater_engine::parts::help(&shared.plan, shared.state.as_ref(), s, &mut failed).await {
                    Ok(lines) => {
                        for l in lines {
                            println!("{l}");
                        }
                    }
                    Err(e) => tracing::warn!(stream = %stream, error = %shared.plan.secrets.redact(&e.to_string()), "Cannot help with the stream's parts."),
                }
            }
        }));
    }
    tasks
}

/// One task per stream with `verify:`: at each firing, `highwater verify
/// STREAM` (never `--repair`), its result in the stream's metrics.
fn start_verify(shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for s in &shared.plan.streams {
        let Some(cron) = s.verify.as_ref().and_then(|e| e.parse::<Cron>().ok()) else {
            continue;
        };
        println!("verifying {}: {}", s.name, cron.pattern);
        let (shared, stream) = (shared.clone(), s.name.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok(next) = cron.find_next_occurrence(&Utc::now(), false) else {
                    return;
                };
                let wait = (next - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                let opts = highwater_engine::verify::VerifyOptions {
                    streams: vec![stream.clone()],
                    repair: false,
                };
                let got = highwater_engine::verify::verify_streams(
                    &shared.plan,
                    shared.state.clone(),
                    &opts,
                )
                .await;
                let v = match got.ok().and_then(|mut r| r.pop()) {
                    Some(r) => {
                        if let Some(e) = &r.error {
                            tracing::error!(stream = %stream, error = %e, "Verification failed.");
                        } else {
                            tracing::info!(stream = %stream, equal = r.equal(), missing = r.missing_count,
                                extra = r.extra_count, different = r.different_count, "Verified.");
                        }
                        VerifyMetrics {
                            at: Utc::now(),
                            equal: r.equal(),
                            failed: r.error.is_some(),
                            missing: r.missing_count,
                            extra: r.extra_count,
                            different: r.different_count,
                            seconds: r.seconds,
                        }
                    }
                    None => VerifyMetrics {
                        at: Utc::now(),
                        failed: true,
                        ..VerifyMetrics::default()
                    },
                };
                if let Some(m) = shared.metrics.lock().ok().as_mut().and_then(|m| m.get_mut(&stream)) {
                    m.verify = Some(v);
                }
            }
        }));
    }
    tasks
}

fn set_next(shared: &Shared, schedules: &[(String, Cron)], next: &[Option<DateTime<Utc>>]) {
    if let Ok(mut m) = shared.metrics.lock() {
        for ((name, _), t) in schedules.iter().zip(next) {
            if let Some(s) = m.get_mut(name) {
                s.next = *t;
            }
        }
    }
}

async fn fire(shared: Arc<Shared>, stream: String, run_id: String, trigger: String) {
    let _permit = shared.limit.clone().acquire_owned().await;
    let started = std::time::Instant::now();
    let opts = RunOptions {
        streams: vec![stream.clone()],
        run_id: Some(run_id.clone()),
        info: Some(serde_json::json!({ "trigger": trigger, "stream": stream })),
        ..Default::default()
    };
    let outcome = run_streams(
        &shared.plan,
        shared.state.clone(),
        &opts,
        Arc::new(Lines {
            run_id: run_id.clone(),
        }),
    )
    .await;
    if let Ok(mut t) = shared.tasks.lock() {
        t.remove(&run_id);
    }
    if let Ok(o) = &outcome {
        tracing::info!(
            event = "run_finished",
            run_id = %o.run_id,
            trigger = %trigger,
            status = o.status.as_str(),
            streams = o.streams.len(),
            rows_written = o.streams.iter().map(|s| s.rows_written).sum::<u64>(),
            "A run ended."
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let Ok(mut m) = shared.metrics.lock() else {
        return;
    };
    let Some(s) = m.get_mut(&stream) else { return };
    s.running = false;
    s.last_duration_secs = secs;
    match outcome {
        Ok(o) => {
            for r in &o.streams {
                s.rows_read += r.rows_read;
                s.rows_written += r.rows_written;
                match r.status {
                    RunStatus::Succeeded => {
                        s.succeeded += 1;
                        s.last_success = r.finished_at;
                        s.last_error = None;
                    }
                    // Another worker holds the stream: neither success nor failure here.
                    RunStatus::Skipped | RunStatus::InProgress => {}
                    _ => {
                        s.failed += 1;
                        s.last_error = r.error.clone();
                    }
                }
            }
        }
        Err(e) => {
            s.failed += 1;
            let error = shared.plan.secrets.redact(&e.to_string());
            tracing::warn!(event = "run_failed", run_id = %run_id, stream = %stream, error = %error, "A run could not start.");
            s.last_error = Some(error);
        }
    }
}

/// Run events as log events (one JSON line each with `--log-format
/// json`), and the plain lines `serve` has always printed on stdout.
struct Lines {
    run_id: String,
}

impl highwater_engine::Observer for Lines {
    fn event(&self, event: highwater_engine::Event<'_>) {
        use highwater_engine::Event;
        match &event {
            Event::Note { stream, message } => println!("{stream}: {message}"),
            Event::Finished { run } => println!("{}", output::stream_line(run)),
            _ => {}
        }
        output::log_event(Some(&self.run_id), event);
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
