//! `highwater expr 'EXPRESSION' [--context FILE.json]`: evaluate a Data
//! Factory expression; the result is one line of JSON on stdout (exit 0),
//! or the error on stderr (exit 1; exit 2 for an unreadable context file).

use std::path::Path;

use highwater_expr::{ContextScope, evaluate};

use super::output;

pub fn run(expression: &str, context: Option<&Path>) -> i32 {
    let ctx: serde_json::Value = match context {
        None => serde_json::json!({}),
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    output::error(&format!("cannot read {}: {e}", path.display()));
                    return 2;
                }
            };
            match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    output::error(&format!(
                        "{}:{}:{}: invalid JSON: {e}",
                        path.display(),
                        e.line(),
                        e.column()
                    ));
                    return 2;
                }
            }
        }
    };
    let scope = match ContextScope::from_json(&ctx) {
        Ok(s) => s,
        Err(e) => {
            let place = context.map(|p| p.display().to_string()).unwrap_or_default();
            output::error(&format!("{place}: {e}"));
            return 2;
        }
    };
    match evaluate(expression, &scope) {
        Ok(v) => {
            println!("{}", serde_json::to_string(&v).unwrap_or_default());
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
