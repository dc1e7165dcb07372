//! Copy: one attempt of the engine's attempt executor per execution.

use std::time::Instant;

use futures::StreamExt;
use highwater_core::{Error, Result, WriteRequest};
use serde_json::{Value, json};

use crate::pipeline::datasets::{
    ResolvedDataset, dataset, dataset_connection, file_target, read_rows, source_relation,
    table_sink,
};
use crate::pipeline::{Activity, Done, Frame, delimited, files, text};

/// A Copy activity: one attempt through the engine's attempt executor,
/// keyed `pipeline/<pipeline>/<activity record>` in the state store, so a
/// killed `pipeline run` is settled like a killed stream: nothing partial
/// visible, nothing published twice.
pub(crate) async fn copy(
    frame: &Frame,
    a: &Activity,
    tp: &Value,
    record_name: &str,
) -> Result<Done> {
    let (Some(input), Some(output)) = (a.inputs.first(), a.outputs.first()) else {
        return Err(Error::config(
            "inputs/outputs",
            "a Copy needs one input and one output dataset",
        ));
    };
    let src = dataset(frame, input)?;
    let dst = dataset(frame, output)?;
    if src.kind == "Binary" || dst.kind == "Binary" {
        return super::copy_files::copy_files(frame, &src, &dst, tp).await;
    }
    // Data Factory's activity run id: one per execution of the activity.
    let activity_run_id = uuid::Uuid::new_v4().to_string();
    let source_tp = tp.get("source").cloned().unwrap_or(Value::Null);
    // A file source: the files are chosen before anything is written.
    let selection = if src.is_file {
        let sel = files::select_source(frame, &src, &source_tp).await?;
        if sel.files.is_empty() {
            return Ok(nothing_to_copy(&activity_run_id));
        }
        Some(sel)
    } else {
        None
    };
    let behavior = text(
        tp.get("sink")
            .and_then(|s| s.get("storeSettings"))
            .and_then(|s| s.get("copyBehavior")),
    );
    if !behavior.is_empty()
        && !["PreserveHierarchy", "FlattenHierarchy", "MergeFiles"]
            .iter()
            .any(|b| b.eq_ignore_ascii_case(&behavior))
    {
        return Err(Error::config(
            "sink.storeSettings.copyBehavior",
            format!("`{behavior}` is not PreserveHierarchy, FlattenHierarchy or MergeFiles"),
        ));
    }
    if let Some(sel) = &selection
        && dst.is_file
        && sel.files.len() > 1
        && files::location(&dst).file.is_none()
        && !behavior.eq_ignore_ascii_case("MergeFiles")
    {
        // PreserveHierarchy (the default) or FlattenHierarchy: one file
        // out per file in, each its own attempt.
        return copy_each(frame, tp, record_name, &src, &dst, sel, &activity_run_id).await;
    }
    copy_one(
        frame,
        tp,
        record_name,
        &src,
        &dst,
        selection,
        &activity_run_id,
    )
    .await
}

/// Each selected file into its own file (by its path or name), one attempt
/// each, keyed `…/<activity>/<path of the file>`.
async fn copy_each(
    frame: &Frame,
    tp: &Value,
    record_name: &str,
    src: &ResolvedDataset,
    dst: &ResolvedDataset,
    sel: &files::Selection,
    activity_run_id: &str,
) -> Result<Done> {
    let flatten = text(
        tp.get("sink")
            .and_then(|s| s.get("storeSettings"))
            .and_then(|s| s.get("copyBehavior")),
    )
    .eq_ignore_ascii_case("FlattenHierarchy");
    if flatten {
        let mut seen = std::collections::BTreeSet::new();
        if let Some(f) = sel.files.iter().find(|f| !seen.insert(f.name())) {
            return Err(Error::config(
                "sink.storeSettings.copyBehavior",
                format!(
                    "FlattenHierarchy would write two files named {} into one folder; use PreserveHierarchy",
                    f.name()
                ),
            ));
        }
    }
    let mut total = Done::default();
    let mut sums = serde_json::Map::new();
    for f in &sel.files {
        let one = files::Selection {
            fs: sel.fs.clone(),
            files: vec![f.clone()],
            filters: sel.filters.clone(),
        };
        let record = format!("{record_name}/{}", f.rel);
        let id = uuid::Uuid::new_v4().to_string();
        let done = copy_one(frame, tp, &record, src, dst, Some(one), &id).await?;
        for k in [
            "dataRead",
            "dataWritten",
            "rowsRead",
            "rowsCopied",
            "filesWritten",
            "filesRead",
        ] {
            let n = sums.get(k).and_then(Value::as_u64).unwrap_or(0)
                + done.output.get(k).and_then(Value::as_u64).unwrap_or(0);
            sums.insert(k.to_string(), json!(n));
        }
        total.rows_read += done.rows_read;
        total.rows_written += done.rows_written;
        total.outputs.extend(done.outputs);
        total.notes.extend(done.notes);
    }
    sums.insert("activityRunId".into(), json!(activity_run_id));
    total.output = Value::Object(sums);
    Ok(total)
}

/// One attempt: the source (a table, or the selected files) into the sink.
async fn copy_one(
    frame: &Frame,
    tp: &Value,
    record_name: &str,
    src: &ResolvedDataset,
    dst: &ResolvedDataset,
    selection: Option<files::Selection>,
    activity_run_id: &str,
) -> Result<Done> {
    let activity_run_id = activity_run_id.to_string();
    let source_tp = tp.get("source").cloned().unwrap_or(Value::Null);
    let mut split = None;
    let (target, format, table, overwrite) = if dst.is_file {
        let sink_tp = tp.get("sink").cloned().unwrap_or(Value::Null);
        let max_rows = delimited::split(&sink_tp, false)
            .map_err(|e| Error::config(format!("activity {record_name}"), e.join("; ")))?
            // `fileNamePrefix` "does not apply when source is file-based"
            // (Data Factory's docs): each copy's files get generated names.
            .map(|(n, prefix)| (n, prefix.filter(|_| selection.is_none())));
        let csv = delimited::options(&dst.kind, &dst.tp, &sink_tp, false)
            .map_err(|e| Error::config(format!("dataset {}", dst.name), e.join("; ")))?;
        let ext = csv
            .as_ref()
            .map(|o| delimited::generated_extension(o, &sink_tp));
        let (mut path, format, mut generated) = file_target(dst, &activity_run_id, ext.as_deref());
        if generated && let Some(sel) = &selection {
            // Files copied into a folder keep their names (copyBehavior
            // PreserveHierarchy, the default, or FlattenHierarchy); only
            // MergeFiles writes one generated file.
            let behavior = text(
                tp.get("sink")
                    .and_then(|s| s.get("storeSettings"))
                    .and_then(|s| s.get("copyBehavior")),
            );
            if !behavior.eq_ignore_ascii_case("MergeFiles") && max_rows.is_none() {
                let [one] = sel.files.as_slice() else {
                    return Err(Error::config(
                        "sink.storeSettings.copyBehavior",
                        format!("the source selects {} files for one file", sel.files.len()),
                    ));
                };
                let name = if behavior.eq_ignore_ascii_case("FlattenHierarchy") {
                    one.name().to_string()
                } else {
                    one.rel.clone()
                };
                let folder = path.rsplit_once('/').map(|(f, _)| f).unwrap_or_default();
                path = [folder, name.as_str()]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/");
                generated = false;
            }
        }
        let format = match &csv {
            Some(o) => o.to_format(),
            None => format.to_string(),
        };
        if path.is_empty() {
            return Err(Error::config(
                format!("dataset {}", dst.name),
                "the file dataset names no folderPath or fileName",
            ));
        }
        if let Some((max_rows, prefix)) = max_rows {
            // Data Factory's `<fileNamePrefix>_<fileIndex>.<fileExtension>`
            // in the dataset's folder; no prefix: `data_<activity run id>`.
            if !generated {
                return Err(Error::config(
                    format!("dataset {}", dst.name),
                    "sink.formatSettings.maxRowsPerFile writes files named <fileNamePrefix>_00000…: the dataset must name a folder, not a fileName",
                ));
            }
            let stem = format!("data_{activity_run_id}");
            let (folder, file) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            let extension = file.strip_prefix(&stem).unwrap_or_default().to_string();
            let name = prefix.clone().unwrap_or(stem);
            let target = if folder.is_empty() {
                name
            } else {
                format!("{folder}/{name}")
            };
            split = Some(highwater_core::FileSplit {
                max_rows,
                extension,
            });
            // A given prefix names the same files every run: replaced, as
            // Data Factory does; a generated one is this copy's alone.
            (target, format, None, prefix.is_some())
        } else {
            // A named file is replaced, as Data Factory does; a generated
            // one is this copy's alone.
            (path, format, None, !generated)
        }
    } else {
        let (name, write) = table_sink(tp, dst)?;
        (name, String::new(), Some(write), false)
    };
    // additionalColumns and the translator, judged before anything runs.
    let shape =
        crate::pipeline::columns::Shape::parse(tp.get("source"), tp.get("translator"), false)
            .map_err(|e| Error::config("typeProperties", e.join("; ")))?;
    let relation = match &selection {
        Some(_) => None,
        None => Some(source_relation(tp, src)?),
    };
    let conn = dataset_connection(frame, dst)?;
    // A table named as Data Factory's SQL Server would match it (ignoring case).
    let target = match table {
        Some(_) => {
            highwater_connectors::resolve_table(&conn.kind, conn.url.expose(), &target).await?
        }
        None => target,
    };
    let sink = highwater_connectors::sink(&conn.kind, conn.url.expose()).await?;
    let pipeline_name = text(frame.ctx.pipeline.get("Pipeline"));
    let key = crate::pipeline::copy_key(frame, &pipeline_name, record_name);
    let state = frame.run.state.as_ref();
    let Some(_lock) = state.lock_stream(&key).await? else {
        return Err(Error::state(format!(
            "another highwater process is running {key} now; try again when it ends"
        )));
    };
    let env = crate::attempt::Env {
        state,
        sink: sink.as_ref(),
        secrets: &frame.run.plan.secrets,
    };
    let mut notes = crate::attempt::settle(env, &key, false).await?;
    if let Some(done) = crate::pipeline::rerun::published_before(frame, &key, record_name).await? {
        return Ok(done);
    }
    crate::pipeline::note_activity_run_id(frame, record_name, &activity_run_id).await?;
    let from = state.position(&key).await?;
    let started = Instant::now();
    let (extract, file_bytes) = match (&selection, relation) {
        (Some(sel), _) => {
            let (e, n) = files::read(sel, src, &source_tp).await?;
            (e, Some(n))
        }
        (None, relation) => {
            let relation = relation.map_or_else(|| source_relation(tp, src), Ok)?;
            (read_rows(frame, src, relation, record_name).await?, None)
        }
    };
    notes.extend(extract.notes);
    let plan = if shape.is_identity() {
        None
    } else {
        Some(shape.plan(&extract.schema)?)
    };
    let schema = plan
        .as_ref()
        .map(|p| p.schema.clone())
        .unwrap_or_else(|| extract.schema.clone());
    let mut rows = CopyRows {
        batches: extract.batches,
        plan,
        rows_read: 0,
        data_read: 0,
        data_written: 0,
    };
    let copy = crate::attempt::Copy {
        key: key.clone(),
        attempt_id: activity_run_id.clone(),
        from,
        request: WriteRequest {
            stream: key,
            run_id: activity_run_id.clone(),
            target,
            format,
            schema,
            overwrite,
            table,
            split,
        },
        owned: !overwrite,
    };
    let outcome = crate::attempt::execute(env, copy, &mut rows).await?;
    notes.extend(outcome.notes);
    let committed = outcome.committed;
    // Delete the source files only once the copy has committed.
    let mut files_read = None;
    if let Some(sel) = &selection {
        if sel.filters.delete_after {
            files::delete(&sel.fs, &sel.files).await?;
        }
        files_read = Some(sel.files.len());
    }
    let secs = started.elapsed().as_secs();
    // Bytes as the target counted them (file sizes, COPY text), else the
    // size of the rows handed to it.
    let written = if committed.bytes > 0 {
        committed.bytes
    } else if committed.rows > 0 {
        rows.data_written
    } else {
        0
    };
    let mut output = json!({
        "dataRead": file_bytes
            .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or(rows.data_read),
        "dataWritten": written,
        "rowsRead": rows.rows_read,
        "rowsCopied": committed.rows,
        "copyDuration": secs,
        "sourcePeakConnections": 1,
        "sinkPeakConnections": 1,
        "activityRunId": activity_run_id,
    });
    // Data Factory reports filesWritten for file sinks only.
    if dst.is_file {
        output["filesWritten"] = json!(committed.outputs.len());
    }
    if let Some(n) = files_read {
        output["filesRead"] = json!(n);
    }
    Ok(Done {
        output,
        rows_read: rows.rows_read,
        rows_written: committed.rows,
        outputs: committed.outputs,
        notes,
    })
}

/// A Copy's rows: every batch of the source's read, as it comes, with the
/// additional columns and the translator's mapping applied.
struct CopyRows {
    batches: highwater_core::BatchStream,
    plan: Option<crate::pipeline::columns::Plan>,
    rows_read: u64,
    data_read: u64,
    data_written: u64,
}

#[async_trait::async_trait]
impl crate::attempt::Rows for CopyRows {
    async fn next_batch(&mut self) -> Result<Option<arrow_array::RecordBatch>> {
        while let Some(b) = self.batches.next().await {
            let b = b?;
            self.rows_read += b.num_rows() as u64;
            self.data_read += b.get_array_memory_size() as u64;
            if b.num_rows() > 0 {
                let b = match &self.plan {
                    Some(p) => p.apply(&b)?,
                    None => b,
                };
                self.data_written += b.get_array_memory_size() as u64;
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    fn position(&mut self) -> highwater_core::Position {
        highwater_core::Position::Full
    }
}

/// A file source that selects no file: nothing is read or written.
fn nothing_to_copy(activity_run_id: &str) -> Done {
    Done {
        output: json!({
            "dataRead": 0,
            "dataWritten": 0,
            "filesRead": 0,
            "rowsRead": 0,
            "rowsCopied": 0,
            "filesWritten": 0,
            "copyDuration": 0,
            "activityRunId": activity_run_id,
        }),
        ..Done::default()
    }
}
