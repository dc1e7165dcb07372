//! Loading a Data Factory pipeline from its git layout into a [`Factory`],
//! and validating it before anything runs.
//!
//! ```text
//! <root>/pipeline.json | <root>/pipeline/X.json | <root>/pipelines/X.json
//! <root>/dataset/*.json | <root>/datasets/*.json
//! <root>/linkedService/*.json | <root>/linkedServices/*.json   (names only)
//! ```
//!
//! Validation reports every problem at once, each as `file:line: activity
//! X: property: what is wrong` (the line of the activity's `"name"`):
//! JSON syntax (line and column), unknown activity types, dependencies on
//! activities that do not exist, expressions that do not parse (line and
//! column inside the string), then the typed `typeProperties`
//! ([`super::typed`]) and everything [`super::validate`] checks across the
//! factory. Linked services are checked against the connections by
//! [`Factory::check_connections`]. Names are trimmed: published factories
//! carry names like `" WatermarkDataset "`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use highwater_core::{Error, Result};
use highwater_expr::Expr;
use serde_json::{Map, Value};

use super::typed::{ActivityProps, DatasetProps, Found};

/// One problem found at load: where (`file:line`, or `file`) and what.
#[derive(Debug, Clone)]
pub struct Problem {
    pub place: String,
    pub message: String,
}

/// The problems found at load, in the order found.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn at(&mut self, place: &str, message: impl Into<String>) {
        let p = Problem {
            place: place.to_string(),
            message: message.into(),
        };
        if !self
            .0
            .iter()
            .any(|q| q.place == p.place && q.message == p.message)
        {
            self.0.push(p);
        }
    }
}

/// A pipeline file's path and text, to name lines.
struct Src<'a> {
    file: &'a str,
    text: &'a str,
}

impl Src<'_> {
    /// `file:line` of the object whose `"name"` is `name`, else `file`.
    fn place(&self, name: &str) -> String {
        match line_of_name(self.text, name) {
            Some(l) => format!("{}:{l}", self.file),
            None => self.file.to_string(),
        }
    }
}

/// The line (1-based) of the first `"name": "<name>"` in `text` (the
/// name compared trimmed, as names are).
pub fn line_of_name(text: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find("\"name\"") {
        let at = from + i;
        from = at + 6;
        let rest = text[from..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('"') else {
            continue;
        };
        if rest.split('"').next().map(str::trim) == Some(name) {
            return Some(text[..at].matches('\n').count() + 1);
        }
    }
    None
}

/// The line (1-based) of the first `"key"` in `text`.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let i = text.find(&format!("\"{key}\""))?;
    Some(text[..i].matches('\n').count() + 1)
}

/// The activity types the interpreter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    Lookup,
    Copy,
    StoredProcedure,
    ForEach,
    SetVariable,
    AppendVariable,
    IfCondition,
    Wait,
    Fail,
    ExecutePipeline,
    Script,
    Filter,
    Until,
    Switch,
    Web,
    GetMetadata,
    Delete,
    Validation,
}

impl ActivityKind {
    fn parse(t: &str) -> Option<ActivityKind> {
        Some(match t {
            "Lookup" => ActivityKind::Lookup,
            "Copy" => ActivityKind::Copy,
            "SqlServerStoredProcedure" | "StoredProcedure" => ActivityKind::StoredProcedure,
            "ForEach" => ActivityKind::ForEach,
            "SetVariable" => ActivityKind::SetVariable,
            "AppendVariable" => ActivityKind::AppendVariable,
            "IfCondition" => ActivityKind::IfCondition,
            "Wait" => ActivityKind::Wait,
            "Fail" => ActivityKind::Fail,
            "ExecutePipeline" => ActivityKind::ExecutePipeline,
            "Script" => ActivityKind::Script,
            "Filter" | "filter" => ActivityKind::Filter,
            "Until" => ActivityKind::Until,
            "Switch" => ActivityKind::Switch,
            "WebActivity" => ActivityKind::Web,
            "GetMetadata" => ActivityKind::GetMetadata,
            "Delete" => ActivityKind::Delete,
            "Validation" => ActivityKind::Validation,
            _ => return None,
        })
    }

    /// The Data Factory type name (kept as the activity record's `mode`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ActivityKind::Lookup => "Lookup",
            ActivityKind::Copy => "Copy",
            ActivityKind::StoredProcedure => "SqlServerStoredProcedure",
            ActivityKind::ForEach => "ForEach",
            ActivityKind::SetVariable => "SetVariable",
            ActivityKind::AppendVariable => "AppendVariable",
            ActivityKind::IfCondition => "IfCondition",
            ActivityKind::Wait => "Wait",
            ActivityKind::Fail => "Fail",
            ActivityKind::ExecutePipeline => "ExecutePipeline",
            ActivityKind::Script => "Script",
            ActivityKind::Filter => "Filter",
            ActivityKind::Until => "Until",
            ActivityKind::Switch => "Switch",
            ActivityKind::Web => "WebActivity",
            ActivityKind::GetMetadata => "GetMetadata",
            ActivityKind::Delete => "Delete",
            ActivityKind::Validation => "Validation",
        }
    }
}

/// How an activity ended, with Data Factory's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "Succeeded",
            Outcome::Failed => "Failed",
            Outcome::Skipped => "Skipped",
        }
    }
}

/// A `dependencyConditions` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Succeeded,
    Failed,
    Completed,
    Skipped,
}

impl Condition {
    /// Does an upstream activity that ended with `o` satisfy this condition?
    pub fn accepts(&self, o: Outcome) -> bool {
        matches!(
            (self, o),
            (Condition::Succeeded, Outcome::Succeeded)
                | (Condition::Failed, Outcome::Failed)
                | (Condition::Completed, Outcome::Succeeded | Outcome::Failed)
                | (Condition::Skipped, Outcome::Skipped)
        )
    }
}

/// One `dependsOn` entry: the conditions are alternatives; several entries
/// must all hold.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub activity: String,
    pub conditions: Vec<Condition>,
}

/// A `DatasetReference` with its (unevaluated) parameter values.
#[derive(Debug, Clone)]
pub struct DatasetRef {
    pub name: String,
    pub parameters: Map<String, Value>,
}

/// One activity. `children` are a ForEach's or Until's activities, an If
/// Condition's `ifTrueActivities` or a Switch's `defaultActivities`;
/// `otherwise` an If Condition's `ifFalseActivities`; `cases` a Switch's
/// cases (value, activities).
#[derive(Debug, Clone)]
pub struct Activity {
    pub name: String,
    /// The name for messages.
    pub label: String,
    /// `file:line` of the activity, for messages.
    pub place: String,
    pub kind: ActivityKind,
    /// The typed `typeProperties` (checked at load).
    pub props: ActivityProps,
    pub depends_on: Vec<Dependency>,
    /// `typeProperties` without the nested activity lists.
    pub type_properties: Value,
    pub linked_service: Option<String>,
    pub inputs: Vec<DatasetRef>,
    pub outputs: Vec<DatasetRef>,
    pub children: Vec<Activity>,
    pub otherwise: Vec<Activity>,
    pub cases: Vec<(Value, Vec<Activity>)>,
    /// `policy.retry`: how many times a failed execution is tried again.
    pub retry: u32,
    /// `policy.retryIntervalInSeconds` (default 30).
    pub retry_interval: Duration,
    /// `policy.timeout` (`D.HH:MM:SS`); none when absent.
    pub timeout: Option<Duration>,
}

impl Activity {
    /// Every list of inner activities: children, otherwise, the cases.
    pub fn inner(&self) -> impl Iterator<Item = &[Activity]> {
        [self.children.as_slice(), self.otherwise.as_slice()]
            .into_iter()
            .chain(self.cases.iter().map(|(_, l)| l.as_slice()))
    }

    /// The dataset a Lookup reads (`typeProperties.dataset`).
    pub fn lookup_dataset(&self) -> Option<DatasetRef> {
        self.type_properties.get("dataset").and_then(dataset_ref)
    }
}

/// A dataset: its type, its linked service, and its unevaluated
/// `typeProperties` with the parameters' default values.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub kind: String,
    pub linked_service: String,
    pub type_properties: Value,
    /// Declared parameters with their default (null when none).
    pub defaults: Map<String, Value>,
    /// Declared parameters without a `defaultValue`.
    pub required: Vec<String>,
    pub file: PathBuf,
    /// The typed `typeProperties`.
    pub props: DatasetProps,
    /// What parsing them found (reported when a pipeline uses it), with
    /// the line of each property.
    pub problems: Vec<Problem>,
}

impl Dataset {
    /// File datasets are written through the file sink; every other type
    /// is a table in a database.
    pub fn is_file(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "AzureBlob"
                | "AzureBlobFSFile"
                | "FileShare"
                | "DelimitedText"
                | "Parquet"
                | "Json"
                | "AmazonS3Object"
                | "Binary"
        )
    }
}

/// A loaded pipeline with the datasets and linked services of its factory.
#[derive(Debug, Clone)]
pub struct Factory {
    /// The pipeline file, for messages.
    pub file: String,
    pub name: String,
    pub activities: Vec<Activity>,
    /// Declared parameters: name → `{type, defaultValue}`.
    pub parameters: Map<String, Value>,
    /// Declared variables: name → `{type, defaultValue}`.
    pub variables: Map<String, Value>,
    /// Datasets by trimmed name.
    pub datasets: BTreeMap<String, Dataset>,
    /// The factory's folder (where `highwater.yaml` is looked for).
    pub root: PathBuf,
    /// Pipelines that Execute Pipeline activities run, by name (found in
    /// the pipeline's folder).
    pub called: BTreeMap<String, PipelineDef>,
}

/// A pipeline run by an Execute Pipeline activity.
#[derive(Debug, Clone)]
pub struct PipelineDef {
    pub name: String,
    /// The file, for messages.
    pub file: String,
    pub activities: Vec<Activity>,
    pub parameters: Map<String, Value>,
    pub variables: Map<String, Value>,
}

/// The pipeline an Execute Pipeline activity names, when written literally.
fn called_pipeline(a: &Activity) -> Option<String> {
    (a.kind == ActivityKind::ExecutePipeline)
        .then(|| {
            a.type_properties
                .get("pipeline")?
                .get("referenceName")?
                .as_str()
                .map(|s| s.trim().to_string())
        })
        .flatten()
}

/// Parse a pipeline document: name, parameters, variables, activities.
fn parse_pipeline(pipeline: &Value, path: &Path, text: &str, errors: &mut Problems) -> PipelineDef {
    let file = path.display().to_string();
    let src = Src { file: &file, text };
    let props = pipeline.get("properties").unwrap_or(pipeline);
    let name = name_of(pipeline).unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    });
    let object = |k: &str| {
        props
            .get(k)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let activities = match props.get("activities") {
        Some(Value::Array(list)) => parse_activities(list, "", &src, errors),
        _ => {
            errors.at(&file, "no `properties.activities` list");
            vec![]
        }
    };
    PipelineDef {
        name,
        file,
        activities,
        parameters: object("parameters"),
        variables: object("variables"),
    }
}

fn read_json(path: &Path) -> std::result::Result<(Value, String), Problem> {
    let text = std::fs::read_to_string(path).map_err(|e| Problem {
        place: path.display().to_string(),
        message: format!("cannot read: {e}"),
    })?;
    let text = text.trim_start_matches('\u{feff}').to_string();
    match serde_json::from_str(&text) {
        Ok(v) => Ok((v, text)),
        Err(e) => Err(Problem {
            place: format!("{}:{}:{}", path.display(), e.line(), e.column()),
            message: format!("invalid JSON: {e}"),
        }),
    }
}

fn name_of(v: &Value) -> Option<String> {
    v.get("name")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
}

/// The `referenceName` of a `{referenceName, type, parameters}` object.
fn dataset_ref(v: &Value) -> Option<DatasetRef> {
    let name = v.get("referenceName")?.as_str()?.trim().to_string();
    let parameters = v
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Some(DatasetRef { name, parameters })
}

/// The pipelines of a factory root (`pipeline/` or `pipelines/`): each
/// file with its pipeline's name (its `"name"`, else the file's stem),
/// in file order.
pub fn pipelines_by_name(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for folder in ["pipeline", "pipelines"] {
        for f in json_files(&root.join(folder)) {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            let v: Value =
                serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap_or_default();
            let stem = f.file_stem().map(|s| s.to_string_lossy().to_string());
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .map(|n| n.trim().to_string())
                .or(stem)
                .unwrap_or_default();
            out.push((name, f));
        }
    }
    out
}

/// The file of the pipeline called `name` (names compare ignoring case,
/// as Data Factory's do).
pub fn find_pipeline(root: &Path, name: &str) -> Option<PathBuf> {
    pipelines_by_name(root)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|(_, f)| f)
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A dataset file: name, type, linked service, parameters, typed
/// `typeProperties` (their problems kept for when a pipeline uses it).
fn parse_dataset(f: &Path, v: &Value, text: &str, errors: &mut Problems) -> Option<Dataset> {
    let file = f.display().to_string();
    let stem = f
        .file_stem()
        .map(|s| s.to_string_lossy().trim().to_string())
        .unwrap_or_default();
    let name = name_of(v).unwrap_or(stem);
    let props = v.get("properties").cloned().unwrap_or(Value::Null);
    let kind = props
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(ls) = props.get("linkedServiceName").and_then(dataset_ref) else {
        errors.at(&file, format!("dataset {name}: no linkedServiceName"));
        return None;
    };
    let declared = props
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let defaults = declared
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.get("defaultValue").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    let required = declared
        .iter()
        .filter(|(_, v)| v.get("defaultValue").is_none())
        .map(|(k, _)| k.clone())
        .collect();
    let tp = props
        .get("typeProperties")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    let at = |key: &str| match line_of_key(text, key) {
        Some(l) => format!("{file}:{l}"),
        None => file.clone(),
    };
    check_expressions(&tp, "typeProperties", &mut |p, e| {
        let key = p.rsplit('.').next().unwrap_or(p);
        errors.at(&at(key), format!("dataset {name}: {p}: {e}"))
    });
    let mut found: Found = Vec::new();
    let typed = DatasetProps::parse(&kind, &tp, &mut found);
    let key = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
    let mut problems: Vec<Problem> = found
        .into_iter()
        .map(|(p, m)| Problem {
            place: at(&key(&p)),
            message: format!("dataset {name}: {p} {m}"),
        })
        .collect();
    for (p, m) in super::validate::dataset_expressions(&tp, &declared) {
        problems.push(Problem {
            place: at(&key(&p)),
            message: format!("dataset {name}: {p}: {m}"),
        });
    }
    Some(Dataset {
        name,
        kind,
        linked_service: ls.name,
        type_properties: tp,
        defaults,
        required,
        file: f.to_path_buf(),
        props: typed,
        problems,
    })
}

impl Factory {
    /// Read the pipeline at `path` and the datasets of its factory folder,
    /// and validate everything that can be checked without connecting.
    /// Every error is reported at once ([`Error::Config`]: exit 2).
    pub fn load(path: &Path) -> Result<Factory> {
        let file = path.display().to_string();
        let (pipeline, text) = read_json(path).map_err(|p| Error::config(p.place, p.message))?;
        let mut root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if root.as_os_str().is_empty() {
            root = PathBuf::from(".");
        }
        if root
            .file_name()
            .is_some_and(|n| n == "pipeline" || n == "pipelines")
        {
            root = root.parent().map(Path::to_path_buf).unwrap_or(root);
        }
        let mut errors = Problems::default();

        let mut datasets = BTreeMap::new();
        for dir in ["dataset", "datasets"] {
            for f in json_files(&root.join(dir)) {
                match read_json(&f) {
                    Err(p) => errors.0.push(p),
                    Ok((v, text)) => {
                        if let Some(d) = parse_dataset(&f, &v, &text, &mut errors) {
                            datasets.insert(d.name.clone(), d);
                        }
                    }
                }
            }
        }

        let main = parse_pipeline(&pipeline, path, &text, &mut errors);

        // Pipelines run by Execute Pipeline: siblings of this file, by name.
        let mut called: BTreeMap<String, PipelineDef> = BTreeMap::new();
        let mut wanted: Vec<(String, String, String)> = Vec::new();
        let want = |list: &[Activity], wanted: &mut Vec<(String, String, String)>| {
            let mut all = Vec::new();
            collect(list, &mut all);
            for a in all {
                if let Some(p) = called_pipeline(a) {
                    wanted.push((p, a.label.clone(), a.place.clone()));
                }
            }
        };
        want(&main.activities, &mut wanted);
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let siblings = json_files(folder);
        while let Some((target, by, place)) = wanted.pop() {
            if target == main.name || called.contains_key(&target) {
                continue;
            }
            let found = siblings.iter().find_map(|f| {
                let (v, text) = read_json(f).ok()?;
                (name_of(&v).as_deref() == Some(target.as_str())).then_some((f.clone(), v, text))
            });
            let Some((f, v, text)) = found else {
                errors.at(
                    &place,
                    format!("activity {by}: pipeline {target} not found in the pipeline's folder"),
                );
                continue;
            };
            let def = parse_pipeline(&v, &f, &text, &mut errors);
            want(&def.activities, &mut wanted);
            called.insert(target, def);
        }

        let factory = Factory {
            file: file.clone(),
            name: main.name,
            activities: main.activities,
            parameters: main.parameters,
            variables: main.variables,
            datasets,
            root,
            called,
        };
        super::validate::factory(&factory, &mut errors);
        let errors = errors.0;
        match errors.len() {
            0 => Ok(factory),
            1 => Err(Error::config(&errors[0].place, &errors[0].message)),
            n => Err(Error::config(
                &file,
                format!(
                    "{n} errors in the pipeline:\n  {}",
                    errors
                        .iter()
                        .map(|p| format!("{}: {}", p.place, p.message))
                        .collect::<Vec<_>>()
                        .join("\n  ")
                ),
            )),
        }
    }

    /// Call `f` for every activity of this pipeline and of the pipelines
    /// it executes, nested ones included.
    pub fn walk_all<'a>(&'a self, f: &mut dyn FnMut(&'a Activity)) {
        self.walk(&self.activities, f);
        for p in self.called.values() {
            self.walk(&p.activities, f);
        }
    }

    /// Call `f` for every activity, nested ones included.
    pub fn walk<'a>(&'a self, list: &'a [Activity], f: &mut dyn FnMut(&'a Activity)) {
        for a in list {
            f(a);
            for inner in a.inner() {
                self.walk(inner, f);
            }
        }
    }

    /// Every linked service the pipeline uses, with the activity that
    /// uses it first.
    pub fn linked_services(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        self.walk_all(&mut |a| {
            if let Some(ls) = &a.linked_service {
                out.entry(ls.clone()).or_insert_with(|| a.name.clone());
            }
            for r in a
                .inputs
                .iter()
                .chain(&a.outputs)
                .chain(a.lookup_dataset().as_ref())
            {
                if let Some(d) = self.datasets.get(&r.name) {
                    out.entry(d.linked_service.clone())
                        .or_insert_with(|| a.name.clone());
                }
            }
        });
        out
    }

    /// Every linked service used must name a connection in `highwater.yaml`.
    pub fn check_connections(&self, connections: &[&str], config: &str) -> Result<()> {
        let missing: Vec<String> = self
            .linked_services()
            .into_iter()
            .filter(|(ls, _)| !connections.contains(&ls.as_str()))
            .map(|(ls, act)| {
                format!(
                    "linked service {ls} (used by activity {act}) has no connection in {config}; add `connections: {{ {ls}: <url> }}` (known: {})",
                    if connections.is_empty() { "none".to_string() } else { connections.join(", ") }
                )
            })
            .collect();
        match missing.len() {
            0 => Ok(()),
            1 => Err(Error::config(&self.file, &missing[0])),
            n => Err(Error::config(
                &self.file,
                format!(
                    "{n} linked services without a connection:\n  {}",
                    missing.join("\n  ")
                ),
            )),
        }
    }
}

fn collect<'a>(list: &'a [Activity], out: &mut Vec<&'a Activity>) {
    for a in list {
        out.push(a);
        for inner in a.inner() {
            collect(inner, out);
        }
    }
}

fn parse_activities(
    list: &[Value],
    parent: &str,
    src: &Src,
    errors: &mut Problems,
) -> Vec<Activity> {
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let Some(name) = name_of(v) else {
            errors.at(
                src.file,
                format!("{parent}activities[{i}]: an activity without a name"),
            );
            continue;
        };
        let place = src.place(&name);
        // Names are unique in a pipeline (Data Factory's rule): the
        // name is the label; the place gives the line.
        let label = name.clone();
        let t = v.get("type").and_then(Value::as_str).unwrap_or_default();
        let Some(kind) = ActivityKind::parse(t) else {
            errors.at(&place, format!(
                "activity {label}: activity type `{t}` is not supported (supported: Lookup, Copy, SqlServerStoredProcedure, Script, ForEach, Filter, Until, Switch, SetVariable, AppendVariable, IfCondition, Wait, Fail, ExecutePipeline, WebActivity, GetMetadata, Delete, Validation)"
            ));
            continue;
        };
        let mut tp = v
            .get("typeProperties")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        let mut take = |key: &str| match tp.as_object_mut().and_then(|m| m.remove(key)) {
            Some(Value::Array(l)) => l,
            _ => vec![],
        };
        let (children, otherwise) = match kind {
            ActivityKind::ForEach | ActivityKind::Until => (take("activities"), vec![]),
            ActivityKind::IfCondition => (take("ifTrueActivities"), take("ifFalseActivities")),
            ActivityKind::Switch => (take("defaultActivities"), vec![]),
            _ => (vec![], vec![]),
        };
        let inner = format!("{parent}{name}/");
        let children = parse_activities(&children, &inner, src, errors);
        let otherwise = parse_activities(&otherwise, &inner, src, errors);
        let cases = match kind {
            ActivityKind::Switch => {
                switch_cases(take("cases"), &inner, &label, &place, src, errors)
            }
            _ => vec![],
        };
        check_expressions(&tp, "typeProperties", &mut |p, e| {
            errors.at(&place, format!("activity {label}: {p}: {e}"))
        });
        let mut found: Found = Vec::new();
        let props = ActivityProps::parse(kind, &tp, &mut found);
        for (p, m) in found {
            errors.at(&place, format!("activity {label}: {p} {m}"));
        }
        if v.get("state").and_then(Value::as_str) == Some("Inactive") {
            errors.at(
                &place,
                format!("activity {label}: state: Inactive activities are not supported; remove the activity or make it Active"),
            );
        }
        let mut depends_on = Vec::new();
        for d in v
            .get("dependsOn")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(activity) = d.get("activity").and_then(Value::as_str) else {
                errors.at(
                    &place,
                    format!("activity {label}: a dependsOn entry without `activity`"),
                );
                continue;
            };
            let mut conditions = Vec::new();
            for c in d
                .get("dependencyConditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match c.as_str() {
                    Some("Succeeded") => conditions.push(Condition::Succeeded),
                    Some("Failed") => conditions.push(Condition::Failed),
                    Some("Completed") => conditions.push(Condition::Completed),
                    Some("Skipped") => conditions.push(Condition::Skipped),
                    _ => errors.at(&place, format!(
                        "activity {label}: dependency condition {c} is not one of Succeeded, Failed, Completed, Skipped"
                    )),
                }
            }
            if conditions.is_empty() {
                conditions.push(Condition::Succeeded);
            }
            depends_on.push(Dependency {
                activity: activity.trim().to_string(),
                conditions,
            });
        }
        let refs = |k: &str| -> Vec<DatasetRef> {
            v.get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(dataset_ref)
                .collect()
        };
        let (inputs, outputs) = (refs("inputs"), refs("outputs"));
        for r in inputs.iter().chain(&outputs) {
            for (k, pv) in &r.parameters {
                check_expressions(
                    pv,
                    &format!("dataset {} parameter {k}", r.name),
                    &mut |p, e| errors.at(&place, format!("activity {label}: {p}: {e}")),
                );
            }
        }
        let policy = v.get("policy");
        let number = |k: &str| -> Option<u64> {
            match policy?.get(k)? {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
        };
        let retry = number("retry").unwrap_or(0).min(100) as u32;
        let retry_interval = Duration::from_secs(number("retryIntervalInSeconds").unwrap_or(30));
        let timeout = match policy.and_then(|p| p.get("timeout")) {
            None | Some(Value::Null) => None,
            Some(t) => match t.as_str().and_then(parse_timespan) {
                Some(d) => Some(d),
                None => {
                    errors.at(&place, format!(
                        "activity {label}: policy.timeout {t} is not a duration like \"0.12:00:00\" (D.HH:MM:SS)"
                    ));
                    None
                }
            },
        };
        out.push(Activity {
            retry,
            retry_interval,
            timeout,
            name,
            label,
            place,
            kind,
            props,
            depends_on,
            type_properties: tp,
            linked_service: v
                .get("linkedServiceName")
                .and_then(dataset_ref)
                .map(|r| r.name),
            inputs,
            outputs,
            children,
            otherwise,
            cases,
        });
    }
    // Dependencies name siblings, and the graph has no cycle.
    let names: Vec<String> = out.iter().map(|a| a.name.to_lowercase()).collect();
    // Activities reported above (unsupported type) still count as siblings.
    let listed: Vec<String> = list
        .iter()
        .filter_map(name_of)
        .map(|n| n.to_lowercase())
        .collect();
    for a in &out {
        for d in &a.depends_on {
            if !listed.contains(&d.activity.to_lowercase()) {
                errors.at(
                    &a.place,
                    format!(
                        "activity {}: depends on {}, which is not an activity of the same container",
                        a.label, d.activity
                    ),
                );
            }
        }
    }
    let mut done: Vec<bool> = vec![false; out.len()];
    loop {
        let mut progressed = false;
        for (i, a) in out.iter().enumerate() {
            if !done[i]
                && a.depends_on.iter().all(|d| {
                    names
                        .iter()
                        .position(|n| *n == d.activity.to_lowercase())
                        .is_none_or(|j| done[j])
                })
            {
                done[i] = true;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    let cyclic: Vec<&str> = out
        .iter()
        .zip(&done)
        .filter(|(_, d)| !**d)
        .map(|(a, _)| a.name.as_str())
        .collect();
    if !cyclic.is_empty() {
        errors.at(
            src.file,
            format!(
                "activities {} depend on each other in a cycle",
                cyclic.join(", ")
            ),
        );
    }
    out
}

/// A Switch's `cases`: each `{value, activities}`, values unique.
fn switch_cases(
    list: Vec<Value>,
    inner: &str,
    label: &str,
    place: &str,
    src: &Src,
    errors: &mut Problems,
) -> Vec<(Value, Vec<Activity>)> {
    let mut out: Vec<(Value, Vec<Activity>)> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let at = format!("activity {label}: typeProperties.cases[{i}]");
        let value = match c.get("value") {
            Some(v @ Value::String(_)) => v.clone(),
            Some(v) if expression_object(v).is_some() => {
                errors.at(place, format!("{at}.value must be a literal string"));
                continue;
            }
            Some(Value::Number(n)) => Value::String(n.to_string()),
            other => {
                errors.at(
                    place,
                    format!(
                        "{at}.value is required (a string), got {}",
                        other.map_or("nothing".to_string(), Value::to_string)
                    ),
                );
                continue;
            }
        };
        if out.iter().any(|(v, _)| *v == value) {
            errors.at(place, format!("{at}.value {value} is given twice"));
        }
        for k in c.as_object().into_iter().flat_map(|m| m.keys()) {
            if k != "value" && k != "activities" {
                errors.at(
                    place,
                    format!("{at}.{k} is not a property of a Switch case"),
                );
            }
        }
        let acts = match c.get("activities") {
            Some(Value::Array(l)) => parse_activities(l, inner, src, errors),
            _ => vec![],
        };
        out.push((value, acts));
    }
    out
}

/// Parse a .NET TimeSpan as Data Factory writes it: `D.HH:MM:SS` or `HH:MM:SS`.
pub fn parse_timespan(t: &str) -> Option<Duration> {
    let t = t.trim();
    let (days, rest) = match t.split_once('.') {
        Some((d, r)) if !d.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return None;
    };
    let (h, m, s): (u64, u64, f64) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    if m > 59 || !(0.0..60.0).contains(&s) {
        return None;
    }
    Some(Duration::from_secs(days * 86_400 + h * 3600 + m * 60) + Duration::from_secs_f64(s))
}

/// Is `v` a `{"value": "...", "type": "Expression"}` object? Returns the text.
pub fn expression_object(v: &Value) -> Option<&str> {
    let m = v.as_object()?;
    if m.get("type").and_then(Value::as_str) == Some("Expression") {
        m.get("value").and_then(Value::as_str)
    } else {
        None
    }
}

/// Parse every string under `v`; report each failure with its JSON path.
fn check_expressions(v: &Value, path: &str, report: &mut dyn FnMut(&str, String)) {
    if let Some(text) = expression_object(v) {
        if let Err(e) = Expr::parse(text) {
            report(path, e.to_string());
        }
        return;
    }
    match v {
        Value::String(s) => {
            if let Err(e) = Expr::parse(s) {
                report(path, e.to_string());
            }
        }
        Value::Array(l) => {
            for (i, x) in l.iter().enumerate() {
                check_expressions(x, &format!("{path}[{i}]"), report);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                check_expressions(x, &format!("{path}.{k}"), report);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn timespans() {
        assert_eq!(
            super::parse_timespan("7.00:00:00"),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            super::parse_timespan("0:10:30"),
            Some(Duration::from_secs(630))
        );
        assert_eq!(super::parse_timespan("ten minutes"), None);
        assert_eq!(super::parse_timespan("0:61:00"), None);
    }
}
