//! The monitoring page, `/metrics` and `/api/runs`.

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/api/runs", get(api_runs))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Prometheus label value escaping.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn page(State(shared): State<Arc<Shared>>) -> Response {
    let runs = shared.state.runs(20).await.unwrap_or_default();
    let positions = shared.state.positions().await.unwrap_or_default();
    let metrics = shared.metrics.lock().map(|m| m.clone()).unwrap_or_default();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5>\
         <title>highwater</title><style>body{{font:14px system-ui,sans-serif;margin:2em}}\
         table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}}\
         .Failed{{color:#b00}}.Succeeded{{color:#070}}.InProgress{{color:#a60}}</style></head><body>\
         <h1>highwater</h1><p>config {} · serving since {}</p><h2>Streams</h2><table>\
         <tr><th>stream</th><th>mode</th><th>schedule</th><th>next run</th><th>position</th>\
         <th>runs ok / failed</th><th>rows written</th><th>last error</th></tr>",
        esc(&shared.plan.file),
        shared.started.format("%Y-%m-%d %H:%M:%S UTC")
    );
    for s in &shared.plan.streams {
        let m = metrics.get(&s.name).cloned().unwrap_or_default();
        let pos = positions
            .iter()
            .find(|p| p.0 == s.name)
            .map(|p| p.1.display_value())
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td class=Failed>{}</td></tr>",
            esc(&s.name),
            s.mode.as_str(),
            esc(s.schedule.as_deref().unwrap_or("–")),
            if m.running {
                "running".to_string()
            } else {
                m.next
                    .map(|t| t.format("%H:%M:%S").to_string())
                    .unwrap_or_default()
            },
            esc(&pos),
            m.succeeded,
            m.failed,
            m.rows_written,
            esc(m.last_error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table><h2>Recent runs</h2><table><tr><th>run</th><th>started</th><th>status</th><th>streams</th><th>rows</th></tr>");
    for r in &runs {
        let names: Vec<&str> = r.streams.iter().map(|s| s.stream.as_str()).collect();
        let rows: u64 = r.streams.iter().map(|s| s.rows_written).sum();
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td class={}>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.run_id),
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.status.as_str(),
            r.status.as_str(),
            esc(&names.join(", ")),
            rows
        );
    }
    h.push_str("</table><p><a href=/metrics>/metrics</a> · <a href=/api/runs>/api/runs</a></p></body></html>");
    Html(h).into_response()
}

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
    cdc_metrics(&shared, &mut out).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `mode: cdc` streams: the WAL their replication slot retains (a slot
/// left behind grows the WAL). A source that does not answer within 5 s
/// is left out.
async fn cdc_metrics(shared: &Shared, out: &mut String) {
    let streams: Vec<_> = shared
        .plan
        .streams
        .iter()
        .filter(|s| s.mode == highwater_config::Mode::Cdc)
        .collect();
    if streams.is_empty() {
        return;
    }
    let name = "highwater_cdc_slot_retained_wal_bytes";
    let _ = writeln!(
        out,
        "# HELP {name} WAL a cdc stream's replication slot retains.\n# TYPE {name} gauge"
    );
    for s in streams {
        let url = shared.plan.connections[&s.from].url.expose();
        let ask = highwater_connectors::postgres::cdc::retained_bytes(url, &s.name);
        if let Ok(Ok(Some(bytes))) =
            tokio::time::timeout(std::time::Duration::from_secs(5), ask).await
        {
            let _ = writeln!(out, "{name}{{stream=\"{}\"}} {bytes}", label(&s.name));
        }
    }
}

async fn api_runs(State(shared): State<Arc<Shared>>) -> Response {
    match shared.state.runs(50).await {
        Ok(runs) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&runs).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            shared.plan.secrets.redact(&e.to_string()),
        )
            .into_response(),
    }
}
