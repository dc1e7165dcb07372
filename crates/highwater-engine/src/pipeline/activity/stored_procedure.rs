//! Stored Procedure: call a procedure with its parameters bound by name.

use highwater_core::{Error, Result};
use highwater_expr::to_interpolated_string;
use serde_json::{Value, json};

use crate::pipeline::datasets::connection;
use crate::pipeline::{Activity, Done, Frame, text};

pub(crate) async fn stored_procedure(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
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
