//! [`TimedState`]: every state-store call bounded by the idle timeout.
//!
//! A shared state database that accepts connections and then stops
//! answering (a stopped process, a network partition) must fail a run, not
//! hang it; no driver here bounds a read on a live connection. A call cut
//! short changes nothing it had not committed: the store's own
//! transactions either landed (then the next run sees the moved position)
//! or did not (then the attempt is still open and the next run settles it).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use highwater_core::{
    Attempt, Cause, Error, Position, Result, RunQuery, RunRecord, RunStatus, StateStore,
    StreamLock, StreamRun,
};

/// A state store whose every call gives up after `limit`.
pub struct TimedState {
    inner: Arc<dyn StateStore>,
    limit: Duration,
}

impl TimedState {
    pub fn new(inner: Arc<dyn StateStore>, limit: Duration) -> TimedState {
        TimedState { inner, limit }
    }

    async fn within<T>(&self, what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.limit, f).await {
            Ok(r) => r,
            Err(_) => Err(Error::state(format!(
                "{what}: no answer from the state store for {} s (HIGHWATER_IDLE_TIMEOUT)",
                self.limit.as_secs()
            ))
            .with_cause(Cause::Timeout)),
        }
    }
}

#[async_trait]
impl StateStore for TimedState {
    async fn lock_stream(&self, stream: &str) -> Result<Option<StreamLock>> {
        self.within("taking the stream lock", self.inner.lock_stream(stream))
            .await
    }

    async fn position(&self, stream: &str) -> Result<Option<Position>> {
        self.within("reading the position", self.inner.position(stream))
            .await
    }

    async fn positions(&self) -> Result<Vec<(String, Position, DateTime<Utc>, String)>> {
        self.within("reading positions", self.inner.positions())
            .await
    }

    async fn reset(&self, stream: &str) -> Result<bool> {
        self.within("resetting", self.inner.reset(stream)).await
    }

    async fn begin_attempt(&self, attempt: &Attempt) -> Result<()> {
        self.within("recording the attempt", self.inner.begin_attempt(attempt))
            .await
    }

    async fn open_attempts(&self, stream: &str) -> Result<Vec<Attempt>> {
        self.within("reading open attempts", self.inner.open_attempts(stream))
            .await
    }

    async fn commit_attempt(&self, attempt: &Attempt, to: &Position) -> Result<()> {
        self.within(
            "committing the position",
            self.inner.commit_attempt(attempt, to),
        )
        .await
    }

    async fn abandon_attempt(&self, attempt: &Attempt, why: &str) -> Result<()> {
        self.within(
            "abandoning the attempt",
            self.inner.abandon_attempt(attempt, why),
        )
        .await
    }

    async fn verify_lock(&self, stream: &str) -> Result<()> {
        self.within("checking the stream lock", self.inner.verify_lock(stream))
            .await
    }

    async fn begin_run(&self, run_id: &str, started_at: DateTime<Utc>) -> Result<()> {
        self.within(
            "recording the run",
            self.inner.begin_run(run_id, started_at),
        )
        .await
    }

    async fn record_stream_run(&self, run_id: &str, run: &StreamRun) -> Result<()> {
        self.within(
            "recording the stream's run",
            self.inner.record_stream_run(run_id, run),
        )
        .await
    }

    async fn set_run_info(&self, run_id: &str, info: &serde_json::Value) -> Result<()> {
        self.within(
            "recording the run's parameters",
            self.inner.set_run_info(run_id, info),
        )
        .await
    }

    async fn finish_run(&self, run_id: &str, status: RunStatus, at: DateTime<Utc>) -> Result<()> {
        self.within(
            "finishing the run record",
            self.inner.finish_run(run_id, status, at),
        )
        .await
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.within("reading runs", self.inner.runs(limit)).await
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.within("reading the run", self.inner.run(run_id)).await
    }

    async fn find_runs(&self, query: &RunQuery) -> Result<(Vec<RunRecord>, usize)> {
        self.within("reading runs", self.inner.find_runs(query))
            .await
    }
}
