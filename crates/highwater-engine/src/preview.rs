//! `highwater run --dry-run` (`highwater plan`): for each stream, the range
//! a run would read now, how many rows it would deliver and where they
//! would go, without writing anything and without moving any position.
//!
//! ```text
//! position (state store, read only)
//!   ─► describe + check columns                     as run does
//!   ─► full / watermark: Source::read with the run's ReadRequest
//!        (the source picks the upper bound in its snapshot: lag, the
//!        late-commit cap, zone margins, held-back rows, exactly as a run)
//!        ─► batches through the BoundaryFilter, counted, dropped
//!   ─► change_tracking: change_tracking::status_after (read only; a run's
//!        read would set up or prune the change log), reload rules as the
//!        backends apply them; a reload counts the table's rows
//! ```
//!
//! Nothing is locked, no run is recorded, no open attempt is settled (a
//! preview says when one is waiting), and the sink is never opened.

use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use highwater_config::{Mode, Plan, StreamPlan, Target};
use highwater_core::{Delta, ErrorKind, Position, ReadRequest, Result, StateStore};

use crate::attempt;
use crate::boundary::BoundaryFilter;
use crate::runner::{self, RunOptions};

/// What a run of one stream would do now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preview {
    pub stream: String,
    pub mode: String,
    /// The saved position (the lower bound); `None`: none yet, or
    /// `--full-refresh`.
    pub from: Option<String>,
    /// The upper bound a run would stop at (watermark value or change
    /// version); `None` in full mode or when nothing is in range.
    pub to: Option<String>,
    /// The run would read everything (first run, full mode, a change-log
    /// reload).
    pub full_load: bool,
    /// Rows the run would deliver (watermark, full: counted in the
    /// source's snapshot; change tracking: changed keys in the log).
    pub rows: Option<u64>,
    /// Watermark: rows above the bound, left for a later run.
    pub held_back: u64,
    /// Target connection name.
    pub to_connection: String,
    /// File target: the path, `{run_id}` left as is; table target: the table.
    pub output: String,
    pub notes: Vec<String>,
    /// What a run would fail with (redacted).
    pub error: Option<String>,
    #[serde(skip)]
    pub error_kind: Option<ErrorKind>,
}

/// Preview the streams `opts` selects, one after the other.
pub async fn preview_streams(
    plan: &Plan,
    state: Arc<dyn StateStore>,
    opts: &RunOptions,
) -> Result<Vec<Preview>> {
    let selected = runner::select(plan, opts)?;
    let mut out = Vec::new();
    for s in selected {
        let mut p = Preview {
            stream: s.name.clone(),
            mode: s.mode.as_str().to_string(),
            from: None,
            to: None,
            full_load: s.mode == Mode::Full,
            rows: None,
            held_back: 0,
            to_connection: s.to.clone(),
            output: match &s.target {
                Target::File { path, .. } => {
                    crate::template::render(path, &s.name, "{run_id}", Utc::now())
                }
                Target::Table { into, write } => format!("{into} ({write:?})").to_lowercase(),
            },
            notes: vec![],
            error: None,
            error_kind: None,
        };
        if let Err(e) = preview_one(plan, state.as_ref(), s, opts.full_refresh, &mut p).await {
            let place = format!("{}:{}", plan.file, s.line);
            p.error = Some(
                plan.secrets
                    .redact(&format!("stream {} ({place}): {e}", s.name)),
            );
            p.error_kind = Some(e.kind());
        }
        for n in p.notes.iter_mut() {
            *n = plan.secrets.redact(n);
        }
        out.push(p);
    }
    Ok(out)
}

async fn preview_one(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    full_refresh: bool,
    p: &mut Preview,
) -> Result<()> {
    if s.window.is_some() {
        return preview_windows(plan, state, s, p).await;
    }
    let from_conn = &plan.connections[&s.from];
    let open = state.open_attempts(&s.name).await?;
    if !open.is_empty() {
        p.notes.push(format!(
            "{} attempt(s) left open by an interrupted run: a run settles them first \
             (publishes or removes their output), which may move the position",
            open.len()
        ));
    }
    let current = state.position(&s.name).await?;
    let after = if full_refresh { None } else { current };
    p.from = after.as_ref().map(Position::display_value);
    let source = highwater_connectors::source(&from_conn.kind, from_conn.url.expose()).await?;
    runner::describe_checked(source.as_ref(), s, &from_conn.kind).await?;
    let req = runner::read_request(s, after.as_ref());
    match &req.delta {
        Delta::ChangeTracking { after: ver, .. } => {
            let status = highwater_connectors::change_tracking::status_after(
                &from_conn.kind,
                from_conn.url.expose(),
                &s.relation,
                ver.as_ref().map(|v| v.version),
            )
            .await?;
            let reload = match (ver, status.complete()) {
                (None, _) => Some("first run: sets up change tracking and copies every row"),
                (Some(_), false) => {
                    Some("change tracking is not (completely) set up: a run sets it up and reloads")
                }
                (Some(v), true) if v.generation != status.generation => {
                    Some("the change log is of another generation: a run reloads in full")
                }
                (Some(v), true) if status.min_valid_version.is_some_and(|m| v.version < m) => {
                    Some("the position is older than the change log keeps: a run reloads in full")
                }
                (Some(v), true) if status.current_version.is_some_and(|c| v.version > c) => {
                    Some("the position is newer than the change log: a run reloads in full")
                }
                _ => None,
            };
            match reload {
                Some(why) => {
                    p.full_load = true;
                    p.notes.push(why.to_string());
                    p.to = status.current_version.map(|v| v.to_string());
                    let full = ReadRequest {
                        delta: Delta::Full,
                        ..req.clone()
                    };
                    p.rows = Some(count(source.as_ref(), &full, None, p).await?.0);
                }
                None => {
                    p.to = status.current_version.map(|v| v.to_string());
                    p.rows = status.changed_after.map(|n| n.max(0) as u64);
                }
            }
        }
        Delta::Watermark { after: wm, .. } => {
            p.full_load = wm.is_none();
            let wm = wm.clone();
            let (rows, null_rows) = count(source.as_ref(), &req, Some(wm.as_ref()), p).await?;
            p.rows = Some(rows);
            if let Some(n) = runner::null_cursor_check(s, wm.as_ref(), null_rows)? {
                p.notes.push(n);
            }
        }
        Delta::Full | Delta::Window { .. } | Delta::Part(_) => {
            p.rows = Some(count(source.as_ref(), &req, None, p).await?.0);
        }
        // Peeking at the slot is not free and creating it is a write: the
        // plan says what a run does instead of counting.
        Delta::Cdc { after: ver } => {
            p.full_load = ver.is_none();
            let binlog = from_conn.kind == highwater_core::ConnKind::Mysql;
            p.notes.push(match ver {
                None if binlog => "first run: copies every row at the binary log position of its snapshot".to_string(),
                Some(_) if binlog => "a run reads the binary log from the stream's position up to its snapshot's position (not counted here)".to_string(),
                None => "first run: creates the replication slot and publication and copies every row".to_string(),
                Some(_) => "a run reads the changes the replication slot holds up to the current WAL position (not counted here)".to_string(),
            });
        }
    }
    Ok(())
}

/// Windows counted row by row at most; more are only listed.
const PREVIEW_WINDOWS: usize = 100;

/// A stream with `window:`: the due windows a run would copy (not yet
/// copied, retries left), from the first's start to the last's end, and
/// the rows in them.
async fn preview_windows(
    plan: &Plan,
    state: &dyn StateStore,
    s: &StreamPlan,
    p: &mut Preview,
) -> Result<()> {
    let from_conn = &plan.connections[&s.from];
    let source = highwater_connectors::source(&from_conn.kind, from_conn.url.expose()).await?;
    runner::describe_checked(source.as_ref(), s, &from_conn.kind).await?;
    let todo = crate::windowed::to_copy(state, s).await?;
    let iso = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    p.from = todo.first().map(|w| iso(w.start));
    p.to = todo.last().map(|w| iso(w.end));
    p.notes.push(format!(
        "{} window(s) due and not copied yet; a run copies each as a run of its own",
        todo.len()
    ));
    let mut rows = 0;
    for w in todo.iter().take(PREVIEW_WINDOWS) {
        let mut req = runner::read_request(s, None);
        req.delta = Delta::Window {
            cursor: s.cursor.clone(),
            start: w.start,
            end: w.end,
            writer_offset_minutes: s.writer_offset_minutes,
        };
        rows += count(source.as_ref(), &req, None, p).await?.0;
    }
    p.rows = (todo.len() <= PREVIEW_WINDOWS).then_some(rows);
    Ok(())
}

/// Read as a run would and count the rows it would deliver; in watermark
/// mode (`after` is `Some`) through the boundary filter, recording the
/// bound the filter settles on. Returns the rows and the NULL-cursor rows.
async fn count(
    source: &dyn highwater_core::Source,
    req: &ReadRequest,
    after: Option<Option<&highwater_core::WatermarkPosition>>,
    p: &mut Preview,
) -> Result<(u64, u64)> {
    let idle = attempt::idle_timeout();
    let mut extract = attempt::bounded("reading the source", idle, source.read(req)).await?;
    p.notes.append(&mut extract.notes);
    p.held_back = extract.held_back;
    let mut filter = match after {
        Some(a) => Some(BoundaryFilter::new(
            &extract.schema,
            a,
            extract.to.clone(),
            crate::boundary::BOUNDARY_LIMIT,
        )?),
        None => None,
    };
    let mut rows = 0u64;
    loop {
        let next = attempt::bounded("reading the source", idle, async {
            Ok(extract.batches.next().await)
        })
        .await?;
        let Some(b) = next else { break };
        let b = b?;
        rows += match filter.as_mut() {
            Some(f) => f.apply(&b)?.num_rows() as u64,
            None => b.num_rows() as u64,
        };
    }
    if let Some(f) = filter {
        let pos = Position::Watermark(f.finish(extract.null_rows));
        p.to = Some(pos.display_value()).filter(|v| v != "-");
    }
    Ok((rows, extract.null_rows))
}

impl Preview {
    /// The exit code a run would likely end with: 0, or 2 when every
    /// failure is a configuration one, else 1.
    pub fn exit_code(previews: &[Preview]) -> i32 {
        let kinds: Vec<ErrorKind> = previews.iter().filter_map(|p| p.error_kind).collect();
        if kinds.is_empty() {
            0
        } else if kinds.iter().all(|k| *k == ErrorKind::Config) {
            2
        } else {
            1
        }
    }
}
