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

mod read;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use highwater_connectors::files::FileSink;
use highwater_core::{Error, Result};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde_json::Value;

pub(crate) use read::{read, structure};

use super::datasets::{ResolvedDataset, dataset_connection};
use super::{Frame, text};

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

pub(crate) fn open(frame: &Frame, d: &ResolvedDataset) -> Result<FileStore> {
    let conn = dataset_connection(frame, d)?;
    let sink = FileSink::open(&conn.kind).map_err(|e| {
        Error::config(
            format!("linked service {}", d.linked_service),
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
    // Bound to an account-level connection, the container is the store's.
    let container = match d.bucket {
        Some(_) => String::new(),
        None => typed
            .into_iter()
            .chain(keys)
            .map(|k| text(loc.get(k)).trim_matches('/').to_string())
            .find(|c| !c.is_empty())
            .unwrap_or_default(),
    };
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
    let fs = open(frame, d)?;
    let files = select(&fs, &location(d), &filters).await?;
    Ok(Selection { fs, files, filters })
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
            bucket: None,
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
