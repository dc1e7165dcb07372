//! Switch: run the activities of the case whose `value` equals what `on`
//! evaluates to (compared as text, case-sensitively), else
//! `defaultActivities`.

use highwater_core::{Error, Result};
use highwater_expr::to_interpolated_string;
use serde_json::{Value, json};

use crate::pipeline::typed::{self, is_blank};
use crate::pipeline::{Activity, Done, Frame, run_container};

/// Load-time checks.
pub(crate) fn check(s: &typed::Switch) -> Vec<String> {
    match (is_blank(s.on.as_ref()), is_blank(s.expression.as_ref())) {
        (true, true) => vec!["typeProperties.on is required".into()],
        (false, false) => {
            vec!["typeProperties.expression: give the value to switch on once, as `on`".into()]
        }
        _ => vec![],
    }
}

pub(crate) async fn switch(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let on = tp
        .get("on")
        .filter(|v| !v.is_null())
        .or_else(|| tp.get("expression"))
        .unwrap_or(&Value::Null);
    let on = match on {
        Value::Object(_) | Value::Array(_) | Value::Null => {
            return Err(Error::data(format!(
                "typeProperties.on must evaluate to a string, got {on}"
            )));
        }
        v => to_interpolated_string(v),
    };
    let case = a
        .cases
        .iter()
        .find(|(v, _)| v.as_str() == Some(on.as_str()));
    let (name, branch) = match case {
        Some((_, acts)) => (format!("case '{on}'"), acts),
        None => ("default".to_string(), &a.children),
    };
    let child = frame.child(None, format!("{}{}/", frame.prefix, a.name));
    let errors = run_container(&child, branch).await?;
    if !errors.is_empty() {
        return Err(Error::data(errors.join("; ")));
    }
    Ok(Done {
        output: json!({}),
        notes: vec![format!("on = '{on}': ran the {name} activities")],
        ..Done::default()
    })
}
