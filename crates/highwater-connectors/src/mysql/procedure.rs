//! `` CALL `schema`.`name`(?, …) `` with every value bound, in the order
//! of the procedure's parameters as `information_schema.PARAMETERS` lists
//! them: the activity's parameters are matched by name, so their order
//! does not matter. MariaDB has no parameter defaults, so every `IN`
//! parameter must be given; `OUT` and `INOUT` ones are passed through
//! session variables. The server converts the text to the declared types.

use highwater_core::{Error, Result};
use mysql_async::Value;
use mysql_async::prelude::Queryable;

use super::source::{connect, my_err};
use crate::procedure::{DeclaredParam, ProcType, Procedure, match_names};
use crate::util::quote_ident;

/// How one declared parameter is passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    /// `?` bound to the activity parameter with this index.
    Bound(usize),
    /// A session variable `@_hw_pN` (OUT / INOUT).
    Var(usize),
}

/// The statement text: only quoted identifiers, placeholders and the
/// session variables of `OUT`/`INOUT` parameters.
pub(crate) fn statement(proc: &Procedure, args: &[Arg]) -> String {
    let name: Vec<String> = proc
        .name
        .iter()
        .map(|p| quote_ident(&p.text, '`'))
        .collect();
    let args: Vec<String> = args
        .iter()
        .map(|a| match a {
            Arg::Bound(_) => "?".to_string(),
            Arg::Var(n) => format!("@_hw_p{n}"),
        })
        .collect();
    format!("CALL {}({})", name.join("."), args.join(", "))
}

fn value(proc: &Procedure, i: usize) -> Value {
    let p = &proc.params[i];
    match (&p.value, p.ty) {
        (None, _) => Value::NULL,
        (Some(v), ProcType::Boolean) => {
            Value::Int(i64::from(v.eq_ignore_ascii_case("true") || v == "1"))
        }
        (Some(v), ProcType::DateTime | ProcType::DateTimeOffset) => {
            datetime(v).unwrap_or_else(|| Value::Bytes(v.clone().into_bytes()))
        }
        (Some(v), _) => Value::Bytes(v.clone().into_bytes()),
    }
}

/// A Data Factory date-time text as a MariaDB `DATETIME` value: ISO 8601
/// with a zone (`2017-09-05T08:06:00Z`, what a Lookup's output holds; the
/// server rejects that text) in UTC, or a zone-less date-time as written.
/// `None` leaves the text to the server.
fn datetime(text: &str) -> Option<Value> {
    use chrono::{Datelike, NaiveDateTime, Timelike};
    let t = text.trim();
    let naive = match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) => d.naive_utc(),
        Err(_) => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())?,
    };
    Some(Value::Date(
        u16::try_from(naive.year()).ok()?,
        naive.month() as u8,
        naive.day() as u8,
        naive.hour() as u8,
        naive.minute() as u8,
        naive.second() as u8,
        naive.nanosecond() / 1000,
    ))
}

pub(crate) async fn call(url: &str, proc: &Procedure) -> Result<()> {
    let mut conn = connect(url).await?;
    let res = run(&mut conn, proc).await;
    let _ = conn.disconnect().await;
    res
}

async fn run(conn: &mut mysql_async::Conn, proc: &Procedure) -> Result<()> {
    let n = proc.name.len();
    let name = proc.name[n - 1].text.clone();
    let schema = (n >= 2).then(|| proc.name[n - 2].text.clone());
    let shown = match &schema {
        Some(s) => format!("{s}.{name}"),
        None => name.clone(),
    };
    let exists: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = COALESCE(?, DATABASE()) AND ROUTINE_NAME = ? AND ROUTINE_TYPE = 'PROCEDURE'",
            (&schema, &name),
        )
        .await
        .map_err(my_err)?;
    if exists.unwrap_or(0) == 0 {
        return Err(Error::config(
            "storedProcedureName",
            format!("procedure {shown} does not exist in the database"),
        ));
    }
    let rows: Vec<(String, String)> = conn
        .exec(
            "SELECT PARAMETER_NAME, PARAMETER_MODE FROM information_schema.PARAMETERS
             WHERE SPECIFIC_SCHEMA = COALESCE(?, DATABASE()) AND SPECIFIC_NAME = ?
               AND ROUTINE_TYPE = 'PROCEDURE' AND ORDINAL_POSITION > 0
             ORDER BY ORDINAL_POSITION",
            (&schema, &name),
        )
        .await
        .map_err(my_err)?;
    let declared: Vec<DeclaredParam> = rows
        .iter()
        .map(|(n, m)| DeclaredParam {
            name: n.clone(),
            out_only: m.eq_ignore_ascii_case("OUT"),
        })
        .collect();
    let order = match_names(&shown, &declared, &proc.params)?;
    let mut args = Vec::new();
    let mut setup: Vec<(String, Value)> = Vec::new();
    for (j, ((d, (_, mode)), given)) in declared.iter().zip(&rows).zip(&order).enumerate() {
        if mode.eq_ignore_ascii_case("IN") {
            match given {
                Some(i) => args.push(Arg::Bound(*i)),
                None => {
                    return Err(Error::config(
                        "storedProcedureParameters",
                        format!(
                            "procedure {shown} has parameter {}, which the activity does not give (MariaDB has no parameter defaults)",
                            d.name
                        ),
                    ));
                }
            }
        } else {
            let v = given.map(|i| value(proc, i)).unwrap_or(Value::NULL);
            setup.push((format!("SET @_hw_p{j} = ?"), v));
            args.push(Arg::Var(j));
        }
    }
    for (sql, v) in setup {
        conn.exec_drop(sql, (v,)).await.map_err(my_err)?;
    }
    let params: Vec<Value> = args
        .iter()
        .filter_map(|a| match a {
            Arg::Bound(i) => Some(value(proc, *i)),
            Arg::Var(_) => None,
        })
        .collect();
    conn.exec_drop(statement(proc, &args), params)
        .await
        .map_err(my_err)
}
