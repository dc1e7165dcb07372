//! `highwater windows [NAME] [--json]` and `highwater windows rerun NAME
//! --from T [--to T]`: the tumbling windows of a factory's triggers.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use highwater_engine::pipeline::trigger::{self, Trigger};
use highwater_engine::pipeline::windows::{self, Fired};

use super::output;

/// The factory root: `--factory DIR`, else the config's folder when it
/// holds `trigger/` (or `triggers/`).
pub fn factory_root(config: &Path, factory: Option<&Path>) -> Option<PathBuf> {
    if let Some(f) = factory {
        return Some(f.to_path_buf());
    }
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    ["trigger", "triggers"]
        .iter()
        .any(|t| dir.join(t).is_dir())
        .then_some(dir)
}

async fn open(
    config: &Path,
    factory: Option<&Path>,
) -> Result<
    (
        PathBuf,
        highwater_config::Plan,
        std::sync::Arc<dyn highwater_core::StateStore>,
        Vec<Trigger>,
    ),
    i32,
> {
    let plan = super::load_plan_with(config, highwater_config::plan::load_connections)?;
    let windowed = plan.streams.iter().any(|s| s.window.is_some());
    let root = match factory_root(config, factory) {
        Some(r) => r,
        None if windowed => PathBuf::new(),
        None => {
            output::error(&format!(
                "no stream has `window:` and no trigger/ folder is next to {}; name the factory with --factory DIR",
                config.display()
            ));
            return Err(2);
        }
    };
    let triggers = if root.as_os_str().is_empty() {
        vec![]
    } else {
        trigger::load(&root).map_err(|e| {
            output::error(&e.to_string());
            2
        })?
    };
    let state = super::open_state(&plan).await?;
    Ok((root, plan, state, triggers))
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub async fn list(config: &Path, factory: Option<&Path>, name: Option<&str>, json: bool) -> i32 {
    let (_, plan, state, triggers) = match open(config, factory).await {
        Ok(x) => x,
        Err(c) => return c,
    };
    let streams: Vec<_> = plan
        .streams
        .iter()
        .filter(|s| s.window.is_some() && name.is_none_or(|n| s.name == n))
        .collect();
    if let Some(n) = name
        && !triggers.iter().any(|t| t.name == n)
        && streams.is_empty()
    {
        output::error(&format!("no trigger or windowed stream {n}"));
        return 2;
    }
    let mut all = Vec::new();
    for t in triggers.iter().filter(|t| name.is_none_or(|n| t.name == n)) {
        let Some(tw) = windows::tumbling(t) else {
            continue;
        };
        match windows::statuses(state.as_ref(), &t.name, tw, Utc::now(), &triggers).await {
            Ok(l) => all.push(("trigger", t.name.clone(), l)),
            Err(e) => {
                output::error(&e.to_string());
                return 1;
            }
        }
    }
    for s in streams {
        match highwater_engine::windowed::statuses(state.as_ref(), s).await {
            Ok(l) => all.push(("stream", s.name.clone(), l)),
            Err(e) => {
                output::error(&plan.secrets.redact(&e.to_string()));
                return 1;
            }
        }
    }
    if json {
        let flat: Vec<_> = all.iter().flat_map(|(_, _, l)| l.iter()).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&flat).unwrap_or_default()
        );
        return 0;
    }
    if all.is_empty() {
        println!("no tumbling window triggers in the factory and no stream with `window:`");
    }
    for (kind, name, l) in &all {
        let count = |s: &str| l.iter().filter(|w| w.status == s).count();
        println!(
            "{kind} {name}: {} window(s) due: {} succeeded, {} running, {} pending, {} waiting, {} retrying, {} failed",
            l.len(),
            count("succeeded"),
            count("running"),
            count("pending"),
            count("waiting"),
            count("retrying"),
            count("failed")
        );
        for w in l {
            let waiting = if w.waiting_for.is_empty() {
                String::new()
            } else {
                format!("waiting for {}", w.waiting_for.join(", "))
            };
            let line = format!(
                "  {} → {}  {:<9}  {} attempt(s)  {}{waiting}",
                iso(w.start),
                iso(w.end),
                w.status,
                w.attempts,
                w.last_run_id.as_deref().unwrap_or("")
            );
            println!("{}", line.trim_end());
        }
    }
    0
}

fn parse_time(text: &str, flag: &str) -> Result<DateTime<Utc>, i32> {
    highwater_expr::datetime::parse_timestamp(text)
        .map(|t| t.to_utc())
        .ok_or_else(|| {
            output::error(&format!(
                "{flag} {text}: not an ISO 8601 time (2024-01-01T00:00:00Z)"
            ));
            2
        })
}

pub async fn rerun(
    config: &Path,
    factory: Option<&Path>,
    name: &str,
    from: &str,
    to: Option<&str>,
    json: bool,
) -> i32 {
    let (root, plan, state, triggers) = match open(config, factory).await {
        Ok(x) => x,
        Err(c) => return c,
    };
    let stream = plan
        .streams
        .iter()
        .find(|s| s.name == name && s.window.is_some());
    let t = triggers.iter().find(|t| t.name == name);
    let stream_windows =
        stream.and_then(|s| s.window.as_ref().map(highwater_engine::windowed::tumbling));
    let tw = match (&stream_windows, t) {
        (Some(tw), _) => tw,
        (None, Some(t)) => match windows::tumbling(t) {
            Some(tw) => tw,
            None => {
                output::error(&format!("trigger {name} is not a tumbling window trigger"));
                return 2;
            }
        },
        (None, None) => {
            output::error(&format!("no trigger or windowed stream {name}"));
            return 2;
        }
    };
    let from = match parse_time(from, "--from") {
        Ok(t) => t,
        Err(c) => return c,
    };
    let to = match to.map(|t| parse_time(t, "--to")).transpose() {
        Ok(t) => t,
        Err(c) => return c,
    };
    let chosen: Vec<_> = tw
        .due(Utc::now(), usize::MAX)
        .into_iter()
        .filter(|w| w.start >= from && to.is_none_or(|t| w.start < t))
        .collect();
    if chosen.is_empty() {
        output::error(&format!("no due window of {name} starts in that range"));
        return 2;
    }
    let mut failed = 0;
    let mut results = Vec::new();
    for w in chosen {
        let fired = match (stream, t) {
            (Some(s), _) => highwater_engine::windowed::fire(
                &plan,
                state.clone(),
                &s.name,
                w,
                true,
                std::sync::Arc::new(output::Progress::new()),
            )
            .await
            .map(|(f, _)| f),
            (None, Some(t)) => {
                windows::fire(&root, &plan, state.clone(), t, Some(w), w.end, true).await
            }
            (None, None) => Err(highwater_core::Error::config(
                name,
                "no trigger or windowed stream of that name",
            )),
        };
        let (status, run) = match fired {
            Ok(Fired::Ran(id, s)) => (s.as_str().to_string(), Some(id)),
            Ok(Fired::Busy) => ("busy: another process is running it".to_string(), None),
            Ok(Fired::AlreadyDone) => ("succeeded".to_string(), None),
            Err(e) => (plan.secrets.redact(&e.to_string()), None),
        };
        if status != "Succeeded" {
            failed += 1;
        }
        if !json {
            println!(
                "{} → {}  {status}  {}",
                iso(w.start),
                iso(w.end),
                run.as_deref().unwrap_or("")
            );
        }
        results.push(serde_json::json!({"start": iso(w.start), "end": iso(w.end), "status": status, "run_id": run}));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
    }
    if failed > 0 { 1 } else { 0 }
}
