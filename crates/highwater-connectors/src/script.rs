//! SQL scripts for the Data Factory Script activity: blocks of SQL run in
//! order on one connection, each a `Query` (its result sets are returned)
//! or a `NonQuery` (the rows it affected are counted).
//!
//! Parameters are bound, never spliced. The text names them `@name`, as
//! Data Factory's scripts do; outside string literals, quoted identifiers
//! and comments each `@name` of a given parameter (ignoring case) becomes
//! the backend's placeholder: `($n::text)::type` on PostgreSQL, `?` on
//! MariaDB (values repeated in order), and SQLite binds `@name` natively.
//! Other `@…` (MariaDB session variables, `@@system` ones) are left alone.
//!
//! ```text
//! backend     block without parameters            block with parameters
//! PostgreSQL  prepared: typed values; several      one prepared statement
//!             statements: simple protocol, values
//!             as text
//! MariaDB     text protocol, several statements   one prepared statement
//! SQLite      each statement in turn              each statement in turn
//! ```
//!
//! Values come back as JSON: integers and floats as numbers, `numeric` /
//! `DECIMAL` as a number when it is exact as one (else text), dates and
//! times as ISO text, everything else as text.

use std::time::Duration;

use highwater_core::{ConnKind, Error, Result};
use serde_json::{Map, Number, Value};

use crate::procedure::ProcType;

/// `Query` or `NonQuery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Query,
    NonQuery,
}

/// One bound parameter: its value as text (`None` is NULL) and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptParam {
    pub name: String,
    pub value: Option<String>,
    pub ty: ProcType,
}

/// One script block.
#[derive(Debug, Clone)]
pub struct ScriptBlock {
    pub kind: BlockKind,
    pub text: String,
    pub params: Vec<ScriptParam>,
}

/// What a script returned: the rows of each result set of its `Query`
/// blocks, and the rows its `NonQuery` blocks affected.
#[derive(Debug, Clone, Default)]
pub struct ScriptOutcome {
    pub result_sets: Vec<Vec<Map<String, Value>>>,
    pub records_affected: u64,
}

/// Run `blocks` in order on one connection; each block must end within
/// `block_timeout`.
pub async fn run_script(
    kind: &ConnKind,
    url: &str,
    blocks: &[ScriptBlock],
    block_timeout: Duration,
) -> Result<ScriptOutcome> {
    match kind {
        ConnKind::Postgres => crate::postgres::script::run(url, blocks, block_timeout).await,
        ConnKind::Mysql => crate::mysql::script::run(url, blocks, block_timeout).await,
        ConnKind::Sqlite(path) => {
            let (path, blocks) = (path.clone(), blocks.to_vec());
            let task = tokio::task::spawn_blocking(move || {
                crate::sqlite::script::run(&path, &blocks, block_timeout)
            });
            task.await
                .map_err(|e| Error::data(format!("the SQLite script stopped: {e}")))?
        }
        ConnKind::Mssql => Err(Error::config(
            "linkedServiceName",
            "Script activities on mssql:// are not supported yet",
        )),
        ConnKind::File(_) | ConnKind::Azure { .. } | ConnKind::S3 { .. } => Err(Error::config(
            "linkedServiceName",
            "a Script activity needs a database connection, not a file or object store",
        )),
    }
}

pub(crate) async fn limited<T>(
    limit: Duration,
    i: usize,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, f).await.unwrap_or_else(|_| {
        Err(Error::data(format!(
            "scripts[{i}] did not finish within {}s (scriptBlockExecutionTimeout)",
            limit.as_secs()
        )))
    })
}

/// The dialect's quoting, for [`placeholders`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Mysql,
}

/// Replace each `@name` of a parameter in `text` (outside literals,
/// quoted identifiers and comments) with `place(i)`, `i` the parameter's
/// index; returns the text and the parameter index of each placeholder in
/// order.
pub(crate) fn placeholders(
    text: &str,
    names: &[&str],
    dialect: Dialect,
    place: &dyn Fn(usize) -> String,
) -> (String, Vec<usize>) {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut order = Vec::new();
    let mut i = 0;
    let copy_until = |out: &mut String, i: &mut usize, end: &dyn Fn(&[char], usize) -> bool| {
        while *i < chars.len() {
            if end(&chars, *i) {
                return;
            }
            out.push(chars[*i]);
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' | '`' if c != '`' || dialect == Dialect::Mysql => {
                out.push(c);
                i += 1;
                while i < chars.len() {
                    let d = chars[i];
                    out.push(d);
                    i += 1;
                    if d == '\\' && dialect == Dialect::Mysql && i < chars.len() {
                        out.push(chars[i]);
                        i += 1;
                    } else if d == c {
                        if chars.get(i) == Some(&c) {
                            out.push(c);
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if next == Some('-') => copy_until(&mut out, &mut i, &|s, j| s[j] == '\n'),
            '#' if dialect == Dialect::Mysql => copy_until(&mut out, &mut i, &|s, j| s[j] == '\n'),
            '/' if next == Some('*') => {
                out.push_str("/*");
                i += 2;
                copy_until(&mut out, &mut i, &|s, j| {
                    s[j] == '*' && s.get(j + 1) == Some(&'/')
                });
                if i < chars.len() {
                    out.push_str("*/");
                    i += 2;
                }
            }
            '$' if dialect == Dialect::Postgres => {
                // $tag$ … $tag$ (a `$1` placeholder is no tag).
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let is_tag = chars.get(j) == Some(&'$')
                    && !chars.get(i + 1).is_some_and(char::is_ascii_digit);
                if is_tag {
                    let tag: String = chars[i..=j].iter().collect();
                    out.push_str(&tag);
                    i = j + 1;
                    let rest: String = chars[i..].iter().collect();
                    match rest.find(&tag) {
                        Some(k) => {
                            let body = &rest[..k + tag.len()];
                            out.push_str(body);
                            i += body.chars().count();
                        }
                        None => {
                            out.push_str(&rest);
                            i = chars.len();
                        }
                    }
                } else {
                    out.push(c);
                    i += 1;
                }
            }
            '@' if next != Some('@') && (i == 0 || chars[i - 1] != '@') => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let word: String = chars[i + 1..j].iter().collect();
                let found = (!word.is_empty())
                    .then(|| {
                        names
                            .iter()
                            .position(|n| *n == word)
                            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(&word)))
                    })
                    .flatten();
                match found {
                    Some(p) => {
                        out.push_str(&place(p));
                        order.push(p);
                        i = j;
                    }
                    None => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, order)
}

/// A number when `text` is exactly one (integers as integers), else text.
pub(crate) fn number_or_text(text: &str) -> Value {
    let t = text.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = t.parse::<f64>()
        && f.is_finite()
    {
        let trimmed = |s: &str| {
            let s = s.trim_start_matches('+');
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s.to_string()
            }
        };
        if (trimmed(t) == trimmed(&f.to_string()) || trimmed(t) == trimmed(&format!("{f:?}")))
            && let Some(n) = Number::from_f64(f)
        {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

pub(crate) fn float(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(f.to_string()))
}

pub(crate) fn param_names(b: &ScriptBlock) -> Vec<&str> {
    b.params
        .iter()
        .map(|p| p.name.trim().trim_start_matches('@'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Dialect, placeholders};

    #[test]
    fn parameters_are_placeholders_outside_literals_and_comments() {
        let (t, order) = placeholders(
            "SELECT @a, '@a', \"@a\", @B, @@version, @other -- @a\n/* @a */ $$ @a $$ $1",
            &["a", "b"],
            Dialect::Postgres,
            &|p| format!("${}", p + 1),
        );
        assert_eq!(
            t,
            "SELECT $1, '@a', \"@a\", $2, @@version, @other -- @a\n/* @a */ $$ @a $$ $1"
        );
        assert_eq!(order, vec![0, 1]);
        let (t, order) = placeholders(
            "INSERT INTO t VALUES (@x, 'it\\'s @x', `@x`, @x) # @x",
            &["x"],
            Dialect::Mysql,
            &|_| "?".into(),
        );
        assert_eq!(t, "INSERT INTO t VALUES (?, 'it\\'s @x', `@x`, ?) # @x");
        assert_eq!(order, vec![0, 0]);
    }

    #[test]
    fn numbers_stay_exact() {
        assert_eq!(super::number_or_text("42"), serde_json::json!(42));
        assert_eq!(super::number_or_text("1.50"), serde_json::json!(1.5));
        assert_eq!(
            super::number_or_text("12345678901234567890.123"),
            serde_json::json!("12345678901234567890.123")
        );
    }
}
