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
    verify_metrics(&mut out, &metrics);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
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
    let _ = writeln!(
        out,
        "# HELP highwater_stream_verify_equal 1 when the last verification found the target equal to its source (0: differs or failed).\n# TYPE highwater_stream_verify_equal gauge"
    );
    for (s, v) in &done {
        let _ = writeln!(
            out,
            "highwater_stream_verify_equal{{stream=\"{}\"}} {}",
            label(s),
            u8::from(v.equal)
        );
    }
    let _ = writeln!(
        out,
        "# HELP highwater_stream_verify_failed 1 when the last verification could not compare.\n# TYPE highwater_stream_verify_failed gauge"
    );
    for (s, v) in &done {
        let _ = writeln!(
            out,
            "highwater_stream_verify_failed{{stream=\"{}\"}} {}",
            label(s),
            u8::from(v.failed)
        );
    }
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
    let _ = writeln!(
        out,
        "# HELP highwater_stream_verify_timestamp_seconds When the last verification finished (Unix time).\n# TYPE highwater_stream_verify_timestamp_seconds gauge"
    );
    for (s, v) in &done {
        let _ = writeln!(
            out,
            "highwater_stream_verify_timestamp_seconds{{stream=\"{}\"}} {}",
            label(s),
            v.at.timestamp()
        );
    }
    let _ = writeln!(
        out,
        "# HELP highwater_stream_verify_duration_seconds Wall time of the last verification.\n# TYPE highwater_stream_verify_duration_seconds gauge"
    );
    for (s, v) in &done {
        let _ = writeln!(
            out,
            "highwater_stream_verify_duration_seconds{{stream=\"{}\"}} {}",
            label(s),
            v.seconds
        );
    }
}
