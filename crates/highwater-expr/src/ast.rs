//! The spanned syntax tree of a Data Factory value, and its printer.
//!
//! [`Expr`] is the whole JSON string value as a pipeline holds it: a literal,
//! one `@expression`, or a string with `@{…}` interpolations. Each [`Node`]
//! carries the byte [`Span`] it was parsed from, so evaluation errors can point
//! back at the source.
//!
//! `Display` prints a canonical form that parses back to the same tree
//! (`parse(print(ast)) == ast`, spans aside: equality on nodes ignores spans
//! on purpose, so a tree compares equal to its re-parsed canonical print).

use std::fmt;

/// A byte range in the text given to [`Expr::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (bytes).
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// One parsed JSON string value: what [`Expr::parse`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub(crate) source: String,
    pub(crate) template: Template,
}

/// The three shapes a Data Factory string value can take.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// No expression at all: the value is this string (after `@@` unescaping).
    Literal(String),
    /// `@expression`: the value is whatever the expression yields, of any type.
    Expression(Node),
    /// Text with at least one `@{expression}`: always yields a string.
    Interpolation(Vec<Segment>),
}

/// A piece of an interpolated string.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// Literal text (with `@@{` already unescaped to `@{`).
    Text(String),
    /// `@{expression}`, stringified by [`crate::to_interpolated_string`].
    Expr(Node),
}

/// An expression node with the span it came from.
#[derive(Debug, Clone)]
pub struct Node {
    /// What the node is.
    pub kind: NodeKind,
    /// Where it is in the source text.
    pub span: Span,
}

impl Node {
    /// For a call, the span of the function name alone.
    pub fn name_span(&self) -> Option<Span> {
        match &self.kind {
            NodeKind::Call { name, .. } => {
                Some(Span::new(self.span.start, self.span.start + name.len()))
            }
            _ => None,
        }
    }
}

impl PartialEq for Node {
    /// Structural equality; spans are ignored (see the module doc).
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

/// The kinds of expression node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A 64-bit integer literal.
    Int(i64),
    /// A floating-point literal (always finite).
    Float(f64),
    /// A single-quoted string literal, `''` already unescaped.
    Str(String),
    /// `name(args…)`; the name is kept as written (lookup is case-insensitive).
    Call {
        /// Function name as written (it starts the node's span; see
        /// [`Node::name_span`]).
        name: String,
        /// Arguments in order.
        args: Vec<Node>,
    },
    /// `target.name` or `target?.name`.
    Property {
        /// The value whose property is read.
        target: Box<Node>,
        /// Property name as written.
        name: String,
        /// `?.`: a missing property or null target yields null.
        safe: bool,
    },
    /// `target[index]` or `target?[index]`.
    Index {
        /// The array or object indexed.
        target: Box<Node>,
        /// The index or key expression.
        index: Box<Node>,
        /// `?[`: an out-of-range index or null target yields null.
        safe: bool,
    },
}

impl Expr {
    /// The text this expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed tree.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// True when the value contains no expression (a plain literal string).
    pub fn is_literal(&self) -> bool {
        matches!(self.template, Template::Literal(_))
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.template.fmt(f)
    }
}

/// Escapes text for an interpolation or literal: `@{` must be written `@@{`.
fn escape_text(text: &str) -> String {
    text.replace("@{", "@@{")
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Template::Literal(s) => {
                if let Some(rest) = s.strip_prefix('@') {
                    // A leading `@@` makes the whole rest literal, unescaped.
                    write!(f, "@@{rest}")
                } else {
                    f.write_str(&escape_text(s))
                }
            }
            Template::Expression(node) => write!(f, "@{node}"),
            Template::Interpolation(segments) => {
                for seg in segments {
                    match seg {
                        Segment::Text(t) => f.write_str(&escape_text(t))?,
                        Segment::Expr(node) => write!(f, "@{{{node}}}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            NodeKind::Null => f.write_str("null"),
            NodeKind::Bool(b) => write!(f, "{b}"),
            NodeKind::Int(i) => write!(f, "{i}"),
            // `{:?}` always keeps a `.` or an exponent, so it re-lexes as a float.
            NodeKind::Float(x) => write!(f, "{x:?}"),
            NodeKind::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            NodeKind::Call { name, args, .. } => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            NodeKind::Property { target, name, safe } => {
                write!(f, "{target}{}{name}", if *safe { "?." } else { "." })
            }
            NodeKind::Index {
                target,
                index,
                safe,
            } => write!(f, "{target}{}{index}]", if *safe { "?[" } else { "[" }),
        }
    }
}
