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

mod postgres;
mod sqlite;

pub use postgres::{PgConnect, PgState};
pub use sqlite::SqliteState;

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

/// A run's process died (killed?) while it was `InProgress`: mark its
/// unfinished streams and the run itself Failed, so the history says so.
pub(crate) async fn record_dead_run(
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
        s.error = Some(
            "the process stopped before this stream finished (killed?); the next run settles it"
                .into(),
        );
        store.record_stream_run(run_id, s).await?;
    }
    store
        .finish_run(run_id, RunStatus::Failed, chrono::Utc::now())
        .await
}
