//! String functions.
//!
//! Positions and lengths count UTF-16 code units, as .NET does (an emoji
//! has length 2); text is never cut inside a character without turning the
//! broken half into U+FFFD. `indexOf`, `lastIndexOf`, `startsWith` and
//! `endsWith` ignore case (ordinal, per character); `replace` and `contains`
//! do not.

use serde_json::Value;

use super::Args;
use crate::error::{EvalError, EvalErrorKind};
use crate::value::to_interpolated_string;

pub(crate) fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

pub(crate) fn from_utf16(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

/// Ordinal ignore-case folding of one UTF-16 unit (BMP characters whose
/// upper case is a single BMP character).
fn fold(u: u16) -> u16 {
    match char::from_u32(u32::from(u)) {
        Some(c) => {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(x), None) if (x as u32) <= 0xFFFF => x as u32 as u16,
                _ => u,
            }
        }
        None => u,
    }
}

fn folded(s: &str) -> Vec<u16> {
    s.encode_utf16().map(fold).collect()
}

fn find(hay: &[u16], needle: &[u16]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u16], needle: &[u16]) -> Option<usize> {
    if needle.is_empty() {
        return Some(hay.len());
    }
    hay.windows(needle.len()).rposition(|w| w == needle)
}

pub fn concat(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::String(
        a.values.iter().map(to_interpolated_string).collect(),
    ))
}

pub fn starts_with(a: &Args<'_>) -> Result<Value, EvalError> {
    let (s, p) = (folded(a.str(0)?), folded(a.str(1)?));
    Ok(Value::Bool(s.starts_with(&p)))
}

pub fn ends_with(a: &Args<'_>) -> Result<Value, EvalError> {
    let (s, p) = (folded(a.str(0)?), folded(a.str(1)?));
    Ok(Value::Bool(s.ends_with(&p)))
}

pub fn index_of(a: &Args<'_>) -> Result<Value, EvalError> {
    let (s, p) = (folded(a.str(0)?), folded(a.str(1)?));
    Ok(Value::from(find(&s, &p).map_or(-1, |i| i as i64)))
}

/// An empty search text is found at the last character (`length - 1`),
/// as Data Factory's .NET Framework runtime answers (`0` for empty text).
pub fn last_index_of(a: &Args<'_>) -> Result<Value, EvalError> {
    let (s, p) = (folded(a.str(0)?), folded(a.str(1)?));
    if p.is_empty() {
        return Ok(Value::from(s.len().saturating_sub(1) as i64));
    }
    Ok(Value::from(rfind(&s, &p).map_or(-1, |i| i as i64)))
}

pub fn replace(a: &Args<'_>) -> Result<Value, EvalError> {
    let (s, old, new) = (a.str(0)?, a.str(1)?, a.str(2)?);
    if old.is_empty() {
        return Err(a.value_error(1, "(the text to replace) must not be empty"));
    }
    Ok(Value::String(s.replace(old, new)))
}

pub fn split(a: &Args<'_>) -> Result<Value, EvalError> {
    let (s, sep) = (a.str(0)?, a.str(1)?);
    let parts: Vec<Value> = if sep.is_empty() {
        vec![Value::String(s.to_string())]
    } else {
        s.split(sep).map(|p| Value::String(p.to_string())).collect()
    };
    Ok(Value::Array(parts))
}

pub fn substring(a: &Args<'_>) -> Result<Value, EvalError> {
    let s = utf16(a.str(0)?);
    let start = a.int(1)?;
    let len = s.len() as i64;
    if start < 0 || start >= len {
        return Err(a.value_error(
            1,
            format!(
                "(start index) must be at least 0 and less than the string's length {len}, got {start}"
            ),
        ));
    }
    let count = if a.len() > 2 { a.int(2)? } else { len - start };
    if count < 0 || start.checked_add(count).is_none_or(|end| end > len) {
        return Err(a.value_error(
            2,
            format!(
                "(length) must be at least 0 and start + length at most the string's length {len}, got {count}"
            ),
        ));
    }
    let (start, count) = (start as usize, count as usize);
    Ok(Value::String(from_utf16(&s[start..start + count])))
}

/// Invariant-culture case mapping: one character to one character, so
/// `ß` stays `ß` and `İ` stays `İ`, as in .NET.
fn map_case(s: &str, f: fn(char) -> Option<char>) -> String {
    s.chars().map(|c| f(c).unwrap_or(c)).collect()
}

fn single<I: Iterator<Item = char>>(mut it: I) -> Option<char> {
    match (it.next(), it.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

pub fn to_lower(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::String(map_case(a.str(0)?, |c| {
        single(c.to_lowercase())
    })))
}

pub fn to_upper(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::String(map_case(a.str(0)?, |c| {
        single(c.to_uppercase())
    })))
}

pub fn trim(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::String(a.str(0)?.trim().to_string()))
}

pub fn guid(a: &Args<'_>) -> Result<Value, EvalError> {
    let format = a.opt_str(0)?.unwrap_or("D");
    let g = uuid::Uuid::from_u128(a.scope.new_guid());
    let s = match format {
        "D" => g.hyphenated().to_string(),
        "N" => g.simple().to_string(),
        "B" => g.braced().to_string(),
        "P" => format!("({})", g.hyphenated()),
        "X" => {
            let b = g.as_bytes();
            let tail: Vec<String> = b[8..].iter().map(|x| format!("0x{x:02x}")).collect();
            format!(
                "{{0x{:02x}{:02x}{:02x}{:02x},0x{:02x}{:02x},0x{:02x}{:02x},{{{}}}}}",
                b[0],
                b[1],
                b[2],
                b[3],
                b[4],
                b[5],
                b[6],
                b[7],
                tail.join(",")
            )
        }
        other => {
            return Err(a.error(
                EvalErrorKind::Value,
                format!("format '{other}' is not supported; the formats are N, D, B, P and X"),
            ));
        }
    };
    Ok(Value::String(s))
}
