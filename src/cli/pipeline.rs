//! `highwater pipeline run FILE.json|NAME [--factory DIR] [--parameters
//! FILE.json] [--param k=v]… [--json]`: run a Data Factory pipeline against
//! the connections of `highwater.yaml`.
//!
//! The pipeline is a file, or a name looked up in the factory root's
//! `pipeline/` (or `pipelines/`) folder: `--factory DIR`, else the current
//! folder when the argument is not a file. Parameters: the defaults, then
//! the `--parameters` file (flat `{name: value}` as the tutorials pass to
//! `Invoke-AzDataFactoryV2Pipeline -ParameterFile`, or ARM-style
//! `{"parameters": {name: {"value": v}}}`), then each `--param` (wins).
//!
//! Which `highwater.yaml`: an explicit `--config` (or `HIGHWATER_CONFIG`)
//! wins; otherwise the one in the pipeline's folder, then in the factory
//! root (the parent of `pipeline/`), then `./highwater.yaml`. Each linked
//! service the pipeline uses must be a connection of that name.

use std::path::{Path, PathBuf};

use highwater_engine::pipeline::rerun::Rerun as RerunOf;
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

/// How the pipeline and its parameters were given on the command line.
pub struct Given {
    pub factory: Option<PathBuf>,
    pub parameters: Option<PathBuf>,
    pub params: Vec<String>,
}

/// The pipeline file for `arg`: the file itself, or the pipeline named
/// `arg` in the factory root's `pipeline/` or `pipelines/` folder.
fn pipeline_file(arg: &Path, factory: Option<&Path>) -> Result<PathBuf, String> {
    if factory.is_none() {
        if arg.is_file() {
            return Ok(arg.to_path_buf());
        }
        if arg.is_dir() {
            return Err(format!(
                "{} is a folder: pass a pipeline file, or a pipeline's name with --factory {}",
                arg.display(),
                arg.display()
            ));
        }
        if arg.extension().is_some_and(|e| e == "json") || arg.components().count() > 1 {
            return Err(format!("{}: no such pipeline file", arg.display()));
        }
    }
    let root = factory.unwrap_or(Path::new("."));
    let name = arg.to_string_lossy();
    let all = highwater_engine::pipeline::model::pipelines_by_name(root);
    if let Some((_, f)) = all
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
    {
        return Ok(f.clone());
    }
    let known: Vec<String> = all.into_iter().map(|(n, _)| n).collect();
    Err(if known.is_empty() {
        format!(
            "no pipeline {name}: {} has no pipeline/ folder with pipeline JSON files (pass a pipeline file, or --factory ROOT)",
            root.display()
        )
    } else {
        format!(
            "no pipeline {name} in {}/pipeline (pipelines: {})",
            root.display(),
            known.join(", ")
        )
    })
}

/// The name → value pairs of a parameter file; values that are not
/// strings as JSON text (parsed back by the parameter's type).
fn parameter_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let at = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("--parameters {at}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("--parameters {at}: invalid JSON: {e}"))?;
    let Some(top) = v.as_object() else {
        return Err(format!(
            "--parameters {at}: expected a JSON object of parameter name → value"
        ));
    };
    // ARM-style: {"$schema": …, "contentVersion": …, "parameters": {n: {"value": v}}}.
    let arm = top
        .get("parameters")
        .and_then(|p| p.as_object())
        .filter(|p| {
            top.contains_key("$schema")
                || top.contains_key("contentVersion")
                || (top.len() == 1
                    && !p.is_empty()
                    && p.values()
                        .all(|x| x.as_object().is_some_and(|o| o.contains_key("value"))))
        });
    let mut out = Vec::new();
    match arm {
        Some(params) => {
            for (k, x) in params {
                let Some(value) = x.get("value") else {
                    return Err(format!(
                        "--parameters {at}: parameters.{k} has no \"value\" (a Key Vault reference is not supported)"
                    ));
                };
                out.push((k.clone(), text_of(value)));
            }
        }
        None => {
            for (k, x) in top {
                if k == "$schema" || k == "contentVersion" {
                    continue;
                }
                out.push((k.clone(), text_of(x)));
            }
        }
    }
    Ok(out)
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn run(config: &Path, config_explicit: bool, arg: &Path, cli: Given, json: bool) -> i32 {
    let file = match pipeline_file(arg, cli.factory.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            output::error(&e);
            return 2;
        }
    };
    let file = file.as_path();
    let factory = match Factory::load(file) {
        Ok(f) => f,
        Err(e) => {
            output::error(&e.to_string());
            return 2;
        }
    };
    let mut given: Vec<(String, String)> = Vec::new();
    if let Some(p) = &cli.parameters {
        match parameter_file(p) {
            Ok(l) => {
                let unknown: Vec<&str> = l
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .filter(|k| !factory.parameters.keys().any(|n| n.eq_ignore_ascii_case(k)))
                    .collect();
                if !unknown.is_empty() {
                    let known: Vec<&str> = factory.parameters.keys().map(String::as_str).collect();
                    output::error(&format!(
                        "--parameters {}: pipeline {} has no parameter {} (parameters: {})",
                        p.display(),
                        factory.name,
                        unknown.join(", "),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ));
                    return 2;
                }
                given = l
            }
            Err(e) => {
                output::error(&e);
                return 2;
            }
        }
    }
    for p in &cli.params {
        match parse_param(p) {
            // An explicit --param wins over the file.
            Some((k, v)) => {
                given.retain(|(g, _)| !g.eq_ignore_ascii_case(&k));
                given.push((k, v));
            }
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
    let refused = highwater_engine::pipeline::sink::check_procedure_sinks(&factory, &|ls| {
        plan.connections.get(ls).map(|c| c.kind.clone())
    });
    if !refused.is_empty() {
        output::error(&refused.join("\n"));
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
    if output::json_logs() {
        output::log_activities(&outcome.run_id, &outcome.activities);
    }
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
    match prepare_rerun(&plan, state.as_ref(), run_id, from_failed).await {
        Ok(r) => execute(r.factory, plan, state, r.parameters, r.start, json).await,
        Err(refused) => {
            output::error(&refused.message);
            refused.code
        }
    }
}

/// Why a rerun cannot start: a message for the user and the exit code
/// (2: the run cannot be rerun as asked, 1: the state store failed).
#[derive(Debug)]
pub struct Refused {
    pub code: i32,
    pub message: String,
}

/// A checked rerun, ready to start under its own new run id.
pub struct Rerun {
    /// The new run's id.
    pub run_id: String,
    pub factory: Factory,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub start: Start,
}

impl Rerun {
    /// Run it to its end (`pipeline rerun` and the monitor's rerun buttons).
    pub async fn run(
        self,
        plan: highwater_config::Plan,
        state: std::sync::Arc<dyn highwater_core::StateStore>,
    ) -> highwater_core::Result<highwater_engine::pipeline::PipelineOutcome> {
        run_pipeline_with(self.factory, plan, state, self.parameters, self.start).await
    }
}

/// Check that `run_id` names a pipeline run that can be rerun (from
/// failed: one that did not succeed), load its pipeline file again and
/// take its parameters: what `pipeline rerun` and `serve`'s
/// `POST /api/runs/ID/rerun` both start. Changes nothing.
pub async fn prepare_rerun(
    plan: &highwater_config::Plan,
    state: &dyn highwater_core::StateStore,
    run_id: &str,
    from_failed: bool,
) -> Result<Rerun, Refused> {
    let refuse = |message: String| Refused { code: 2, message };
    let record = match state.run(run_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(refuse(format!(
                "no run {run_id} in {} (see `highwater runs`)",
                plan.file
            )));
        }
        Err(e) => {
            return Err(Refused {
                code: 1,
                message: plan.secrets.redact(&e.to_string()),
            });
        }
    };
    let info = record.info.clone().unwrap_or_default();
    let Some(file) = info.get("file").and_then(|f| f.as_str()).map(PathBuf::from) else {
        return Err(refuse(format!(
            "run {} is not a pipeline run this version recorded (no pipeline file); \
             start it again with `highwater pipeline run FILE.json`",
            record.run_id
        )));
    };
    match record.status {
        highwater_core::RunStatus::InProgress => {
            return Err(refuse(format!(
                "run {} is still in progress; rerun it when it has ended",
                record.run_id
            )));
        }
        highwater_core::RunStatus::Succeeded if from_failed => {
            return Err(refuse(format!(
                "run {} succeeded: there is no failed activity to rerun from \
                 (without --from-failed the whole pipeline runs again)",
                record.run_id
            )));
        }
        _ => {}
    }
    let factory = Factory::load(&file).map_err(|e| refuse(e.to_string()))?;
    let names: Vec<&str> = plan.connections.keys().map(String::as_str).collect();
    factory
        .check_connections(&names, &plan.file)
        .map_err(|e| refuse(e.to_string()))?;
    let parameters = info
        .get("parameters")
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    let new_id = uuid::Uuid::new_v4().to_string();
    let start = Start {
        run_id: Some(new_id.clone()),
        file: Some(file.display().to_string()),
        rerun: Some(RerunOf::of_run(&record, from_failed)),
        ..Start::default()
    };
    Ok(Rerun {
        run_id: new_id,
        factory,
        parameters,
        start,
    })
}
