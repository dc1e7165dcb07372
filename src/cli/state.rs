//! `highwater state [--json]` and `highwater state reset STREAM`.

use std::path::Path;

use highwater_core::Position;
use serde_json::json;

use super::output;

pub async fn show(config: &Path, json: bool) -> i32 {
    let (plan, state) = match super::load_history_and_state(config).await {
        Ok(ps) => ps,
        Err(code) => return code,
    };
    let positions = match state.positions().await {
        Ok(p) => p,
        Err(e) => {
            output::error(&e.to_string());
            return 1;
        }
    };
    // The config's streams, then every other position the store holds
    // (pipeline copies `pipeline/…`, streams removed from the config).
    let mut names: Vec<(String, Option<&str>)> = plan
        .streams
        .iter()
        .map(|s| (s.name.clone(), Some(s.mode.as_str())))
        .collect();
    for p in &positions {
        if !plan.streams.iter().any(|s| s.name == p.0) {
            names.push((p.0.clone(), None));
        }
    }
    if json {
        let mut out = Vec::new();
        for (name, mode) in &names {
            let p = positions.iter().find(|p| &p.0 == name);
            out.push(json!({
                "stream": name,
                "mode": mode,
                "position": p.map(|p| p.1.display_value()),
                "watermark": p.and_then(|p| match &p.1 { Position::Watermark(w) => w.value.as_ref().map(|v| v.to_string()), _ => None }),
                "version": p.and_then(|p| match &p.1 { Position::Version(v) => Some(v.version), _ => None }),
                "generation": p.and_then(|p| match &p.1 { Position::Version(v) => v.generation.clone(), _ => None }),
                "boundary_rows": p.and_then(|p| match &p.1 { Position::Watermark(w) => Some(w.boundary.len()), _ => None }),
                "updated_at": p.map(|p| p.2.to_rfc3339()),
                "run_id": p.map(|p| p.3.clone()),
            }));
        }
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return 0;
    }
    if names.is_empty() {
        println!(
            "no streams in {} and no positions in its state store",
            config.display()
        );
        return 0;
    }
    for (name, mode) in &names {
        let mode = mode.unwrap_or("-");
        match positions.iter().find(|p| &p.0 == name) {
            Some((_, p, at, run)) => println!(
                "{name:<24} {mode:<16} {:<40} {}  (run {run})",
                p.display_value(),
                at.format("%Y-%m-%d %H:%M:%S")
            ),
            None if plan
                .streams
                .iter()
                .any(|s| &s.name == name && s.window.is_some()) =>
            {
                println!(
                    "{name:<24} {mode:<16} (runs in windows: each copied window's position is window/{name}/<start>; `highwater windows {name}` lists them)"
                )
            }
            None => println!("{name:<24} {mode:<16} (no position: next run is a full load)"),
        }
    }
    0
}

pub async fn reset(config: &Path, stream: &str) -> i32 {
    let (plan, state) = match super::load_history_and_state(config).await {
        Ok(ps) => ps,
        Err(code) => return code,
    };
    let Some(_lock) = (match state.lock_stream(stream).await {
        Ok(l) => l,
        Err(e) => {
            output::error(&e.to_string());
            return 1;
        }
    }) else {
        output::error(&format!(
            "stream {stream} is running in another process; reset it when that run ends"
        ));
        return 1;
    };
    let known = plan.streams.iter().any(|s| s.name == stream);
    match state.reset(stream).await {
        Ok(true) => {
            println!("stream {stream}: position forgotten; the next run copies everything");
            0
        }
        Ok(false) if known => {
            println!("stream {stream}: had no position");
            0
        }
        Ok(false) => {
            output::error(&format!("unknown stream {stream}"));
            2
        }
        Err(e) => {
            output::error(&e.to_string());
            1
        }
    }
}
