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

/// `(schema, name)` of a name as the catalog spells it (see [`parts`]).
fn catalog_name(text: &str) -> Result<(Option<String>, String)> {
    let proc = Procedure {
        name: Procedure::parse_name(text)?,
        params: vec![],
    };
    Ok(parts(&proc))
}

/// The stored-procedure sink: hand the staged rows to procedure `w.name`
/// as one array of the composite type `w.table_type` (PostgreSQL's
/// equivalent of a table-valued parameter), in the caller's commit
/// transaction. Staging columns go to the type's attributes of the same
/// name (ignoring case); attributes the copy does not carry are NULL; a
/// copied column the type lacks is an error. A subquery cannot be a
/// `CALL` argument, so the array travels as its text (PostgreSQL's own
/// lossless record syntax) and is cast back:
///
/// ```text
/// SELECT ARRAY(SELECT ROW(s.a, s.b, NULL)::T FROM staging s ORDER BY seq)::text
/// CALL schema.proc(param => $1::text::T[])     (a function: SELECT schema.proc(…))
/// ```
pub(crate) async fn call_with_rows(
    tx: &tokio_postgres::Client,
    layout: &crate::table::Layout,
    w: &highwater_core::ProcedureWrite,
) -> Result<()> {
    let q = |s: &str| quote_ident(s, '"');
    // The composite type: a table's row type, or CREATE TYPE … AS (…).
    let (tschema, tname) = catalog_name(&w.table_type)?;
    let types = tx
        .query(
            "SELECT format_type(t.oid, NULL), t.typrelid FROM pg_type t \
             JOIN pg_namespace n ON n.oid = t.typnamespace \
             WHERE t.typtype = 'c' AND lower(t.typname) = lower($1) \
               AND (n.nspname = $2 OR ($2 IS NULL AND n.nspname = ANY (current_schemas(true)))) \
             ORDER BY t.typname = $1 DESC, array_position(current_schemas(true), n.nspname::name)",
            &[&tname, &tschema],
        )
        .await
        .map_err(pg_err)?;
    let Some(t) = types.first() else {
        return Err(Error::config(
            "sink.sqlWriterTableType",
            format!(
                "there is no composite type {} in the database (create it with CREATE TYPE {} AS (…), the PostgreSQL form of a table type)",
                w.table_type, w.table_type
            ),
        ));
    };
    let type_sql: String = t.get(0);
    let relid: u32 = t.get(1);
    let attrs: Vec<String> = tx
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 \
             AND NOT attisdropped ORDER BY attnum",
            &[&relid],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let copied: Vec<&str> = layout
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let find = |a: &str| {
        copied
            .iter()
            .find(|c| **c == a)
            .or_else(|| copied.iter().find(|c| c.eq_ignore_ascii_case(a)))
            .copied()
    };
    for c in &copied {
        if !attrs.iter().any(|a| a.eq_ignore_ascii_case(c)) {
            return Err(Error::config(
                "sink.sqlWriterTableType",
                format!(
                    "the copy's column {c} is not an attribute of type {type_sql} (attributes: {})",
                    attrs.join(", ")
                ),
            ));
        }
    }
    let fields: Vec<String> = attrs
        .iter()
        .map(|a| match find(a) {
            Some(c) => format!("s.{}", q(c)),
            None => "NULL".to_string(),
        })
        .collect();
    let array: String = tx
        .query_one(
            &format!(
                "SELECT ARRAY(SELECT ROW({})::{type_sql} FROM {} s ORDER BY s.{})::text",
                fields.join(", "),
                layout.staging_sql(),
                q(crate::table::SEQ)
            ),
            &[],
        )
        .await
        .map_err(pg_err)?
        .get(0);
    // The procedure (or function) and its parameter names.
    let (pschema, pname) = catalog_name(&w.name)?;
    let procs = tx
        .query(
            "SELECT n.nspname::text, p.proname::text, p.prokind::text, p.proargnames FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.prokind IN ('p', 'f') AND lower(p.proname) = lower($1) \
               AND (n.nspname = $2 OR ($2 IS NULL AND n.nspname = ANY (current_schemas(true)))) \
             ORDER BY p.proname = $1 DESC, array_position(current_schemas(true), n.nspname::name)",
            &[&pname, &pschema],
        )
        .await
        .map_err(pg_err)?;
    let Some(p) = procs.first() else {
        return Err(Error::config(
            "sink.sqlWriterStoredProcedureName",
            format!("procedure {} does not exist in the database", w.name),
        ));
    };
    let (schema, name, kind): (String, String, String) = (p.get(0), p.get(1), p.get(2));
    let names: Vec<String> = p
        .get::<_, Option<Vec<Option<String>>>>(3)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let arg = format!("$1::text::{type_sql}[]");
    let arg = match w
        .parameter
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        None => arg,
        Some(given) => {
            let given = given.trim_start_matches('@');
            let Some(n) = names
                .iter()
                .find(|n| *n == given)
                .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(given)))
            else {
                return Err(Error::config(
                    "sink.storedProcedureTableTypeParameterName",
                    format!(
                        "procedure {schema}.{name} has no parameter {given} (parameters: {})",
                        if names.is_empty() {
                            "none named".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                ));
            };
            format!("{} => {arg}", q(n))
        }
    };
    let verb = if kind == "p" { "CALL" } else { "SELECT" };
    tx.execute(
        &format!("{verb} {}.{}({arg})", q(&schema), q(&name)),
        &[&array],
    )
    .await
    .map_err(pg_err)?;
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
