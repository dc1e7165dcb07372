//! How Data Factory sees a `serde_json::Value`: type names for messages, the
//! string an `@{…}` interpolation makes of a value, number formatting, deep
//! equality and case-insensitive property lookup.
//!
//! Stringification follows the reference evaluator (a .NET runtime):
//!
//! | value            | `@{…}` / `string()` / `concat()` |
//! |------------------|----------------------------------|
//! | `true` / `false` | `True` / `False`                 |
//! | `null`           | empty string                     |
//! | `3.0`            | `3` (whole floats print without a fraction) |
//! | `1e17`, `0.00001`| `1E+17`, `1E-05` (.NET round-trip format: scientific below 1e-4 and from 1e17 up) |
//! | object / array   | compact JSON, non-ASCII kept; floats inside keep `.0` (`[3.0]`) |
//! | binary value     | its content decoded as UTF-8 (`string(binary('hi'))` is `hi`) |

use serde_json::{Map, Value};

/// The Data Factory name of a value's type, as used in error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `string 'x'`, `integer 5`, `null`, `array [1,2]` — for error messages,
/// truncated to a readable length.
pub fn describe(v: &Value) -> String {
    let shown = match v {
        Value::Null => return "null".to_string(),
        Value::String(s) => format!("'{s}'"),
        other => to_compact_json(other),
    };
    let shown = if shown.chars().count() > 60 {
        let cut: String = shown.chars().take(57).collect();
        format!("{cut}...")
    } else {
        shown
    };
    format!("{} {shown}", type_name(v))
}

/// Renders a value the way `@{…}` interpolation (and `string()`, `concat()`)
/// stringifies it: see the module table.
pub fn to_interpolated_string(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (_, _, Some(x)) => format_float(x),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Object(_) => binary_content(v).unwrap_or_else(|| to_compact_json(v)),
        Value::Array(_) => to_compact_json(v),
    }
}

/// The decoded text of a binary value (`{"$content-type": …, "$content":
/// base64}`, what `binary()` and `base64ToBinary()` return).
fn binary_content(v: &Value) -> Option<String> {
    use base64::Engine;
    let m = v.as_object()?;
    if m.len() != 2 || !m.contains_key("$content-type") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(m.get("$content")?.as_str()?)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// .NET's round-trip formatting of a double: shortest digits that read back
/// to the same value; scientific notation (`1E+17`, `1.5E-07`) when the
/// decimal exponent is below -4 or above 16.
pub fn format_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e-7".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if !(-5 < exp && exp < 17) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}E{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let n = digits.len() as i32;
    let body = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point >= n {
        format!("{}{}", digits, "0".repeat((point - n) as usize))
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{a}.{b}")
    };
    format!("{sign}{body}")
}

/// Compact JSON as the reference writes it: non-ASCII characters kept,
/// control characters as `\uXXXX`, floats in .NET form with a `.0` kept on
/// whole values.
pub fn to_compact_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => {
                let s = format_float(x);
                out.push_str(&s);
                if !s.contains(['.', 'E', 'N', 'I']) {
                    out.push_str(".0");
                }
            }
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{85}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as f64 when it is one (integers widen).
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// True for a JSON number that is stored as an integer.
pub fn is_int(v: &Value) -> bool {
    matches!(v, Value::Number(n) if !n.is_f64())
}

/// A float as a JSON value, or `None` when it is not finite.
pub fn float_value(x: f64) -> Option<Value> {
    serde_json::Number::from_f64(x).map(Value::Number)
}

/// Data Factory's `equals`: deep, case-sensitive for strings, integers and
/// floats compare by value at the top level (`equals(1, 1.0)` is true) but
/// not inside arrays (`equals([1], [1.0])` is false), booleans never equal
/// numbers, object key order does not matter.
pub fn deep_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) if !x.is_f64() && !y.is_f64() => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => strict_equals(a, b),
    }
}

/// Nested equality: numbers must agree in kind as well as value.
pub fn strict_equals(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.is_f64() == y.is_f64() && x.as_f64() == y.as_f64()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| strict_equals(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| strict_equals(v, w)))
        }
        _ => a == b,
    }
}

/// Looks a key up in an object: exact match first, then ignoring case.
pub fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key) || k.to_lowercase() == key.to_lowercase())
            .map(|(_, v)| v)
    })
}

/// The key names of an object, for "available properties are …" messages.
pub fn key_list(map: &Map<String, Value>) -> String {
    if map.is_empty() {
        return "none".to_string();
    }
    let mut names: Vec<String> = map.keys().take(20).map(|k| format!("'{k}'")).collect();
    if map.len() > 20 {
        names.push("…".to_string());
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_format_like_dotnet() {
        for (x, want) in [
            (3.0, "3"),
            (2.5, "2.5"),
            (1e15, "1000000000000000"),
            (1e16, "10000000000000000"),
            (1e17, "1E+17"),
            (123456789012345678.0, "1.2345678901234568E+17"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (1.5e-7, "1.5E-07"),
            (-0.0, "-0"),
            (1e300, "1E+300"),
            (0.1, "0.1"),
            (1234567890123456.7, "1234567890123456.8"),
            (-3.0, "-3"),
        ] {
            assert_eq!(format_float(x), want, "{x}");
        }
    }

    #[test]
    fn interpolation_strings() {
        assert_eq!(to_interpolated_string(&json!(true)), "True");
        assert_eq!(to_interpolated_string(&json!(null)), "");
        assert_eq!(
            to_interpolated_string(&json!([1e16, 3.0, 0.00001, 1e300])),
            "[10000000000000000.0,3.0,1E-05,1E+300]"
        );
        assert_eq!(
            to_interpolated_string(&json!({"a": "é\u{1}<>&'\"", "b": 1.0, "c": [true, null]})),
            r#"{"a":"é\u0001<>&'\"","b":1.0,"c":[true,null]}"#
        );
    }
}
