//! Web: one HTTP request (`method`, `url`, `headers`, `body`, `Basic` or no
//! `authentication`), bounded by `httpRequestTimeout` (default one minute,
//! 1 to 10 minutes as Data Factory allows). A 2xx answer's JSON object is
//! the output, with the response headers under
//! `ADFWebActivityResponseHeaders`; any other body is `{"Response": text}`.
//! Any other status fails the activity. The 202 polling Data Factory does
//! unless `turnOffAsync` is set is not done: a 202 is an answer.

use std::time::Duration;

use highwater_core::{Error, Result};
use serde_json::{Map, Value, json};

use crate::pipeline::model::parse_timespan;
use crate::pipeline::text;
use crate::pipeline::typed::{self, is_blank, is_expression};

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Data Factory's limit on the response payload.
const MAX_BODY: usize = 4 * 1024 * 1024;

fn timeout_ok(d: Duration) -> bool {
    (Duration::from_secs(60)..=Duration::from_secs(600)).contains(&d)
}

/// Load-time checks.
pub(crate) fn check(w: &typed::Web) -> Vec<String> {
    let mut out = Vec::new();
    if is_blank(w.url.as_ref()) {
        out.push("typeProperties.url is required".into());
    }
    match &w.method {
        None | Some(Value::Null) => out.push(format!(
            "typeProperties.method is required ({})",
            METHODS.join(", ")
        )),
        Some(m) if is_expression(m) => {}
        Some(m) => {
            let upper = m.as_str().unwrap_or_default().to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                out.push(format!(
                    "typeProperties.method must be one of {}, got {m}",
                    METHODS.join(", ")
                ));
            } else if matches!(upper.as_str(), "POST" | "PUT") && is_blank(w.body.as_ref()) {
                out.push(format!(
                    "typeProperties.body is required for a {upper} request"
                ));
            } else if upper == "GET" && !is_blank(w.body.as_ref()) {
                out.push("typeProperties.body is not allowed for a GET request".into());
            }
        }
    }
    if let Some(t) = &w.http_request_timeout
        && !t.is_null()
        && !is_expression(t)
        && !t.as_str().and_then(parse_timespan).is_some_and(timeout_ok)
    {
        out.push(format!(
            "typeProperties.httpRequestTimeout {t} must be a duration from 00:01:00 to 00:10:00"
        ));
    }
    if w.disable_cert_validation == Some(Value::Bool(true)) {
        out.push(
            "typeProperties.disableCertValidation is not supported: certificates are always validated"
                .into(),
        );
    }
    if let Some(h) = &w.headers
        && !h.is_null()
        && !h.is_object()
        && !is_expression(h)
    {
        out.push(format!(
            "typeProperties.headers must be an object of header names and values, got {h}"
        ));
    }
    if let Some(auth) = w.authentication.as_ref().filter(|v| !v.is_null()) {
        let at = "typeProperties.authentication";
        let mut found = Vec::new();
        if let Some(a) = typed::parse::<typed::WebAuth>(auth, at, &mut found) {
            let kind = a.kind.as_ref().and_then(Value::as_str).unwrap_or("None");
            match kind.to_ascii_lowercase().as_str() {
                "none" | "anonymous" => {}
                "basic" => {
                    if is_blank(a.username.as_ref()) {
                        out.push(format!(
                            "{at}.username is required for Basic authentication"
                        ));
                    }
                    match &a.password {
                        None | Some(Value::Null) => out.push(format!(
                            "{at}.password is required for Basic authentication"
                        )),
                        Some(Value::Object(m))
                            if m.get("type").and_then(Value::as_str)
                                == Some("AzureKeyVaultSecret") =>
                        {
                            out.push(format!(
                                "{at}.password is not supported: Azure Key Vault secrets; give the password as a SecureString or a parameter"
                            ))
                        }
                        _ => {}
                    }
                }
                _ => out.push(format!(
                    "{at}.type {kind} is not supported: only None and Basic authentication are"
                )),
            }
        }
        out.extend(found.into_iter().map(|(p, m)| format!("{p} {m}")));
    }
    out
}

/// A password given as text or as `{type: SecureString, value}`.
fn secret(v: Option<&Value>) -> String {
    match v {
        Some(Value::Object(m)) => text(m.get("value")),
        other => text(other),
    }
}

/// The URL without its query (which may carry a key), for messages.
fn shown(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

pub(crate) async fn web(tp: &Value) -> Result<Done> {
    let url = text(tp.get("url"));
    let method_text = text(tp.get("method")).to_ascii_uppercase();
    if !METHODS.contains(&method_text.as_str()) {
        return Err(Error::data(format!(
            "typeProperties.method must be one of {}, got {method_text}",
            METHODS.join(", ")
        )));
    }
    let method = reqwest::Method::from_bytes(method_text.as_bytes())
        .map_err(|e| Error::data(format!("typeProperties.method: {e}")))?;
    let limit = match tp.get("httpRequestTimeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT,
        Some(t) => parse_timespan(&text(Some(t)))
            .filter(|d| timeout_ok(*d))
            .ok_or_else(|| {
                Error::data(format!(
                    "typeProperties.httpRequestTimeout {t} must be a duration from 00:01:00 to 00:10:00"
                ))
            })?,
    };
    let client = reqwest::Client::builder()
        .timeout(limit)
        .connect_timeout(limit.min(Duration::from_secs(30)))
        .build()
        .map_err(|e| Error::data(format!("cannot start an HTTP client: {e}")))?;
    let mut req = client.request(method, &url);
    if let Some(Value::Object(h)) = tp.get("headers") {
        for (k, v) in h {
            req = req.header(k.as_str(), text(Some(v)));
        }
    }
    match tp.get("body") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => req = req.body(s.clone()),
        Some(v) => req = req.body(v.to_string()),
    }
    if let Some(auth) = tp.get("authentication").filter(|a| !a.is_null())
        && text(auth.get("type")).eq_ignore_ascii_case("basic")
    {
        req = req.basic_auth(
            text(auth.get("username")),
            Some(secret(auth.get("password"))),
        );
    }
    let place = format!("{method_text} {}", shown(&url));
    let resp = req.send().await.map_err(|e| {
        let why = if e.is_timeout() {
            format!("no answer within {}s (httpRequestTimeout)", limit.as_secs())
        } else {
            e.without_url().to_string()
        };
        Error::data(format!("{place}: {why}"))
    })?;
    let status = resp.status();
    let mut headers = Map::new();
    for (k, v) in resp.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).to_string();
        // HTTP/2 and hyper give names in lower case; Data Factory shows
        // them as servers usually spell them (`Content-Type`).
        let k = k
            .as_str()
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-");
        match headers.get_mut(&k) {
            Some(Value::String(old)) => {
                old.push_str(", ");
                old.push_str(&v);
            }
            _ => {
                headers.insert(k, Value::String(v));
            }
        }
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| Error::data(format!("{place}: reading the answer: {}", e.without_url())))?;
    if bytes.len() > MAX_BODY {
        return Err(Error::data(format!(
            "{place}: the answer has {} bytes, more than the 4 MB a Web activity output holds",
            bytes.len()
        )));
    }
    let body = String::from_utf8_lossy(&bytes).to_string();
    if !status.is_success() {
        let mut snippet: String = body.chars().take(500).collect();
        if snippet.len() < body.len() {
            snippet.push('…');
        }
        return Err(Error::data(format!("{place} answered {status}: {snippet}")));
    }
    let mut output = match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => {
            let mut m = Map::new();
            m.insert("Response".into(), Value::String(body));
            m
        }
    };
    output.insert(
        "ADFWebActivityResponseHeaders".into(),
        Value::Object(headers),
    );
    Ok(Done {
        notes: vec![format!("{place} answered {status}")],
        output: json!(output),
        ..Done::default()
    })
}

use crate::pipeline::Done;
