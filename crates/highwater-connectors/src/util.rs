//! Small helpers shared by the backends: identifier quoting and a bounded
//! channel that turns a producer (a blocking thread or a task) into a
//! [`BatchStream`].

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use highwater_core::{BatchStream, Result, StreamAdapter};
use tokio::sync::mpsc;

/// Quote an identifier with `q` (`"` for SQL standard, `` ` `` for MySQL),
/// doubling any `q` inside. Identifiers are never spliced unquoted.
pub fn quote_ident(name: &str, q: char) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push(q);
    for c in name.chars() {
        if c == q {
            s.push(q);
        }
        s.push(c);
    }
    s.push(q);
    s
}

/// A bounded channel of batches (two in flight: memory stays bounded).
pub fn batch_channel(schema: SchemaRef) -> (mpsc::Sender<Result<RecordBatch>>, BatchStream) {
    let (tx, rx) = mpsc::channel(2);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    (tx, StreamAdapter::new(schema, Box::pin(stream)).boxed())
}

/// A URL with its password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Send one batch built from `arrays`; `Ok(false)` when the reader went
/// away (the read was cancelled), so the producer can stop.
pub async fn emit(
    tx: &mpsc::Sender<Result<RecordBatch>>,
    schema: &SchemaRef,
    arrays: Vec<arrow_array::ArrayRef>,
    backend: &'static str,
) -> Result<bool> {
    let batch = RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| highwater_core::Error::source(backend, e))?;
    Ok(tx.send(Ok(batch)).await.is_ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(super::quote_ident("a\"b", '"'), "\"a\"\"b\"");
        assert_eq!(super::quote_ident("x`; drop", '`'), "`x``; drop`");
    }
}
