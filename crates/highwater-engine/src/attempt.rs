//! The one attempt executor: every copy into a target goes through here.
//!
//! Declarative streams ([`crate::runner`]) and the pipeline Copy activity
//! ([`crate::pipeline`]) both call it; nothing else writes to a target. The
//! protocol, in order:
//!
//! ```text
//! settle(key)        for each open attempt of key (left by a crash):
//!                      sink.recover → Published { info } → commit_attempt(info)
//!                                   → NotPublished       → abandon_attempt
//! execute(copy)      begin_attempt(from, target)        write-ahead, before any row
//!                                                       (private staging: alongside the
//!                                                       writes, always before the commit)
//!                    sink.begin → write(batch)*         bounded memory
//!                    writer.commit(position)            data + commit marker / _highwater_commits row
//!                      error → ask the target (recover): the answer may be lost
//!                              while the commit happened (issue 7.4)
//!                    commit_attempt(from → to)          only now does the position move
//! ```
//!
//! Errors before the sink commit abort the writer and abandon the attempt:
//! nothing was published. After the commit was sent, the attempt is only
//! abandoned when the target says it did not publish; when the target cannot
//! be asked, the attempt stays open and the next run settles it. The
//! position never moves without the target's commit, and never twice.

use std::future::Future;
use std::time::Duration;

use arrow_array::RecordBatch;
use async_trait::async_trait;
use chrono::Utc;
use highwater_config::Secrets;
use highwater_core::{
    Attempt, Cause, Committed, Error, Position, Recovered, Result, Sink, SinkWriter, StateStore,
    WriteRequest, failpoint,
};

/// How long a read may deliver nothing, or a write or a recovery question
/// may go unanswered, before the attempt fails: a server that accepts the
/// connection and then stops answering must not hang a run. Default 600 s;
/// `HIGHWATER_IDLE_TIMEOUT` (seconds) overrides it.
pub fn idle_timeout() -> Duration {
    env_secs("HIGHWATER_IDLE_TIMEOUT", 600)
}

/// How long the target's commit (the merge of a large staging table) may
/// take. Default 3600 s; `HIGHWATER_COMMIT_TIMEOUT` (seconds) overrides it.
pub fn commit_timeout() -> Duration {
    env_secs("HIGHWATER_COMMIT_TIMEOUT", 3600)
}

fn env_secs(var: &str, default: u64) -> Duration {
    let secs = std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(default);
    Duration::from_secs(secs)
}

/// `f`, or a timeout error naming `what` after `limit`.
pub async fn bounded<T>(
    what: &str,
    limit: Duration,
    f: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(Error::data(format!(
            "{what}: no answer for {} s (HIGHWATER_IDLE_TIMEOUT / HIGHWATER_COMMIT_TIMEOUT)",
            limit.as_secs()
        ))
        .with_cause(Cause::Timeout)),
    }
}

/// Where an attempt runs: the state store (whose lock on the key the
/// caller holds), the target, and the secrets no stored reason may show.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub state: &'a dyn StateStore,
    pub sink: &'a dyn Sink,
    pub secrets: &'a Secrets,
}

impl Env<'_> {
    async fn abandon(&self, a: &Attempt, why: &str) -> Result<()> {
        self.state
            .abandon_attempt(a, &self.secrets.redact(why))
            .await
    }
}

/// The rows of one attempt, pulled batch by batch.
#[async_trait]
pub trait Rows: Send {
    /// The next non-empty batch; `None` once the read has ended (an ended
    /// read is not polled again).
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>>;

    /// The position the attempt moves to; called once, after the last batch.
    fn position(&mut self) -> Position;

    /// Called after each written batch with the rows written so far.
    fn progress(&mut self, _rows_written: u64) {}
}

/// One attempt to copy rows into a target.
pub struct Copy {
    /// The state key: a stream name, or `pipeline/<pipeline>/<activity>`.
    pub key: String,
    /// Unique per attempt of this key (a run id, `-retryN` for retries).
    pub attempt_id: String,
    /// The committed position the attempt starts from.
    pub from: Option<Position>,
    /// What to write; `stream`/`run_id` are set from `key`/`attempt_id`.
    pub request: WriteRequest,
    /// The output name belongs to this attempt alone (recovery may remove
    /// unpublished leftovers under it).
    pub owned: bool,
}

/// What a committed attempt produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub committed: Committed,
    pub position: Option<Position>,
    /// Things the user should know (e.g. a lost commit answer settled).
    pub notes: Vec<String>,
}

/// Settle the open attempts of `key` that a crash (or a lost answer) left:
/// ask the sink whether each published. Call while holding the key's lock.
/// Returns notes for the run record.
pub async fn settle(env: Env<'_>, key: &str, owned: bool) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for a in env.state.open_attempts(key).await? {
        if a.target.is_empty() {
            // A position-only move (no rows, no output): nothing was published.
            env.abandon(&a, "stopped before its position moved").await?;
            continue;
        }
        let asked = env.sink.recover(key, &a.run_id, &a.target, owned);
        match bounded(
            "asking the target about an earlier attempt",
            idle_timeout(),
            asked,
        )
        .await?
        {
            Recovered::Published { info } => match commit_published(env.state, &a, &info).await {
                Ok(()) => notes.push(format!(
                    "settled run {}: its output was published; position committed",
                    a.run_id
                )),
                // The position moved since (`state reset`): the output stays
                // published and the reset's range is read again, as asked.
                Err(e) => {
                    env.abandon(&a, &e.to_string()).await?;
                    notes.push(format!("settled run {}: {e}", a.run_id));
                }
            },
            Recovered::NotPublished => {
                env.abandon(&a, "not published before the process stopped")
                    .await?;
                notes.push(format!(
                    "settled run {}: it had not published; its range is read again",
                    a.run_id
                ));
            }
        }
    }
    Ok(notes)
}

/// Commit the position a published attempt carried in its marker.
async fn commit_published(state: &dyn StateStore, a: &Attempt, info: &str) -> Result<()> {
    let to = position_of(info, &a.run_id)?;
    state.commit_attempt(a, &to).await
}

fn position_of(info: &str, run_id: &str) -> Result<Position> {
    Position::from_json(info).map_err(|e| {
        Error::state(format!(
            "unreadable position in the commit record of run {run_id}: {e}"
        ))
    })
}

/// Move a position without writing anything (no rows, but the position
/// moved: a change-tracking version, a first run over an empty table).
pub async fn move_position(
    env: Env<'_>,
    key: &str,
    attempt_id: &str,
    from: &Option<Position>,
    to: &Position,
) -> Result<()> {
    if from.as_ref() == Some(to) {
        return Ok(());
    }
    let attempt = attempt(key, attempt_id, from, "");
    env.state.begin_attempt(&attempt).await?;
    if let Err(e) = env.state.commit_attempt(&attempt, to).await {
        env.abandon(&attempt, &e.to_string()).await?;
        return Err(e);
    }
    Ok(())
}

fn attempt(key: &str, attempt_id: &str, from: &Option<Position>, target: &str) -> Attempt {
    Attempt {
        stream: key.to_string(),
        run_id: attempt_id.to_string(),
        from: from.clone(),
        target: target.to_string(),
        started_at: Utc::now(),
    }
}

/// Run one attempt: write-ahead, stream `rows` into the sink, commit the
/// sink, then the position. See the module doc for what each error means.
///
/// A target whose staging outlives no process ([`Sink::stages_privately`]:
/// a temporary table, an open transaction) starts taking rows while the
/// write-ahead record is written: a crash before that record is durable
/// leaves nothing behind, and the commit still waits for it. That hides
/// the state store's sync behind the target's login and load.
pub async fn execute(env: Env<'_>, mut copy: Copy, rows: &mut dyn Rows) -> Result<Outcome> {
    let (a, wrote) = if env.sink.stages_privately() {
        let a = name(&mut copy);
        let (began, wrote) = tokio::join!(
            begin_attempt(env, &a),
            write_all(env.sink, copy.request.clone(), rows)
        );
        if let Err(e) = began {
            if let Ok((w, _)) = wrote {
                let _ = w.abort().await;
            }
            return Err(e);
        }
        (a, wrote)
    } else {
        let a = begin(env, &mut copy).await?;
        let wrote = write_all(env.sink, copy.request.clone(), rows).await;
        (a, wrote)
    };
    let (writer, written) = match wrote {
        Ok(w) => w,
        Err(e) => {
            let _ = env.abandon(&a, &e.to_string()).await;
            return Err(e);
        }
    };
    let to = rows.position();
    publish(env, &copy, &a, Staged::Writer(writer), written, to).await
}

/// Run one attempt whose rows several processes stage as parts
/// (`share_partitions:`): write-ahead, then `stage` (which returns once
/// every one of `parts` parts is staged, with the rows they hold), then
/// one commit publishes them all and the position moves to `to`.
pub async fn execute_parts(
    env: Env<'_>,
    mut copy: Copy,
    stage: impl Future<Output = Result<(usize, u64)>>,
    to: Position,
) -> Result<Outcome> {
    let a = begin(env, &mut copy).await?;
    let (parts, written) = match stage.await {
        Ok(p) => p,
        Err(e) => {
            // Nothing was committed: the staged parts go with the attempt.
            let _ = env
                .sink
                .recover(&copy.key, &copy.attempt_id, &a.target, copy.owned)
                .await;
            let _ = env.abandon(&a, &e.to_string()).await;
            return Err(e);
        }
    };
    publish(env, &copy, &a, Staged::Parts(parts), written, to).await
}

/// Write the attempt ahead, before any row: `copy`'s request is named
/// after its key and attempt id.
async fn begin(env: Env<'_>, copy: &mut Copy) -> Result<Attempt> {
    let a = name(copy);
    begin_attempt(env, &a).await?;
    Ok(a)
}

/// Name `copy`'s request after its key and attempt id; its attempt record.
fn name(copy: &mut Copy) -> Attempt {
    copy.request.stream = copy.key.clone();
    copy.request.run_id = copy.attempt_id.clone();
    attempt(
        &copy.key,
        &copy.attempt_id,
        &copy.from,
        &copy.request.target,
    )
}

/// The write-ahead record, durable when this returns.
async fn begin_attempt(env: Env<'_>, a: &Attempt) -> Result<()> {
    failpoint("engine.before_attempt");
    env.state.begin_attempt(a).await?;
    failpoint("engine.after_begin_attempt");
    Ok(())
}

/// What an attempt staged, ready for the one commit.
enum Staged {
    Writer(Box<dyn SinkWriter>),
    /// Parts `0..n`, staged by [`Sink::begin_part`].
    Parts(usize),
}

/// Commit what `a` staged, then the position (see the module doc).
async fn publish(
    env: Env<'_>,
    copy: &Copy,
    a: &Attempt,
    staged: Staged,
    written: u64,
    to: Position,
) -> Result<Outcome> {
    let (state, sink) = (env.state, env.sink);
    let target = &copy.request.target;
    failpoint("engine.before_sink_commit");
    // A lost lock means another process may be running this key: do not
    // publish (the attempt stays open for the lock's holder to settle).
    if let Err(e) = state.verify_lock(&copy.key).await {
        if let Staged::Writer(w) = staged {
            let _ = w.abort().await;
        }
        return Err(e);
    }
    let info = to.to_json();
    let mut notes = Vec::new();
    let commit = match staged {
        Staged::Writer(w) => w.commit(&info).await,
        Staged::Parts(n) => sink.commit_parts(&copy.request, n, &info).await,
    };
    let committed = match commit {
        Ok(c) => c,
        Err(e) => {
            // The commit may have happened with its answer lost: ask.
            match sink
                .recover(&copy.key, &copy.attempt_id, target, copy.owned)
                .await
            {
                Ok(Recovered::Published { info: stored }) => {
                    notes.push(format!(
                        "the target's answer to the commit was lost ({e}); the target says it \
                         committed, so the position moves"
                    ));
                    let to = position_of(&stored, &copy.attempt_id)?;
                    state.commit_attempt(a, &to).await?;
                    failpoint("engine.after_state_commit");
                    return Ok(Outcome {
                        committed: Committed {
                            outputs: vec![target.clone()],
                            rows: written,
                            bytes: 0,
                        },
                        position: Some(to),
                        notes,
                    });
                }
                Ok(Recovered::NotPublished) => {
                    let _ = env.abandon(a, &e.to_string()).await;
                    return Err(e);
                }
                Err(asked) => {
                    // Leave the attempt open: the next run asks again.
                    return Err(e.context(format!(
                        "the commit's outcome is unknown (the target could not be asked: {asked}); \
                         the next run settles it"
                    )));
                }
            }
        }
    };
    failpoint("engine.after_publish");
    // If this fails the attempt stays open: the next run settles it from
    // the commit marker, so the position is neither lost nor moved twice.
    state.commit_attempt(a, &to).await?;
    failpoint("engine.after_state_commit");
    Ok(Outcome {
        committed,
        position: Some(to),
        notes,
    })
}

async fn write_all(
    sink: &dyn Sink,
    request: WriteRequest,
    rows: &mut dyn Rows,
) -> Result<(Box<dyn SinkWriter>, u64)> {
    let idle = idle_timeout();
    let mut writer = bounded("opening the target", idle, sink.begin(request)).await?;
    let mut written = 0u64;
    let res: Result<()> = async {
        let mut batches = 0u32;
        while let Some(b) = bounded("reading the source", idle, rows.next_batch()).await? {
            written += b.num_rows() as u64;
            bounded("writing to the target", idle, writer.write(b)).await?;
            rows.progress(written);
            batches += 1;
            if batches == 2 {
                failpoint("engine.mid_write");
            }
        }
        Ok(())
    }
    .await;
    match res {
        Ok(()) => Ok((writer, written)),
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    }
}
