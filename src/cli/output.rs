//! Terminal output: logging, errors, progress bars (on a terminal) or plain
//! lines (otherwise), and `NO_COLOR`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use highwater_core::{RunStatus, StreamRun};
use highwater_engine::{Event, Observer};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Whether logs (and run events, and errors) are JSON lines.
pub fn json_logs() -> bool {
    JSON_LOGS.load(Ordering::Relaxed)
}

pub fn init_logging(verbose: u8, format: LogFormat) {
    let json = format == LogFormat::Json;
    JSON_LOGS.store(json, Ordering::Relaxed);
    // Run events are info events: a log shipper wants them by default.
    let default = match (verbose, json) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HIGHWATER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.event_format(JsonLines).try_init()
    } else {
        builder.with_ansi(color()).with_target(false).try_init()
    };
}

/// One JSON object per event: `timestamp`, `level`, `target`, `message`
/// and the event's fields, flat (what log shippers index).
struct JsonLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = serde_json::Map::new();
        fields.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        fields.insert("level".into(), meta.level().as_str().into());
        fields.insert("target".into(), meta.target().into());
        event.record(&mut JsonFields(&mut fields));
        writeln!(writer, "{}", serde_json::Value::Object(fields))
    }
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields<'_> {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_f64(&mut self, f: &tracing::field::Field, v: f64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_bool(&mut self, f: &tracing::field::Field, v: bool) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}").into());
    }
}

/// Colour only on a terminal and when NO_COLOR is unset.
pub fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn paint(code: &str, s: &str) -> String {
    if color() {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

pub fn error(msg: &str) {
    if json_logs() {
        tracing::error!(event = "error", "{msg}");
        return;
    }
    eprintln!("{} {msg}", paint("1;31", "error:"));
}

/// `ok` / `FAILED` / `running`, padded to one width before colouring.
pub fn status_mark(s: RunStatus) -> String {
    match s {
        RunStatus::Succeeded => paint("32", &format!("{:<7}", "ok")),
        RunStatus::Failed => paint("31", &format!("{:<7}", "FAILED")),
        RunStatus::InProgress => paint("33", &format!("{:<7}", "running")),
        RunStatus::Skipped => paint("33", &format!("{:<7}", "skipped")),
    }
}

/// The mark of a line that warns (yellow `warning`).
pub fn warning_mark() -> String {
    paint("33", &format!("{:<7}", "warning"))
}

/// 1234567 → "1,234,567".
pub fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// [`stream_line`] without a failure's message, for a summary followed by
/// the `error:` lines (each failure is printed once).
pub fn stream_line_brief(r: &StreamRun) -> String {
    match r.status {
        RunStatus::Failed if r.error.is_some() => {
            format!("{} {}  [{}]", status_mark(r.status), r.stream, r.mode)
        }
        _ => stream_line(r),
    }
}

/// One line per finished stream.
pub fn stream_line(r: &StreamRun) -> String {
    let secs = r
        .finished_at
        .map(|f| (f - r.started_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0);
    let mut line = format!("{} {}  [{}]", status_mark(r.status), r.stream, r.mode);
    match r.status {
        RunStatus::Failed => {
            line.push_str(&format!("  {}", r.error.as_deref().unwrap_or("failed")));
        }
        RunStatus::Skipped => {
            line.push_str(&format!(
                "  {}",
                r.notes.last().map_or("skipped", |n| n.as_str())
            ));
        }
        _ => {
            line.push_str(&format!("  {} rows", r.rows_written));
            if r.full_reload {
                line.push_str(" (full load)");
            }
            match (&r.watermark_from, &r.watermark_to) {
                _ if r.mode == "full" => {}
                (Some(f), Some(t)) => line.push_str(&format!("  position {f} → {t}")),
                (None, Some(t)) => line.push_str(&format!("  position → {t}")),
                _ => {}
            }
            for o in &r.outputs {
                line.push_str(&format!("\n          → {o}"));
            }
            line.push_str(&format!("  ({secs:.2}s)"));
        }
    }
    line
}

/// Renders run events: progress bars on a terminal, plain lines otherwise.
pub struct Progress {
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
}

impl Progress {
    pub fn new() -> Progress {
        let tty = std::io::stderr().is_terminal() && !json_logs();
        let bars = tty.then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        Progress { bars }
    }
}

impl Observer for Progress {
    fn event(&self, event: Event<'_>) {
        match (&self.bars, event) {
            (Some((multi, bars)), Event::Started { stream, mode }) => {
                let pb = multi.add(ProgressBar::new_spinner());
                let template = if color() {
                    "{spinner:.cyan} {prefix:.bold} {msg} {human_pos} rows {elapsed}"
                } else {
                    "{spinner} {prefix} {msg} {human_pos} rows {elapsed}"
                };
                pb.set_style(
                    ProgressStyle::with_template(template)
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                pb.set_prefix(stream.to_string());
                pb.set_message(format!("[{mode}]"));
                pb.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut b) = bars.lock() {
                    b.insert(stream.to_string(), pb);
                }
            }
            (Some((_, bars)), Event::Progress { stream, rows }) => {
                if let Some(pb) = bars.lock().ok().and_then(|b| b.get(stream).cloned()) {
                    pb.set_position(rows);
                    let secs = pb.elapsed().as_secs_f64().max(0.001);
                    pb.set_message(format!(
                        "{:>9} rows/s ",
                        group_digits((rows as f64 / secs) as u64)
                    ));
                }
            }
            (Some((multi, _)), Event::Note { stream, message }) => {
                let _ = multi.println(format!("{stream}: {message}"));
            }
            (Some((_, bars)), Event::Finished { run }) => {
                if let Some(pb) = bars.lock().ok().and_then(|mut b| b.remove(&run.stream)) {
                    pb.finish_and_clear();
                }
            }
            (None, event) if json_logs() => log_event(None, event),
            (None, Event::Started { stream, mode }) => eprintln!("{stream}: started [{mode}]"),
            (None, Event::Progress { .. }) => {}
            (None, Event::Note { stream, message }) => eprintln!("{stream}: {message}"),
            (None, Event::Finished { run }) => match run.status {
                RunStatus::Failed => eprintln!("{}: failed", run.stream),
                RunStatus::Skipped => eprintln!("{}: skipped", run.stream),
                _ => eprintln!(
                    "{}: finished, {} rows written",
                    run.stream, run.rows_written
                ),
            },
        }
    }
}

/// A run event as a log event (one JSON line with `--log-format json`);
/// `run_id` when the caller knows it (`serve`).
pub fn log_event(run_id: Option<&str>, event: Event<'_>) {
    let run_id = run_id.unwrap_or("");
    match event {
        Event::Started { stream, mode } => {
            tracing::info!(
                event = "stream_started",
                run_id,
                stream,
                mode,
                "A stream started."
            );
        }
        Event::Progress { .. } => {}
        Event::Note { stream, message } => {
            tracing::info!(
                event = "stream_note",
                run_id,
                stream,
                message,
                "A stream noted something."
            );
        }
        Event::Finished { run } => {
            let secs = run
                .finished_at
                .map(|f| (f - run.started_at).num_milliseconds() as f64 / 1000.0)
                .unwrap_or(0.0);
            if run.status == RunStatus::Failed {
                tracing::warn!(
                    event = "stream_finished",
                    run_id,
                    stream = %run.stream,
                    status = run.status.as_str(),
                    rows_read = run.rows_read,
                    rows_written = run.rows_written,
                    duration_secs = secs,
                    error = run.error.as_deref().unwrap_or(""),
                    "A stream failed."
                );
            } else {
                tracing::info!(
                    event = "stream_finished",
                    run_id,
                    stream = %run.stream,
                    status = run.status.as_str(),
                    rows_read = run.rows_read,
                    rows_written = run.rows_written,
                    duration_secs = secs,
                    position = run.watermark_to.as_deref().unwrap_or(""),
                    "A stream finished."
                );
            }
        }
    }
}

/// A pipeline's activity runs as log events, one per activity run.
pub fn log_activities(run_id: &str, activities: &[StreamRun]) {
    for a in activities {
        let fields = (
            a.pipeline.as_deref().unwrap_or(""),
            a.stream.as_str(),
            a.mode.as_str(),
            a.status.as_str(),
        );
        if a.status == RunStatus::Failed {
            tracing::warn!(
                event = "activity_finished",
                run_id,
                pipeline = fields.0,
                activity = fields.1,
                activity_type = fields.2,
                status = fields.3,
                rows_read = a.rows_read,
                rows_written = a.rows_written,
                error = a.error.as_deref().unwrap_or(""),
                "An activity failed."
            );
        } else {
            tracing::info!(
                event = "activity_finished",
                run_id,
                pipeline = fields.0,
                activity = fields.1,
                activity_type = fields.2,
                status = fields.3,
                rows_read = a.rows_read,
                rows_written = a.rows_written,
                "An activity finished."
            );
        }
    }
}

/// The run record as JSON on stdout (`run --json`, `pipeline run --json`).
pub async fn print_run_json(state: &dyn highwater_core::StateStore, run_id: &str) {
    match state.run(run_id).await {
        Ok(Some(r)) => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
        _ => println!("{}", serde_json::json!({ "run_id": run_id })),
    }
}
