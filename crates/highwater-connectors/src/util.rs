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

/// A batch ends at `batch_size` rows or once its values hold this many
/// bytes, whichever comes first: memory stays bounded however wide the rows
/// (16,384 rows of 1 MB values would be 16 GB).
pub(crate) const BATCH_BYTES: usize = 4 << 20;

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

/// A connection opened ahead of its first use: [`Early::start`] spawns the
/// connect on the runtime, [`Early::take`] awaits it (or says there is
/// none). A connection never taken is dropped with its owner; its error,
/// if any, is never reported (the caller connects again and reports its
/// own).
pub(crate) struct Early<C> {
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<C>>>>,
}

impl<C: Send + 'static> Early<C> {
    pub(crate) fn new() -> Self {
        Early {
            task: std::sync::Mutex::new(None),
        }
    }

    /// Start `connect` unless a connection is already coming (outside a
    /// runtime: nothing).
    pub(crate) fn start<F>(&self, connect: F)
    where
        F: std::future::Future<Output = Result<C>> + Send + 'static,
    {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if task.is_none() {
            *task = Some(rt.spawn(connect));
        }
    }

    /// The early connection, if one was started and succeeded.
    pub(crate) async fn take(&self) -> Option<C> {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()?;
        task.await.ok()?.ok()
    }
}

impl<C> Drop for Early<C> {
    fn drop(&mut self) {
        if let Some(t) = self
            .task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }
}

/// Connections started before anything asks for them ([`crate::prewarm`]):
/// a run knows its databases as soon as its config is read, and a login
/// (a PostgreSQL server process's start, MariaDB's handshake and settings)
/// is a few milliseconds that can overlap opening the state store and
/// settling earlier attempts. The first `connect` of a URL takes one; the
/// rest of the process connects as before. A connection that failed
/// failed the way `connect` would have (same code, same retries and
/// timeouts): its error is the caller's, so an unreachable server costs
/// one timeout, not two. One never taken goes with the process.
pub(crate) struct Warm<C> {
    waiting: std::sync::Mutex<std::collections::HashMap<String, Vec<JoinHandle<Result<C>>>>>,
}

type JoinHandle<T> = tokio::task::JoinHandle<T>;

impl<C: Send + 'static> Warm<C> {
    pub(crate) fn new() -> Self {
        Warm {
            waiting: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Start `connect` for `url` (outside a runtime: nothing).
    pub(crate) fn start<F>(&self, url: &str, connect: F)
    where
        F: std::future::Future<Output = Result<C>> + Send + 'static,
    {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(url.to_string())
            .or_default()
            .push(rt.spawn(connect));
    }

    /// How a connection started for `url` ended, if one was started.
    pub(crate) async fn take(&self, url: &str) -> Option<Result<C>> {
        let task = {
            let mut waiting = self
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let list = waiting.get_mut(url)?;
            let task = list.pop()?;
            if list.is_empty() {
                waiting.remove(url);
            }
            task
        };
        task.await.ok()
    }
}

/// The error of a source that cannot read a part of a shared full load.
pub(crate) fn no_shared_parts(stream: &str) -> highwater_core::Error {
    highwater_core::Error::config(
        format!("stream {stream}"),
        "share_partitions: needs a PostgreSQL source (only it can hand one snapshot to other processes)",
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(super::quote_ident("a\"b", '"'), "\"a\"\"b\"");
        assert_eq!(super::quote_ident("x`; drop", '`'), "`x``; drop`");
    }
}
