//! `highwater verify [STREAM…] [--json] [--repair]`.

use std::path::Path;

use highwater_engine::verify::{StreamVerify, VerifyOptions, verify_streams};

use super::output;

/// Keys listed per kind in the text output (`--json` lists all).
const SHOWN: usize = 10;

pub async fn run(config: &Path, streams: Vec<String>, repair: bool, json: bool) -> i32 {
    if repair && streams.len() != 1 {
        output::error("--repair takes exactly one stream: `highwater verify --repair STREAM`");
        return 2;
    }
    let (plan, state) = match super::load_plan_and_state(config).await {
        Ok(ps) => ps,
        Err(code) => return code,
    };
    let opts = VerifyOptions { streams, repair };
    let results = match verify_streams(&plan, state, &opts).await {
        Ok(r) => r,
        Err(e) => {
            output::error(&plan.secrets.redact(&e.to_string()));
            return e.exit_code();
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).unwrap_or_default()
        );
    } else {
        for r in &results {
            print_text(r);
        }
    }
    for r in results.iter().filter(|r| r.error.is_some()) {
        output::error(r.error.as_deref().unwrap_or_default());
    }
    StreamVerify::exit_code(&results)
}

fn print_text(r: &StreamVerify) {
    let mark = match (&r.error, r.equal()) {
        (Some(_), _) => "FAILED",
        (None, true) => "equal",
        (None, false) => "DIFFERS",
    };
    let pos = r.position.as_deref().unwrap_or("none");
    println!(
        "{mark:<7} {} [{}] → {} (position {pos}): {} rows compared, {} missing, {} extra, {} different ({:.1} s)",
        r.stream,
        r.mode,
        r.target,
        r.compared,
        r.missing_count,
        r.extra_count,
        r.different_count,
        r.seconds
    );
    if r.not_due > 0 {
        println!(
            "          {} source row(s) past the position (not yet due) left out",
            r.not_due
        );
    }
    if let Some(rep) = &r.repaired {
        println!(
            "          repaired: {} row(s) re-copied, {} key(s) deleted (attempt {})",
            rep.upserted, rep.deleted, rep.attempt
        );
    }
    for (what, keys, n) in [
        ("missing", &r.missing, r.missing_count),
        ("extra", &r.extra, r.extra_count),
        ("different", &r.different, r.different_count),
    ] {
        if keys.is_empty() {
            continue;
        }
        let shown: Vec<&str> = keys.iter().take(SHOWN).map(String::as_str).collect();
        let more = match n as usize {
            n if n > SHOWN => format!(" … ({} more; --json lists all)", n - SHOWN),
            _ => String::new(),
        };
        println!("          {what}: {}{more}", shown.join(", "));
    }
    for n in &r.notes {
        println!("          note: {n}");
    }
}
