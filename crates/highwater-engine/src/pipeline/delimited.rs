//! The settings of a DelimitedText dataset (and of the legacy `AzureBlob`
//! … `format: {type: TextFormat}` one) and of its sink's `formatSettings`,
//! as the CSV encoder's [`CsvOptions`]. Data Factory's defaults on write:
//!
//! ```text
//! setting            DelimitedText        TextFormat
//! firstRowAsHeader   false                false
//! columnDelimiter    ,                    ,
//! rowDelimiter       \r\n                 \r\n
//! quoteChar          "                    (none set: " as RFC 4180)
//! escapeChar         \                    (none set: the quote doubled)
//! nullValue          (empty)              \N
//! encodingName       UTF-8 (no BOM)       UTF-8 (no BOM)
//! compression        compressionCodec     compression.type
//! ```
//!
//! `formatSettings.quoteAllText` quotes every value; `fileExtension` names
//! generated files. [`check`] refuses at load what cannot be honoured.

use highwater_connectors::files::{Charset, CsvOptions, compression_extension};
use highwater_expr::to_interpolated_string;
use serde_json::Value;

use super::sink::is_literal;

/// Where the settings live: the dataset's `typeProperties` (DelimitedText)
/// or its `format` object (TextFormat), and the compression object.
fn places(kind: &str, tp: &Value) -> Option<(Value, bool)> {
    if kind == "DelimitedText" {
        return Some((tp.clone(), false));
    }
    let format = tp.get("format")?;
    (format.get("type").and_then(Value::as_str) == Some("TextFormat")).then(|| {
        let mut f = format.clone();
        if let (Some(m), Some(c)) = (f.as_object_mut(), tp.get("compression")) {
            m.insert(
                "compressionCodec".into(),
                c.get("type").cloned().unwrap_or(Value::Null),
            );
            m.insert(
                "compressionLevel".into(),
                c.get("level").cloned().unwrap_or(Value::Null),
            );
        }
        (f, true)
    })
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// One character or none (`""`).
fn one_char(s: &str) -> Option<Option<char>> {
    let mut c = s.chars();
    match (c.next(), c.next()) {
        (None, _) => Some(None),
        (Some(x), None) => Some(Some(x)),
        _ => None,
    }
}

/// The options of a CSV output, from the evaluated dataset and sink;
/// `None` when the dataset is not delimited text. With `at_load`,
/// expression values are skipped (they are judged when evaluated). Errors
/// name the property.
pub fn options(
    kind: &str,
    tp: &Value,
    sink: &Value,
    at_load: bool,
) -> Result<Option<CsvOptions>, Vec<String>> {
    let Some((s, legacy)) = places(kind, tp) else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    let get = |k: &str| {
        s.get(k)
            .filter(|v| !v.is_null() && (!at_load || is_literal(v)))
    };
    let text = |k: &str| get(k).map(to_interpolated_string);
    let mut o = CsvOptions {
        header: false,
        row_delimiter: "\r\n".into(),
        escape: if legacy { Some('"') } else { Some('\\') },
        null: if legacy { "\\N".into() } else { String::new() },
        ..CsvOptions::default()
    };
    if let Some(v) = get("firstRowAsHeader") {
        match boolean(v) {
            Some(b) => o.header = b,
            None => errors.push(format!("firstRowAsHeader must be true or false, got {v}")),
        }
    }
    if let Some(d) = text("columnDelimiter") {
        match one_char(&d) {
            Some(Some(c)) if c != '\r' && c != '\n' => o.delimiter = c,
            _ => errors.push(format!(
                "columnDelimiter `{d}` is not supported: the Copy activity writes one character"
            )),
        }
    }
    if let Some(r) = text("rowDelimiter") {
        match (r.as_str(), one_char(&r)) {
            ("\r\n", _) | (_, Some(Some(_))) => o.row_delimiter = r,
            _ => errors.push(format!(
                "rowDelimiter `{}` is not supported: one character or \\r\\n",
                r.escape_debug()
            )),
        }
    }
    for (k, slot) in [("quoteChar", &mut o.quote), ("escapeChar", &mut o.escape)] {
        if let Some(q) = text(k) {
            match one_char(&q) {
                Some(c) => *slot = c,
                None => errors.push(format!("{k} `{q}` must be one character or empty")),
            }
        }
    }
    if o.quote.is_some() && o.escape.is_none() {
        // Data Factory requires both empty together; a quote alone is doubled.
        o.escape = o.quote;
    }
    if let Some(n) = text("nullValue") {
        o.null = n;
    }
    if let Some(e) = text("encodingName") {
        match Charset::parse(&e) {
            Ok(_) => o.encoding = e,
            Err(m) => errors.push(m),
        }
    }
    if let Some(c) = text("compressionCodec") {
        match compression_extension(&c) {
            Ok(Some(_)) => o.compression = Some(c.to_ascii_lowercase()),
            Ok(None) => {}
            Err(m) => errors.push(m),
        }
    }
    if let Some(l) = text("compressionLevel") {
        match l.to_ascii_lowercase().as_str() {
            "optimal" | "" => {}
            "fastest" => o.fastest = true,
            _ => errors.push(format!("compressionLevel `{l}` is not Optimal or Fastest")),
        }
    }
    // The sink's formatSettings.
    if let Some(fs) = sink.get("formatSettings").and_then(Value::as_object) {
        for (k, v) in fs {
            if v.is_null() || (at_load && !is_literal(v)) {
                continue;
            }
            match k.as_str() {
                "type" | "fileExtension" => {}
                "quoteAllText" => match boolean(v) {
                    Some(b) => o.quote_all = b,
                    None => errors.push(format!(
                        "sink.formatSettings.quoteAllText must be true or false, got {v}"
                    )),
                },
                // Judged by `split`.
                "maxRowsPerFile" | "fileNamePrefix" => {}
                other => errors.push(format!(
                    "sink.formatSettings.{other} is not a DelimitedText write setting highwater knows"
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok(Some(o))
    } else {
        Err(errors)
    }
}

/// The extension of generated file names: `formatSettings.fileExtension`
/// (else `.txt`), then the compression's (`.gz`) unless it ends so already.
pub fn generated_extension(o: &CsvOptions, sink: &Value) -> String {
    let mut ext = sink
        .get("formatSettings")
        .and_then(|f| f.get("fileExtension"))
        .map(to_interpolated_string)
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.starts_with('.') {
                e
            } else {
                format!(".{e}")
            }
        })
        .unwrap_or_else(|| ".txt".into());
    if let Some(Ok(Some(z))) = o.compression.as_deref().map(compression_extension)
        && !ext.to_ascii_lowercase().ends_with(z)
    {
        ext.push_str(z);
    }
    ext
}

/// `sink.formatSettings.maxRowsPerFile` (a whole number ≥ 1) and
/// `fileNamePrefix` of any file sink (DelimitedText, Parquet, Json):
/// `Some((max_rows, prefix))` when the copy writes several files. With
/// `at_load`, expressions are not judged. Errors name the property.
pub fn split(sink: &Value, at_load: bool) -> Result<Option<(u64, Option<String>)>, Vec<String>> {
    let Some(fs) = sink.get("formatSettings").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let known = |v: &&Value| !v.is_null() && (!at_load || is_literal(v));
    let mut errors = Vec::new();
    let max = match fs.get("maxRowsPerFile").filter(known) {
        None => None,
        Some(v) => {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            match n.filter(|n| *n >= 1) {
                Some(n) => Some(n),
                None => {
                    errors.push(format!(
                        "sink.formatSettings.maxRowsPerFile must be a whole number ≥ 1, got {v}"
                    ));
                    None
                }
            }
        }
    };
    let prefix = match fs.get("fileNamePrefix").filter(known) {
        None => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) if p.contains('/') || p.contains('\\') => {
            errors.push(format!(
                "sink.formatSettings.fileNamePrefix `{p}` must be a file name, not a path"
            ));
            None
        }
        Some(Value::String(p)) => Some(p.trim().to_string()),
        Some(other) => {
            errors.push(format!(
                "sink.formatSettings.fileNamePrefix must be a string, got {other}"
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(max.map(|m| (m, prefix)))
}
