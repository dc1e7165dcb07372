//! `highwater check`: validate the configuration, test every connection
//! ("Test connection"), and describe every stream's table and columns.
//! Exit 2 when the configuration (or a table/column it names) is wrong, 1
//! when a server cannot be reached.

use std::path::Path;

use highwater_config::StateLocation;
use highwater_core::{ConnKind, ErrorKind};
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
    // The state store, as `run` will open it (without creating it).
    let state_place = if plan.state_line > 0 {
        format!("{}:{}", plan.file, plan.state_line)
    } else {
        format!("{} (default)", plan.file)
    };
    let (state_ok, state_what, state_msg) = match &plan.state {
        StateLocation::Sqlite(path) => {
            let what = path.display().to_string();
            match sqlite_state_usable(path) {
                Ok(m) => (true, what, m),
                Err(m) => (false, what, m),
            }
        }
        StateLocation::Postgres(url) => {
            let what = url.to_string();
            match highwater_connectors::check(&ConnKind::Postgres, url.expose()).await {
                Ok(m) => (true, what, m),
                Err(e) => (false, what, plan.secrets.redact(&e.to_string())),
            }
        }
    };
    if !state_ok {
        bump(ErrorKind::State, &mut code);
    }
    let state_what = plan.secrets.redact(&state_what);
    if !json {
        println!(
            "{:<7} state ({state_place}) {state_what}: {}",
            mark(state_ok),
            one_line(&state_msg)
        );
    }
    report.push(
        json!({"state": state_what, "line": plan.state_line, "ok": state_ok, "message": state_msg}),
    );
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
            Ok(info) => match highwater_config::plan::check_columns(s, &from.kind, &info.schema) {
                Ok(()) => (
                    true,
                    format!(
                        "{} columns; mode {}",
                        info.schema.fields().len(),
                        s.mode.as_str()
                    ),
                ),
                Err(e) => {
                    bump(e.kind(), &mut code);
                    (false, plan.secrets.redact(&e.to_string()))
                }
            },
            Err(e) => {
                let k = if e.cause() == Some(highwater_core::Cause::MissingRelation) {
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
        if ok && s.mode == highwater_config::Mode::Cdc {
            let cdc_check = match from.kind {
                ConnKind::Mysql => {
                    highwater_connectors::mysql::cdc::check(from.url.expose(), &s.name).await
                }
                _ => highwater_connectors::postgres::cdc::check(from.url.expose(), &s.name).await,
            };
            let (cdc_ok, cdc_msg) = match cdc_check {
                Ok((true, m)) => (true, m),
                Ok((false, m)) => {
                    bump(ErrorKind::Config, &mut code);
                    (false, m)
                }
                Err(e) => {
                    bump(e.kind(), &mut code);
                    (false, plan.secrets.redact(&e.to_string()))
                }
            };
            if !json {
                println!("{:<7} stream {} cdc: {cdc_msg}", mark(cdc_ok), s.name);
            }
            entry["cdc"] = json!({"ok": cdc_ok, "message": cdc_msg});
        }
        if ok && s.partitions != 1 && from.kind == ConnKind::Mysql {
            let lock =
                highwater_connectors::mysql::check_lock_privilege(from.url.expose(), &s.relation)
                    .await;
            let msg = match lock {
                Ok(None) => None,
                Ok(Some(m)) => Some(m),
                Err(e) => Some(format!(
                    "could not read this role's grants ({}): a partitioned load reads over one \
                     connection when it cannot lock the table",
                    plan.secrets.redact(&e.to_string())
                )),
            };
            if let Some(m) = &msg
                && !json
            {
                println!(
                    "{} stream {} partitions: {m}",
                    output::warning_mark(),
                    s.name
                );
            }
            entry["partitions_warning"] = json!(msg);
        }
        if s.share_partitions && matches!(plan.state, highwater_config::StateLocation::Sqlite(_)) {
            let m = "share_partitions: the state is a SQLite file, so only `highwater serve` \
                     processes on this machine can claim parts; set `state: postgres://…` to \
                     share them across machines";
            if !json {
                println!("{} stream {} {m}", output::warning_mark(), s.name);
            }
            entry["share_partitions_warning"] = json!(m);
        }
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

/// Whether `run` can create or open the SQLite state file at `path`,
/// checked without creating it: the file (if any) opens for writing, and
/// its folder (or the nearest existing ancestor, which `run` creates
/// folders in) is a writable folder.
fn sqlite_state_usable(path: &Path) -> Result<String, String> {
    if path.exists() {
        if !path.is_file() {
            return Err("exists and is not a file".into());
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open for writing: {e}"))?;
    }
    let mut dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.as_os_str().is_empty() {
        dir = ".".into();
    }
    let mut existing = dir.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        return Err(format!(
            "cannot create the folder {}: {} is not a folder",
            dir.display(),
            existing.display()
        ));
    }
    // The folder takes new files (SQLite writes -wal and -shm next to the
    // database): create and remove a probe.
    let probe = existing.join(format!(".highwater-check-{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| format!("cannot write in {}: {e}", existing.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(if path.exists() {
        "SQLite state store is writable".into()
    } else {
        "SQLite state store will be created by the first run".into()
    })
}

/// A message on one line.
fn one_line(m: &str) -> String {
    m.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn mark(ok: bool) -> String {
    output::status_mark(if ok {
        highwater_core::RunStatus::Succeeded
    } else {
        highwater_core::RunStatus::Failed
    })
}
