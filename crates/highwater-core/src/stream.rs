//! A stream of Arrow record batches that knows its schema even when it
//! yields none, so a sink can write a header for an empty result.

use std::pin::Pin;
use std::task::{Context, Poll};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::Stream;

use crate::Result;

/// A `Stream` of batches plus its schema.
pub trait RecordBatchStream: Stream<Item = Result<RecordBatch>> {
    fn schema(&self) -> SchemaRef;
}

/// The boxed form every source returns.
pub type BatchStream = Pin<Box<dyn RecordBatchStream + Send>>;

/// Wraps any batch `Stream` with a schema.
pub struct StreamAdapter<S> {
    schema: SchemaRef,
    inner: S,
}

impl<S> StreamAdapter<S>
where
    S: Stream<Item = Result<RecordBatch>> + Send + Unpin + 'static,
{
    pub fn new(schema: SchemaRef, inner: S) -> Self {
        StreamAdapter { schema, inner }
    }

    pub fn boxed(self) -> BatchStream {
        Box::pin(self)
    }
}

impl<S> Stream for StreamAdapter<S>
where
    S: Stream<Item = Result<RecordBatch>> + Unpin,
{
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<S> RecordBatchStream for StreamAdapter<S>
where
    S: Stream<Item = Result<RecordBatch>> + Unpin,
{
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
