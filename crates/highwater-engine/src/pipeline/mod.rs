//! The Data Factory pipeline interpreter: `highwater pipeline run`.
//!
//! ```text
//! Factory::load(pipeline.json)        read the pipeline, its datasets and the pipelines it
//!                                     executes; validate everything at once   (exit 2)
//! check_connections(plan)             every linked service names a connection (exit 2)
//! parameters(--param k=v)             declared, typed, defaults applied (exit 2)
//! begin_run(RunId)
//! run container:                      repeat until every activity has an outcome:
//!   ready   = dependencies all ended and each satisfies one of its conditions
//!   skipped = dependencies all ended and one does not      → Skipped, dependents see it
//!   run the ready ones concurrently; each: evaluate typeProperties, act,
//!   keep {output, status, error} for activity('X'), record_stream_run
//! finish_run(Succeeded | Failed)      leaf rule below                        (exit 0 / 1)
//! ```
//!
//! A container (the pipeline, one ForEach iteration, an If branch) fails by
//! Data Factory's leaf rule: every activity that nothing depends on must have
//! succeeded; a skipped leaf is judged by its own dependencies instead. So a
//! `Failed` path that handles an error makes the pipeline succeed
//! (try/catch), while a failure next to a skipped success path fails it.
//!
//! Expressions: every string in an activity's `typeProperties` (and every
//! `{"value": …, "type": "Expression"}`) is evaluated with highwater-expr just
//! before the activity runs. Queries in `sqlReaderQuery` are the user's SQL
//! with values interpolated into the text, exactly as Data Factory does;
//! stored-procedure parameters are bound, never spliced.
//!
//! Linked services are mapped to `highwater.yaml` connections by name.

mod activity;
pub mod columns;
mod datasets;
pub mod delimited;
mod files;
pub mod model;
pub mod rerun;
pub mod sink;
pub mod trigger;
pub mod typed;
mod validate;
pub mod windows;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::future::LocalBoxFuture;
use highwater_config::Plan;
use highwater_core::{Error, Result, RunStatus, StateStore, StreamRun};
use highwater_expr::{EvalError, Expr, Scope, to_interpolated_string};
use serde_json::{Map, Value, json};

use model::expression_object;
pub use model::{Activity, ActivityKind, Factory, Outcome};

/// The result of a pipeline run.
#[derive(Debug)]
pub struct PipelineOutcome {
    pub run_id: String,
    pub status: RunStatus,
    /// One record per activity execution, in the order they ended.
    pub activities: Vec<StreamRun>,
    /// Activities that were skipped (their dependency conditions did not hold).
    pub skipped: Vec<String>,
    /// Failures that decided the pipeline's status, each naming its activity.
    pub errors: Vec<String>,
}

/// Turn `--param name=value` pairs into the `parameters` object: values
/// of string parameters are taken as they are, others are parsed as JSON.
/// Unknown names and missing required values are configuration errors.
pub fn parameters(factory: &Factory, given: &[(String, String)]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    for (name, decl) in &factory.parameters {
        if let Some(d) = decl.get("defaultValue") {
            out.insert(name.clone(), d.clone());
        }
    }
    for (k, v) in given {
        let Some((name, decl)) = factory
            .parameters
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
        else {
            let known: Vec<&str> = factory.parameters.keys().map(String::as_str).collect();
            errors.push(format!(
                "--param {k}: the pipeline has no parameter {k} (parameters: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
            continue;
        };
        let ty = decl
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string")
            .to_ascii_lowercase();
        let value = if ty == "string" || ty == "securestring" {
            Value::String(v.clone())
        } else {
            match serde_json::from_str::<Value>(v) {
                Ok(j) => j,
                Err(e) => {
                    errors.push(format!(
                        "--param {k}: parameter {name} has type {ty}; its value must be JSON: {e}"
                    ));
                    continue;
                }
            }
        };
        out.insert(name.clone(), value);
    }
    for name in factory.parameters.keys() {
        if !out.contains_key(name) {
            errors.push(format!(
                "parameter {name} has no default value; pass --param {name}=VALUE"
            ));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Error::config(&factory.file, errors.join("\n  ")))
    }
}

/// What the interpreter needs for one run.
struct Run {
    factory: Factory,
    plan: Plan,
    state: Arc<dyn StateStore>,
    run_id: String,
    records: Mutex<Vec<StreamRun>>,
    skipped: Mutex<Vec<String>>,
    /// The run this one reruns, and what it may reuse.
    rerun: Option<rerun::Rerun>,
    /// Activity executions under way, as recorded (`InProgress`).
    started: Mutex<HashMap<String, StreamRun>>,
}

/// One pipeline execution: the pipeline that was started, or one run by an
/// Execute Pipeline activity (its own run id, parameters and variables).
struct PipeCtx {
    pipeline: Value,
    variables: Mutex<Map<String, Value>>,
    /// `trigger()`, when a trigger started the run.
    trigger: Option<Value>,
}

impl PipeCtx {
    fn new(
        name: &str,
        run_id: &str,
        parameters: Map<String, Value>,
        variables: &Map<String, Value>,
        parent: Option<&Value>,
    ) -> PipeCtx {
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let pipeline = json!({
            "RunId": run_id,
            "Pipeline": name,
            "DataFactory": "highwater",
            "TriggerTime": now,
            "TriggerName": "Manual",
            "TriggerType": "Manual",
            "TriggerId": "",
            "GroupId": parent.and_then(|p| p.get("GroupId")).cloned().unwrap_or_else(|| json!(run_id)),
            "TriggeredByPipelineName": parent.and_then(|p| p.get("Pipeline")).cloned(),
            "TriggeredByPipelineRunId": parent.and_then(|p| p.get("RunId")).cloned(),
            "parameters": parameters,
            "globalParameters": {},
            "libraryVariables": {},
        });
        let variables = variables
            .iter()
            .map(|(k, d)| {
                let default = d.get("defaultValue").cloned().unwrap_or_else(|| {
                    match d.get("type").and_then(Value::as_str) {
                        Some(t) if t.eq_ignore_ascii_case("array") => json!([]),
                        Some(t) if t.eq_ignore_ascii_case("boolean") => json!(false),
                        _ => json!(""),
                    }
                });
                (k.clone(), default)
            })
            .collect();
        PipeCtx {
            pipeline,
            variables: Mutex::new(variables),
            trigger: None,
        }
    }
}

/// One container's view: the activity results visible from it (outer
/// layers first) and the ForEach item.
#[derive(Clone)]
struct Frame {
    run: Arc<Run>,
    ctx: Arc<PipeCtx>,
    layers: Vec<Arc<Mutex<Map<String, Value>>>>,
    item: Option<Value>,
    /// Prefix of activity record names: `ForEach[2]/`.
    prefix: String,
}

impl Frame {
    fn child(&self, item: Option<Value>, prefix: String) -> Frame {
        let mut layers = self.layers.clone();
        layers.push(Arc::new(Mutex::new(Map::new())));
        Frame {
            run: self.run.clone(),
            ctx: self.ctx.clone(),
            layers,
            item: item.or_else(|| self.item.clone()),
            prefix,
        }
    }
}

struct EvalScope<'a> {
    frame: &'a Frame,
    dataset: Option<&'a Map<String, Value>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Scope for EvalScope<'_> {
    fn pipeline(&self) -> std::result::Result<Value, EvalError> {
        Ok(self.frame.ctx.pipeline.clone())
    }

    fn activity(&self, name: &str) -> std::result::Result<Value, EvalError> {
        for layer in self.frame.layers.iter().rev() {
            if let Some(v) = highwater_expr::value::get_ci(&lock(layer), name) {
                return Ok(v.clone());
            }
        }
        Err(EvalError::not_found(format!(
            "activity '{name}' has not run (an activity can read only activities it depends on, directly or not)"
        )))
    }

    fn item(&self) -> std::result::Result<Value, EvalError> {
        self.frame
            .item
            .clone()
            .ok_or_else(|| EvalError::context("item() is only available inside a ForEach activity"))
    }

    fn variable(&self, name: &str) -> std::result::Result<Value, EvalError> {
        let vars = lock(&self.frame.ctx.variables);
        highwater_expr::value::get_ci(&vars, name)
            .cloned()
            .ok_or_else(|| {
                EvalError::not_found(format!(
                    "variable '{name}' is not declared in the pipeline's `variables`"
                ))
            })
    }

    fn trigger(&self) -> std::result::Result<Value, EvalError> {
        self.frame.ctx.trigger.clone().ok_or_else(|| {
            EvalError::context(
                "trigger() is only available when a trigger started the run (highwater serve)",
            )
        })
    }

    fn dataset(&self) -> std::result::Result<Value, EvalError> {
        match self.dataset {
            Some(p) => Ok(Value::Object(p.clone())),
            None => Err(EvalError::context(
                "dataset() is only available inside a dataset definition",
            )),
        }
    }
}

/// Evaluate every expression under `v` (see the module doc).
fn resolve(v: &Value, path: &str, scope: &dyn Scope) -> Result<Value> {
    let eval = |text: &str| -> Result<Value> {
        let expr = Expr::parse(text).map_err(|e| Error::config(path, e))?;
        expr.eval(scope).map_err(|error| {
            Error::data(format!(
                "{path}: {}",
                highwater_expr::Error::Eval {
                    error,
                    text: text.to_string()
                }
            ))
        })
    };
    if let Some(text) = expression_object(v) {
        return eval(text);
    }
    Ok(match v {
        Value::String(s) => eval(s)?,
        Value::Array(l) => Value::Array(
            l.iter()
                .enumerate()
                .map(|(i, x)| resolve(x, &format!("{path}[{i}]"), scope))
                .collect::<Result<_>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), resolve(x, &format!("{path}.{k}"), scope)?)))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

/// Text of a resolved value (`null` and missing: empty).
fn text(v: Option<&Value>) -> String {
    v.map(to_interpolated_string).unwrap_or_default()
}

/// Run a loaded pipeline with `parameters` against the plan's connections.
pub async fn run_pipeline(
    factory: Factory,
    plan: Plan,
    state: Arc<dyn StateStore>,
    parameters: Map<String, Value>,
    run_id: Option<String>,
) -> Result<PipelineOutcome> {
    let start = Start {
        run_id,
        ..Start::default()
    };
    run_pipeline_with(factory, plan, state, parameters, start).await
}

/// How a pipeline run starts: its id, the file it was loaded from
/// (recorded with the run, for `pipeline rerun`), and the run it reruns.
#[derive(Default)]
pub struct Start {
    pub run_id: Option<String>,
    pub file: Option<String>,
    pub rerun: Option<rerun::Rerun>,
    /// What `trigger()` returns when a trigger started the run
    /// ([`trigger::trigger_value`]); also sets `pipeline().TriggerName`,
    /// `TriggerType` and `TriggerTime`.
    pub trigger: Option<Value>,
}

/// [`run_pipeline`] with everything a start can say.
pub async fn run_pipeline_with(
    factory: Factory,
    plan: Plan,
    state: Arc<dyn StateStore>,
    parameters: Map<String, Value>,
    start: Start,
) -> Result<PipelineOutcome> {
    let run_id = start
        .run_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let started = Utc::now();
    let info = json!({
        "pipeline": factory.name,
        "file": start.file,
        "parameters": parameters,
        "rerunOf": start.rerun.as_ref().map(|r| r.of.clone()),
        "fromFailed": start.rerun.as_ref().map(|r| r.from_failed),
        "trigger": start.trigger.as_ref().and_then(|t| t.get("name")).cloned(),
        "scheduledTime": start.trigger.as_ref().and_then(|t| t.get("scheduledTime")).cloned(),
        "windowStart": start.trigger.as_ref().and_then(|t| t["outputs"].get("windowStartTime")).cloned(),
        "windowEnd": start.trigger.as_ref().and_then(|t| t["outputs"].get("windowEndTime")).cloned(),
    });
    let mut ctx = PipeCtx::new(&factory.name, &run_id, parameters, &factory.variables, None);
    if let Some(t) = &start.trigger {
        ctx.pipeline["TriggerName"] = t["name"].clone();
        ctx.pipeline["TriggerType"] = t["type"].clone();
        ctx.pipeline["TriggerTime"] = t["startTime"].clone();
        ctx.trigger = Some(t.clone());
    }
    state.begin_run(&run_id, started).await?;
    state.set_run_info(&run_id, &info).await?;
    let activities = factory.activities.clone();
    let run = Arc::new(Run {
        factory,
        plan,
        state: state.clone(),
        run_id: run_id.clone(),
        records: Mutex::new(Vec::new()),
        skipped: Mutex::new(Vec::new()),
        rerun: start.rerun,
        started: Mutex::new(HashMap::new()),
    });
    let frame = Frame {
        run: run.clone(),
        ctx: Arc::new(ctx),
        layers: vec![Arc::new(Mutex::new(Map::new()))],
        item: None,
        prefix: String::new(),
    };
    let result = run_container(&frame, &activities).await;
    let (status, errors) = match &result {
        Ok(errors) if errors.is_empty() => (RunStatus::Succeeded, vec![]),
        Ok(errors) => (RunStatus::Failed, errors.clone()),
        Err(e) => (RunStatus::Failed, vec![e.to_string()]),
    };
    state.finish_run(&run_id, status, Utc::now()).await?;
    result?;
    let activities = std::mem::take(&mut *lock(&run.records));
    let skipped = std::mem::take(&mut *lock(&run.skipped));
    Ok(PipelineOutcome {
        run_id,
        status,
        activities,
        skipped,
        errors,
    })
}

/// Run a container; `Ok(errors)` is empty when it succeeded by the leaf
/// rule, else the failures that decided it. `Err` only when the state
/// store fails.
fn run_container<'a>(
    frame: &'a Frame,
    acts: &'a [Activity],
) -> LocalBoxFuture<'a, Result<Vec<String>>> {
    Box::pin(async move {
        let key = |n: &str| n.to_lowercase();
        let mut ended: HashMap<String, (Outcome, Option<String>)> = HashMap::new();
        while ended.len() < acts.len() {
            let before = ended.len();
            let mut ready = Vec::new();
            let pending: Vec<&Activity> = acts
                .iter()
                .filter(|a| !ended.contains_key(&key(&a.name)))
                .collect();
            for a in pending {
                let deps: Option<Vec<Outcome>> = a
                    .depends_on
                    .iter()
                    .map(|d| ended.get(&key(&d.activity)).map(|e| e.0))
                    .collect();
                let Some(deps) = deps else { continue };
                let run = a
                    .depends_on
                    .iter()
                    .zip(&deps)
                    .all(|(d, o)| d.conditions.iter().any(|c| c.accepts(*o)));
                if run {
                    ready.push(a);
                } else {
                    lock(&frame.run.skipped).push(format!("{}{}", frame.prefix, a.name));
                    lock(frame.layers.last().expect("a layer"))
                        .insert(a.name.clone(), json!({"output": {}, "status": "Skipped"}));
                    ended.insert(key(&a.name), (Outcome::Skipped, None));
                }
            }
            if ready.is_empty() {
                if ended.len() == before {
                    return Err(Error::config(
                        &frame.run.factory.file,
                        "activities wait on each other; check dependsOn",
                    ));
                }
                continue;
            }
            let results =
                futures::future::join_all(ready.iter().map(|a| run_activity(frame, a))).await;
            for (a, r) in ready.iter().zip(results) {
                let (o, e) = r?;
                ended.insert(key(&a.name), (o, e));
            }
        }
        // The leaf rule.
        fn judge(
            a: &Activity,
            acts: &[Activity],
            ended: &HashMap<String, (Outcome, Option<String>)>,
            errors: &mut Vec<String>,
        ) {
            match &ended[&a.name.to_lowercase()] {
                (Outcome::Succeeded, _) => {}
                (Outcome::Failed, e) => {
                    let e = e.clone().unwrap_or_default();
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
                (Outcome::Skipped, _) => {
                    for d in &a.depends_on {
                        if let Some(p) = acts
                            .iter()
                            .find(|p| p.name.eq_ignore_ascii_case(&d.activity))
                        {
                            judge(p, acts, ended, errors);
                        }
                    }
                }
            }
        }
        let mut errors = Vec::new();
        for leaf in acts.iter().filter(|a| {
            !acts.iter().any(|o| {
                o.depends_on
                    .iter()
                    .any(|d| d.activity.eq_ignore_ascii_case(&a.name))
            })
        }) {
            judge(leaf, acts, &ended, &mut errors);
        }
        Ok(errors)
    })
}

/// What one activity produced.
#[derive(Default)]
struct Done {
    output: Value,
    rows_read: u64,
    rows_written: u64,
    outputs: Vec<String>,
    notes: Vec<String>,
}

/// Run one activity, keep its result for `activity()` and record it
/// (`InProgress` with its input when it starts, then its outcome).
/// `Err` only when the state store fails.
async fn run_activity(frame: &Frame, a: &Activity) -> Result<(Outcome, Option<String>)> {
    let started_at = Utc::now();
    let record_name = format!("{}{}", frame.prefix, a.name);
    if let Some(earlier) = rerun::reusable(frame, a) {
        return rerun::reuse(frame, a, &record_name, earlier, started_at).await;
    }
    tracing::info!(activity = %record_name, kind = a.kind.as_str(), "Activity started.");
    let mut rec = StreamRun {
        stream: record_name.clone(),
        mode: a.kind.as_str().to_string(),
        status: RunStatus::InProgress,
        rows_read: 0,
        rows_written: 0,
        watermark_from: None,
        watermark_to: None,
        outputs: vec![],
        error: None,
        full_reload: false,
        notes: vec![],
        started_at,
        finished_at: None,
        pipeline: Some(text(frame.ctx.pipeline.get("Pipeline"))),
        input: None,
        output: None,
    };
    let mut retries = Vec::new();
    let result = loop {
        let attempt = attempt_activity(frame, a, &record_name, &mut rec);
        let attempt = match a.timeout {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::data(format!(
                        "timed out after {}s (policy.timeout)",
                        limit.as_secs()
                    )))
                }),
            None => attempt.await,
        };
        match attempt {
            Err(e) if (retries.len() as u32) < a.retry => {
                let e = frame.run.plan.secrets.redact(&e.to_string());
                retries.push(format!(
                    "attempt {} failed, retrying in {}s: {e}",
                    retries.len() + 1,
                    a.retry_interval.as_secs()
                ));
                tokio::time::sleep(a.retry_interval).await;
            }
            other => break other,
        }
    };
    lock(&frame.run.started).remove(&record_name);
    let (outcome, mut done, error) = match result {
        Ok(done) => (Outcome::Succeeded, done, None),
        Err(e) => {
            let message = frame.run.plan.secrets.redact(&e.to_string());
            (Outcome::Failed, Done::default(), Some(message))
        }
    };
    retries.append(&mut done.notes);
    done.notes = retries;
    let error_text = error
        .as_ref()
        .map(|m| format!("activity {record_name} ({}) failed: {m}", a.kind.as_str()));
    let mut entry = json!({"output": done.output, "status": outcome.as_str()});
    if let Some(m) = &error {
        entry["error"] =
            json!({"message": m, "errorCode": "highwater", "failureType": "UserError"});
    }
    lock(frame.layers.last().expect("a layer")).insert(a.name.clone(), entry);
    rec.status = match outcome {
        Outcome::Succeeded => RunStatus::Succeeded,
        _ => RunStatus::Failed,
    };
    rec.rows_read = done.rows_read;
    rec.rows_written = done.rows_written;
    rec.outputs = done.outputs;
    rec.error = error_text.clone();
    rec.notes = done.notes;
    rec.finished_at = Some(Utc::now());
    rec.output = Some(done.output);
    frame
        .run
        .state
        .record_stream_run(&frame.run.run_id, &rec)
        .await?;
    lock(&frame.run.records).push(rec);
    Ok((outcome, error_text))
}

/// One execution of an activity: evaluate its `typeProperties` (the
/// recorded input), record it `InProgress`, act.
async fn attempt_activity(
    frame: &Frame,
    a: &Activity,
    record_name: &str,
    rec: &mut StreamRun,
) -> Result<Done> {
    // Filter's condition and Until's expression are evaluated as they run.
    let tp = resolve(&activity::eager(a), "typeProperties", &scope(frame))?;
    rec.input = Some(tp.clone());
    rec.output = None;
    frame
        .run
        .state
        .record_stream_run(&frame.run.run_id, rec)
        .await?;
    lock(&frame.run.started).insert(record_name.to_string(), rec.clone());
    execute(frame, a, &tp, record_name).await
}

/// The state key of a Copy: `pipeline/<pipeline>/<activity record>`, and
/// in a run a tumbling window started, `…@<window start>`, so the windows
/// of one trigger (running at once, up to `maxConcurrency`) each have
/// their own key, and a window's rerun finds its earlier attempt.
fn copy_key(frame: &Frame, pipeline: &str, record_name: &str) -> String {
    let window = frame
        .ctx
        .trigger
        .as_ref()
        .and_then(|t| t["outputs"].get("windowStartTime"))
        .and_then(Value::as_str);
    match window {
        Some(w) => format!("pipeline/{pipeline}/{record_name}@{w}"),
        None => format!("pipeline/{pipeline}/{record_name}"),
    }
}

/// Say, in the record of an activity under way, the activity run id its
/// attempt uses (a Copy's attempt id), so that a rerun of a run that
/// stopped mid-copy can tell whether that copy published.
async fn note_activity_run_id(
    frame: &Frame,
    record_name: &str,
    activity_run_id: &str,
) -> Result<()> {
    let rec = lock(&frame.run.started).get(record_name).cloned();
    if let Some(mut rec) = rec {
        rec.output = Some(json!({ "activityRunId": activity_run_id }));
        frame
            .run
            .state
            .record_stream_run(&frame.run.run_id, &rec)
            .await?;
    }
    Ok(())
}

fn scope(frame: &Frame) -> EvalScope<'_> {
    EvalScope {
        frame,
        dataset: None,
    }
}

async fn execute(frame: &Frame, a: &Activity, tp: &Value, record_name: &str) -> Result<Done> {
    let tp = tp.clone();
    match a.kind {
        ActivityKind::Lookup => activity::lookup::lookup(frame, a, &tp, record_name).await,
        ActivityKind::Copy => activity::copy::copy(frame, a, &tp, record_name).await,
        ActivityKind::StoredProcedure => {
            activity::stored_procedure::stored_procedure(frame, a, &tp).await
        }
        ActivityKind::ForEach => activity::for_each::for_each(frame, a, &tp).await,
        ActivityKind::IfCondition => activity::if_condition::if_condition(frame, a, &tp).await,
        ActivityKind::SetVariable | ActivityKind::AppendVariable => {
            activity::variables::set_or_append(frame, a, &tp)
        }
        ActivityKind::Wait => activity::wait::wait(&tp).await,
        ActivityKind::ExecutePipeline => {
            activity::execute_pipeline::execute_pipeline(frame, a, &tp).await
        }
        ActivityKind::Fail => activity::fail::fail(&tp),
        ActivityKind::Script => activity::script::script(frame, a, &tp).await,
        ActivityKind::Filter => activity::filter::filter(frame, a, &tp),
        ActivityKind::Until => activity::until::until(frame, a, &tp).await,
        ActivityKind::Switch => activity::switch::switch(frame, a, &tp).await,
        ActivityKind::Web => activity::web::web(&tp).await,
        ActivityKind::GetMetadata => activity::get_metadata::get_metadata(frame, a, &tp).await,
        ActivityKind::Delete => activity::delete::delete(frame, a, &tp).await,
        ActivityKind::Validation => activity::validation::validation(frame, a, &tp).await,
    }
}
