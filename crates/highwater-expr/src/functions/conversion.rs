//! Conversion functions.
//!
//! Binary values are represented the way Data Factory serializes them:
//! `{"$content-type": "application/octet-stream", "$content": "<base64>"}`;
//! `xml()` returns the same shape with `application/xml;charset=utf-8`
//! (see [`crate::xml`] for the XML/JSON mapping and [`crate::xpath`] for
//! the supported XPath).
//! `int()` rejects floats (`int(1.9)` is an error, not 1) but parses strings
//! with an exponent (`int('1e3')` is 1000). `bool()` accepts `true`/`false`
//! strings in any case and numbers (non-zero is true), nothing else.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};

use super::Args;
use crate::error::EvalError;
use crate::value::{float_value, is_int, to_compact_json, to_interpolated_string};

/// What `encodeUriComponent` leaves alone: letters, digits and `-_.~`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn binary_value(content_type: &str, bytes: &[u8]) -> Value {
    let mut m = Map::new();
    m.insert("$content-type".into(), Value::String(content_type.into()));
    m.insert("$content".into(), Value::String(STANDARD.encode(bytes)));
    Value::Object(m)
}

/// The bytes of a binary value (`{"$content": base64}`), if it is one.
fn binary_bytes(v: &Value) -> Option<Vec<u8>> {
    let m = v.as_object()?;
    let content = m.get("$content")?.as_str()?;
    STANDARD.decode(content).ok()
}

/// Bytes of a string, object/array (as JSON) or binary value.
fn bytes_of(a: &Args<'_>, i: usize) -> Result<Vec<u8>, EvalError> {
    match a.get(i) {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        v @ Value::Object(_) if binary_bytes(v).is_some() => {
            Ok(binary_bytes(v).unwrap_or_default())
        }
        v @ (Value::Object(_) | Value::Array(_)) => Ok(to_compact_json(v).into_bytes()),
        _ => Err(a.type_error(i, "a string, an object or an array")),
    }
}

fn decode_base64(a: &Args<'_>, i: usize) -> Result<Vec<u8>, EvalError> {
    let s = a.str(i)?;
    STANDARD
        .decode(s.trim())
        .map_err(|e| a.value_error(i, format!("is not valid base64 ({e})")))
}

pub fn array(a: &Args<'_>) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Array(items) => Ok(Value::Array(items.clone())),
        other => Ok(Value::Array(vec![other.clone()])),
    }
}

pub fn create_array(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::Array(a.values.clone()))
}

pub fn base64(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::String(STANDARD.encode(bytes_of(a, 0)?)))
}

pub fn base64_to_binary(a: &Args<'_>) -> Result<Value, EvalError> {
    let bytes = decode_base64(a, 0)?;
    Ok(binary_value("application/octet-stream", &bytes))
}

pub fn base64_to_string(a: &Args<'_>) -> Result<Value, EvalError> {
    let bytes = decode_base64(a, 0)?;
    Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn binary(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(binary_value("application/octet-stream", &bytes_of(a, 0)?))
}

pub fn bool(a: &Args<'_>) -> Result<Value, EvalError> {
    let v = a.get(0);
    let b = match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => true,
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => false,
        Value::String(_) => {
            return Err(a.value_error(
                0,
                format!(
                    "cannot be converted to a boolean: {} (only 'true' and 'false' can)",
                    crate::value::describe(v)
                ),
            ));
        }
        _ => return Err(a.type_error(0, "a boolean, a number or a string")),
    };
    Ok(Value::Bool(b))
}

pub fn data_uri(a: &Args<'_>) -> Result<Value, EvalError> {
    let media = match a.get(0) {
        Value::String(_) => "text/plain;charset=utf-8",
        _ => "application/json;charset=utf-8",
    };
    let bytes = bytes_of(a, 0)?;
    Ok(Value::String(format!(
        "data:{media};base64,{}",
        STANDARD.encode(bytes)
    )))
}

/// Splits a data URI into media type and bytes.
fn parse_data_uri(a: &Args<'_>) -> Result<(String, Vec<u8>), EvalError> {
    let s = a.str(0)?;
    let bad = || a.value_error(0, "is not a data URI ('data:<media type>[;base64],<data>')");
    let rest = s.strip_prefix("data:").ok_or_else(bad)?;
    let (meta, data) = rest.split_once(',').ok_or_else(bad)?;
    let (media, is_base64) = match meta.strip_suffix(";base64") {
        Some(m) => (m, true),
        None => (meta, false),
    };
    let bytes = if is_base64 {
        STANDARD
            .decode(data)
            .map_err(|e| a.value_error(0, format!("has invalid base64 data ({e})")))?
    } else {
        percent_decode_str(data).collect()
    };
    let media = if media.is_empty() {
        "text/plain;charset=US-ASCII"
    } else {
        media
    };
    Ok((media.to_string(), bytes))
}

pub fn data_uri_to_binary(a: &Args<'_>) -> Result<Value, EvalError> {
    let (media, bytes) = parse_data_uri(a)?;
    Ok(binary_value(&media, &bytes))
}

pub fn data_uri_to_string(a: &Args<'_>) -> Result<Value, EvalError> {
    let (_, bytes) = parse_data_uri(a)?;
    Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

fn percent_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    String::from_utf8_lossy(&percent_decode_str(&plus).collect::<Vec<u8>>()).into_owned()
}

pub fn decode_uri_component(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::String(percent_decode(a.str(0)?)))
}

pub fn uri_component_to_binary(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(binary_value(
        "application/octet-stream",
        percent_decode(a.str(0)?).as_bytes(),
    ))
}

pub fn encode_uri_component(a: &Args<'_>) -> Result<Value, EvalError> {
    let text = to_interpolated_string(a.get(0));
    Ok(Value::String(
        utf8_percent_encode(&text, URI_COMPONENT).to_string(),
    ))
}

/// .NET-style number text: surrounding spaces, a sign, `,` group separators.
fn clean_number(s: &str) -> String {
    s.trim().replace(',', "")
}

pub fn float(a: &Args<'_>) -> Result<Value, EvalError> {
    let v = a.get(0);
    let x = match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => clean_number(s)
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite()),
        _ => return Err(a.type_error(0, "a number, a boolean or a string")),
    };
    let x = x.ok_or_else(|| {
        a.value_error(
            0,
            format!(
                "cannot be converted to a float: {}",
                crate::value::describe(v)
            ),
        )
    })?;
    float_value(x).ok_or_else(|| a.value_error(0, "is not a finite number"))
}

pub fn int(a: &Args<'_>) -> Result<Value, EvalError> {
    let v = a.get(0);
    let cannot = || {
        a.value_error(
            0,
            format!(
                "cannot be converted to an integer: {}",
                crate::value::describe(v)
            ),
        )
    };
    let n = match v {
        Value::Number(_) if is_int(v) => v.as_i64().ok_or_else(cannot)?,
        Value::Number(_) => {
            return Err(a.type_error(
                0,
                "an integer, a boolean or a string (floats are not converted; use a string)",
            ));
        }
        Value::Bool(b) => i64::from(*b),
        Value::String(s) => parse_int(&clean_number(s)).ok_or_else(cannot)?,
        _ => return Err(a.type_error(0, "an integer, a boolean or a string")),
    };
    Ok(Value::from(n))
}

/// Integer text, allowing an exponent and a zero fraction (`1e3`, `12.00`).
fn parse_int(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    if s.contains(['x', 'X', 'n', 'N', 'i', 'I']) {
        return None;
    }
    let x: f64 = s.parse().ok()?;
    if x.fract() != 0.0 || !x.is_finite() || x.abs() >= 9.223_372_036_854_775e18 {
        return None;
    }
    Some(x as i64)
}

pub fn json(a: &Args<'_>) -> Result<Value, EvalError> {
    if let Some(text) = xml_text(a.get(0)) {
        let doc = crate::xml::parse(&text)
            .map_err(|e| a.value_error(0, format!("is not valid XML: {e}")))?;
        return Ok(crate::xml::to_json(&doc));
    }
    let s = match a.get(0) {
        Value::String(s) => s,
        _ => return Err(a.type_error(0, "a string or an XML value")),
    };
    if s.trim().is_empty() {
        return Ok(Value::Null);
    }
    // Like the reference, read the first JSON value and ignore what follows.
    match serde_json::Deserializer::from_str(s)
        .into_iter::<Value>()
        .next()
    {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(a.value_error(0, format!("is not valid JSON: {e}"))),
        None => Ok(Value::Null),
    }
}

/// The text of an XML value (what `xml()` returns), if `v` is one.
fn xml_text(v: &Value) -> Option<String> {
    let m = v.as_object()?;
    if !m
        .get("$content-type")?
        .as_str()?
        .starts_with("application/xml")
    {
        return None;
    }
    let bytes = STANDARD.decode(m.get("$content")?.as_str()?).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn xml_value(text: &str) -> Value {
    binary_value("application/xml;charset=utf-8", text.as_bytes())
}

pub fn string(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::String(to_interpolated_string(a.get(0))))
}

pub fn xml(a: &Args<'_>) -> Result<Value, EvalError> {
    let doc = match a.get(0) {
        Value::String(s) => {
            crate::xml::parse(s).map_err(|e| a.value_error(0, format!("is not valid XML: {e}")))?
        }
        v @ Value::Object(_) => crate::xml::from_json(v)
            .map_err(|e| a.value_error(0, format!("cannot be converted to XML: {e}")))?,
        _ => return Err(a.type_error(0, "a string of XML or an object")),
    };
    Ok(xml_value(&crate::xml::write(&doc)))
}

pub fn xpath(a: &Args<'_>) -> Result<Value, EvalError> {
    let text =
        xml_text(a.get(0)).ok_or_else(|| a.type_error(0, "an XML value (use xml() first)"))?;
    let path = a.str(1)?;
    let doc =
        crate::xml::parse(&text).map_err(|e| a.value_error(0, format!("is not valid XML: {e}")))?;
    let result = crate::xpath::evaluate(&doc, path)
        .map_err(|e| a.value_error(1, format!("is not a supported XPath expression: {e}")))?;
    use crate::xpath::{XItem, XResult};
    Ok(match result {
        XResult::Nodes(items) => Value::Array(
            items
                .into_iter()
                .map(|i| match i {
                    XItem::Xml(x) => xml_value(&x),
                    XItem::Text(t) => Value::String(t),
                })
                .collect(),
        ),
        XResult::Number(x) => float_value(x).unwrap_or(Value::Null),
        XResult::String(s) => Value::String(s),
        XResult::Bool(b) => Value::Bool(b),
    })
}
