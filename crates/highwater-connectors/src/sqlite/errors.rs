//! SQLite errors classified by result code, never by message text. SQLite
//! reports a missing table as the generic `SQLITE_ERROR`, so
//! [`table_exists`] asks the schema instead.

use highwater_core::error::Cause;
use highwater_core::{Error, Relation};
use rusqlite::{Connection, ErrorCode, OptionalExtension};

/// The cause a result code implies: a busy or locked database is transient.
pub fn cause(e: &rusqlite::Error) -> Option<Cause> {
    match e.sqlite_error_code()? {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Some(Cause::Transient),
        ErrorCode::PermissionDenied | ErrorCode::ReadOnly => Some(Cause::Permission),
        _ => None,
    }
}

/// A source error at `place`: `source sqlite: place: message`.
pub fn source_at(place: impl std::fmt::Display, e: rusqlite::Error) -> Error {
    Error::source("sqlite", format!("{place}: {e}")).with_cause(cause(&e))
}

/// Whether a table or view `rel` names exists (in the given schema, or in
/// any attached one); `None` for a query, or when the schema cannot be read.
pub fn table_exists(conn: &Connection, rel: &Relation) -> Option<bool> {
    let Relation::Table { schema, name } = rel else {
        return None;
    };
    conn.query_row(
        "SELECT 1 FROM pragma_table_list WHERE name = ?1 AND (?2 IS NULL OR schema = ?2)",
        rusqlite::params![name, schema],
        |_| Ok(()),
    )
    .optional()
    .ok()
    .map(|found| found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tables_are_found_by_schema_not_message() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (id int); CREATE VIEW v AS SELECT * FROM t;")
            .unwrap();
        let table = |s: Option<&str>, n: &str| Relation::Table {
            schema: s.map(str::to_string),
            name: n.into(),
        };
        assert_eq!(table_exists(&c, &table(None, "t")), Some(true));
        assert_eq!(table_exists(&c, &table(None, "v")), Some(true));
        assert_eq!(table_exists(&c, &table(Some("main"), "t")), Some(true));
        assert_eq!(table_exists(&c, &table(None, "nope")), Some(false));
        assert_eq!(table_exists(&c, &table(Some("other"), "t")), Some(false));
        assert_eq!(table_exists(&c, &Relation::Query("select 1".into())), None);
    }

    #[test]
    fn busy_is_transient() {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("database is locked".into()),
        );
        assert_eq!(cause(&e), Some(Cause::Transient));
        assert!(source_at("t", e).is_transient());
    }
}
