//! The monitor (`/`, `/runs/ID`), its JSON API, `/metrics` and `/healthz`.
//!
//! Pages are plain HTML rendered here; every value from a config, a run
//! record or a request is escaped with [`esc`], and every string a page or
//! the API shows passes the configuration's secret redaction first. The
//! little script the buttons need is `/app.js`, served from the binary;
//! a `Content-Security-Policy` allows nothing but this origin, so even a
//! missed escape could not run a script.
//!
//! Requests that change something (POST) pass [`Auth::refusal`] first.

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use highwater_core::{RunQuery, RunRecord, RunStatus, StreamRun};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Cancelled, NotStarted, Shared};

/// Runs per page unless `limit` says otherwise, and the most one page holds.
const PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/runs/{id}", get(run_page))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(metrics))
        .route("/api/runs", get(api_runs))
        .route("/api/runs/{id}", get(api_run))
        .route("/api/runs/{id}/rerun", post(api_rerun))
        .route("/api/runs/{id}/cancel", post(api_cancel))
        .route("/api/streams", get(api_streams))
        .route("/api/streams/{name}/trigger", post(api_trigger))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(super::windows_view::routes())
        .with_state(shared)
}

// ---------------------------------------------------------------- auth

/// Who may change something. With a token, every POST must carry it
/// (`Authorization: Bearer …`); without one, POSTs are allowed only when
/// the listener is loopback-only, and refused (403) otherwise.
pub struct Auth {
    token: Option<String>,
    loopback: bool,
}

impl Auth {
    /// `HIGHWATER_TOKEN` (empty counts as unset).
    pub fn from_env(loopback: bool) -> Auth {
        let token = std::env::var("HIGHWATER_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty());
        Auth { token, loopback }
    }

    /// One line for the start-up output; never the token itself.
    pub fn describe(&self) -> &'static str {
        match (&self.token, self.loopback) {
            (Some(_), _) => {
                "changes (trigger, rerun, cancel) need HIGHWATER_TOKEN as `Authorization: Bearer`"
            }
            (None, true) => {
                "listening on loopback only: changes (trigger, rerun, cancel) need no token \
                 (set HIGHWATER_TOKEN to require one)"
            }
            (None, false) => {
                "not loopback-only and no HIGHWATER_TOKEN: the monitor is read-only \
                 (changes are refused until HIGHWATER_TOKEN is set)"
            }
        }
    }

    /// `None` when the request may change something; else the refusal.
    pub(super) fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        // A page on another site must not drive a loopback monitor
        // through the user's browser: a cross-origin POST is refused.
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let origin_host = origin.split("://").nth(1).unwrap_or(origin);
            if origin_host != host {
                return Some(refuse(
                    StatusCode::FORBIDDEN,
                    "refused: a request from another origin",
                ));
            }
        }
        let Some(token) = &self.token else {
            return if self.loopback {
                None
            } else {
                Some(refuse(
                    StatusCode::FORBIDDEN,
                    "refused: this server listens beyond loopback and no HIGHWATER_TOKEN is \
                     set, so nothing may be changed; start `highwater serve` with \
                     HIGHWATER_TOKEN set and send `Authorization: Bearer <token>`",
                ))
            };
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                // The scheme is case-insensitive (RFC 9110).
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(rest)
            })
            .map(str::trim);
        match given {
            Some(g) if same(g.as_bytes(), token.as_bytes()) => None,
            Some(_) => Some(refuse(StatusCode::UNAUTHORIZED, "refused: wrong token")),
            None => Some(refuse(
                StatusCode::UNAUTHORIZED,
                "refused: this request needs `Authorization: Bearer <HIGHWATER_TOKEN>`",
            )),
        }
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (status, J(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

// ---------------------------------------------------------------- helpers

/// A JSON response (axum's `Json` needs a feature this build leaves out).
pub(super) struct J<T>(pub(super) T);

impl<T: serde::Serialize> IntoResponse for J<T> {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&self.0).unwrap_or_default(),
        )
            .into_response()
    }
}

/// HTML text and attribute escaping.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encoding for a path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Prometheus label value escaping.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every string in `v` with the configuration's secrets redacted.
fn redact_value(v: &mut Value, shared: &Shared) {
    match v {
        Value::String(s) => *s = shared.plan.secrets.redact(s),
        Value::Array(a) => a.iter_mut().for_each(|x| redact_value(x, shared)),
        Value::Object(o) => o.values_mut().for_each(|x| redact_value(x, shared)),
        _ => {}
    }
}

/// A run record as the API and the pages show it: secrets redacted,
/// activities in the order they started.
fn shown(mut r: RunRecord, shared: &Shared) -> RunRecord {
    let redact = |s: &mut String| *s = shared.plan.secrets.redact(s);
    r.streams.sort_by_key(|s| s.started_at);
    for s in &mut r.streams {
        if let Some(e) = &mut s.error {
            redact(e);
        }
        s.notes.iter_mut().for_each(redact);
        s.outputs.iter_mut().for_each(redact);
        for j in [&mut s.input, &mut s.output].into_iter().flatten() {
            redact_value(j, shared);
        }
    }
    if let Some(i) = &mut r.info {
        redact_value(i, shared);
    }
    r
}

/// `Stream t`, `Streams a, b` or `Pipeline p`.
fn kind(r: &RunRecord) -> String {
    if let Some(p) = r.pipeline() {
        return format!("Pipeline {p}");
    }
    let names: Vec<&str> = r.streams.iter().map(|s| s.stream.as_str()).collect();
    let named = r
        .info
        .as_ref()
        .and_then(|i| i.get("stream"))
        .and_then(|s| s.as_str());
    match (names.as_slice(), named) {
        ([], Some(n)) => format!("Stream {n}"),
        ([one], _) => format!("Stream {one}"),
        _ => format!("Streams {}", names.join(", ")),
    }
}

/// What started the run: `Schedule`, `Manual` (the CLI or a button),
/// `Rerun`.
fn trigger(r: &RunRecord) -> String {
    let info = r.info.as_ref();
    if let Some(t) = info.and_then(|i| i.get("trigger")).and_then(|t| t.as_str()) {
        return t.to_string();
    }
    if info
        .and_then(|i| i.get("rerunOf"))
        .is_some_and(|v| !v.is_null())
    {
        let from_failed = info
            .and_then(|i| i.get("fromFailed"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        return if from_failed {
            "Rerun from failed".into()
        } else {
            "Rerun".into()
        };
    }
    "Manual".into()
}

fn when(t: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

fn duration(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> String {
    let running = end.is_none();
    let ms = (end.unwrap_or_else(Utc::now) - start)
        .num_milliseconds()
        .max(0);
    let text = if ms < 10_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{} h {} min", ms / 3_600_000, ms / 60_000 % 60)
    };
    if running {
        format!("{text} so far")
    } else {
        text
    }
}

/// The first failure of a run, cut to one short line, for the list.
fn first_error(r: &RunRecord) -> String {
    let Some(e) = r.streams.iter().find_map(|s| s.error.as_deref()) else {
        return String::new();
    };
    let line = e.lines().next().unwrap_or("");
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line.to_string()
    }
}

fn rows(r: &RunRecord) -> (u64, u64) {
    r.streams
        .iter()
        .fold((0, 0), |(a, b), s| (a + s.rows_read, b + s.rows_written))
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, J(json!({ "error": message }))).into_response()
}

fn store_error(shared: &Shared, e: &highwater_core::Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        J(json!({ "error": shared.plan.secrets.redact(&e.to_string()) })),
    )
        .into_response()
}

// ---------------------------------------------------------------- filters

/// The filters of `/api/runs` and `/`, as given.
#[derive(Debug, Default, Deserialize)]
struct Filters {
    limit: Option<String>,
    offset: Option<String>,
    status: Option<String>,
    name: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn parse_status(s: &str) -> Option<RunStatus> {
    match s.to_ascii_lowercase().as_str() {
        "succeeded" | "ok" => Some(RunStatus::Succeeded),
        "failed" => Some(RunStatus::Failed),
        "inprogress" | "in_progress" | "running" => Some(RunStatus::InProgress),
        "skipped" => Some(RunStatus::Skipped),
        _ => None,
    }
}

/// RFC 3339 (`2026-12-03T15:00:00Z`, any offset), or a date and time
/// without offset as the page's inputs send (`2026-12-03T15:00`, taken
/// as UTC), or a date.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

impl Filters {
    /// The query, or a message naming the parameter that is wrong.
    fn query(&self) -> Result<RunQuery, String> {
        fn some(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let number = |name: &str, v: &Option<String>| -> Result<Option<usize>, String> {
            some(v)
                .map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| format!("{name}={v}: expected a whole number"))
                })
                .transpose()
        };
        let limit = number("limit", &self.limit)?.unwrap_or(PAGE);
        if limit > MAX_PAGE {
            return Err(format!("limit={limit}: at most {MAX_PAGE}"));
        }
        let status = some(&self.status)
            .map(|s| {
                parse_status(s).ok_or_else(|| {
                    format!("status={s}: expected Succeeded, Failed, InProgress or Skipped")
                })
            })
            .transpose()?;
        let time = |name: &str, v: &Option<String>| {
            some(v)
                .map(|s| {
                    parse_time(s).ok_or_else(|| {
                        format!(
                            "{name}={s}: expected a time like 2026-12-03T15:00:00Z \
                             (RFC 3339; without an offset, UTC)"
                        )
                    })
                })
                .transpose()
        };
        Ok(RunQuery {
            status,
            name: some(&self.name).map(str::to_string),
            from: time("from", &self.from)?,
            to: time("to", &self.to)?,
            offset: number("offset", &self.offset)?.unwrap_or(0),
            limit,
        })
    }
}

// ---------------------------------------------------------------- API

async fn api_runs(State(shared): State<Arc<Shared>>, Query(f): Query<Filters>) -> Response {
    let q = match f.query() {
        Ok(q) => q,
        Err(m) => return bad_request(m),
    };
    match shared.state.find_runs(&q).await {
        Ok((runs, total)) => {
            let runs: Vec<RunRecord> = runs.into_iter().map(|r| shown(r, &shared)).collect();
            let mut r = J(runs).into_response();
            r.headers_mut()
                .insert("x-total-count", HeaderValue::from(total as u64));
            r
        }
        Err(e) => store_error(&shared, &e),
    }
}

async fn api_run(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.state.run(&id).await {
        Ok(Some(r)) => J(shown(r, &shared)).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            J(json!({ "error": format!("no run {id}") })),
        )
            .into_response(),
        Err(e) => store_error(&shared, &e),
    }
}

async fn api_streams(State(shared): State<Arc<Shared>>) -> Response {
    let positions = shared.state.positions().await.unwrap_or_default();
    let metrics = shared.metrics.lock().map(|m| m.clone()).unwrap_or_default();
    let streams: Vec<Value> = shared
        .plan
        .streams
        .iter()
        .map(|s| {
            let m = metrics.get(&s.name).cloned().unwrap_or_default();
            let pos = positions.iter().find(|p| p.0 == s.name);
            json!({
                "name": s.name,
                "mode": s.mode.as_str(),
                "from": s.from,
                "to": s.to,
                "schedule": s.schedule,
                "next_run": m.next,
                "running": m.running,
                "position": pos.map(|p| p.1.display_value()),
                "position_moved_at": pos.map(|p| p.2),
                "runs_succeeded": m.succeeded,
                "runs_failed": m.failed,
                "rows_read": m.rows_read,
                "rows_written": m.rows_written,
                "last_success": m.last_success,
                "last_error": m.last_error.map(|e| shared.plan.secrets.redact(&e)),
            })
        })
        .collect();
    J(streams).into_response()
}

/// Wait (briefly) until the new run's record exists, so the run page the
/// caller opens next has something to show.
async fn settle(shared: &Shared, run_id: &str) {
    for _ in 0..100 {
        if matches!(shared.state.run(run_id).await, Ok(Some(_))) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn started(run_id: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/runs/{}", enc(run_id)))],
        J(json!({ "run_id": run_id, "page": format!("/runs/{}", enc(run_id)) })),
    )
        .into_response()
}

async fn api_trigger(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = shared.auth.refusal(&headers) {
        return r;
    }
    if shared
        .plan
        .streams
        .iter()
        .any(|s| s.name == name && s.window.is_some())
    {
        return (
            StatusCode::CONFLICT,
            J(json!({ "error": format!(
                "stream {name} runs in windows (`window:`): serve copies each window when it is due; \
                 POST /api/windows/{name}/rerun?from=T copies a range again"
            ) })),
        )
            .into_response();
    }
    match super::trigger(&shared, &name, "Manual") {
        Ok(run_id) => {
            tracing::info!(event = "stream_triggered", stream = %name, run_id = %run_id, "A stream was triggered from the monitor.");
            settle(&shared, &run_id).await;
            started(&run_id)
        }
        Err(NotStarted::Unknown) => (
            StatusCode::NOT_FOUND,
            J(json!({ "error": format!("no stream {name} in {}", shared.plan.file) })),
        )
            .into_response(),
        Err(NotStarted::Busy) => (
            StatusCode::CONFLICT,
            J(json!({ "error": format!("stream {name} is running; try again when it has finished") })),
        )
            .into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct RerunParams {
    from_failed: Option<String>,
}

async fn api_rerun(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(p): Query<RerunParams>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = shared.auth.refusal(&headers) {
        return r;
    }
    let from_failed = match p.from_failed.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return bad_request(format!("from_failed={other}: expected true or false"));
        }
    };
    match shared.state.run(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                J(json!({ "error": format!("no run {id}") })),
            )
                .into_response();
        }
        Err(e) => return store_error(&shared, &e),
    }
    match crate::cli::pipeline::prepare_rerun(&shared.plan, shared.state.as_ref(), &id, from_failed)
        .await
    {
        Ok(rerun) => {
            let run_id = super::start_rerun(&shared, rerun);
            settle(&shared, &run_id).await;
            started(&run_id)
        }
        Err(refused) => {
            let status = if refused.code == 2 {
                StatusCode::CONFLICT
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            let message = shared.plan.secrets.redact(&refused.message);
            (status, J(json!({ "error": message }))).into_response()
        }
    }
}

async fn api_cancel(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = shared.auth.refusal(&headers) {
        return r;
    }
    // The full id: a prefix is resolved by the store.
    let id = match shared.state.run(&id).await {
        Ok(Some(r)) => r.run_id,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                J(json!({ "error": format!("no run {id}") })),
            )
                .into_response();
        }
        Err(e) => return store_error(&shared, &e),
    };
    match super::cancel(&shared, &id).await {
        Ok(Cancelled::Done) => J(json!({ "run_id": id, "cancelled": true })).into_response(),
        Ok(Cancelled::NotRunning) => (
            StatusCode::CONFLICT,
            J(json!({
                "error": format!("run {id} is not running in this server (finished, or started by another process)")
            })),
        )
            .into_response(),
        Err(e) => store_error(&shared, &e),
    }
}

// ---------------------------------------------------------------- pages

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:1.5em 2em;color:#222}\
a{color:#0550ae}h1{margin:0 0 .2em}h1 a{color:inherit;text-decoration:none}\
.sub{color:#666;margin:0 0 1em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}\
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.Failed{color:#b00;font-weight:600}.Succeeded{color:#070}.InProgress{color:#a60}.Skipped{color:#777}\
.err{color:#b00;white-space:pre-wrap;max-width:50em}\
pre{background:#f6f8fa;padding:8px;max-width:70em;overflow:auto;margin:4px 0}\
form.filters{display:flex;gap:.6em;flex-wrap:wrap;align-items:end;margin:.5em 0}\
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}\
button{cursor:pointer;padding:3px 10px}#msg{color:#b00}#msg:empty{display:none}\
.pager a,.pager span{margin-right:1em}dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}\
dt{color:#666}dd{margin:0}";

/// The buttons: POST with the token (asked for once when the server
/// wants one, kept for the tab's session), then open the new run.
const JS: &str = r#""use strict";
function token(){return sessionStorage.getItem("highwater-token")||"";}
async function post(url){
  const msg=document.getElementById("msg");
  for(let attempt=0;attempt<2;attempt++){
    const h={};const t=token();if(t)h["Authorization"]="Bearer "+t;
    let r;
    try{r=await fetch(url,{method:"POST",headers:h});}catch(e){msg.textContent="request failed: "+e;return;}
    let body={};try{body=await r.json();}catch(e){}
    if(r.status===401&&attempt===0){
      const t2=prompt("This server needs its token (HIGHWATER_TOKEN):");
      if(!t2){msg.textContent=body.error||"refused";return;}
      sessionStorage.setItem("highwater-token",t2);continue;
    }
    if(!r.ok){msg.textContent=body.error||("HTTP "+r.status);return;}
    if(body.page){location.href=body.page;}else{location.reload();}
    return;
  }
}
document.addEventListener("click",function(ev){
  const b=ev.target.closest("button[data-post]");
  if(!b)return;
  if(b.dataset.confirm&&!confirm(b.dataset.confirm))return;
  b.disabled=true;post(b.dataset.post).finally(function(){b.disabled=false;});
});
document.querySelectorAll("time[datetime]").forEach(function(t){
  t.title="your time: "+new Date(t.getAttribute("datetime")).toString();
});
const auto=document.getElementById("auto");
if(auto){
  auto.checked=sessionStorage.getItem("highwater-auto")!=="off";
  auto.addEventListener("change",function(){sessionStorage.setItem("highwater-auto",auto.checked?"on":"off");});
  setInterval(function(){
    const a=document.activeElement;
    if(auto.checked&&!(a&&a.matches("input,select")))location.reload();
  },5000);
}
"#;

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

pub(super) fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width\">\
         <title>{} · highwater</title><link rel=stylesheet href=\"/app.css\"></head><body>\
         {body}<script src=\"/app.js\"></script></body></html>",
        esc(title)
    );
    let mut r = (status, Html(page)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn button(url: &str, label: &str, confirm: Option<&str>) -> String {
    format!(
        "<button type=button data-post=\"{}\"{}>{}</button>",
        esc(url),
        confirm
            .map(|c| format!(" data-confirm=\"{}\"", esc(c)))
            .unwrap_or_default(),
        esc(label)
    )
}

async fn page(State(shared): State<Arc<Shared>>, Query(f): Query<Filters>) -> Response {
    let mut h = String::new();
    let _ = write!(
        h,
        "<h1><a href=\"/\">highwater</a></h1><p class=sub>config {} · serving since {} · \
         <label><input type=checkbox id=auto> refresh every 5 s</label></p><p id=msg></p>",
        esc(&shared.plan.file),
        when(shared.started),
    );
    let (q, problem) = match f.query() {
        Ok(q) => (q, None),
        Err(m) => (
            RunQuery {
                limit: PAGE,
                ..RunQuery::default()
            },
            Some(m),
        ),
    };
    streams_table(&mut h, &shared).await;
    h.push_str("<h2>Runs</h2>");
    filters_form(&mut h, &shared, &f).await;
    if let Some(m) = problem {
        let _ = write!(h, "<p class=err>{}</p>", esc(&m));
    }
    match shared.state.find_runs(&q).await {
        Ok((runs, total)) => runs_table(&mut h, &shared, runs, total, &q, &f),
        Err(e) => {
            let _ = write!(
                h,
                "<p class=err>cannot read the run history: {}</p>",
                esc(&shared.plan.secrets.redact(&e.to_string()))
            );
        }
    }
    h.push_str(
        "<p><a href=\"/metrics\">/metrics</a> · <a href=\"/api/runs\">/api/runs</a> · \
         <a href=\"/api/streams\">/api/streams</a> · <a href=\"/windows\">windows</a> · \
         <a href=\"/healthz\">/healthz</a></p>",
    );
    html(StatusCode::OK, "Monitor", &h)
}

async fn streams_table(h: &mut String, shared: &Shared) {
    if shared.plan.streams.is_empty() {
        return;
    }
    let positions = shared.state.positions().await.unwrap_or_default();
    let metrics = shared.metrics.lock().map(|m| m.clone()).unwrap_or_default();
    h.push_str(
        "<h2>Streams</h2><table><tr><th>stream</th><th>mode</th><th>schedule</th><th>next run</th>\
         <th>position</th><th>runs ok / failed</th><th>rows written</th><th>last error</th><th></th></tr>",
    );
    for s in &shared.plan.streams {
        let m = metrics.get(&s.name).cloned().unwrap_or_default();
        let pos = positions
            .iter()
            .find(|p| p.0 == s.name)
            .map(|p| p.1.display_value())
            .unwrap_or_default();
        let next = if m.running {
            "<span class=InProgress>running</span>".to_string()
        } else {
            m.next.map(when).unwrap_or_default()
        };
        let runs_link = format!("/?name={}", enc(&s.name));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{next}</td><td>{}</td>\
             <td class=n>{} / {}</td><td class=n>{}</td><td class=err>{}</td>\
             <td><a href=\"{}\">runs</a> {}</td></tr>",
            esc(&s.name),
            s.mode.as_str(),
            esc(&match &s.window {
                Some(w) => format!("windows of {} min", w.size_secs / 60),
                None => s.schedule.clone().unwrap_or_else(|| "–".to_string()),
            }),
            esc(&pos),
            m.succeeded,
            m.failed,
            m.rows_written,
            esc(&shared
                .plan
                .secrets
                .redact(m.last_error.as_deref().unwrap_or(""))),
            esc(&runs_link),
            match s.window {
                Some(_) => "<a href=\"/windows\">windows</a>".to_string(),
                None => button(
                    &format!("/api/streams/{}/trigger", enc(&s.name)),
                    "Run now",
                    None,
                ),
            },
        );
    }
    h.push_str("</table>");
}

async fn filters_form(h: &mut String, shared: &Shared, f: &Filters) {
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    let status = f.status.as_deref().and_then(parse_status);
    let _ = write!(
        h,
        "<form class=filters method=get action=\"/\">\
         <label>status<select name=status><option value=\"\">any</option>"
    );
    for s in [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::InProgress,
        RunStatus::Skipped,
    ] {
        let _ = write!(
            h,
            "<option{}>{}</option>",
            if status == Some(s) { " selected" } else { "" },
            s.as_str()
        );
    }
    // Names to pick from: the config's streams and the pipelines of recent runs.
    let mut names: Vec<String> = shared.plan.streams.iter().map(|s| s.name.clone()).collect();
    if let Ok(recent) = shared.state.runs(200).await {
        for r in recent {
            if let Some(p) = r.pipeline()
                && !names.iter().any(|n| n == p)
            {
                names.push(p.to_string());
            }
        }
    }
    let _ = write!(
        h,
        "</select></label><label>stream or pipeline<input name=name list=names value=\"{}\"></label>\
         <datalist id=names>",
        v(&f.name)
    );
    for n in &names {
        let _ = write!(h, "<option value=\"{}\">", esc(n));
    }
    let _ = write!(
        h,
        "</datalist><label>started from (UTC)<input name=from type=datetime-local step=1 value=\"{}\"></label>\
         <label>to (UTC)<input name=to type=datetime-local step=1 value=\"{}\"></label>\
         <label>per page<input name=limit type=number min=1 max={MAX_PAGE} value=\"{}\" size=4></label>\
         <button type=submit>Filter</button> <a href=\"/\">clear</a></form>",
        v(&f.from),
        v(&f.to),
        esc(f.limit.as_deref().unwrap_or(&PAGE.to_string())),
    );
}

fn runs_table(
    h: &mut String,
    shared: &Shared,
    runs: Vec<RunRecord>,
    total: usize,
    q: &RunQuery,
    f: &Filters,
) {
    h.push_str(
        "<table id=runs><tr><th>run</th><th>status</th><th>what</th><th>trigger</th><th>started</th>\
         <th>duration</th><th>rows read</th><th>rows written</th><th>error</th></tr>",
    );
    if runs.is_empty() {
        h.push_str("<tr><td colspan=9>no runs match</td></tr>");
    }
    for r in runs {
        let r = shown(r, shared);
        let (read, written) = rows(&r);
        let _ = write!(
            h,
            "<tr><td><a href=\"/runs/{}\"><code>{}</code></a></td><td class={}>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{read}</td><td class=n>{written}</td>\
             <td class=err>{}</td></tr>",
            enc(&r.run_id),
            esc(r.run_id.get(..8).unwrap_or(&r.run_id)),
            r.status.as_str(),
            r.status.as_str(),
            esc(&kind(&r)),
            esc(&trigger(&r)),
            when(r.started_at),
            duration(r.started_at, r.finished_at),
            esc(&first_error(&r)),
        );
    }
    h.push_str("</table>");
    // Paging links keep the filters.
    let link = |offset: usize| {
        let mut params = vec![];
        for (k, v) in [
            ("status", &f.status),
            ("name", &f.name),
            ("from", &f.from),
            ("to", &f.to),
            ("limit", &f.limit),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                params.push(format!("{k}={}", enc(v)));
            }
        }
        params.push(format!("offset={offset}"));
        format!("/?{}", params.join("&"))
    };
    let first = if total == 0 { 0 } else { q.offset + 1 };
    let last = (q.offset + q.limit).min(total);
    let _ = write!(
        h,
        "<p class=pager><span>runs {first}–{last} of {total}</span>"
    );
    if q.offset > 0 {
        let _ = write!(
            h,
            "<a href=\"{}\">← newer</a>",
            esc(&link(q.offset.saturating_sub(q.limit)))
        );
    }
    if last < total {
        let _ = write!(h, "<a href=\"{}\">older →</a>", esc(&link(last)));
    }
    h.push_str("</p>");
}

fn json_block(title: &str, v: &Option<Value>) -> String {
    match v {
        Some(v) if !v.is_null() => format!(
            "<details><summary>{}</summary><pre>{}</pre></details>",
            esc(title),
            esc(&serde_json::to_string_pretty(v).unwrap_or_default())
        ),
        _ => String::new(),
    }
}

async fn run_page(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let r = match shared.state.run(&id).await {
        Ok(Some(r)) => shown(r, &shared),
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                "No such run",
                &format!(
                    "<h1><a href=\"/\">highwater</a></h1><p class=err>no run {} (see the <a href=\"/\">run list</a>)</p>",
                    esc(&id)
                ),
            );
        }
        Err(e) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                &format!(
                    "<p class=err>{}</p>",
                    esc(&shared.plan.secrets.redact(&e.to_string()))
                ),
            );
        }
    };
    let mut h = String::new();
    let (read, written) = rows(&r);
    let _ = write!(
        h,
        "<h1><a href=\"/\">highwater</a></h1><p class=sub><a href=\"/\">← all runs</a> · \
         <label><input type=checkbox id=auto> refresh every 5 s</label></p>\
         <h2>{} <span class={}>{}</span></h2><p id=msg></p><dl>\
         <dt>run</dt><dd><code>{}</code></dd><dt>trigger</dt><dd>{}</dd>\
         <dt>started</dt><dd>{}</dd><dt>finished</dt><dd>{}</dd><dt>duration</dt><dd>{}</dd>\
         <dt>rows</dt><dd>{read} read, {written} written</dd>",
        esc(&kind(&r)),
        r.status.as_str(),
        r.status.as_str(),
        esc(&r.run_id),
        esc(&trigger(&r)),
        when(r.started_at),
        r.finished_at.map(when).unwrap_or_else(|| "–".into()),
        duration(r.started_at, r.finished_at),
    );
    let info = r.info.clone().unwrap_or_default();
    if let Some(of) = info.get("rerunOf").and_then(|v| v.as_str()) {
        let _ = write!(
            h,
            "<dt>rerun of</dt><dd><a href=\"/runs/{}\"><code>{}</code></a></dd>",
            enc(of),
            esc(of)
        );
    }
    if let Some(p) = info
        .get("parameters")
        .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
    {
        let _ = write!(
            h,
            "<dt>parameters</dt><dd><pre>{}</pre></dd>",
            esc(&serde_json::to_string_pretty(p).unwrap_or_default())
        );
    }
    h.push_str("</dl><p>");
    // The buttons this run allows.
    let running_here = shared
        .tasks
        .lock()
        .map(|t| t.get(&r.run_id).is_some_and(|h| !h.done.is_finished()))
        .unwrap_or(false);
    if r.status == RunStatus::InProgress && running_here {
        h.push_str(&button(
            &format!("/api/runs/{}/cancel", enc(&r.run_id)),
            "Cancel",
            Some("Cancel this run?"),
        ));
    }
    if r.pipeline().is_some() && r.status != RunStatus::InProgress {
        h.push_str(&button(
            &format!("/api/runs/{}/rerun", enc(&r.run_id)),
            "Rerun",
            None,
        ));
        if r.status == RunStatus::Failed {
            h.push(' ');
            h.push_str(&button(
                &format!("/api/runs/{}/rerun?from_failed=true", enc(&r.run_id)),
                "Rerun from failed",
                None,
            ));
        }
    }
    if r.pipeline().is_none() {
        let mut names: Vec<&str> = r.streams.iter().map(|s| s.stream.as_str()).collect();
        if let Some(n) = info.get("stream").and_then(|v| v.as_str())
            && !names.contains(&n)
        {
            names.push(n);
        }
        for n in names {
            if shared.plan.streams.iter().any(|s| s.name == n) {
                h.push(' ');
                h.push_str(&button(
                    &format!("/api/streams/{}/trigger", enc(n)),
                    &format!("Run {n} now"),
                    None,
                ));
            }
        }
    }
    let _ = write!(
        h,
        "</p><h3>{}</h3><table id=activities><tr><th>{}</th><th>type</th><th>status</th>\
         <th>started</th><th>duration</th><th>rows read</th><th>rows written</th><th>details</th></tr>",
        if r.pipeline().is_some() {
            "Activity runs"
        } else {
            "Streams"
        },
        if r.pipeline().is_some() {
            "activity"
        } else {
            "stream"
        },
    );
    if r.streams.is_empty() {
        h.push_str("<tr><td colspan=8>nothing recorded yet</td></tr>");
    }
    for s in &r.streams {
        activity_row(&mut h, s);
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<p><a href=\"/api/runs/{}\">this run as JSON</a></p>",
        enc(&r.run_id)
    );
    html(StatusCode::OK, &format!("Run {}", r.run_id), &h)
}

fn activity_row(h: &mut String, s: &StreamRun) {
    let mut details = String::new();
    if let Some(e) = &s.error {
        let _ = write!(details, "<div class=err>{}</div>", esc(e));
    }
    if let (Some(f), Some(t)) = (&s.watermark_from, &s.watermark_to) {
        let _ = write!(details, "<div>position {} → {}</div>", esc(f), esc(t));
    } else if let Some(t) = &s.watermark_to {
        let _ = write!(details, "<div>position → {}</div>", esc(t));
    }
    if s.full_reload {
        details.push_str("<div>full load</div>");
    }
    for o in &s.outputs {
        let _ = write!(details, "<div>→ <code>{}</code></div>", esc(o));
    }
    for n in &s.notes {
        let _ = write!(details, "<div>note: {}</div>", esc(n));
    }
    details.push_str(&json_block("input", &s.input));
    details.push_str(&json_block("output", &s.output));
    let _ = write!(
        h,
        "<tr><td>{}</td><td>{}</td><td class={}>{}</td><td>{}</td><td class=n>{}</td>\
         <td class=n>{}</td><td class=n>{}</td><td>{details}</td></tr>",
        esc(&s.stream),
        esc(&s.mode),
        s.status.as_str(),
        s.status.as_str(),
        when(s.started_at),
        duration(s.started_at, s.finished_at),
        s.rows_read,
        s.rows_written,
    );
}

// ---------------------------------------------------------------- metrics

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let metrics = shared.metrics.lock().map(|m| m.clone()).unwrap_or_default();
    let mut out = String::new();
    let families: [(&str, &str, &str); 7] = [
        (
            "highwater_stream_runs_total",
            "counter",
            "Runs of a stream by status.",
        ),
        (
            "highwater_stream_rows_read_total",
            "counter",
            "Rows read by a stream's runs.",
        ),
        (
            "highwater_stream_rows_written_total",
            "counter",
            "Rows written by a stream's runs.",
        ),
        (
            "highwater_stream_last_success_timestamp_seconds",
            "gauge",
            "When a stream last succeeded (Unix time).",
        ),
        (
            "highwater_stream_last_run_duration_seconds",
            "gauge",
            "Wall time of a stream's last run.",
        ),
        (
            "highwater_stream_running",
            "gauge",
            "1 while a stream runs.",
        ),
        (
            "highwater_stream_next_run_timestamp_seconds",
            "gauge",
            "A stream's next scheduled run (Unix time).",
        ),
    ];
    for (name, kind, help) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (stream, m) in &metrics {
            let l = label(stream);
            match name {
                "highwater_stream_runs_total" => {
                    let _ = writeln!(
                        out,
                        "{name}{{stream=\"{l}\",status=\"succeeded\"}} {}",
                        m.succeeded
                    );
                    let _ = writeln!(
                        out,
                        "{name}{{stream=\"{l}\",status=\"failed\"}} {}",
                        m.failed
                    );
                }
                "highwater_stream_rows_read_total" => {
                    let _ = writeln!(out, "{name}{{stream=\"{l}\"}} {}", m.rows_read);
                }
                "highwater_stream_rows_written_total" => {
                    let _ = writeln!(out, "{name}{{stream=\"{l}\"}} {}", m.rows_written);
                }
                "highwater_stream_last_success_timestamp_seconds" => {
                    if let Some(t) = m.last_success {
                        let _ = writeln!(
                            out,
                            "{name}{{stream=\"{l}\"}} {}",
                            t.timestamp_millis() as f64 / 1000.0
                        );
                    }
                }
                "highwater_stream_last_run_duration_seconds" => {
                    let _ = writeln!(out, "{name}{{stream=\"{l}\"}} {}", m.last_duration_secs);
                }
                "highwater_stream_running" => {
                    let _ = writeln!(out, "{name}{{stream=\"{l}\"}} {}", u8::from(m.running));
                }
                _ => {
                    if let Some(t) = m.next {
                        let _ = writeln!(out, "{name}{{stream=\"{l}\"}} {}", t.timestamp());
                    }
                }
            }
        }
    }
    super::windows_view::metrics(&shared, &mut out).await;
    cdc_metrics(&shared, &mut out).await;
    lag_metrics(&shared, &mut out).await;
    verify_metrics(&mut out, &metrics);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `mode: cdc` streams, what the log holds for them: on PostgreSQL the WAL
/// the stream's replication slot retains (a slot left behind grows the
/// WAL), on MariaDB the binlog bytes after the stream's committed position
/// (what its next run reads). A source that does not answer within 5 s is
/// left out.
async fn cdc_metrics(shared: &Shared, out: &mut String) {
    use highwater_core::{ConnKind, Position};
    let (mut wal, mut binlog) = (Vec::new(), Vec::new());
    for s in &shared.plan.streams {
        if s.mode != highwater_config::Mode::Cdc {
            continue;
        }
        let conn = &shared.plan.connections[&s.from];
        let url = conn.url.expose();
        let ask = async {
            match conn.kind {
                ConnKind::Postgres => {
                    let bytes = highwater_connectors::postgres::cdc::retained_bytes(url, &s.name)
                        .await
                        .ok()??;
                    Some((&mut wal, bytes.max(0) as u64))
                }
                ConnKind::Mysql => {
                    let Ok(Some(Position::Version(v))) = shared.state.position(&s.name).await
                    else {
                        return None;
                    };
                    let bytes = highwater_connectors::mysql::cdc::behind_bytes(url, &v)
                        .await
                        .ok()??;
                    Some((&mut binlog, bytes))
                }
                _ => None,
            }
        };
        if let Ok(Some((into, bytes))) =
            tokio::time::timeout(std::time::Duration::from_secs(5), ask).await
        {
            into.push((label(&s.name), bytes));
        }
    }
    for (name, help, of) in [
        (
            "highwater_cdc_slot_retained_wal_bytes",
            "WAL a cdc stream's replication slot retains.",
            wal,
        ),
        (
            "highwater_cdc_binlog_behind_bytes",
            "Binlog bytes written after a cdc stream's committed position.",
            binlog,
        ),
    ] {
        if of.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (stream, bytes) in of {
            let _ = writeln!(out, "{name}{{stream=\"{stream}\"}} {bytes}");
        }
    }
}

/// What [`lag_metrics`] last computed: each stream's lag asks its source.
static LAG_CACHE: super::Cached<Vec<(String, &'static str, f64)>> = super::Cached::new();

/// How far each stream's committed position is behind its source now:
/// watermark streams, the newest cursor in the source less the position's
/// (`highwater_stream_lag_seconds` for time cursors,
/// `highwater_stream_lag_units` for integers); change tracking, the
/// newest version less the position's (`highwater_stream_lag_versions`).
/// At most 30 s old; a source that does not answer within 5 s is left out.
async fn lag_metrics(shared: &Shared, out: &mut String) {
    let lags = match LAG_CACHE.fresh() {
        Some(l) => l,
        None => {
            let mut l = Vec::new();
            for s in &shared.plan.streams {
                let ask = stream_lag(shared, s);
                if let Ok(Some((unit, v))) =
                    tokio::time::timeout(std::time::Duration::from_secs(5), ask).await
                {
                    l.push((s.name.clone(), unit, v));
                }
            }
            LAG_CACHE.store(l.clone());
            l
        }
    };
    for unit in ["seconds", "units", "versions"] {
        let of: Vec<_> = lags.iter().filter(|(_, u, _)| *u == unit).collect();
        if of.is_empty() {
            continue;
        }
        let name = format!("highwater_stream_lag_{unit}");
        let _ = writeln!(
            out,
            "# HELP {name} How far the stream's committed position is behind its source.\n# TYPE {name} gauge"
        );
        for (stream, _, v) in of {
            let _ = writeln!(out, "{name}{{stream=\"{}\"}} {v}", label(stream));
        }
    }
}

/// One stream's lag: (unit, amount), when its mode has one and the source
/// answers.
async fn stream_lag(
    shared: &Shared,
    s: &highwater_config::StreamPlan,
) -> Option<(&'static str, f64)> {
    use highwater_config::Mode;
    use highwater_core::Position;
    if s.window.is_some() {
        return None;
    }
    let conn = &shared.plan.connections[&s.from];
    let position = shared.state.position(&s.name).await.ok()?;
    match (s.mode, position) {
        (Mode::Watermark, Some(Position::Watermark(w))) => {
            let source = highwater_connectors::source(&conn.kind, conn.url.expose())
                .await
                .ok()?;
            let newest = source.newest(&s.relation, &s.cursor).await.ok()??;
            let (amount, unit) = match &w.value {
                Some(v) => newest.ahead_of(v)?,
                None => return None,
            };
            Some((unit, amount.max(0.0)))
        }
        (Mode::ChangeTracking, Some(Position::Version(v))) => {
            let status = highwater_connectors::change_tracking::status_after(
                &conn.kind,
                conn.url.expose(),
                &s.relation,
                Some(v.version),
            )
            .await
            .ok()?;
            let current = status.current_version?;
            Some(("versions", (current - v.version).max(0) as f64))
        }
        _ => None,
    }
}

/// The last scheduled verification of each stream with `verify:`.
fn verify_metrics(
    out: &mut String,
    metrics: &std::collections::BTreeMap<String, super::StreamMetrics>,
) {
    let done: Vec<(&String, &super::VerifyMetrics)> = metrics
        .iter()
        .filter_map(|(s, m)| m.verify.as_ref().map(|v| (s, v)))
        .collect();
    if done.is_empty() {
        return;
    }
    // One gauge per stream for each of these; `keys` has a `kind` label.
    type Value = fn(&super::VerifyMetrics) -> String;
    let one: [(&str, &str, Value); 2] = [
        (
            "highwater_stream_verify_equal",
            "1 when the last verification found the target equal to its source (0: differs or failed).",
            |v| u8::from(v.equal).to_string(),
        ),
        (
            "highwater_stream_verify_failed",
            "1 when the last verification could not compare.",
            |v| u8::from(v.failed).to_string(),
        ),
    ];
    let after: [(&str, &str, Value); 2] = [
        (
            "highwater_stream_verify_timestamp_seconds",
            "When the last verification finished (Unix time).",
            |v| v.at.timestamp().to_string(),
        ),
        (
            "highwater_stream_verify_duration_seconds",
            "Wall time of the last verification.",
            |v| v.seconds.to_string(),
        ),
    ];
    let gauges = |out: &mut String, list: &[(&str, &str, Value)]| {
        for (name, help, value) in list {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (s, v) in &done {
                let _ = writeln!(out, "{name}{{stream=\"{}\"}} {}", label(s), value(v));
            }
        }
    };
    gauges(out, &one);
    let _ = writeln!(
        out,
        "# HELP highwater_stream_verify_keys Keys the last verification found missing, extra or different.\n# TYPE highwater_stream_verify_keys gauge"
    );
    for (s, v) in &done {
        for (kind, n) in [
            ("missing", v.missing),
            ("extra", v.extra),
            ("different", v.different),
        ] {
            let _ = writeln!(
                out,
                "highwater_stream_verify_keys{{stream=\"{}\",kind=\"{kind}\"}} {n}",
                label(s)
            );
        }
    }
    gauges(out, &after);
}
