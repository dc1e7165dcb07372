//! GetMetadata: facts about the file or folder a file dataset names, one
//! output property per `fieldList` entry:
//!
//! ```text
//! exists        true/false (without it, a missing item fails the activity)
//! itemName      the file's or folder's name
//! itemType      File | Folder
//! size          bytes (files)
//! lastModified  UTC, yyyy-MM-ddTHH:mm:ssZ (files; folders on a local connection)
//! childItems    [{name, type: File|Folder}] directly in the folder, by name;
//!               storeSettings.modifiedDatetimeStart/End filter the files
//! structure     [{name, type}] of the file's columns (Data Factory interim types)
//! columnCount   the number of columns
//! ```

use highwater_core::{Error, Result};
use serde_json::{Map, Value, json};

use crate::pipeline::datasets::dataset;
use crate::pipeline::files::{self, Item, Selected};
use crate::pipeline::{Activity, Done, Frame, text};

/// The fields highwater answers.
pub const FIELDS: &[&str] = &[
    "exists",
    "itemName",
    "itemType",
    "size",
    "lastModified",
    "childItems",
    "structure",
    "columnCount",
];

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) async fn get_metadata(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let r = a.lookup_dataset().ok_or_else(|| {
        Error::config(
            "typeProperties.dataset",
            "a GetMetadata needs a dataset reference",
        )
    })?;
    let d = dataset(frame, &r)?;
    if !d.is_file {
        return Err(Error::config(
            format!("dataset {}", d.name),
            "GetMetadata reads file datasets only",
        ));
    }
    let fields: Vec<String> = match tp.get("fieldList") {
        Some(Value::Array(l)) => l.iter().map(|f| text(Some(f))).collect(),
        _ => {
            return Err(Error::config(
                "typeProperties.fieldList",
                "must be a list of field names",
            ));
        }
    };
    let settings = tp.get("storeSettings").cloned().unwrap_or(Value::Null);
    let filters = files::filters(&settings, &d, false)?;
    let fs = files::open(frame, &d)?;
    let loc = files::location(&d);
    let item = files::item(&fs, &loc).await?;
    let wants = |f: &str| fields.iter().any(|x| x.eq_ignore_ascii_case(f));
    let mut out = Map::new();
    if let Item::Missing = item {
        if wants("exists") {
            out.insert("exists".into(), json!(false));
            return Ok(Done {
                output: Value::Object(out),
                ..Done::default()
            });
        }
        return Err(Error::data(format!(
            "{} does not exist (add `exists` to fieldList to test for it)",
            files::describe(&fs, &loc)
        )));
    }
    let folder_name = || {
        loc.folder
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    for f in &fields {
        let (key, value) = match (f.as_str(), &item) {
            ("exists", _) => ("exists", json!(true)),
            ("itemName", Item::File(m)) => {
                ("itemName", json!(m.location.filename().unwrap_or_default()))
            }
            ("itemName", _) => ("itemName", json!(folder_name())),
            ("itemType", Item::File(_)) => ("itemType", json!("File")),
            ("itemType", _) => ("itemType", json!("Folder")),
            ("size", Item::File(m)) => ("size", json!(m.size)),
            ("lastModified", Item::File(m)) => ("lastModified", json!(time(m.last_modified))),
            ("lastModified", Item::Folder { .. }) => {
                let local = fs
                    .root
                    .strip_prefix("file://")
                    .map(|r| std::path::Path::new(r).join(&loc.folder));
                let modified = local
                    .and_then(|p| std::fs::metadata(p).ok())
                    .and_then(|m| m.modified().ok())
                    .map(chrono::DateTime::<chrono::Utc>::from);
                match modified {
                    Some(t) => ("lastModified", json!(time(t))),
                    None => {
                        return Err(Error::config(
                            "typeProperties.fieldList",
                            format!(
                                "lastModified of a folder in an object store is not known ({}); ask for the files' lastModified",
                                files::describe(&fs, &loc)
                            ),
                        ));
                    }
                }
            }
            ("childItems", Item::Folder { files, folders }) => {
                let mut items: Vec<(String, &str)> = folders
                    .iter()
                    .map(|n| (n.clone(), "Folder"))
                    .chain(
                        files
                            .iter()
                            .filter(|m| {
                                filters.start.is_none_or(|s| m.last_modified >= s)
                                    && filters.end.is_none_or(|e| m.last_modified < e)
                            })
                            .map(|m| {
                                (
                                    m.location.filename().unwrap_or_default().to_string(),
                                    "File",
                                )
                            }),
                    )
                    .collect();
                items.sort();
                (
                    "childItems",
                    json!(
                        items
                            .into_iter()
                            .map(|(name, t)| json!({"name": name, "type": t}))
                            .collect::<Vec<_>>()
                    ),
                )
            }
            ("structure" | "columnCount", Item::File(m)) => {
                let sel = Selected {
                    meta: m.clone(),
                    rel: String::new(),
                };
                let cols = files::structure(&fs, &d, &sel).await?;
                if f == "structure" {
                    (
                        "structure",
                        json!(
                            cols.iter()
                                .map(|(n, t)| json!({"name": n, "type": t}))
                                .collect::<Vec<_>>()
                        ),
                    )
                } else {
                    ("columnCount", json!(cols.len()))
                }
            }
            (other, _) if FIELDS.contains(&other) => {
                let what = match &item {
                    Item::File(_) => "a file",
                    _ => "a folder",
                };
                return Err(Error::config(
                    "typeProperties.fieldList",
                    format!(
                        "{other} does not apply to {what} ({})",
                        files::describe(&fs, &loc)
                    ),
                ));
            }
            (other, _) => {
                return Err(Error::config(
                    "typeProperties.fieldList",
                    format!(
                        "{other} is not supported (supported: {})",
                        FIELDS.join(", ")
                    ),
                ));
            }
        };
        out.insert(key.to_string(), value);
    }
    Ok(Done {
        output: Value::Object(out),
        ..Done::default()
    })
}
