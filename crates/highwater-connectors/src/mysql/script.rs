//! The Script activity on MariaDB/MySQL (see [`crate::script`]): blocks
//! without parameters through the text protocol (several statements and
//! result sets), with parameters as one prepared statement.

use std::time::Duration;

use highwater_core::Result;
use mysql_async::consts::ColumnType as T;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value as V};
use serde_json::{Map, Value};

use crate::mysql::errors::source as my_err;
use crate::procedure::ProcType;
use crate::script::{
    BlockKind, Dialect, ScriptBlock, ScriptOutcome, float, limited, number_or_text,
};

pub(crate) async fn run(
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
    let names = crate::script::param_names(b);
    let (text, order) =
        crate::script::placeholders(&b.text, &names, Dialect::Mysql, &|_| "?".into());
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
