//! Lookup: the first row (`firstRowOnly`, the default) or every row of a
//! query or table, as `output.firstRow` or `output.value` + `output.count`.

use futures::StreamExt;
use highwater_core::{Error, Result};
use serde_json::{Value, json};

use crate::pipeline::datasets::{dataset, read_rows, source_relation};
use crate::pipeline::{Activity, Done, Frame, files};

pub(crate) async fn lookup(
    frame: &Frame,
    a: &Activity,
    tp: &Value,
    record_name: &str,
) -> Result<Done> {
    let r = a.lookup_dataset().ok_or_else(|| {
        Error::config(
            "typeProperties.dataset",
            "a Lookup needs a dataset reference",
        )
    })?;
    let d = dataset(frame, &r)?;
    let first_only = tp
        .get("firstRowOnly")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut extract = if d.is_file {
        let source = tp.get("source").cloned().unwrap_or(Value::Null);
        let sel = files::select_source(frame, &d, &source).await?;
        files::read(&sel, &d, &source).await?.0
    } else {
        let relation = source_relation(tp, &d)?;
        read_rows(frame, &d, relation, record_name).await?
    };
    let mut rows: Vec<Value> = Vec::new();
    while let Some(batch) = extract.batches.next().await {
        let batch = batch?;
        let mut w = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::JsonArray>(Vec::new());
        w.write(&batch)
            .map_err(|e| Error::data(format!("Lookup result: {e}")))?;
        w.finish()
            .map_err(|e| Error::data(format!("Lookup result: {e}")))?;
        let bytes = w.into_inner();
        if !bytes.is_empty()
            && let Ok(Value::Array(l)) = serde_json::from_slice::<Value>(&bytes)
        {
            rows.extend(l);
        }
        if first_only && !rows.is_empty() {
            break;
        }
    }
    let n = rows.len() as u64;
    let output = if first_only {
        match rows.into_iter().next() {
            Some(r) => json!({ "firstRow": r }),
            None => json!({}),
        }
    } else {
        json!({ "count": n, "value": rows })
    };
    Ok(Done {
        output,
        rows_read: n,
        ..Done::default()
    })
}
