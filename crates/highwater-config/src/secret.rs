//! Secrets: connection URLs whose passwords must never be printed, and a
//! redactor that scrubs every known secret out of any message.
//!
//! A password may hold any character. Written inline in a URL, the
//! characters a URL reserves (`@ / ? # %` …) must be percent-encoded; a
//! URL whose credentials could be read two ways (drivers disagree: one
//! takes the first `@`, another the last) is refused by
//! [`ambiguous_credentials`] before any driver sees it. A `${VAR}` inside a
//! URL's user or password is the literal value: the config loader
//! percent-encodes it (see `plan::expand_env`).

use std::fmt;
use std::ops::Range;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything but RFC 3986 unreserved characters: what a value inserted
/// into a URL's user or password is encoded with.
pub const USERINFO_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What the `url` crate (and so some drivers) encode in a userinfo.
const URL_CRATE_USERINFO: &AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// Query parameters whose values are credentials.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "sslpassword",
    "secret",
    "client_secret",
    "token",
    "sas",
    "sas_token",
    "sig",
    "key",
    "access_key",
    "secret_access_key",
    "secret_key",
    "account_key",
];

/// The message for a URL whose user or password holds a reserved character.
pub const RESERVED_IN_CREDENTIALS: &str = "the user or password holds a character a URL reserves \
    (@ / ? # %): percent-encode it (@ as %40, / as %2F, ? as %3F, # as %23, % as %25), \
    or take it from the environment: user:${PASSWORD}@host (inserted literally)";

/// Byte ranges of a URL's credentials: the userinfo (before `@`) and the
/// password in it (after the first `:`). The *widest* reading: the last
/// `@` before the query (or, with none there, an `@` in a first query
/// parameter that has no `=`), so that whatever a driver takes for the
/// password lies inside the range.
fn credentials(url: &str) -> Option<(Range<usize>, Option<Range<usize>>)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let q = rest.find('?').unwrap_or(rest.len());
    let at = match rest[..q].rfind('@') {
        Some(a) => a,
        None => {
            let query = rest.get(q + 1..)?;
            let first = query.split('&').next().unwrap_or("");
            if first.contains('=') {
                return None;
            }
            q + 1 + first.rfind('@')?
        }
    };
    let userinfo = start..start + at;
    let pw = url[userinfo.clone()]
        .find(':')
        .map(|c| start + c + 1..start + at);
    Some((userinfo, pw))
}

/// `Some(message)` when a database URL's credentials could be read in more
/// than one way: a raw `@`, `/`, `?` or `#` in the user or password.
pub fn ambiguous_credentials(url: &str) -> Option<&'static str> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let q = rest.find('?').unwrap_or(rest.len());
    let head = &rest[..q];
    if head.contains('#') {
        return Some(RESERVED_IN_CREDENTIALS);
    }
    let authority_end = head.find('/').unwrap_or(head.len());
    if head[authority_end..].contains('@') || head[..authority_end].matches('@').count() > 1 {
        return Some(RESERVED_IN_CREDENTIALS);
    }
    if !head.contains('@') && credentials(url).is_some() {
        return Some(RESERVED_IN_CREDENTIALS);
    }
    None
}

/// Query parameter values that are credentials: byte ranges in `url`.
fn secret_params(url: &str) -> Vec<Range<usize>> {
    let Some(q) = url.find('?') else {
        return vec![];
    };
    let mut out = Vec::new();
    let mut pos = q + 1;
    for part in url[q + 1..].split(['&', '#']) {
        if let Some((k, _)) = part.split_once('=') {
            let key = percent_decode_str(k)
                .decode_utf8_lossy()
                .to_ascii_lowercase();
            if SECRET_PARAMS.contains(&key.as_str()) {
                out.push(pos + k.len() + 1..pos + part.len());
            }
        }
        pos += part.len() + 1;
    }
    out
}

/// A connection URL. `Display` and `Debug` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The real URL, for drivers only. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The password embedded in the URL (as written, percent-encoded), if any.
    pub fn password(&self) -> Option<&str> {
        let (_, pw) = credentials(&self.0)?;
        let pw = &self.0[pw?];
        (!pw.is_empty()).then_some(pw)
    }

    /// Every credential in the URL as written: the password and secret
    /// query parameters (`?password=…`, `?sig=…`).
    pub fn credential_values(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.password().into_iter().collect();
        out.extend(secret_params(&self.0).into_iter().map(|r| &self.0[r]));
        out.retain(|v| !v.is_empty());
        out
    }

    /// The URL with the password replaced by `${PREFIX_PASSWORD}` and each
    /// secret query value by `${PREFIX_KEY}` (what `highwater init --from`
    /// writes), and the `(variable, value)` pairs to set. Placeholders the
    /// URL holds already stay as they are.
    pub fn with_placeholders(&self, prefix: &str) -> (String, Vec<(String, String)>) {
        let mut ranges: Vec<(Range<usize>, String)> = secret_params(&self.0)
            .into_iter()
            .map(|r| {
                let key_end = r.start - 1;
                let key_start = self.0[..key_end].rfind(['?', '&']).map_or(0, |i| i + 1);
                let key: String = self.0[key_start..key_end]
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_uppercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                (r, format!("{prefix}_{key}"))
            })
            .collect();
        if let Some((_, Some(pw))) = credentials(&self.0) {
            ranges.push((pw, format!("{prefix}_PASSWORD")));
        }
        ranges.retain(|(r, _)| !r.is_empty() && !self.0[r.clone()].contains("${"));
        ranges.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
        let mut out = self.0.clone();
        let mut vars = Vec::new();
        let mut last = usize::MAX;
        for (r, var) in ranges {
            if r.end <= last {
                let value = percent_decode_str(&self.0[r.clone()])
                    .decode_utf8_lossy()
                    .into_owned();
                out.replace_range(r.clone(), &format!("${{{var}}}"));
                vars.push((var, value));
                last = r.start;
            }
        }
        vars.reverse();
        (out, vars)
    }

    /// The URL with the password and secret query values replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut ranges: Vec<Range<usize>> = secret_params(&self.0);
        if let Some((_, Some(pw))) = credentials(&self.0) {
            ranges.push(pw);
        }
        ranges.retain(|r| !r.is_empty());
        ranges.sort_by_key(|r| std::cmp::Reverse(r.start));
        let mut out = self.0.clone();
        let mut last = usize::MAX;
        for r in ranges {
            if r.end <= last {
                out.replace_range(r.clone(), "***");
                last = r.start;
            }
        }
        out
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// Every secret value of a configuration: URL passwords and values
/// substituted from `${ENV}`, each in every form a driver or a message
/// may show it (as written, percent-decoded, percent-encoded).
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} values)", self.0.len())
    }
}

impl Secrets {
    /// Remember `s` and its decoded and encoded forms.
    pub fn add(&mut self, s: &str) {
        let decoded = percent_decode_str(s).decode_utf8_lossy().to_string();
        let twice = percent_decode_str(&decoded).decode_utf8_lossy().to_string();
        let mut forms = vec![s.to_string(), decoded.clone(), twice];
        for raw in [s, decoded.as_str()] {
            let enc = utf8_percent_encode(raw, USERINFO_VALUE).to_string();
            forms.push(lower_escapes(&enc));
            forms.push(enc);
            forms.push(utf8_percent_encode(raw, URL_CRATE_USERINFO).to_string());
        }
        for f in forms {
            self.add_one(&f);
        }
    }

    fn add_one(&mut self, s: &str) {
        // Very short values would redact ordinary words; a 1-3 character
        // password is still redacted inside its URL by SecretUrl.
        if s.chars().count() >= 4 && !self.0.iter().any(|x| x == s) {
            self.0.push(s.to_string());
            self.0.sort_by_key(|b| std::cmp::Reverse(b.len()));
        }
    }

    /// Remember every credential of `url`.
    pub fn add_url(&mut self, url: &SecretUrl) {
        for v in url.credential_values() {
            self.add(v);
        }
    }

    /// Remember every credential of every URL-looking text in `text` (a
    /// config that did not parse: its messages may quote any line).
    pub fn add_urls_in(&mut self, text: &str) {
        for line in text.lines() {
            let mut rest = line;
            while let Some(i) = rest.find("://") {
                let begin = rest[..i]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                    .map_or(0, |b| b + 1);
                let candidate = &rest[begin..];
                let url = SecretUrl::new(candidate);
                for v in url.credential_values() {
                    self.add(v);
                    // Quoted YAML: the password may end at the closing quote.
                    for q in ['"', '\''] {
                        if let Some(inner) = v.strip_suffix(q) {
                            self.add(inner);
                        }
                    }
                }
                rest = &rest[i + 3..];
            }
        }
    }

    /// Replace every known secret in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// `%2F` → `%2f` (some tools print lowercase escapes).
fn lower_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut hex = 0;
    for c in s.chars() {
        if c == '%' {
            hex = 2;
            out.push(c);
        } else if hex > 0 {
            hex -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_replace_every_credential() {
        let u = SecretUrl::new("postgres://app:s3cr%40t@h:5432/db?sslmode=require&password=x1");
        let (text, vars) = u.with_placeholders("SOURCE");
        assert_eq!(
            text,
            "postgres://app:${SOURCE_PASSWORD}@h:5432/db?sslmode=require&password=${SOURCE_PASSWORD}"
        );
        assert_eq!(vars[0], ("SOURCE_PASSWORD".into(), "s3cr@t".into()));
        let (text, vars) = SecretUrl::new("mysql://root:${PW}@h/db").with_placeholders("SOURCE");
        assert_eq!(text, "mysql://root:${PW}@h/db");
        assert!(vars.is_empty());
    }

    #[test]
    fn password_is_hidden() {
        let u = SecretUrl::new("postgres://app:s3cr%40t@127.0.0.1:5432/shop");
        assert_eq!(u.password(), Some("s3cr%40t"));
        assert_eq!(u.to_string(), "postgres://app:***@127.0.0.1:5432/shop");
        assert!(!format!("{u:?}").contains("s3cr"));
        let n = SecretUrl::new("postgres://app@host/db");
        assert_eq!(n.password(), None);
        assert_eq!(n.to_string(), "postgres://app@host/db");
    }

    #[test]
    fn widest_reading_hides_raw_reserved_characters() {
        for (url, pw) in [
            ("postgres://u:p@ss/w:rd#%41@h:1/db", "p@ss/w:rd#%41"),
            ("mysql://u:p?ss@h/db", "p?ss"),
            ("postgres://u:a/b@h/db?sslmode=require", "a/b"),
        ] {
            let u = SecretUrl::new(url);
            assert_eq!(u.password(), Some(pw), "{url}");
            assert!(!u.to_string().contains(pw), "{u}");
            assert!(ambiguous_credentials(url).is_some(), "{url}");
        }
        for url in [
            "postgres://u:p%40ss%2Fw%3Ard%23%2541@h/db",
            "postgres://h/db?application_name=x",
            "mysql://u:p:w@h/db?x=a@b",
            "postgres://u:pw@h/db",
        ] {
            assert!(ambiguous_credentials(url).is_none(), "{url}");
        }
    }

    #[test]
    fn query_credentials_are_hidden() {
        let u = SecretUrl::new("postgres://h/db?user=a&password=hunter22&sslmode=require");
        assert_eq!(
            u.to_string(),
            "postgres://h/db?user=a&password=***&sslmode=require"
        );
        let mut s = Secrets::default();
        s.add_url(&u);
        assert_eq!(s.redact("x hunter22 y"), "x *** y");
    }

    #[test]
    fn every_form_is_redacted() {
        let mut s = Secrets::default();
        s.add("p%40ss%2Fw%3Ard%23%2541");
        for form in [
            "p@ss/w:rd#%41",
            "p%40ss%2Fw%3Ard%23%2541",
            "p%40ss%2fw%3ard%23%2541",
            "p@ss/w:rd#A",
        ] {
            assert_eq!(s.redact(&format!("<{form}>")), "<***>", "{form}");
        }
        let mut t = Secrets::default();
        t.add_urls_in("  db: \"postgres://u:p%40ss%2Fw@h/db\n");
        assert_eq!(t.redact("p@ss/w"), "***");
    }
}
