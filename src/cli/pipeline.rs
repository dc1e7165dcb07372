//! `highwater pipeline run FILE.json [--param k=v]… [--json]`: run a Data
//! Factory pipeline against the connections of `highwater.yaml`.
//!
//! Which `highwater.yaml`: an explicit `--config` (or `HIGHWATER_CONFIG`)
//! wins; otherwise the one in the pipeline's folder, then in the factory
//! root (the parent of `pipeline/`), then `./highwater.yaml`. Each linked
//! service the pipeline uses must be a connection of that name.

use std::path::{Path, PathBuf};

use highwater_engine::pipeline::rerun::Rerun;
use highwater_engine::pipeline::{Factory, Start, parameters, run_pipeline_with};

use super::output;

/// Find the config for `pipeline` (see the module doc).
fn config_for(pipeline: &Path, config: &Path, explicit: bool) -> PathBuf {
    if explicit {
        return config.to_path_buf();
    }
    let mut dir = pipeline.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.as_os_str().is_empty() {
        dir = PathBuf::from(".");
    }
    let mut candidates = vec![dir.join("highwater.yaml")];
    if dir
        .file_name()
        .is_some_and(|n| n == "pipeline" || n == "pipelines")
        && let Some(root) = dir.parent()
    {
        candidates.push(root.join("highwater.yaml"));
    }
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .unwrap_or_else(|| config.to_path_buf())
}

/// One line per activity execution: rows only where the activity moves rows.
fn activity_line(r: &highwater_core::StreamRun, brief: bool) -> String {
    let secs = r
        .finished_at
        .map(|f| (f - r.started_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0);
    let mut line = format!(
        "{} {}  [{}]",
        output::status_mark(r.status),
        r.stream,
        r.mode
    );
    if let Some(e) = &r.error {
        if !brief {
            line.push_str(&format!("  {e}"));
        }
        return line;
    }
    match r.mode.as_str() {
        "Lookup" => line.push_str(&format!("  {} rows read", r.rows_read)),
        "Copy" => line.push_str(&format!(
            "  {} rows read, {} written",
            r.rows_read, r.rows_written
        )),
        _ => {}
    }
    for o in &r.outputs {
        line.push_str(&format!("\n          → {o}"));
    }
    line.push_str(&format!("  ({secs:.2}s)"));
    line
}

fn parse_param(p: &str) -> Option<(String, String)> {
    let (k, v) = p.split_once('=')?;
    let k = k.trim();
    (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
}

pub async fn run(
    config: &Path,
    config_explicit: bool,
    file: &Path,
    params: &[String],
    json: bool,
) -> i32 {
    let factory = match Factory::load(file) {
        Ok(f) => f,
        Err(e) => {
            output::error(&e.to_string());
            return 2;
        }
    };
    let mut given = Vec::new();
    for p in params {
        match parse_param(p) {
            Some(kv) => given.push(kv),
            None => {
                output::error(&format!("--param {p}: expected NAME=VALUE"));
                return 2;
            }
        }
    }
    let config = config_for(file, config, config_explicit);
    let plan = match super::load_plan_with(&config, highwater_config::plan::load_connections) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let names: Vec<&str> = plan.connections.keys().map(String::as_str).collect();
    if let Err(e) = factory.check_connections(&names, &plan.file) {
        output::error(&e.to_string());
        return 2;
    }
    let parameters = match parameters(&factory, &given) {
        Ok(p) => p,
        Err(e) => {
            output::error(&e.to_string());
            return 2;
        }
    };
    let state = match super::open_state(&plan).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let start = Start {
        file: Some(file.display().to_string()),
        ..Start::default()
    };
    execute(factory, plan, state, parameters, start, json).await
}

/// Run the factory's pipeline and report as `pipeline run` does.
async fn execute(
    factory: Factory,
    plan: highwater_config::Plan,
    state: std::sync::Arc<dyn highwater_core::StateStore>,
    parameters: serde_json::Map<String, serde_json::Value>,
    start: Start,
    json: bool,
) -> i32 {
    let name = factory.name.clone();
    let secrets = plan.secrets.clone();
    let outcome = match run_pipeline_with(factory, plan, state.clone(), parameters, start).await {
        Ok(o) => o,
        Err(e) => {
            output::error(&secrets.redact(&e.to_string()));
            return 1;
        }
    };
    if json {
        output::print_run_json(state.as_ref(), &outcome.run_id).await;
    } else {
        println!(
            "pipeline {name} run {} {}",
            outcome.run_id,
            output::status_mark(outcome.status).trim_end()
        );
        for a in &outcome.activities {
            // A failure whose message follows on stderr is only marked.
            let brief = a.error.as_ref().is_some_and(|e| outcome.errors.contains(e));
            println!("  {}", activity_line(a, brief));
            for n in &a.notes {
                println!("          note: {n}");
            }
        }
        for s in &outcome.skipped {
            println!("  {s}: skipped");
        }
    }
    // Each failure once, on stderr (the summary only marks it FAILED).
    for e in &outcome.errors {
        output::error(e);
    }
    match outcome.status {
        highwater_core::RunStatus::Succeeded => 0,
        _ => 1,
    }
}

/// `highwater pipeline rerun RUN_ID [--from-failed]`: a new run of the
/// same pipeline file with the same parameters; from failed, the
/// top-level activities that succeeded are reused, not run again.
pub async fn rerun(config: &Path, run_id: &str, from_failed: bool, json: bool) -> i32 {
    let plan = match super::load_plan_with(config, highwater_config::plan::load_connections) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let state = match super::open_state(&plan).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let record = match state.run(run_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            output::error(&format!(
                "no run {run_id} in {} (see `highwater runs`)",
                plan.file
            ));
            return 2;
        }
        Err(e) => {
            output::error(&e.to_string());
            return 1;
        }
    };
    let info = record.info.clone().unwrap_or_default();
    let Some(file) = info.get("file").and_then(|f| f.as_str()).map(PathBuf::from) else {
        output::error(&format!(
            "run {} is not a pipeline run this version recorded (no pipeline file); \
             start it again with `highwater pipeline run FILE.json`",
            record.run_id
        ));
        return 2;
    };
    match record.status {
        highwater_core::RunStatus::InProgress => {
            output::error(&format!(
                "run {} is still in progress; rerun it when it has ended",
                record.run_id
            ));
            return 2;
        }
        highwater_core::RunStatus::Succeeded if from_failed => {
            output::error(&format!(
                "run {} succeeded: there is no failed activity to rerun from \
                 (without --from-failed the whole pipeline runs again)",
                record.run_id
            ));
            return 2;
        }
        _ => {}
    }
    let factory = match Factory::load(&file) {
        Ok(f) => f,
        Err(e) => {
            output::error(&e.to_string());
            return 2;
        }
    };
    let names: Vec<&str> = plan.connections.keys().map(String::as_str).collect();
    if let Err(e) = factory.check_connections(&names, &plan.file) {
        output::error(&e.to_string());
        return 2;
    }
    let parameters = info
        .get("parameters")
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    let start = Start {
        file: Some(file.display().to_string()),
        rerun: Some(Rerun::of_run(&record, from_failed)),
        ..Start::default()
    };
    execute(factory, plan, state, parameters, start, json).await
}
