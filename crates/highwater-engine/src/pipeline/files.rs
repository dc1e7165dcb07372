//! Reading file datasets on `file://`, `az://` and `s3://` connections:
//! which files a dataset and its `storeSettings` select, and their rows as
//! Arrow batches (Copy and Lookup sources, GetMetadata, Delete, Validation).
//!
//! ```text
//! connection root (URL: folder, container/prefix, bucket/prefix)
//!   └ location.container | bucketName | fileSystem     the "container" folder
//!       └ location.folderPath                          the dataset's folder
//!           └ location.fileName                        one file (else: every file)
//!
//! storeSettings (Data Factory's file connector source settings)
//!   prefix               keys starting with container/prefix (folderPath ignored)
//!   wildcardFolderPath   folders (relative to the container) matching * and ?
//!   wildcardFileName     file names matching * and ? (fileName ignored)
//!   recursive            also files in subfolders (default true for Copy/Lookup)
//!   modifiedDatetimeStart ≤ last modified < modifiedDatetimeEnd   (UTC; either may be absent)
//!   deleteFilesAfterCompletion   the Copy deletes what it read, once committed
//! ```
//!
//! Rows of DelimitedText files are strings (no schema is inferred, as Data
//! Factory reads text without a dataset schema); columns are the header's
//! names or `Prop_0`, `Prop_1`, … . Json files hold one object, an array of
//! objects, or objects one after another (JSON Lines). Several files are read
//! in name order into one stream: their columns must agree.

use std::io::Read;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use highwater_connectors::files::{Charset, CsvOptions, FileSink};
use highwater_core::{Error, Extract, Result, StreamAdapter};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde_json::Value;

use super::datasets::{ResolvedDataset, connection};
use super::{Frame, delimited, text};

/// The store of a file connection.
#[derive(Clone)]
pub(crate) struct FileStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// `file:///abs/lake`, `az://container/prefix`: for messages.
    pub(crate) root: String,
}

impl FileStore {
    pub(crate) fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.root)
    }
}

pub(crate) fn open(frame: &Frame, linked_service: &str) -> Result<FileStore> {
    let conn = connection(frame, linked_service)?;
    let sink = FileSink::open(&conn.kind).map_err(|e| {
        Error::config(
            format!("linked service {linked_service}"),
            format!("a file dataset needs a file://, az:// or s3:// connection: {e}"),
        )
    })?;
    Ok(FileStore {
        store: sink.store(),
        root: sink.root().to_string(),
    })
}

fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Where a file dataset points, as keys under the connection's root.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    /// The container (or bucket, file system) folder; may be empty.
    pub(crate) container: String,
    /// Container and folderPath.
    pub(crate) folder: String,
    /// `fileName`, when given.
    pub(crate) file: Option<String>,
}

pub(crate) fn location(d: &ResolvedDataset) -> Location {
    let tp = &d.tp;
    let loc = tp.get("location").unwrap_or(tp);
    // The location type names which one counts (a template may set
    // `container` beside `fileSystem`); else the first one given.
    let keys = ["container", "bucketName", "fileSystem"];
    let typed = match text(loc.get("type")).as_str() {
        "AzureBlobFSLocation" => Some("fileSystem"),
        "AmazonS3Location" | "AmazonS3CompatibleLocation" | "GoogleCloudStorageLocation" => {
            Some("bucketName")
        }
        "AzureBlobStorageLocation" => Some("container"),
        _ => None,
    };
    let container = typed
        .into_iter()
        .chain(keys)
        .map(|k| text(loc.get(k)).trim_matches('/').to_string())
        .find(|c| !c.is_empty())
        .unwrap_or_default();
    let folder = join(&[&container, &text(loc.get("folderPath"))]);
    let file =
        Some(text(loc.get("fileName")).trim_matches('/').to_string()).filter(|f| !f.is_empty());
    Location {
        container,
        folder,
        file,
    }
}

/// The file filters of `storeSettings` (and of a legacy dataset).
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    pub(crate) recursive: bool,
    pub(crate) wildcard_folder: Option<String>,
    pub(crate) wildcard_file: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) start: Option<DateTime<Utc>>,
    pub(crate) end: Option<DateTime<Utc>>,
    pub(crate) delete_after: bool,
}

fn flag(v: Option<&Value>, what: &str) -> Result<Option<bool>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(Error::config(
            what,
            format!("must be true or false, got {other}"),
        )),
    }
}

fn nonempty(v: Option<&Value>) -> Option<String> {
    let t = text(v);
    (!t.trim().is_empty()).then_some(t)
}

/// A `modifiedDatetimeStart`/`End` value: an ISO 8601 time, in UTC when it
/// names no offset.
pub(crate) fn datetime(v: Option<&Value>, what: &str) -> Result<Option<DateTime<Utc>>> {
    let Some(t) = nonempty(v) else {
        return Ok(None);
    };
    let t = t.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(Some(d.with_timezone(&Utc)));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Ok(Some(n.and_utc()));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(Some(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()));
    }
    Err(Error::config(
        what,
        format!("`{t}` is not a date and time (e.g. 2024-03-01T00:00:00Z)"),
    ))
}

/// Filters from evaluated `storeSettings`, and from a legacy dataset's
/// `typeProperties` (`fileFilter`, `modifiedDatetimeStart`/`End`, `prefix`).
pub(crate) fn filters(settings: &Value, d: &ResolvedDataset, recursive: bool) -> Result<Filters> {
    let s = |k: &str| settings.get(k);
    let at = |k: &str| format!("storeSettings.{k}");
    let legacy = !matches!(
        d.kind.as_str(),
        "DelimitedText" | "Json" | "Parquet" | "Binary"
    );
    let l = |k: &str| if legacy { d.tp.get(k) } else { None };
    let mut f = Filters {
        recursive: flag(s("recursive"), &at("recursive"))?.unwrap_or(recursive),
        wildcard_folder: nonempty(s("wildcardFolderPath")),
        wildcard_file: nonempty(s("wildcardFileName")).or_else(|| nonempty(l("fileFilter"))),
        prefix: nonempty(s("prefix")).or_else(|| nonempty(l("prefix"))),
        start: datetime(s("modifiedDatetimeStart"), &at("modifiedDatetimeStart"))?,
        end: datetime(s("modifiedDatetimeEnd"), &at("modifiedDatetimeEnd"))?,
        delete_after: flag(
            s("deleteFilesAfterCompletion"),
            &at("deleteFilesAfterCompletion"),
        )?
        .unwrap_or(false),
    };
    if f.start.is_none() {
        f.start = datetime(l("modifiedDatetimeStart"), "modifiedDatetimeStart")?;
    }
    if f.end.is_none() {
        f.end = datetime(l("modifiedDatetimeEnd"), "modifiedDatetimeEnd")?;
    }
    if flag(
        s("enablePartitionDiscovery"),
        &at("enablePartitionDiscovery"),
    )? == Some(true)
    {
        return Err(Error::config(
            at("enablePartitionDiscovery"),
            "partition discovery is not supported",
        ));
    }
    Ok(f)
}

/// Does `name` match the Data Factory wildcard `pattern` (`*` any run of
/// characters, `?` one character, `^` escapes the next)?
pub(crate) fn wildcard(pattern: &str, name: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum T {
        Any,
        One,
        Lit(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        toks.push(match c {
            '*' => T::Any,
            '?' => T::One,
            '^' => T::Lit(it.next().unwrap_or('^')),
            c => T::Lit(c),
        });
    }
    let s: Vec<char> = name.chars().collect();
    // Iterative matching with backtracking on the last `*`.
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match toks.get(p) {
            Some(T::Any) => {
                star = Some((p, i));
                p += 1;
            }
            Some(T::One) => {
                p += 1;
                i += 1;
            }
            Some(T::Lit(c)) if *c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == T::Any)
}

fn has_wildcard(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

/// One selected file.
#[derive(Debug, Clone)]
pub(crate) struct Selected {
    pub(crate) meta: ObjectMeta,
    /// Its key relative to the folder it was selected in (for copies that
    /// keep the hierarchy).
    pub(crate) rel: String,
}

impl Selected {
    pub(crate) fn key(&self) -> &str {
        self.meta.location.as_ref()
    }

    pub(crate) fn name(&self) -> &str {
        self.key().rsplit('/').next().unwrap_or_default()
    }
}

pub(crate) fn path(key: &str, what: &str) -> Result<Path> {
    Path::parse(key).map_err(|e| Error::config(what, format!("`{key}` is not a valid path: {e}")))
}

pub(crate) fn store_error(fs: &FileStore, key: &str, e: object_store::Error) -> Error {
    Error::data(format!("{}: {e}", fs.url(key)))
}

/// Every file under `root` (recursively), without highwater's own `_highwater/`.
pub(crate) async fn list(fs: &FileStore, root: &str) -> Result<Vec<ObjectMeta>> {
    let prefix = if root.is_empty() {
        None
    } else {
        Some(path(root, "location")?)
    };
    let mut out: Vec<ObjectMeta> = fs
        .store
        .list(prefix.as_ref())
        .try_collect()
        .await
        .map_err(|e| store_error(fs, root, e))?;
    out.retain(|m| {
        let k = m.location.as_ref();
        !k.split('/').any(|p| p == "_highwater") && !k.ends_with('/')
    });
    out.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(out)
}

fn within_window(f: &Filters, m: &ObjectMeta) -> bool {
    f.start.is_none_or(|s| m.last_modified >= s) && f.end.is_none_or(|e| m.last_modified < e)
}

/// Which keys under the listing root a filter keeps.
type KeyFilter = Box<dyn Fn(&str) -> bool>;

/// The files a dataset and its filters select, in name order.
pub(crate) async fn select(fs: &FileStore, loc: &Location, f: &Filters) -> Result<Vec<Selected>> {
    let name_pattern = f
        .wildcard_file
        .clone()
        .or_else(|| loc.file.clone().filter(|n| has_wildcard(n)));
    // One named file.
    if f.prefix.is_none()
        && f.wildcard_folder.is_none()
        && name_pattern.is_none()
        && let Some(file) = &loc.file
    {
        let key = join(&[&loc.folder, file]);
        return match fs.store.head(&path(&key, "location.fileName")?).await {
            Ok(meta) if within_window(f, &meta) => Ok(vec![Selected {
                rel: file.clone(),
                meta,
            }]),
            Ok(_) => Ok(vec![]),
            Err(object_store::Error::NotFound { .. }) => Err(Error::data(format!(
                "{}: the file does not exist",
                fs.url(&key)
            ))),
            Err(e) => Err(store_error(fs, &key, e)),
        };
    }
    let (root, folder_ok): (String, KeyFilter) = if let Some(p) = &f.prefix {
        let full = join(&[&loc.container, p]);
        let root = match full.rfind('/') {
            Some(i) => full[..i].to_string(),
            None => String::new(),
        };
        let recursive = f.recursive;
        let starts = full.clone();
        let root2 = root.clone();
        (
            root,
            Box::new(move |key: &str| {
                key.starts_with(&starts)
                    && (recursive || !key[root2.len()..].trim_start_matches('/').contains('/'))
            }),
        )
    } else if let Some(w) = &f.wildcard_folder {
        let pattern = join(&[&loc.container, w]);
        let depth = pattern.split('/').count();
        let recursive = f.recursive;
        (
            loc.container.clone(),
            Box::new(move |key: &str| {
                let segs: Vec<&str> = key.split('/').collect();
                let folders = segs.len() - 1;
                if folders < depth || (!recursive && folders != depth) {
                    return false;
                }
                wildcard(&pattern, &segs[..depth].join("/"))
            }),
        )
    } else {
        let base = loc.folder.clone();
        let recursive = f.recursive;
        (
            base.clone(),
            Box::new(move |key: &str| {
                let rest = if base.is_empty() {
                    key
                } else {
                    &key[base.len() + 1..]
                };
                recursive || !rest.contains('/')
            }),
        )
    };
    let mut out = Vec::new();
    for meta in list(fs, &root).await? {
        let key = meta.location.as_ref().to_string();
        if !folder_ok(&key) || !within_window(f, &meta) {
            continue;
        }
        let name = key.rsplit('/').next().unwrap_or_default();
        if let Some(p) = &name_pattern
            && !wildcard(p, name)
        {
            continue;
        }
        // Paths kept by a copy are below the dataset's folder (else its
        // container, for a prefix or wildcard folder reaching elsewhere).
        let below = |base: &str| {
            if base.is_empty() {
                Some(key.clone())
            } else {
                key.strip_prefix(&format!("{base}/")).map(str::to_string)
            }
        };
        let rel = below(&loc.folder)
            .or_else(|| below(&loc.container))
            .unwrap_or_else(|| key.clone());
        out.push(Selected { meta, rel });
    }
    Ok(out)
}

/// The bytes of one file.
pub(crate) async fn bytes(fs: &FileStore, file: &Selected) -> Result<bytes::Bytes> {
    let key = file.key();
    let got = fs
        .store
        .get(&file.meta.location)
        .await
        .map_err(|e| store_error(fs, key, e))?;
    got.bytes().await.map_err(|e| store_error(fs, key, e))
}

/// A file dataset's selection for one read.
pub(crate) struct Selection {
    pub(crate) fs: FileStore,
    pub(crate) files: Vec<Selected>,
    pub(crate) filters: Filters,
}

/// Select the files a source (`source.storeSettings`) reads.
pub(crate) async fn select_source(
    frame: &Frame,
    d: &ResolvedDataset,
    source: &Value,
) -> Result<Selection> {
    let settings = source.get("storeSettings").cloned().unwrap_or(Value::Null);
    let filters = filters(&settings, d, true)
        .map_err(|e| Error::config(format!("dataset {}", d.name), e.to_string()))?;
    let fs = open(frame, &d.linked_service)?;
    let files = select(&fs, &location(d), &filters).await?;
    Ok(Selection { fs, files, filters })
}

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
    let kind = super::datasets::file_format(d);
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

/// What a dataset names: a file, a folder, or nothing there.
pub(crate) enum Item {
    File(ObjectMeta),
    Folder {
        /// The files directly in it.
        files: Vec<ObjectMeta>,
        /// The names of its subfolders.
        folders: Vec<String>,
    },
    Missing,
}

/// Look up what the dataset's location names. A folder exists when it
/// holds something (object stores have no empty folders) or, on a local
/// connection, when the directory exists; the container root always does.
pub(crate) async fn item(fs: &FileStore, loc: &Location) -> Result<Item> {
    if let Some(file) = &loc.file {
        if has_wildcard(file) {
            return Err(Error::config(
                "location.fileName",
                format!("`{file}` has wildcards: name one file, or only the folder"),
            ));
        }
        let key = join(&[&loc.folder, file]);
        return match fs.store.head(&path(&key, "location.fileName")?).await {
            Ok(m) => Ok(Item::File(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(Item::Missing),
            Err(e) => Err(store_error(fs, &key, e)),
        };
    }
    let prefix = if loc.folder.is_empty() {
        None
    } else {
        Some(path(&loc.folder, "location.folderPath")?)
    };
    let l = fs
        .store
        .list_with_delimiter(prefix.as_ref())
        .await
        .map_err(|e| store_error(fs, &loc.folder, e))?;
    let files: Vec<ObjectMeta> = l
        .objects
        .into_iter()
        .filter(|m| !m.location.as_ref().ends_with('/'))
        .collect();
    let folders: Vec<String> = l
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|n| n != "_highwater")
        .collect();
    let local_dir = fs
        .root
        .strip_prefix("file://")
        .map(|r| std::path::Path::new(r).join(&loc.folder).is_dir());
    if files.is_empty() && folders.is_empty() && !loc.folder.is_empty() && local_dir != Some(true) {
        // A file of that name is no folder.
        if let Ok(m) = fs
            .store
            .head(&path(&loc.folder, "location.folderPath")?)
            .await
        {
            return Ok(Item::File(m));
        }
        return Ok(Item::Missing);
    }
    Ok(Item::Folder { files, folders })
}

/// `file:///…/folder/name` of a dataset's location, for messages.
pub(crate) fn describe(fs: &FileStore, loc: &Location) -> String {
    match &loc.file {
        Some(f) => fs.url(&join(&[&loc.folder, f])),
        None => fs.url(&loc.folder),
    }
}

/// Delete files (after a committed copy, or by a Delete activity).
pub(crate) async fn delete(fs: &FileStore, files: &[Selected]) -> Result<()> {
    for f in files {
        match fs.store.delete(&f.meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(fs, f.key(), e)),
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{location, wildcard};
    use crate::pipeline::datasets::ResolvedDataset;

    fn ds(tp: serde_json::Value) -> ResolvedDataset {
        ResolvedDataset {
            name: "d".into(),
            kind: "Binary".into(),
            linked_service: "l".into(),
            tp,
            is_file: true,
        }
    }

    #[test]
    fn locations() {
        // The template "Delta copy from S3 partitions" sets both.
        let l = location(&ds(json!({"location": {"type": "AzureBlobFSLocation",
            "fileSystem": "fs", "container": "fs", "folderPath": "a/b/", "fileName": "x.csv"}})));
        assert_eq!((l.container.as_str(), l.folder.as_str()), ("fs", "fs/a/b"));
        assert_eq!(l.file.as_deref(), Some("x.csv"));
        let l = location(&ds(
            json!({"location": {"type": "AmazonS3Location", "bucketName": "b"}}),
        ));
        assert_eq!((l.folder.as_str(), l.file), ("b", None));
        // Legacy datasets: folderPath at the top.
        let l = location(&ds(json!({"folderPath": "c/in", "fileName": ""})));
        assert_eq!(l.folder, "c/in");
    }

    #[test]
    fn datetimes() {
        use serde_json::Value;
        let t = |s: &str| super::datetime(Some(&Value::String(s.into())), "x").unwrap();
        let want = "2024-03-01T05:00:00Z";
        for s in [
            "2024-03-01T05:00:00Z",
            "2024-03-01T05:00:00.0000000Z",
            "2024-03-01T06:00:00+01:00",
            "2024-03-01T05:00:00",
            "2024-03-01 05:00:00",
        ] {
            assert_eq!(
                t(s).unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                want,
                "{s}"
            );
        }
        assert_eq!(t("  "), None);
        assert!(super::datetime(Some(&Value::String("yesterday".into())), "x").is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", "a.csv"));
        assert!(wildcard("*.csv", "a.csv"));
        assert!(!wildcard("*.csv", "a.json"));
        assert!(wildcard("a?c*", "abc.txt"));
        assert!(!wildcard("a?c", "ac"));
        assert!(wildcard("2024/*/in", "2024/01/in"));
        assert!(wildcard("x^*y", "x*y"));
        assert!(!wildcard("x^*y", "xzy"));
        assert!(wildcard("*a*b", "xxaxxb"));
    }
}
