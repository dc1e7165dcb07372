//! `highwater serve`: runs streams on their `schedule:` and serves the
//! monitoring page, `/metrics` (Prometheus text format) and `/api/runs`.
//!
//! ```text
//! scheduler loop ── next firing per stream (croner) ── sleep ── run_streams([stream])
//!        │                                                     (skipped while that stream still runs;
//!        └─ metrics (per stream: runs by status, rows, last success, duration)   at most `concurrency` at once)
//! axum: GET /  /metrics  /api/runs  /healthz
//! ```
//!
//! Each firing is an ordinary run with the commit protocol and its own run
//! record, so `highwater runs` shows scheduled runs too. Ctrl-C (SIGINT) or
//! SIGTERM stops scheduling and waits for running streams to finish.

mod triggers;
mod web;

use std::collections::BTreeMap;
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

/// Shared between the scheduler and the web handlers.
pub struct Shared {
    pub plan: Plan,
    pub state: Arc<dyn StateStore>,
    pub metrics: Mutex<BTreeMap<String, StreamMetrics>>,
    pub started: DateTime<Utc>,
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
    let (stop_triggers, stop_rx) = tokio::sync::watch::channel(false);
    let trigger_count = triggers.len();
    let trigger_tasks = triggers::start(
        root.clone().unwrap_or_default(),
        plan.clone(),
        state.clone(),
        triggers,
        stop_rx,
    );
    let concurrency = plan.concurrency;
    let plan_streams = plan.streams.len();
    let shared = Arc::new(Shared {
        plan,
        state,
        metrics: Mutex::new(metrics),
        started: Utc::now(),
    });
    println!("listening on http://{addr}  (/, /metrics, /api/runs)");
    let verify_tasks = start_verify(&shared);
    if trigger_count > 0 {
        println!(
            "{trigger_count} trigger(s) of the factory in {}",
            root.as_deref().unwrap_or(Path::new(".")).display()
        );
    }
    if plan_streams == 0 && trigger_count > 0 {
    } else if plan_streams == 0 {
        println!(
            "no streams in {}: nothing to schedule; serving the monitoring page only",
            config.display()
        );
    } else if schedules.is_empty() {
        println!("no stream has a `schedule:`; serving the monitoring page only");
    } else {
        for (name, cron) in &schedules {
            println!("scheduled {name}: {}", cron.pattern);
        }
    }

    let app = web::router(shared.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let limit = Arc::new(Semaphore::new(concurrency));
    let mut running: Vec<tokio::task::JoinHandle<()>> = Vec::new();
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
            next[i] = cron.find_next_occurrence(&now, false).ok();
            let busy = shared
                .metrics
                .lock()
                .map(|m| m.get(name).is_some_and(|s| s.running))
                .unwrap_or(true);
            if busy {
                tracing::info!(stream = %name, "Skipped a firing: the previous run still runs.");
                continue;
            }
            // Marked here, not in the task, so the next firing cannot slip in first.
            if let Some(s) = shared
                .metrics
                .lock()
                .ok()
                .as_mut()
                .and_then(|m| m.get_mut(name))
            {
                s.running = true;
            }
            running.retain(|h| !h.is_finished());
            running.push(tokio::spawn(fire(
                shared.clone(),
                name.clone(),
                limit.clone(),
            )));
        }
    }
    println!(
        "stopping: waiting for {} running stream(s)",
        running.iter().filter(|h| !h.is_finished()).count()
    );
    let _ = stop_triggers.send(true);
    for h in running.into_iter().chain(trigger_tasks) {
        let _ = h.await;
    }
    // Verification only reads: stopping one midway is harmless.
    for h in verify_tasks {
        h.abort();
    }
    server.abort();
    0
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

async fn fire(shared: Arc<Shared>, stream: String, limit: Arc<Semaphore>) {
    if let Some(s) = shared
        .metrics
        .lock()
        .ok()
        .as_mut()
        .and_then(|m| m.get_mut(&stream))
    {
        s.running = true;
    }
    let _permit = limit.acquire().await;
    let started = std::time::Instant::now();
    let opts = RunOptions {
        streams: vec![stream.clone()],
        ..Default::default()
    };
    let outcome = run_streams(&shared.plan, shared.state.clone(), &opts, Arc::new(Lines)).await;
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
            s.last_error = Some(shared.plan.secrets.redact(&e.to_string()));
        }
    }
}

/// Plain log lines for scheduled runs.
struct Lines;

impl highwater_engine::Observer for Lines {
    fn event(&self, event: highwater_engine::Event<'_>) {
        use highwater_engine::Event;
        match event {
            Event::Note { stream, message } => println!("{stream}: {message}"),
            Event::Finished { run } => println!("{}", output::stream_line(run)),
            _ => {}
        }
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
