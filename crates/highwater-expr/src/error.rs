//! Errors: [`ParseError`] (where the text is wrong), [`EvalError`] (which
//! function or reference failed, and why) and [`Error`], which wraps both for
//! [`crate::evaluate`].
//!
//! Every message is meant to be shown to the user as is: parse errors carry
//! the line and column inside the JSON string value and a caret excerpt;
//! evaluation errors name the function and the argument.

use std::fmt;

use crate::ast::Span;

/// The text is not a valid Data Factory expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    message: String,
    offset: usize,
    line: usize,
    column: usize,
    excerpt: String,
}

impl ParseError {
    pub(crate) fn new(source: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(source.len());
        let (line, column, excerpt) = locate(source, offset);
        ParseError {
            message: message.into(),
            offset,
            line,
            column,
            excerpt,
        }
    }

    /// What is wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Byte offset into the text given to the parser.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// 1-based line inside the JSON string value.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column (in characters) inside that line.
    pub fn column(&self) -> usize {
        self.column
    }
}

/// Line, column (both 1-based, column in chars) and the line's text.
fn locate(source: &str, offset: usize) -> (usize, usize, String) {
    let mut offset = offset;
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    (line, column, source[line_start..line_end].to_string())
}

/// Writes `excerpt` and a caret under `column`.
fn write_caret(f: &mut fmt::Formatter<'_>, excerpt: &str, column: usize) -> fmt::Result {
    // Tabs keep their width in the caret line so the caret stays aligned.
    let pad: String = excerpt
        .chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    write!(f, "\n  {excerpt}\n  {pad}^")
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "syntax error at line {}, column {}: {}",
            self.line, self.column, self.message
        )?;
        write_caret(f, &self.excerpt, self.column)
    }
}

impl std::error::Error for ParseError {}

/// What kind of evaluation failure happened; decides how a caller reacts
/// (a pipeline engine fails the activity for every kind alike, but tests and
/// tools may want to tell them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvalErrorKind {
    /// No function of that name.
    UnknownFunction,
    /// Wrong number of arguments.
    Arity,
    /// An argument of the wrong type.
    Type,
    /// An argument of the right type but an invalid value (bad date, bad
    /// base64, out-of-range index, unknown time zone…).
    Value,
    /// Integer overflow, or a float result that is not finite.
    Overflow,
    /// Division or modulo by zero.
    DivideByZero,
    /// A property, index, variable, parameter, activity or other reference
    /// that does not exist.
    NotFound,
    /// The scope cannot provide this reference here (e.g. `item()` outside a
    /// ForEach), or the context given to [`crate::ContextScope`] is invalid.
    Context,
}

/// An expression parsed but could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    kind: EvalErrorKind,
    message: String,
    function: Option<String>,
    span: Option<Span>,
}

impl EvalError {
    /// A new error of `kind` with a user-facing message.
    pub fn new(kind: EvalErrorKind, message: impl Into<String>) -> Self {
        EvalError {
            kind,
            message: message.into(),
            function: None,
            span: None,
        }
    }

    /// A reference that does not exist (for [`crate::Scope`] implementors).
    pub fn not_found(message: impl Into<String>) -> Self {
        EvalError::new(EvalErrorKind::NotFound, message)
    }

    /// A reference the scope cannot provide here (for [`crate::Scope`]
    /// implementors).
    pub fn context(message: impl Into<String>) -> Self {
        EvalError::new(EvalErrorKind::Context, message)
    }

    pub(crate) fn in_function(mut self, name: &str) -> Self {
        if self.function.is_none() {
            self.function = Some(name.to_string());
        }
        self
    }

    pub(crate) fn at(mut self, span: Span) -> Self {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> EvalErrorKind {
        self.kind
    }

    /// The message, which names the function and the argument when there is one.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The canonical name of the function that failed, if a function failed.
    pub fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }

    /// The span of the failing node in the parsed text, when known.
    pub fn span(&self) -> Option<Span> {
        self.span
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

/// Either a parse or an evaluation error, as returned by [`crate::evaluate`].
///
/// `Display` is the complete user-facing message: for a parse error the line,
/// column and caret excerpt; for an evaluation error the message followed by
/// where in the text it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text does not parse.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// The expression failed while evaluating.
    #[error("{}", render_eval(.error, .text))]
    Eval {
        /// The evaluation error.
        error: EvalError,
        /// The text that was evaluated, for the excerpt.
        text: String,
    },
}

fn render_eval(error: &EvalError, source: &str) -> String {
    struct Caret<'a>(&'a EvalError, &'a str);
    impl fmt::Display for Caret<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0.message())?;
            if let Some(span) = self.0.span()
                && span.start <= self.1.len()
            {
                let (line, column, excerpt) = locate(self.1, span.start);
                write!(f, "\n at line {line}, column {column}:")?;
                write_caret(f, &excerpt, column)?;
            }
            Ok(())
        }
    }
    Caret(error, source).to_string()
}
