//! Comparison functions (`and`, `or`, `if` are lazy and live in
//! the evaluator, `eval.rs`).
//!
//! `equals` is deep equality, case-sensitive, with integers equal to floats
//! of the same value at the top level only and booleans never equal to
//! numbers. `greater` and friends take two numbers (mixed integer and float
//! is fine) or two strings; strings compare the way .NET's invariant culture
//! does, approximated here: punctuation (in ICU's order) before digits
//! before letters; letters alphabetically ignoring case and common Latin
//! accents (`'B' > 'a'`, `'é' < 'f'`, `ß` as `ss`); then accents; then lower
//! case before upper case (`'A' > 'a'`).

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

/// ICU root collation order of ASCII punctuation and symbols, which sort
/// before digits, which sort before letters.
const PUNCTUATION: &str = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$";

/// Primary weights of one character: letters alphabetically ignoring case
/// and common accents (`ß` is `ss`, `æ` is `ae`).
fn primary(c: char, out: &mut Vec<u32>) {
    let lower = c.to_lowercase().next().unwrap_or(c);
    let base: &str = match lower {
        'à'..='å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ì'..='ï' | 'ī' | 'į' | 'ı' => "i",
        'ł' | 'ľ' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò'..='ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ř' => "r",
        'ß' => "ss",
        'ś' | 'š' | 'ş' => "s",
        'ť' | 'ţ' => "t",
        'þ' => "th",
        'ù'..='ü' | 'ū' | 'ů' | 'ű' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => "",
    };
    if !base.is_empty() {
        out.extend(base.bytes().map(|b| 200 + u32::from(b - b'a')));
        return;
    }
    out.push(match lower {
        c if c.is_ascii_lowercase() => 200 + (c as u32 - 'a' as u32),
        c if c.is_ascii_digit() => 100 + (c as u32 - '0' as u32),
        c => match PUNCTUATION.find(c) {
            Some(i) => 1 + i as u32,
            None if c.is_whitespace() => 0,
            // Other symbols (emoji, math, currency) sort after punctuation,
            // before digits; other scripts' letters after Latin letters.
            None if !c.is_alphanumeric() => 60,
            None => 1000 + c as u32,
        },
    });
}

/// Culture-like string ordering, see the module doc.
pub(crate) fn culture_cmp(x: &str, y: &str) -> Ordering {
    let key = |s: &str| -> Vec<u32> {
        let mut k = Vec::new();
        for c in s.chars() {
            primary(c, &mut k);
        }
        k
    };
    let accents = |s: &str| -> Vec<char> { s.chars().flat_map(char::to_lowercase).collect() };
    key(x)
        .cmp(&key(y))
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
