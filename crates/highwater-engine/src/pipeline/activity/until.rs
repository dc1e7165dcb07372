//! Until: run the inner activities, then evaluate `expression`; repeat
//! until it is true (a do-until loop, as Data Factory's). Each iteration
//! sees its own inner activity results; variables carry over. A failed
//! iteration does not stop the loop; the Until fails when its last
//! iteration failed, or when `timeout` (default 7 days) passes first.

use std::time::Duration;

use highwater_core::{Error, Result};
use serde_json::{Value, json};

use crate::pipeline::model::parse_timespan;
use crate::pipeline::typed::{self, is_blank, is_expression};
use crate::pipeline::{Activity, Done, Frame, resolve, run_container, scope, text};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

/// Load-time checks.
pub(crate) fn check(u: &typed::Until) -> Vec<String> {
    let mut out = Vec::new();
    if is_blank(u.expression.as_ref()) {
        out.push("typeProperties.expression is required".to_string());
    }
    if let Some(t) = &u.timeout
        && !t.is_null()
        && !is_expression(t)
        && t.as_str().and_then(parse_timespan).is_none()
    {
        out.push(format!(
            "typeProperties.timeout {t} is not a duration like \"0.12:00:00\" (D.HH:MM:SS)"
        ));
    }
    out
}

pub(crate) async fn until(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let limit = match tp.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT,
        Some(t) => parse_timespan(&text(Some(t))).ok_or_else(|| {
            Error::data(format!(
                "typeProperties.timeout {t} is not a duration like \"0.12:00:00\""
            ))
        })?,
    };
    let expression = a
        .type_properties
        .get("expression")
        .cloned()
        .unwrap_or(Value::Null);
    let mut iterations = 0usize;
    let mut last_errors: Vec<String> = Vec::new();
    let looped = tokio::time::timeout(limit, async {
        loop {
            let child = frame.child(None, format!("{}{}[{iterations}]/", frame.prefix, a.name));
            iterations += 1;
            last_errors = run_container(&child, &a.children).await?;
            let path = format!("typeProperties.expression (iteration {})", iterations - 1);
            match resolve(&expression, &path, &scope(&child))? {
                Value::Bool(true) => return Ok::<(), Error>(()),
                Value::Bool(false) => {}
                other => {
                    return Err(Error::data(format!(
                        "{path} must evaluate to a boolean, got {other}"
                    )));
                }
            }
        }
    })
    .await;
    match looped {
        Err(_) => {
            return Err(Error::data(format!(
                "the expression was still false after {}s (typeProperties.timeout), {iterations} iterations",
                limit.as_secs()
            )));
        }
        Ok(r) => r?,
    }
    if !last_errors.is_empty() {
        return Err(Error::data(format!(
            "the last iteration failed: {}",
            last_errors.join("; ")
        )));
    }
    Ok(Done {
        output: json!({}),
        notes: vec![format!("{iterations} iterations")],
        ..Done::default()
    })
}
