//! Filter: the items of `items` for which `condition` (evaluated with
//! `item()` bound to each) is true, as `{ItemsCount, FilteredItemsCount,
//! Value}`.

use highwater_core::{Error, Result};
use serde_json::{Value, json};

use crate::pipeline::typed::{self, is_blank};
use crate::pipeline::{Activity, Done, Frame, resolve, scope};

/// Load-time checks.
pub(crate) fn check(f: &typed::Filter) -> Vec<String> {
    let mut out = Vec::new();
    for (v, k) in [(&f.items, "items"), (&f.condition, "condition")] {
        if is_blank(v.as_ref()) {
            out.push(format!("typeProperties.{k} is required"));
        }
    }
    out
}

pub(crate) fn filter(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let items = match tp.get("items") {
        Some(Value::Array(l)) => l.clone(),
        other => {
            return Err(Error::data(format!(
                "typeProperties.items must evaluate to an array, got {}",
                other.map_or("nothing".into(), Value::to_string)
            )));
        }
    };
    let condition = a
        .type_properties
        .get("condition")
        .cloned()
        .unwrap_or(Value::Null);
    let mut kept = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let child = frame.child(Some(item.clone()), frame.prefix.clone());
        let path = format!("typeProperties.condition (item {i})");
        match resolve(&condition, &path, &scope(&child))? {
            Value::Bool(true) => kept.push(item.clone()),
            Value::Bool(false) => {}
            other => {
                return Err(Error::data(format!(
                    "{path} must evaluate to a boolean, got {other}"
                )));
            }
        }
    }
    Ok(Done {
        notes: vec![format!("kept {} of {} items", kept.len(), items.len())],
        output: json!({
            "ItemsCount": items.len(),
            "FilteredItemsCount": kept.len(),
            "Value": kept,
        }),
        ..Done::default()
    })
}
