//! Debug helper: evaluates each stdin line and prints `expr  =>  result`.
use std::io::BufRead;
fn main() {
    let ctx = serde_json::json!({"parameters": {"p": "hello", "tableList": ["a","b"], "obj": {"x": 1, "Y": [1,2]}}, "global_parameters": {"g": "G"}, "variables": {"v": "vv", "n": null}, "now": "2026-11-22T05:23:07.644767Z"});
    let scope = highwater_expr::ContextScope::from_json(&ctx).unwrap();
    for line in std::io::stdin().lock().lines() {
        let e = line.unwrap();
        if e.is_empty() {
            continue;
        }
        match highwater_expr::evaluate(&e, &scope) {
            Ok(v) => println!("{e}  =>  {}", serde_json::to_string(&v).unwrap()),
            Err(err) => println!(
                "{e}  =>  ERROR {}",
                err.to_string().lines().next().unwrap_or("")
            ),
        }
    }
}
