//! Checks across the whole factory, at load, before anything runs: what
//! Data Factory's own validation catches, and what highwater cannot run.
//!
//! ```text
//! every activity   required properties present, literal values of the right type
//!                  (typed::ActivityProps), expressions' literal references:
//!                    activity('X')           X exists and is an (indirect) dependency,
//!                                            or one of its container's (ForEach, If)
//!                    activity('L').output.firstRow / .value / .count
//!                                            matches the Lookup's firstRowOnly
//!                    pipeline().parameters.P declared;  variables('V') declared
//!                    item()                  inside a ForEach;  dataset() only in datasets
//! dataset uses     the dataset exists; parameters given are declared, those
//!                  without a default are given; its kind fits the use (a Binary
//!                  dataset is no table); a table named where one is needed
//! datasets used    their typed typeProperties (typed::DatasetProps), dataset().P declared
//! ```
//!
//! Expressions are checked where they are literal references; what they
//! evaluate to is judged when the activity runs.

use std::collections::{BTreeMap, BTreeSet};

use highwater_expr::{Expr, Node, NodeKind, Segment, Template};
use serde_json::{Map, Value};

use super::model::{Activity, ActivityKind, DatasetRef, Factory, Problems, expression_object};
use super::typed::{self, ActivityProps, DatasetProps, Found, Source, is_blank, is_expression};

/// What an expression reads that can be checked before it runs.
#[derive(Debug)]
enum Ref {
    /// `activity('X')` and the properties read from it (`output`, `firstRow`…),
    /// each with whether it is read with `?.`.
    Activity {
        name: String,
        steps: Vec<(String, bool)>,
    },
    Parameter(String),
    Variable(String),
    Item,
    Dataset(String),
}

/// Every reference in every expression under `v`, with its JSON path.
fn refs(v: &Value, path: &str, out: &mut Vec<(String, Ref)>) {
    if let Some(text) = expression_object(v) {
        text_refs(text, path, out);
        return;
    }
    match v {
        Value::String(s) => text_refs(s, path, out),
        Value::Array(l) => {
            for (i, x) in l.iter().enumerate() {
                refs(x, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                refs(x, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

fn text_refs(text: &str, path: &str, out: &mut Vec<(String, Ref)>) {
    // Syntax errors are reported by the model's expression check.
    let Ok(e) = Expr::parse(text) else { return };
    match e.template() {
        Template::Literal(_) => {}
        Template::Expression(n) => node_refs(n, path, out),
        Template::Interpolation(segments) => {
            for s in segments {
                if let Segment::Expr(n) = s {
                    node_refs(n, path, out);
                }
            }
        }
    }
}

/// `root(args).a?.b['c']`: the root call's name and arguments, the
/// property steps in order, and index expressions that are not literal.
type Chain<'a> = (&'a str, &'a [Node], Vec<(String, bool)>, Vec<&'a Node>);

fn chain(n: &Node) -> Option<Chain<'_>> {
    let mut steps = Vec::new();
    let mut computed = Vec::new();
    let mut cur = n;
    loop {
        match &cur.kind {
            NodeKind::Property { target, name, safe } => {
                steps.push((name.clone(), *safe));
                cur = target;
            }
            NodeKind::Index {
                target,
                index,
                safe,
            } => {
                match &index.kind {
                    NodeKind::Str(s) => steps.push((s.clone(), *safe)),
                    _ => {
                        // Whatever follows is not known before the run.
                        steps.clear();
                        computed.push(&**index);
                    }
                }
                cur = target;
            }
            NodeKind::Call { name, args } => {
                steps.reverse();
                return Some((name, args, steps, computed));
            }
            _ => return None,
        }
    }
}

fn node_refs(n: &Node, path: &str, out: &mut Vec<(String, Ref)>) {
    match &n.kind {
        NodeKind::Property { .. } | NodeKind::Index { .. } | NodeKind::Call { .. } => {
            if let Some((name, args, steps, computed)) = chain(n) {
                call_ref(name, args, steps, path, out);
                for a in args.iter().chain(computed) {
                    node_refs(a, path, out);
                }
            } else {
                match &n.kind {
                    NodeKind::Property { target, .. } => node_refs(target, path, out),
                    NodeKind::Index { target, index, .. } => {
                        node_refs(target, path, out);
                        node_refs(index, path, out);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn call_ref(
    name: &str,
    args: &[Node],
    steps: Vec<(String, bool)>,
    path: &str,
    out: &mut Vec<(String, Ref)>,
) {
    let literal = match args {
        [
            Node {
                kind: NodeKind::Str(s),
                ..
            },
        ] => Some(s.trim().to_string()),
        _ => None,
    };
    let r = match name.to_ascii_lowercase().as_str() {
        "activity" => literal.map(|name| Ref::Activity { name, steps }),
        "variables" => literal.map(Ref::Variable),
        "item" if args.is_empty() => Some(Ref::Item),
        "pipeline" if args.is_empty() => match steps.as_slice() {
            [(p, _), (x, _), ..] if p.eq_ignore_ascii_case("parameters") => {
                Some(Ref::Parameter(x.clone()))
            }
            _ => None,
        },
        "dataset" if args.is_empty() => steps.first().map(|(x, _)| Ref::Dataset(x.clone())),
        _ => None,
    };
    if let Some(r) = r {
        out.push((path.to_string(), r));
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let l: Vec<&str> = keys.map(String::as_str).collect();
    if l.is_empty() {
        "none".to_string()
    } else {
        l.join(", ")
    }
}

fn declared(map: &Map<String, Value>, name: &str) -> bool {
    map.keys().any(|k| k.eq_ignore_ascii_case(name))
}

/// `dataset().P` in a dataset's `typeProperties` must name a declared
/// parameter; `activity()`, `item()` and `variables()` are not available
/// in a dataset.
pub fn dataset_expressions(tp: &Value, parameters: &Map<String, Value>) -> Found {
    let mut rs = Vec::new();
    refs(tp, "typeProperties", &mut rs);
    let mut found = Vec::new();
    for (path, r) in rs {
        let m = match r {
            Ref::Dataset(x) if !declared(parameters, &x) => format!(
                "dataset().{x} is not a parameter of the dataset (parameters: {})",
                names(parameters.keys())
            ),
            Ref::Activity { name, .. } => format!(
                "activity('{name}') cannot be read in a dataset; pass the value as a dataset parameter"
            ),
            Ref::Item => {
                "item() cannot be read in a dataset; pass the value as a dataset parameter"
                    .to_string()
            }
            Ref::Variable(v) => format!(
                "variables('{v}') cannot be read in a dataset; pass the value as a dataset parameter"
            ),
            _ => continue,
        };
        found.push((path, m));
    }
    found
}

/// One pipeline of the factory: the one run, or one it executes.
struct Pipe<'a> {
    name: &'a str,
    parameters: &'a Map<String, Value>,
    variables: &'a Map<String, Value>,
    /// Every activity, nested ones included, by lower-case name.
    all: BTreeMap<String, &'a Activity>,
}

/// Check the factory; add every problem to `errors`.
pub fn factory(f: &Factory, errors: &mut Problems) {
    let mut used = BTreeSet::new();
    let mut pipes = vec![(
        f.name.as_str(),
        &f.parameters,
        &f.variables,
        f.activities.as_slice(),
    )];
    for p in f.called.values() {
        pipes.push((&p.name, &p.parameters, &p.variables, &p.activities));
    }
    for (name, parameters, variables, activities) in pipes {
        let mut all = BTreeMap::new();
        f.walk(activities, &mut |a| {
            all.insert(a.name.to_lowercase(), a);
        });
        let pipe = Pipe {
            name,
            parameters,
            variables,
            all,
        };
        let mut check = Check {
            f,
            pipe: &pipe,
            errors,
            used: &mut used,
        };
        check.container(activities, &BTreeSet::new(), None, false);
    }
    for name in used {
        if let Some(d) = f.datasets.get(&name) {
            for p in &d.problems {
                errors.at(&p.place, &p.message);
            }
        }
    }
}

struct Check<'a, 'b> {
    f: &'a Factory,
    pipe: &'b Pipe<'a>,
    errors: &'b mut Problems,
    used: &'b mut BTreeSet<String>,
}

/// How an activity uses a dataset.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    /// A Lookup's or Copy's source; whether the source has a query.
    Read { query: bool },
    /// A Copy's sink.
    Write,
    /// GetMetadata, Delete, Validation: a file or folder.
    Files,
}

impl Check<'_, '_> {
    fn report(&mut self, a: &Activity, message: String) {
        self.errors
            .at(&a.place, format!("activity {}: {message}", a.label));
    }

    fn found(&mut self, a: &Activity, found: Found) {
        for (p, m) in found {
            self.report(a, format!("{p} {m}"));
        }
    }

    /// The activities of one container; `outer`: what the container
    /// activity may read (lower-case names), `owner` its name.
    fn container(
        &mut self,
        acts: &[Activity],
        outer: &BTreeSet<String>,
        owner: Option<&str>,
        in_each: bool,
    ) {
        for a in acts {
            let mut allowed = outer.clone();
            let mut todo: Vec<String> = a
                .depends_on
                .iter()
                .map(|d| d.activity.to_lowercase())
                .collect();
            while let Some(d) = todo.pop() {
                if !allowed.insert(d.clone()) {
                    continue;
                }
                if let Some(s) = acts.iter().find(|s| s.name.to_lowercase() == d) {
                    todo.extend(s.depends_on.iter().map(|x| x.activity.to_lowercase()));
                }
            }
            // An Until's expression reads what its inner activities did.
            let mut own = allowed.clone();
            if a.kind == ActivityKind::Until {
                self.f.walk(&a.children, &mut |c| {
                    own.insert(c.name.to_lowercase());
                });
            }
            self.activity(a, &own, owner, in_each);
            let each = in_each || a.kind == ActivityKind::ForEach;
            for inner in a.inner() {
                self.container(inner, &allowed, Some(&a.name), each);
            }
        }
    }

    fn activity(
        &mut self,
        a: &Activity,
        allowed: &BTreeSet<String>,
        owner: Option<&str>,
        in_each: bool,
    ) {
        let mut rs = Vec::new();
        refs(&a.type_properties, "typeProperties", &mut rs);
        for (side, list) in [("inputs", &a.inputs), ("outputs", &a.outputs)] {
            for (i, r) in list.iter().enumerate() {
                for (k, v) in &r.parameters {
                    refs(v, &format!("{side}[{i}].parameters.{k}"), &mut rs);
                }
            }
        }
        for (path, r) in rs {
            // A Filter's condition is evaluated for each item.
            let each = in_each
                || (a.kind == ActivityKind::Filter && path.starts_with("typeProperties.condition"));
            self.reference(a, &path, r, allowed, owner, each);
        }
        self.props(a);
    }

    fn reference(
        &mut self,
        a: &Activity,
        path: &str,
        r: Ref,
        allowed: &BTreeSet<String>,
        owner: Option<&str>,
        in_each: bool,
    ) {
        let pipe = self.pipe;
        let m = match r {
            Ref::Activity { name, steps } => {
                let key = name.to_lowercase();
                // A dependency of an activity reported unsupported is not
                // in `all`, but it exists (dependsOn is checked).
                let target = pipe.all.get(&key);
                if target.is_none() && allowed.contains(&key) {
                    return;
                }
                let Some(target) = target else {
                    self.report(
                        a,
                        format!(
                            "{path}: activity('{name}'): there is no activity {name} in pipeline {}",
                            pipe.name
                        ),
                    );
                    return;
                };
                if !allowed.contains(&key) {
                    let via = owner
                        .map(|o| format!(", nor one its container {o} depends on"))
                        .unwrap_or_default();
                    self.report(
                        a,
                        format!(
                            "{path}: activity('{name}') is not an activity {} depends on (directly or through dependsOn){via}, so it may not have run; add {name} to dependsOn",
                            a.name
                        ),
                    );
                    return;
                }
                let ActivityProps::Lookup(l) = &target.props else {
                    return;
                };
                let first_only = match &l.first_row_only {
                    None | Some(Value::Null) => Some(true),
                    Some(Value::Bool(b)) => Some(*b),
                    _ => None,
                };
                let [(output, _), (what, safe), ..] = steps.as_slice() else {
                    return;
                };
                if !output.eq_ignore_ascii_case("output") || *safe {
                    return;
                }
                let target = &target.name;
                if what.eq_ignore_ascii_case("firstRow") && first_only == Some(false) {
                    format!(
                        "{path}: activity('{name}').output.firstRow: Lookup {target} has firstRowOnly: false, so its output has `count` and `value`, no `firstRow`; use activity('{name}').output.value[0]"
                    )
                } else if (what.eq_ignore_ascii_case("value") || what.eq_ignore_ascii_case("count"))
                    && first_only == Some(true)
                {
                    format!(
                        "{path}: activity('{name}').output.{what}: Lookup {target} returns its first row only (firstRowOnly is true unless set to false), so its output is `firstRow`; set firstRowOnly: false"
                    )
                } else {
                    return;
                }
            }
            Ref::Parameter(p) if !declared(pipe.parameters, &p) => format!(
                "{path}: pipeline().parameters.{p}: the pipeline declares no parameter {p} (parameters: {})",
                names(pipe.parameters.keys())
            ),
            Ref::Variable(v) if !declared(pipe.variables, &v) => format!(
                "{path}: variables('{v}'): variable {v} is not declared (variables: {})",
                names(pipe.variables.keys())
            ),
            Ref::Item if !in_each => {
                format!("{path}: item() is only available inside a ForEach activity")
            }
            Ref::Dataset(_) => {
                format!("{path}: dataset() is only available inside a dataset definition")
            }
            _ => return,
        };
        self.report(a, m);
    }

    /// The typed properties of each kind.
    fn props(&mut self, a: &Activity) {
        let required = |v: Option<&Value>, prop: &str| -> Option<String> {
            is_blank(v).then(|| format!("typeProperties.{prop} is required"))
        };
        let mut found: Vec<String> = Vec::new();
        match &a.props {
            ActivityProps::Invalid => {}
            ActivityProps::Lookup(l) => {
                let source = self.source(a, l.source.as_ref());
                let query = source.as_ref().is_some_and(|s| s.query().is_some());
                if source
                    .as_ref()
                    .is_some_and(|s| !is_blank(s.additional_columns.as_ref()))
                {
                    found.push(
                        "typeProperties.source.additionalColumns is not supported in a Lookup (a Copy's source property)"
                            .to_string(),
                    );
                }
                if let Some(v) = &l.first_row_only
                    && !v.is_boolean()
                    && !v.is_null()
                    && !is_expression(v)
                {
                    found.push(format!(
                        "typeProperties.firstRowOnly must be true or false, got {v}"
                    ));
                }
                match l.dataset.as_ref().filter(|d| !d.is_null()) {
                    None => {
                        found.push("typeProperties.dataset is required".to_string());
                        if !query {
                            found.push("typeProperties.source: no query, and no dataset".into());
                        }
                    }
                    Some(d) => {
                        let mut f = Vec::new();
                        if let Some(r) =
                            typed::parse::<typed::Reference>(d, "typeProperties.dataset", &mut f)
                        {
                            let r = DatasetRef {
                                name: r.reference_name.trim().to_string(),
                                parameters: r.parameters.unwrap_or_default(),
                            };
                            if let Some(d) = self.dataset_use(
                                a,
                                &r,
                                "typeProperties.dataset",
                                Use::Read { query },
                            ) && d.kind == "Binary"
                            {
                                found.push(format!(
                                    "typeProperties.dataset: dataset {} is a Binary dataset, which has no rows to look up",
                                    d.name
                                ));
                            }
                        }
                        self.found(a, f);
                    }
                }
            }
            ActivityProps::Copy(c) => {
                let source = self.source(a, c.source.as_ref());
                if c.source.as_ref().is_none_or(Value::is_null) {
                    found.push("typeProperties.source is required".to_string());
                }
                let query = source.as_ref().is_some_and(|s| s.query().is_some());
                if let Err(e) =
                    super::columns::Shape::parse(c.source.as_ref(), c.translator.as_ref(), true)
                {
                    found.extend(e.into_iter().map(|e| format!("typeProperties.{e}")));
                }
                if c.enable_skip_incompatible_row == Some(Value::Bool(true)) {
                    found.push(
                        "typeProperties.enableSkipIncompatibleRow is not supported: skipping incompatible rows"
                            .to_string(),
                    );
                }
                for (side, list) in [("inputs", &a.inputs), ("outputs", &a.outputs)] {
                    let one = if side == "inputs" { "input" } else { "output" };
                    match list.len() {
                        0 => found.push(format!("{side}: a Copy needs one {one} dataset")),
                        1 => {}
                        n => found.push(format!("{side}: a Copy has one {one} dataset, not {n}")),
                    }
                }
                let input = a
                    .inputs
                    .first()
                    .and_then(|r| self.dataset_use(a, r, "inputs[0]", Use::Read { query }));
                if let Some(r) = a.outputs.first()
                    && let Some(d) = self.dataset_use(a, r, "outputs[0]", Use::Write)
                {
                    if let Some(i) = input
                        && (i.kind == "Binary") != (d.kind == "Binary")
                    {
                        let (at, b, other) = if d.kind == "Binary" {
                            ("outputs[0]", d, i)
                        } else {
                            ("inputs[0]", i, d)
                        };
                        found.push(format!(
                            "{at}: dataset {} is a Binary dataset: a Binary dataset copies only to and from another Binary dataset, and {} is a {} dataset",
                            b.name, other.name, other.kind
                        ));
                    }
                    let sink = c.sink.clone().unwrap_or(Value::Null);
                    let problems = if d.is_file() {
                        super::delimited::options(&d.kind, &d.type_properties, &sink, true)
                            .err()
                            .unwrap_or_default()
                            .into_iter()
                            .chain(
                                super::delimited::split(&sink, true)
                                    .err()
                                    .unwrap_or_default(),
                            )
                            .map(|e| {
                                if e.starts_with("sink.") {
                                    e
                                } else {
                                    format!("dataset {}: {e}", d.name)
                                }
                            })
                            .collect()
                    } else {
                        super::sink::parse(&sink, true).err().unwrap_or_default()
                    };
                    found.extend(problems);
                }
            }
            ActivityProps::StoredProcedure(sp) => {
                let name = sp.stored_procedure_name.as_ref();
                if let Some(m) = required(name, "storedProcedureName") {
                    found.push(m);
                } else if let Some(Value::String(n)) = name
                    && !is_expression(&Value::String(n.clone()))
                    && let Err(e) = highwater_connectors::Procedure::parse_name(n)
                {
                    found.push(format!("typeProperties.storedProcedureName: {e}"));
                }
                if a.linked_service.is_none() {
                    found.push(
                        "linkedServiceName is required (the connection the procedure runs in)"
                            .to_string(),
                    );
                }
                for (k, v) in sp.stored_procedure_parameters.iter().flatten() {
                    let at = format!("typeProperties.storedProcedureParameters.{k}");
                    let mut f = Vec::new();
                    if let Some(p) = typed::parse::<typed::ProcParam>(v, &at, &mut f)
                        && let Some(Value::String(t)) = &p.kind
                        && highwater_connectors::ProcType::parse(t).is_none()
                    {
                        found.push(format!(
                            "{at}.type: {t} is not one of {}",
                            highwater_connectors::ProcType::NAMES
                        ));
                    }
                    self.found(a, f);
                }
            }
            ActivityProps::ForEach(fe) => {
                found.extend(required(fe.items.as_ref(), "items"));
                if let Some(v) = &fe.is_sequential
                    && !v.is_boolean()
                    && !is_expression(v)
                {
                    found.push(format!(
                        "typeProperties.isSequential must be true or false, got {v}"
                    ));
                }
                if let Some(v) = &fe.batch_count
                    && !is_expression(v)
                    && !v.as_u64().is_some_and(|n| (1..=50).contains(&n))
                {
                    found.push(format!(
                        "typeProperties.batchCount must be a whole number from 1 to 50, got {v}"
                    ));
                }
            }
            ActivityProps::IfCondition(i) => {
                found.extend(required(i.expression.as_ref(), "expression"));
            }
            ActivityProps::SetVariable(v) | ActivityProps::AppendVariable(v) => {
                let name = v.variable_name.as_ref();
                if let Some(m) = required(name, "variableName") {
                    found.push(m);
                } else if let Some(Value::String(n)) = name
                    && !is_expression(&Value::String(n.clone()))
                    && !declared(self.pipe.variables, n.trim())
                {
                    found.push(format!(
                        "typeProperties.variableName: variable {n} is not declared (variables: {})",
                        names(self.pipe.variables.keys())
                    ));
                }
                if v.value.is_none() {
                    found.push("typeProperties.value is required".to_string());
                }
            }
            ActivityProps::Wait(w) => match &w.wait_time_in_seconds {
                None | Some(Value::Null) => {
                    found.push("typeProperties.waitTimeInSeconds is required".to_string())
                }
                Some(v) if is_expression(v) => {}
                Some(v) => {
                    let secs = match v {
                        Value::Number(n) => n.as_f64(),
                        Value::String(s) => s.trim().parse::<f64>().ok(),
                        _ => None,
                    };
                    if !secs.is_some_and(|s| s.is_finite() && s >= 0.0) {
                        found.push(format!(
                            "typeProperties.waitTimeInSeconds must be a number of seconds ≥ 0, got {v}"
                        ));
                    }
                }
            },
            ActivityProps::Fail(fl) => {
                found.extend(required(fl.message.as_ref(), "message"));
                found.extend(required(fl.error_code.as_ref(), "errorCode"));
            }
            ActivityProps::Script(sc) => found.extend(super::activity::script::check(a, sc)),
            ActivityProps::Filter(fl) => found.extend(super::activity::filter::check(fl)),
            ActivityProps::Until(u) => found.extend(super::activity::until::check(u)),
            ActivityProps::Switch(sw) => found.extend(super::activity::switch::check(sw)),
            ActivityProps::Web(w) => found.extend(super::activity::web::check(w)),
            ActivityProps::GetMetadata(g) => {
                self.files_dataset(a, g.dataset.as_ref(), &mut found);
                self.store_settings(a, g.store_settings.as_ref(), g.format_settings.as_ref());
                match &g.field_list {
                    Some(Value::Array(l)) if !l.is_empty() => {
                        for f in l {
                            if let Value::String(s) = f
                                && !is_expression(f)
                                && !super::activity::get_metadata::FIELDS.contains(&s.as_str())
                            {
                                found.push(format!(
                                    "typeProperties.fieldList: {s} is not supported (supported: {})",
                                    super::activity::get_metadata::FIELDS.join(", ")
                                ));
                            }
                        }
                    }
                    Some(v) if is_expression(v) => {}
                    _ => {
                        found.push("typeProperties.fieldList is required (a list of fields)".into())
                    }
                }
            }
            ActivityProps::Delete(dl) => {
                self.files_dataset(a, dl.dataset.as_ref(), &mut found);
                self.store_settings(a, dl.store_settings.as_ref(), None);
                if dl.enable_logging.as_ref().is_some_and(|v| {
                    v.as_bool() == Some(true)
                        || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
                }) {
                    found.push("typeProperties.enableLogging is not supported: logging the deleted files to a store; the activity output lists them".into());
                }
            }
            ActivityProps::Validation(v) => {
                self.files_dataset(a, v.dataset.as_ref(), &mut found);
                if let Some(Value::String(t)) = &v.timeout
                    && !is_expression(&Value::String(t.clone()))
                    && super::model::parse_timespan(t).is_none()
                {
                    found.push(format!(
                        "typeProperties.timeout `{t}` is not a time span D.HH:MM:SS"
                    ));
                }
                for (k, x) in [("sleep", &v.sleep), ("minimumSize", &v.minimum_size)] {
                    if let Some(x) = x
                        && !x.is_null()
                        && !x.is_number()
                        && !is_expression(x)
                    {
                        found.push(format!("typeProperties.{k} must be a number, got {x}"));
                    }
                }
            }
            ActivityProps::ExecutePipeline(e) => match &e.pipeline {
                None => found.push("typeProperties.pipeline is required".to_string()),
                Some(r) => {
                    let given = e.parameters.clone().unwrap_or_default();
                    if let Some(def) = self.f.called.get(r.reference_name.trim()) {
                        for k in given.keys() {
                            if !declared(&def.parameters, k) {
                                found.push(format!(
                                    "typeProperties.parameters.{k}: pipeline {} declares no parameter {k} (parameters: {})",
                                    def.name,
                                    names(def.parameters.keys())
                                ));
                            }
                        }
                        for (k, d) in &def.parameters {
                            if d.get("defaultValue").is_none() && !declared(&given, k) {
                                found.push(format!(
                                    "typeProperties.parameters: pipeline {} needs parameter {k}, which has no default value",
                                    def.name
                                ));
                            }
                        }
                    }
                }
            },
        }
        for m in found {
            self.report(a, m);
        }
    }

    /// A Lookup's or Copy's `source`, typed.
    fn source(&mut self, a: &Activity, v: Option<&Value>) -> Option<Source> {
        let v = v.filter(|v| !v.is_null())?;
        let mut f = Vec::new();
        let s = typed::parse::<Source>(v, "typeProperties.source", &mut f);
        self.found(a, f);
        if let Some(s) = &s {
            self.store_settings(a, s.store_settings.as_ref(), s.format_settings.as_ref());
        }
        s
    }

    /// A file source's `storeSettings` and `formatSettings`.
    fn store_settings(&mut self, a: &Activity, store: Option<&Value>, format: Option<&Value>) {
        let mut f = Vec::new();
        if let Some(v) = store.filter(|v| !v.is_null())
            && let Some(s) = typed::parse::<typed::StoreSettings>(v, "storeSettings", &mut f)
        {
            for (k, x) in [
                ("modifiedDatetimeStart", &s.modified_datetime_start),
                ("modifiedDatetimeEnd", &s.modified_datetime_end),
            ] {
                if let Some(x) = x
                    && !is_expression(x)
                    && let Err(e) = super::files::datetime(Some(x), k)
                {
                    f.push((format!("storeSettings.{k}"), e.to_string()));
                }
            }
            if s.enable_partition_discovery == Some(Value::Bool(true)) {
                f.push((
                    "storeSettings.enablePartitionDiscovery".into(),
                    "is not supported: partition discovery".into(),
                ));
            }
        }
        if let Some(v) = format.filter(|v| !v.is_null()) {
            typed::parse::<typed::FormatReadSettings>(v, "formatSettings", &mut f);
        }
        self.found(a, f);
    }

    /// The file dataset of a GetMetadata, Delete or Validation.
    fn files_dataset(&mut self, a: &Activity, v: Option<&Value>, found: &mut Vec<String>) {
        let Some(d) = v.filter(|d| !d.is_null()) else {
            found.push("typeProperties.dataset is required".to_string());
            return;
        };
        let mut f = Vec::new();
        if let Some(r) = typed::parse::<typed::Reference>(d, "typeProperties.dataset", &mut f) {
            let r = DatasetRef {
                name: r.reference_name.trim().to_string(),
                parameters: r.parameters.unwrap_or_default(),
            };
            self.dataset_use(a, &r, "typeProperties.dataset", Use::Files);
        }
        self.found(a, f);
    }

    /// A dataset used by `a` at `path`: it exists, its parameters match,
    /// its kind fits the use.
    fn dataset_use<'f>(
        &mut self,
        a: &Activity,
        r: &DatasetRef,
        path: &str,
        how: Use,
    ) -> Option<&'f super::model::Dataset>
    where
        Self: 'f,
    {
        let f: &'f Factory = self.f;
        let Some(d) = f.datasets.get(&r.name) else {
            self.report(
                a,
                format!(
                    "dataset {} not found in dataset/ or datasets/ next to the pipeline ({path})",
                    r.name
                ),
            );
            return None;
        };
        self.used.insert(d.name.clone());
        let mut found = Vec::new();
        for k in r.parameters.keys() {
            if !declared(&d.defaults, k) {
                found.push(format!(
                    "{path}.parameters.{k}: dataset {} declares no parameter {k} (parameters: {})",
                    d.name,
                    names(d.defaults.keys())
                ));
            }
        }
        for p in &d.required {
            if !declared(&r.parameters, p) {
                found.push(format!(
                    "{path}.parameters: dataset {} needs parameter {p}, which has no default value",
                    d.name
                ));
            }
        }
        match (&d.props, how) {
            (DatasetProps::Unsupported, _) => found.push(format!(
                "{path}: dataset {} is a {} dataset, which highwater does not read or write (it copies rows: table datasets, and DelimitedText, Parquet or Json files; and Binary files as they are)",
                d.name, d.kind
            )),
            (DatasetProps::Table(t), Use::Read { query: false }) if !t.names_table() => {
                found.push(format!(
                    "typeProperties.source: no query, and dataset {} names no table (tableName, or schema and table)",
                    d.name
                ))
            }
            (DatasetProps::Table(t), Use::Write) if !t.names_table() => found.push(format!(
                "{path}: dataset {} names no table (tableName, or schema and table)",
                d.name
            )),
            (p, Use::Files) if !p.is_file() => found.push(format!(
                "{path}: dataset {} is a {} dataset, not a file or folder (DelimitedText, Json, Parquet, Binary)",
                d.name, d.kind
            )),
            _ => {}
        }
        for m in found {
            self.report(a, m);
        }
        if matches!(d.props, DatasetProps::Unsupported | DatasetProps::Invalid) {
            None
        } else {
            Some(d)
        }
    }
}
