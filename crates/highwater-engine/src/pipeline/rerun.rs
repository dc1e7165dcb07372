//! Rerunning a pipeline run (`highwater pipeline rerun RUN_ID`), as Data
//! Factory's monitor does: a new run with the same pipeline and
//! parameters. With `--from-failed` ("rerun from failed activity") the
//! top-level activities that succeeded in the earlier run are not run
//! again: their recorded outputs (and the variables they set) are reused,
//! so the failed activity and what follows it see what they saw before.
//!
//! A Copy of the earlier run that was cut off (the process killed) may
//! have published before it stopped. Its record says which activity run
//! id (attempt id) it used; when the Copy's state key was moved by that
//! attempt, the rerun does not copy it again. So a killed watermark
//! pipeline — Lookup, Lookup, Copy, Stored Procedure — rerun from failed
//! copies each row exactly once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use highwater_core::{Result, RunRecord, RunStatus, StreamRun};
use serde_json::{Value, json};

use super::{Activity, ActivityKind, Done, Frame, Outcome, lock};

/// The run being rerun and what of it may be reused.
pub struct Rerun {
    pub of: String,
    pub from_failed: bool,
    /// The earlier run's activity records by lower-cased record name.
    earlier: HashMap<String, StreamRun>,
}

impl Rerun {
    pub fn of_run(record: &RunRecord, from_failed: bool) -> Rerun {
        Rerun {
            of: record.run_id.clone(),
            from_failed,
            earlier: record
                .streams
                .iter()
                .map(|s| (s.stream.to_lowercase(), s.clone()))
                .collect(),
        }
    }
}

/// The earlier record of `a` when this run reuses it: a top-level
/// activity that succeeded, in a rerun from failed.
pub(super) fn reusable(frame: &Frame, a: &Activity) -> Option<StreamRun> {
    let rerun = frame.run.rerun.as_ref().filter(|r| r.from_failed)?;
    if !frame.prefix.is_empty() {
        return None;
    }
    rerun
        .earlier
        .get(&a.name.to_lowercase())
        .filter(|r| r.status == RunStatus::Succeeded && r.output.is_some())
        .cloned()
}

/// Take the earlier execution's outcome as this run's.
pub(super) async fn reuse(
    frame: &Frame,
    a: &Activity,
    record_name: &str,
    earlier: StreamRun,
    started_at: DateTime<Utc>,
) -> Result<(Outcome, Option<String>)> {
    let output = earlier.output.clone().unwrap_or_else(|| json!({}));
    if matches!(
        a.kind,
        ActivityKind::SetVariable | ActivityKind::AppendVariable
    ) {
        restore_variable(frame, a.kind, &output);
    }
    lock(frame.layers.last().expect("a layer")).insert(
        a.name.clone(),
        json!({"output": output, "status": "Succeeded"}),
    );
    let of = &frame.run.rerun.as_ref().expect("a rerun").of;
    let rec = StreamRun {
        stream: record_name.to_string(),
        mode: a.kind.as_str().to_string(),
        status: RunStatus::Succeeded,
        rows_read: 0,
        rows_written: 0,
        watermark_from: None,
        watermark_to: None,
        outputs: vec![],
        error: None,
        full_reload: false,
        notes: vec![format!(
            "not run again: succeeded in run {of}, whose output is reused (rerun from failed)"
        )],
        started_at,
        finished_at: Some(Utc::now()),
        pipeline: Some(super::text(frame.ctx.pipeline.get("Pipeline"))),
        input: earlier.input,
        output: Some(output),
    };
    frame
        .run
        .state
        .record_stream_run(&frame.run.run_id, &rec)
        .await?;
    lock(&frame.run.records).push(rec);
    Ok((Outcome::Succeeded, None))
}

/// Set (or append to) the variable a reused Set/Append Variable changed.
fn restore_variable(frame: &Frame, kind: ActivityKind, output: &Value) {
    let (Some(name), Some(value)) = (
        output.get("name").and_then(Value::as_str),
        output.get("value"),
    ) else {
        return;
    };
    let mut vars = lock(&frame.ctx.variables);
    let Some(key) = vars.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned() else {
        return;
    };
    if kind == ActivityKind::SetVariable {
        vars.insert(key, value.clone());
    } else {
        match vars.get_mut(&key) {
            Some(Value::Array(l)) => l.push(value.clone()),
            Some(v) => *v = json!([value.clone()]),
            None => {}
        }
    }
}

/// When the earlier run's execution of this Copy (`record_name`, state key
/// `key`) was cut off after its attempt published — the key's position was
/// moved by that attempt (settled just before, if need be) — the Copy is
/// done: say so instead of copying again.
pub(super) async fn published_before(
    frame: &Frame,
    key: &str,
    record_name: &str,
) -> Result<Option<Done>> {
    let Some(rerun) = frame.run.rerun.as_ref() else {
        return Ok(None);
    };
    let Some(earlier) = rerun.earlier.get(&record_name.to_lowercase()) else {
        return Ok(None);
    };
    if earlier.status == RunStatus::Succeeded {
        return Ok(None);
    }
    let Some(id) = earlier
        .output
        .as_ref()
        .and_then(|o| o.get("activityRunId"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    let moved_by_it = frame
        .run
        .state
        .positions()
        .await?
        .into_iter()
        .any(|(stream, _, _, run_id)| stream == key && run_id == id);
    if !moved_by_it {
        return Ok(None);
    }
    Ok(Some(Done {
        output: json!({
            "activityRunId": id,
            "rowsCopied": 0,
            "filesWritten": 0,
            "publishedByRun": rerun.of,
        }),
        notes: vec![format!(
            "not copied again: this copy's attempt {id} in run {} had published before that run stopped",
            rerun.of
        )],
        ..Done::default()
    }))
}
