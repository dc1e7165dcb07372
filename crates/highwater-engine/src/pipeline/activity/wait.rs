//! Wait: sleep `waitTimeInSeconds`.

use highwater_core::{Error, Result};
use serde_json::{Value, json};

use crate::pipeline::Done;

pub(crate) async fn wait(tp: &Value) -> Result<Done> {
    let secs = match tp.get("waitTimeInSeconds") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s >= 0.0)
    .ok_or_else(|| {
        Error::data("typeProperties.waitTimeInSeconds must be a number of seconds ≥ 0")
    })?;
    tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
    Ok(Done {
        output: json!({}),
        ..Done::default()
    })
}
