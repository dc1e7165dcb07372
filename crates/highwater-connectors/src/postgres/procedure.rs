//! `CALL schema.name(($1::text)::type, …)` with every value bound as text
//! and cast by the server to the activity's parameter type.
//!
//! Name parts written bare or in T-SQL brackets fold to lower case, as
//! PostgreSQL folds unquoted identifiers; parts in double quotes keep
//! their case. Every part is then quoted.

use highwater_core::Result;
use tokio_postgres::types::ToSql;

use super::source::{connect, pg_err};
use crate::procedure::{ProcType, Procedure};
use crate::util::quote_ident;

fn sql_type(t: ProcType) -> &'static str {
    match t {
        ProcType::String => "text",
        ProcType::Boolean => "boolean",
        ProcType::Int16 => "smallint",
        ProcType::Int32 => "integer",
        ProcType::Int64 => "bigint",
        ProcType::Decimal => "numeric",
        ProcType::Double => "double precision",
        ProcType::Single => "real",
        ProcType::DateTime => "timestamp",
        ProcType::DateTimeOffset => "timestamptz",
        ProcType::Guid => "uuid",
        ProcType::TimeSpan => "interval",
    }
}

/// The statement text: only quoted identifiers and placeholders.
pub(crate) fn statement(proc: &Procedure) -> String {
    let name: Vec<String> = proc
        .name
        .iter()
        .map(|p| {
            if p.case_sensitive {
                quote_ident(&p.text, '"')
            } else {
                quote_ident(&p.text.to_lowercase(), '"')
            }
        })
        .collect();
    let args: Vec<String> = proc
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| format!("(${}::text)::{}", i + 1, sql_type(p.ty)))
        .collect();
    format!("CALL {}({})", name.join("."), args.join(", "))
}

pub(crate) async fn call(url: &str, proc: &Procedure) -> Result<()> {
    let client = connect(url).await?;
    let sql = statement(proc);
    let values: Vec<Option<String>> = proc.params.iter().map(|p| p.value.clone()).collect();
    let params: Vec<&(dyn ToSql + Sync)> =
        values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    client.execute(&sql, &params).await.map_err(pg_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::procedure::{ProcParam, ProcType, Procedure};

    #[test]
    fn statement_quotes_the_name_and_binds_values() {
        let proc = Procedure {
            name: Procedure::parse_name("[dbo].[usp_Write]").unwrap(),
            params: vec![
                ProcParam {
                    name: "t".into(),
                    value: Some("x'); drop table t; --".into()),
                    ty: ProcType::DateTime,
                },
                ProcParam {
                    name: "n".into(),
                    value: None,
                    ty: ProcType::String,
                },
            ],
        };
        assert_eq!(
            super::statement(&proc),
            "CALL \"dbo\".\"usp_write\"(($1::text)::timestamp, ($2::text)::text)"
        );
    }
}
