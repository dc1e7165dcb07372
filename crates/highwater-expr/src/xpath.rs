//! XPath 1.0 for the `xpath()` function, over the [`crate::xml`] model.
//!
//! Supported: location paths (absolute, relative, `//`, `.`, `..`,
//! `@attr`, `*`, `text()`, `node()`, `comment()`, the axes `child`,
//! `descendant`, `descendant-or-self`, `self`, `parent`, `ancestor`,
//! `ancestor-or-self`, `attribute`, `following-sibling`,
//! `preceding-sibling`), predicates (positional and boolean), unions with
//! `|`, the operators `or`, `and`, `=`, `!=`, `<`, `<=`, `>`, `>=`, `+`,
//! `-`, `*`, `div`, `mod` and unary minus, and the core functions `last`,
//! `position`, `count`, `name`, `local-name`, `string`, `concat`,
//! `starts-with`, `contains`, `substring-before`, `substring-after`,
//! `substring`, `string-length`, `normalize-space`, `translate`, `boolean`,
//! `not`, `true`, `false`, `number`, `sum`, `floor`, `ceiling`, `round`.
//! Namespaces as .NET's `XPathNavigator` without a namespace manager (Data
//! Factory passes none): an unprefixed name test matches only elements in
//! no namespace, so a document with a default namespace is read with
//! `/*[local-name()="file" and namespace-uri()="urn:x"]` or
//! `/*[name()="file"]`; `namespace-uri()` resolves the `xmlns`
//! declarations in scope; `xmlns` attributes are not on the attribute axis;
//! a returned element carries the declarations of the namespaces it uses
//! that were declared above it. A prefixed name test (`p:file`) matches the
//! name as written (.NET refuses it). Variables and the `id`/`lang`
//! functions are not supported.
//!
//! Results map to JSON as Data Factory maps them: a node set becomes an
//! array (elements as XML values, text nodes as strings, attributes as
//! `name="value"` strings), numbers become floats (`count(//b)` is `2.0`).

use crate::xml::{Document, Element, XmlNode};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind<'a> {
    Root,
    Element(&'a Element),
    Text(&'a str),
    Attr(&'a str, &'a str),
    Comment(&'a str),
    Pi(&'a str),
}

struct ANode<'a> {
    parent: Option<usize>,
    kind: Kind<'a>,
    children: Vec<usize>,
    attrs: Vec<usize>,
}

/// The document flattened in document order, with parent links.
struct Arena<'a> {
    nodes: Vec<ANode<'a>>,
}

impl<'a> Arena<'a> {
    fn new(doc: &'a Document) -> Self {
        let mut a = Arena {
            nodes: vec![ANode {
                parent: None,
                kind: Kind::Root,
                children: Vec::new(),
                attrs: Vec::new(),
            }],
        };
        let root = a.add_element(&doc.root, 0);
        a.nodes[0].children.push(root);
        a
    }

    fn push(&mut self, parent: usize, kind: Kind<'a>) -> usize {
        self.nodes.push(ANode {
            parent: Some(parent),
            kind,
            children: Vec::new(),
            attrs: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn add_element(&mut self, e: &'a Element, parent: usize) -> usize {
        let id = self.push(parent, Kind::Element(e));
        for (n, v) in e.attrs.iter().filter(|(n, _)| !is_xmlns(n)) {
            let a = self.push(id, Kind::Attr(n, v));
            self.nodes[id].attrs.push(a);
        }
        for c in &e.children {
            let child = match c {
                XmlNode::Element(x) => self.add_element(x, id),
                XmlNode::Text(t) | XmlNode::CData(t) => self.push(id, Kind::Text(t)),
                XmlNode::Comment(t) => self.push(id, Kind::Comment(t)),
                XmlNode::Pi(_, d) => self.push(id, Kind::Pi(d)),
            };
            self.nodes[id].children.push(child);
        }
        id
    }

    fn string_value(&self, n: usize) -> String {
        match self.nodes[n].kind {
            Kind::Text(t) | Kind::Comment(t) | Kind::Pi(t) => t.to_string(),
            Kind::Attr(_, v) => v.to_string(),
            Kind::Root | Kind::Element(_) => {
                let mut out = String::new();
                self.collect_text(n, &mut out);
                out
            }
        }
    }

    fn collect_text(&self, n: usize, out: &mut String) {
        for &c in &self.nodes[n].children {
            match self.nodes[c].kind {
                Kind::Text(t) => out.push_str(t),
                Kind::Element(_) => self.collect_text(c, out),
                _ => {}
            }
        }
    }

    fn name(&self, n: usize) -> &'a str {
        match self.nodes[n].kind {
            Kind::Element(e) => &e.name,
            Kind::Attr(name, _) => name,
            _ => "",
        }
    }

    /// The namespace URI of an element or attribute: its prefix (an
    /// unprefixed element: the default namespace; an unprefixed attribute:
    /// none) looked up in the `xmlns` declarations of it and its ancestors.
    fn namespace_uri(&self, n: usize) -> String {
        let (name, is_attr, start) = match self.nodes[n].kind {
            Kind::Element(e) => (e.name.as_str(), false, Some(n)),
            Kind::Attr(name, _) => (name, true, self.nodes[n].parent),
            _ => return String::new(),
        };
        let prefix = match name.split_once(':') {
            Some((p, _)) => p,
            None if is_attr => return String::new(),
            None => "",
        };
        if prefix == "xml" {
            return "http://www.w3.org/XML/1998/namespace".into();
        }
        let mut at = start;
        while let Some(x) = at {
            if let Kind::Element(e) = self.nodes[x].kind
                && let Some(uri) = declared(e, prefix)
            {
                return uri.to_string();
            }
            at = self.nodes[x].parent;
        }
        String::new()
    }

    fn descendants(&self, n: usize, out: &mut Vec<usize>) {
        for &c in &self.nodes[n].children {
            out.push(c);
            self.descendants(c, out);
        }
    }
}

/// A value during evaluation.
#[derive(Debug, Clone)]
enum Val {
    Nodes(Vec<usize>),
    Num(f64),
    Str(String),
    Bool(bool),
}

/// The result of an XPath evaluation, before mapping to JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum XResult {
    /// A node set, each node already rendered.
    Nodes(Vec<XItem>),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
    /// A boolean.
    Bool(bool),
}

/// One node of a node-set result.
#[derive(Debug, Clone, PartialEq)]
pub enum XItem {
    /// An element (or the whole document) as XML text.
    Xml(String),
    /// A text, attribute (`name="value"`), comment or PI node as a string.
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Slash,
    DSlash,
    LParen,
    RParen,
    LBrack,
    RBrack,
    Dot,
    DDot,
    At,
    Comma,
    Pipe,
    Axis(String),
    Op(&'static str),
    Star,
    Name(String),
    Func(String),
    NodeType(String),
    Lit(String),
    Num(f64),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks: Vec<Tok> = Vec::new();
    let mut i = 0;
    // XPath 1.0 §3.7: after these, `*` is a wildcard and names are names.
    let operand_context = |toks: &Vec<Tok>| match toks.last() {
        None => true,
        Some(t) => matches!(
            t,
            Tok::At
                | Tok::Axis(_)
                | Tok::LParen
                | Tok::LBrack
                | Tok::Comma
                | Tok::Op(_)
                | Tok::Slash
                | Tok::DSlash
                | Tok::Pipe
        ),
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '/' if next == Some('/') => {
                i += 2;
                Tok::DSlash
            }
            '/' => {
                i += 1;
                Tok::Slash
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '[' => {
                i += 1;
                Tok::LBrack
            }
            ']' => {
                i += 1;
                Tok::RBrack
            }
            '.' if next == Some('.') => {
                i += 2;
                Tok::DDot
            }
            '.' if !next.is_some_and(|d| d.is_ascii_digit()) => {
                i += 1;
                Tok::Dot
            }
            '@' => {
                i += 1;
                Tok::At
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '|' => {
                i += 1;
                Tok::Pipe
            }
            '=' => {
                i += 1;
                Tok::Op("=")
            }
            '!' if next == Some('=') => {
                i += 2;
                Tok::Op("!=")
            }
            '<' | '>' => {
                let eq = next == Some('=');
                i += if eq { 2 } else { 1 };
                match (c, eq) {
                    ('<', true) => Tok::Op("<="),
                    ('<', false) => Tok::Op("<"),
                    (_, true) => Tok::Op(">="),
                    _ => Tok::Op(">"),
                }
            }
            '+' => {
                i += 1;
                Tok::Op("+")
            }
            '-' => {
                i += 1;
                Tok::Op("-")
            }
            '*' => {
                i += 1;
                if operand_context(&toks) {
                    Tok::Star
                } else {
                    Tok::Op("*")
                }
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .ok_or("a string literal is not closed")?;
                let lit: String = chars[i + 1..i + 1 + end].iter().collect();
                i += end + 2;
                Tok::Lit(lit)
            }
            c if c.is_ascii_digit() || c == '.' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                Tok::Num(text.parse().map_err(|_| format!("bad number '{text}'"))?)
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | '.' | ':'))
                {
                    // `::` ends a name (axis), a single `:` is a prefix.
                    if chars[i] == ':' && chars.get(i + 1) == Some(&':') {
                        break;
                    }
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if !operand_context(&toks) && matches!(name.as_str(), "and" | "or" | "div" | "mod")
                {
                    Tok::Op(match name.as_str() {
                        "and" => "and",
                        "or" => "or",
                        "div" => "div",
                        _ => "mod",
                    })
                } else if chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&':') {
                    i = j + 2;
                    Tok::Axis(name)
                } else if chars.get(j) == Some(&'(') {
                    if matches!(
                        name.as_str(),
                        "text" | "node" | "comment" | "processing-instruction"
                    ) {
                        Tok::NodeType(name)
                    } else {
                        Tok::Func(name)
                    }
                } else {
                    Tok::Name(name)
                }
            }
            other => return Err(format!("unexpected character '{other}'")),
        };
        toks.push(tok);
    }
    Ok(toks)
}

#[derive(Debug, Clone)]
enum Test {
    Name(String),
    Any,
    Text,
    Node,
    Comment,
    Pi,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Axis {
    Child,
    Descendant,
    DescendantOrSelf,
    Itself,
    Parent,
    Ancestor,
    AncestorOrSelf,
    Attribute,
    FollowingSibling,
    PrecedingSibling,
}

#[derive(Debug, Clone)]
struct Step {
    axis: Axis,
    test: Test,
    preds: Vec<Ast>,
}

#[derive(Debug, Clone)]
enum Ast {
    Num(f64),
    Lit(String),
    Call(String, Vec<Ast>),
    Neg(Box<Ast>),
    Bin(&'static str, Box<Ast>, Box<Ast>),
    Union(Box<Ast>, Box<Ast>),
    /// Absolute (starts at root) or relative path, optionally after a filter.
    Path {
        start: Option<Box<Ast>>,
        absolute: bool,
        steps: Vec<Step>,
    },
    Filter(Box<Ast>, Vec<Ast>),
}

struct P {
    toks: Vec<Tok>,
    i: usize,
    depth: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }
    fn expect(&mut self, t: Tok) -> Result<(), String> {
        if self.bump() == Some(t.clone()) {
            Ok(())
        } else {
            Err(format!("expected {t:?}"))
        }
    }

    fn expr(&mut self) -> Result<Ast, String> {
        self.depth += 1;
        if self.depth > 100 {
            return Err("the XPath nests too deeply".into());
        }
        let r = self.binary(0);
        self.depth -= 1;
        r
    }

    fn binary(&mut self, level: usize) -> Result<Ast, String> {
        const LEVELS: [&[&str]; 6] = [
            &["or"],
            &["and"],
            &["=", "!="],
            &["<", "<=", ">", ">="],
            &["+", "-"],
            &["*", "div", "mod"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(Tok::Op(op)) = self.peek() {
            let op = *op;
            if !LEVELS[level].contains(&op) {
                break;
            }
            self.bump();
            let right = self.binary(level + 1)?;
            left = Ast::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Ast, String> {
        if self.peek() == Some(&Tok::Op("-")) {
            self.bump();
            self.depth += 1;
            if self.depth > 100 {
                return Err("the XPath nests too deeply".into());
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Ast::Neg(Box::new(inner)));
        }
        let mut left = self.path()?;
        while self.peek() == Some(&Tok::Pipe) {
            self.bump();
            let right = self.path()?;
            left = Ast::Union(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn path(&mut self) -> Result<Ast, String> {
        match self.peek() {
            Some(Tok::LParen | Tok::Lit(_) | Tok::Num(_) | Tok::Func(_)) => {
                let prim = self.primary()?;
                let preds = self.predicates()?;
                let base = if preds.is_empty() {
                    prim
                } else {
                    Ast::Filter(Box::new(prim), preds)
                };
                match self.peek() {
                    Some(Tok::Slash | Tok::DSlash) => {
                        let steps = self.rel_steps(true)?;
                        Ok(Ast::Path {
                            start: Some(Box::new(base)),
                            absolute: false,
                            steps,
                        })
                    }
                    _ => Ok(base),
                }
            }
            Some(Tok::Slash) => {
                self.bump();
                let steps = if self.starts_step() {
                    self.rel_steps(false)?
                } else {
                    Vec::new()
                };
                Ok(Ast::Path {
                    start: None,
                    absolute: true,
                    steps,
                })
            }
            Some(Tok::DSlash) => {
                let steps = self.rel_steps(true)?;
                Ok(Ast::Path {
                    start: None,
                    absolute: true,
                    steps,
                })
            }
            _ => {
                let steps = self.rel_steps(false)?;
                Ok(Ast::Path {
                    start: None,
                    absolute: false,
                    steps,
                })
            }
        }
    }

    fn starts_step(&self) -> bool {
        matches!(
            self.peek(),
            Some(
                Tok::Name(_)
                    | Tok::Star
                    | Tok::At
                    | Tok::Dot
                    | Tok::DDot
                    | Tok::Axis(_)
                    | Tok::NodeType(_)
            )
        )
    }

    /// Steps; with `leading_sep` the first token is a `/` or `//`.
    fn rel_steps(&mut self, leading_sep: bool) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        let mut need_sep = leading_sep;
        loop {
            if need_sep {
                match self.peek() {
                    Some(Tok::Slash) => {
                        self.bump();
                    }
                    Some(Tok::DSlash) => {
                        self.bump();
                        steps.push(Step {
                            axis: Axis::DescendantOrSelf,
                            test: Test::Node,
                            preds: Vec::new(),
                        });
                    }
                    _ => return Ok(steps),
                }
            }
            steps.push(self.step()?);
            need_sep = true;
        }
    }

    fn step(&mut self) -> Result<Step, String> {
        let axis = match self.peek() {
            Some(Tok::Dot) => {
                self.bump();
                return Ok(Step {
                    axis: Axis::Itself,
                    test: Test::Node,
                    preds: Vec::new(),
                });
            }
            Some(Tok::DDot) => {
                self.bump();
                return Ok(Step {
                    axis: Axis::Parent,
                    test: Test::Node,
                    preds: Vec::new(),
                });
            }
            Some(Tok::At) => {
                self.bump();
                Axis::Attribute
            }
            Some(Tok::Axis(name)) => {
                let a = match name.as_str() {
                    "child" => Axis::Child,
                    "descendant" => Axis::Descendant,
                    "descendant-or-self" => Axis::DescendantOrSelf,
                    "self" => Axis::Itself,
                    "parent" => Axis::Parent,
                    "ancestor" => Axis::Ancestor,
                    "ancestor-or-self" => Axis::AncestorOrSelf,
                    "attribute" => Axis::Attribute,
                    "following-sibling" => Axis::FollowingSibling,
                    "preceding-sibling" => Axis::PrecedingSibling,
                    other => return Err(format!("the axis '{other}' is not supported")),
                };
                self.bump();
                a
            }
            _ => Axis::Child,
        };
        let test = match self.bump() {
            Some(Tok::Star) => Test::Any,
            Some(Tok::Name(n)) => Test::Name(n),
            Some(Tok::NodeType(t)) => {
                self.expect(Tok::LParen)?;
                if let Some(Tok::Lit(_)) = self.peek() {
                    self.bump();
                }
                self.expect(Tok::RParen)?;
                match t.as_str() {
                    "text" => Test::Text,
                    "node" => Test::Node,
                    "comment" => Test::Comment,
                    _ => Test::Pi,
                }
            }
            other => return Err(format!("expected a step, found {other:?}")),
        };
        let preds = self.predicates()?;
        Ok(Step { axis, test, preds })
    }

    fn predicates(&mut self) -> Result<Vec<Ast>, String> {
        let mut preds = Vec::new();
        while self.peek() == Some(&Tok::LBrack) {
            self.bump();
            preds.push(self.expr()?);
            self.expect(Tok::RBrack)?;
        }
        Ok(preds)
    }

    fn primary(&mut self) -> Result<Ast, String> {
        match self.bump() {
            Some(Tok::LParen) => {
                let e = self.expr()?;
                self.expect(Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::Lit(s)) => Ok(Ast::Lit(s)),
            Some(Tok::Num(n)) => Ok(Ast::Num(n)),
            Some(Tok::Func(name)) => {
                self.expect(Tok::LParen)?;
                let mut args = Vec::new();
                if self.peek() != Some(&Tok::RParen) {
                    loop {
                        args.push(self.expr()?);
                        if self.peek() == Some(&Tok::Comma) {
                            self.bump();
                        } else {
                            break;
                        }
                    }
                }
                self.expect(Tok::RParen)?;
                Ok(Ast::Call(name, args))
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn parse(s: &str) -> Result<Ast, String> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err("the XPath is empty".into());
    }
    let mut p = P {
        toks,
        i: 0,
        depth: 0,
    };
    let ast = p.expr()?;
    if p.i != p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks.get(p.i)));
    }
    Ok(ast)
}

struct Ctx {
    node: usize,
    pos: usize,
    size: usize,
}

struct Eval<'a> {
    arena: Arena<'a>,
}

fn to_num_str(s: &str) -> f64 {
    s.trim().parse().unwrap_or(f64::NAN)
}

fn num_to_string(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if x == x.trunc() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

impl Eval<'_> {
    fn string(&self, v: &Val) -> String {
        match v {
            Val::Nodes(ns) => ns
                .first()
                .map(|&n| self.arena.string_value(n))
                .unwrap_or_default(),
            Val::Num(x) => num_to_string(*x),
            Val::Str(s) => s.clone(),
            Val::Bool(b) => b.to_string(),
        }
    }

    fn number(&self, v: &Val) -> f64 {
        match v {
            Val::Num(x) => *x,
            Val::Bool(b) => f64::from(u8::from(*b)),
            other => to_num_str(&self.string(other)),
        }
    }

    fn boolean(v: &Val) -> bool {
        match v {
            Val::Nodes(ns) => !ns.is_empty(),
            Val::Num(x) => *x != 0.0 && !x.is_nan(),
            Val::Str(s) => !s.is_empty(),
            Val::Bool(b) => *b,
        }
    }

    fn matches(&self, n: usize, test: &Test, axis: Axis) -> bool {
        let kind = self.arena.nodes[n].kind;
        match test {
            Test::Node => true,
            Test::Text => matches!(kind, Kind::Text(_)),
            Test::Comment => matches!(kind, Kind::Comment(_)),
            Test::Pi => matches!(kind, Kind::Pi(_)),
            Test::Any => match axis {
                Axis::Attribute => matches!(kind, Kind::Attr(..)),
                _ => matches!(kind, Kind::Element(_)),
            },
            Test::Name(name) => {
                let principal = match axis {
                    Axis::Attribute => matches!(kind, Kind::Attr(..)),
                    _ => matches!(kind, Kind::Element(_)),
                };
                let unprefixed_in_ns = !name.contains(':')
                    && matches!(kind, Kind::Element(_))
                    && !self.arena.namespace_uri(n).is_empty();
                principal
                    && !unprefixed_in_ns
                    && (self.arena.name(n) == name
                        || name
                            .strip_suffix(":*")
                            .is_some_and(|p| self.arena.name(n).starts_with(&format!("{p}:"))))
            }
        }
    }

    fn axis(&self, n: usize, axis: Axis) -> Vec<usize> {
        let a = &self.arena;
        let mut out = Vec::new();
        match axis {
            Axis::Child => out.extend(&a.nodes[n].children),
            Axis::Attribute => out.extend(&a.nodes[n].attrs),
            Axis::Descendant => a.descendants(n, &mut out),
            Axis::DescendantOrSelf => {
                out.push(n);
                a.descendants(n, &mut out);
            }
            Axis::Itself => out.push(n),
            Axis::Parent => out.extend(a.nodes[n].parent),
            Axis::Ancestor | Axis::AncestorOrSelf => {
                if axis == Axis::AncestorOrSelf {
                    out.push(n);
                }
                let mut p = a.nodes[n].parent;
                while let Some(x) = p {
                    out.push(x);
                    p = a.nodes[x].parent;
                }
            }
            Axis::FollowingSibling | Axis::PrecedingSibling => {
                if let Some(p) = a.nodes[n].parent
                    && !matches!(a.nodes[n].kind, Kind::Attr(..))
                {
                    let sibs = &a.nodes[p].children;
                    if let Some(i) = sibs.iter().position(|&s| s == n) {
                        if axis == Axis::FollowingSibling {
                            out.extend(&sibs[i + 1..]);
                        } else {
                            out.extend(sibs[..i].iter().rev());
                        }
                    }
                }
            }
        }
        out
    }

    fn filter(&self, nodes: Vec<usize>, preds: &[Ast]) -> Result<Vec<usize>, String> {
        let mut nodes = nodes;
        for pred in preds {
            let size = nodes.len();
            let mut kept = Vec::new();
            for (i, &n) in nodes.iter().enumerate() {
                let ctx = Ctx {
                    node: n,
                    pos: i + 1,
                    size,
                };
                let keep = match self.eval(pred, &ctx)? {
                    Val::Num(x) => x == (i + 1) as f64,
                    other => Self::boolean(&other),
                };
                if keep {
                    kept.push(n);
                }
            }
            nodes = kept;
        }
        Ok(nodes)
    }

    fn sorted(mut v: Vec<usize>) -> Vec<usize> {
        v.sort_unstable();
        v.dedup();
        v
    }

    fn eval(&self, ast: &Ast, ctx: &Ctx) -> Result<Val, String> {
        Ok(match ast {
            Ast::Num(x) => Val::Num(*x),
            Ast::Lit(s) => Val::Str(s.clone()),
            Ast::Neg(e) => Val::Num(-self.number(&self.eval(e, ctx)?)),
            Ast::Union(l, r) => match (self.eval(l, ctx)?, self.eval(r, ctx)?) {
                (Val::Nodes(mut a), Val::Nodes(b)) => {
                    a.extend(b);
                    Val::Nodes(Self::sorted(a))
                }
                _ => return Err("'|' needs node sets on both sides".into()),
            },
            Ast::Filter(e, preds) => match self.eval(e, ctx)? {
                Val::Nodes(ns) => Val::Nodes(self.filter(ns, preds)?),
                _ => return Err("predicates need a node set".into()),
            },
            Ast::Path {
                start,
                absolute,
                steps,
            } => {
                let mut nodes = match start {
                    Some(e) => match self.eval(e, ctx)? {
                        Val::Nodes(ns) => ns,
                        _ => return Err("a path must start from a node set".into()),
                    },
                    None if *absolute => vec![0],
                    None => vec![ctx.node],
                };
                for step in steps {
                    let mut next = Vec::new();
                    for &n in &nodes {
                        let cands: Vec<usize> = self
                            .axis(n, step.axis)
                            .into_iter()
                            .filter(|&c| self.matches(c, &step.test, step.axis))
                            .collect();
                        next.extend(self.filter(cands, &step.preds)?);
                    }
                    nodes = Self::sorted(next);
                }
                Val::Nodes(nodes)
            }
            Ast::Bin(op, l, r) => {
                let lv = self.eval(l, ctx)?;
                match *op {
                    "or" => {
                        return Ok(Val::Bool(
                            Self::boolean(&lv) || Self::boolean(&self.eval(r, ctx)?),
                        ));
                    }
                    "and" => {
                        return Ok(Val::Bool(
                            Self::boolean(&lv) && Self::boolean(&self.eval(r, ctx)?),
                        ));
                    }
                    _ => {}
                }
                let rv = self.eval(r, ctx)?;
                match *op {
                    "+" => Val::Num(self.number(&lv) + self.number(&rv)),
                    "-" => Val::Num(self.number(&lv) - self.number(&rv)),
                    "*" => Val::Num(self.number(&lv) * self.number(&rv)),
                    "div" => Val::Num(self.number(&lv) / self.number(&rv)),
                    "mod" => Val::Num(self.number(&lv) % self.number(&rv)),
                    cmp => Val::Bool(self.compare(cmp, &lv, &rv)),
                }
            }
            Ast::Call(name, args) => self.call(name, args, ctx)?,
        })
    }

    fn compare(&self, op: &str, l: &Val, r: &Val) -> bool {
        let atoms = |v: &Val| -> Vec<Val> {
            match v {
                Val::Nodes(ns) => ns
                    .iter()
                    .map(|&n| Val::Str(self.arena.string_value(n)))
                    .collect(),
                other => vec![other.clone()],
            }
        };
        // A node set against a boolean compares the set's truth value.
        let (l, r) = match (l, r) {
            (Val::Nodes(_), Val::Bool(_)) => (Val::Bool(Self::boolean(l)), r.clone()),
            (Val::Bool(_), Val::Nodes(_)) => (l.clone(), Val::Bool(Self::boolean(r))),
            _ => (l.clone(), r.clone()),
        };
        let (ls, rs) = (atoms(&l), atoms(&r));
        ls.iter().any(|a| {
            rs.iter().any(|b| match op {
                "=" | "!=" => {
                    let eq = match (a, b) {
                        (Val::Bool(_), _) | (_, Val::Bool(_)) => {
                            Self::boolean(a) == Self::boolean(b)
                        }
                        (Val::Num(_), _) | (_, Val::Num(_)) => self.number(a) == self.number(b),
                        _ => self.string(a) == self.string(b),
                    };
                    eq == (op == "=")
                }
                _ => {
                    let (x, y) = (self.number(a), self.number(b));
                    match op {
                        "<" => x < y,
                        "<=" => x <= y,
                        ">" => x > y,
                        _ => x >= y,
                    }
                }
            })
        })
    }

    fn call(&self, name: &str, args: &[Ast], ctx: &Ctx) -> Result<Val, String> {
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            vals.push(self.eval(a, ctx)?);
        }
        let arity = |min: usize, max: usize| -> Result<(), String> {
            if vals.len() < min || vals.len() > max {
                Err(format!("{name}() takes {min} to {max} arguments"))
            } else {
                Ok(())
            }
        };
        let s = |i: usize| -> String {
            vals.get(i)
                .map(|v| self.string(v))
                .unwrap_or_else(|| self.arena.string_value(ctx.node))
        };
        let nodes = |i: usize| -> Result<Vec<usize>, String> {
            match vals.get(i) {
                Some(Val::Nodes(ns)) => Ok(ns.clone()),
                None => Ok(vec![ctx.node]),
                Some(_) => Err(format!("{name}() expects a node set")),
            }
        };
        Ok(match name {
            "last" => Val::Num(ctx.size as f64),
            "position" => Val::Num(ctx.pos as f64),
            "count" => {
                arity(1, 1)?;
                Val::Num(nodes(0)?.len() as f64)
            }
            "name" | "local-name" => {
                arity(0, 1)?;
                let n = nodes(0)?;
                let full = n.first().map_or("", |&x| self.arena.name(x));
                let shown = if name == "local-name" {
                    full.rsplit(':').next().unwrap_or(full)
                } else {
                    full
                };
                Val::Str(shown.to_string())
            }
            "namespace-uri" => {
                arity(0, 1)?;
                let n = nodes(0)?;
                Val::Str(
                    n.first()
                        .map_or(String::new(), |&x| self.arena.namespace_uri(x)),
                )
            }
            "string" => {
                arity(0, 1)?;
                Val::Str(s(0))
            }
            "concat" => {
                arity(2, usize::MAX)?;
                Val::Str((0..vals.len()).map(s).collect())
            }
            "starts-with" => {
                arity(2, 2)?;
                Val::Bool(s(0).starts_with(&s(1)))
            }
            "contains" => {
                arity(2, 2)?;
                Val::Bool(s(0).contains(&s(1)))
            }
            "substring-before" | "substring-after" => {
                arity(2, 2)?;
                let (h, n) = (s(0), s(1));
                Val::Str(match h.find(&n) {
                    Some(i) if name == "substring-before" => h[..i].to_string(),
                    Some(i) => h[i + n.len()..].to_string(),
                    None => String::new(),
                })
            }
            "substring" => {
                arity(2, 3)?;
                let chars: Vec<char> = s(0).chars().collect();
                let start = self.number(&vals[1]).round();
                let end = if vals.len() > 2 {
                    start + self.number(&vals[2]).round()
                } else {
                    f64::INFINITY
                };
                Val::Str(
                    chars
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| {
                            let p = (*i + 1) as f64;
                            p >= start && p < end
                        })
                        .map(|(_, c)| c)
                        .collect(),
                )
            }
            "string-length" => {
                arity(0, 1)?;
                Val::Num(s(0).chars().count() as f64)
            }
            "normalize-space" => {
                arity(0, 1)?;
                Val::Str(s(0).split_whitespace().collect::<Vec<_>>().join(" "))
            }
            "translate" => {
                arity(3, 3)?;
                let (from, to): (Vec<char>, Vec<char>) =
                    (s(1).chars().collect(), s(2).chars().collect());
                Val::Str(
                    s(0).chars()
                        .filter_map(|c| match from.iter().position(|&f| f == c) {
                            Some(i) => to.get(i).copied(),
                            None => Some(c),
                        })
                        .collect(),
                )
            }
            "boolean" => {
                arity(1, 1)?;
                Val::Bool(Self::boolean(&vals[0]))
            }
            "not" => {
                arity(1, 1)?;
                Val::Bool(!Self::boolean(&vals[0]))
            }
            "true" => Val::Bool(true),
            "false" => Val::Bool(false),
            "number" => {
                arity(0, 1)?;
                Val::Num(match vals.first() {
                    Some(v) => self.number(v),
                    None => to_num_str(&self.arena.string_value(ctx.node)),
                })
            }
            "sum" => {
                arity(1, 1)?;
                Val::Num(
                    nodes(0)?
                        .iter()
                        .map(|&n| to_num_str(&self.arena.string_value(n)))
                        .sum(),
                )
            }
            "floor" => {
                arity(1, 1)?;
                Val::Num(self.number(&vals[0]).floor())
            }
            "ceiling" => {
                arity(1, 1)?;
                Val::Num(self.number(&vals[0]).ceil())
            }
            "round" => {
                arity(1, 1)?;
                Val::Num((self.number(&vals[0]) + 0.5).floor())
            }
            other => return Err(format!("the XPath function '{other}()' is not supported")),
        })
    }

    /// The `xmlns` declarations made above element `n` for the prefixes
    /// its subtree uses and does not declare itself (what .NET's
    /// `OuterXml` writes on a node taken out of its document).
    fn inherited_declarations(&self, n: usize, e: &Element) -> Vec<(String, String)> {
        let mut prefixes: Vec<&str> = Vec::new();
        used_prefixes(e, &mut prefixes);
        let mut out = Vec::new();
        for p in prefixes {
            if declared(e, p).is_some() || p == "xml" {
                continue;
            }
            let mut at = self.arena.nodes[n].parent;
            while let Some(x) = at {
                if let Kind::Element(a) = self.arena.nodes[x].kind
                    && let Some(uri) = declared(a, p)
                {
                    if !uri.is_empty() {
                        let key = if p.is_empty() {
                            "xmlns".to_string()
                        } else {
                            format!("xmlns:{p}")
                        };
                        out.push((key, uri.to_string()));
                    }
                    break;
                }
                at = self.arena.nodes[x].parent;
            }
        }
        out
    }

    fn render(&self, n: usize, doc: &Document) -> XItem {
        match self.arena.nodes[n].kind {
            Kind::Root => XItem::Xml(crate::xml::write(doc)),
            Kind::Element(e) => {
                let mut out = String::new();
                let inherited = self.inherited_declarations(n, e);
                if inherited.is_empty() {
                    crate::xml::write_element(e, &mut out);
                } else {
                    let mut e = e.clone();
                    e.attrs.extend(inherited);
                    crate::xml::write_element(&e, &mut out);
                }
                XItem::Xml(out)
            }
            Kind::Attr(name, v) => XItem::Text(format!("{name}=\"{v}\"")),
            Kind::Text(t) | Kind::Comment(t) | Kind::Pi(t) => XItem::Text(t.to_string()),
        }
    }
}

fn is_xmlns(name: &str) -> bool {
    name == "xmlns" || name.starts_with("xmlns:")
}

/// The URI `e` itself declares for `prefix` (`""`: the default namespace).
fn declared<'e>(e: &'e Element, prefix: &str) -> Option<&'e str> {
    e.attrs.iter().find_map(|(k, v)| {
        let p = if k == "xmlns" {
            ""
        } else {
            k.strip_prefix("xmlns:")?
        };
        (p == prefix).then_some(v.as_str())
    })
}

/// The prefixes (`""` for unprefixed elements) of the elements and
/// prefixed attributes under `e`, itself included, each once.
fn used_prefixes<'e>(e: &'e Element, out: &mut Vec<&'e str>) {
    let p = e.name.split_once(':').map_or("", |(p, _)| p);
    if !out.contains(&p) {
        out.push(p);
    }
    for (k, _) in &e.attrs {
        if let Some((p, _)) = k.split_once(':')
            && p != "xmlns"
            && !out.contains(&p)
        {
            out.push(p);
        }
    }
    for c in &e.children {
        if let XmlNode::Element(x) = c {
            used_prefixes(x, out);
        }
    }
}

/// Evaluates `xpath` against `doc`. Errors describe what is unsupported or
/// malformed.
pub fn evaluate(doc: &Document, xpath: &str) -> Result<XResult, String> {
    let ast = parse(xpath)?;
    let ev = Eval {
        arena: Arena::new(doc),
    };
    let ctx = Ctx {
        node: 0,
        pos: 1,
        size: 1,
    };
    Ok(match ev.eval(&ast, &ctx)? {
        Val::Nodes(ns) => XResult::Nodes(ns.iter().map(|&n| ev.render(n, doc)).collect()),
        Val::Num(x) => XResult::Number(x),
        Val::Str(s) => XResult::String(s),
        Val::Bool(b) => XResult::Bool(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(xml: &str, xp: &str) -> XResult {
        evaluate(&crate::xml::parse(xml).unwrap(), xp).unwrap()
    }

    #[test]
    fn paths_functions_and_operators() {
        let x = r#"<a><b x="q">1</b><b>2</b></a>"#;
        assert_eq!(
            run(x, "/a/b/text()"),
            XResult::Nodes(vec![XItem::Text("1".into()), XItem::Text("2".into())])
        );
        assert_eq!(run(x, "string(/a/b)"), XResult::String("1".into()));
        assert_eq!(run(x, "count(//b)"), XResult::Number(2.0));
        assert_eq!(run(x, "sum(//b) div 2"), XResult::Number(1.5));
        assert_eq!(run(x, "/a/b = 2"), XResult::Bool(true));
        assert_eq!(run(x, "name(/a/*)"), XResult::String("b".into()));
        assert_eq!(
            run(x, "/a/b/@x"),
            XResult::Nodes(vec![XItem::Text("x=\"q\"".into())])
        );
        assert_eq!(
            run(x, "/a/b[2]"),
            XResult::Nodes(vec![XItem::Xml("<b>2</b>".into())])
        );
        assert_eq!(
            run(x, r#"/a/b[@x="q"]"#),
            XResult::Nodes(vec![XItem::Xml(r#"<b x="q">1</b>"#.into())])
        );
        assert_eq!(run(x, "/a/c"), XResult::Nodes(vec![]));
        assert_eq!(run(x, "//b[. = 2]/@x"), XResult::Nodes(vec![]));
        assert_eq!(run(x, "count(//b[last()])"), XResult::Number(1.0));
        assert_eq!(run(x, "2 * 3 - -1"), XResult::Number(7.0));
        assert_eq!(run(x, "count(/a/b/..)"), XResult::Number(1.0));
        assert_eq!(run(x, "concat('a', 'b', 1)"), XResult::String("ab1".into()));
        assert!(evaluate(&crate::xml::parse(x).unwrap(), "!!").is_err());
        assert!(evaluate(&crate::xml::parse(x).unwrap(), "").is_err());
    }
}
