//! Running streams: concurrency, the commit protocol, run records.

use std::sync::Arc;

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use highwater_config::{Mode, Plan, StateLocation, StreamPlan, Target, WriteMode};
use highwater_core::{
    BatchStream, ChangeVersion, Delta, Error, ErrorKind, NullCursorPolicy, Position, ReadRequest,
    Result, RunStatus, StateStore, StreamRun, TableWrite, TableWriteMode, WatermarkPosition,
    WriteRequest,
};

use crate::attempt::{self, Rows};
use crate::boundary::BoundaryFilter;
use crate::events::{Event, Observer};
use crate::template;

/// What `run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Streams to run (empty: all).
    pub streams: Vec<String>,
    /// Ignore positions: read everything (positions still move on success).
    pub full_refresh: bool,
    /// Use this run id instead of a new one (tests, pipelines).
    pub run_id: Option<String>,
    /// Recorded as the run's `RunRecord::info` (`serve` records what
    /// triggered the run: `{"trigger": "Schedule"}`).
    pub info: Option<serde_json::Value>,
    /// Copy this window `[start, end)` of the (one, windowed) stream
    /// selected, under the window's own state key.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// With `window`: copy it again although it was copied before.
    pub rerun_window: bool,
}

/// The result of a run.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: String,
    pub status: RunStatus,
    pub streams: Vec<StreamRun>,
    /// The exit code PRODUCT.md asks for: 0, 1 (a stream failed), 2 (a
    /// stream failed for a configuration reason, e.g. a missing column).
    pub exit_code: i32,
}

/// Open the state store the plan names.
pub async fn open_state(plan: &Plan) -> Result<Arc<dyn StateStore>> {
    match &plan.state {
        StateLocation::Sqlite(path) => Ok(Arc::new(highwater_state::SqliteState::open(path)?)),
        StateLocation::Postgres(url) => {
            // The connectors' connect: TLS per the URL's sslmode.
            let connect: highwater_state::PgConnect = Arc::new(|url: String| {
                Box::pin(async move { highwater_connectors::postgres::connect(&url).await })
            });
            let limit = crate::attempt::idle_timeout();
            let redacted = url.redacted();
            let open = highwater_state::PgState::open(url.expose(), &redacted, connect);
            let store = crate::attempt::bounded("opening the state store", limit, open).await?;
            Ok(Arc::new(crate::timed_state::TimedState::new(
                Arc::new(store),
                limit,
            )))
        }
    }
}

/// Run the selected streams of `plan`, at most `plan.concurrency` at once.
/// One stream's failure does not stop the others.
pub async fn run_streams(
    plan: &Plan,
    state: Arc<dyn StateStore>,
    opts: &RunOptions,
    observer: Arc<dyn Observer>,
) -> Result<RunOutcome> {
    let selected = select(plan, opts)?;
    let run_id = opts
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let started = Utc::now();
    state.begin_run(&run_id, started).await?;
    if let Some(info) = &opts.info {
        state.set_run_info(&run_id, info).await?;
    }

    let ctx = Ctx {
        plan,
        state: state.clone(),
        run_id: run_id.clone(),
        started,
        full_refresh: opts.full_refresh,
        observer,
        window: opts.window,
        rerun_window: opts.rerun_window,
    };
    // Built first, then driven: keeps the future `Send` for callers that spawn it.
    let runs: Vec<_> = selected.into_iter().map(|s| ctx.run_one(s)).collect();
    let mut results: Vec<(StreamRun, Option<ErrorKind>)> = futures::stream::iter(runs)
        .buffer_unordered(plan.concurrency)
        .collect()
        .await;
    results.sort_by(|a, b| a.0.stream.cmp(&b.0.stream));

    let failed: Vec<ErrorKind> = results.iter().filter_map(|r| r.1).collect();
    let status = if failed.is_empty() {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    state.finish_run(&run_id, status, Utc::now()).await?;
    let exit_code = if failed.is_empty() {
        0
    } else if failed.iter().all(|k| *k == ErrorKind::Config) {
        2
    } else {
        1
    };
    Ok(RunOutcome {
        run_id,
        status,
        streams: results.into_iter().map(|r| r.0).collect(),
        exit_code,
    })
}

/// Start the database logins of the streams a run starts with (the first
/// `plan.concurrency` of those `opts` selects: their sources and targets)
/// while the caller opens the state store; each stream's first connection
/// to that database takes one (see `highwater_connectors::prewarm`).
/// Nothing for an unknown stream: the run reports it.
pub fn prewarm(plan: &Plan, opts: &RunOptions) {
    let Ok(selected) = select(plan, opts) else {
        return;
    };
    for s in selected.into_iter().take(plan.concurrency) {
        for name in [&s.from, &s.to] {
            if let Some(c) = plan.connections.get(name) {
                highwater_connectors::prewarm(&c.kind, c.url.expose());
            }
        }
    }
}

/// The streams `opts` names (all when none), or an error naming an unknown one.
pub(crate) fn select<'p>(plan: &'p Plan, opts: &RunOptions) -> Result<Vec<&'p StreamPlan>> {
    for s in &opts.streams {
        if !plan.streams.iter().any(|p| &p.name == s) {
            let known: Vec<&str> = plan.streams.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::config(
                &plan.file,
                format!("unknown stream {s} (streams: {})", known.join(", ")),
            ));
        }
    }
    Ok(plan
        .streams
        .iter()
        .filter(|s| opts.streams.is_empty() || opts.streams.contains(&s.name))
        .collect())
}

/// Describe the stream's relation and check its columns against the
/// stream (cursor and key columns exist, cursor types, `lag:`).
pub(crate) async fn describe_checked(
    source: &dyn highwater_core::Source,
    s: &StreamPlan,
    from_kind: &highwater_core::ConnKind,
) -> Result<highwater_core::TableInfo> {
    let idle = attempt::idle_timeout();
    let info = attempt::bounded("describing the source", idle, source.describe(&s.relation))
        .await
        .map_err(|e| match e.cause() {
            Some(highwater_core::Cause::MissingRelation) => {
                Error::config(format!("table {}", s.relation), e)
            }
            _ => e,
        })?;
    highwater_config::plan::check_columns(s, from_kind, &info.schema)?;
    Ok(info)
}

/// The read a run makes from position `after` (`None`: everything).
pub(crate) fn read_request(s: &StreamPlan, after: Option<&Position>) -> ReadRequest {
    let delta = match s.mode {
        Mode::Full => Delta::Full,
        Mode::Watermark => Delta::Watermark {
            cursor: s.cursor.clone(),
            after: match after {
                Some(Position::Watermark(w)) => Some(w.clone()),
                _ => None,
            },
            lag: s.lag,
            writer_offset_minutes: s.writer_offset_minutes,
        },
        Mode::ChangeTracking => Delta::ChangeTracking {
            after: match after {
                Some(Position::Version(v)) => Some(v.clone()),
                _ => None,
            },
            retention_secs: s.change_retention_secs,
        },
        Mode::Cdc => Delta::Cdc {
            after: match after {
                Some(Position::Version(v)) => Some(v.clone()),
                _ => None,
            },
        },
    };
    ReadRequest {
        stream: s.name.clone(),
        relation: s.relation.clone(),
        delta,
        primary_key: s.primary_key.clone(),
        batch_size: s.batch_size,
        on_null_cursor: s.on_null_cursor,
        partitions: s.partitions,
    }
}

/// Rows whose cursor became NULL since the last watermark run: an error
/// under `on_null_cursor: error`, else the note saying they were skipped.
pub(crate) fn null_cursor_check(
    s: &StreamPlan,
    after: Option<&WatermarkPosition>,
    null_rows: u64,
) -> Result<Option<String>> {
    let Some(prev) = after.filter(|_| s.mode == Mode::Watermark) else {
        return Ok(None);
    };
    let new_nulls = null_rows.saturating_sub(prev.null_rows);
    if new_nulls == 0 {
        return Ok(None);
    }
    let col = s.cursor.join(", ");
    match s.on_null_cursor {
        NullCursorPolicy::Error => Err(Error::data(format!(
            "cursor column {col}: {new_nulls} row(s) have a NULL cursor since the last run \
             ({null_rows} in all); they cannot be copied incrementally. Set the cursor on those rows, \
             or set `on_null_cursor: skip`"
        ))),
        NullCursorPolicy::Skip => Ok(Some(format!(
            "skipped {new_nulls} row(s) whose cursor {col} is NULL (on_null_cursor: skip)"
        ))),
    }
}

/// Whole-attempt retries of transient failures: 3 tries, 2 s then 4 s apart.
const STREAM_RETRY: highwater_core::RetryPolicy = highwater_core::RetryPolicy {
    attempts: 3,
    initial: std::time::Duration::from_secs(2),
    max_delay: std::time::Duration::from_secs(10),
};

/// What became of one stream in a run.
enum Ran {
    Done,
    /// Another process holds the stream (or the window).
    Busy,
    /// The window was copied before (by another run or worker).
    AlreadyDone,
}

struct Ctx<'a> {
    plan: &'a Plan,
    state: Arc<dyn StateStore>,
    run_id: String,
    started: DateTime<Utc>,
    full_refresh: bool,
    observer: Arc<dyn Observer>,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    rerun_window: bool,
}

impl Ctx<'_> {
    /// The state key this run moves: the stream's, or its window's
    /// (`window/<stream>/<start>`: its lock, its attempts, and once copied
    /// its position, which says the window is done).
    fn key(&self, s: &StreamPlan) -> String {
        match self.window {
            Some((start, _)) => crate::pipeline::windows::window_key(&s.name, start),
            None => s.name.clone(),
        }
    }

    async fn run_one(&self, s: &StreamPlan) -> (StreamRun, Option<ErrorKind>) {
        let mut rec = StreamRun {
            stream: s.name.clone(),
            mode: s.mode.as_str().to_string(),
            status: RunStatus::InProgress,
            rows_read: 0,
            rows_written: 0,
            watermark_from: None,
            watermark_to: None,
            outputs: vec![],
            error: None,
            full_reload: false,
            notes: vec![],
            started_at: Utc::now(),
            finished_at: None,
            pipeline: None,
            input: None,
            output: None,
        };
        self.observer.event(Event::Started {
            stream: &s.name,
            mode: s.mode.as_str(),
        });
        let _ = self.state.record_stream_run(&self.run_id, &rec).await;
        // Transient failures (a deadlock, a serialization failure, a
        // connection reset) run the whole attempt again: settle, read,
        // write. The position only ever moves through a committed attempt.
        let mut tries = 1;
        let result = loop {
            let r = self.run_stream(s, &mut rec, tries).await;
            match r {
                // Connecting retried already (RetryPolicy::CONNECT); a
                // server that stays away is not retried again here.
                Err(e)
                    if e.is_transient()
                        && e.kind() != ErrorKind::Connection
                        && tries < STREAM_RETRY.attempts =>
                {
                    let delay = STREAM_RETRY.delay(tries);
                    self.note(
                        s,
                        &mut rec,
                        format!(
                            "attempt {tries} failed ({e}); retrying in {} s",
                            delay.as_secs_f32()
                        ),
                    );
                    tries += 1;
                    rec.rows_read = 0;
                    rec.rows_written = 0;
                    rec.outputs.clear();
                    rec.watermark_to = None;
                    tokio::time::sleep(delay).await;
                }
                other => break other,
            }
        };
        rec.finished_at = Some(Utc::now());
        let kind = match result {
            Ok(Ran::Done) => {
                rec.status = RunStatus::Succeeded;
                None
            }
            Ok(Ran::Busy | Ran::AlreadyDone) => {
                rec.status = RunStatus::Skipped;
                None
            }
            Err(e) => {
                rec.status = RunStatus::Failed;
                let place = format!("{}:{}", self.plan.file, s.line);
                rec.error = Some(
                    self.plan
                        .secrets
                        .redact(&format!("stream {} ({place}): {e}", s.name)),
                );
                Some(e.kind())
            }
        };
        for n in rec.notes.iter_mut() {
            *n = self.plan.secrets.redact(n);
        }
        if let Err(e) = self.state.record_stream_run(&self.run_id, &rec).await {
            tracing::error!(stream = %s.name, error = %e, "Cannot record the stream's run.");
        }
        self.observer.event(Event::Finished { run: &rec });
        (rec, kind)
    }

    fn note(&self, s: &StreamPlan, rec: &mut StreamRun, message: String) {
        let message = self.plan.secrets.redact(&message);
        self.observer.event(Event::Note {
            stream: &s.name,
            message: &message,
        });
        rec.notes.push(message);
    }

    async fn run_stream(&self, s: &StreamPlan, rec: &mut StreamRun, try_no: u32) -> Result<Ran> {
        if s.window.is_some() != self.window.is_some() {
            return Err(Error::config(
                format!("stream {}", s.name),
                match s.window {
                    Some(_) => {
                        "runs in windows (`window:`): `highwater run` copies its due windows, `highwater windows rerun` copies a range again"
                    }
                    None => "has no `window:`",
                },
            ));
        }
        let key = self.key(s);
        let Some(_lock) = self.state.lock_stream(&key).await? else {
            self.note(
                s,
                rec,
                "skipped: another highwater process is running this stream now".to_string(),
            );
            return Ok(Ran::Busy);
        };
        if self.window.is_some() && !self.rerun_window && self.state.position(&key).await?.is_some()
        {
            self.note(
                s,
                rec,
                "skipped: this window was copied before (by another run or worker)".to_string(),
            );
            return Ok(Ran::AlreadyDone);
        }
        // Each try is an attempt of its own (the state store keys attempts
        // by stream and id); a retry's output gets a name of its own too.
        let attempt_id = match try_no {
            1 => self.run_id.clone(),
            n => format!("{}-r{n}", self.run_id),
        };
        self.run_locked(s, rec, &attempt_id).await?;
        if let Some((start, end)) = self.window {
            // A window's run copies [start, end): say so as its range.
            let iso = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            rec.watermark_from = Some(iso(start));
            rec.watermark_to = Some(iso(end));
        }
        Ok(Ran::Done)
    }

    async fn run_locked(
        &self,
        s: &StreamPlan,
        rec: &mut StreamRun,
        attempt_id: &str,
    ) -> Result<()> {
        let from_conn = &self.plan.connections[&s.from];
        let to_conn = &self.plan.connections[&s.to];
        // File targets render a path per attempt; a database target is
        // one table, and the attempt's staging is named after the run.
        let (path_template, format, table_write) = match &s.target {
            Target::File { path, format } => (path.clone(), format.as_str(), None),
            Target::Table { into, write } => (into.clone(), "table", Some(*write)),
        };
        let sink = highwater_connectors::sink(&to_conn.kind, to_conn.url.expose()).await?;
        let incremental = s.mode != Mode::Full;
        let key = self.key(s);

        // Settle what a crashed attempt left.
        let env = attempt::Env {
            state: self.state.as_ref(),
            sink: sink.as_ref(),
            secrets: &self.plan.secrets,
        };
        for n in attempt::settle(env, &key, incremental).await? {
            self.note(s, rec, n);
        }

        let current = self.state.position(&key).await?;
        // A window is copied once: an interrupted run's attempt that had
        // published was committed just above, and that is the copy.
        if self.window.is_some() && !self.rerun_window && current.is_some() {
            self.note(
                s,
                rec,
                "this window was copied by an interrupted run (settled above); not copied again"
                    .to_string(),
            );
            return Ok(());
        }
        let source = highwater_connectors::source(&from_conn.kind, from_conn.url.expose()).await?;
        // The target's login overlaps the read (most small deltas write).
        sink.connect_early(&path_template);
        let idle = attempt::idle_timeout();
        // Columns exist, cursor types are usable, `lag:` fits the cursor.
        let described = describe_checked(source.as_ref(), s, &from_conn.kind).await?;

        // `share_partitions:`: parts claimed by every process sharing the state.
        if s.share_partitions && self.window.is_none() && table_write.is_none() {
            let req = read_request(s, None);
            let exported =
                attempt::bounded("planning the parts", idle, source.export_parts(&req)).await?;
            match exported {
                Some(x) => {
                    let shared = Shared {
                        env,
                        source: source.as_ref(),
                        exported: x,
                        schema: described.schema,
                    };
                    return self.run_shared(s, rec, shared, attempt_id, &current).await;
                }
                None => self.note(
                    s,
                    rec,
                    "share_partitions: the table cannot be split (no single integer key, empty, or too small for `auto`); read by this process"
                        .to_string(),
                ),
            }
        }

        let after = if self.full_refresh || self.window.is_some() {
            None
        } else {
            current.clone()
        };
        let after_wm: Option<WatermarkPosition> = match &after {
            Some(Position::Watermark(w)) => Some(w.clone()),
            _ => None,
        };
        rec.watermark_from = after.as_ref().map(Position::display_value);
        let mut req = read_request(s, after.as_ref());
        if let Some((start, end)) = self.window {
            req.delta = Delta::Window {
                cursor: s.cursor.clone(),
                start,
                end,
                writer_offset_minutes: s.writer_offset_minutes,
            };
        }
        let mut extract = attempt::bounded("reading the source", idle, source.read(&req)).await?;
        rec.full_reload = extract.full_reload && incremental;
        for n in std::mem::take(&mut extract.notes) {
            self.note(s, rec, n);
        }

        // NULL cursors after the full load.
        if let Some(n) = null_cursor_check(s, after_wm.as_ref(), extract.null_rows)? {
            self.note(s, rec, n);
        }

        let filter = match s.mode {
            Mode::Watermark if self.window.is_none() => Some(BoundaryFilter::new(
                &extract.schema,
                after_wm.as_ref(),
                extract.to.clone(),
                crate::boundary::BOUNDARY_LIMIT,
            )?),
            _ => None,
        };
        let out_schema = filter
            .as_ref()
            .map(|f| f.schema())
            .unwrap_or_else(|| extract.schema.clone());

        let mut rows = StreamRows {
            stream: &s.name,
            observer: self.observer.as_ref(),
            first: None,
            batches: extract.batches,
            filter,
            ended: false,
            rows_read: 0,
            mode: s.mode,
            null_rows: extract.null_rows,
            version_to: extract.version_to,
        };
        // Find the first non-empty batch before creating any output.
        rows.first = attempt::bounded("reading the source", idle, rows.next_batch()).await?;
        rec.rows_read = rows.rows_read;

        // A full copy into a table replaces its rows, so an empty source
        // still commits (an empty table), and a full reload of a merge
        // target replaces it too: deletes missed meanwhile do not linger.
        let table = table_write.map(|write| TableWrite {
            mode: match (s.mode, write) {
                (Mode::Full, _) => TableWriteMode::Replace,
                (_, WriteMode::Merge) if extract.full_reload => TableWriteMode::Replace,
                (_, WriteMode::Merge) => TableWriteMode::Merge,
                (_, WriteMode::Append) => TableWriteMode::Append,
            },
            primary_key: s.primary_key.clone(),
            change_tracking: matches!(s.mode, Mode::ChangeTracking | Mode::Cdc),
            pre_copy_script: None,
            procedure: None,
        });
        let replace_empty = table
            .as_ref()
            .is_some_and(|t| t.mode == TableWriteMode::Replace);
        if rows.first.is_none() && !replace_empty {
            // No rows: no file. Still move the position if it moved (e.g. a
            // change-tracking version, or a first run over an empty table).
            let to = rows.position();
            rec.watermark_to = Some(to.display_value());
            let what = if table.is_some() {
                "nothing written"
            } else {
                "no file written"
            };
            let what = match extract.held_back {
                0 => format!("no changes; {what}"),
                n => format!("no changes delivered ({n} row(s) held back, see above); {what}"),
            };
            self.note(s, rec, what);
            attempt::move_position(env, &key, attempt_id, &current, &to).await?;
            self.confirm_cdc(source.as_ref(), s, rec, &to).await;
            return Ok(());
        }

        let target = match table {
            Some(_) => path_template.clone(),
            None => template::render(&path_template, &s.name, attempt_id, self.started),
        };
        // A window's file named without {run_id} is the window's own: a
        // rerun of the window replaces it.
        let (target, owned) = match self.window {
            Some((start, end)) => (
                template::render_window(&target, start, end),
                table_write.is_some() || path_template.contains("{run_id}"),
            ),
            None => (target, incremental),
        };
        let copy = attempt::Copy {
            key: key.clone(),
            attempt_id: attempt_id.to_string(),
            from: current.clone(),
            request: WriteRequest {
                stream: key.clone(),
                run_id: attempt_id.to_string(),
                target,
                format: format.to_string(),
                schema: out_schema,
                overwrite: !owned,
                table,
                split: None,
            },
            owned,
        };
        let result = attempt::execute(env, copy, &mut rows).await;
        rec.rows_read = rows.rows_read;
        let outcome = result?;
        for n in outcome.notes {
            self.note(s, rec, n);
        }
        rec.watermark_to = outcome.position.as_ref().map(Position::display_value);
        rec.outputs = outcome.committed.outputs;
        rec.rows_written = outcome.committed.rows;
        if let Some(p) = &outcome.position {
            self.confirm_cdc(source.as_ref(), s, rec, p).await;
        }
        Ok(())
    }

    /// A full load whose parts every process sharing the state may claim
    /// (see [`crate::parts`]).
    async fn run_shared(
        &self,
        s: &StreamPlan,
        rec: &mut StreamRun,
        shared: Shared<'_>,
        attempt_id: &str,
        current: &Option<Position>,
    ) -> Result<()> {
        let Shared {
            env,
            source,
            exported,
            schema,
        } = shared;
        let Target::File { path, format } = &s.target else {
            return Err(Error::config(
                format!("stream {}", s.name),
                "share_partitions: needs a file target",
            ));
        };
        let key = self.key(s);
        let target = template::render(path, &s.name, attempt_id, self.started);
        self.note(s, rec, exported.note.clone());
        let plan = crate::parts::PartPlan {
            stream: key.clone(),
            run_id: attempt_id.to_string(),
            target: target.clone(),
            format: format.as_str().to_string(),
            overwrite: true,
            snapshot: exported.snapshot,
            key: exported.key,
            ranges: exported.ranges,
            source: self.plan.connections[&s.from].url.redacted(),
            sink: self.plan.connections[&s.to].url.redacted(),
        };
        let observer = self.observer.clone();
        let progress = move |rows: u64| {
            observer.event(Event::Progress {
                stream: &s.name,
                rows,
            })
        };
        let stage = crate::parts::coordinate(crate::parts::Coordinate {
            env: crate::parts::PartEnv {
                state: env.state,
                source,
                sink: env.sink,
                stream: s,
            },
            plan,
            hold: exported.hold,
            progress: &progress,
        });
        let copy = attempt::Copy {
            key: key.clone(),
            attempt_id: attempt_id.to_string(),
            from: current.clone(),
            request: WriteRequest {
                stream: key,
                run_id: attempt_id.to_string(),
                target,
                format: format.as_str().to_string(),
                schema,
                overwrite: true,
                table: None,
                split: None,
            },
            owned: false,
        };
        let outcome = attempt::execute_parts(env, copy, stage, Position::Full).await?;
        for n in outcome.notes {
            self.note(s, rec, n);
        }
        rec.watermark_to = outcome.position.as_ref().map(Position::display_value);
        rec.rows_read = outcome.committed.rows;
        rec.rows_written = outcome.committed.rows;
        rec.outputs = outcome.committed.outputs;
        Ok(())
    }

    /// `mode: cdc`, after the position committed: let the source release
    /// what it keeps up to it (PostgreSQL's replication slot; the binlog
    /// keeps nothing per reader). A failure only delays that (the next run
    /// advances the slot to its committed position before reading).
    async fn confirm_cdc(
        &self,
        source: &dyn highwater_core::Source,
        s: &StreamPlan,
        rec: &mut StreamRun,
        to: &Position,
    ) {
        if s.mode != Mode::Cdc {
            return;
        }
        let r = attempt::bounded(
            "advancing the replication slot",
            attempt::idle_timeout(),
            source.confirm(&s.name, to),
        );
        if let Err(e) = r.await {
            self.note(
                s,
                rec,
                format!("the replication slot was not advanced ({e}); the next run advances it"),
            );
        }
    }
}

/// What a shared full load starts from: where it runs, the exported
/// snapshot and its ranges, and the rows' schema (described once).
struct Shared<'a> {
    env: attempt::Env<'a>,
    source: &'a dyn highwater_core::Source,
    exported: highwater_core::ExportedParts,
    schema: arrow_schema::SchemaRef,
}

/// A stream's rows: the source's batches through the boundary filter.
struct StreamRows<'a> {
    stream: &'a str,
    observer: &'a dyn Observer,
    /// The first non-empty batch, pulled before any output is created.
    first: Option<RecordBatch>,
    batches: BatchStream,
    filter: Option<BoundaryFilter>,
    ended: bool,
    rows_read: u64,
    mode: Mode,
    null_rows: u64,
    version_to: Option<ChangeVersion>,
}

#[async_trait::async_trait]
impl Rows for StreamRows<'_> {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(b) = self.first.take() {
            return Ok(Some(b));
        }
        while !self.ended {
            let Some(b) = self.batches.next().await else {
                self.ended = true;
                break;
            };
            let b = b?;
            self.rows_read += b.num_rows() as u64;
            let b = match self.filter.as_mut() {
                Some(f) => f.apply(&b)?,
                None => b,
            };
            if b.num_rows() > 0 {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    fn position(&mut self) -> Position {
        match (self.mode, self.filter.take()) {
            (Mode::Watermark, Some(f)) => Position::Watermark(f.finish(self.null_rows)),
            (Mode::ChangeTracking | Mode::Cdc, _) => {
                Position::Version(self.version_to.clone().unwrap_or_default())
            }
            _ => Position::Full,
        }
    }

    fn progress(&mut self, rows_written: u64) {
        self.observer.event(Event::Progress {
            stream: self.stream,
            rows: rows_written,
        });
    }
}
