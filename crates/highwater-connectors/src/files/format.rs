//! Encoders: Arrow batches → bytes of CSV, JSON Lines or Parquet, pushed into
//! an `AsyncWrite` as they are produced (bounded memory).

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use highwater_core::{Error, Result};
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncWriteExt;

/// A `Write` whose bytes are taken out after each batch.
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
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Timestamps in ISO 8601; fractions only where present.
const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.f";
const TSTZ_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.f%:z";

pub enum Encoder {
    Csv {
        w: arrow_csv::Writer<SharedBuf>,
        buf: SharedBuf,
        out: BufWriter,
    },
    Jsonl {
        w: arrow_json::LineDelimitedWriter<SharedBuf>,
        buf: SharedBuf,
        out: BufWriter,
    },
    Parquet {
        w: AsyncArrowWriter<BufWriter>,
    },
}

fn enc_err(target: &str, e: impl std::fmt::Display) -> Error {
    Error::sink(target, e)
}

impl Encoder {
    pub fn new(format: &str, schema: SchemaRef, out: BufWriter, target: &str) -> Result<Encoder> {
        match format {
            "csv" => {
                let buf = SharedBuf::default();
                let w = arrow_csv::WriterBuilder::new()
                    .with_header(true)
                    .with_timestamp_format(TS_FORMAT.into())
                    .with_datetime_format(TS_FORMAT.into())
                    .with_timestamp_tz_format(TSTZ_FORMAT.into())
                    .with_date_format("%Y-%m-%d".into())
                    .build(buf.clone());
                Ok(Encoder::Csv { w, buf, out })
            }
            "jsonl" => {
                let buf = SharedBuf::default();
                let w = arrow_json::LineDelimitedWriter::new(buf.clone());
                Ok(Encoder::Jsonl { w, buf, out })
            }
            "parquet" => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(128 * 1024))
                    .set_max_row_group_bytes(Some(32 * 1024 * 1024))
                    .build();
                let w = AsyncArrowWriter::try_new(out, schema, Some(props))
                    .map_err(|e| enc_err(target, e))?;
                Ok(Encoder::Parquet { w })
            }
            other => Err(Error::config(target, format!("unknown format {other}"))),
        }
    }

    pub async fn write(&mut self, batch: &RecordBatch, target: &str) -> Result<()> {
        match self {
            Encoder::Csv { w, buf, out } => {
                w.write(batch).map_err(|e| enc_err(target, e))?;
                out.write_all(&buf.take())
                    .await
                    .map_err(|e| enc_err(target, e))
            }
            Encoder::Jsonl { w, buf, out } => {
                w.write(batch).map_err(|e| enc_err(target, e))?;
                out.write_all(&buf.take())
                    .await
                    .map_err(|e| enc_err(target, e))
            }
            Encoder::Parquet { w } => w.write(batch).await.map_err(|e| enc_err(target, e)),
        }
    }

    /// Flush and complete the upload: the object becomes visible atomically.
    pub async fn finish(self, target: &str) -> Result<()> {
        match self {
            Encoder::Csv { w, buf, mut out } => {
                drop(w);
                out.write_all(&buf.take())
                    .await
                    .map_err(|e| enc_err(target, e))?;
                out.shutdown().await.map_err(|e| enc_err(target, e))
            }
            Encoder::Jsonl {
                mut w,
                buf,
                mut out,
            } => {
                w.finish().map_err(|e| enc_err(target, e))?;
                drop(w);
                out.write_all(&buf.take())
                    .await
                    .map_err(|e| enc_err(target, e))?;
                out.shutdown().await.map_err(|e| enc_err(target, e))
            }
            Encoder::Parquet { w } => w.close().await.map(|_| ()).map_err(|e| enc_err(target, e)),
        }
    }

    /// Abandon the upload; nothing becomes visible.
    pub async fn abort(self) {
        match self {
            Encoder::Csv { mut out, .. } | Encoder::Jsonl { mut out, .. } => {
                let _ = out.abort().await;
            }
            Encoder::Parquet { w } => {
                let mut out = w.into_inner();
                let _ = out.abort().await;
            }
        }
    }
}
