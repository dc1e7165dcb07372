//! `highwater runs [--json]` and `highwater runs show RUN_ID [--json]`.

use std::path::Path;

use super::output;

async fn open(config: &Path) -> Result<std::sync::Arc<dyn highwater_core::StateStore>, i32> {
    // A config that only maps connections for pipelines has runs too, and
    // reading them needs no connection secret.
    Ok(super::load_history_and_state(config).await?.1)
}

pub async fn list(config: &Path, limit: usize, json: bool) -> i32 {
    let state = match open(config).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    match state.runs(limit).await {
        Ok(runs) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&runs).unwrap_or_default()
            );
            0
        }
        Ok(runs) => {
            if runs.is_empty() {
                println!("no runs yet: start one with `highwater run`");
            }
            for r in runs {
                let rows: u64 = r.streams.iter().map(|s| s.rows_written).sum();
                let secs = r
                    .finished_at
                    .map(|f| (f - r.started_at).num_milliseconds() as f64 / 1000.0);
                // Pipeline runs record activities (mode = activity type)
                // and, since they record it, the pipeline's name.
                let stream_modes = ["full", "watermark", "change_tracking"];
                let what = if let Some(p) = r.streams.iter().find_map(|s| s.pipeline.as_deref()) {
                    format!("activity run(s) of pipeline {p}")
                } else if r
                    .streams
                    .iter()
                    .all(|s| stream_modes.contains(&s.mode.as_str()))
                {
                    "stream(s)".to_string()
                } else {
                    "activity run(s)".to_string()
                };
                let line = format!(
                    "{}  {}  {:<10} {} {what}  {} rows  {}",
                    r.run_id,
                    r.started_at.format("%Y-%m-%d %H:%M:%S"),
                    r.status.as_str(),
                    r.streams.len(),
                    rows,
                    secs.map(|s| format!("{s:.2}s")).unwrap_or_default()
                );
                println!("{}", line.trim_end());
            }
            0
        }
        Err(e) => {
            output::error(&e.to_string());
            1
        }
    }
}

pub async fn show(config: &Path, run_id: &str, json: bool) -> i32 {
    let state = match open(config).await {
        Ok(s) => s,
        Err(c) => return c,
    };
    match state.run(run_id).await {
        // Activity runs in the order they started, as Data Factory's
        // monitor lists them.
        Ok(Some(mut r)) => {
            r.streams.sort_by_key(|s| s.started_at);
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                return 0;
            }
            println!("run {}  {}", r.run_id, r.status.as_str());
            if let Some(p) = r.streams.iter().find_map(|s| s.pipeline.as_deref()) {
                println!("  pipeline {p}");
            }
            if let Some(of) = r
                .info
                .as_ref()
                .and_then(|i| i.get("rerunOf"))
                .and_then(|o| o.as_str())
            {
                println!("  rerun of {of}");
            }
            println!("  started  {}", r.started_at.to_rfc3339());
            if let Some(f) = r.finished_at {
                println!(
                    "  finished {}  ({:.2}s)",
                    f.to_rfc3339(),
                    (f - r.started_at).num_milliseconds() as f64 / 1000.0
                );
            }
            for s in &r.streams {
                println!("  {}", output::stream_line(s));
                println!(
                    "          started {}, rows read {}, written {}",
                    s.started_at.format("%H:%M:%S%.3f"),
                    s.rows_read,
                    s.rows_written
                );
                for n in &s.notes {
                    println!("          note: {n}");
                }
            }
            if r.streams.iter().any(|s| s.input.is_some()) {
                println!("  (each activity's input and output JSON: --json)");
            }
            0
        }
        Ok(None) => {
            output::error(&format!("no run {run_id} (see `highwater runs`)"));
            2
        }
        Err(e) => {
            output::error(&e.to_string());
            1
        }
    }
}
