//! `highwater run [STREAM…] [--full-refresh] [--json] [--dry-run]`.

use std::path::Path;
use std::sync::Arc;

use highwater_engine::{RunOptions, run_streams};

use super::output;

pub async fn run(config: &Path, streams: Vec<String>, full_refresh: bool, json: bool) -> i32 {
    let plan = match super::load_plan(config) {
        Ok(p) => p,
        Err(code) => return code,
    };
    // Streams with `window:` run window by window, each a run of its own.
    let windowed: Vec<String> = plan
        .streams
        .iter()
        .filter(|s| s.window.is_some() && (streams.is_empty() || streams.contains(&s.name)))
        .map(|s| s.name.clone())
        .collect();
    let rest: Vec<String> = match streams.is_empty() {
        true => plan
            .streams
            .iter()
            .filter(|s| s.window.is_none())
            .map(|s| s.name.clone())
            .collect(),
        false => streams
            .iter()
            .filter(|s| !windowed.contains(s))
            .cloned()
            .collect(),
    };
    let opts = RunOptions {
        streams: rest,
        full_refresh,
        ..RunOptions::default()
    };
    // The first streams' logins overlap opening the state store.
    if windowed.is_empty() {
        highwater_engine::prewarm(&plan, &opts);
    }
    let state = match super::open_state(&plan).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut code = 0;
    // With --json: the records of every run, printed at the end.
    let mut ran: Vec<String> = Vec::new();
    for s in plan.streams.iter().filter(|s| windowed.contains(&s.name)) {
        let name = &s.name;
        let outcomes = highwater_engine::windowed::run_due(
            &plan,
            state.clone(),
            s,
            Arc::new(output::Progress::new()),
        )
        .await;
        match outcomes {
            Ok(list) => {
                if list.is_empty() && !json {
                    println!("{name}: no window due that is not copied yet");
                }
                for o in &list {
                    ran.push(o.run_id.clone());
                    code = code.max(report(o, json));
                }
            }
            Err(e) => {
                output::error(&plan.secrets.redact(&e.to_string()));
                code = code.max(e.exit_code());
            }
        }
    }
    if opts.streams.is_empty() && !windowed.is_empty() {
        if json {
            print_runs_json(state.as_ref(), &ran).await;
        }
        return code;
    }
    let outcome = match run_streams(
        &plan,
        state.clone(),
        &opts,
        Arc::new(output::Progress::new()),
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            output::error(&plan.secrets.redact(&e.to_string()));
            return e.exit_code();
        }
    };
    let code = code.max(report(&outcome, json));
    if json {
        match windowed.is_empty() {
            // One run: its record, as always.
            true => output::print_run_json(state.as_ref(), &outcome.run_id).await,
            false => {
                ran.push(outcome.run_id.clone());
                print_runs_json(state.as_ref(), &ran).await;
            }
        }
    }
    code
}

/// With windowed streams `run --json` prints one array: the record of each
/// run (each window's, then the other streams').
async fn print_runs_json(state: &dyn highwater_core::StateStore, ids: &[String]) {
    let mut all = Vec::new();
    for id in ids {
        all.push(match state.run(id).await {
            Ok(Some(r)) => serde_json::to_value(&r).unwrap_or_default(),
            _ => serde_json::json!({ "run_id": id }),
        });
    }
    println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
}

/// Print a run's outcome as text (not with --json) and each failure on
/// stderr; its exit code.
fn report(outcome: &highwater_engine::RunOutcome, json: bool) -> i32 {
    if !json {
        println!(
            "run {} {}",
            outcome.run_id,
            output::status_mark(outcome.status).trim_end()
        );
        for s in &outcome.streams {
            println!("  {}", output::stream_line_brief(s));
            for n in &s.notes {
                println!("          note: {n}");
            }
        }
    }
    // Each failure once: its message here, on stderr (the summary above
    // only marks the stream FAILED).
    for s in outcome.streams.iter().filter(|s| s.error.is_some()) {
        output::error(s.error.as_deref().unwrap_or_default());
    }
    outcome.exit_code
}

/// `run --dry-run` / `plan`: what a run would read and write, nothing done.
pub async fn dry_run(config: &Path, streams: Vec<String>, full_refresh: bool, json: bool) -> i32 {
    let (plan, state) = match super::load_plan_and_state(config).await {
        Ok(ps) => ps,
        Err(code) => return code,
    };
    let opts = RunOptions {
        streams,
        full_refresh,
        ..RunOptions::default()
    };
    let previews = match highwater_engine::preview::preview_streams(&plan, state, &opts).await {
        Ok(p) => p,
        Err(e) => {
            output::error(&plan.secrets.redact(&e.to_string()));
            return e.exit_code();
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&previews).unwrap_or_default()
        );
    } else {
        println!("dry run: nothing is written and no position moves");
        let width = previews.iter().map(|p| p.stream.len()).max().unwrap_or(0);
        for p in &previews {
            let mark = if p.error.is_some() { "FAILED" } else { "ok" };
            let range = match (&p.from, &p.to) {
                _ if p.mode == "full" => "every row".to_string(),
                (_, Some(to)) if p.full_load => format!("everything up to {to}"),
                (_, None) if p.full_load => "everything".to_string(),
                (Some(from), Some(to)) => format!("{from} → {to}"),
                (Some(from), None) => format!("{from} → (nothing new)"),
                (None, _) => "everything".to_string(),
            };
            let rows = match p.rows {
                Some(n) => format!("{n} rows"),
                None => "? rows".to_string(),
            };
            let held = match p.held_back {
                0 => String::new(),
                n => format!(", {n} held back"),
            };
            let mode = format!("[{}]", p.mode);
            println!(
                "  {mark:<7} {:<width$}  {mode:<17}  {range}  {rows}{held}  → {}: {}",
                p.stream, p.to_connection, p.output
            );
            for n in &p.notes {
                println!("          note: {n}");
            }
        }
    }
    for p in previews.iter().filter(|p| p.error.is_some()) {
        output::error(p.error.as_deref().unwrap_or_default());
    }
    highwater_engine::preview::Preview::exit_code(&previews)
}
