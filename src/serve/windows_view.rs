//! The windows of the factory's tumbling window triggers in the monitor:
//! `/windows` (a table per trigger), `GET /api/windows[?trigger=NAME]`,
//! `POST /api/windows/{trigger}/rerun?from=T[&to=T]` (a token as for every
//! change), and the window backlog in `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use highwater_engine::pipeline::windows::{self, WindowStatus};
use serde::Deserialize;
use serde_json::json;

use super::Shared;
use super::web::{J, esc, html};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/windows", get(page))
        .route("/api/windows", get(api))
        .route("/api/windows/{trigger}/rerun", post(rerun))
}

#[derive(Debug, Default, Deserialize)]
struct Which {
    trigger: Option<String>,
}

/// Every tumbling trigger's due windows, by trigger.
pub async fn all(
    shared: &Shared,
    only: Option<&str>,
) -> Result<Vec<(String, Vec<WindowStatus>)>, String> {
    let mut out = Vec::new();
    for t in shared
        .triggers
        .iter()
        .filter(|t| only.is_none_or(|n| t.name == n))
    {
        let Some(tw) = windows::tumbling(t) else {
            continue;
        };
        let list = windows::statuses(
            shared.state.as_ref(),
            &t.name,
            tw,
            Utc::now(),
            &shared.triggers,
        )
        .await
        .map_err(|e| shared.plan.secrets.redact(&e.to_string()))?;
        out.push((t.name.clone(), list));
    }
    for st in shared
        .plan
        .streams
        .iter()
        .filter(|st| st.window.is_some() && only.is_none_or(|n| st.name == n))
    {
        let list = highwater_engine::windowed::statuses(shared.state.as_ref(), st)
            .await
            .map_err(|e| shared.plan.secrets.redact(&e.to_string()))?;
        out.push((st.name.clone(), list));
    }
    Ok(out)
}

/// Whether `name` is a tumbling trigger of the factory or a stream with
/// `window:`.
fn windowed(shared: &Shared, name: &str) -> bool {
    shared.triggers.iter().any(|t| t.name == name)
        || shared
            .plan
            .streams
            .iter()
            .any(|s| s.name == name && s.window.is_some())
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn api(State(shared): State<Arc<Shared>>, Query(w): Query<Which>) -> Response {
    if let Some(n) = &w.trigger
        && !windowed(&shared, n)
    {
        return (
            StatusCode::NOT_FOUND,
            J(json!({"error": format!("no trigger {n}")})),
        )
            .into_response();
    }
    match all(&shared, w.trigger.as_deref()).await {
        Ok(l) => {
            let flat: Vec<&WindowStatus> = l.iter().flat_map(|(_, l)| l.iter()).collect();
            J(json!(flat)).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, J(json!({"error": e}))).into_response(),
    }
}

async fn page(State(shared): State<Arc<Shared>>) -> Response {
    let mut h = String::from("<h1><a href=\"/\">highwater</a> · windows</h1>");
    match all(&shared, None).await {
        Ok(l) if l.is_empty() => h.push_str(
            "<p>no tumbling window triggers in the factory and no stream with <code>window:</code></p>",
        ),
        Ok(l) => {
            for (name, list) in l {
                let count = |s: &str| list.iter().filter(|w| w.status == s).count();
                let _ = write!(
                    h,
                    "<h2>{}</h2><p>{} due: {} succeeded, {} running, {} pending, {} waiting, {} retrying, {} failed</p>\
                     <table><tr><th>start (UTC)</th><th>end</th><th>status</th><th>attempts</th><th>last run</th><th></th></tr>",
                    esc(&name),
                    list.len(),
                    count("succeeded"),
                    count("running"),
                    count("pending"),
                    count("waiting"),
                    count("retrying"),
                    count("failed")
                );
                for w in list.iter().rev() {
                    let run = w.last_run_id.as_deref().map_or(String::new(), |id| {
                        format!(
                            "<a href=\"/runs/{}\">{}</a>",
                            esc(id),
                            esc(&id[..id.len().min(8)])
                        )
                    });
                    let url = format!(
                        "/api/windows/{}/rerun?from={}&to={}",
                        urlencode(&name),
                        urlencode(&iso(w.start)),
                        urlencode(&iso(w.end))
                    );
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td class=\"st-{}\">{}{}</td><td>{}</td><td>{run}</td>\
                         <td><button data-post=\"{}\">Rerun</button></td></tr>",
                        esc(&iso(w.start)),
                        esc(&iso(w.end)),
                        esc(&w.status),
                        esc(&w.status),
                        if w.waiting_for.is_empty() {
                            String::new()
                        } else {
                            format!(" for {}", esc(&w.waiting_for.join(", ")))
                        },
                        w.attempts,
                        esc(&url)
                    );
                }
                h.push_str("</table>");
            }
        }
        Err(e) => {
            let _ = write!(h, "<p class=err>cannot read the windows: {}</p>", esc(&e));
        }
    }
    html(StatusCode::OK, "Windows", &h)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
struct Range {
    from: Option<String>,
    to: Option<String>,
}

/// Rerun the windows of `trigger` starting in `[from, to)`, in the
/// background, one after the other.
async fn rerun(
    State(shared): State<Arc<Shared>>,
    Path(trigger): Path<String>,
    Query(r): Query<Range>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = shared.auth.refusal(&headers) {
        return refused;
    }
    let bad = |m: String| (StatusCode::BAD_REQUEST, J(json!({"error": m}))).into_response();
    let stream = shared
        .plan
        .streams
        .iter()
        .find(|s| s.name == trigger && s.window.is_some())
        .cloned();
    let t = shared.triggers.iter().find(|t| t.name == trigger).cloned();
    let tw = match (&stream, &t) {
        (Some(s), _) => s.window.as_ref().map(highwater_engine::windowed::tumbling),
        (None, Some(t)) => match windows::tumbling(t) {
            Some(tw) => Some(tw.clone()),
            None => {
                return bad(format!(
                    "trigger {trigger} is not a tumbling window trigger"
                ));
            }
        },
        (None, None) => None,
    };
    let Some(tw) = tw else {
        return (
            StatusCode::NOT_FOUND,
            J(json!({"error": format!("no trigger or windowed stream {trigger}")})),
        )
            .into_response();
    };
    let parse = |s: &Option<String>, what: &str| -> Result<Option<DateTime<Utc>>, String> {
        match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(text) => highwater_expr::datetime::parse_timestamp(text)
                .map(|t| Some(t.to_utc()))
                .ok_or_else(|| format!("{what}={text}: not an ISO 8601 time")),
        }
    };
    let from = match parse(&r.from, "from") {
        Ok(Some(t)) => t,
        Ok(None) => return bad("from= is required".into()),
        Err(m) => return bad(m),
    };
    let to = match parse(&r.to, "to") {
        Ok(t) => t,
        Err(m) => return bad(m),
    };
    let chosen: Vec<_> = tw
        .due(Utc::now(), usize::MAX)
        .into_iter()
        .filter(|w| w.start >= from && to.is_none_or(|t| w.start < t))
        .collect();
    if chosen.is_empty() {
        return bad(format!("no due window of {trigger} starts in that range"));
    }
    let n = chosen.len();
    let (plan, state) = (shared.plan.clone(), shared.state.clone());
    if let Some(s) = stream {
        tokio::spawn(async move {
            for w in chosen {
                let quiet = Arc::new(highwater_engine::events::Quiet);
                if let Err(e) =
                    highwater_engine::windowed::fire(&plan, state.clone(), &s.name, w, true, quiet)
                        .await
                {
                    tracing::error!(stream = %s.name, window = %iso(w.start), error = %plan.secrets.redact(&e.to_string()), "A window rerun failed.");
                }
            }
        });
        return (
            StatusCode::ACCEPTED,
            J(json!({"trigger": trigger, "windows": n})),
        )
            .into_response();
    }
    let (Some(root), Some(t)) = (shared.factory_root.clone(), t) else {
        return bad("no factory root".into());
    };
    let rt = tokio::runtime::Handle::current();
    // The interpreter's futures are not `Send`: a blocking thread of its own.
    tokio::task::spawn_blocking(move || {
        rt.block_on(async {
            for w in chosen {
                if let Err(e) =
                    windows::fire(&root, &plan, state.clone(), &t, Some(w), w.end, true).await
                {
                    tracing::error!(trigger = %t.name, window = %iso(w.start), error = %plan.secrets.redact(&e.to_string()), "A window rerun failed.");
                }
            }
        })
    });
    (
        StatusCode::ACCEPTED,
        J(json!({"trigger": trigger, "windows": n})),
    )
        .into_response()
}

/// What `/metrics` last computed: the window statuses read the run history.
static METRICS_CACHE: super::Cached<Vec<(String, Vec<WindowStatus>)>> = super::Cached::new();

/// `highwater_trigger_windows{trigger,status}`: how many due windows are
/// in each state (the backlog is pending + waiting + retrying), at most
/// [`super::METRICS_TTL`] old.
pub async fn metrics(shared: &Shared, body: &mut String) {
    if shared.triggers.is_empty() && !shared.plan.streams.iter().any(|s| s.window.is_some()) {
        return;
    }
    let l = match METRICS_CACHE.fresh() {
        Some(l) => l,
        None => {
            let Ok(l) = all(shared, None).await else {
                return;
            };
            METRICS_CACHE.store(l.clone());
            l
        }
    };
    if l.is_empty() {
        return;
    }
    body.push_str("# HELP highwater_trigger_windows Due tumbling windows by status.\n# TYPE highwater_trigger_windows gauge\n");
    for (name, list) in l {
        for s in [
            "pending",
            "waiting",
            "running",
            "succeeded",
            "retrying",
            "failed",
        ] {
            let n = list.iter().filter(|w| w.status == s).count();
            let _ = writeln!(
                body,
                "highwater_trigger_windows{{trigger=\"{}\",status=\"{s}\"}} {n}",
                name.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            );
        }
    }
}
