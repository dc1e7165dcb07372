//! Validation: wait until the file or folder a dataset names exists, every
//! `sleep` seconds (default 10) until `timeout` (`D.HH:MM:SS`, default 7
//! days), then fail. A file must hold at least `minimumSize` bytes; a
//! folder with `childItems: true` must hold something, with `false` must be
//! empty.

use std::time::{Duration, Instant};

use highwater_core::{Error, Result};
use serde_json::{Value, json};

use crate::pipeline::datasets::dataset;
use crate::pipeline::files::{self, Item};
use crate::pipeline::model::parse_timespan;
use crate::pipeline::{Activity, Done, Frame, text};

fn number(v: Option<&Value>, what: &str) -> Result<Option<f64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().parse::<f64>().is_ok() => Ok(s.trim().parse().ok()),
        Some(other) => Err(Error::config(
            what,
            format!("must be a number, got {other}"),
        )),
    }
}

pub(crate) async fn validation(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let r = a.lookup_dataset().ok_or_else(|| {
        Error::config(
            "typeProperties.dataset",
            "a Validation needs a dataset reference",
        )
    })?;
    let d = dataset(frame, &r)?;
    if !d.is_file {
        return Err(Error::config(
            format!("dataset {}", d.name),
            "Validation checks file datasets only",
        ));
    }
    let timeout = match tp.get("timeout").filter(|v| !v.is_null()) {
        None => Duration::from_secs(7 * 86_400),
        Some(v) => parse_timespan(&text(Some(v))).ok_or_else(|| {
            Error::config(
                "typeProperties.timeout",
                format!("`{}` is not a time span D.HH:MM:SS", text(Some(v))),
            )
        })?,
    };
    let sleep = number(tp.get("sleep"), "typeProperties.sleep")?.unwrap_or(10.0);
    if !(sleep.is_finite() && sleep >= 0.0) {
        return Err(Error::config(
            "typeProperties.sleep",
            "must be a number of seconds ≥ 0",
        ));
    }
    let minimum = number(tp.get("minimumSize"), "typeProperties.minimumSize")?.unwrap_or(0.0);
    let child_items = match tp.get("childItems") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => match text(Some(v)).to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                return Err(Error::config(
                    "typeProperties.childItems",
                    format!("must be true or false, got {v}"),
                ));
            }
        },
    };
    let fs = files::open(frame, &d)?;
    let loc = files::location(&d);
    let started = Instant::now();
    loop {
        let why = match files::item(&fs, &loc).await? {
            Item::Missing => "it does not exist".to_string(),
            Item::File(_) if child_items.is_some() => {
                return Err(Error::config(
                    "typeProperties.childItems",
                    "applies to a folder; the dataset names a file",
                ));
            }
            Item::File(m) if (m.size as f64) < minimum => {
                format!("it holds {} bytes, minimumSize is {minimum}", m.size)
            }
            Item::Folder { .. } if tp.get("minimumSize").is_some_and(|v| !v.is_null()) => {
                return Err(Error::config(
                    "typeProperties.minimumSize",
                    "applies to a file; the dataset names a folder",
                ));
            }
            Item::Folder { files, folders } => {
                let empty = files.is_empty() && folders.is_empty();
                match child_items {
                    Some(true) if empty => "the folder is empty".to_string(),
                    Some(false) if !empty => "the folder is not empty".to_string(),
                    _ => String::new(),
                }
            }
            Item::File(_) => String::new(),
        };
        if why.is_empty() {
            return Ok(Done {
                output: json!({}),
                ..Done::default()
            });
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(Error::data(format!(
                "timed out after {}s waiting for {}: {why}",
                timeout.as_secs(),
                files::describe(&fs, &loc)
            )));
        }
        let wait = Duration::from_secs_f64(sleep).min(timeout - elapsed);
        tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
    }
}
