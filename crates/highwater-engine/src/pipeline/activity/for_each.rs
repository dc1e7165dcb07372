//! ForEach: run the inner activities once per item, `batchCount` at once
//! (one at a time when `isSequential`).

use futures::StreamExt;
use highwater_core::{Error, Result};
use serde_json::{Value, json};

use crate::pipeline::{Activity, Done, Frame, run_container};

pub(crate) async fn for_each(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let items = match tp.get("items") {
        Some(Value::Array(l)) => l.clone(),
        other => {
            return Err(Error::data(format!(
                "typeProperties.items must evaluate to an array, got {}",
                other.map(Value::to_string).unwrap_or("nothing".into())
            )));
        }
    };
    let sequential = tp
        .get("isSequential")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let batch = if sequential {
        1
    } else {
        tp.get("batchCount")
            .and_then(Value::as_u64)
            .unwrap_or(20)
            .clamp(1, 50) as usize
    };
    let n = items.len();
    let results: Vec<(usize, Result<Vec<String>>)> =
        futures::stream::iter(items.into_iter().enumerate())
            .map(|(i, item)| async move {
                let child = frame.child(Some(item), format!("{}{}[{i}]/", frame.prefix, a.name));
                (i, run_container(&child, &a.children).await)
            })
            .buffer_unordered(batch)
            .collect()
            .await;
    let mut failed = Vec::new();
    for (i, r) in results {
        let errors = r?;
        if !errors.is_empty() {
            failed.push((i, errors.join("; ")));
        }
    }
    failed.sort();
    if let Some((i, first)) = failed.first() {
        return Err(Error::data(format!(
            "{} of {n} iterations failed (first: item {i}: {first})",
            failed.len()
        )));
    }
    Ok(Done {
        output: json!({}),
        notes: vec![format!("{n} iterations, at most {batch} at once")],
        ..Done::default()
    })
}
