//! [`FileSink`]: the `Sink` for `file://`, `az://` and `s3://` connections.

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

impl FileSink {
    /// Build the object store for a file, Azure or S3 connection.
    pub fn open(kind: &ConnKind) -> Result<FileSink> {
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
                if std::env::var("AZURE_STORAGE_USE_EMULATOR")
                    .is_ok_and(|v| v == "true" || v == "1")
                {
                    b = b.with_use_emulator(true);
                }
                let store = b
                    .build()
                    .map_err(|e| Error::sink(format!("az://{container}"), e))?;
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
                let store = b
                    .build()
                    .map_err(|e| Error::sink(format!("s3://{bucket}"), e))?;
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
    url: String,
    marker: Path,
    encoder: Encoder,
    rows: u64,
}

#[async_trait]
impl Sink for FileSink {
    async fn begin(&self, req: WriteRequest) -> Result<Box<dyn SinkWriter>> {
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
                Err(e) => return Err(Error::sink(&url, e)),
            }
        }
        let encoder = Encoder::new(
            &req.format,
            req.schema.clone(),
            self.store.clone(),
            path.clone(),
            &url,
        )?;
        Ok(Box::new(FileWriter {
            store: self.store.clone(),
            marker: FileSink::marker(&req.stream, &req.run_id),
            path,
            url,
            encoder,
            rows: 0,
        }))
    }

    async fn recover(
        &self,
        stream: &str,
        run_id: &str,
        target: &str,
        owned: bool,
    ) -> Result<Recovered> {
        let marker = FileSink::marker(stream, run_id);
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
                Ok(Recovered::Published { info })
            }
            Err(object_store::Error::NotFound { .. }) => {
                if !target.is_empty() {
                    let path = self.target_path(target)?;
                    self.clean_local_staging(&path);
                    if !owned {
                        return Ok(Recovered::NotPublished);
                    }
                    match self.store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            return Err(Error::sink(
                                self.url_of(&path),
                                format!("cannot remove unpublished output: {e}"),
                            ));
                        }
                    }
                }
                Ok(Recovered::NotPublished)
            }
            Err(e) => Err(Error::sink(self.url_of(&marker), e)),
        }
    }

    async fn check(&self) -> Result<String> {
        let probe = Path::from(format!("_highwater/check-{}", std::process::id()).as_str());
        self.store
            .put(&probe, PutPayload::from_static(b"ok"))
            .await
            .map_err(|e| Error::sink(&self.root, format!("not writable: {e}")))?;
        let _ = self.store.delete(&probe).await;
        Ok(format!("{} is writable", self.root))
    }
}

#[async_trait]
impl SinkWriter for FileWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.encoder.write(&batch, &self.url).await
    }

    async fn commit(self: Box<Self>, info: &str) -> Result<Committed> {
        let FileWriter {
            store,
            path,
            url,
            marker,
            encoder,
            rows,
        } = *self;
        encoder.finish(&url).await?;
        let bytes = store.head(&path).await.map(|m| m.size).unwrap_or(0);
        highwater_core::failpoint("files.after_data_before_marker");
        let body = serde_json::json!({ "info": info, "outputs": [url], "rows": rows }).to_string();
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match store
            .put_opts(&marker, PutPayload::from(body.into_bytes()), opts)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => {
                // Not committed: take the data file back so nothing half-published stays.
                let _ = store.delete(&path).await;
                return Err(Error::sink(
                    &url,
                    format!("cannot write commit marker: {e}"),
                ));
            }
        }
        Ok(Committed {
            outputs: vec![url],
            rows,
            bytes,
        })
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.encoder.abort().await;
        Ok(())
    }
}
