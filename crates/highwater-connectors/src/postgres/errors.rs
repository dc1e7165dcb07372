//! PostgreSQL errors classified by SQLSTATE and `io::ErrorKind`, never by
//! message text (servers translate messages with `lc_messages`).

use std::error::Error as _;

use highwater_core::Error;
use highwater_core::error::{Cause, find_io, io_cause};
use tokio_postgres::error::SqlState;

/// The cause a SQLSTATE implies.
pub fn sqlstate_cause(code: &SqlState) -> Option<Cause> {
    let c = code.code();
    if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::IDLE_SESSION_TIMEOUT
        || c.starts_with("08")
    {
        Some(Cause::Transient)
    } else if *code == SqlState::QUERY_CANCELED {
        Some(Cause::Timeout)
    } else if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME {
        Some(Cause::MissingRelation)
    } else if *code == SqlState::UNDEFINED_COLUMN {
        Some(Cause::MissingColumn)
    } else if c.starts_with("28") || *code == SqlState::INVALID_CATALOG_NAME {
        Some(Cause::Login)
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        Some(Cause::Permission)
    } else {
        None
    }
}

/// The cause of a driver error: its SQLSTATE, a closed connection, or the
/// I/O error underneath.
pub fn cause(e: &tokio_postgres::Error) -> Option<Cause> {
    if let Some(code) = e.code() {
        return sqlstate_cause(code);
    }
    if let Some(io) = find_io(e) {
        return io_cause(io.kind());
    }
    e.is_closed().then_some(Cause::Transient)
}

/// What a user can act on: the server's message (with detail and hint, and
/// a note on `statement_timeout` for a cancelled statement), or the
/// driver's message with its cause chain (`error connecting to server:
/// Connection refused`).
pub fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = db.message().to_string();
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!(" (hint: {h})"));
            }
            if *db.code() == SqlState::QUERY_CANCELED {
                m.push_str(" [SQLSTATE 57014: the statement ran longer than the connection's statement_timeout, or was cancelled]");
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut cur = e.source();
            while let Some(s) = cur {
                let s_text = s.to_string();
                if !m.contains(&s_text) {
                    m.push_str(&format!(": {s_text}"));
                }
                cur = s.source();
            }
            m
        }
    }
}

/// A source error at `place` (a relation, a step): `source postgres: place: message`.
pub fn source_at(place: impl std::fmt::Display, e: tokio_postgres::Error) -> Error {
    Error::source("postgres", format!("{place}: {}", message(&e))).with_cause(cause(&e))
}

/// A source error without a place.
pub fn source(e: tokio_postgres::Error) -> Error {
    Error::source("postgres", message(&e)).with_cause(cause(&e))
}

/// A target error: `target <target>: message`.
pub fn sink(target: impl std::fmt::Display, e: tokio_postgres::Error) -> Error {
    Error::sink(target, message(&e)).with_cause(cause(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_uses_sqlstate_codes() {
        let cases = [
            ("40001", Some(Cause::Transient)),
            ("40P01", Some(Cause::Transient)),
            ("53300", Some(Cause::Transient)),
            ("55P03", Some(Cause::Transient)),
            ("57P01", Some(Cause::Transient)),
            ("08006", Some(Cause::Transient)),
            ("57014", Some(Cause::Timeout)),
            ("42P01", Some(Cause::MissingRelation)),
            ("3F000", Some(Cause::MissingRelation)),
            ("42703", Some(Cause::MissingColumn)),
            ("28P01", Some(Cause::Login)),
            ("3D000", Some(Cause::Login)),
            ("42501", Some(Cause::Permission)),
            ("22003", None),
            ("42601", None),
        ];
        for (code, want) in cases {
            assert_eq!(sqlstate_cause(&SqlState::from_code(code)), want, "{code}");
        }
    }
}
