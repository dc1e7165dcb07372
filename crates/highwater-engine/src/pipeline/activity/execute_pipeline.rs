//! Execute Pipeline: run a pipeline of the factory as a child run, with its
//! own run id, parameters and variables.

use std::sync::{Arc, Mutex};

use highwater_core::{Error, Result};
use serde_json::{Map, Value, json};

use crate::pipeline::{Activity, Done, Frame, PipeCtx, run_container, text};

pub(crate) async fn execute_pipeline(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
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
