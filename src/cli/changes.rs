//! `highwater changes status [STREAM…]` and `highwater changes disable
//! STREAM`: inspect or remove the change tracking that the first run of a
//! `change_tracking` stream set up in its source database (triggers, the
//! change log `_hw_ct_<table>`, the table's row in `_highwater_ct`).
//!
//! Disabling does not touch the stream's position; its next run sets change
//! tracking up again, as a new generation, and reloads the table in full
//! (the run says so). Every other change-tracking stream on the same table
//! reloads in full as well (its position belongs to the removed change
//! log), so `disable` refuses while such streams exist, unless `--force`.

use std::path::Path;

use highwater_config::{Mode, Plan, StreamPlan};
use highwater_core::{ConnKind, Position, Relation};

use super::output;

fn ct_streams<'a>(plan: &'a Plan, names: &[String]) -> Result<Vec<&'a StreamPlan>, String> {
    let mut out = Vec::new();
    for n in names {
        match plan.streams.iter().find(|s| &s.name == n) {
            Some(s) if matches!(s.mode, Mode::ChangeTracking | Mode::Cdc) => out.push(s),
            Some(s) => {
                return Err(format!(
                    "stream {n} ({}:{}) has mode {}, not change_tracking or cdc",
                    plan.file,
                    s.line,
                    s.mode.as_str()
                ));
            }
            None => {
                let known: Vec<&str> = plan.streams.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "{}: unknown stream {n} (streams: {})",
                    plan.file,
                    known.join(", ")
                ));
            }
        }
    }
    if names.is_empty() {
        out.extend(
            plan.streams
                .iter()
                .filter(|s| matches!(s.mode, Mode::ChangeTracking | Mode::Cdc)),
        );
    }
    Ok(out)
}

/// Whether two relations may be the same table (a missing schema matches
/// any: the database's default one is not known here).
fn same_table(a: &Relation, b: &Relation) -> bool {
    match (a, b) {
        (
            Relation::Table {
                schema: sa,
                name: na,
            },
            Relation::Table {
                schema: sb,
                name: nb,
            },
        ) => na == nb && (sa.is_none() || sb.is_none() || sa == sb),
        _ => false,
    }
}

/// The other change-tracking streams of the config that read the same table
/// of the same database as `s`.
fn sharing<'a>(plan: &'a Plan, s: &StreamPlan) -> Vec<&'a StreamPlan> {
    let c = &plan.connections[&s.from];
    plan.streams
        .iter()
        .filter(|o| o.name != s.name && o.mode == Mode::ChangeTracking)
        .filter(|o| {
            let oc = &plan.connections[&o.from];
            (o.from == s.from || (oc.kind == c.kind && oc.url.expose() == c.url.expose()))
                && same_table(&o.relation, &s.relation)
        })
        .collect()
}

pub async fn status(config: &Path, streams: Vec<String>) -> i32 {
    let plan = match super::load_plan(config) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let selected = match ct_streams(&plan, &streams) {
        Ok(s) => s,
        Err(m) => {
            output::error(&m);
            return 2;
        }
    };
    if selected.is_empty() {
        println!("no change_tracking streams in {}", config.display());
        return 0;
    }
    // Positions tell whether each stream's next run is a delta; without a
    // reachable state store the status of the objects is still shown.
    let state = highwater_engine::open_state(&plan).await.ok();
    let mut code = 0;
    for s in selected {
        let c = &plan.connections[&s.from];
        if s.mode == Mode::Cdc {
            let st = match c.kind {
                ConnKind::Mysql => {
                    highwater_connectors::mysql::cdc::status(c.url.expose(), &s.name).await
                }
                _ => highwater_connectors::postgres::cdc::status(c.url.expose(), &s.name).await,
            };
            // The binlog keeps nothing per stream: its position is in the state.
            let at = match (&c.kind, &state) {
                (ConnKind::Mysql, Some(state)) => match state.position(&s.name).await {
                    Ok(Some(Position::Version(v))) => {
                        match highwater_connectors::mysql::cdc::position_status(c.url.expose(), &v)
                            .await
                        {
                            Ok(p) => format!("; {p}"),
                            Err(e) => format!("; the stream's position could not be read: {e}"),
                        }
                    }
                    Ok(_) => {
                        "; this stream has no position yet: its next run loads in full".to_string()
                    }
                    Err(_) => String::new(),
                },
                _ => String::new(),
            };
            match st {
                Ok(line) => println!("stream {} ({}): {line}{at}", s.name, s.relation),
                Err(e) => {
                    output::error(&plan.secrets.redact(&format!("stream {}: {e}", s.name)));
                    code = code.max(e.exit_code());
                }
            }
            continue;
        }
        match highwater_connectors::change_tracking::status(&c.kind, c.url.expose(), &s.relation)
            .await
        {
            Ok(st) => {
                let position = match &state {
                    Some(state) => state.position(&s.name).await.ok().flatten(),
                    None => None,
                };
                let next = match position {
                    Some(Position::Version(v)) => match (&v.generation, &st.generation) {
                        (Some(g), Some(cur)) if g == cur && st.complete() => format!(
                            "; this stream is at version {} of this generation",
                            v.version
                        ),
                        (Some(g), _) => format!(
                            "; this stream's position is of generation {g}: its next run reloads in full"
                        ),
                        (None, _) => "; this stream's position predates generations: its next run reloads in full".to_string(),
                    },
                    _ => String::new(),
                };
                println!("stream {} ({}): {st}{next}", s.name, s.relation)
            }
            Err(e) => {
                output::error(&plan.secrets.redact(&format!("stream {}: {e}", s.name)));
                code = code.max(e.exit_code());
            }
        }
    }
    code
}

pub async fn disable(config: &Path, stream: &str, force: bool) -> i32 {
    let plan = match super::load_plan(config) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let s = match ct_streams(&plan, &[stream.to_string()]) {
        Ok(s) => s[0],
        Err(m) => {
            output::error(&m);
            return 2;
        }
    };
    if s.mode == Mode::Cdc {
        return disable_cdc(&plan, s).await;
    }
    let others = sharing(&plan, s);
    let list = others
        .iter()
        .map(|o| format!("stream {} ({})", o.name, plan.place(o)))
        .collect::<Vec<_>>()
        .join(", ");
    if !others.is_empty() && !force {
        output::error(&format!(
            "stream {}: change tracking on {} is shared with {list}; removing it would make \
             {} reload in full. Nothing removed. Run `highwater changes disable {} --force` to remove it anyway",
            s.name,
            s.relation,
            if others.len() == 1 {
                "that stream"
            } else {
                "those streams"
            },
            s.name
        ));
        return 2;
    }
    let c = &plan.connections[&s.from];
    match highwater_connectors::change_tracking::disable(&c.kind, c.url.expose(), &s.relation).await
    {
        Ok(removed) if removed.is_empty() => {
            println!(
                "stream {}: change tracking was not set up on {}; nothing to remove",
                s.name, s.relation
            );
            0
        }
        Ok(removed) => {
            println!(
                "stream {}: removed change tracking from {}: {}",
                s.name,
                s.relation,
                removed.join(", ")
            );
            println!("The next run sets it up again and reloads the table in full.");
            if !others.is_empty() {
                println!(
                    "Also tracking {} (--force): {list} will reload in full on {} next run.",
                    s.relation,
                    if others.len() == 1 { "its" } else { "their" }
                );
            }
            0
        }
        Err(e) => {
            output::error(&plan.secrets.redact(&format!("stream {}: {e}", s.name)));
            e.exit_code()
        }
    }
}

/// `mode: cdc` on MariaDB: the binlog keeps nothing per reader, so
/// disabling forgets the stream's position; its next run reloads in full.
async fn disable_binlog(plan: &Plan, s: &StreamPlan) -> i32 {
    let state = match highwater_engine::open_state(plan).await {
        Ok(st) => st,
        Err(e) => {
            output::error(&plan.secrets.redact(&format!("stream {}: {e}", s.name)));
            return e.exit_code();
        }
    };
    let lock = match state.lock_stream(&s.name).await {
        Ok(l) => l,
        Err(e) => {
            output::error(&plan.secrets.redact(&format!("stream {}: {e}", s.name)));
            return e.exit_code();
        }
    };
    if lock.is_none() {
        output::error(&format!(
            "stream {} is running in another process; disable it when that run ends",
            s.name
        ));
        return 1;
    }
    match state.reset(&s.name).await {
        Ok(_) => {
            println!(
                "stream {}: the binary log holds nothing to remove; forgot the stream's binlog position",
                s.name
            );
            println!("The next run reloads the table in full.");
            0
        }
        Err(e) => {
            output::error(&plan.secrets.redact(&format!("stream {}: {e}", s.name)));
            e.exit_code()
        }
    }
}

/// `mode: cdc`: drop the stream's replication slot and publication; its
/// next run creates them again and reloads in full.
async fn disable_cdc(plan: &Plan, s: &StreamPlan) -> i32 {
    let c = &plan.connections[&s.from];
    if c.kind == ConnKind::Mysql {
        return disable_binlog(plan, s).await;
    }
    match highwater_connectors::postgres::cdc::disable(c.url.expose(), &s.name).await {
        Ok(removed) if removed.is_empty() => {
            println!(
                "stream {}: no replication slot or publication to remove",
                s.name
            );
            0
        }
        Ok(removed) => {
            println!("stream {}: removed {}", s.name, removed.join(", "));
            println!("The next run creates them again and reloads the table in full.");
            0
        }
        Err(e) => {
            output::error(&plan.secrets.redact(&format!("stream {}: {e}", s.name)));
            e.exit_code()
        }
    }
}
