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

pub mod delimited;
pub mod model;
pub mod sink;
pub mod typed;
mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use highwater_config::Plan;
use highwater_core::{
    Delta, Error, NullCursorPolicy, ReadRequest, Relation, Result, RunStatus, StateStore,
    StreamRun, TableWrite, WriteRequest,
};
use highwater_expr::{EvalError, Expr, Scope, to_interpolated_string};
use serde_json::{Map, Value, json};

pub use model::{Activity, ActivityKind, Factory, Outcome};
use model::{DatasetRef, expression_object};

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
}

/// One pipeline execution: the pipeline that was started, or one run by an
/// Execute Pipeline activity (its own run id, parameters and variables).
struct PipeCtx {
    pipeline: Value,
    variables: Mutex<Map<String, Value>>,
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
    let run_id = run_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let started = Utc::now();
    let ctx = PipeCtx::new(&factory.name, &run_id, parameters, &factory.variables, None);
    state.begin_run(&run_id, started).await?;
    let activities = factory.activities.clone();
    let run = Arc::new(Run {
        factory,
        plan,
        state: state.clone(),
        run_id: run_id.clone(),
        records: Mutex::new(Vec::new()),
        skipped: Mutex::new(Vec::new()),
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

/// Run one activity, keep its result for `activity()` and record it.
/// `Err` only when the state store fails.
async fn run_activity(frame: &Frame, a: &Activity) -> Result<(Outcome, Option<String>)> {
    let started_at = Utc::now();
    let record_name = format!("{}{}", frame.prefix, a.name);
    tracing::info!(activity = %record_name, kind = a.kind.as_str(), "Activity started.");
    let mut retries = Vec::new();
    let result = loop {
        let attempt = match a.timeout {
            Some(limit) => tokio::time::timeout(limit, execute(frame, a, &record_name))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::data(format!(
                        "timed out after {}s (policy.timeout)",
                        limit.as_secs()
                    )))
                }),
            None => execute(frame, a, &record_name).await,
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
    let rec = StreamRun {
        stream: record_name,
        mode: a.kind.as_str().to_string(),
        status: match outcome {
            Outcome::Succeeded => RunStatus::Succeeded,
            _ => RunStatus::Failed,
        },
        rows_read: done.rows_read,
        rows_written: done.rows_written,
        watermark_from: None,
        watermark_to: None,
        outputs: done.outputs,
        error: error_text.clone(),
        full_reload: false,
        notes: done.notes,
        started_at,
        finished_at: Some(Utc::now()),
        pipeline: Some(text(frame.ctx.pipeline.get("Pipeline"))),
    };
    frame
        .run
        .state
        .record_stream_run(&frame.run.run_id, &rec)
        .await?;
    lock(&frame.run.records).push(rec);
    Ok((outcome, error_text))
}

fn scope(frame: &Frame) -> EvalScope<'_> {
    EvalScope {
        frame,
        dataset: None,
    }
}

async fn execute(frame: &Frame, a: &Activity, record_name: &str) -> Result<Done> {
    let tp = resolve(&a.type_properties, "typeProperties", &scope(frame))?;
    match a.kind {
        ActivityKind::Lookup => lookup(frame, a, &tp, record_name).await,
        ActivityKind::Copy => copy(frame, a, &tp, record_name).await,
        ActivityKind::StoredProcedure => stored_procedure(frame, a, &tp).await,
        ActivityKind::ForEach => for_each(frame, a, &tp).await,
        ActivityKind::IfCondition => {
            let cond = match tp.get("expression") {
                Some(Value::Bool(b)) => *b,
                other => {
                    return Err(Error::data(format!(
                        "typeProperties.expression must evaluate to a boolean, got {}",
                        other.map(Value::to_string).unwrap_or("nothing".into())
                    )));
                }
            };
            let branch = if cond { &a.children } else { &a.otherwise };
            let child = frame.child(None, format!("{}{}/", frame.prefix, a.name));
            let errors = run_container(&child, branch).await?;
            if errors.is_empty() {
                Ok(Done {
                    output: json!({"expression": cond}),
                    notes: vec![format!("expression was {cond}")],
                    ..Done::default()
                })
            } else {
                Err(Error::data(errors.join("; ")))
            }
        }
        ActivityKind::SetVariable | ActivityKind::AppendVariable => {
            let name = text(tp.get("variableName"));
            let value = tp.get("value").cloned().unwrap_or(Value::Null);
            let mut vars = lock(&frame.ctx.variables);
            let Some(key) = vars.keys().find(|k| k.eq_ignore_ascii_case(&name)).cloned() else {
                return Err(Error::config(
                    "typeProperties.variableName",
                    format!("variable {name} is not declared in the pipeline's `variables`"),
                ));
            };
            if a.kind == ActivityKind::SetVariable {
                vars.insert(key.clone(), value.clone());
            } else {
                match vars.get_mut(&key) {
                    Some(Value::Array(l)) => l.push(value.clone()),
                    Some(v @ Value::Null) => *v = json!([value.clone()]),
                    _ => {
                        return Err(Error::data(format!(
                            "variable {name} is not an array; Append Variable needs one"
                        )));
                    }
                }
            }
            Ok(Done {
                notes: vec![format!(
                    "{key} = {}",
                    highwater_expr::value::to_compact_json(&value)
                )],
                output: json!({"name": key, "value": value}),
                ..Done::default()
            })
        }
        ActivityKind::Wait => {
            let secs = match tp.get("waitTimeInSeconds") {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                Error::data("typeProperties.waitTimeInSeconds must be a number of seconds ≥ 0")
            })?;
            tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
            Ok(Done {
                output: json!({}),
                ..Done::default()
            })
        }
        ActivityKind::ExecutePipeline => execute_pipeline(frame, a, &tp).await,
        ActivityKind::Fail => Err(Error::data(format!(
            "{} (error code {})",
            text(tp.get("message")),
            text(tp.get("errorCode"))
        ))),
    }
}

async fn execute_pipeline(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let name = text(tp.get("pipeline").and_then(|p| p.get("referenceName")));
    let def = frame.run.factory.called.get(name.trim()).ok_or_else(|| {
        Error::config(
            "typeProperties.pipeline",
            format!("pipeline {name} was not found in the pipeline's folder"),
        )
    })?;
    let mut params: Map<String, Value> = def
        .parameters
        .iter()
        .filter_map(|(k, d)| Some((k.clone(), d.get("defaultValue")?.clone())))
        .collect();
    if let Some(given) = tp.get("parameters").and_then(Value::as_object) {
        for (k, v) in given {
            let Some(key) = def.parameters.keys().find(|n| n.eq_ignore_ascii_case(k)) else {
                return Err(Error::config(
                    format!("typeProperties.parameters.{k}"),
                    format!("pipeline {} has no parameter {k}", def.name),
                ));
            };
            params.insert(key.clone(), v.clone());
        }
    }
    if let Some(missing) = def.parameters.keys().find(|k| !params.contains_key(*k)) {
        return Err(Error::config(
            "typeProperties.parameters",
            format!(
                "pipeline {} needs parameter {missing}, which has no default value",
                def.name
            ),
        ));
    }
    let run_id = uuid::Uuid::new_v4().to_string();
    let child = Frame {
        run: frame.run.clone(),
        ctx: Arc::new(PipeCtx::new(
            &def.name,
            &run_id,
            params,
            &def.variables,
            Some(&frame.ctx.pipeline),
        )),
        layers: vec![Arc::new(Mutex::new(Map::new()))],
        item: None,
        prefix: format!("{}{}/", frame.prefix, a.name),
    };
    let errors = run_container(&child, &def.activities).await?;
    if !errors.is_empty() {
        return Err(Error::data(format!(
            "pipeline {} failed: {}",
            def.name,
            errors.join("; ")
        )));
    }
    Ok(Done {
        output: json!({"pipelineName": def.name, "pipelineRunId": run_id}),
        notes: vec![format!("ran pipeline {} (run id {run_id})", def.name)],
        ..Done::default()
    })
}

async fn for_each(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let items = match tp.get("items") {
        Some(Value::Array(l)) => l.clone(),
        other => {
            return Err(Error::data(format!(
                "typeProperties.items must evaluate to an array, got {}",
                other.map(Value::to_string).unwrap_or("nothing".into())
            )));
        }
    };
    let sequential = tp
        .get("isSequential")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let batch = if sequential {
        1
    } else {
        tp.get("batchCount")
            .and_then(Value::as_u64)
            .unwrap_or(20)
            .clamp(1, 50) as usize
    };
    let n = items.len();
    let results: Vec<(usize, Result<Vec<String>>)> =
        futures::stream::iter(items.into_iter().enumerate())
            .map(|(i, item)| async move {
                let child = frame.child(Some(item), format!("{}{}[{i}]/", frame.prefix, a.name));
                (i, run_container(&child, &a.children).await)
            })
            .buffer_unordered(batch)
            .collect()
            .await;
    let mut failed = Vec::new();
    for (i, r) in results {
        let errors = r?;
        if !errors.is_empty() {
            failed.push((i, errors.join("; ")));
        }
    }
    failed.sort();
    if let Some((i, first)) = failed.first() {
        return Err(Error::data(format!(
            "{} of {n} iterations failed (first: item {i}: {first})",
            failed.len()
        )));
    }
    Ok(Done {
        output: json!({}),
        notes: vec![format!("{n} iterations, at most {batch} at once")],
        ..Done::default()
    })
}

/// A dataset with its `typeProperties` evaluated for one use.
struct ResolvedDataset {
    name: String,
    kind: String,
    linked_service: String,
    tp: Value,
    is_file: bool,
}

fn dataset(frame: &Frame, r: &DatasetRef) -> Result<ResolvedDataset> {
    let d = frame.run.factory.datasets.get(&r.name).ok_or_else(|| {
        Error::config(
            format!("dataset {}", r.name),
            "not found in dataset/ or datasets/ next to the pipeline",
        )
    })?;
    let mut params = d.defaults.clone();
    for (k, v) in &r.parameters {
        let v = resolve(
            v,
            &format!("dataset {} parameter {k}", r.name),
            &scope(frame),
        )?;
        params.insert(k.clone(), v);
    }
    let tp = resolve(
        &d.type_properties,
        &format!("dataset {} typeProperties", d.name),
        &EvalScope {
            frame,
            dataset: Some(&params),
        },
    )?;
    Ok(ResolvedDataset {
        name: d.name.clone(),
        kind: d.kind.clone(),
        linked_service: d.linked_service.clone(),
        tp,
        is_file: d.is_file(),
    })
}

fn connection<'a>(
    frame: &'a Frame,
    linked_service: &str,
) -> Result<&'a highwater_config::ConnectionSpec> {
    frame
        .run
        .plan
        .connections
        .get(linked_service)
        .ok_or_else(|| {
            Error::config(
                format!("linked service {linked_service}"),
                format!(
                    "no connection named {linked_service} in {}",
                    frame.run.plan.file
                ),
            )
        })
}

/// The table of a table dataset: `tableName` or `schema` + `table`.
fn dataset_table(d: &ResolvedDataset) -> Option<Relation> {
    let tp = &d.tp;
    let unbracket = |s: &str| {
        s.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    };
    if let Some(t) = tp
        .get("table")
        .map(|v| text(Some(v)))
        .filter(|t| !t.is_empty())
    {
        let schema = tp
            .get("schema")
            .map(|v| text(Some(v)))
            .filter(|s| !s.is_empty())
            .map(|s| unbracket(&s));
        return Some(Relation::Table {
            schema,
            name: unbracket(&t),
        });
    }
    let t = text(tp.get("tableName"));
    if t.trim().is_empty() {
        return None;
    }
    let parts: Vec<String> = t.split("].[").map(unbracket).collect();
    Some(if parts.len() == 2 {
        Relation::Table {
            schema: Some(parts[0].clone()),
            name: parts[1].clone(),
        }
    } else {
        Relation::table(&unbracket(&t))
    })
}

/// The query of a Lookup or Copy source, else the dataset's table.
fn source_relation(tp: &Value, d: &ResolvedDataset) -> Result<Relation> {
    let source = tp.get("source").cloned().unwrap_or(Value::Null);
    for k in ["sqlReaderQuery", "query", "sqlQuery"] {
        let q = text(source.get(k));
        if !q.trim().is_empty() {
            return Ok(Relation::Query(q));
        }
    }
    dataset_table(d).ok_or_else(|| {
        Error::config(
            format!("dataset {}", d.name),
            "no query in typeProperties.source and no table in the dataset",
        )
    })
}

async fn read_rows(
    frame: &Frame,
    d: &ResolvedDataset,
    relation: Relation,
    record_name: &str,
) -> Result<highwater_core::Extract> {
    if d.is_file {
        return Err(Error::config(
            format!("dataset {}", d.name),
            format!(
                "a {} dataset cannot be read yet; read from a table dataset",
                d.kind
            ),
        ));
    }
    let conn = connection(frame, &d.linked_service)?;
    let source = highwater_connectors::source(&conn.kind, conn.url.expose()).await?;
    let req = ReadRequest {
        stream: record_name.to_string(),
        relation,
        delta: Delta::Full,
        primary_key: vec![],
        batch_size: 16_384,
        on_null_cursor: NullCursorPolicy::default(),
    };
    let read = source.read(&req);
    crate::attempt::bounded("reading the source", crate::attempt::idle_timeout(), read).await
}

async fn lookup(frame: &Frame, a: &Activity, tp: &Value, record_name: &str) -> Result<Done> {
    let r = a.lookup_dataset().ok_or_else(|| {
        Error::config(
            "typeProperties.dataset",
            "a Lookup needs a dataset reference",
        )
    })?;
    let d = dataset(frame, &r)?;
    let relation = source_relation(tp, &d)?;
    let first_only = tp
        .get("firstRowOnly")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut extract = read_rows(frame, &d, relation, record_name).await?;
    let mut rows: Vec<Value> = Vec::new();
    while let Some(batch) = extract.batches.next().await {
        let batch = batch?;
        let mut w = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::JsonArray>(Vec::new());
        w.write(&batch)
            .map_err(|e| Error::data(format!("Lookup result: {e}")))?;
        w.finish()
            .map_err(|e| Error::data(format!("Lookup result: {e}")))?;
        let bytes = w.into_inner();
        if !bytes.is_empty()
            && let Ok(Value::Array(l)) = serde_json::from_slice::<Value>(&bytes)
        {
            rows.extend(l);
        }
        if first_only && !rows.is_empty() {
            break;
        }
    }
    let n = rows.len() as u64;
    let output = if first_only {
        match rows.into_iter().next() {
            Some(r) => json!({ "firstRow": r }),
            None => json!({}),
        }
    } else {
        json!({ "count": n, "value": rows })
    };
    Ok(Done {
        output,
        rows_read: n,
        ..Done::default()
    })
}

/// Output path and format of a file dataset. A dataset that names only a
/// folder gets a file inside it named by Data Factory's rule for copies
/// from a database, `data_<activity run id>.<ext>`, so two copies (say
/// the iterations of a parallel ForEach) never write the same file; the
/// bool says whether the name was generated.
fn file_target(
    d: &ResolvedDataset,
    activity_run_id: &str,
    extension: Option<&str>,
) -> (String, &'static str, bool) {
    let tp = &d.tp;
    let mut parts = Vec::new();
    let loc = tp.get("location").unwrap_or(tp);
    for k in ["container", "bucketName", "fileSystem", "folderPath"] {
        parts.push(text(loc.get(k)));
    }
    let file_name = text(loc.get("fileName"));
    let format = file_format(d);
    let generated = file_name.trim_matches('/').is_empty();
    if generated {
        let ext = match (extension, format) {
            (Some(e), _) => e,
            (None, "parquet") => ".parquet",
            (None, "jsonl") => ".json",
            _ => ".txt",
        };
        parts.push(format!("data_{activity_run_id}{ext}"));
    } else {
        parts.push(file_name);
    }
    let path = parts
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    (path, format, generated)
}

/// The output format of a file dataset.
fn file_format(d: &ResolvedDataset) -> &'static str {
    let tp = &d.tp;
    match d.kind.as_str() {
        "Parquet" => "parquet",
        "Json" => "jsonl",
        "DelimitedText" => "csv",
        _ => match tp
            .get("format")
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str)
        {
            Some("ParquetFormat") => "parquet",
            Some("JsonFormat") => "jsonl",
            _ => "csv",
        },
    }
}

/// A Copy into a table dataset: the table, and how rows land — insert
/// (Data Factory's default) appends; an upsert in any of its spellings
/// ([`sink::parse`]) merges by `upsertSettings.keys`, in the sink's one
/// commit transaction with its `_highwater_commits` record.
fn table_sink(tp: &Value, d: &ResolvedDataset) -> Result<(String, TableWrite)> {
    let place = || format!("dataset {}", d.name);
    let sink = tp.get("sink").cloned().unwrap_or(Value::Null);
    let write = sink::parse(&sink, false).map_err(|e| Error::config(place(), e.join("; ")))?;
    let table = dataset_table(d)
        .ok_or_else(|| Error::config(place(), "the table dataset names no tableName or table"))?;
    Ok((table.to_string(), write))
}

/// A Copy activity: one attempt through the engine's attempt executor,
/// keyed `pipeline/<pipeline>/<activity record>` in the state store, so a
/// killed `pipeline run` is settled like a killed stream: nothing partial
/// visible, nothing published twice.
async fn copy(frame: &Frame, a: &Activity, tp: &Value, record_name: &str) -> Result<Done> {
    let (Some(input), Some(output)) = (a.inputs.first(), a.outputs.first()) else {
        return Err(Error::config(
            "inputs/outputs",
            "a Copy needs one input and one output dataset",
        ));
    };
    let src = dataset(frame, input)?;
    let dst = dataset(frame, output)?;
    // Data Factory's activity run id: one per execution of the activity.
    let activity_run_id = uuid::Uuid::new_v4().to_string();
    let (target, format, table, overwrite) = if dst.is_file {
        let sink_tp = tp.get("sink").cloned().unwrap_or(Value::Null);
        let csv = delimited::options(&dst.kind, &dst.tp, &sink_tp, false)
            .map_err(|e| Error::config(format!("dataset {}", dst.name), e.join("; ")))?;
        let ext = csv
            .as_ref()
            .map(|o| delimited::generated_extension(o, &sink_tp));
        let (path, format, generated) = file_target(&dst, &activity_run_id, ext.as_deref());
        let format = match &csv {
            Some(o) => o.to_format(),
            None => format.to_string(),
        };
        if path.is_empty() {
            return Err(Error::config(
                format!("dataset {}", dst.name),
                "the file dataset names no folderPath or fileName",
            ));
        }
        // A named file is replaced, as Data Factory does; a generated one
        // is this copy's alone.
        (path, format, None, !generated)
    } else {
        let (name, write) = table_sink(tp, &dst)?;
        (name, String::new(), Some(write), false)
    };
    let relation = source_relation(tp, &src)?;
    let conn = connection(frame, &dst.linked_service)?;
    let sink = highwater_connectors::sink(&conn.kind, conn.url.expose()).await?;
    let pipeline_name = text(frame.ctx.pipeline.get("Pipeline"));
    let key = format!("pipeline/{pipeline_name}/{record_name}");
    let state = frame.run.state.as_ref();
    let Some(_lock) = state.lock_stream(&key).await? else {
        return Err(Error::state(format!(
            "another highwater process is running {key} now; try again when it ends"
        )));
    };
    let env = crate::attempt::Env {
        state,
        sink: sink.as_ref(),
        secrets: &frame.run.plan.secrets,
    };
    let mut notes = crate::attempt::settle(env, &key, false).await?;
    let from = state.position(&key).await?;
    let started = Instant::now();
    let extract = read_rows(frame, &src, relation, record_name).await?;
    notes.extend(extract.notes);
    let mut rows = CopyRows {
        batches: extract.batches,
        rows_read: 0,
        data_read: 0,
    };
    let copy = crate::attempt::Copy {
        key: key.clone(),
        attempt_id: activity_run_id.clone(),
        from,
        request: WriteRequest {
            stream: key,
            run_id: activity_run_id.clone(),
            target,
            format,
            schema: extract.schema.clone(),
            overwrite,
            table,
        },
        owned: !overwrite,
    };
    let outcome = crate::attempt::execute(env, copy, &mut rows).await?;
    notes.extend(outcome.notes);
    let committed = outcome.committed;
    let secs = started.elapsed().as_secs();
    Ok(Done {
        output: json!({
            "dataRead": rows.data_read,
            "dataWritten": committed.bytes,
            "rowsRead": rows.rows_read,
            "rowsCopied": committed.rows,
            "filesWritten": committed.outputs.len(),
            "copyDuration": secs,
            "sourcePeakConnections": 1,
            "sinkPeakConnections": 1,
            "activityRunId": activity_run_id,
        }),
        rows_read: rows.rows_read,
        rows_written: committed.rows,
        outputs: committed.outputs,
        notes,
    })
}

/// A Copy's rows: every batch of the source's read, as it comes.
struct CopyRows {
    batches: highwater_core::BatchStream,
    rows_read: u64,
    data_read: u64,
}

#[async_trait::async_trait]
impl crate::attempt::Rows for CopyRows {
    async fn next_batch(&mut self) -> Result<Option<arrow_array::RecordBatch>> {
        while let Some(b) = self.batches.next().await {
            let b = b?;
            self.rows_read += b.num_rows() as u64;
            self.data_read += b.get_array_memory_size() as u64;
            if b.num_rows() > 0 {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    fn position(&mut self) -> highwater_core::Position {
        highwater_core::Position::Full
    }
}

async fn stored_procedure(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    use highwater_connectors::{ProcParam, ProcType, Procedure};
    let ls = a.linked_service.as_deref().ok_or_else(|| {
        Error::config(
            "linkedServiceName",
            "a Stored Procedure activity needs a linkedServiceName",
        )
    })?;
    let name = text(tp.get("storedProcedureName"));
    let mut params = Vec::new();
    if let Some(m) = tp
        .get("storedProcedureParameters")
        .and_then(Value::as_object)
    {
        for (k, p) in m {
            let ty_name = p.get("type").and_then(Value::as_str).unwrap_or("String");
            let ty = ProcType::parse(ty_name).ok_or_else(|| {
                Error::config(
                    format!("storedProcedureParameters.{k}"),
                    format!("type {ty_name} is not one of {}", ProcType::NAMES),
                )
            })?;
            let value = match p.get("value") {
                None | Some(Value::Null) => None,
                Some(v) => Some(to_interpolated_string(v)),
            };
            params.push(ProcParam {
                name: k.clone(),
                value,
                ty,
            });
        }
    }
    let proc = Procedure {
        name: Procedure::parse_name(&name)?,
        params,
    };
    let conn = connection(frame, ls)?;
    highwater_connectors::call_procedure(&conn.kind, conn.url.expose(), &proc).await?;
    Ok(Done {
        output: json!({}),
        notes: vec![format!("called {name}")],
        ..Done::default()
    })
}
