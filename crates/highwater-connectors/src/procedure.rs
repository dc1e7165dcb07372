//! Stored procedures for the Data Factory Stored Procedure activity: the
//! backend-neutral call description ([`Procedure`], [`ProcParam`],
//! [`ProcType`]) and the dispatch to each backend's `procedure.rs`.
//!
//! Values are always bound parameters, never spliced into the SQL text;
//! the procedure name is split into its parts and each part quoted by the
//! backend's dialect. Parameters are bound by name, as Data Factory binds
//! them: each backend reads the procedure's parameter names from its
//! catalog (PostgreSQL `pg_proc.proargnames`, MariaDB
//! `information_schema.PARAMETERS`) and [`match_names`] pairs them with
//! the activity's, ignoring case; a name the procedure does not have is an
//! error naming it, and the order in the activity's JSON does not matter.

use highwater_core::{ConnKind, Error, Result};

/// The Data Factory parameter types of a Stored Procedure activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcType {
    String,
    Boolean,
    Int16,
    Int32,
    Int64,
    Decimal,
    Double,
    Single,
    DateTime,
    DateTimeOffset,
    Guid,
    TimeSpan,
}

impl ProcType {
    /// Parse a Data Factory type name, ignoring case (`"datetime"`, `"String"`).
    pub fn parse(name: &str) -> Option<ProcType> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "string" => ProcType::String,
            "boolean" => ProcType::Boolean,
            "int16" => ProcType::Int16,
            "int32" | "int" => ProcType::Int32,
            "int64" => ProcType::Int64,
            "decimal" => ProcType::Decimal,
            "double" => ProcType::Double,
            "single" => ProcType::Single,
            "datetime" => ProcType::DateTime,
            "datetimeoffset" => ProcType::DateTimeOffset,
            "guid" => ProcType::Guid,
            "timespan" => ProcType::TimeSpan,
            _ => return None,
        })
    }

    /// The names [`ProcType::parse`] accepts, for messages.
    pub const NAMES: &'static str = "String, Boolean, Int16, Int32, Int64, Decimal, Double, Single, DateTime, DateTimeOffset, Guid, TimeSpan";
}

/// One parameter: its value as text (`None` is SQL NULL) and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcParam {
    pub name: String,
    pub value: Option<String>,
    pub ty: ProcType,
}

/// One name part of a procedure, with whether it was written in double
/// quotes (case kept) or bare / in T-SQL brackets (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePart {
    pub text: String,
    pub case_sensitive: bool,
}

/// A procedure call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procedure {
    /// `schema.name` or `name`.
    pub name: Vec<NamePart>,
    pub params: Vec<ProcParam>,
}

impl Procedure {
    /// Split `[dbo].[usp_x]`, `"Sales"."usp"` or `dbo.usp_x` into parts.
    pub fn parse_name(text: &str) -> Result<Vec<NamePart>> {
        let mut parts = Vec::new();
        let mut chars = text.trim().chars().peekable();
        loop {
            let mut cur = String::new();
            let mut case_sensitive = false;
            match chars.peek() {
                Some('[') => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some(']') if chars.peek() == Some(&']') => {
                                chars.next();
                                cur.push(']');
                            }
                            Some(']') => break,
                            Some(c) => cur.push(c),
                            None => return Err(bad_name(text)),
                        }
                    }
                }
                Some('"') => {
                    chars.next();
                    case_sensitive = true;
                    loop {
                        match chars.next() {
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                cur.push('"');
                            }
                            Some('"') => break,
                            Some(c) => cur.push(c),
                            None => return Err(bad_name(text)),
                        }
                    }
                }
                _ => {
                    while let Some(&c) = chars.peek() {
                        if c == '.' {
                            break;
                        }
                        cur.push(c);
                        chars.next();
                    }
                    cur = cur.trim().to_string();
                }
            }
            if cur.is_empty() {
                return Err(bad_name(text));
            }
            parts.push(NamePart {
                text: cur,
                case_sensitive,
            });
            match chars.next() {
                None => break,
                Some('.') => continue,
                Some(_) => return Err(bad_name(text)),
            }
        }
        if parts.len() > 3 {
            return Err(bad_name(text));
        }
        Ok(parts)
    }
}

/// A parameter of the procedure as its catalog declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredParam {
    pub name: String,
    /// `OUT` (no value is passed in).
    pub out_only: bool,
}

/// Pair the activity's parameters with the procedure's declared ones by
/// name (exact first, then ignoring case). Returns, for each declared
/// parameter in order, the index of the activity parameter that gives it.
pub fn match_names(
    proc_name: &str,
    declared: &[DeclaredParam],
    given: &[ProcParam],
) -> Result<Vec<Option<usize>>> {
    let mut out = vec![None; declared.len()];
    let names = || {
        let l: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
        if l.is_empty() {
            "none".to_string()
        } else {
            l.join(", ")
        }
    };
    for (i, g) in given.iter().enumerate() {
        let wanted = g.name.trim().trim_start_matches('@');
        let exact = declared.iter().position(|d| d.name == wanted);
        let found = exact.or_else(|| {
            let ci: Vec<usize> = (0..declared.len())
                .filter(|j| declared[*j].name.eq_ignore_ascii_case(wanted))
                .collect();
            (ci.len() == 1).then(|| ci[0])
        });
        let Some(j) = found else {
            return Err(Error::config(
                format!("storedProcedureParameters.{}", g.name),
                format!(
                    "procedure {proc_name} has no parameter {} (its parameters: {})",
                    g.name,
                    names()
                ),
            ));
        };
        if out[j].is_some() {
            return Err(Error::config(
                format!("storedProcedureParameters.{}", g.name),
                format!(
                    "parameter {} of {proc_name} is given twice",
                    declared[j].name
                ),
            ));
        }
        out[j] = Some(i);
    }
    Ok(out)
}

fn bad_name(text: &str) -> Error {
    Error::config(
        "storedProcedureName",
        format!("`{text}` is not a procedure name (name, schema.name, [schema].[name])"),
    )
}

/// Call a stored procedure on a database connection.
pub async fn call_procedure(kind: &ConnKind, url: &str, proc: &Procedure) -> Result<()> {
    match kind {
        ConnKind::Postgres => crate::postgres::procedure::call(url, proc).await,
        ConnKind::Mysql => crate::mysql::procedure::call(url, proc).await,
        ConnKind::Sqlite(_) => Err(Error::config(
            "storedProcedureName",
            "SQLite has no stored procedures; run this step on PostgreSQL or MariaDB",
        )),
        ConnKind::Mssql => Err(Error::config(
            "storedProcedureName",
            "stored procedures on mssql:// are not supported yet",
        )),
        ConnKind::File(_) | ConnKind::Azure { .. } | ConnKind::S3 { .. } => Err(Error::config(
            "storedProcedureName",
            "a file or object-store connection has no stored procedures",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_and_unquote() {
        let p = Procedure::parse_name("[dbo].[usp_write_watermark]").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].text, "usp_write_watermark");
        assert!(!p[1].case_sensitive);
        let p = Procedure::parse_name("\"Odd\"\"Name\"").unwrap();
        assert_eq!(p[0].text, "Odd\"Name");
        assert!(p[0].case_sensitive);
        assert!(Procedure::parse_name("a.b.c.d").is_err());
        assert!(Procedure::parse_name("[open").is_err());
        assert!(Procedure::parse_name("").is_err());
    }
}
