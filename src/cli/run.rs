//! `highwater run [STREAM…] [--full-refresh] [--json]`.

use std::path::Path;
use std::sync::Arc;

use highwater_engine::{RunOptions, run_streams};

use super::output;

pub async fn run(config: &Path, streams: Vec<String>, full_refresh: bool, json: bool) -> i32 {
    let (plan, state) = match super::load_plan_and_state(config).await {
        Ok(ps) => ps,
        Err(code) => return code,
    };
    let opts = RunOptions {
        streams,
        full_refresh,
        run_id: None,
        info: None,
    };
    let outcome = match run_streams(
        &plan,
        state.clone(),
        &opts,
        Arc::new(output::Progress::new()),
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            output::error(&plan.secrets.redact(&e.to_string()));
            return e.exit_code();
        }
    };
    if json {
        output::print_run_json(state.as_ref(), &outcome.run_id).await;
    } else {
        println!(
            "run {} {}",
            outcome.run_id,
            output::status_mark(outcome.status).trim_end()
        );
        for s in &outcome.streams {
            println!("  {}", output::stream_line_brief(s));
            for n in &s.notes {
                println!("          note: {n}");
            }
        }
    }
    // Each failure once: its message here, on stderr (the summary above
    // only marks the stream FAILED).
    for s in outcome.streams.iter().filter(|s| s.error.is_some()) {
        output::error(s.error.as_deref().unwrap_or_default());
    }
    outcome.exit_code
}
