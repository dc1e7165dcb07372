//! Set Variable and Append Variable: the pipeline's declared `variables`.

use highwater_core::{Error, Result};
use serde_json::{Value, json};

use crate::pipeline::{Activity, ActivityKind, Done, Frame, lock, text};

pub(crate) fn set_or_append(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
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
