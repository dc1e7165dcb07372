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
    /// Its rows, [`BATCH_ROWS`] at a time, parsed as they are asked for.
    Batches(Batches),
    /// The marker names it, the file is not there.
    Missing,
}

/// A file's batches, read lazily from a local copy.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Rows per batch read back.
pub const BATCH_ROWS: usize = 16_384;

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
    /// The object is copied to an anonymous temporary file as it downloads
    /// and parsed from there a batch at a time, so memory does not grow
    /// with the file's size.
    pub async fn read(&self, path: &str, format: &str) -> Result<ReadOutput> {
        use std::io::{Seek, Write};
        let url = format!("{}/{path}", self.root);
        if !matches!(format, "csv" | "jsonl" | "parquet") {
            return Err(Error::config(
                "format",
                format!("verify reads csv, jsonl and parquet outputs, not `{format}`"),
            ));
        }
        let p = Path::parse(path).map_err(|e| Error::sink(&url, e))?;
        let get = match self.store.get(&p).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(ReadOutput::Missing),
            Err(e) => return Err(Error::sink(&url, super::sink::explain_at(&url, e))),
        };
        let io = |e: std::io::Error| Error::sink(&url, e);
        let mut file = tempfile::tempfile().map_err(io)?;
        let mut chunks = get.into_stream();
        while let Some(chunk) = chunks.next().await {
            file.write_all(
                &chunk.map_err(|e| Error::sink(&url, super::sink::explain_at(&url, e)))?,
            )
            .map_err(io)?;
        }
        file.rewind().map_err(io)?;
        let batches: Batches = match format {
            "csv" => Box::new(TextBatches::new(file, url, Text::Csv)),
            "jsonl" => Box::new(TextBatches::new(file, url, Text::Jsonl)),
            _ => {
                let r =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .map_err(|e| Error::sink(&url, e))?
                        .with_batch_size(BATCH_ROWS)
                        .build()
                        .map_err(|e| Error::sink(&url, e))?;
                Box::new(r.map(move |b| b.map_err(|e| Error::sink(&url, e))))
            }
        };
        Ok(ReadOutput::Batches(batches))
    }
}

/// The two text formats read back.
#[derive(Clone, Copy)]
enum Text {
    Csv,
    Jsonl,
}

/// A CSV or JSON Lines file parsed [`BATCH_ROWS`] records at a time.
struct TextBatches {
    input: std::io::BufReader<std::fs::File>,
    url: String,
    format: Text,
    /// CSV: the header's names.
    header: Option<Vec<String>>,
    done: bool,
}

impl TextBatches {
    fn new(file: std::fs::File, url: String, format: Text) -> TextBatches {
        TextBatches {
            input: std::io::BufReader::new(file),
            url,
            format,
            header: None,
            done: false,
        }
    }

    /// The next CSV record's bytes (a quoted field may hold newlines),
    /// without its line end; `None` at the end.
    fn csv_record(&mut self) -> Result<Option<Vec<u8>>> {
        use std::io::BufRead;
        let mut buf = Vec::new();
        let mut quoted = false;
        loop {
            let from = buf.len();
            let n = self
                .input
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::sink(&self.url, e))?;
            if n == 0 {
                return Ok((!buf.is_empty()).then_some(buf));
            }
            for b in &buf[from..] {
                if *b == b'"' {
                    quoted = !quoted;
                }
            }
            if !quoted {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                return Ok(Some(buf));
            }
        }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        use std::io::BufRead;
        let mut rows: Vec<Vec<Option<String>>> = Vec::new();
        let mut names: Vec<String> = self.header.clone().unwrap_or_default();
        let mut bytes = 0usize;
        while rows.len() < BATCH_ROWS && bytes < crate::util::BATCH_BYTES {
            match self.format {
                Text::Csv => {
                    let Some(rec) = self.csv_record()? else { break };
                    bytes += rec.len();
                    let fields = csv_fields(&rec, &self.url)?;
                    if self.header.is_none() {
                        names = fields.into_iter().map(Option::unwrap_or_default).collect();
                        self.header = Some(names.clone());
                        continue;
                    }
                    rows.push(fields);
                }
                Text::Jsonl => {
                    let mut line = String::new();
                    let n = self
                        .input
                        .read_line(&mut line)
                        .map_err(|e| Error::sink(&self.url, e))?;
                    if n == 0 {
                        break;
                    }
                    if line.trim().is_empty() {
                        continue;
                    }
                    bytes += line.len();
                    rows.push(jsonl_fields(&line, &mut names, &self.url)?);
                }
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        text_batch(names, rows, &self.url).map(Some)
    }
}

impl Iterator for TextBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        if self.done {
            return None;
        }
        let next = self.next_batch();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next.transpose()
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

/// The fields of one record of highwater's CSV: `,`, `"` quotes doubled,
/// NULL = empty field, `""` = empty string.
fn csv_fields(rec: &[u8], url: &str) -> Result<Vec<Option<String>>> {
    let mut out = Vec::new();
    let mut field = Vec::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut bytes = rec.iter().peekable();
    while let Some(&c) = bytes.next() {
        if quoted {
            match c {
                b'"' if bytes.peek() == Some(&&b'"') => {
                    field.push(b'"');
                    bytes.next();
                }
                b'"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            b'"' => {
                quoted = true;
                was_quoted = true;
            }
            b',' => out.push(end_field(&mut field, &mut was_quoted, url)?),
            _ => field.push(c),
        }
    }
    out.push(end_field(&mut field, &mut was_quoted, url)?);
    Ok(out)
}

fn end_field(field: &mut Vec<u8>, was_quoted: &mut bool, url: &str) -> Result<Option<String>> {
    let f = std::mem::take(field);
    let q = std::mem::replace(was_quoted, false);
    if f.is_empty() && !q {
        return Ok(None);
    }
    String::from_utf8(f)
        .map(Some)
        .map_err(|e| Error::sink(url, e))
}

/// One JSON Lines object: values as text (strings as they are, numbers
/// and booleans as written, nested values as JSON), in the order of
/// `names` (new keys appended to it).
fn jsonl_fields(line: &str, names: &mut Vec<String>, url: &str) -> Result<Vec<Option<String>>> {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| Error::sink(url, e))?;
    for k in v.keys() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    Ok(names
        .iter()
        .map(|n| match v.get(n) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, Write};

    use arrow_array::cast::AsArray;

    use super::*;

    fn batches(text: &str, format: Text) -> Vec<RecordBatch> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.rewind().unwrap();
        TextBatches::new(f, "mem".into(), format)
            .collect::<Result<Vec<_>>>()
            .unwrap()
    }

    fn cells(b: &RecordBatch, col: usize) -> Vec<Option<String>> {
        b.column(col)
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn csv_records_keep_quoted_newlines_and_null_versus_empty() {
        let b = batches(
            "id,name\r\n1,\"a\nb\"\r\n2,\"\"\n3,\n4,\"x,\"\"y\"\"\"",
            Text::Csv,
        );
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].schema().field(1).name(), "name");
        assert_eq!(
            cells(&b[0], 1),
            [
                Some("a\nb".to_string()),
                Some(String::new()),
                None,
                Some("x,\"y\"".to_string())
            ]
        );
    }

    #[test]
    fn large_files_come_back_in_batches() {
        let mut text = String::from("id,v\n");
        let n = BATCH_ROWS * 2 + 5;
        for i in 0..n {
            text.push_str(&format!("{i},é{i}\n"));
        }
        let b = batches(&text, Text::Csv);
        assert_eq!(
            b.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
            [BATCH_ROWS, BATCH_ROWS, 5]
        );
        assert_eq!(cells(&b[2], 1)[4], Some(format!("é{}", n - 1)));

        let j = batches(
            "{\"id\": 1, \"v\": null}\n\n{\"id\": 2, \"v\": \"x\"}\n",
            Text::Jsonl,
        );
        assert_eq!(cells(&j[0], 1), [None, Some("x".to_string())]);
        assert_eq!(
            cells(&j[0], 0),
            [Some("1".to_string()), Some("2".to_string())]
        );
    }
}
