//! Reading a stream's committed outputs back (`highwater verify`): the
//! commit markers `_highwater/commits/<stream>/<run_id>.json`, in the order
//! they were written, and each output file in the format that wrote it.
//!
//! CSV (highwater's own dialect only: NULL is an empty field, `""` an empty
//! string) and JSON Lines come back as text columns, Parquet with its
//! types; the caller converts to the source's types to compare by value.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use highwater_core::{ConnKind, Error, Result};
use object_store::path::{Path, PathPart};
use object_store::{ObjectStore, ObjectStoreExt};

use super::FileSink;

/// One committed attempt of a stream.
#[derive(Debug, Clone)]
pub struct CommitRecord {
    pub run_id: String,
    /// The position the attempt committed (JSON, as in the state store).
    pub info: String,
    /// The published files: path under the connection's root, and URL.
    pub files: Vec<(String, String)>,
    /// When the marker was written (the commit's order).
    pub committed_at: DateTime<Utc>,
}

/// A file, CSV/JSONL/Parquet, read back.
pub enum ReadOutput {
    Batches(Vec<RecordBatch>),
    /// The marker names it, the file is not there.
    Missing,
}

/// A connection's object store, for reading.
pub struct Reader {
    store: Arc<dyn ObjectStore>,
    root: String,
}

impl Reader {
    pub fn open(kind: &ConnKind) -> Result<Reader> {
        let sink = FileSink::open(kind)?;
        let (store, root) = (sink.store(), sink.root());
        Ok(Reader {
            store,
            root: root.to_string(),
        })
    }

    /// The stream's commit markers, oldest first.
    pub async fn commits(&self, stream: &str) -> Result<Vec<CommitRecord>> {
        let folder = Path::from_iter([
            PathPart::from("_highwater"),
            PathPart::from("commits"),
            PathPart::from(stream),
        ]);
        let mut metas = Vec::new();
        let mut list = self.store.list(Some(&folder));
        while let Some(item) = list.next().await {
            match item {
                Ok(m) => metas.push(m),
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => {
                    return Err(Error::sink(
                        format!("{}/{folder}", self.root),
                        format!("cannot list commit markers: {e}"),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for m in metas {
            let Some(name) = m.location.filename().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let url = format!("{}/{}", self.root, m.location);
            let bytes = self
                .store
                .get(&m.location)
                .await
                .map_err(|e| Error::sink(&url, super::sink::explain_at(&url, e)))?
                .bytes()
                .await
                .map_err(|e| Error::sink(&url, e))?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::sink(&url, format!("unreadable commit marker: {e}")))?;
            let info = v["info"].as_str().unwrap_or_default().to_string();
            let mut files = Vec::new();
            if let Some(list) = v["files"].as_array() {
                for f in list {
                    if let Some(t) = f.get(1).and_then(|x| x.as_str()) {
                        files.push((t.to_string(), format!("{}/{t}", self.root)));
                    }
                }
            } else if let Some(t) = v["target"].as_str() {
                files.push((t.to_string(), format!("{}/{t}", self.root)));
            }
            out.push(CommitRecord {
                run_id: name.to_string(),
                info,
                files,
                committed_at: m.last_modified,
            });
        }
        out.sort_by(|a, b| {
            a.committed_at
                .cmp(&b.committed_at)
                .then_with(|| a.run_id.cmp(&b.run_id))
        });
        Ok(out)
    }

    /// Read one output file written in `format` (`csv`, `jsonl`, `parquet`).
    pub async fn read(&self, path: &str, format: &str) -> Result<ReadOutput> {
        let url = format!("{}/{path}", self.root);
        let p = Path::parse(path).map_err(|e| Error::sink(&url, e))?;
        let bytes = match self.store.get(&p).await {
            Ok(g) => g
                .bytes()
                .await
                .map_err(|e| Error::sink(&url, super::sink::explain_at(&url, e)))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(ReadOutput::Missing),
            Err(e) => return Err(Error::sink(&url, super::sink::explain_at(&url, e))),
        };
        let batches = match format {
            "csv" => vec![csv_batch(&bytes, &url)?],
            "jsonl" => vec![jsonl_batch(&bytes, &url)?],
            "parquet" => {
                let r =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .map_err(|e| Error::sink(&url, super::sink::explain_at(&url, e)))?
                        .build()
                        .map_err(|e| Error::sink(&url, e))?;
                r.collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::sink(&url, super::sink::explain_at(&url, e)))?
            }
            other => {
                return Err(Error::config(
                    "format",
                    format!("verify reads csv, jsonl and parquet outputs, not `{other}`"),
                ));
            }
        };
        Ok(ReadOutput::Batches(batches))
    }
}

fn text_batch(
    names: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    url: &str,
) -> Result<RecordBatch> {
    let fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(n, DataType::Utf8, true))
        .collect();
    let cols: Vec<ArrayRef> = (0..names.len())
        .map(|i| {
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.get(i).cloned().flatten())
                    .collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| Error::sink(url, e))
}

/// highwater's CSV: header, `,`, `"` quotes doubled, NULL = empty field,
/// `""` = empty string.
fn csv_batch(bytes: &[u8], url: &str) -> Result<RecordBatch> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::sink(url, e))?;
    let mut records: Vec<Vec<Option<String>>> = Vec::new();
    let mut rec: Vec<Option<String>> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                was_quoted = true;
            }
            ',' => {
                rec.push(end_field(&mut field, &mut was_quoted));
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                rec.push(end_field(&mut field, &mut was_quoted));
                records.push(std::mem::take(&mut rec));
                any = false;
            }
            _ => field.push(c),
        }
    }
    if any {
        rec.push(end_field(&mut field, &mut was_quoted));
        records.push(rec);
    }
    let mut it = records.into_iter();
    let names: Vec<String> = it
        .next()
        .unwrap_or_default()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    text_batch(names, it.collect(), url)
}

fn end_field(field: &mut String, was_quoted: &mut bool) -> Option<String> {
    let f = std::mem::take(field);
    let q = std::mem::replace(was_quoted, false);
    if f.is_empty() && !q { None } else { Some(f) }
}

/// JSON Lines: one object per line; values as text (strings as they are,
/// numbers and booleans as written, nested values as JSON).
fn jsonl_batch(bytes: &[u8], url: &str) -> Result<RecordBatch> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::sink(url, e))?;
    let mut names: Vec<String> = Vec::new();
    let mut objs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| Error::sink(url, e))?;
        for k in v.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
        objs.push(v);
    }
    let rows = objs
        .iter()
        .map(|o| {
            names
                .iter()
                .map(|n| match o.get(n) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                })
                .collect()
        })
        .collect();
    text_batch(names, rows, url)
}
