//! The Script activity on PostgreSQL (see [`crate::script`]): each block
//! prepared, values decoded by column type; several statements without
//! parameters through the simple protocol (values as text).

use std::time::Duration;

use highwater_core::{Error, Result};
use serde_json::{Map, Value};
use tokio_postgres::types::{FromSql, ToSql, Type};

use crate::postgres::errors::source as pg_err;
use crate::script::{
    BlockKind, Dialect, ScriptBlock, ScriptOutcome, float, limited, number_or_text,
};

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

pub(crate) async fn run(
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
    let names = crate::script::param_names(b);
    let (text, _) = crate::script::placeholders(&b.text, &names, Dialect::Postgres, &|p| {
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
