//! Math functions.
//!
//! Integers are 64-bit and overflow is an error. When both operands are
//! integers the result is an integer: `div` truncates toward zero
//! (`div(-7, 2)` is `-3`) and `mod` takes the sign of the dividend
//! (`mod(-7, 2)` is `-1`). With a float operand the result is a float
//! (`mul(3, 1.0)` is `3.0`). Division or modulo by zero is an error for
//! floats too, and a float result that is not finite is an overflow error.
//! `max`/`min` return a float when any operand is a float.

use serde_json::Value;

use super::Args;
use crate::error::{EvalError, EvalErrorKind};
use crate::value::{as_f64, float_value, is_int};

enum Num {
    Int(i64),
    Float(f64),
}

fn num(a: &Args<'_>, i: usize) -> Result<Num, EvalError> {
    let v = a.get(i);
    if is_int(v)
        && let Some(n) = v.as_i64()
    {
        return Ok(Num::Int(n));
    }
    match as_f64(v) {
        Some(x) => Ok(Num::Float(x)),
        None => Err(a.type_error(i, "numbers")),
    }
}

fn overflow(a: &Args<'_>) -> EvalError {
    a.error(
        EvalErrorKind::Overflow,
        "overflowed: the result does not fit in a 64-bit integer (use floats, e.g. 1.0, for larger values)",
    )
}

fn float_result(a: &Args<'_>, x: f64) -> Result<Value, EvalError> {
    float_value(x).ok_or_else(|| {
        a.error(
            EvalErrorKind::Overflow,
            "overflowed: the float result is not finite",
        )
    })
}

fn arith(
    a: &Args<'_>,
    int_op: fn(i64, i64) -> Option<i64>,
    float_op: fn(f64, f64) -> f64,
) -> Result<Value, EvalError> {
    match (num(a, 0)?, num(a, 1)?) {
        (Num::Int(x), Num::Int(y)) => int_op(x, y).map(Value::from).ok_or_else(|| overflow(a)),
        (x, y) => float_result(a, float_op(to_f64(x), to_f64(y))),
    }
}

fn to_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(x) => x,
    }
}

pub fn add(a: &Args<'_>) -> Result<Value, EvalError> {
    arith(a, i64::checked_add, |x, y| x + y)
}

pub fn sub(a: &Args<'_>) -> Result<Value, EvalError> {
    arith(a, i64::checked_sub, |x, y| x - y)
}

pub fn mul(a: &Args<'_>) -> Result<Value, EvalError> {
    arith(a, i64::checked_mul, |x, y| x * y)
}

fn check_divisor(a: &Args<'_>) -> Result<(), EvalError> {
    num(a, 0)?;
    let zero = match num(a, 1)? {
        Num::Int(y) => y == 0,
        Num::Float(y) => y == 0.0,
    };
    if zero {
        return Err(a.error(
            EvalErrorKind::DivideByZero,
            "cannot divide by zero (argument 2 is 0)",
        ));
    }
    Ok(())
}

pub fn div(a: &Args<'_>) -> Result<Value, EvalError> {
    check_divisor(a)?;
    arith(a, i64::checked_div, |x, y| x / y)
}

pub fn modulo(a: &Args<'_>) -> Result<Value, EvalError> {
    check_divisor(a)?;
    arith(a, i64::checked_rem, |x, y| x % y)
}

fn extremum(a: &Args<'_>, want_max: bool) -> Result<Value, EvalError> {
    let (values, from_array): (&[Value], bool) = match a.values.as_slice() {
        [Value::Array(items)] => (items.as_slice(), true),
        other => (other, false),
    };
    if values.is_empty() {
        return Err(a.error(
            EvalErrorKind::Value,
            "expects at least one number, got an empty array",
        ));
    }
    let mut any_float = false;
    let mut best: Option<(f64, Value)> = None;
    for (i, v) in values.iter().enumerate() {
        let Some(x) = as_f64(v) else {
            let what = if from_array {
                format!(
                    "`{}` expects numbers, got {} as element {} of the array",
                    a.name,
                    crate::value::describe(v),
                    i + 1
                )
            } else {
                format!(
                    "`{}` expects numbers, got {} as argument {}",
                    a.name,
                    crate::value::describe(v),
                    i + 1
                )
            };
            return Err(EvalError::new(EvalErrorKind::Type, what));
        };
        any_float |= !is_int(v);
        let better = match &best {
            None => true,
            Some((b, bv)) => {
                // Compare integers exactly; floats by value.
                let ord = match (v.as_i64(), bv.as_i64()) {
                    (Some(p), Some(q)) if is_int(v) && is_int(bv) => p.cmp(&q),
                    _ => x.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
                };
                if want_max { ord.is_gt() } else { ord.is_lt() }
            }
        };
        if better {
            best = Some((x, v.clone()));
        }
    }
    match best {
        Some((x, _)) if any_float => float_result(a, x),
        Some((_, v)) => Ok(v),
        None => Ok(Value::Null),
    }
}

pub fn max(a: &Args<'_>) -> Result<Value, EvalError> {
    extremum(a, true)
}

pub fn min(a: &Args<'_>) -> Result<Value, EvalError> {
    extremum(a, false)
}

pub fn rand(a: &Args<'_>) -> Result<Value, EvalError> {
    let (lo, hi) = (a.int(0)?, a.int(1)?);
    if lo > hi {
        return Err(a.error(
            EvalErrorKind::Value,
            format!("minimum {lo} (argument 1) must not be greater than maximum {hi} (argument 2)"),
        ));
    }
    Ok(Value::from(a.scope.random(lo, hi)))
}

/// Data Factory's limit on `range` counts.
pub const RANGE_MAX_COUNT: i64 = 100_000;

pub fn range(a: &Args<'_>) -> Result<Value, EvalError> {
    let (start, count) = (a.int(0)?, a.int(1)?);
    if !(0..=RANGE_MAX_COUNT).contains(&count) {
        return Err(a.value_error(
            1,
            format!("(count) must be between 0 and {RANGE_MAX_COUNT}, got {count}"),
        ));
    }
    let last = start.saturating_add(count).saturating_sub(1);
    if start < i64::from(i32::MIN) || (count > 0 && last > i64::from(i32::MAX)) {
        return Err(a.error(
            EvalErrorKind::Value,
            "range must stay within 32-bit integers (start + count - 1 at most 2147483647)",
        ));
    }
    Ok(Value::Array(
        (start..start + count).map(Value::from).collect(),
    ))
}
