//! File and object-store targets: a local folder, Azure Blob Storage or S3,
//! all through `object_store`, in CSV, Parquet or JSON Lines.
//!
//! Publishing protocol for one attempt of `(stream, run_id)`:
//!
//! ```text
//! begin      the output name is fixed (it is recorded in the attempt already)
//! write      batches are encoded and streamed into a multipart upload
//!            (local: a staging file `name#N`); nothing is visible yet
//! commit     1. complete the upload: the file appears atomically
//!            2. put `_highwater/commits/<stream>/<run_id>.json` (create-if-absent):
//!               this marker, written last, is the commit
//! recover    marker present → Published { info }
//!            marker absent  → delete the file (if step 1 happened) and any
//!                             staging leftovers → NotPublished
//! ```
//!
//! So a crash at any instant leaves either a committed attempt or nothing
//! that a re-run would duplicate. Folders whose name starts with `_` are
//! ignored by Spark, Hive, DuckDB globbing conventions, so the markers do not
//! read as data.

mod csv;
mod format;
pub mod read;
mod sink;

pub use csv::CsvOptions;
pub use format::{Charset, compression_extension};
pub use sink::FileSink;
