//! Lexer and recursive-descent parser from a JSON string value to [`Expr`].
//!
//! The value is classified first, the way Data Factory does it:
//!
//! ```text
//! "@@…"           -> literal: drop the first '@', the rest is taken as is
//! "@{…" or "…@{…" -> interpolation: text and @{expr} segments ("@@{" is a literal "@{")
//! "@…"            -> one expression, which may yield any JSON type
//! anything else   -> literal string ("@" alone is the literal "@")
//! ```
//!
//! Expressions are `primary (postfix)*` where primary is a number, a
//! single-quoted string (`''` escapes a quote), `true`/`false`/`null` (any
//! case) or a call `name(args)`; postfix is `.name`, `?.name`, `[expr]` or
//! `?[expr]`. There are no operators. Nesting is limited to
//! [`MAX_DEPTH`] so hostile input cannot overflow the stack.

use crate::ast::{Expr, Node, NodeKind, Segment, Span, Template};
use crate::error::ParseError;

/// How deep calls and indexes may nest.
pub const MAX_DEPTH: usize = 200;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    QDot,
    QBracket,
    RBrace,
    End,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) => format!("name '{s}'"),
        Tok::Int(i) => format!("number {i}"),
        Tok::Float(x) => format!("number {x}"),
        Tok::Str(_) => "a string".to_string(),
        Tok::LParen => "'('".to_string(),
        Tok::RParen => "')'".to_string(),
        Tok::LBracket => "'['".to_string(),
        Tok::RBracket => "']'".to_string(),
        Tok::Comma => "','".to_string(),
        Tok::Dot => "'.'".to_string(),
        Tok::QDot => "'?.'".to_string(),
        Tok::QBracket => "'?['".to_string(),
        Tok::RBrace => "'}'".to_string(),
        Tok::End => "the end of the expression".to_string(),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    peeked: Option<(Tok, Span)>,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, pos: usize) -> Self {
        Parser {
            src,
            pos,
            peeked: None,
            depth: 0,
        }
    }

    fn err(&self, offset: usize, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.src, offset, msg)
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn lex(&mut self) -> Result<(Tok, Span), ParseError> {
        let ws = self.rest().len() - self.rest().trim_start().len();
        self.pos += ws;
        let start = self.pos;
        let rest = self.rest();
        let mut chars = rest.chars();
        let Some(c) = chars.next() else {
            return Ok((Tok::End, Span::new(start, start)));
        };
        let next = chars.next();
        let single = |tok: Tok, len: usize, p: &mut Self| {
            p.pos += len;
            Ok((tok, Span::new(start, start + len)))
        };
        match c {
            '(' => single(Tok::LParen, 1, self),
            ')' => single(Tok::RParen, 1, self),
            '[' => single(Tok::LBracket, 1, self),
            ']' => single(Tok::RBracket, 1, self),
            ',' => single(Tok::Comma, 1, self),
            '.' => single(Tok::Dot, 1, self),
            '}' => single(Tok::RBrace, 1, self),
            '?' if next == Some('.') => single(Tok::QDot, 2, self),
            '?' if next == Some('[') => single(Tok::QBracket, 2, self),
            '\'' => self.lex_string(start),
            '0'..='9' => self.lex_number(start),
            '-' | '+' if next.is_some_and(|d| d.is_ascii_digit()) => self.lex_number(start),
            c if is_ident_start(c) => {
                let len = rest
                    .char_indices()
                    .find(|&(_, ch)| !is_ident_char(ch))
                    .map_or(rest.len(), |(i, _)| i);
                self.pos += len;
                Ok((
                    Tok::Ident(rest[..len].to_string()),
                    Span::new(start, start + len),
                ))
            }
            '@' => Err(self.err(
                start,
                "unexpected '@' inside an expression (only the start of the value takes '@')",
            )),
            other => Err(self.err(start, format!("unexpected character '{other}'"))),
        }
    }

    fn lex_string(&mut self, start: usize) -> Result<(Tok, Span), ParseError> {
        let mut out = String::new();
        let mut i = start + 1;
        loop {
            let Some(rest) = self.src.get(i..) else {
                return Err(self.err(start, "string literal is not closed by a quote (')"));
            };
            match rest.find('\'') {
                None => {
                    return Err(self.err(start, "string literal is not closed by a quote (')"));
                }
                Some(q) => {
                    out.push_str(&rest[..q]);
                    i += q + 1;
                    if self.src.get(i..).is_some_and(|r| r.starts_with('\'')) {
                        out.push('\'');
                        i += 1;
                    } else {
                        self.pos = i;
                        return Ok((Tok::Str(out), Span::new(start, i)));
                    }
                }
            }
        }
    }

    fn lex_number(&mut self, start: usize) -> Result<(Tok, Span), ParseError> {
        let bytes = self.src.as_bytes();
        let mut i = start;
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let digits = |i: &mut usize| {
            let s = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > s
        };
        digits(&mut i);
        let mut is_float = false;
        if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            digits(&mut i);
            is_float = true;
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(bytes.get(j), Some(b'-' | b'+')) {
                j += 1;
            }
            if digits(&mut j) {
                i = j;
                is_float = true;
            }
        }
        let text = &self.src[start..i];
        if let Some(c) = self.src[i..].chars().next()
            && is_ident_char(c)
        {
            return Err(self.err(i, format!("unexpected character '{c}' in number")));
        }
        let span = Span::new(start, i);
        self.pos = i;
        if is_float {
            match text.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok((Tok::Float(x), span)),
                _ => Err(self.err(start, format!("number {text} is out of range"))),
            }
        } else {
            match text.parse::<i64>() {
                Ok(n) => Ok((Tok::Int(n), span)),
                Err(_) => Err(self.err(
                    start,
                    format!("integer {text} does not fit in 64 bits (write it as a float, e.g. {text}.0)"),
                )),
            }
        }
    }

    fn peek(&mut self) -> Result<&(Tok, Span), ParseError> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        // Just filled above.
        Ok(self.peeked.get_or_insert((Tok::End, Span::default())))
    }

    fn next(&mut self) -> Result<(Tok, Span), ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<Span, ParseError> {
        let (tok, span) = self.next()?;
        if tok == want {
            Ok(span)
        } else {
            Err(self.err(
                span.start,
                format!("expected {what}, found {}", describe(&tok)),
            ))
        }
    }

    fn expression(&mut self) -> Result<Node, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let at = self.pos;
            return Err(self.err(
                at,
                format!("expression nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let mut node = self.primary()?;
        loop {
            let (tok, _) = self.peek()?.clone();
            match tok {
                Tok::Dot | Tok::QDot => {
                    self.next()?;
                    let (name_tok, name_span) = self.next()?;
                    let name = match name_tok {
                        Tok::Ident(n) => n,
                        other => {
                            return Err(self.err(
                                name_span.start,
                                format!(
                                    "expected a property name after '.', found {}",
                                    describe(&other)
                                ),
                            ));
                        }
                    };
                    let span = Span::new(node.span.start, name_span.end);
                    node = Node {
                        kind: NodeKind::Property {
                            target: Box::new(node),
                            name,
                            safe: tok == Tok::QDot,
                        },
                        span,
                    };
                }
                Tok::LBracket | Tok::QBracket => {
                    self.next()?;
                    let index = self.expression()?;
                    let end = self.expect(Tok::RBracket, "']'")?;
                    let span = Span::new(node.span.start, end.end);
                    node = Node {
                        kind: NodeKind::Index {
                            target: Box::new(node),
                            index: Box::new(index),
                            safe: tok == Tok::QBracket,
                        },
                        span,
                    };
                }
                _ => break,
            }
        }
        self.depth -= 1;
        Ok(node)
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        let (tok, span) = self.next()?;
        let kind = match tok {
            Tok::Int(n) => NodeKind::Int(n),
            Tok::Float(x) => NodeKind::Float(x),
            Tok::Str(s) => NodeKind::Str(s),
            Tok::Ident(name) => {
                if self.peek()?.0 == Tok::LParen {
                    self.next()?;
                    let mut args = Vec::new();
                    if self.peek()?.0 == Tok::RParen {
                        let end = self.next()?.1;
                        return Ok(Node {
                            kind: NodeKind::Call { name, args },
                            span: Span::new(span.start, end.end),
                        });
                    }
                    loop {
                        if self.peek()?.0 == Tok::End {
                            return Err(self.err(
                                span.start,
                                format!("'(' after '{name}' is not closed by ')'"),
                            ));
                        }
                        args.push(self.expression()?);
                        let (t, s) = self.next()?;
                        match t {
                            Tok::Comma => continue,
                            Tok::RParen => {
                                return Ok(Node {
                                    kind: NodeKind::Call { name, args },
                                    span: Span::new(span.start, s.end),
                                });
                            }
                            Tok::End => {
                                return Err(self.err(
                                    span.start,
                                    format!("'(' after '{name}' is not closed by ')'"),
                                ));
                            }
                            other => {
                                return Err(self.err(
                                    s.start,
                                    format!(
                                        "expected ',' or ')' in the arguments of '{name}', found {}",
                                        describe(&other)
                                    ),
                                ));
                            }
                        }
                    }
                }
                match name.to_ascii_lowercase().as_str() {
                    "true" => NodeKind::Bool(true),
                    "false" => NodeKind::Bool(false),
                    "null" => NodeKind::Null,
                    _ => {
                        return Err(self.err(
                            span.start,
                            format!(
                                "'{name}' is not a value: call it as a function ('{name}(…)') or quote it as a string ('''{name}''')"
                            ),
                        ));
                    }
                }
            }
            Tok::End => return Err(self.err(span.start, "expected an expression, found nothing")),
            other => {
                return Err(self.err(
                    span.start,
                    format!("expected an expression, found {}", describe(&other)),
                ));
            }
        };
        Ok(Node { kind, span })
    }
}

/// Parses one whole JSON string value. See the module doc.
pub(crate) fn parse(text: &str) -> Result<Expr, ParseError> {
    let template = if let Some(rest) = text.strip_prefix("@@") {
        Template::Literal(format!("@{rest}"))
    } else if text.starts_with("@{") || (text.contains("@{") && !text.starts_with('@')) {
        parse_interpolation(text)?
    } else if text.len() > 1 && text.starts_with('@') {
        let mut p = Parser::new(text, 1);
        let node = p.expression()?;
        let (tok, span) = p.next()?;
        if tok != Tok::End {
            return Err(ParseError::new(
                text,
                span.start,
                format!(
                    "expected the end of the expression, found {}",
                    describe(&tok)
                ),
            ));
        }
        Template::Expression(node)
    } else {
        Template::Literal(text.to_string())
    };
    Ok(Expr {
        source: text.to_string(),
        template,
    })
}

fn parse_interpolation(text: &str) -> Result<Template, ParseError> {
    let mut segments = Vec::new();
    let mut buf = String::new();
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        if rest.starts_with("@@{") {
            buf.push_str("@{");
            pos += 3;
        } else if rest.starts_with("@{") {
            if !buf.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut buf)));
            }
            let mut p = Parser::new(text, pos + 2);
            let node = p.expression().map_err(|e| {
                if e.offset() >= text.len() {
                    ParseError::new(text, pos, "'@{' is not closed by '}'")
                } else {
                    e
                }
            })?;
            let (tok, span) = p.next()?;
            match tok {
                Tok::RBrace => {}
                Tok::End => return Err(ParseError::new(text, pos, "'@{' is not closed by '}'")),
                other => {
                    return Err(ParseError::new(
                        text,
                        span.start,
                        format!("expected '}}' to close '@{{', found {}", describe(&other)),
                    ));
                }
            }
            segments.push(Segment::Expr(node));
            pos = span.end;
        } else {
            // Copy up to the next '@' (or one char if we are on an '@').
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let step = rest[first..].find('@').map_or(rest.len(), |i| i + first);
            buf.push_str(&rest[..step]);
            pos += step;
        }
    }
    if !buf.is_empty() {
        segments.push(Segment::Text(buf));
    }
    if !segments.iter().any(|s| matches!(s, Segment::Expr(_))) {
        let text = segments
            .into_iter()
            .map(|s| match s {
                Segment::Text(t) => t,
                Segment::Expr(_) => String::new(),
            })
            .collect();
        return Ok(Template::Literal(text));
    }
    Ok(Template::Interpolation(segments))
}
