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
        ConnKind::Postgres => pg::run(url, blocks, block_timeout).await,
        ConnKind::Mysql => my::run(url, blocks, block_timeout).await,
        ConnKind::Sqlite(path) => {
            let (path, blocks) = (path.clone(), blocks.to_vec());
            let task =
                tokio::task::spawn_blocking(move || lite::run(&path, &blocks, block_timeout));
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

async fn limited<T>(
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
fn number_or_text(text: &str) -> Value {
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

fn float(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(f.to_string()))
}

fn param_names(b: &ScriptBlock) -> Vec<&str> {
    b.params
        .iter()
        .map(|p| p.name.trim().trim_start_matches('@'))
        .collect()
}

mod pg {
    use std::time::Duration;

    use highwater_core::{Error, Result};
    use serde_json::{Map, Value};
    use tokio_postgres::types::{FromSql, ToSql, Type};

    use super::{BlockKind, Dialect, ScriptBlock, ScriptOutcome, float, limited, number_or_text};
    use crate::postgres::errors::source as pg_err;

    /// Any column value as JSON.
    struct Json(Value);

    impl<'a> FromSql<'a> for Json {
        fn from_sql(
            ty: &Type,
            raw: &'a [u8],
        ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
            Ok(Json(match *ty {
                Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
                Type::INT2 => Value::from(i16::from_sql(ty, raw)?),
                Type::INT4 => Value::from(i32::from_sql(ty, raw)?),
                Type::INT8 => Value::from(i64::from_sql(ty, raw)?),
                Type::OID => Value::from(u32::from_sql(ty, raw)?),
                Type::FLOAT4 => float(f64::from(f32::from_sql(ty, raw)?)),
                Type::FLOAT8 => float(f64::from_sql(ty, raw)?),
                Type::NUMERIC => number_or_text(&numeric_text(raw)?),
                Type::JSON | Type::JSONB => {
                    Value::String(serde_json::Value::from_sql(ty, raw)?.to_string())
                }
                Type::DATE => Value::String(NaiveDate::from_sql(ty, raw)?.to_string()),
                Type::TIME => Value::String(NaiveTime::from_sql(ty, raw)?.to_string()),
                Type::TIMESTAMP => Value::String(
                    NaiveDateTime::from_sql(ty, raw)?
                        .format("%Y-%m-%dT%H:%M:%S%.f")
                        .to_string(),
                ),
                Type::TIMESTAMPTZ => Value::String(
                    DateTime::<Utc>::from_sql(ty, raw)?
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                ),
                Type::UUID => {
                    let b: [u8; 16] = raw.try_into()?;
                    Value::String(uuid::Uuid::from_bytes(b).hyphenated().to_string())
                }
                _ if <&str as FromSql>::accepts(ty) => {
                    Value::String(<&str as FromSql>::from_sql(ty, raw)?.to_string())
                }
                _ => {
                    return Err(format!(
                        "a column of type {ty} cannot be returned by a Script; cast it to text"
                    )
                    .into());
                }
            }))
        }

        fn from_sql_null(
            _: &Type,
        ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            Ok(Json(Value::Null))
        }

        fn accepts(_: &Type) -> bool {
            true
        }
    }

    /// NUMERIC binary (ndigits, weight, sign, dscale, base-10000 digits) as text.
    fn numeric_text(raw: &[u8]) -> std::result::Result<String, String> {
        let word = |i: usize| -> std::result::Result<i16, String> {
            raw.get(i..i + 2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "a truncated numeric value".to_string())
        };
        let (n, weight, sign, dscale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
        match sign {
            0xC000 => return Ok("NaN".into()),
            0xD000 => return Ok("Infinity".into()),
            0xF000 => return Ok("-Infinity".into()),
            _ => {}
        }
        let digits: Vec<i16> = (0..n as usize)
            .map(|k| word(8 + 2 * k))
            .collect::<std::result::Result<_, _>>()?;
        let mut int = String::new();
        for k in 0..=weight.max(0) {
            let d = if k <= weight {
                digits.get(k as usize).copied().unwrap_or(0)
            } else {
                0
            };
            if int.is_empty() {
                int = d.to_string();
            } else {
                int.push_str(&format!("{d:04}"));
            }
        }
        if weight < 0 {
            int = "0".into();
        }
        let mut frac = String::new();
        let first_frac = weight + 1;
        let mut k = first_frac;
        while (frac.len() as i16) < dscale {
            let d = if k < 0 {
                0
            } else {
                digits.get(k as usize).copied().unwrap_or(0)
            };
            frac.push_str(&format!("{d:04}"));
            k += 1;
        }
        frac.truncate(dscale.max(0) as usize);
        let mut s = if sign == 0x4000 {
            "-".to_string()
        } else {
            String::new()
        };
        s.push_str(&int);
        if !frac.is_empty() {
            s.push('.');
            s.push_str(&frac);
        }
        Ok(s)
    }

    pub(super) async fn run(
        url: &str,
        blocks: &[ScriptBlock],
        limit: Duration,
    ) -> Result<ScriptOutcome> {
        let client = crate::postgres::connect(url).await?;
        let mut out = ScriptOutcome::default();
        for (i, b) in blocks.iter().enumerate() {
            limited(limit, i, block(&client, b, &mut out)).await?;
        }
        Ok(out)
    }

    async fn block(
        client: &tokio_postgres::Client,
        b: &ScriptBlock,
        out: &mut ScriptOutcome,
    ) -> Result<()> {
        let names = super::param_names(b);
        let (text, _) = super::placeholders(&b.text, &names, Dialect::Postgres, &|p| {
            format!(
                "(${}::text)::{}",
                p + 1,
                crate::postgres::procedure::sql_type(b.params[p].ty)
            )
        });
        let stmt = match client.prepare(&text).await {
            Ok(s) => s,
            Err(e)
                if b.params.is_empty()
                    && e.as_db_error()
                        .is_some_and(|d| d.message().contains("multiple commands")) =>
            {
                return simple(client, b, &text, out).await;
            }
            Err(e) => return Err(pg_err(e)),
        };
        // Every parameter is declared, used or not, so that `$n` matches.
        let values: Vec<Option<String>> = b.params.iter().map(|p| p.value.clone()).collect();
        let n = stmt.params().len();
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .take(n)
            .map(|v| v as &(dyn ToSql + Sync))
            .collect();
        if stmt.columns().is_empty() || b.kind == BlockKind::NonQuery {
            let n = client.execute(&stmt, &params).await.map_err(pg_err)?;
            if b.kind == BlockKind::NonQuery {
                out.records_affected += n;
            }
            return Ok(());
        }
        let rows = client.query(&stmt, &params).await.map_err(pg_err)?;
        let mut set = Vec::new();
        for r in rows {
            let mut m = Map::new();
            for (k, c) in r.columns().iter().enumerate() {
                let v: Json = r
                    .try_get(k)
                    .map_err(|e| Error::data(format!("column {}: {e}", c.name())))?;
                m.insert(c.name().to_string(), v.0);
            }
            set.push(m);
        }
        out.result_sets.push(set);
        Ok(())
    }

    /// Several statements without parameters: the simple protocol.
    async fn simple(
        client: &tokio_postgres::Client,
        b: &ScriptBlock,
        text: &str,
        out: &mut ScriptOutcome,
    ) -> Result<()> {
        use tokio_postgres::SimpleQueryMessage as M;
        let msgs = client.simple_query(text).await.map_err(pg_err)?;
        let mut set: Option<Vec<Map<String, Value>>> = None;
        for m in msgs {
            match m {
                M::RowDescription(_) => set = Some(Vec::new()),
                M::Row(r) => {
                    let mut m = Map::new();
                    for (k, c) in r.columns().iter().enumerate() {
                        let v = r
                            .get(k)
                            .map_or(Value::Null, |s| Value::String(s.to_string()));
                        m.insert(c.name().to_string(), v);
                    }
                    set.get_or_insert_with(Vec::new).push(m);
                }
                M::CommandComplete(n) => match set.take() {
                    Some(rows) if b.kind == BlockKind::Query => out.result_sets.push(rows),
                    Some(_) => {}
                    None if b.kind == BlockKind::NonQuery => out.records_affected += n,
                    None => {}
                },
                _ => {}
            }
        }
        Ok(())
    }
}

mod my {
    use std::time::Duration;

    use highwater_core::Result;
    use mysql_async::consts::ColumnType as T;
    use mysql_async::prelude::Queryable;
    use mysql_async::{Row, Value as V};
    use serde_json::{Map, Value};

    use super::{BlockKind, Dialect, ScriptBlock, ScriptOutcome, float, limited, number_or_text};
    use crate::mysql::errors::source as my_err;
    use crate::procedure::ProcType;

    pub(super) async fn run(
        url: &str,
        blocks: &[ScriptBlock],
        limit: Duration,
    ) -> Result<ScriptOutcome> {
        let mut conn = crate::mysql::connect(url).await?;
        let mut out = ScriptOutcome::default();
        let mut res = Ok(());
        for (i, b) in blocks.iter().enumerate() {
            res = limited(limit, i, block(&mut conn, b, &mut out)).await;
            if res.is_err() {
                break;
            }
        }
        let _ = conn.disconnect().await;
        res.map(|_| out)
    }

    fn json(v: &V, ty: T) -> Value {
        match v {
            V::NULL => Value::Null,
            V::Int(i) => Value::from(*i),
            V::UInt(u) => Value::from(*u),
            V::Float(f) => float(f64::from(*f)),
            V::Double(f) => float(*f),
            V::Date(y, mo, d, h, mi, s, us) => Value::String(match ty {
                T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE => format!("{y:04}-{mo:02}-{d:02}"),
                _ if *us > 0 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}"),
                _ => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}"),
            }),
            V::Time(neg, d, h, mi, s, us) => {
                let h = u32::from(*h) + d * 24;
                let sign = if *neg { "-" } else { "" };
                Value::String(if *us > 0 {
                    format!("{sign}{h:02}:{mi:02}:{s:02}.{us:06}")
                } else {
                    format!("{sign}{h:02}:{mi:02}:{s:02}")
                })
            }
            V::Bytes(b) => {
                let text = String::from_utf8_lossy(b);
                match ty {
                    T::MYSQL_TYPE_TINY
                    | T::MYSQL_TYPE_SHORT
                    | T::MYSQL_TYPE_LONG
                    | T::MYSQL_TYPE_INT24
                    | T::MYSQL_TYPE_LONGLONG
                    | T::MYSQL_TYPE_YEAR
                    | T::MYSQL_TYPE_DECIMAL
                    | T::MYSQL_TYPE_NEWDECIMAL
                    | T::MYSQL_TYPE_FLOAT
                    | T::MYSQL_TYPE_DOUBLE => number_or_text(&text),
                    T::MYSQL_TYPE_DATETIME | T::MYSQL_TYPE_TIMESTAMP => {
                        Value::String(text.replacen(' ', "T", 1))
                    }
                    _ => Value::String(text.into_owned()),
                }
            }
        }
    }

    fn row_json(r: &Row) -> Map<String, Value> {
        let cols = r.columns_ref();
        cols.iter()
            .enumerate()
            .map(|(k, c)| {
                let v = r.as_ref(k).cloned().unwrap_or(V::NULL);
                (c.name_str().to_string(), json(&v, c.column_type()))
            })
            .collect()
    }

    fn value(ty: ProcType, v: &Option<String>) -> V {
        match (v, ty) {
            (None, _) => V::NULL,
            (Some(v), ProcType::Boolean) => {
                V::Int(i64::from(v.eq_ignore_ascii_case("true") || v == "1"))
            }
            (Some(v), _) => V::Bytes(v.clone().into_bytes()),
        }
    }

    async fn block(
        conn: &mut mysql_async::Conn,
        b: &ScriptBlock,
        out: &mut ScriptOutcome,
    ) -> Result<()> {
        let names = super::param_names(b);
        let (text, order) = super::placeholders(&b.text, &names, Dialect::Mysql, &|_| "?".into());
        if b.params.is_empty() {
            let mut result = conn.query_iter(text).await.map_err(my_err)?;
            loop {
                let has_columns = result.columns().is_some_and(|c| !c.is_empty());
                let rows: Vec<Row> = result.collect().await.map_err(my_err)?;
                if has_columns && b.kind == BlockKind::Query {
                    out.result_sets.push(rows.iter().map(row_json).collect());
                } else if !has_columns && b.kind == BlockKind::NonQuery {
                    out.records_affected += result.affected_rows();
                }
                if result.is_empty() {
                    break;
                }
            }
            return Ok(());
        }
        let params: Vec<V> = order
            .iter()
            .map(|&p| value(b.params[p].ty, &b.params[p].value))
            .collect();
        let mut result = conn.exec_iter(text, params).await.map_err(my_err)?;
        let has_columns = result.columns().is_some_and(|c| !c.is_empty());
        let rows: Vec<Row> = result.collect().await.map_err(my_err)?;
        if has_columns && b.kind == BlockKind::Query {
            out.result_sets.push(rows.iter().map(row_json).collect());
        } else if !has_columns && b.kind == BlockKind::NonQuery {
            out.records_affected += result.affected_rows();
        }
        Ok(())
    }
}

mod lite {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use fallible_iterator::FallibleIterator;
    use highwater_core::{Error, Result};
    use rusqlite::types::ValueRef;
    use rusqlite::{Batch, Connection};
    use serde_json::{Map, Value};

    use super::{BlockKind, ScriptBlock, ScriptOutcome, float};
    use crate::procedure::ProcType;

    fn err(e: rusqlite::Error) -> Error {
        Error::source("sqlite", e)
    }

    fn bind_value(ty: ProcType, v: &Option<String>) -> rusqlite::types::Value {
        use rusqlite::types::Value as S;
        let Some(v) = v else { return S::Null };
        match ty {
            ProcType::Boolean => S::Integer(i64::from(v.eq_ignore_ascii_case("true") || v == "1")),
            ProcType::Int16 | ProcType::Int32 | ProcType::Int64 => match v.trim().parse() {
                Ok(i) => S::Integer(i),
                Err(_) => S::Text(v.clone()),
            },
            ProcType::Double | ProcType::Single | ProcType::Decimal => match v.trim().parse() {
                Ok(f) => S::Real(f),
                Err(_) => S::Text(v.clone()),
            },
            _ => S::Text(v.clone()),
        }
    }

    pub(super) fn run(
        path: &Path,
        blocks: &[ScriptBlock],
        limit: Duration,
    ) -> Result<ScriptOutcome> {
        let conn = Connection::open(path).map_err(|e| Error::Connection {
            target: format!("sqlite://{}", path.display()),
            message: e.to_string(),
        })?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        let mut out = ScriptOutcome::default();
        for (i, b) in blocks.iter().enumerate() {
            let deadline = Instant::now() + limit;
            // A watchdog interrupts the statement running at the deadline.
            let handle = conn.get_interrupt_handle();
            let (done, wait) = std::sync::mpsc::channel::<()>();
            let watchdog = std::thread::spawn(move || {
                if wait.recv_timeout(limit).is_err() {
                    handle.interrupt();
                }
            });
            let r = block(&conn, b, &mut out);
            let _ = done.send(());
            let _ = watchdog.join();
            if let Err(e) = r {
                if Instant::now() > deadline {
                    return Err(Error::data(format!(
                        "scripts[{i}] did not finish within {}s (scriptBlockExecutionTimeout)",
                        limit.as_secs()
                    )));
                }
                return Err(e);
            }
        }
        Ok(out)
    }

    fn block(conn: &Connection, b: &ScriptBlock, out: &mut ScriptOutcome) -> Result<()> {
        let mut batch = Batch::new(conn, &b.text);
        while let Some(mut stmt) = batch.next().map_err(err)? {
            for p in &b.params {
                let name = p.name.trim().trim_start_matches('@');
                let idx = stmt.parameter_index(&format!("@{name}")).map_err(err)?;
                if let Some(idx) = idx {
                    stmt.raw_bind_parameter(idx, bind_value(p.ty, &p.value))
                        .map_err(err)?;
                }
            }
            let ncols = stmt.column_count();
            if ncols == 0 {
                let n = stmt.raw_execute().map_err(err)?;
                if b.kind == BlockKind::NonQuery {
                    out.records_affected += n as u64;
                }
                continue;
            }
            let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
            let mut rows = stmt.raw_query();
            let mut set = Vec::new();
            while let Some(r) = rows.next().map_err(err)? {
                let mut m = Map::new();
                for (k, n) in names.iter().enumerate() {
                    let v = match r.get_ref(k).map_err(err)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(i) => Value::from(i),
                        ValueRef::Real(f) => float(f),
                        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(bl) => {
                            Value::String(String::from_utf8_lossy(bl).into_owned())
                        }
                    };
                    m.insert(n.clone(), v);
                }
                set.push(m);
            }
            if b.kind == BlockKind::Query {
                out.result_sets.push(set);
            }
        }
        Ok(())
    }
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
