//! Collection functions over arrays, strings and objects.
//!
//! Array membership (`contains`, `union`, `intersection`) uses strict deep
//! equality: `1` and `1.0` are different elements, unlike top-level
//! `equals`. Object keys in `contains` ignore case.

use serde_json::{Map, Value};

use super::Args;
use super::string::{from_utf16, utf16};
use crate::error::{EvalError, EvalErrorKind};
use crate::value::{get_ci, strict_equals, to_interpolated_string, type_name};

pub fn contains(a: &Args<'_>) -> Result<Value, EvalError> {
    let found = match (a.get(0), a.get(1)) {
        (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
        (Value::String(_), _) => return Err(a.type_error(1, "a string (to find in a string)")),
        (Value::Array(items), v) => items.iter().any(|x| strict_equals(x, v)),
        (Value::Object(map), Value::String(key)) => get_ci(map, key).is_some(),
        (Value::Object(_), _) => return Err(a.type_error(1, "a string key (to find in an object)")),
        _ => return Err(a.type_error(0, "an object, an array or a string")),
    };
    Ok(Value::Bool(found))
}

pub fn empty(a: &Args<'_>) -> Result<Value, EvalError> {
    let e = match a.get(0) {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(v) => v.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => return Err(a.type_error(0, "an object, an array or a string")),
    };
    Ok(Value::Bool(e))
}

pub fn first(a: &Args<'_>) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Array(v) => Ok(v.first().cloned().unwrap_or(Value::Null)),
        Value::String(s) => {
            let u = utf16(s);
            Ok(Value::String(from_utf16(&u[..u.len().min(1)])))
        }
        _ => Err(a.type_error(0, "an array or a string")),
    }
}

pub fn last(a: &Args<'_>) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Array(v) => Ok(v.last().cloned().unwrap_or(Value::Null)),
        Value::String(s) => {
            let u = utf16(s);
            let start = u.len().saturating_sub(1);
            Ok(Value::String(from_utf16(&u[start..])))
        }
        _ => Err(a.type_error(0, "an array or a string")),
    }
}

pub fn length(a: &Args<'_>) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Array(v) => Ok(Value::from(v.len() as i64)),
        Value::String(s) => Ok(Value::from(s.encode_utf16().count() as i64)),
        _ => Err(a.type_error(0, "an array or a string")),
    }
}

fn count_arg(a: &Args<'_>) -> Result<usize, EvalError> {
    let n = a.int(1)?;
    if n < 0 {
        return Err(a.value_error(1, format!("(count) must not be negative, got {n}")));
    }
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

pub fn skip(a: &Args<'_>) -> Result<Value, EvalError> {
    let n = count_arg(a)?;
    match a.get(0) {
        Value::Array(v) => Ok(Value::Array(v.iter().skip(n).cloned().collect())),
        Value::String(s) => {
            let u = utf16(s);
            Ok(Value::String(from_utf16(&u[n.min(u.len())..])))
        }
        _ => Err(a.type_error(0, "an array or a string")),
    }
}

pub fn take(a: &Args<'_>) -> Result<Value, EvalError> {
    let n = count_arg(a)?;
    match a.get(0) {
        Value::Array(v) => Ok(Value::Array(v.iter().take(n).cloned().collect())),
        Value::String(s) => {
            let u = utf16(s);
            Ok(Value::String(from_utf16(&u[..n.min(u.len())])))
        }
        _ => Err(a.type_error(0, "an array or a string")),
    }
}

pub fn join(a: &Args<'_>) -> Result<Value, EvalError> {
    let Value::Array(items) = a.get(0) else {
        return Err(a.type_error(0, "an array"));
    };
    let sep = a.str(1)?;
    let parts: Vec<String> = items.iter().map(to_interpolated_string).collect();
    Ok(Value::String(parts.join(sep)))
}

/// Checks that all arguments are arrays or all are objects.
fn same_kind(a: &Args<'_>) -> Result<bool, EvalError> {
    let arrays = matches!(a.get(0), Value::Array(_));
    for (i, v) in a.values.iter().enumerate() {
        let ok = match v {
            Value::Array(_) => arrays,
            Value::Object(_) => !arrays,
            _ => false,
        };
        if !ok {
            let want = if i == 0 {
                "arrays or objects"
            } else if arrays {
                "arrays (like its first argument)"
            } else {
                "objects (like its first argument)"
            };
            return Err(EvalError::new(
                EvalErrorKind::Type,
                format!(
                    "`{}` expects {want}, got {} as argument {}",
                    a.name,
                    type_name(v),
                    i + 1
                ),
            ));
        }
    }
    Ok(arrays)
}

fn push_unique(out: &mut Vec<Value>, v: &Value) {
    if !out.iter().any(|x| strict_equals(x, v)) {
        out.push(v.clone());
    }
}

pub fn union(a: &Args<'_>) -> Result<Value, EvalError> {
    if same_kind(a)? {
        let mut out = Vec::new();
        for v in &a.values {
            if let Value::Array(items) = v {
                for item in items {
                    push_unique(&mut out, item);
                }
            }
        }
        Ok(Value::Array(out))
    } else {
        let mut out = Map::new();
        for v in &a.values {
            if let Value::Object(m) = v {
                for (k, x) in m {
                    out.insert(k.clone(), x.clone());
                }
            }
        }
        Ok(Value::Object(out))
    }
}

pub fn intersection(a: &Args<'_>) -> Result<Value, EvalError> {
    if same_kind(a)? {
        let mut out = Vec::new();
        if let Some(Value::Array(first)) = a.values.first() {
            for item in first {
                let everywhere = a.values[1..].iter().all(|v| {
                    matches!(v, Value::Array(other) if other.iter().any(|x| strict_equals(x, item)))
                });
                if everywhere {
                    push_unique(&mut out, item);
                }
            }
        }
        Ok(Value::Array(out))
    } else {
        let mut out = Map::new();
        if let Some(Value::Object(first)) = a.values.first() {
            for (k, item) in first {
                let everywhere = a.values[1..].iter().all(|v| {
                    matches!(v, Value::Object(other) if other.get(k).is_some_and(|x| strict_equals(x, item)))
                });
                if everywhere {
                    out.insert(k.clone(), item.clone());
                }
            }
        }
        Ok(Value::Object(out))
    }
}
