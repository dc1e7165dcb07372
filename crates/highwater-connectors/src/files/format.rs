//! Encoders: Arrow batches → bytes of CSV, JSON Lines or Parquet, streamed
//! into an object-store upload as they are produced (bounded memory).
//!
//! CSV and JSON Lines are encoded into a buffer that becomes one upload part
//! when it reaches [`PART_SIZE`] (the part is handed over, not copied), with
//! one part in flight while the next is encoded. A file that fits in one
//! buffer is written with a single atomic `put`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use highwater_core::{Error, Result};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::task::JoinHandle;

use super::csv::CsvEncoder;

/// Bytes per upload part (S3 needs at least 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// A `Write` whose bytes are taken out after each batch (for arrow_json).
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn drain_into(&self, out: &mut Vec<u8>) {
        if let Ok(mut v) = self.0.lock() {
            out.append(&mut v);
        }
    }
}

fn enc_err(target: &str, e: impl std::fmt::Display) -> Error {
    Error::sink(target, e)
}

/// A buffered upload: parts of [`PART_SIZE`], one in flight.
pub struct Output {
    store: Arc<dyn ObjectStore>,
    path: Path,
    buf: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: Option<JoinHandle<object_store::Result<()>>>,
}

impl Output {
    pub fn new(store: Arc<dyn ObjectStore>, path: Path) -> Output {
        Output {
            store,
            path,
            buf: Vec::with_capacity(PART_SIZE + 1024 * 1024),
            upload: None,
            in_flight: None,
        }
    }

    async fn wait_in_flight(&mut self, target: &str) -> Result<()> {
        if let Some(h) = self.in_flight.take() {
            h.await
                .map_err(|e| enc_err(target, e))?
                .map_err(|e| enc_err(target, e))?;
        }
        Ok(())
    }

    /// Send a part when the buffer is full.
    pub async fn maybe_flush(&mut self, target: &str) -> Result<()> {
        if self.buf.len() < PART_SIZE {
            return Ok(());
        }
        if self.upload.is_none() {
            let up = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(|e| enc_err(target, e))?;
            self.upload = Some(up);
        }
        self.wait_in_flight(target).await?;
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE + 1024 * 1024));
        if let Some(up) = self.upload.as_mut() {
            self.in_flight = Some(tokio::spawn(up.put_part(PutPayload::from(part))));
        }
        Ok(())
    }

    /// Publish atomically.
    pub async fn finish(mut self, target: &str) -> Result<()> {
        self.wait_in_flight(target).await?;
        let rest = std::mem::take(&mut self.buf);
        match self.upload.take() {
            None => {
                self.store
                    .put(&self.path, PutPayload::from(rest))
                    .await
                    .map_err(|e| enc_err(target, e))?;
            }
            Some(mut up) => {
                if !rest.is_empty() {
                    up.put_part(PutPayload::from(rest))
                        .await
                        .map_err(|e| enc_err(target, e))?;
                }
                up.complete().await.map_err(|e| enc_err(target, e))?;
            }
        }
        Ok(())
    }

    pub async fn abort(mut self) {
        if let Some(h) = self.in_flight.take() {
            let _ = h.await;
        }
        if let Some(mut up) = self.upload.take() {
            let _ = up.abort().await;
        }
    }
}

pub enum Encoder {
    Csv {
        enc: CsvEncoder,
        out: Output,
    },
    Jsonl {
        w: arrow_json::LineDelimitedWriter<SharedBuf>,
        buf: SharedBuf,
        out: Output,
    },
    Parquet {
        w: Box<AsyncArrowWriter<BufWriter>>,
    },
}

impl Encoder {
    pub fn new(
        format: &str,
        schema: SchemaRef,
        store: Arc<dyn ObjectStore>,
        path: Path,
        target: &str,
    ) -> Result<Encoder> {
        match format {
            "csv" => Ok(Encoder::Csv {
                enc: CsvEncoder::default(),
                out: Output::new(store, path),
            }),
            "jsonl" => {
                let buf = SharedBuf::default();
                // Every line carries every column; NULL is `null`, not a missing key.
                let w = arrow_json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow_json::writer::LineDelimited>(buf.clone());
                Ok(Encoder::Jsonl {
                    w,
                    buf,
                    out: Output::new(store, path),
                })
            }
            "parquet" => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(64 * 1024))
                    .set_max_row_group_bytes(Some(16 * 1024 * 1024))
                    .build();
                let out = BufWriter::with_capacity(store, path, PART_SIZE);
                let w = AsyncArrowWriter::try_new(out, schema, Some(props))
                    .map_err(|e| enc_err(target, e))?;
                Ok(Encoder::Parquet { w: Box::new(w) })
            }
            other => Err(Error::config(target, format!("unknown format {other}"))),
        }
    }

    pub async fn write(&mut self, batch: &RecordBatch, target: &str) -> Result<()> {
        match self {
            Encoder::Csv { enc, out } => {
                enc.encode(batch, &mut out.buf)?;
                out.maybe_flush(target).await
            }
            Encoder::Jsonl { w, buf, out } => {
                w.write(batch).map_err(|e| enc_err(target, e))?;
                buf.drain_into(&mut out.buf);
                out.maybe_flush(target).await
            }
            Encoder::Parquet { w } => w.write(batch).await.map_err(|e| enc_err(target, e)),
        }
    }

    /// Flush and complete the upload: the object becomes visible atomically.
    pub async fn finish(self, target: &str) -> Result<()> {
        match self {
            Encoder::Csv { out, .. } => out.finish(target).await,
            Encoder::Jsonl {
                mut w,
                buf,
                mut out,
            } => {
                w.finish().map_err(|e| enc_err(target, e))?;
                buf.drain_into(&mut out.buf);
                out.finish(target).await
            }
            Encoder::Parquet { w } => w.close().await.map(|_| ()).map_err(|e| enc_err(target, e)),
        }
    }

    /// Abandon the upload; nothing becomes visible.
    pub async fn abort(self) {
        match self {
            Encoder::Csv { out, .. } | Encoder::Jsonl { out, .. } => out.abort().await,
            Encoder::Parquet { w } => {
                let mut out = (*w).into_inner();
                let _ = out.abort().await;
            }
        }
    }
}
