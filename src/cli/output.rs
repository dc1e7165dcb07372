//! Terminal output: logging, errors, progress bars (on a terminal) or plain
//! lines (otherwise), and `NO_COLOR`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use highwater_core::{RunStatus, StreamRun};
use highwater_engine::{Event, Observer};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HIGHWATER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color())
        .with_target(false)
        .try_init();
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
        let tty = std::io::stderr().is_terminal();
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

/// The run record as JSON on stdout (`run --json`, `pipeline run --json`).
pub async fn print_run_json(state: &dyn highwater_core::StateStore, run_id: &str) {
    match state.run(run_id).await {
        Ok(Some(r)) => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
        _ => println!("{}", serde_json::json!({ "run_id": run_id })),
    }
}
