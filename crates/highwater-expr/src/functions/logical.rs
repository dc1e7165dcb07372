//! Comparison functions (`and`, `or`, `if` are lazy and live in
//! [`crate::eval`]).
//!
//! `equals` is deep equality, case-sensitive, with integers equal to floats
//! of the same value at the top level only and booleans never equal to
//! numbers. `greater` and friends take two numbers (mixed integer and float
//! is fine) or two strings; strings compare the way .NET's invariant culture
//! does, approximated here: letters compare alphabetically ignoring case and
//! common Latin accents first (`'B' > 'a'`, `'é' < 'f'`), then lower case
//! sorts before upper case (`'A' > 'a'`).

use std::cmp::Ordering;

use serde_json::Value;

use super::Args;
use crate::error::{EvalError, EvalErrorKind};
use crate::value::{as_f64, deep_equals, is_int, type_name};

pub fn equals(a: &Args<'_>) -> Result<Value, EvalError> {
    let first = a.get(0);
    Ok(Value::Bool(
        a.values[1..].iter().all(|v| deep_equals(first, v)),
    ))
}

pub fn not(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::Bool(!a.bool(0)?))
}

fn base_letter(c: char) -> char {
    match c {
        'à'..='å' => 'a',
        'ç' => 'c',
        'è'..='ë' => 'e',
        'ì'..='ï' => 'i',
        'ñ' => 'n',
        'ò'..='ö' | 'ø' => 'o',
        'ù'..='ü' => 'u',
        'ý' | 'ÿ' => 'y',
        c => c,
    }
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// Culture-like string ordering, see the module doc.
pub(crate) fn culture_cmp(x: &str, y: &str) -> Ordering {
    let primary = |s: &str| -> Vec<char> { s.chars().map(|c| base_letter(lower(c))).collect() };
    let accents = |s: &str| -> Vec<char> { s.chars().map(lower).collect() };
    primary(x)
        .cmp(&primary(y))
        .then_with(|| accents(x).cmp(&accents(y)))
        .then_with(|| {
            // Lower case before upper case.
            for (p, q) in x.chars().zip(y.chars()) {
                let (pu, qu) = (p.is_uppercase(), q.is_uppercase());
                if pu != qu {
                    return if pu {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    };
                }
            }
            Ordering::Equal
        })
}

fn compare(a: &Args<'_>) -> Result<Ordering, EvalError> {
    let (x, y) = (a.get(0), a.get(1));
    match (x, y) {
        (Value::Number(_), Value::Number(_)) => {
            if is_int(x)
                && is_int(y)
                && let (Some(p), Some(q)) = (x.as_i64(), y.as_i64())
            {
                return Ok(p.cmp(&q));
            }
            let (p, q) = (as_f64(x).unwrap_or(0.0), as_f64(y).unwrap_or(0.0));
            Ok(p.partial_cmp(&q).unwrap_or(Ordering::Equal))
        }
        (Value::String(p), Value::String(q)) => Ok(culture_cmp(p, q)),
        (Value::Number(_) | Value::String(_), Value::Number(_) | Value::String(_)) => {
            Err(EvalError::new(
                EvalErrorKind::Type,
                format!(
                    "`{}` expects two numbers or two strings, got {} and {}",
                    a.name,
                    type_name(x),
                    type_name(y)
                ),
            ))
        }
        (Value::Number(_) | Value::String(_), _) => Err(a.type_error(1, "a number or a string")),
        _ => Err(a.type_error(0, "a number or a string")),
    }
}

pub fn greater(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::Bool(compare(a)? == Ordering::Greater))
}

pub fn greater_or_equals(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::Bool(compare(a)? != Ordering::Less))
}

pub fn less(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::Bool(compare(a)? == Ordering::Less))
}

pub fn less_or_equals(a: &Args<'_>) -> Result<Value, EvalError> {
    Ok(Value::Bool(compare(a)? != Ordering::Greater))
}
