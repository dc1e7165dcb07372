//! Script: run `scripts` blocks in order on the linked service's database
//! (PostgreSQL, MariaDB/MySQL, SQLite), parameters bound by name
//! (`@name` in the text; see `highwater_connectors::script`). The output is
//! Data Factory's: `resultSetCount`, `recordsAffected` (rows changed by the
//! `NonQuery` blocks), `resultSets: [{rowCount, rows}]` (one per statement
//! of the `Query` blocks that returns rows), and empty `outputParameters`
//! (only `Input` parameters are supported; others are refused at load).

use std::time::Duration;

use highwater_connectors::ProcType;
use highwater_connectors::script::{BlockKind, ScriptBlock, ScriptParam, run_script};
use highwater_core::{Error, Result};
use highwater_expr::to_interpolated_string;
use serde_json::{Value, json};

use crate::pipeline::datasets::connection;
use crate::pipeline::model::parse_timespan;
use crate::pipeline::typed::{self, is_blank, is_expression};
use crate::pipeline::{Activity, Done, Frame, text};

/// Data Factory's default `scriptBlockExecutionTimeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

fn block_kind(v: &str) -> Option<BlockKind> {
    match v.trim().to_ascii_lowercase().as_str() {
        "query" => Some(BlockKind::Query),
        "nonquery" => Some(BlockKind::NonQuery),
        _ => None,
    }
}

/// Load-time checks.
pub(crate) fn check(a: &Activity, s: &typed::Script) -> Vec<String> {
    let mut out = Vec::new();
    if a.linked_service.is_none() {
        out.push("linkedServiceName is required (the database the script runs in)".into());
    }
    if let Some(t) = &s.script_block_execution_timeout
        && !t.is_null()
        && !is_expression(t)
        && t.as_str().and_then(parse_timespan).is_none()
    {
        out.push(format!(
            "typeProperties.scriptBlockExecutionTimeout {t} is not a duration like \"02:00:00\""
        ));
    }
    let blocks = match &s.scripts {
        None | Some(Value::Null) => {
            out.push("typeProperties.scripts is required".into());
            return out;
        }
        Some(Value::Array(l)) if l.is_empty() => {
            out.push("typeProperties.scripts is empty; give at least one script block".into());
            return out;
        }
        Some(Value::Array(l)) => l,
        Some(v) => {
            out.push(format!(
                "typeProperties.scripts must be a list of {{type, text, parameters}} blocks, got {v}"
            ));
            return out;
        }
    };
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("typeProperties.scripts[{i}]");
        let mut found = Vec::new();
        let Some(block) = typed::parse::<typed::ScriptBlock>(b, &at, &mut found) else {
            out.extend(found.into_iter().map(|(p, m)| format!("{p} {m}")));
            continue;
        };
        out.extend(found.into_iter().map(|(p, m)| format!("{p} {m}")));
        if is_blank(block.text.as_ref()) {
            out.push(format!("{at}.text is required"));
        }
        match &block.kind {
            None | Some(Value::Null) => {
                out.push(format!("{at}.type is required (Query or NonQuery)"))
            }
            Some(v) if is_expression(v) => {}
            Some(v) => {
                if v.as_str().and_then(block_kind).is_none() {
                    out.push(format!("{at}.type must be Query or NonQuery, got {v}"));
                }
            }
        }
        for (j, p) in block.parameters.iter().flatten().enumerate() {
            let at = format!("{at}.parameters[{j}]");
            let mut found = Vec::new();
            let Some(p) = typed::parse::<typed::ScriptParameter>(p, &at, &mut found) else {
                out.extend(found.into_iter().map(|(p, m)| format!("{p} {m}")));
                continue;
            };
            out.extend(found.into_iter().map(|(p, m)| format!("{p} {m}")));
            match &p.name {
                Some(Value::String(n)) if !n.trim().trim_start_matches('@').is_empty() => {}
                _ => out.push(format!("{at}.name is required")),
            }
            if let Some(Value::String(t)) = &p.kind
                && !is_expression(&Value::String(t.clone()))
                && ProcType::parse(t).is_none()
            {
                out.push(format!("{at}.type: {t} is not one of {}", ProcType::NAMES));
            }
            match &p.direction {
                None | Some(Value::Null) => {}
                Some(Value::String(d)) if d.eq_ignore_ascii_case("Input") => {}
                Some(d) => out.push(format!(
                    "{at}.direction {d} is not supported: only Input parameters are; return values with a Query block's SELECT"
                )),
            }
        }
    }
    out
}

pub(crate) async fn script(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let ls = a.linked_service.as_deref().ok_or_else(|| {
        Error::config(
            "linkedServiceName",
            "a Script activity needs a linkedServiceName",
        )
    })?;
    let limit = match tp.get("scriptBlockExecutionTimeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT,
        Some(t) => parse_timespan(&text(Some(t))).ok_or_else(|| {
            Error::data(format!(
                "typeProperties.scriptBlockExecutionTimeout {t} is not a duration like \"02:00:00\""
            ))
        })?,
    };
    let mut blocks = Vec::new();
    for (i, b) in tp
        .get("scripts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let kind_text = text(b.get("type"));
        let kind = block_kind(&kind_text).ok_or_else(|| {
            Error::data(format!(
                "typeProperties.scripts[{i}].type must be Query or NonQuery, got {kind_text}"
            ))
        })?;
        let mut params = Vec::new();
        for p in b
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = text(p.get("name"));
            let ty_name = p.get("type").and_then(Value::as_str).unwrap_or("String");
            let ty = ProcType::parse(ty_name).ok_or_else(|| {
                Error::data(format!(
                    "typeProperties.scripts[{i}] parameter {name}: type {ty_name} is not one of {}",
                    ProcType::NAMES
                ))
            })?;
            let value = match p.get("value") {
                None | Some(Value::Null) => None,
                Some(v) => Some(to_interpolated_string(v)),
            };
            params.push(ScriptParam { name, value, ty });
        }
        blocks.push(ScriptBlock {
            kind,
            text: text(b.get("text")),
            params,
        });
    }
    let conn = connection(frame, ls)?;
    let outcome = run_script(&conn.kind, conn.url.expose(), &blocks, limit).await?;
    let rows: usize = outcome.result_sets.iter().map(Vec::len).sum();
    let sets: Vec<Value> = outcome
        .result_sets
        .into_iter()
        .map(|rows| json!({"rowCount": rows.len(), "rows": rows}))
        .collect();
    Ok(Done {
        notes: vec![format!(
            "{} blocks, {} result sets, {} records affected",
            blocks.len(),
            sets.len(),
            outcome.records_affected
        )],
        rows_read: rows as u64,
        rows_written: outcome.records_affected,
        output: json!({
            "resultSetCount": sets.len(),
            "recordsAffected": outcome.records_affected,
            "resultSets": sets,
            "outputParameters": {},
            "outputLogs": "",
            "outputLogsLocation": "",
            "outputTruncated": false,
        }),
        ..Done::default()
    })
}
