//! `CALL schema.name(param => ($1::text)::type, …)`: every value bound as
//! text, cast by the server to the activity's parameter type, and passed
//! by name (PostgreSQL's named notation) with the names read from
//! `pg_proc.proargnames`, so the activity's order does not matter and a
//! parameter left out takes its `DEFAULT`. `OUT` parameters not given are
//! passed as NULL, as `CALL` requires.
//!
//! Name parts written bare or in T-SQL brackets fold to lower case, as
//! PostgreSQL folds unquoted identifiers; parts in double quotes keep
//! their case. Every part is then quoted. Without a schema, the first
//! schema of the search path that has the procedure is used.

use highwater_core::{Error, Result};
use tokio_postgres::types::ToSql;

use super::source::{connect, pg_err};
use crate::procedure::{DeclaredParam, ProcType, Procedure, match_names};
use crate::util::quote_ident;

pub(crate) fn sql_type(t: ProcType) -> &'static str {
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

/// `(schema, name)` as the catalog spells them.
fn parts(proc: &Procedure) -> (Option<String>, String) {
    let fold = |p: &crate::procedure::NamePart| {
        if p.case_sensitive {
            p.text.clone()
        } else {
            p.text.to_lowercase()
        }
    };
    let n = proc.name.len();
    let name = fold(&proc.name[n - 1]);
    let schema = (n >= 2).then(|| fold(&proc.name[n - 2]));
    (schema, name)
}

/// The statement text: only quoted identifiers and placeholders.
/// `declared`: the procedure's parameters (input ones first matched by
/// name); `order[i]` is the activity parameter giving `declared[i]`.
pub(crate) fn statement(
    proc: &Procedure,
    schema: &str,
    declared: &[DeclaredParam],
    order: &[Option<usize>],
) -> String {
    let (_, name) = parts(proc);
    let mut args = Vec::new();
    for (d, given) in declared.iter().zip(order) {
        let n = quote_ident(&d.name, '"');
        match given {
            Some(i) => args.push(format!(
                "{n} => (${}::text)::{}",
                i + 1,
                sql_type(proc.params[*i].ty)
            )),
            None if d.out_only => args.push(format!("{n} => NULL")),
            None => {}
        }
    }
    format!(
        "CALL {}.{}({})",
        quote_ident(schema, '"'),
        quote_ident(&name, '"'),
        args.join(", ")
    )
}

const LOOKUP: &str = "
    SELECT n.nspname::text, p.proargnames, p.proargmodes::text[]
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE p.prokind = 'p' AND p.proname = $1
      AND (n.nspname = $2 OR ($2 IS NULL AND n.nspname = ANY (current_schemas(true))))
    ORDER BY array_position(current_schemas(true), n.nspname::name)";

pub(crate) async fn call(url: &str, proc: &Procedure) -> Result<()> {
    let client = connect(url).await?;
    let (schema, name) = parts(proc);
    let shown = match &schema {
        Some(s) => format!("{s}.{name}"),
        None => name.clone(),
    };
    let rows = client
        .query(LOOKUP, &[&name, &schema])
        .await
        .map_err(pg_err)?;
    let Some(first) = rows.first() else {
        return Err(Error::config(
            "storedProcedureName",
            format!(
                "procedure {shown} does not exist in the database{}",
                if schema.is_none() {
                    " (searched the schemas of the search path)"
                } else {
                    ""
                }
            ),
        ));
    };
    let found: String = first.get(0);
    // Overloads in that schema: every parameter name any of them has.
    let mut declared: Vec<DeclaredParam> = Vec::new();
    for r in rows.iter().filter(|r| r.get::<_, String>(0) == found) {
        let names: Option<Vec<Option<String>>> = r.get(1);
        let modes: Option<Vec<String>> = r.get(2);
        for (i, n) in names.unwrap_or_default().into_iter().enumerate() {
            let mode = modes.as_ref().and_then(|m| m.get(i)).map(String::as_str);
            let Some(n) = n.filter(|n| !n.is_empty()) else {
                continue;
            };
            if matches!(mode, Some("t")) || declared.iter().any(|d| d.name == n) {
                continue;
            }
            declared.push(DeclaredParam {
                name: n,
                out_only: matches!(mode, Some("o")),
            });
        }
    }
    let order = match_names(&shown, &declared, &proc.params)?;
    let sql = statement(proc, &found, &declared, &order);
    let values: Vec<Option<String>> = proc.params.iter().map(|p| p.value.clone()).collect();
    let params: Vec<&(dyn ToSql + Sync)> =
        values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    client.execute(&sql, &params).await.map_err(pg_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::procedure::{DeclaredParam, ProcParam, ProcType, Procedure};

    #[test]
    fn statement_quotes_names_and_binds_values_by_name() {
        let proc = Procedure {
            name: Procedure::parse_name("[dbo].[usp_Write]").unwrap(),
            params: vec![
                ProcParam {
                    name: "N".into(),
                    value: None,
                    ty: ProcType::String,
                },
                ProcParam {
                    name: "t".into(),
                    value: Some("x'); drop table t; --".into()),
                    ty: ProcType::DateTime,
                },
            ],
        };
        let declared = [
            DeclaredParam {
                name: "t".into(),
                out_only: false,
            },
            DeclaredParam {
                name: "n".into(),
                out_only: false,
            },
            DeclaredParam {
                name: "o\"ut".into(),
                out_only: true,
            },
        ];
        let order = crate::procedure::match_names("usp_write", &declared, &proc.params).unwrap();
        assert_eq!(
            super::statement(&proc, "dbo", &declared, &order),
            "CALL \"dbo\".\"usp_write\"(\"t\" => ($2::text)::timestamp, \"n\" => ($1::text)::text, \"o\"\"ut\" => NULL)"
        );
    }
}
