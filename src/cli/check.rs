//! `highwater check`: validate the configuration, test every connection
//! ("Test connection"), and describe every stream's table and columns.
//! Exit 2 when the configuration (or a table/column it names) is wrong, 1
//! when a server cannot be reached.

use std::path::Path;

use highwater_core::ErrorKind;
use serde_json::json;

use super::output;

pub async fn run(config: &Path, json: bool) -> i32 {
    let plan = match super::load_plan(config) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let mut code = 0;
    let mut report = Vec::new();
    let bump = |k: ErrorKind, code: &mut i32| {
        let c = if k == ErrorKind::Config { 2 } else { 1 };
        *code = (*code).max(c);
    };
    for (name, c) in &plan.connections {
        // A database that streams write into is tested for writing too.
        let is_target = c.kind.is_database() && plan.streams.iter().any(|s| &s.to == name);
        let res = if is_target {
            match highwater_connectors::sink(&c.kind, c.url.expose()).await {
                Ok(sink) => sink.check().await,
                Err(e) => Err(e),
            }
        } else {
            highwater_connectors::check(&c.kind, c.url.expose()).await
        };
        let (ok, msg) = match res {
            Ok(m) => (true, m),
            Err(e) => {
                bump(e.kind(), &mut code);
                (false, plan.secrets.redact(&e.to_string()))
            }
        };
        if !json {
            println!("{:<7} connection {name} ({}): {msg}", mark(ok), c.url);
        }
        report
            .push(json!({"connection": name, "url": c.url.to_string(), "ok": ok, "message": msg}));
    }
    for s in &plan.streams {
        let from = &plan.connections[&s.from];
        let res = async {
            let src = highwater_connectors::source(&from.kind, from.url.expose()).await?;
            src.describe(&s.relation).await
        }
        .await;
        let (ok, msg) = match res {
            Ok(info) => {
                let names: Vec<&str> = info
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                let missing: Vec<String> = s
                    .cursor
                    .iter()
                    .chain(&s.primary_key)
                    .filter(|c| !names.contains(&c.as_str()))
                    .map(|c| format!("column {c} not found"))
                    .collect();
                if missing.is_empty() {
                    (
                        true,
                        format!("{} columns; mode {}", names.len(), s.mode.as_str()),
                    )
                } else {
                    code = code.max(2);
                    (
                        false,
                        format!("{} (columns: {})", missing.join(", "), names.join(", ")),
                    )
                }
            }
            Err(e) => {
                let k = if e.to_string().contains("not found") {
                    ErrorKind::Config
                } else {
                    e.kind()
                };
                bump(k, &mut code);
                (false, plan.secrets.redact(&e.to_string()))
            }
        };
        if !json {
            println!(
                "{:<7} stream {} ({}:{}) {}: {msg}",
                mark(ok),
                s.name,
                plan.file,
                s.line,
                s.relation
            );
        }
        let mut entry = json!({"stream": s.name, "line": s.line, "ok": ok, "message": msg});
        if ok && s.mode == highwater_config::Mode::ChangeTracking {
            let ct = highwater_connectors::change_tracking::status(
                &from.kind,
                from.url.expose(),
                &s.relation,
            )
            .await;
            let (ct_ok, ct_msg) = match &ct {
                Ok(st) => (true, st.to_string()),
                Err(e) => {
                    bump(e.kind(), &mut code);
                    (false, plan.secrets.redact(&e.to_string()))
                }
            };
            if !json {
                println!(
                    "{:<7} stream {} change tracking: {ct_msg}",
                    mark(ct_ok),
                    s.name
                );
            }
            entry["change_tracking"] = match ct {
                Ok(st) => json!({
                    "set_up": st.set_up,
                    "complete": st.complete(),
                    "missing": st.missing,
                    "generation": st.generation,
                    "current_version": st.current_version,
                    "min_valid_version": st.min_valid_version,
                    "log_rows": st.log_rows,
                }),
                Err(_) => json!({"error": ct_msg}),
            };
        }
        report.push(entry);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if code == 0 {
        println!(
            "configuration {} is valid; every connection answered",
            plan.file
        );
    }
    code
}

fn mark(ok: bool) -> String {
    output::status_mark(if ok {
        highwater_core::RunStatus::Succeeded
    } else {
        highwater_core::RunStatus::Failed
    })
}
