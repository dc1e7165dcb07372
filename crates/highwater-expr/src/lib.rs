//! The Azure Data Factory expression language: parse once, evaluate many
//! times. Pure: no I/O, no async.
//!
//! A Data Factory JSON string value is one of three things ([`Template`]):
//!
//! ```text
//! "plain text"             literal string
//! "@@starts with at"       literal "@starts with at" (a leading @@ escapes)
//! "@concat('a', 'b')"      expression: yields any JSON type
//! "run @{pipeline().RunId} at @{utcNow()}"
//!                          interpolation: always a string ("@@{" is a literal "@{")
//! ```
//!
//! [`Expr::parse`] turns the value into a spanned tree; [`Expr::eval`] runs it
//! against a [`Scope`] that supplies `pipeline()`, `activity()`, `item()`,
//! `variables()`, `dataset()`, `linkedService()`, `trigger()`, the clock and
//! GUIDs. Values are `serde_json::Value`. [`evaluate`] does both in one call.
//!
//! # Trying expressions: the `highwater expr` flow
//!
//! ```
//! use highwater_expr::{ContextScope, evaluate};
//!
//! // What `highwater expr 'EXPR' --context FILE.json` does, minus file I/O.
//! let context: serde_json::Value = serde_json::from_str(r#"{
//!     "parameters": {"tableList": ["orders", "customers"]},
//!     "activities": {"Lookup1": {"firstRow": {"Watermark": "2024-01-15T10:20:30Z"}}},
//!     "now": "2024-01-16T00:00:00Z"
//! }"#).unwrap();
//! let scope = ContextScope::from_json(&context).unwrap();
//! let text = "@{pipeline().parameters.tableList[0]}_@{formatDateTime(activity('Lookup1').output.firstRow.Watermark, 'yyyyMMdd')}";
//! match evaluate(text, &scope) {
//!     Ok(value) => assert_eq!(value.to_string(), r#""orders_20240115""#), // print, exit 0
//!     Err(e) => panic!("{e}"),                                          // eprint, exit 1
//! }
//!
//! let err = evaluate("@add(1, 'x')", &scope).unwrap_err();
//! assert!(err.to_string().starts_with("`add` expects numbers, got string 'x' as argument 2"));
//! let err = evaluate("@concat('a',", &scope).unwrap_err();
//! assert!(err.to_string().starts_with("syntax error at line 1, column 2"));
//! ```
//!
//! # Behaviour that is not obvious
//!
//! Checked against Microsoft's own evaluator (PyPI `data-factory-testing-framework`),
//! which is the reference where it disagrees with the documentation's prose.
//!
//! - **Interpolation stringifies** (see [`to_interpolated_string`]):
//!   booleans as `True`/`False`, `null` as the empty string, objects and
//!   arrays as compact JSON (`{"a":1}`, `[1,2]`; floats inside keep `.0`),
//!   whole floats without a fraction (`3.0` → `3`), and .NET notation for
//!   very small or large floats (`1E-05`, `1E+17`). `string()`, `concat()`
//!   and `join()` stringify the same way.
//! - **Integer vs float arithmetic**: integers are 64-bit and overflow is an
//!   error. Integer `div` truncates toward zero (`div(7, 2)` = 3,
//!   `div(-7, 2)` = -3); any float operand makes a float result
//!   (`div(7.0, 2)` = 3.5, `mul(3, 1.0)` = 3.0). Division and `mod` by zero
//!   are errors for floats too. `max`/`min` return a float when any operand
//!   is a float. `int(1.9)` is an error (no truncation); `int('1e3')` is 1000.
//! - **Equality**: `equals(1, 1.0)` is true but `equals(true, 1)` is false;
//!   strings compare case-sensitively; inside arrays `1` and `1.0` differ
//!   (`contains(createArray(1), 1.0)` is false).
//! - **Case**: function names, property names, variable names, activity
//!   names and time-zone names ignore case. `indexOf`, `lastIndexOf`,
//!   `startsWith`, `endsWith` ignore case; `contains` (on strings and
//!   arrays), `replace`, `split` and `equals` do not; `contains` on an object
//!   looks the key up ignoring case.
//! - **Dates**: the default output format is `yyyy-MM-ddTHH:mm:ss.fffffffK`
//!   with 7 fraction digits. `K` depends on the input: `Z` for UTC input,
//!   nothing for input without a zone, and `+00:00` for input with an offset
//!   (which is shifted to UTC first). Amounts in `addDays` etc. must be
//!   integers. `convertFromUtc` results have no zone suffix unless the
//!   target is UTC. Format strings are .NET's in the en-US culture, as the
//!   Data Factory service formats them (`'D'` → `Thursday, March 15, 2018`,
//!   `'d'` → `3/15/2018`, `'t'` → `1:00 PM`); the reference package runs
//!   with the invariant culture (`Thursday, 15 March 2018`), and the
//!   service is followed (tests/data_factory.rs). Lengths and positions in
//!   strings count UTF-16 code units, as .NET does.
//! - `lastIndexOf(text, '')` is `length(text) - 1`, as the service's .NET
//!   Framework answers and Microsoft's function reference documents (the
//!   reference package, on .NET 8, answers `length(text)`).
//! - **Short-circuit**: `and`, `or`, `if` and `coalesce` evaluate arguments
//!   only as far as needed, so `if(true, 1, div(1, 0))` is 1.
//! - **Safe navigation**: `a?.b` and `a?[0]` yield null when `a` is null or
//!   lacks `b`/index 0, and the rest of the chain is skipped
//!   (`x?.a.b.c` is null when `x.a` is missing).
//! - **Leniency**: the parser accepts property and index access after any
//!   value (Data Factory only after calls and properties) and `true`,
//!   `false`, `null` in any case (as Data Factory does).
//!
//! # Known deviations from Data Factory
//!
//! - `xpath()` implements XPath 1.0 without variables and the `id`/`lang`
//!   functions, and matches prefixed name tests as written (see [`xpath`]); XML parsing has no DTD
//!   support. Element nodes returned by `xpath()` are compact, where the
//!   reference indents the outermost element when it has children.
//! - Culture-aware string ordering in `greater`/`less` is approximated
//!   (ICU-like: punctuation, then symbols, digits, letters; letters
//!   alphabetically ignoring case and common Latin accents, then lower case
//!   first); rare scripts and contractions may order differently.
//! - Objects keep their keys in insertion order, as Data Factory does
//!   (the workspace builds `serde_json` with `preserve_order`).
//! - Float results that are not finite are errors (the reference returns the
//!   string `"Infinity"`); `json()` rejects truncated JSON (`'[1,2'`) that
//!   the reference's lenient parser completes (trailing text after a
//!   complete value is ignored by both).
//! - `formatDateTime`'s third argument (a locale) is accepted and ignored:
//!   formats are always en-US.
//! - Positions count UTF-16 code units like .NET, but a substring that would
//!   split a surrogate pair yields U+FFFD instead of a lone surrogate.
//! - Timestamps with an offset are treated as the reference does on a UTC
//!   host (shifted to UTC, printed with `+00:00`).

pub mod ast;
pub mod datetime;
mod error;
mod eval;
pub mod functions;
mod parser;
mod scope;
mod timezones;
pub mod value;
pub mod xml;
pub mod xpath;

pub use ast::{Expr, Node, NodeKind, Segment, Span, Template};
pub use error::{Error, EvalError, EvalErrorKind, ParseError};
pub use parser::MAX_DEPTH;
pub use scope::{ContextScope, EmptyScope, Scope};
pub use value::to_interpolated_string;

use serde_json::Value;

impl Expr {
    /// Parses a whole JSON string value: a literal, an `@expression`, or a
    /// string with `@{…}` interpolations. Errors point at the character.
    pub fn parse(text: &str) -> Result<Expr, ParseError> {
        parser::parse(text)
    }

    /// Evaluates against `scope`. May be called any number of times.
    pub fn eval(&self, scope: &dyn Scope) -> Result<Value, EvalError> {
        eval::eval_template(&self.template, scope)
    }

    /// Evaluates and stringifies the result as interpolation would (for
    /// path templates and other places that need text).
    pub fn eval_to_string(&self, scope: &dyn Scope) -> Result<String, EvalError> {
        self.eval(scope).map(|v| to_interpolated_string(&v))
    }
}

/// Parses and evaluates `text` in one call. The error's `Display` is the
/// complete message for the user.
pub fn evaluate(text: &str, scope: &dyn Scope) -> Result<Value, Error> {
    let expr = Expr::parse(text)?;
    expr.eval(scope).map_err(|error| Error::Eval {
        error,
        text: text.to_string(),
    })
}
