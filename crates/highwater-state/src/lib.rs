//! State stores: where positions, write-ahead attempts and the run history
//! live.
//!
//! [`SqliteState`] is the default (`.highwater/state.db` beside the config);
//! [`PgState`] keeps state in a PostgreSQL database (`state: postgres://…`)
//! so several machines can share it.
//! Stream locks are OS file locks on `<state dir>/locks/<stream>.lock`, so a
//! process killed with `kill -9` releases them, and a second process never
//! settles an attempt that a live process is still working on.
//!
//! Every change of state is one SQLite transaction; `commit_attempt` is a
//! compare-and-swap on the position the attempt started from.
//!
//! A store remembers the stream locks it handed out: `commit_attempt`,
//! `abandon_attempt` and `reset` refuse, changing nothing, unless this store
//! still holds the stream's lock (checked inside their transaction), so a
//! process that lost a stream to another never moves its position.

mod postgres;
mod sqlite;

pub use postgres::{PgConnect, PgState};
pub use sqlite::SqliteState;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use highwater_core::{Error, StreamLock};

/// The stream locks a store handed out and that are still held; each
/// entry keeps what proves the lock (an open lock file, a session).
pub(crate) struct Locks<T>(Arc<Mutex<Registry<T>>>);

pub(crate) struct Registry<T> {
    next: u64,
    held: HashMap<String, (u64, T)>,
}

impl<T> Clone for Locks<T> {
    fn clone(&self) -> Self {
        Locks(self.0.clone())
    }
}

/// What a [`StreamLock`] holds: dropping it forgets the entry, and with
/// it the file or session that holds the lock.
struct Held<T: Send + 'static> {
    stream: String,
    id: u64,
    locks: Locks<T>,
}

impl<T: Send + 'static> Drop for Held<T> {
    fn drop(&mut self) {
        let released = {
            let mut reg = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
            match reg.held.get(&self.stream) {
                Some((id, _)) if *id == self.id => reg.held.remove(&self.stream),
                _ => None,
            }
        };
        drop(released);
    }
}

impl<T: Send + 'static> Locks<T> {
    pub(crate) fn new() -> Locks<T> {
        Locks(Arc::new(Mutex::new(Registry {
            next: 0,
            held: HashMap::new(),
        })))
    }

    /// Remember `proof` as this store's lock of `stream`.
    pub(crate) fn hold(&self, stream: &str, proof: T) -> StreamLock {
        let mut reg = self.0.lock().unwrap_or_else(|p| p.into_inner());
        reg.next += 1;
        let id = reg.next;
        reg.held.insert(stream.to_string(), (id, proof));
        StreamLock(Box::new(Held {
            stream: stream.to_string(),
            id,
            locks: self.clone(),
        }))
    }

    /// Look at this store's lock of `stream`, if it holds one.
    pub(crate) fn with<R>(&self, stream: &str, f: impl FnOnce(Option<&T>) -> R) -> R {
        let reg = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(reg.held.get(stream).map(|(_, t)| t))
    }
}

/// The error for a change attempted without the stream's lock.
pub(crate) fn not_locked(stream: &str, doing: &str) -> Error {
    Error::state(format!(
        "stream {stream} is not locked by this process; not {doing}"
    ))
}

/// The error for a change attempted after the stream's lock was lost.
pub(crate) fn lock_lost(stream: &str, why: &str, doing: &str) -> Error {
    Error::state(format!(
        "lost the lock of stream {stream} ({why}); another process may be running it now; not {doing}"
    ))
}

/// Whether a process with this id runs on this machine (Linux: /proc).
pub(crate) fn process_alive(pid: i64) -> bool {
    if pid == std::process::id() as i64 {
        return true;
    }
    let proc = std::path::Path::new("/proc");
    if !proc.exists() {
        return true; // Cannot tell: never declare a live run dead.
    }
    proc.join(pid.to_string()).exists()
}

/// The error of a stream or activity whose process stopped before it
/// finished: not a failure of its own (a window whose run died is run
/// again without using up a retry).
pub const DEAD_RUN: &str =
    "the process stopped before this stream finished (killed?); the next run settles it";

/// A run's process died (killed?) while it was `InProgress`: mark its
/// unfinished streams and the run itself Failed, so the history says so.
pub async fn record_dead_run(
    store: &dyn highwater_core::StateStore,
    run_id: &str,
    streams: &mut [highwater_core::StreamRun],
) -> highwater_core::Result<()> {
    use highwater_core::RunStatus;
    for s in streams
        .iter_mut()
        .filter(|s| s.status == RunStatus::InProgress)
    {
        s.status = RunStatus::Failed;
        s.error = Some(DEAD_RUN.into());
        store.record_stream_run(run_id, s).await?;
    }
    store
        .finish_run(run_id, RunStatus::Failed, chrono::Utc::now())
        .await
}
