//! The function library: one table of every function Data Factory has, with
//! its canonical name and arity, and the argument helpers that turn a wrong
//! argument into a message naming the function and the argument.
//!
//! Arguments arrive evaluated, except for the short-circuiting `and`, `or`,
//! `if` and `coalesce`, and the references (`pipeline()`, `activity()`, …),
//! which the evaluator (`eval.rs`) handles before calling into this table.
//!
//! Each category lives in its own module: [`string`], [`collection`],
//! [`logical`], [`conversion`], [`math`], [`date`].

pub mod collection;
pub mod conversion;
pub mod date;
pub mod logical;
pub mod math;
pub mod string;

use serde_json::Value;

use crate::error::{EvalError, EvalErrorKind};
use crate::scope::Scope;
use crate::value::{describe, is_int};

/// A function implementation.
pub type Impl = fn(&Args<'_>) -> Result<Value, EvalError>;

/// One library entry.
pub struct Function {
    /// Canonical (documented) spelling.
    pub name: &'static str,
    /// Fewest arguments.
    pub min: usize,
    /// Most arguments (`usize::MAX` for variadic).
    pub max: usize,
    /// The implementation; `None` for the references and the lazy functions
    /// the evaluator handles itself.
    pub imp: Option<Impl>,
}

const N: usize = usize::MAX;

macro_rules! f {
    ($name:literal, $min:expr, $max:expr, $imp:expr) => {
        Function {
            name: $name,
            min: $min,
            max: $max,
            imp: Some($imp),
        }
    };
    ($name:literal, $min:expr, $max:expr) => {
        Function {
            name: $name,
            min: $min,
            max: $max,
            imp: None,
        }
    };
}

/// Every function, references included.
pub static FUNCTIONS: &[Function] = &[
    // References and lazy functions (evaluated in `eval`).
    f!("pipeline", 0, 0),
    f!("activity", 1, 1),
    f!("item", 0, 0),
    f!("variables", 1, 1),
    f!("dataset", 0, 0),
    f!("linkedService", 0, 0),
    f!("trigger", 0, 0),
    f!("and", 1, N),
    f!("or", 1, N),
    f!("if", 3, 3),
    f!("coalesce", 1, N),
    // String.
    f!("concat", 1, N, string::concat),
    f!("endsWith", 2, 2, string::ends_with),
    f!("guid", 0, 1, string::guid),
    f!("indexOf", 2, 2, string::index_of),
    f!("lastIndexOf", 2, 2, string::last_index_of),
    f!("replace", 3, 3, string::replace),
    f!("split", 2, 2, string::split),
    f!("startsWith", 2, 2, string::starts_with),
    f!("substring", 2, 3, string::substring),
    f!("toLower", 1, 1, string::to_lower),
    f!("toUpper", 1, 1, string::to_upper),
    f!("trim", 1, 1, string::trim),
    // Collection.
    f!("contains", 2, 2, collection::contains),
    f!("empty", 1, 1, collection::empty),
    f!("first", 1, 1, collection::first),
    f!("intersection", 2, N, collection::intersection),
    f!("join", 2, 2, collection::join),
    f!("last", 1, 1, collection::last),
    f!("length", 1, 1, collection::length),
    f!("skip", 2, 2, collection::skip),
    f!("take", 2, 2, collection::take),
    f!("union", 2, N, collection::union),
    // Logical.
    f!("equals", 2, N, logical::equals),
    f!("greater", 2, 2, logical::greater),
    f!("greaterOrEquals", 2, 2, logical::greater_or_equals),
    f!("less", 2, 2, logical::less),
    f!("lessOrEquals", 2, 2, logical::less_or_equals),
    f!("not", 1, 1, logical::not),
    // Conversion.
    f!("array", 1, 1, conversion::array),
    f!("base64", 1, 1, conversion::base64),
    f!("base64ToBinary", 1, 1, conversion::base64_to_binary),
    f!("base64ToString", 1, 1, conversion::base64_to_string),
    f!("binary", 1, 1, conversion::binary),
    f!("bool", 1, 1, conversion::bool),
    f!("createArray", 1, N, conversion::create_array),
    f!("dataUri", 1, 1, conversion::data_uri),
    f!("dataUriToBinary", 1, 1, conversion::data_uri_to_binary),
    f!("dataUriToString", 1, 1, conversion::data_uri_to_string),
    f!("decodeBase64", 1, 1, conversion::base64_to_string),
    f!("decodeDataUri", 1, 1, conversion::data_uri_to_string),
    f!("decodeUriComponent", 1, 1, conversion::decode_uri_component),
    f!("encodeUriComponent", 1, 1, conversion::encode_uri_component),
    f!("float", 1, 1, conversion::float),
    f!("int", 1, 1, conversion::int),
    f!("json", 1, 1, conversion::json),
    f!("string", 1, 1, conversion::string),
    f!("uriComponent", 1, 1, conversion::encode_uri_component),
    f!(
        "uriComponentToBinary",
        1,
        1,
        conversion::uri_component_to_binary
    ),
    f!(
        "uriComponentToString",
        1,
        1,
        conversion::decode_uri_component
    ),
    f!("xml", 1, 1, conversion::xml),
    f!("xpath", 2, 2, conversion::xpath),
    // Math.
    f!("add", 2, 2, math::add),
    f!("div", 2, 2, math::div),
    f!("max", 1, N, math::max),
    f!("min", 1, N, math::min),
    f!("mod", 2, 2, math::modulo),
    f!("mul", 2, 2, math::mul),
    f!("rand", 2, 2, math::rand),
    f!("range", 2, 2, math::range),
    f!("sub", 2, 2, math::sub),
    // Date.
    f!("addDays", 2, 3, date::add_days),
    f!("addHours", 2, 3, date::add_hours),
    f!("addMinutes", 2, 3, date::add_minutes),
    f!("addSeconds", 2, 3, date::add_seconds),
    f!("addToTime", 3, 4, date::add_to_time),
    f!("convertFromUtc", 2, 3, date::convert_from_utc),
    f!("convertTimeZone", 3, 4, date::convert_time_zone),
    f!("convertToUtc", 2, 3, date::convert_to_utc),
    f!("dayOfMonth", 1, 1, date::day_of_month),
    f!("dayOfWeek", 1, 1, date::day_of_week),
    f!("dayOfYear", 1, 1, date::day_of_year),
    f!("formatDateTime", 1, 3, date::format_date_time),
    f!("getFutureTime", 2, 3, date::get_future_time),
    f!("getPastTime", 2, 3, date::get_past_time),
    f!("startOfDay", 1, 2, date::start_of_day),
    f!("startOfHour", 1, 2, date::start_of_hour),
    f!("startOfMonth", 1, 2, date::start_of_month),
    f!("subtractFromTime", 3, 4, date::subtract_from_time),
    f!("ticks", 1, 1, date::ticks),
    f!("utcNow", 0, 1, date::utc_now),
];

/// Finds a function by name, ignoring case.
pub fn lookup(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// The closest known function name, when one is close enough to be a typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    let lower = name.to_lowercase();
    FUNCTIONS
        .iter()
        .map(|f| (edit_distance(&lower, &f.name.to_lowercase()), f.name))
        .filter(|&(d, n)| d <= (n.len() / 3).max(2))
        .min_by_key(|&(d, _)| d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Evaluated arguments of one call, with typed accessors whose errors name
/// the function and the 1-based argument.
pub struct Args<'a> {
    /// Canonical function name.
    pub name: &'static str,
    /// The argument values.
    pub values: Vec<Value>,
    /// The scope, for `utcNow()`, `guid()`, `rand()`.
    pub scope: &'a dyn Scope,
}

impl Args<'_> {
    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when called without arguments.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Argument `i` (0-based), `Null` if absent.
    pub fn get(&self, i: usize) -> &Value {
        self.values.get(i).unwrap_or(&Value::Null)
    }

    /// A "`f` expects …, got … as argument n" error.
    pub fn type_error(&self, i: usize, expected: &str) -> EvalError {
        EvalError::new(
            EvalErrorKind::Type,
            format!(
                "`{}` expects {expected}, got {} as argument {}",
                self.name,
                describe(self.get(i)),
                i + 1
            ),
        )
    }

    /// An invalid-value error about argument `i`.
    pub fn value_error(&self, i: usize, why: impl std::fmt::Display) -> EvalError {
        EvalError::new(
            EvalErrorKind::Value,
            format!("`{}` argument {} {why}", self.name, i + 1),
        )
    }

    /// An error about the call as a whole.
    pub fn error(&self, kind: EvalErrorKind, why: impl std::fmt::Display) -> EvalError {
        EvalError::new(kind, format!("`{}` {why}", self.name))
    }

    /// Argument `i` as a string.
    pub fn str(&self, i: usize) -> Result<&str, EvalError> {
        match self.get(i) {
            Value::String(s) => Ok(s),
            _ => Err(self.type_error(i, "a string")),
        }
    }

    /// Optional argument `i` as a string.
    pub fn opt_str(&self, i: usize) -> Result<Option<&str>, EvalError> {
        if i >= self.len() {
            return Ok(None);
        }
        self.str(i).map(Some)
    }

    /// Argument `i` as an integer (floats are rejected, as in Data Factory).
    pub fn int(&self, i: usize) -> Result<i64, EvalError> {
        match self.get(i) {
            Value::Number(n) if is_int(self.get(i)) => n
                .as_i64()
                .ok_or_else(|| self.value_error(i, "does not fit in a 64-bit integer")),
            _ => Err(self.type_error(i, "an integer")),
        }
    }

    /// Argument `i` as a boolean.
    pub fn bool(&self, i: usize) -> Result<bool, EvalError> {
        match self.get(i) {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.type_error(i, "a boolean")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_suggestions_work() {
        for (i, f) in FUNCTIONS.iter().enumerate() {
            assert!(
                FUNCTIONS[i + 1..]
                    .iter()
                    .all(|g| !g.name.eq_ignore_ascii_case(f.name)),
                "{} twice",
                f.name
            );
        }
        assert_eq!(suggest("formatDatetime"), Some("formatDateTime"));
        assert_eq!(suggest("concta"), Some("concat"));
        assert_eq!(suggest("utcnoww"), Some("utcNow"));
        assert_eq!(suggest("qqqqqqqqqq"), None);
    }
}
