//! Secrets: connection URLs whose passwords must never be printed, and a
//! redactor that scrubs every known secret out of any message.

use std::fmt;

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

    /// The password embedded in the URL, if any.
    pub fn password(&self) -> Option<&str> {
        let rest = self.0.split_once("://")?.1;
        let authority = rest.split(['/', '?', '#']).next()?;
        let userinfo = authority.rsplit_once('@')?.0;
        let (_, pw) = userinfo.split_once(':')?;
        (!pw.is_empty()).then_some(pw)
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        match self.password() {
            Some(pw) => self.0.replacen(&format!(":{pw}@"), ":***@", 1),
            None => self.0.clone(),
        }
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

/// Every secret value of a configuration: URL passwords (raw and
/// percent-decoded) and values substituted from `${ENV}` into URLs.
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} values)", self.0.len())
    }
}

impl Secrets {
    pub fn add(&mut self, s: &str) {
        // Very short values would redact ordinary words; a 1-3 character password is
        // still redacted inside its URL by SecretUrl.
        if s.len() >= 4 && !self.0.iter().any(|x| x == s) {
            self.0.push(s.to_string());
            self.0.sort_by_key(|b| std::cmp::Reverse(b.len()));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
