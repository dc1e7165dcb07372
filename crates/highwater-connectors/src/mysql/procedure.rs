//! `` CALL `schema`.`name`(?, …) `` with every value bound; the server
//! converts the text to the procedure's declared parameter types.

use highwater_core::Result;
use mysql_async::Value;
use mysql_async::prelude::Queryable;

use super::source::{connect, my_err};
use crate::procedure::{ProcType, Procedure};
use crate::util::quote_ident;

/// The statement text: only quoted identifiers and placeholders.
pub(crate) fn statement(proc: &Procedure) -> String {
    let name: Vec<String> = proc
        .name
        .iter()
        .map(|p| quote_ident(&p.text, '`'))
        .collect();
    let args = vec!["?"; proc.params.len()].join(", ");
    format!("CALL {}({args})", name.join("."))
}

pub(crate) async fn call(url: &str, proc: &Procedure) -> Result<()> {
    let mut conn = connect(url).await?;
    let params: Vec<Value> = proc
        .params
        .iter()
        .map(|p| match (&p.value, p.ty) {
            (None, _) => Value::NULL,
            (Some(v), ProcType::Boolean) => {
                Value::Int(i64::from(v.eq_ignore_ascii_case("true") || v == "1"))
            }
            (Some(v), _) => Value::Bytes(v.clone().into_bytes()),
        })
        .collect();
    let res = conn
        .exec_drop(statement(proc), params)
        .await
        .map_err(my_err);
    let _ = conn.disconnect().await;
    res
}
