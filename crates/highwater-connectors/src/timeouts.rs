//! Time limits of a database connection, from its URL:
//!
//! | parameter           | default | meaning                                                   |
//! |---------------------|---------|-----------------------------------------------------------|
//! | `connect_timeout`   | 10 s    | TCP connect, TLS, login and session setup, together       |
//! | `statement_timeout` | none    | one statement (the server cancels it; a long `COPY` is one statement) |
//!
//! Values are seconds (`connect_timeout=5`, libpq's spelling) or carry a
//! unit (`500ms`, `30s`, `5min`, `2h`); `0` means no limit. The parameters
//! are removed from the URL before the driver sees it.

use std::time::Duration;

use highwater_core::{Error, Result};

use crate::util::redact_url;

/// The default `connect_timeout`.
pub const CONNECT_DEFAULT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Whole connection setup; `None`: no limit.
    pub connect: Option<Duration>,
    /// Per statement, enforced by the server; `None`: no limit.
    pub statement: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Some(CONNECT_DEFAULT),
            statement: None,
        }
    }
}

/// Parse `5`, `5s`, `500ms`, `5min`, `2h`; `0` → `None` (no limit).
pub fn parse_duration(v: &str) -> Option<Option<Duration>> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "min" | "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    Some((!d.is_zero()).then_some(d))
}

/// `2 s`, `500 ms`: how a limit is named in messages.
pub fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Remove the time-limit parameters from `url`; the rest of the URL is
/// returned unchanged for the driver.
pub fn split(url: &str) -> Result<(String, Timeouts)> {
    let mut t = Timeouts::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), t));
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "connect_timeout" => &mut t.connect,
            "statement_timeout" => &mut t.statement,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        *slot = parse_duration(v).ok_or_else(|| {
            Error::config(
                redact_url(url),
                format!(
                    "{k}={v}: expected seconds or a duration such as 500ms, 30s, 5min (0: no limit)"
                ),
            )
        })?;
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_strips_the_parameters() {
        let (u, t) =
            split("postgres://u:p@h/db?sslmode=require&connect_timeout=2&statement_timeout=5min")
                .unwrap();
        assert_eq!(u, "postgres://u:p@h/db?sslmode=require");
        assert_eq!(t.connect, Some(Duration::from_secs(2)));
        assert_eq!(t.statement, Some(Duration::from_secs(300)));
        let (u, t) = split("mysql://h/db").unwrap();
        assert_eq!((u.as_str(), t), ("mysql://h/db", Timeouts::default()));
        let (u, t) = split("mysql://h/db?connect_timeout=0").unwrap();
        assert_eq!((u.as_str(), t.connect), ("mysql://h/db", None));
        assert_eq!(
            parse_duration("500ms"),
            Some(Some(Duration::from_millis(500)))
        );
        assert_eq!(parse_duration("1h"), Some(Some(Duration::from_secs(3600))));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("-1"), None);
        let e = split("postgres://u:secret@h/db?connect_timeout=soon").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("connect_timeout=soon"), "{e}");
        assert_eq!(show(Duration::from_secs(2)), "2 s");
        assert_eq!(show(Duration::from_millis(1500)), "1500 ms");
    }
}

/// Object stores (`az://`, `s3://`): connect within 10 s, each request
/// within 60 s, at most 3 retries within 2 minutes; `{AWS,AZURE}_CONNECT_TIMEOUT`
/// and `{AWS,AZURE}_TIMEOUT` (e.g. `30s`) in the environment override the
/// first two, as object_store reads them.
pub mod object_store_limits {
    use std::time::Duration;

    use object_store::RetryConfig;
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    use object_store::client::ClientConfigKey;

    const DEFAULTS: [(ClientConfigKey, &str, &str); 2] = [
        (ClientConfigKey::ConnectTimeout, "CONNECT_TIMEOUT", "10s"),
        (ClientConfigKey::Timeout, "TIMEOUT", "60s"),
    ];

    fn retry() -> RetryConfig {
        RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(120),
            ..RetryConfig::default()
        }
    }

    fn unset(prefix: &str, name: &str) -> bool {
        std::env::var_os(format!("{prefix}_{name}")).is_none()
    }

    pub fn s3(mut b: AmazonS3Builder) -> AmazonS3Builder {
        for (key, name, value) in DEFAULTS {
            if unset("AWS", name) {
                b = b.with_config(AmazonS3ConfigKey::Client(key), value);
            }
        }
        b.with_retry(retry())
    }

    pub fn azure(mut b: MicrosoftAzureBuilder) -> MicrosoftAzureBuilder {
        for (key, name, value) in DEFAULTS {
            if unset("AZURE", name) {
                b = b.with_config(AzureConfigKey::Client(key), value);
            }
        }
        b.with_retry(retry())
    }
}
