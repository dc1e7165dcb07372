//! Rows of the selected files as Arrow batches (Copy and Lookup sources,
//! GetMetadata's `structure`): DelimitedText as strings with the dataset's
//! settings, Json objects with an inferred schema, Parquet as written.

use std::io::Read;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use highwater_connectors::files::{Charset, CsvOptions};
use highwater_core::{Error, Extract, Result, StreamAdapter};
use serde_json::Value;

use super::{FileStore, Filters, Selected, Selection, bytes};
use crate::pipeline::datasets::ResolvedDataset;
use crate::pipeline::delimited;

/// Bytes read so far by a file read (counted as its stream is consumed).
pub(crate) type BytesRead = Arc<std::sync::atomic::AtomicU64>;

/// How one file's rows are decoded.
#[derive(Clone)]
enum Decode {
    Csv(CsvOptions),
    Parquet,
}

impl Decode {
    /// The batches of one file, checked against (or setting) the schema.
    fn file(
        &self,
        b: bytes::Bytes,
        schema: &mut Option<SchemaRef>,
        place: &str,
    ) -> Result<Vec<RecordBatch>> {
        match self {
            Decode::Csv(o) => {
                let (s, bs) = csv_batches(&b, o, schema.clone(), place)?;
                if let Some(s) = s {
                    *schema = Some(s);
                }
                Ok(bs)
            }
            Decode::Parquet => {
                let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(b)
                    .and_then(|b| b.build())
                    .map_err(|e| Error::data(format!("{place}: not a Parquet file: {e}")))?;
                agree(schema, arrow_array::RecordBatchReader::schema(&r), place)?;
                r.map(|b| b.map_err(|e| Error::data(format!("{place}: {e}"))))
                    .collect()
            }
        }
    }
}

/// Read the selected files' rows as one stream, in key order; the bytes
/// read are counted in the returned counter. DelimitedText and Parquet
/// files are read one at a time as the stream is consumed (the first ones
/// up front, for the schema); Json files all at once (the schema is
/// inferred over every row).
pub(crate) async fn read(
    sel: &Selection,
    d: &ResolvedDataset,
    source: &Value,
) -> Result<(Extract, BytesRead)> {
    use std::sync::atomic::Ordering;
    let counter: BytesRead = Arc::default();
    let place = |f: &Selected| sel.fs.url(f.key());
    let mut batches: std::collections::VecDeque<RecordBatch> = Default::default();
    let mut schema: Option<SchemaRef> = None;
    let kind = crate::pipeline::datasets::file_format(d);
    if let Some(fs) = source.get("formatSettings").and_then(Value::as_object) {
        for (k, v) in fs {
            if !v.is_null() && k != "type" {
                return Err(Error::config(
                    format!("source.formatSettings.{k}"),
                    "is not supported",
                ));
            }
        }
    }
    let decode = match (d.kind.as_str(), kind) {
        ("Binary", _) => {
            return Err(Error::config(
                format!("dataset {}", d.name),
                "a Binary dataset has no rows: copy it to another Binary dataset",
            ));
        }
        (_, "jsonl") => {
            let mut rows = Vec::new();
            for f in &sel.files {
                let b = bytes(&sel.fs, f).await?;
                counter.fetch_add(b.len() as u64, Ordering::Relaxed);
                rows.extend(json_rows(&decode_text(&b, "UTF-8", &place(f))?, &place(f))?);
            }
            if !rows.is_empty() {
                let inferred =
                    arrow_json::reader::infer_json_schema_from_iterator(rows.iter().map(Ok))
                        .map_err(|e| Error::data(format!("dataset {}: {e}", d.name)))?;
                let s = Arc::new(inferred);
                let mut dec = arrow_json::ReaderBuilder::new(s.clone())
                    .with_batch_size(rows.len())
                    .build_decoder()
                    .map_err(|e| Error::data(format!("dataset {}: {e}", d.name)))?;
                dec.serialize(&rows)
                    .map_err(|e| Error::data(format!("dataset {}: {e}", d.name)))?;
                if let Some(b) = dec
                    .flush()
                    .map_err(|e| Error::data(format!("dataset {}: {e}", d.name)))?
                {
                    batches.push_back(b);
                }
                schema = Some(s);
            }
            None
        }
        (_, "parquet") => Some(Decode::Parquet),
        _ => Some(Decode::Csv(
            delimited::options(&d.kind, &d.tp, &Value::Null, false)
                .map_err(|e| Error::config(format!("dataset {}", d.name), e.join("; ")))?
                .unwrap_or_default(),
        )),
    };
    // Up front: the files until one gives the schema.
    let mut next = 0;
    if let Some(dec) = &decode {
        while schema.is_none() && next < sel.files.len() {
            let f = &sel.files[next];
            let b = bytes(&sel.fs, f).await?;
            counter.fetch_add(b.len() as u64, Ordering::Relaxed);
            batches.extend(dec.file(b, &mut schema, &place(f))?);
            next += 1;
        }
    }
    let schema = schema.unwrap_or_else(|| Arc::new(Schema::empty()));
    struct Rest {
        fs: FileStore,
        files: Vec<Selected>,
        next: usize,
        decode: Option<Decode>,
        schema: Option<SchemaRef>,
        batches: std::collections::VecDeque<RecordBatch>,
        counter: BytesRead,
        failed: bool,
    }
    let rest = Rest {
        fs: sel.fs.clone(),
        files: sel.files.clone(),
        next,
        decode,
        schema: Some(schema.clone()),
        batches,
        counter: counter.clone(),
        failed: false,
    };
    let stream = futures::stream::unfold(rest, |mut st| async move {
        loop {
            if let Some(b) = st.batches.pop_front() {
                return Some((Ok(b), st));
            }
            let (Some(dec), false) = (st.decode.clone(), st.failed) else {
                return None;
            };
            let f = st.files.get(st.next)?.clone();
            st.next += 1;
            let place = st.fs.url(f.key());
            let got = match bytes(&st.fs, &f).await {
                Ok(b) => {
                    st.counter.fetch_add(b.len() as u64, Ordering::Relaxed);
                    dec.file(b, &mut st.schema, &place)
                }
                Err(e) => Err(e),
            };
            match got {
                Ok(bs) => st.batches.extend(bs),
                Err(e) => {
                    st.failed = true;
                    return Some((Err(e), st));
                }
            }
        }
    });
    let stream = StreamAdapter::new(schema.clone(), Box::pin(stream));
    Ok((
        Extract {
            schema,
            to: None,
            version_to: None,
            full_reload: false,
            null_rows: 0,
            held_back: 0,
            notes: vec![],
            batches: stream.boxed(),
        },
        counter,
    ))
}

/// Every file of a Copy reads into one stream: the columns must agree.
fn agree(schema: &mut Option<SchemaRef>, next: SchemaRef, place: &str) -> Result<()> {
    match schema {
        None => *schema = Some(next),
        Some(s) if s.fields() == next.fields() => {}
        Some(s) => {
            return Err(Error::data(format!(
                "{place}: its columns ({}) differ from the first file's ({}); copy the files separately",
                names(&next),
                names(s)
            )));
        }
    }
    Ok(())
}

fn names(s: &Schema) -> String {
    s.fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decompressed, decoded text of a file.
fn decode_text(b: &[u8], encoding: &str, place: &str) -> Result<String> {
    let charset = Charset::parse(encoding).map_err(|e| Error::config(place, e))?;
    let enc = match charset {
        Charset::Utf8 => encoding_rs::UTF_8,
        Charset::Utf16(true) => encoding_rs::UTF_16BE,
        Charset::Utf16(false) => encoding_rs::UTF_16LE,
        Charset::Other(e) => e,
    };
    let (text, _, bad) = enc.decode(b);
    if bad {
        return Err(Error::data(format!(
            "{place}: the file is not valid {} (encodingName)",
            enc.name()
        )));
    }
    Ok(text.into_owned())
}

fn decompress(b: &[u8], codec: Option<&str>, place: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let r = match codec.map(str::to_ascii_lowercase).as_deref() {
        Some("gzip") => flate2::read::MultiGzDecoder::new(b).read_to_end(&mut out),
        Some("deflate") => flate2::read::DeflateDecoder::new(b).read_to_end(&mut out),
        _ => return Ok(b.to_vec()),
    };
    r.map_err(|e| Error::data(format!("{place}: cannot decompress: {e}")))?;
    Ok(out)
}

fn ascii(c: char, what: &str, place: &str) -> Result<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        Error::config(
            place,
            format!("{what} `{c}`: reading supports ASCII characters only"),
        )
    })
}

/// The rows of one delimited text file, every column a string.
fn csv_batches(
    b: &[u8],
    o: &CsvOptions,
    schema: Option<SchemaRef>,
    place: &str,
) -> Result<(Option<SchemaRef>, Vec<RecordBatch>)> {
    let raw = decompress(b, o.compression.as_deref(), place)?;
    let text = decode_text(&raw, &o.encoding, place)?;
    if text.trim().is_empty() {
        return Ok((None, vec![]));
    }
    if !matches!(o.row_delimiter.as_str(), "\r\n" | "\n" | "\r") {
        return Err(Error::config(
            place,
            format!(
                "rowDelimiter `{}`: reading supports \\n, \\r\\n and \\r line ends",
                o.row_delimiter.escape_debug()
            ),
        ));
    }
    let delimiter = ascii(o.delimiter, "columnDelimiter", place)?;
    let quote = match o.quote {
        Some(q) => ascii(q, "quoteChar", place)?,
        None => 0,
    };
    let escape = match o.escape {
        Some(e) if Some(e) != o.quote => Some(ascii(e, "escapeChar", place)?),
        _ => None,
    };
    let mut format = arrow_csv::reader::Format::default()
        .with_header(o.header)
        .with_delimiter(delimiter)
        .with_quote(quote)
        .with_truncated_rows(true);
    if let Some(e) = escape {
        format = format.with_escape(e);
    }
    let (inferred, _) = format
        .infer_schema(std::io::Cursor::new(text.as_bytes()), Some(1))
        .map_err(|e| Error::data(format!("{place}: {e}")))?;
    let columns: Vec<String> = inferred
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            // Data Factory names a column without a header `Prop_<n>`.
            if o.header && !f.name().trim().is_empty() {
                f.name().clone()
            } else {
                format!("Prop_{i}")
            }
        })
        .collect();
    let file_schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let schema = match schema {
        Some(s) if s.fields() != file_schema.fields() => {
            return Err(Error::data(format!(
                "{place}: its columns ({}) differ from the first file's ({}); copy the files separately",
                names(&file_schema),
                names(&s)
            )));
        }
        Some(s) => s,
        None => file_schema,
    };
    let mut rb = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_header(o.header)
        .with_delimiter(delimiter)
        .with_quote(quote)
        .with_truncated_rows(true)
        .with_batch_size(8192);
    if let Some(e) = escape {
        rb = rb.with_escape(e);
    }
    if !o.null.is_empty() {
        let re = regex::Regex::new(&format!("^{}$", regex::escape(&o.null)))
            .map_err(|e| Error::config(place, e.to_string()))?;
        rb = rb.with_null_regex(re);
    }
    let reader = rb
        .build(std::io::Cursor::new(text.into_bytes()))
        .map_err(|e| Error::data(format!("{place}: {e}")))?;
    let mut out = Vec::new();
    for b in reader {
        out.push(b.map_err(|e| Error::data(format!("{place}: {e}")))?);
    }
    Ok((Some(schema), out))
}

/// The objects of a JSON file: one object, an array of objects, or
/// objects one after another.
fn json_rows(text: &str, place: &str) -> Result<Vec<Value>> {
    let text = text.trim_start_matches('\u{feff}');
    let values: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(l)) => l,
        Ok(v) => vec![v],
        Err(_) => serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::data(format!("{place}: not JSON: {e}")))?,
    };
    if let Some(v) = values.iter().find(|v| !v.is_object()) {
        return Err(Error::data(format!(
            "{place}: holds {v}, not an object; each row of a Json dataset is an object"
        )));
    }
    Ok(values)
}

/// The columns of one file: (name, Data Factory interim type).
pub(crate) async fn structure(
    fs: &FileStore,
    d: &ResolvedDataset,
    file: &Selected,
) -> Result<Vec<(String, String)>> {
    let sel = Selection {
        fs: FileStore {
            store: fs.store.clone(),
            root: fs.root.clone(),
        },
        files: vec![file.clone()],
        filters: Filters::default(),
    };
    let (extract, _) = read(&sel, d, &Value::Null).await?;
    Ok(extract
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), interim_type(f.data_type()).to_string()))
        .collect())
}

/// Data Factory's interim data type of an Arrow type.
fn interim_type(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "Boolean",
        DataType::Int8 | DataType::UInt8 => "Byte",
        DataType::Int16 | DataType::UInt16 => "Int16",
        DataType::Int32 | DataType::UInt32 => "Int32",
        DataType::Int64 | DataType::UInt64 => "Int64",
        DataType::Float16 | DataType::Float32 => "Single",
        DataType::Float64 => "Double",
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "Decimal",
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, None) => "DateTime",
        DataType::Timestamp(_, Some(_)) => "DateTimeOffset",
        DataType::Time32(_) | DataType::Time64(_) | DataType::Duration(_) => "TimeSpan",
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) => "Byte[]",
        _ => "String",
    }
}
