//! Fail: fail the activity with the given `message` and `errorCode`.

use highwater_core::{Error, Result};
use serde_json::Value;

use crate::pipeline::{Done, text};

pub(crate) fn fail(tp: &Value) -> Result<Done> {
    Err(Error::data(format!(
        "{} (error code {})",
        text(tp.get("message")),
        text(tp.get("errorCode"))
    )))
}
