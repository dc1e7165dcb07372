//! A small XML document model for `xml()`, `json(xml)` and `xpath()`:
//! a parser for well-formed documents (elements, attributes, text, CDATA,
//! comments, processing instructions, the five named entities and numeric
//! character references; no DTDs), a serializer that writes what .NET's
//! `XmlDocument.OuterXml` writes (`<a />` for a self-closed element,
//! whitespace-only text between elements dropped), and the JSON mapping of
//! Newtonsoft's `SerializeXmlNode` / `DeserializeXmlNode`, which Data
//! Factory uses:
//!
//! ```text
//! <a x="1"><b>1</b><b>2</b><c/><d>t<e>u</e></d></a>
//!   <-> {"a": {"@x": "1", "b": ["1", "2"], "c": null, "d": {"#text": "t", "e": "u"}}}
//! ```

use serde_json::{Map, Value};

/// A node inside an element.
#[derive(Debug, Clone, PartialEq)]
pub enum XmlNode {
    /// A child element.
    Element(Element),
    /// Character data (entities decoded).
    Text(String),
    /// `<![CDATA[…]]>`.
    CData(String),
    /// `<!--…-->`.
    Comment(String),
    /// `<?target data?>`.
    Pi(String, String),
}

/// An element.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    /// Qualified name as written (`ns:a`).
    pub name: String,
    /// Attributes in document order, values decoded.
    pub attrs: Vec<(String, String)>,
    /// Children in document order.
    pub children: Vec<XmlNode>,
    /// Written as `<a/>` (prints `<a />`), as opposed to `<a></a>`.
    pub self_closing: bool,
}

/// A whole document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The attributes of `<?xml …?>`, if present.
    pub declaration: Option<Vec<(String, String)>>,
    /// The root element.
    pub root: Element,
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn err<T>(&self, msg: &str) -> Result<T, String> {
        let before = self.s.get(..self.pos).unwrap_or(self.s);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Err(format!("{msg} (line {line}, position {col})"))
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.rest().starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn until(&mut self, end: &str, what: &str) -> Result<&'a str, String> {
        match self.rest().find(end) {
            Some(i) => {
                let body = &self.rest()[..i];
                self.pos += i + end.len();
                Ok(body)
            }
            None => self.err(&format!("{what} is not closed by '{end}'")),
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|&(_, c)| c.is_whitespace() || "=/>?<\"'&".contains(c))
            .map_or(r.len(), |(i, _)| i);
        if n == 0 {
            return self.err("expected a name");
        }
        self.pos += n;
        Ok(r[..n].to_string())
    }

    fn attrs(&mut self) -> Result<Vec<(String, String)>, String> {
        let mut attrs: Vec<(String, String)> = Vec::new();
        loop {
            self.skip_ws();
            let r = self.rest();
            if r.is_empty() || r.starts_with('>') || r.starts_with("/>") || r.starts_with("?>") {
                return Ok(attrs);
            }
            let name = self.name()?;
            self.skip_ws();
            if !self.eat("=") {
                return self.err(&format!("attribute '{name}' has no value"));
            }
            self.skip_ws();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return self.err("attribute values must be quoted"),
            };
            self.pos += 1;
            let raw = self.until(&quote.to_string(), "attribute value")?;
            let value = self.decode(raw)?;
            if attrs.iter().any(|(n, _)| *n == name) {
                return self.err(&format!("attribute '{name}' appears twice"));
            }
            attrs.push((name, value));
        }
    }

    fn decode(&self, raw: &str) -> Result<String, String> {
        if !raw.contains('&') {
            if raw.contains('<') {
                return self.err("'<' is not allowed here");
            }
            return Ok(raw.to_string());
        }
        let mut out = String::new();
        let mut rest = raw;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let Some(semi) = after.find(';') else {
                return self.err("'&' must start an entity such as '&amp;'");
            };
            let ent = &after[..semi];
            let c = match ent {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let code = if let Some(h) = ent.strip_prefix("#x") {
                        u32::from_str_radix(h, 16).ok()
                    } else if let Some(d) = ent.strip_prefix('#') {
                        d.parse().ok()
                    } else {
                        None
                    };
                    code.and_then(char::from_u32)
                }
            };
            match c {
                Some(c) => out.push(c),
                None => return self.err(&format!("unknown entity '&{ent};'")),
            }
            rest = &after[semi + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Comments, PIs and whitespace outside the root.
    fn misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_ws();
            if self.eat("<!--") {
                self.until("-->", "comment")?;
            } else if self.rest().starts_with("<?") {
                self.pos += 2;
                self.until("?>", "processing instruction")?;
            } else if self.rest().starts_with("<!") {
                return self.err("DTDs are not supported");
            } else {
                return Ok(());
            }
        }
    }

    fn element(&mut self, depth: usize) -> Result<Element, String> {
        if depth > 200 {
            return self.err("elements nest too deeply");
        }
        if !self.eat("<") {
            return self.err("expected an element");
        }
        let name = self.name()?;
        let attrs = self.attrs()?;
        if self.eat("/>") {
            return Ok(Element {
                name,
                attrs,
                children: Vec::new(),
                self_closing: true,
            });
        }
        if !self.eat(">") {
            return self.err(&format!("element '{name}' is not closed by '>'"));
        }
        let mut children = Vec::new();
        loop {
            if self.rest().is_empty() {
                return self.err(&format!("element '{name}' is not closed"));
            }
            if self.eat("</") {
                let end = self.name()?;
                self.skip_ws();
                if end != name || !self.eat(">") {
                    return self.err(&format!("'</{end}>' does not close '<{name}>'"));
                }
                return Ok(Element {
                    name,
                    attrs,
                    children,
                    self_closing: false,
                });
            } else if self.eat("<!--") {
                let c = self.until("-->", "comment")?;
                children.push(XmlNode::Comment(c.to_string()));
            } else if self.eat("<![CDATA[") {
                let c = self.until("]]>", "CDATA section")?;
                children.push(XmlNode::CData(c.to_string()));
            } else if self.eat("<?") {
                let body = self.until("?>", "processing instruction")?;
                let (t, d) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
                children.push(XmlNode::Pi(t.to_string(), d.trim().to_string()));
            } else if self.rest().starts_with('<') {
                children.push(XmlNode::Element(self.element(depth + 1)?));
            } else {
                let r = self.rest();
                let n = r.find('<').unwrap_or(r.len());
                let text = self.decode(&r[..n])?;
                self.pos += n;
                if !text.trim().is_empty() {
                    children.push(XmlNode::Text(text));
                }
            }
        }
    }
}

/// Parses a whole document.
pub fn parse(s: &str) -> Result<Document, String> {
    let mut p = Parser { s, pos: 0 };
    p.skip_ws();
    let mut declaration = None;
    if p.rest().starts_with("<?xml") && p.rest()[5..].starts_with(char::is_whitespace) {
        p.pos += 5;
        let attrs = p.attrs()?;
        if !p.eat("?>") {
            return p.err("the XML declaration is not closed by '?>'");
        }
        declaration = Some(attrs);
    }
    p.misc()?;
    if p.rest().is_empty() {
        return p.err("the root element is missing");
    }
    let root = p.element(0)?;
    p.misc()?;
    if !p.rest().is_empty() {
        return p.err("there are multiple root elements or text after the root");
    }
    Ok(Document { declaration, root })
}

fn escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn write_attrs(attrs: &[(String, String)], out: &mut String) {
    for (n, v) in attrs {
        out.push_str(&format!(" {n}=\"{}\"", escape(v, true)));
    }
}

/// Writes an element as .NET's `OuterXml` does.
pub fn write_element(e: &Element, out: &mut String) {
    out.push('<');
    out.push_str(&e.name);
    write_attrs(&e.attrs, out);
    if e.children.is_empty() && e.self_closing {
        out.push_str(" />");
        return;
    }
    out.push('>');
    for c in &e.children {
        match c {
            XmlNode::Element(x) => write_element(x, out),
            XmlNode::Text(t) => out.push_str(&escape(t, false)),
            XmlNode::CData(t) => out.push_str(&format!("<![CDATA[{t}]]>")),
            XmlNode::Comment(t) => out.push_str(&format!("<!--{t}-->")),
            XmlNode::Pi(t, d) if d.is_empty() => out.push_str(&format!("<?{t}?>")),
            XmlNode::Pi(t, d) => out.push_str(&format!("<?{t} {d}?>")),
        }
    }
    out.push_str(&format!("</{}>", e.name));
}

/// Serializes a document as .NET's `OuterXml` does.
pub fn write(doc: &Document) -> String {
    let mut out = String::new();
    if let Some(decl) = &doc.declaration {
        out.push_str("<?xml");
        write_attrs(decl, &mut out);
        out.push_str("?>");
    }
    write_element(&doc.root, &mut out);
    out
}

/// The JSON form of a document (Newtonsoft `SerializeXmlNode`).
pub fn to_json(doc: &Document) -> Value {
    let mut m = Map::new();
    if let Some(decl) = &doc.declaration {
        let d: Map<String, Value> = decl
            .iter()
            .map(|(k, v)| (format!("@{k}"), Value::String(v.clone())))
            .collect();
        m.insert("?xml".into(), Value::Object(d));
    }
    m.insert(doc.root.name.clone(), element_json(&doc.root));
    Value::Object(m)
}

fn push_grouped(m: &mut Map<String, Value>, key: &str, v: Value) {
    match m.get_mut(key) {
        Some(Value::Array(items)) => items.push(v),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, v]);
        }
        None => {
            m.insert(key.to_string(), v);
        }
    }
}

fn element_json(e: &Element) -> Value {
    let content: Vec<&XmlNode> = e
        .children
        .iter()
        .filter(|c| !matches!(c, XmlNode::Comment(_)))
        .collect();
    if e.attrs.is_empty() {
        match content.as_slice() {
            [] if e.self_closing => return Value::Null,
            [] => return Value::String(String::new()),
            [XmlNode::Text(t)] => return Value::String(t.clone()),
            _ => {}
        }
    }
    let mut m = Map::new();
    for (k, v) in &e.attrs {
        m.insert(format!("@{k}"), Value::String(v.clone()));
    }
    for c in content {
        match c {
            XmlNode::Element(x) => push_grouped(&mut m, &x.name, element_json(x)),
            XmlNode::Text(t) => push_grouped(&mut m, "#text", Value::String(t.clone())),
            XmlNode::CData(t) => push_grouped(&mut m, "#cdata-section", Value::String(t.clone())),
            XmlNode::Pi(t, d) => push_grouped(&mut m, &format!("?{t}"), Value::String(d.clone())),
            XmlNode::Comment(_) => {}
        }
    }
    Value::Object(m)
}

/// A document from its JSON form (Newtonsoft `DeserializeXmlNode`): one
/// root key, `@name` keys are attributes, `#text` is text, arrays repeat
/// the element, `null` and `{}` are empty elements.
pub fn from_json(v: &Value) -> Result<Document, String> {
    let Value::Object(m) = v else {
        return Err("only an object can be converted to XML".into());
    };
    let mut declaration = None;
    let mut root = None;
    for (k, val) in m {
        if k == "?xml" {
            let attrs = match val {
                Value::Object(d) => d
                    .iter()
                    .map(|(a, x)| (a.trim_start_matches('@').to_string(), scalar_text(x)))
                    .collect(),
                _ => Vec::new(),
            };
            declaration = Some(attrs);
            continue;
        }
        if root.is_some() || matches!(val, Value::Array(_)) {
            return Err("the document would have more than one root element".into());
        }
        root = Some(json_element(k, val, 0)?);
    }
    let root = root.ok_or("the object has no root element key")?;
    Ok(Document { declaration, root })
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn json_element(name: &str, v: &Value, depth: usize) -> Result<Element, String> {
    if depth > 200 {
        return Err("the object nests too deeply".into());
    }
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || "<>&\"'/=".contains(c)) {
        return Err(format!("'{name}' is not a valid XML element name"));
    }
    let mut e = Element {
        name: name.to_string(),
        ..Element::default()
    };
    match v {
        Value::Null => e.self_closing = true,
        Value::Object(m) => {
            e.self_closing = m.is_empty();
            for (k, x) in m {
                if let Some(attr) = k.strip_prefix('@') {
                    e.attrs.push((attr.to_string(), scalar_text(x)));
                } else if k == "#text" {
                    e.children.push(XmlNode::Text(scalar_text(x)));
                } else if k == "#cdata-section" {
                    e.children.push(XmlNode::CData(scalar_text(x)));
                } else if let Value::Array(items) = x {
                    for item in items {
                        e.children
                            .push(XmlNode::Element(json_element(k, item, depth + 1)?));
                    }
                } else {
                    e.children
                        .push(XmlNode::Element(json_element(k, x, depth + 1)?));
                }
            }
        }
        Value::Array(_) => return Err(format!("'{name}' cannot hold an array directly")),
        scalar => e.children.push(XmlNode::Text(scalar_text(scalar))),
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_json_forms() {
        let doc =
            parse(r#"<?xml version="1.0"?><a x="1"><b>1</b><b>2</b><c/><d>t<e>u</e></d></a>"#)
                .unwrap();
        assert_eq!(
            to_json(&doc),
            json!({"?xml": {"@version": "1.0"}, "a": {"@x": "1", "b": ["1", "2"], "c": null, "d": {"#text": "t", "e": "u"}}})
        );
        assert_eq!(
            write(&parse(r#"<a  x = "1" ><b>t</b><c></c></a>"#).unwrap()),
            r#"<a x="1"><b>t</b><c></c></a>"#
        );
        assert_eq!(
            write(&parse("<a>&lt;&gt;&amp;&quot;&apos;</a>").unwrap()),
            "<a>&lt;&gt;&amp;\"'</a>"
        );
        let d = from_json(&json!({"a": {"b": "x", "c": null, "d": true, "e": 1.5}})).unwrap();
        assert_eq!(write(&d), "<a><b>x</b><c /><d>true</d><e>1.5</e></a>");
        assert!(parse("<a><b>").is_err());
        assert!(parse("<a/><b/>").is_err());
        assert!(parse("").is_err());
        assert!(from_json(&json!({"a": [1, 2]})).is_err());
    }
}
