//! How a Copy's sink writes into a table dataset, from every published
//! spelling of the write behaviour:
//!
//! ```text
//! writeBehavior: insert | upsert        (SQL sinks: AzureSqlSink, SqlServerSink, SqlMISink, SqlDWSink)
//! writeMethod: CopyCommand | BulkInsert | Upsert   (AzurePostgreSqlSink)
//! upsertSettings.keys: [..]             the upsert key (an array, or an expression giving one)
//! ```
//!
//! `AzureMySqlSink` (the only MySQL-family sink; Data Factory's MariaDB
//! connector is source-only) has no write behaviour: it inserts. Any of the
//! spellings is accepted on any database sink type. Upsert is by the key
//! columns alone, so the target needs no unique constraint on them.
//!
//! `preCopyScript` runs in the sink's commit transaction, before the rows
//! are applied. `sqlWriterStoredProcedureName` + `sqlWriterTableType` (+
//! `storedProcedureTableTypeParameterName`) hand the rows to a procedure
//! instead (PostgreSQL: an array of the composite type; see
//! docs/pipelines.md).
//!
//! [`parse`] runs twice: at load on the literal values (expressions are
//! checked when they are evaluated), and before the copy on the evaluated
//! sink. Every property it does not know is refused.

use highwater_core::{ProcedureWrite, TableWrite, TableWriteMode};
use serde_json::Value;

use highwater_expr::to_interpolated_string;

/// Properties that change nothing in how rows land here.
const IGNORED: &[&str] = &[
    "type",
    "writeBatchSize",
    "writeBatchTimeout",
    "sinkRetryCount",
    "sinkRetryWait",
    "maxConcurrentConnections",
    "disableMetricsCollection",
    "sqlWriterUseTableLock",
    "allowPolyBase",
    "polyBaseSettings",
    "allowCopyCommand",
    "copyCommandSettings",
];

/// Properties of the SQL sinks that highwater does not run.
const NOT_SUPPORTED: &[(&str, &str)] = &[
    (
        "storedProcedureParameters",
        "extra parameters of a stored-procedure sink; the procedure gets the rows only",
    ),
    (
        "sqlWriterCleanupScript",
        "SQL Data Warehouse cleanup scripts; use preCopyScript",
    ),
];

/// Is `v` known before the run (not an expression)?
pub fn is_literal(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.contains('@'),
        Value::Object(m) => {
            m.get("type").and_then(Value::as_str) != Some("Expression")
                && m.values().all(is_literal)
        }
        Value::Array(l) => l.iter().all(is_literal),
        _ => true,
    }
}

/// The table write of a sink. `at_load`: values that are expressions are
/// not judged yet. Errors name the property (`sink.writeMethod …`).
pub fn parse(sink: &Value, at_load: bool) -> Result<TableWrite, Vec<String>> {
    let known = |v: &Value| !at_load || is_literal(v);
    let mut errors = Vec::new();
    let mut upsert: Vec<(&str, bool)> = Vec::new();
    let mut keys: Option<Vec<String>> = None;
    let mut keys_pending = false;
    let mut pre_copy_script = None;
    let mut procedure: std::collections::BTreeMap<&str, String> = Default::default();
    let mut procedure_pending = false;
    let empty = serde_json::Map::new();
    let props = match sink {
        Value::Object(m) => m,
        Value::Null => &empty,
        other => {
            return Err(vec![format!("sink must be an object, got {other}")]);
        }
    };
    for (k, v) in props {
        if v.is_null() {
            continue;
        }
        let k = k.as_str();
        match k {
            _ if IGNORED.contains(&k) => {}
            "tableOption" => {
                if known(v) && !to_interpolated_string(v).eq_ignore_ascii_case("autoCreate") {
                    errors.push(format!(
                        "sink.tableOption `{}` is not supported (only autoCreate; highwater creates a missing table)",
                        to_interpolated_string(v)
                    ));
                }
            }
            _ if NOT_SUPPORTED.iter().any(|(n, _)| *n == k) => {
                let why = NOT_SUPPORTED.iter().find(|(n, _)| *n == k).map(|(_, w)| *w);
                errors.push(format!(
                    "sink.{k} is not supported ({})",
                    why.unwrap_or_default()
                ))
            }
            "preCopyScript"
            | "sqlWriterStoredProcedureName"
            | "sqlWriterTableType"
            | "storedProcedureTableTypeParameterName" => {
                if !known(v) {
                    procedure_pending |= k != "preCopyScript";
                    continue;
                }
                match v {
                    Value::String(text) if k == "preCopyScript" => {
                        pre_copy_script = Some(text.clone()).filter(|t| !t.trim().is_empty())
                    }
                    Value::String(text) => {
                        if !text.trim().is_empty() {
                            procedure.insert(k, text.trim().to_string());
                        }
                    }
                    other => errors.push(format!("sink.{k} must be a string, got {other}")),
                }
            }
            "writeBehavior" | "writeMethod" => {
                if !known(v) {
                    continue;
                }
                let text = to_interpolated_string(v);
                let meaning = match (k, text.to_ascii_lowercase().as_str()) {
                    (_, "insert") if k == "writeBehavior" => Some(false),
                    (_, "upsert") => Some(true),
                    ("writeMethod", "copycommand" | "bulkinsert") => Some(false),
                    _ => None,
                };
                match meaning {
                    Some(m) => upsert.push((k, m)),
                    None => errors.push(format!(
                        "sink.{k} `{text}` is not understood (expected {})",
                        if k == "writeBehavior" {
                            "insert or upsert"
                        } else {
                            "CopyCommand, BulkInsert or Upsert"
                        }
                    )),
                }
            }
            "upsertSettings" => {
                let Some(m) = v.as_object() else {
                    if known(v) {
                        errors.push("sink.upsertSettings must be an object".to_string());
                    }
                    continue;
                };
                for (sk, sv) in m {
                    match sk.as_str() {
                        "useTempDB" | "interimSchemaName" => {}
                        "keys" if sv.is_null() => {}
                        "keys" if !known(sv) => keys_pending = true,
                        "keys" => match key_list(sv) {
                            Ok(l) => keys = Some(l),
                            Err(e) => errors.push(e),
                        },
                        other => errors.push(format!(
                            "sink.upsertSettings.{other} is not a property highwater knows (keys, useTempDB, interimSchemaName)"
                        )),
                    }
                }
            }
            other => errors.push(format!(
                "sink.{other} is not a sink property highwater knows; remove it or see docs/pipelines.md"
            )),
        }
    }
    if let [(a, x), (b, y)] = upsert.as_slice()
        && x != y
    {
        errors.push(format!(
            "sink.{a} and sink.{b} disagree (one inserts, one upserts); keep one"
        ));
    }
    let is_upsert = upsert.iter().any(|(_, m)| *m);
    let keys = keys.unwrap_or_default();
    if is_upsert && keys.is_empty() && !keys_pending {
        errors.push(
            "an upsert needs the key columns in sink.upsertSettings.keys (highwater does not read the target's primary key)"
                .to_string(),
        );
    }
    let procedure = match (
        procedure.remove("sqlWriterStoredProcedureName"),
        procedure.remove("sqlWriterTableType"),
    ) {
        (Some(name), Some(table_type)) => Some(ProcedureWrite {
            name,
            table_type,
            parameter: procedure.remove("storedProcedureTableTypeParameterName"),
        }),
        (None, None) if procedure.is_empty() => None,
        _ if procedure_pending => None,
        (Some(_), None) => {
            errors.push("sink.sqlWriterStoredProcedureName needs sink.sqlWriterTableType (the composite type of the rows it takes)".to_string());
            None
        }
        _ => {
            errors.push("sink.sqlWriterTableType and sink.storedProcedureTableTypeParameterName need sink.sqlWriterStoredProcedureName".to_string());
            None
        }
    };
    if procedure.is_some() && upsert.iter().any(|(_, m)| *m) {
        errors.push(
            "a stored-procedure sink (sink.sqlWriterStoredProcedureName) decides itself how rows land; remove the upsert settings".to_string(),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(TableWrite {
        mode: if is_upsert {
            TableWriteMode::Merge
        } else {
            TableWriteMode::Append
        },
        primary_key: if is_upsert { keys } else { vec![] },
        change_tracking: false,
        pre_copy_script,
        procedure,
    })
}

/// Copies with a stored-procedure sink into a connection that cannot run
/// one (anything but PostgreSQL: MariaDB has no table types, SQLite no
/// procedures): refused before the run, naming the activity and property.
/// `kind_of` gives a linked service's connection kind.
pub fn check_procedure_sinks(
    f: &super::Factory,
    kind_of: &dyn Fn(&str) -> Option<highwater_core::ConnKind>,
) -> Vec<String> {
    use highwater_core::ConnKind;
    let mut out = Vec::new();
    f.walk_all(&mut |a| {
        if a.kind != super::ActivityKind::Copy {
            return;
        }
        let sink = a.type_properties.get("sink");
        if super::typed::is_blank(sink.and_then(|s| s.get("sqlWriterStoredProcedureName"))) {
            return;
        }
        // A file dataset takes no table sink settings (as before: they are
        // not read for files).
        let Some(d) = a
            .outputs
            .first()
            .and_then(|r| f.datasets.get(&r.name))
            .filter(|d| !d.is_file())
        else {
            return;
        };
        let why = match kind_of(&d.linked_service) {
            Some(ConnKind::Mysql) => "MariaDB/MySQL has no table types, so a stored-procedure sink cannot pass it the rows; copy into a table (upsert with upsertSettings.keys) and run the procedure in a Stored Procedure activity",
            Some(ConnKind::Sqlite(_)) => "SQLite has no stored procedures; copy into a table (upsert with upsertSettings.keys) instead",
            Some(ConnKind::Postgres) | None => return,
            Some(_) => "a stored-procedure sink needs a PostgreSQL connection",
        };
        out.push(format!(
            "{}: activity {}: typeProperties.sink.sqlWriterStoredProcedureName is not supported on connection {}: {why}",
            a.place, a.label, d.linked_service
        ));
    });
    out
}

/// `["a", "b"]`, or one string (`"a"`, `"a, b"`).
fn key_list(v: &Value) -> Result<Vec<String>, String> {
    let keys: Vec<String> = match v {
        Value::Array(l) => l
            .iter()
            .map(|k| match k {
                Value::String(s) => Ok(s.trim().to_string()),
                other => Err(format!(
                    "sink.upsertSettings.keys holds {other}, not a column name"
                )),
            })
            .collect::<Result<_, _>>()?,
        Value::String(s) => s.split(',').map(|k| k.trim().to_string()).collect(),
        other => {
            return Err(format!(
                "sink.upsertSettings.keys must be an array of column names, got {other}"
            ));
        }
    };
    if keys.iter().any(String::is_empty) {
        return Err("sink.upsertSettings.keys holds an empty column name".to_string());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_spelling() {
        let merge = |s| parse(&s, false).unwrap();
        let w = merge(
            json!({"type": "AzurePostgreSqlSink", "writeMethod": "Upsert", "upsertSettings": {"keys": ["id"]}}),
        );
        assert_eq!(w.mode, TableWriteMode::Merge);
        assert_eq!(w.primary_key, ["id"]);
        let w = merge(
            json!({"writeBehavior": "UPSERT", "upsertSettings": {"useTempDB": true, "keys": "a, b"}}),
        );
        assert_eq!(w.primary_key, ["a", "b"]);
        assert_eq!(
            merge(json!({"writeMethod": "CopyCommand"})).mode,
            TableWriteMode::Append
        );
        assert_eq!(merge(json!(null)).mode, TableWriteMode::Append);
        // Keys from an expression are judged when evaluated.
        assert!(
            parse(
                &json!({"writeBehavior": "upsert", "upsertSettings": {"keys": "@item().k"}}),
                true
            )
            .is_ok()
        );
        assert!(parse(&json!({"writeBehavior": "upsert"}), true).is_err());
        assert!(parse(&json!({"writeMethod": "Merge"}), true).is_err());
    }
}
