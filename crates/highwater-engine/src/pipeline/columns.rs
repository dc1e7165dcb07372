//! The columns a Copy writes: the source's, plus `source.additionalColumns`,
//! then chosen and renamed by a `TabularTranslator`.
//!
//! ```text
//! source batch ─► + additionalColumns ─► translator mappings ─► sink
//!                   {name, value}           source.name | source.ordinal (1-based)
//!                   value: literal,           → sink.name (sink.ordinal orders them)
//!                   expression result,      legacy columnMappings "a: x, b: y" / {"a": "x"}
//!                   $$COLUMN:<col> (a copy) unmapped columns are dropped
//! ```
//!
//! Names match exactly, else ignoring case when that is unambiguous. A name
//! the source does not have is an error naming it, before any row is
//! written. `$$FILEPATH` (file sources only) and hierarchical mappings
//! (`source.path` beyond `$['col']`, `collectionReference`, `schemaMapping`)
//! are refused at load. `typeConversion` and `typeConversionSettings` are
//! accepted and change nothing: values keep their source type and the
//! target's column types convert them, as the sink's load does.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use highwater_core::{Error, Result};
use serde_json::Value;

use super::sink::is_literal;
use super::typed::is_expression;

/// One additional column's value.
#[derive(Debug, Clone)]
enum Extra {
    /// A literal or an expression's result, the same on every row.
    Value(Value),
    /// `$$COLUMN:<col>`: a copy of a source column.
    Column(String),
}

/// Where a mapped column comes from.
#[derive(Debug, Clone)]
enum From {
    Name(String),
    /// 1-based position among the source's columns.
    Ordinal(usize),
}

#[derive(Debug, Clone)]
struct Mapping {
    from: From,
    to: String,
    /// For messages: `translator.mappings[2]`.
    at: String,
}

/// What `additionalColumns` and `translator` ask for.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    extra: Vec<(String, Extra)>,
    mapping: Option<Vec<Mapping>>,
}

/// An additional column resolved against the source.
enum Added {
    Value(Value),
    /// Index of the source column copied.
    Column(usize),
}

/// A [`Shape`] applied to one source schema.
pub struct Plan {
    pub schema: SchemaRef,
    extra: Vec<Added>,
    /// Indexes into the source columns followed by the extra ones.
    pick: Vec<usize>,
    source_width: usize,
}

fn text(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim)
}

impl Shape {
    /// Parse the evaluated (or, `at_load`, literal) `source` and
    /// `translator`. Errors name the property.
    pub fn parse(
        source: Option<&Value>,
        translator: Option<&Value>,
        at_load: bool,
    ) -> std::result::Result<Shape, Vec<String>> {
        let mut errors = Vec::new();
        let mut shape = Shape::default();
        // At load, a whole property given as an expression is judged when
        // evaluated; literal parts of a literal list are judged now.
        let known = |v: &&Value| !(v.is_null() || (at_load && is_expression(v)));
        if let Some(list) = source
            .and_then(|s| s.get("additionalColumns"))
            .filter(known)
        {
            shape.extra = additional(list, &mut errors);
        }
        if let Some(t) = translator.filter(known) {
            shape.mapping = translate(t, at_load, &mut errors);
        }
        if errors.is_empty() {
            Ok(shape)
        } else {
            Err(errors)
        }
    }

    /// Nothing to add, nothing to map.
    pub fn is_identity(&self) -> bool {
        self.extra.is_empty() && self.mapping.is_none()
    }

    /// Resolve the names against the source's columns.
    pub fn plan(&self, source: &Schema) -> Result<Plan> {
        let names: Vec<&str> = source.fields().iter().map(|f| f.name().as_str()).collect();
        let shown = || names.join(", ");
        let find = |list: &[&str], name: &str| -> Option<usize> {
            list.iter().position(|n| *n == name).or_else(|| {
                let l: Vec<usize> = (0..list.len())
                    .filter(|i| list[*i].eq_ignore_ascii_case(name))
                    .collect();
                (l.len() == 1).then(|| l[0])
            })
        };
        let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (name, e) in &self.extra {
            if find(&names, name).is_some() || fields.iter().any(|f| f.name() == name) {
                return Err(Error::config(
                    "source.additionalColumns",
                    format!("column {name} exists already (source columns: {})", shown()),
                ));
            }
            let dt = match e {
                Extra::Column(c) => match find(&names, c) {
                    Some(i) => source.field(i).data_type().clone(),
                    None => {
                        return Err(Error::config(
                            format!("source.additionalColumns {name}"),
                            format!(
                                "$$COLUMN:{c}: the source has no column {c} (columns: {})",
                                shown()
                            ),
                        ));
                    }
                },
                Extra::Value(v) => value_type(v),
            };
            fields.push(Field::new(name.clone(), dt, true));
        }
        let extended: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
        let ext: Vec<&str> = extended.iter().map(String::as_str).collect();
        let pick: Vec<(usize, String)> = match &self.mapping {
            None => (0..fields.len())
                .map(|i| (i, fields[i].name().clone()))
                .collect(),
            Some(maps) => {
                let mut out = Vec::new();
                for m in maps {
                    let i = match &m.from {
                        From::Name(n) => find(&ext, n).ok_or_else(|| {
                            Error::config(
                                &m.at,
                                format!(
                                    "column {n} is not in the source (columns: {})",
                                    ext.join(", ")
                                ),
                            )
                        })?,
                        From::Ordinal(o) if (1..=names.len()).contains(o) => o - 1,
                        From::Ordinal(o) => {
                            return Err(Error::config(
                                &m.at,
                                format!(
                                    "source.ordinal {o} is past the source's {} columns ({})",
                                    names.len(),
                                    shown()
                                ),
                            ));
                        }
                    };
                    if out.iter().any(|(_, t): &(usize, String)| t == &m.to) {
                        return Err(Error::config(
                            &m.at,
                            format!("sink column {} is mapped twice", m.to),
                        ));
                    }
                    out.push((i, m.to.clone()));
                }
                out
            }
        };
        let schema = Arc::new(Schema::new(
            pick.iter()
                .map(|(i, to)| fields[*i].clone().with_name(to.clone()))
                .collect::<Vec<_>>(),
        ));
        let extra = self
            .extra
            .iter()
            .map(|(_, e)| match e {
                Extra::Column(c) => Added::Column(find(&names, c).unwrap_or(0)),
                Extra::Value(v) => Added::Value(v.clone()),
            })
            .collect();
        Ok(Plan {
            schema,
            extra,
            pick: pick.into_iter().map(|(i, _)| i).collect(),
            source_width: names.len(),
        })
    }
}

impl Plan {
    /// The batch as the sink gets it.
    pub fn apply(&self, b: &RecordBatch) -> Result<RecordBatch> {
        let n = b.num_rows();
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        debug_assert_eq!(cols.len(), self.source_width);
        for e in &self.extra {
            cols.push(match e {
                Added::Column(i) => b.column(*i).clone(),
                Added::Value(v) => constant(v, n),
            });
        }
        let picked: Vec<ArrayRef> = self.pick.iter().map(|i| cols[*i].clone()).collect();
        RecordBatch::try_new(self.schema.clone(), picked).map_err(Error::data)
    }
}

fn value_type(v: &Value) -> DataType {
    match v {
        Value::Bool(_) => DataType::Boolean,
        Value::Number(n) if n.is_i64() => DataType::Int64,
        Value::Number(_) => DataType::Float64,
        _ => DataType::Utf8,
    }
}

fn constant(v: &Value, n: usize) -> ArrayRef {
    use arrow_array::{BooleanArray, Float64Array, Int64Array, StringArray};
    match v {
        Value::Null => new_null_array(&DataType::Utf8, n),
        Value::Bool(b) => Arc::new(BooleanArray::from(vec![*b; n])),
        Value::Number(x) if x.is_i64() => {
            Arc::new(Int64Array::from(vec![x.as_i64().unwrap_or(0); n]))
        }
        Value::Number(x) => Arc::new(Float64Array::from(vec![x.as_f64().unwrap_or(0.0); n])),
        Value::String(s) => Arc::new(StringArray::from(vec![s.as_str(); n])),
        other => Arc::new(StringArray::from(vec![other.to_string(); n])),
    }
}

/// `[{name, value}]`.
fn additional(list: &Value, errors: &mut Vec<String>) -> Vec<(String, Extra)> {
    let at = "source.additionalColumns";
    // An expression may give the list as JSON text.
    let parsed: Option<Value> = list.as_str().and_then(|t| serde_json::from_str(t).ok());
    let list = parsed.as_ref().unwrap_or(list);
    let Some(items) = list.as_array() else {
        errors.push(format!(
            "{at} must be an array of {{name, value}}, got {list}"
        ));
        return vec![];
    };
    let mut out: Vec<(String, Extra)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let name = item.get("name").and_then(text).unwrap_or_default();
        if name.is_empty() {
            errors.push(format!("{at}[{i}].name is required"));
            continue;
        }
        if let Some(k) = item
            .as_object()
            .and_then(|m| m.keys().find(|k| *k != "name" && *k != "value"))
        {
            errors.push(format!(
                "{at}[{i}].{k} is not a property of an additional column (name, value)"
            ));
        }
        if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            errors.push(format!("{at}: column {name} is given twice"));
        }
        let value = item.get("value").cloned().unwrap_or(Value::Null);
        let extra = match value.as_str() {
            Some(s) if s.trim() == "$$FILEPATH" => {
                errors.push(format!(
                    "{at}[{i}] ({name}): $$FILEPATH is not supported yet (the path of the file a row comes from)"
                ));
                continue;
            }
            Some(s) if s.starts_with("$$COLUMN:") => {
                Extra::Column(s["$$COLUMN:".len()..].trim().to_string())
            }
            _ => Extra::Value(value),
        };
        out.push((name.to_string(), extra));
    }
    out
}

/// The mappings of a `TabularTranslator` (or its legacy `columnMappings`);
/// `None` when it maps nothing (every column passes).
fn translate(t: &Value, at_load: bool, errors: &mut Vec<String>) -> Option<Vec<Mapping>> {
    // An expression may give the translator as JSON text.
    let parsed;
    let t = match t {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(v) => {
                parsed = v;
                &parsed
            }
            Err(e) => {
                errors.push(format!(
                    "translator must be an object (or its JSON text): {e}"
                ));
                return None;
            }
        },
        v => v,
    };
    let Some(m) = t.as_object() else {
        errors.push(format!("translator must be an object, got {t}"));
        return None;
    };
    let known = |v: &Value| !at_load || is_literal(v);
    let mut maps = None;
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "type" => {
                if known(v) && text(v) != Some("TabularTranslator") {
                    errors.push(format!(
                        "translator.type {v} is not supported (only TabularTranslator)"
                    ));
                }
            }
            // Types follow the target's columns; see the module doc.
            "typeConversion" | "typeConversionSettings" | "mapComplexValuesToString" => {}
            "mappings" if !known(v) => {}
            "mappings" => maps = mappings(v, errors),
            "columnMappings" if !known(v) => {}
            "columnMappings" => maps = column_mappings(v, errors),
            "schemaMapping" | "collectionReference" => errors.push(format!(
                "translator.{k} is not supported: hierarchical (JSON) mappings; map tabular columns by name"
            )),
            other => errors.push(format!(
                "translator.{other} is not a property of a TabularTranslator highwater knows"
            )),
        }
    }
    maps
}

fn mappings(v: &Value, errors: &mut Vec<String>) -> Option<Vec<Mapping>> {
    let parsed;
    let v = match v {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(x) => {
                parsed = x;
                &parsed
            }
            Err(e) => {
                errors.push(format!("translator.mappings must be an array: {e}"));
                return None;
            }
        },
        v => v,
    };
    let Some(list) = v.as_array() else {
        errors.push(format!("translator.mappings must be an array, got {v}"));
        return None;
    };
    // No mappings: Data Factory's default mapping (every column by name).
    if list.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut ordinals = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("translator.mappings[{i}]");
        let (src, sink) = (m.get("source"), m.get("sink"));
        let from = match src {
            Some(s) => {
                let name = s.get("name").and_then(text).filter(|n| !n.is_empty());
                let ordinal = s.get("ordinal").filter(|o| !o.is_null());
                let path = s.get("path").and_then(text).filter(|p| !p.is_empty());
                match (name, ordinal, path) {
                    (Some(n), _, _) => Some(From::Name(n.to_string())),
                    (None, Some(o), _) => match ordinal_of(o) {
                        Some(o) => Some(From::Ordinal(o)),
                        None => {
                            errors.push(format!(
                                "{at}.source.ordinal must be a whole number from 1, got {o}"
                            ));
                            None
                        }
                    },
                    (None, None, Some(p)) => match simple_path(p) {
                        Some(n) => Some(From::Name(n)),
                        None => {
                            errors.push(format!(
                                "{at}.source.path `{p}` is not supported: only one top-level property ($['col'] or $.col)"
                            ));
                            None
                        }
                    },
                    _ => {
                        errors.push(format!("{at}.source needs a name (or ordinal)"));
                        None
                    }
                }
            }
            None => {
                errors.push(format!("{at}.source is required"));
                None
            }
        };
        let sink_ordinal = sink
            .and_then(|s| s.get("ordinal"))
            .filter(|o| !o.is_null())
            .map(|o| (o, ordinal_of(o)));
        if let Some((o, None)) = sink_ordinal {
            errors.push(format!(
                "{at}.sink.ordinal must be a whole number from 1, got {o}"
            ));
        }
        let sink_ordinal = sink_ordinal.and_then(|(_, o)| o);
        let to = sink
            .and_then(|s| s.get("name"))
            .and_then(text)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .or_else(|| sink_ordinal.map(|o| format!("Prop_{}", o - 1)));
        let Some(to) = to else {
            errors.push(format!("{at}.sink needs a name"));
            continue;
        };
        if let Some(from) = from {
            ordinals.push(sink_ordinal);
            out.push(Mapping { from, to, at });
        }
    }
    // Sink ordinals, when every mapping has one, order the columns.
    if !ordinals.is_empty() && ordinals.iter().all(Option::is_some) {
        let mut paired: Vec<(usize, Mapping)> = ordinals.into_iter().flatten().zip(out).collect();
        paired.sort_by_key(|(o, _)| *o);
        out = paired.into_iter().map(|(_, m)| m).collect();
    }
    Some(out)
}

fn ordinal_of(v: &Value) -> Option<usize> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n| *n >= 1)
}

/// `$['col']`, `$.col`, `['col']`, `col` → `col`.
fn simple_path(p: &str) -> Option<String> {
    let p = p.trim();
    let rest = p.strip_prefix('$').unwrap_or(p);
    if let Some(inner) = rest
        .strip_prefix("['")
        .and_then(|r| r.strip_suffix("']"))
        .filter(|i| !i.contains('\''))
    {
        return Some(inner.to_string());
    }
    let name = rest.strip_prefix('.').unwrap_or(rest);
    (!name.is_empty() && !name.contains(['.', '[', ']', '*'])).then(|| name.to_string())
}

/// Legacy `"a: x, b: y"` or `{"a": "x"}`.
fn column_mappings(v: &Value, errors: &mut Vec<String>) -> Option<Vec<Mapping>> {
    let at = "translator.columnMappings";
    let pairs: Vec<(String, String)> = match v {
        Value::String(s) => {
            let mut l = Vec::new();
            for part in s.split(',').filter(|p| !p.trim().is_empty()) {
                match part.split_once(':') {
                    Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                        l.push((a.trim().to_string(), b.trim().to_string()))
                    }
                    _ => errors.push(format!("{at}: `{}` is not `source: sink`", part.trim())),
                }
            }
            l
        }
        Value::Object(m) => m
            .iter()
            .filter_map(|(a, b)| match text(b) {
                Some(b) if !b.is_empty() => Some((a.clone(), b.to_string())),
                _ => {
                    errors.push(format!("{at}.{a} must name a sink column, got {b}"));
                    None
                }
            })
            .collect(),
        other => {
            errors.push(format!("{at} must be a string or an object, got {other}"));
            return None;
        }
    };
    Some(
        pairs
            .into_iter()
            .map(|(a, b)| Mapping {
                at: format!("{at} {a}"),
                from: From::Name(a),
                to: b,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Int64Array, StringArray};
    use serde_json::json;

    use super::*;

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("Name", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .unwrap()
    }

    fn names(b: &RecordBatch) -> Vec<String> {
        b.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[test]
    fn additional_columns_then_mappings() {
        let source = json!({"additionalColumns": [
            {"name": "run", "value": "r1"}, {"name": "id2", "value": "$$COLUMN:ID"}]});
        let translator = json!({"type": "TabularTranslator", "mappings": [
            {"source": {"name": "name"}, "sink": {"name": "who"}},
            {"source": {"name": "run"}, "sink": {"name": "run_id"}},
            {"source": {"ordinal": 1}, "sink": {"name": "k"}}]});
        let shape = Shape::parse(Some(&source), Some(&translator), false).unwrap();
        let b = batch();
        let plan = shape.plan(&b.schema()).unwrap();
        let out = plan.apply(&b).unwrap();
        assert_eq!(names(&out), ["who", "run_id", "k"]);
        let run = out
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(run.value(1), "r1");
        let none = Shape::parse(Some(&source), None, false).unwrap();
        let out = none.plan(&b.schema()).unwrap().apply(&b).unwrap();
        assert_eq!(names(&out), ["id", "Name", "run", "id2"]);
        assert_eq!(out.column(3).len(), 2);
    }

    #[test]
    fn unknown_columns_and_refusals_are_named() {
        let t = json!({"columnMappings": "id: k, nope: x"});
        let shape = Shape::parse(None, Some(&t), false).unwrap();
        let e = shape.plan(&batch().schema()).err().unwrap().to_string();
        assert!(e.contains("nope") && e.contains("columnMappings"), "{e}");
        let s = json!({"additionalColumns": [
            {"name": "r", "value": "@pipeline().RunId"}, {"name": "f", "value": "$$FILEPATH"}]});
        assert!(Shape::parse(Some(&s), None, true).is_err());
        let s = json!({"additionalColumns": "@pipeline().parameters.extra"});
        assert!(Shape::parse(Some(&s), None, true).is_ok());
        let t = json!({"type": "TabularTranslator", "collectionReference": "$.x"});
        assert!(Shape::parse(None, Some(&t), true).is_err());
        let t = json!({"mappings": "@pipeline().parameters.m"});
        assert!(Shape::parse(None, Some(&t), true).is_ok());
        assert_eq!(simple_path("$['a b']").as_deref(), Some("a b"));
        assert_eq!(simple_path("$.x.y"), None);
    }
}
