//! [`FileSink`]: the `Sink` for `file://`, `az://` and `s3://` connections.
//!
//! Nothing partial and nothing uncommitted is ever visible at a final name,
//! and a file once visible there is never removed by recovery:
//!
//! ```text
//! write    rows ─► _highwater/staging/<stream>/<run_id>      (multipart; not the final name)
//! commit   marker _highwater/commits/<stream>/<run_id>.json  create-if-absent: THE commit
//!          publish staging ─► final name                     rename (local) / copy+delete
//! recover  marker present → publish what is still staged → Published
//!          marker absent  → delete staging only           → NotPublished
//! ```
//!
//! A split write (`WriteRequest::split`, Data Factory's `maxRowsPerFile`)
//! stages its files as `<run_id>.00000`, `<run_id>.00001`, … and the one
//! marker lists them all (`files: [[staged, final], …]`): every file of the
//! copy is published by the same commit, or none is.
//!
//! `_highwater/` sits at the connection's root, beside the data folders:
//! Spark, Hive, Arrow datasets and DuckDB's hive partitioning skip names
//! starting with `_`, and staged files carry no data extension, so a glob
//! such as `orders/*.parquet` or `**/*.csv` never matches them.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use async_trait::async_trait;
use highwater_core::{
    Committed, ConnKind, Error, Recovered, Result, Sink, SinkWriter, WriteRequest,
};
use object_store::path::{Path, PathPart};
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::format::Encoder;

/// A folder or bucket prefix that streams write files into.
pub struct FileSink {
    store: Arc<dyn ObjectStore>,
    /// For messages and output names: `file:///abs/lake`, `az://container/prefix`.
    root: String,
    /// Local root, to clean multipart staging files after a crash.
    local_root: Option<PathBuf>,
}

/// `AZURE_STORAGE_CONNECTION_STRING` (`AccountName=…;AccountKey=…;`
/// `BlobEndpoint=…;SharedAccessSignature=…;UseDevelopmentStorage=true`):
/// fills what the `AZURE_STORAGE_*` variables did not set.
fn apply_connection_string(
    mut b: object_store::azure::MicrosoftAzureBuilder,
    cs: &str,
) -> object_store::azure::MicrosoftAzureBuilder {
    use object_store::azure::AzureConfigKey as K;
    for part in cs.split(';') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        let key = match k.to_ascii_lowercase().as_str() {
            "accountname" => K::AccountName,
            "accountkey" => K::AccessKey,
            "sharedaccesssignature" => K::SasKey,
            "blobendpoint" => K::Endpoint,
            "usedevelopmentstorage" => K::UseEmulator,
            _ => continue,
        };
        // A flag reads as set ("false") when unset: it is only ever turned on.
        if matches!(key, K::UseEmulator) || b.get_config_value(&key).is_none() {
            if matches!(key, K::Endpoint) && v.starts_with("http://") {
                b = b.with_allow_http(true);
            }
            b = b.with_config(key, v);
        }
    }
    b
}

/// An object store's error as one line that names the fix: a missing
/// container or bucket, missing or rejected credentials. `name` is the
/// container, bucket or root the user wrote. Other errors are kept,
/// flattened to one line.
/// An object store's error at `url` (`s3://bucket/…`, `az://container/…`,
/// `file://…`) on one line, with the fix where one is known.
pub fn explain_at(url: &str, e: impl std::fmt::Display) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let name = rest.split('/').next().unwrap_or_default();
    explain_store_error(&e.to_string(), name, scheme == "az")
}

pub fn explain_store_error(e: &str, name: &str, azure: bool) -> String {
    let has = |s: &str| e.contains(s);
    if has("ContainerNotFound") {
        return format!(
            "container `{name}` does not exist in this storage account: create it (e.g. `az storage container create --name {name}`) or fix the container in the URL"
        );
    }
    if has("NoSuchBucket") {
        return format!(
            "bucket `{name}` does not exist: create it (e.g. `aws s3 mb s3://{name}`) or fix the bucket in the URL; for MinIO or another S3-compatible store set AWS_ENDPOINT_URL"
        );
    }
    if has("Account must be specified") {
        return "no Azure storage account: set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_TOKEN), or AZURE_STORAGE_CONNECTION_STRING; for Azurite set AZURE_STORAGE_USE_EMULATOR=true".into();
    }
    if has("169.254.169.254") || has("/latest/api/token") {
        return "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_REGION); for MinIO or another S3-compatible store also AWS_ENDPOINT_URL (highwater does not read ~/.aws)".into();
    }
    if has("AuthenticationFailed")
        || has("AuthorizationFailure")
        || has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("AccessDenied")
        || has("403 Forbidden")
    {
        return if azure {
            "the storage account refused the credentials: check AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN (or AZURE_STORAGE_CONNECTION_STRING), and that they may write to this container".into()
        } else {
            "S3 refused the credentials: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), AWS_REGION, and that they may write to this bucket".into()
        };
    }
    // Keep the message, on one line, without the XML body.
    let head = e.split("<?xml").next().unwrap_or(e);
    head.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(':')
        .to_string()
}

impl FileSink {
    /// Build the object store for a file, Azure or S3 connection.
    pub fn open(kind: &ConnKind) -> Result<FileSink> {
        if kind.is_account() {
            return Err(Error::config(
                "connection",
                "az:// or s3:// without a container or bucket is a whole account: only Data Factory datasets (which name their container) can use it; write az://container[/prefix] or s3://bucket[/prefix]",
            ));
        }
        match kind {
            ConnKind::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::sink(dir.display(), format!("cannot create folder: {e}"))
                })?;
                let abs = std::fs::canonicalize(dir)
                    .map_err(|e| Error::sink(dir.display(), format!("cannot open folder: {e}")))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)
                    .map_err(|e| Error::sink(abs.display(), e))?;
                Ok(FileSink {
                    store: Arc::new(store),
                    root: format!("file://{}", abs.display()),
                    local_root: Some(abs),
                })
            }
            ConnKind::Azure { container, prefix } => {
                let mut b = crate::timeouts::object_store_limits::azure(
                    object_store::azure::MicrosoftAzureBuilder::from_env(),
                )
                .with_container_name(container);
                if let Ok(cs) = std::env::var("AZURE_STORAGE_CONNECTION_STRING") {
                    b = apply_connection_string(b, &cs);
                }
                if std::env::var("AZURE_STORAGE_USE_EMULATOR")
                    .is_ok_and(|v| v == "true" || v == "1")
                {
                    b = b.with_use_emulator(true);
                }
                let store = b.build().map_err(|e| {
                    Error::sink(
                        format!("az://{container}"),
                        explain_store_error(&e.to_string(), container, true),
                    )
                })?;
                Ok(FileSink::prefixed(
                    Arc::new(store),
                    format!("az://{container}"),
                    prefix,
                ))
            }
            ConnKind::S3 { bucket, prefix } => {
                let mut b = crate::timeouts::object_store_limits::s3(
                    object_store::aws::AmazonS3Builder::from_env(),
                )
                .with_bucket_name(bucket);
                let endpoint =
                    std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"));
                if let Ok(ep) = endpoint {
                    b = b
                        .with_endpoint(&ep)
                        .with_allow_http(ep.starts_with("http://"));
                }
                let store = b.build().map_err(|e| {
                    Error::sink(
                        format!("s3://{bucket}"),
                        explain_store_error(&e.to_string(), bucket, false),
                    )
                })?;
                Ok(FileSink::prefixed(
                    Arc::new(store),
                    format!("s3://{bucket}"),
                    prefix,
                ))
            }
            _ => Err(Error::config(
                "connection",
                "not a file or object-store connection",
            )),
        }
    }

    fn prefixed(store: Arc<dyn ObjectStore>, root: String, prefix: &str) -> FileSink {
        if prefix.is_empty() {
            return FileSink {
                store,
                root,
                local_root: None,
            };
        }
        let store: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store, Path::from(prefix)));
        FileSink {
            store,
            root: format!("{root}/{prefix}"),
            local_root: None,
        }
    }

    /// The store under the connection's root (and prefix), for readers.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// `file:///abs/lake`, `az://container/prefix`: for messages.
    pub fn root(&self) -> &str {
        &self.root
    }

    fn url_of(&self, path: &Path) -> String {
        format!("{}/{}", self.root, path)
    }

    fn marker(stream: &str, run_id: &str) -> Path {
        Path::from_iter([
            PathPart::from("_highwater"),
            PathPart::from("commits"),
            PathPart::from(stream),
            PathPart::from(format!("{run_id}.json").as_str()),
        ])
    }

    /// Where an attempt's data is written before its commit.
    fn staged(stream: &str, run_id: &str) -> Path {
        Path::from_iter([
            PathPart::from("_highwater"),
            PathPart::from("staging"),
            PathPart::from(stream),
            PathPart::from(run_id),
        ])
    }

    /// File `index` of a split attempt, before its commit.
    fn staged_part(stream: &str, run_id: &str, index: usize) -> Path {
        Path::from_iter([
            PathPart::from("_highwater"),
            PathPart::from("staging"),
            PathPart::from(stream),
            PathPart::from(format!("{run_id}.{index:05}").as_str()),
        ])
    }

    /// Written after staged part `index` is complete: its rows and bytes.
    fn part_done(stream: &str, run_id: &str, index: usize) -> Path {
        Path::from_iter([
            PathPart::from("_highwater"),
            PathPart::from("staging"),
            PathPart::from(stream),
            PathPart::from(format!("{run_id}.{index:05}.done").as_str()),
        ])
    }

    /// The rows and bytes of a staged part, once it is complete.
    async fn read_part_done(
        &self,
        stream: &str,
        run_id: &str,
        index: usize,
    ) -> Result<Option<(u64, u64)>> {
        let done = FileSink::part_done(stream, run_id, index);
        match self.store.get(&done).await {
            Ok(got) => {
                let url = self.url_of(&done);
                let bytes = got.bytes().await.map_err(|e| Error::sink(&url, e))?;
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::sink(&url, format!("unreadable part record: {e}")))?;
                let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
                Ok(Some((n("rows"), n("bytes"))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => {
                let url = self.url_of(&done);
                let why = explain_at(&url, e);
                Err(Error::sink(url, why))
            }
        }
    }

    /// Remove the staged files of a split attempt.
    async fn drop_staged_parts(&self, stream: &str, run_id: &str) -> Result<()> {
        use futures::StreamExt;
        let folder = Path::from_iter([
            PathPart::from("_highwater"),
            PathPart::from("staging"),
            PathPart::from(stream),
        ]);
        let prefix = format!("{run_id}.");
        let mut found = Vec::new();
        let mut list = self.store.list(Some(&folder));
        while let Some(item) = list.next().await {
            match item {
                Ok(meta) => {
                    if meta
                        .location
                        .filename()
                        .is_some_and(|n| n.starts_with(&prefix) && !n.contains('#'))
                    {
                        found.push(meta.location);
                    }
                }
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => {
                    let url = self.url_of(&folder);
                    let why = explain_at(&url, e);
                    return Err(Error::sink(url, format!("cannot list staged data: {why}")));
                }
            }
        }
        for p in found {
            self.drop_staged(&p).await?;
        }
        Ok(())
    }

    /// Remove an attempt's staged data (and local multipart leftovers).
    async fn drop_staged(&self, staged: &Path) -> Result<()> {
        self.clean_local_staging(staged);
        match self.store.delete(staged).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => {
                let url = self.url_of(staged);
                let why = explain_at(&url, e);
                Err(Error::sink(
                    url,
                    format!("cannot remove staged data: {why}"),
                ))
            }
        }
    }

    fn target_path(&self, target: &str) -> Result<Path> {
        Path::parse(target).map_err(|e| {
            Error::sink(
                self.url_of(&Path::from(target)),
                format!("invalid path: {e}"),
            )
        })
    }

    /// Remove multipart staging files (`name#N`) a crash left in a local folder.
    fn clean_local_staging(&self, path: &Path) {
        let Some(root) = &self.local_root else { return };
        let full = root.join(path.as_ref());
        let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let prefix = format!("{name}#");
        for e in entries.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

struct FileWriter {
    store: Arc<dyn ObjectStore>,
    path: Path,
    staged: Path,
    url: String,
    marker: Path,
    encoder: Encoder,
    overwrite: bool,
    rows: u64,
    /// A split write: the split, what it needs to open the next file, and
    /// the files finished so far (staged, final, URL).
    split: Option<Split>,
}

struct Split {
    how: highwater_core::FileSplit,
    /// The folder and prefix of the file names.
    target: String,
    stream: String,
    run_id: String,
    format: String,
    schema: arrow_schema::SchemaRef,
    root: String,
    /// Rows in the file being written.
    rows: u64,
    done: Vec<(Path, Path, String)>,
}

/// Move committed data from its staging name to its final name. Idempotent:
/// staged data already gone means it was published.
async fn publish(
    store: &dyn ObjectStore,
    staged: &Path,
    path: &Path,
    overwrite: bool,
    url: &str,
) -> Result<()> {
    let res = if overwrite {
        store.rename(staged, path).await
    } else {
        match store.rename_if_not_exists(staged, path).await {
            // Published already (a crash fell between publish and cleanup):
            // the visible file stays as it is.
            Err(object_store::Error::AlreadyExists { .. }) => store.delete(staged).await,
            // Stores without conditional copy: the name is this attempt's
            // own (checked absent at begin), so a plain rename is safe.
            Err(object_store::Error::NotSupported { .. })
            | Err(object_store::Error::NotImplemented { .. }) => store.rename(staged, path).await,
            other => other,
        }
    };
    match res {
        Ok(()) => Ok(()),
        Err(object_store::Error::NotFound { .. }) => match store.head(path).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::sink(
                url,
                format!(
                    "committed, but its staged data is gone: {}",
                    explain_at(url, e)
                ),
            )),
        },
        Err(e) => Err(Error::sink(
            url,
            format!("cannot publish: {}", explain_at(url, e)),
        )),
    }
}

/// Write a commit marker, create-if-absent: one already there was written
/// by this attempt (a try whose answer was lost). An error names `url`.
/// After an error the marker may still exist (the answer to a write that
/// happened was lost): callers delete staged data only when it does not.
async fn put_marker(store: &dyn ObjectStore, marker: &Path, body: String, url: &str) -> Result<()> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(marker, PutPayload::from(body.into_bytes()), opts)
        .await
    {
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(Error::sink(
            url,
            format!("cannot write commit marker: {}", explain_at(url, e)),
        )),
    }
}

/// THE commit of several files: the marker listing every `(staged, final,
/// URL)` (create-if-absent), then each published. Before the marker is
/// written nothing is visible; after it a failure is finished by `recover`.
async fn commit_files(
    store: &dyn ObjectStore,
    marker: &Path,
    files: &[(Path, Path, String)],
    info: &str,
    rows: u64,
    overwrite: bool,
) -> Result<Vec<String>> {
    let urls: Vec<String> = files.iter().map(|(_, _, u)| u.clone()).collect();
    let listed: Vec<[&str; 2]> = files
        .iter()
        .map(|(st, p, _)| [st.as_ref(), p.as_ref()])
        .collect();
    highwater_core::failpoint("files.after_data_before_marker");
    let body = serde_json::json!({
        "info": info,
        "outputs": urls,
        "rows": rows,
        "files": listed,
        "overwrite": overwrite,
    })
    .to_string();
    put_marker(store, marker, body, urls.first().map_or("", String::as_str)).await?;
    highwater_core::failpoint("files.after_marker_before_publish");
    for (st, p, u) in files {
        publish(store, st, p, overwrite, u).await?;
    }
    Ok(urls)
}

#[async_trait]
impl Sink for FileSink {
    async fn begin(&self, req: WriteRequest) -> Result<Box<dyn SinkWriter>> {
        if let Some(how) = &req.split {
            return self.begin_split(&req, how.clone()).await;
        }
        let path = self.target_path(&req.target)?;
        let url = self.url_of(&path);
        if !req.overwrite {
            match self.store.head(&path).await {
                Ok(_) => {
                    return Err(Error::sink(
                        &url,
                        "exists already and would be overwritten by a different delta; put {run_id} in the stream's path",
                    ));
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::sink(&url, explain_at(&url, e))),
            }
        }
        let staged = FileSink::staged(&req.stream, &req.run_id);
        // A retry of the same attempt id starts clean.
        self.drop_staged(&staged).await?;
        let encoder = Encoder::new(
            &req.format,
            req.schema.clone(),
            self.store.clone(),
            staged.clone(),
            &url,
        )?;
        Ok(Box::new(FileWriter {
            store: self.store.clone(),
            marker: FileSink::marker(&req.stream, &req.run_id),
            path,
            staged,
            url,
            encoder,
            overwrite: req.overwrite,
            rows: 0,
            split: None,
        }))
    }

    async fn recover(
        &self,
        stream: &str,
        run_id: &str,
        target: &str,
        _owned: bool,
    ) -> Result<Recovered> {
        let marker = FileSink::marker(stream, run_id);
        let staged = FileSink::staged(stream, run_id);
        match self.store.get(&marker).await {
            Ok(got) => {
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| Error::sink(self.url_of(&marker), e))?;
                let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::sink(
                        self.url_of(&marker),
                        format!("unreadable commit marker: {e}"),
                    )
                })?;
                let info = v
                    .get("info")
                    .and_then(|i| i.as_str())
                    .unwrap_or_default()
                    .to_string();
                // Committed: finish publishing what may still be staged.
                if let Some(files) = v.get("files").and_then(|f| f.as_array()) {
                    let overwrite = v.get("overwrite").and_then(|o| o.as_bool()) == Some(true);
                    for f in files {
                        let (Some(st), Some(t)) = (
                            f.get(0).and_then(|x| x.as_str()),
                            f.get(1).and_then(|x| x.as_str()),
                        ) else {
                            continue;
                        };
                        let (st, path) = (Path::from(st), self.target_path(t)?);
                        if self.store.head(&st).await.is_ok() {
                            publish(
                                self.store.as_ref(),
                                &st,
                                &path,
                                overwrite,
                                &self.url_of(&path),
                            )
                            .await?;
                        }
                        self.clean_local_staging(&st);
                    }
                    // What a shared load's parts left beside them (best
                    // effort: the copy is published either way).
                    let _ = self.drop_staged_parts(stream, run_id).await;
                } else if let Some(t) = v.get("target").and_then(|t| t.as_str()) {
                    let path = self.target_path(t)?;
                    let overwrite = v.get("overwrite").and_then(|o| o.as_bool()) == Some(true);
                    if self.store.head(&staged).await.is_ok() {
                        publish(
                            self.store.as_ref(),
                            &staged,
                            &path,
                            overwrite,
                            &self.url_of(&path),
                        )
                        .await?;
                    }
                    self.clean_local_staging(&staged);
                }
                Ok(Recovered::Published { info })
            }
            Err(object_store::Error::NotFound { .. }) => {
                // Not committed: only staging is removed. The final name
                // was never written by this attempt, so whatever is visible
                // there (an earlier full copy) stays.
                self.drop_staged(&staged).await?;
                self.drop_staged_parts(stream, run_id).await?;
                if !target.is_empty()
                    && let Ok(path) = self.target_path(target)
                {
                    // Leftovers of attempts made before staging existed.
                    self.clean_local_staging(&path);
                }
                Ok(Recovered::NotPublished)
            }
            Err(e) => {
                let url = self.url_of(&marker);
                let why = explain_at(&url, e);
                Err(Error::sink(url, why))
            }
        }
    }

    async fn check(&self) -> Result<String> {
        let probe = Path::from(format!("_highwater/check-{}", std::process::id()).as_str());
        self.store
            .put(&probe, PutPayload::from_static(b"ok"))
            .await
            .map_err(|e| {
                // The container or bucket: `az://NAME/prefix`.
                let name = self
                    .root
                    .split_once("://")
                    .and_then(|(_, r)| r.split('/').next())
                    .unwrap_or(&self.root);
                let why = explain_store_error(&e.to_string(), name, self.root.starts_with("az://"));
                Error::sink(&self.root, format!("not writable: {why}"))
            })?;
        let _ = self.store.delete(&probe).await;
        Ok(format!("{} is writable", self.root))
    }

    async fn begin_part(&self, req: WriteRequest, index: usize) -> Result<Box<dyn SinkWriter>> {
        let path = self.target_path(&highwater_core::part_file_name(&req.target, index))?;
        let url = self.url_of(&path);
        let staged = FileSink::staged_part(&req.stream, &req.run_id, index);
        let done = FileSink::part_done(&req.stream, &req.run_id, index);
        // A part written again (its first writer stopped) starts clean.
        self.drop_staged(&done).await?;
        self.drop_staged(&staged).await?;
        let encoder = Encoder::new(
            &req.format,
            req.schema.clone(),
            self.store.clone(),
            staged.clone(),
            &url,
        )?;
        Ok(Box::new(PartWriter {
            store: self.store.clone(),
            staged,
            done,
            url,
            encoder,
            rows: 0,
            schema: req.schema.clone(),
        }))
    }

    async fn part_written(&self, stream: &str, run_id: &str, index: usize) -> Result<Option<u64>> {
        Ok(self
            .read_part_done(stream, run_id, index)
            .await?
            .map(|(rows, _)| rows))
    }

    async fn commit_parts(
        &self,
        req: &WriteRequest,
        parts: usize,
        info: &str,
    ) -> Result<Committed> {
        let mut files = Vec::new();
        let (mut rows, mut bytes) = (0, 0);
        for i in 0..parts {
            let path = self.target_path(&highwater_core::part_file_name(&req.target, i))?;
            let url = self.url_of(&path);
            let Some((r, b)) = self.read_part_done(&req.stream, &req.run_id, i).await? else {
                return Err(Error::sink(
                    &url,
                    format!(
                        "part {i} of run {} is not staged; nothing published",
                        req.run_id
                    ),
                ));
            };
            if !req.overwrite && self.store.head(&path).await.is_ok() {
                return Err(Error::sink(
                    &url,
                    "exists already and would be overwritten by a different load; put {run_id} in the stream's path",
                ));
            }
            rows += r;
            bytes += b;
            files.push((
                FileSink::staged_part(&req.stream, &req.run_id, i),
                path,
                url,
            ));
        }
        let marker = FileSink::marker(&req.stream, &req.run_id);
        // A failed marker leaves the staged parts for the attempt's
        // recovery to remove.
        let urls = commit_files(
            self.store.as_ref(),
            &marker,
            &files,
            info,
            rows,
            req.overwrite,
        )
        .await?;
        // The parts' records (best effort: the copy is published).
        let _ = self.drop_staged_parts(&req.stream, &req.run_id).await;
        Ok(Committed {
            outputs: urls,
            rows,
            bytes,
        })
    }
}

/// One part of a shared full load: staged, and complete once its
/// `.done` record exists.
struct PartWriter {
    store: Arc<dyn ObjectStore>,
    staged: Path,
    done: Path,
    url: String,
    encoder: Encoder,
    rows: u64,
    schema: arrow_schema::SchemaRef,
}

#[async_trait]
impl SinkWriter for PartWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.encoder.write(&batch, &self.url).await
    }

    async fn commit(self: Box<Self>, _info: &str) -> Result<Committed> {
        let PartWriter {
            store,
            staged,
            done,
            url,
            mut encoder,
            rows,
            schema,
        } = *self;
        if rows == 0 {
            // An empty part is still a file of its format (a CSV header),
            // as every other part is.
            encoder.write(&RecordBatch::new_empty(schema), &url).await?;
        }
        encoder.finish(&url).await?;
        let bytes = store.head(&staged).await.map(|m| m.size).unwrap_or(0);
        let body = serde_json::json!({ "rows": rows, "bytes": bytes }).to_string();
        store
            .put(&done, PutPayload::from(body.into_bytes()))
            .await
            .map_err(|e| {
                Error::sink(
                    &url,
                    format!("cannot record the staged part: {}", explain_at(&url, e)),
                )
            })?;
        Ok(Committed {
            outputs: vec![],
            rows,
            bytes,
        })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.encoder.abort().await;
        Ok(())
    }
}

impl FileSink {
    /// Begin a split write: file 0 opens now (so an empty copy still
    /// writes one file, as a single-file copy does).
    async fn begin_split(
        &self,
        req: &WriteRequest,
        how: highwater_core::FileSplit,
    ) -> Result<Box<dyn SinkWriter>> {
        if how.max_rows == 0 {
            return Err(Error::config("maxRowsPerFile", "must be at least 1"));
        }
        let path = self.target_path(&how.name(&req.target, 0))?;
        let url = self.url_of(&path);
        if !req.overwrite {
            match self.store.head(&path).await {
                Ok(_) => {
                    return Err(Error::sink(
                        &url,
                        "exists already and would be overwritten by another copy; give each copy its own fileNamePrefix",
                    ));
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::sink(&url, explain_at(&url, e))),
            }
        }
        // A retry of the same attempt id starts clean.
        self.drop_staged_parts(&req.stream, &req.run_id).await?;
        let staged = FileSink::staged_part(&req.stream, &req.run_id, 0);
        let encoder = Encoder::new(
            &req.format,
            req.schema.clone(),
            self.store.clone(),
            staged.clone(),
            &url,
        )?;
        Ok(Box::new(FileWriter {
            store: self.store.clone(),
            marker: FileSink::marker(&req.stream, &req.run_id),
            path,
            staged,
            url,
            encoder,
            overwrite: req.overwrite,
            rows: 0,
            split: Some(Split {
                how,
                target: req.target.clone(),
                stream: req.stream.clone(),
                run_id: req.run_id.clone(),
                format: req.format.clone(),
                schema: req.schema.clone(),
                root: self.root.clone(),
                rows: 0,
                done: Vec::new(),
            }),
        }))
    }
}

impl FileWriter {
    /// Finish the current file of a split write and open the next.
    async fn next_file(&mut self) -> Result<()> {
        let Some(sp) = self.split.as_mut() else {
            return Ok(());
        };
        let index = sp.done.len() + 1;
        let path = Path::parse(sp.how.name(&sp.target, index))
            .map_err(|e| Error::sink(&sp.target, format!("invalid path: {e}")))?;
        let url = format!("{}/{}", sp.root, path);
        let staged = FileSink::staged_part(&sp.stream, &sp.run_id, index);
        let next = Encoder::new(
            &sp.format,
            sp.schema.clone(),
            self.store.clone(),
            staged.clone(),
            &url,
        )?;
        let done = std::mem::replace(&mut self.encoder, next);
        done.finish(&self.url).await?;
        sp.done.push((
            std::mem::replace(&mut self.staged, staged),
            std::mem::replace(&mut self.path, path),
            std::mem::replace(&mut self.url, url),
        ));
        sp.rows = 0;
        Ok(())
    }
}

#[async_trait]
impl SinkWriter for FileWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let Some(max) = self.split.as_ref().map(|s| s.how.max_rows) else {
            return self.encoder.write(&batch, &self.url).await;
        };
        let n = batch.num_rows();
        let mut offset = 0;
        while offset < n {
            let in_file = self.split.as_ref().map(|s| s.rows).unwrap_or(0);
            if in_file >= max {
                self.next_file().await?;
                continue;
            }
            let take = ((max - in_file) as usize).min(n - offset);
            self.encoder
                .write(&batch.slice(offset, take), &self.url)
                .await?;
            if let Some(sp) = self.split.as_mut() {
                sp.rows += take as u64;
            }
            offset += take;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, info: &str) -> Result<Committed> {
        if let Some(sp) = self.split.take() {
            return self.commit_split(sp, info).await;
        }
        let FileWriter {
            store,
            path,
            staged,
            url,
            marker,
            encoder,
            overwrite,
            rows,
            ..
        } = *self;
        encoder.finish(&url).await?;
        let bytes = store.head(&staged).await.map(|m| m.size).unwrap_or(0);
        highwater_core::failpoint("files.after_data_before_marker");
        let body = serde_json::json!({
            "info": info,
            "outputs": [url],
            "rows": rows,
            "target": path.as_ref(),
            "overwrite": overwrite,
        })
        .to_string();
        if let Err(e) = put_marker(store.as_ref(), &marker, body, &url).await {
            // Not committed, unless the marker was written and only its
            // answer lost (then `recover` publishes the staged copy). Only
            // the staged copy goes; whatever was visible at the final name
            // before stays untouched.
            if store.head(&marker).await.is_err() {
                let _ = store.delete(&staged).await;
            }
            return Err(e);
        }
        highwater_core::failpoint("files.after_marker_before_publish");
        // Committed. A failure from here on is finished by `recover`.
        publish(store.as_ref(), &staged, &path, overwrite, &url).await?;
        Ok(Committed {
            outputs: vec![url],
            rows,
            bytes,
        })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.encoder.abort().await;
        for (staged, _, _) in self.split.iter().flat_map(|s| &s.done) {
            let _ = self.store.delete(staged).await;
        }
        Ok(())
    }
}

impl FileWriter {
    /// Commit a split write: finish the last file, write the one marker
    /// listing every file, then publish them all.
    async fn commit_split(self: Box<Self>, mut sp: Split, info: &str) -> Result<Committed> {
        let FileWriter {
            store,
            path,
            staged,
            url,
            marker,
            encoder,
            overwrite,
            rows,
            ..
        } = *self;
        encoder.finish(&url).await?;
        sp.done.push((staged, path, url));
        let mut bytes = 0;
        for (st, _, _) in &sp.done {
            bytes += store.head(st).await.map(|m| m.size).unwrap_or(0);
        }
        let committed =
            commit_files(store.as_ref(), &marker, &sp.done, info, rows, overwrite).await;
        let urls = match committed {
            Ok(urls) => urls,
            Err(e) => {
                if store.head(&marker).await.is_err() {
                    for (st, _, _) in &sp.done {
                        let _ = store.delete(st).await;
                    }
                }
                return Err(e);
            }
        };
        Ok(Committed {
            outputs: urls,
            rows,
            bytes,
        })
    }
}
