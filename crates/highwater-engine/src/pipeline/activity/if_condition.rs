//! If Condition: run `ifTrueActivities` or `ifFalseActivities` by the
//! boolean `expression`.

use highwater_core::{Error, Result};
use serde_json::{Value, json};

use crate::pipeline::{Activity, Done, Frame, run_container};

pub(crate) async fn if_condition(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
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
