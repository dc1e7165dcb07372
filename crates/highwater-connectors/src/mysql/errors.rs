//! MariaDB/MySQL errors classified by server error number and
//! `io::ErrorKind`, never by message text (servers translate messages with
//! `lc_messages`).

use highwater_core::Error;
use highwater_core::error::{Cause, io_cause};
use mysql_async::{DriverError, IoError};

/// `ER_NO_SUCH_TABLE`.
pub const NO_SUCH_TABLE: u16 = 1146;
/// `ER_BAD_DB_ERROR` (unknown database).
pub const BAD_DB: u16 = 1049;
/// `ER_UNKNOWN_SYSTEM_VARIABLE`.
pub const UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;

/// The cause a server error number implies.
pub fn code_cause(code: u16) -> Option<Cause> {
    match code {
        // deadlock, lock wait timeout, too many connections (total, per
        // user), server shutdown, connection killed, network read/write
        1213 | 1205 | 1040 | 1203 | 1053 | 1927 | 1158..=1161 | 2006 | 2013 => {
            Some(Cause::Transient)
        }
        // MariaDB max_statement_time, MySQL max_execution_time
        1969 | 3024 => Some(Cause::Timeout),
        NO_SUCH_TABLE => Some(Cause::MissingRelation),
        1054 => Some(Cause::MissingColumn),
        // access denied (user, database, no password), unknown database
        1045 | 1044 | 1698 | BAD_DB => Some(Cause::Login),
        // table, column, specific privilege
        1142 | 1143 | 1227 => Some(Cause::Permission),
        _ => None,
    }
}

/// The cause of a driver error.
pub fn cause(e: &mysql_async::Error) -> Option<Cause> {
    match e {
        mysql_async::Error::Server(s) => code_cause(s.code),
        mysql_async::Error::Io(IoError::Io(io)) => io_cause(io.kind()),
        mysql_async::Error::Driver(DriverError::ConnectionClosed) => Some(Cause::Transient),
        _ => None,
    }
}

/// What a user can act on, without the driver's repeated prefixes
/// ("Input/output error: Input/output error: …").
pub fn message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => match code_cause(s.code) {
            Some(Cause::Timeout) => format!(
                "{} [error {}: the statement ran longer than the connection's statement_timeout]",
                s.message, s.code
            ),
            _ => s.message.clone(),
        },
        mysql_async::Error::Io(IoError::Io(io)) => io.to_string(),
        mysql_async::Error::Driver(d) => d.to_string(),
        other => other.to_string(),
    }
}

/// A source error: `source mysql: message`.
pub fn source(e: mysql_async::Error) -> Error {
    Error::source("mysql", message(&e)).with_cause(cause(&e))
}

/// A source error at `place`: `source mysql: place: message`.
pub fn source_at(place: impl std::fmt::Display, e: mysql_async::Error) -> Error {
    Error::source("mysql", format!("{place}: {}", message(&e))).with_cause(cause(&e))
}

/// A target error: `target <target>: message`.
pub fn sink(target: impl std::fmt::Display, e: mysql_async::Error) -> Error {
    Error::sink(target, message(&e)).with_cause(cause(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_uses_error_numbers() {
        for (code, want) in [
            (1213, Some(Cause::Transient)),
            (1205, Some(Cause::Transient)),
            (1040, Some(Cause::Transient)),
            (1969, Some(Cause::Timeout)),
            (1146, Some(Cause::MissingRelation)),
            (1054, Some(Cause::MissingColumn)),
            (1045, Some(Cause::Login)),
            (1142, Some(Cause::Permission)),
            (1064, None),
        ] {
            assert_eq!(code_cause(code), want, "{code}");
        }
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "Deadlock gefunden".into(),
                state: "40001".into(),
            })
        };
        assert!(source(server(1213)).is_transient());
        assert_eq!(
            source(server(1213)).to_string(),
            "source mysql: Deadlock gefunden"
        );
        let io = mysql_async::Error::Io(IoError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        )));
        assert_eq!(message(&io), "Connection refused");
        assert!(source(io).is_transient());
    }
}
