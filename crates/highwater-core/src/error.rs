//! One error type for the whole pipeline.
//!
//! Variants carry what a user needs to act: the stream, the column, the
//! backend, the path. [`Error::kind`] decides the exit code: configuration
//! problems exit 2, everything that fails during a run exits 1.

use std::fmt;

/// What went wrong, coarsely: decides the exit code and whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is wrong (unknown key, missing column, bad URL): exit 2.
    Config,
    /// A server could not be reached or refused the login: exit 1, retry may help.
    Connection,
    /// The source database failed or returned data we cannot convert: exit 1.
    Source,
    /// Writing the output failed: exit 1.
    Sink,
    /// The state store failed or another process holds the stream: exit 1.
    State,
    /// The data violates the stream's policy (e.g. NULL cursor values): exit 1.
    Data,
}

/// Why a backend operation failed, read from codes (SQLSTATE, server error
/// numbers, SQLite result codes, `io::ErrorKind`), never from message text,
/// which servers translate (`lc_messages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// Trying the same operation again can succeed: connection refused or
    /// reset, serialization failure, deadlock, lock wait timeout, too many
    /// connections, server starting up or shutting down.
    Transient,
    /// No answer within a configured limit (`connect_timeout`,
    /// `statement_timeout`, `read_timeout`). Not retried: the server did
    /// not refuse, it did not answer, and a retry would multiply the wait.
    Timeout,
    /// The table, view or schema named does not exist.
    MissingRelation,
    /// A column named does not exist.
    MissingColumn,
    /// The server refused the login: password, user, or database.
    Login,
    /// The role lacks a privilege.
    Permission,
}

/// The error of every highwater library crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Configuration error; `place` names file:line and/or stream.
    #[error("{place}: {message}")]
    Config { place: String, message: String },
    /// A server could not be reached; `target` is the redacted URL.
    #[error("cannot connect to {target}: {message}")]
    Connection { target: String, message: String },
    /// The source failed while describing or reading.
    #[error("source {backend}: {message}")]
    Source {
        backend: &'static str,
        message: String,
    },
    /// The sink failed while writing or publishing.
    #[error("target {target}: {message}")]
    Sink { target: String, message: String },
    /// The state store failed.
    #[error("state store: {message}")]
    State { message: String },
    /// Data violates the stream's policy.
    #[error("{message}")]
    Data { message: String },
    /// An error with its [`Cause`]; prints exactly like the inner error.
    #[error("{inner}")]
    Classified { cause: Cause, inner: Box<Error> },
    /// Context added around another error (for example the stream name).
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The coarse kind, looking through context layers.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::Connection { .. } => ErrorKind::Connection,
            Error::Source { .. } => ErrorKind::Source,
            Error::Sink { .. } => ErrorKind::Sink,
            Error::State { .. } => ErrorKind::State,
            Error::Data { .. } => ErrorKind::Data,
            Error::Classified { inner, .. } => inner.kind(),
            Error::Context { source, .. } => source.kind(),
        }
    }

    /// The cause, looking through context layers (`None`: not classified).
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Error::Classified { cause, .. } => Some(*cause),
            Error::Context { source, .. } => source.cause(),
            _ => None,
        }
    }

    /// Whether retrying the failed operation (connect, or the whole
    /// attempt) can succeed; see [`Cause::Transient`].
    pub fn is_transient(&self) -> bool {
        self.cause() == Some(Cause::Transient)
    }

    /// Attach a cause (a no-op for `None`), keeping the message.
    pub fn with_cause(self, cause: impl Into<Option<Cause>>) -> Self {
        match cause.into() {
            Some(cause) => Error::Classified {
                cause,
                inner: Box::new(self),
            },
            None => self,
        }
    }

    /// The table or view the configuration names does not exist.
    pub fn missing_relation(backend: &'static str, message: impl fmt::Display) -> Self {
        Error::source(backend, message).with_cause(Cause::MissingRelation)
    }

    /// Exit code per PRODUCT.md: 2 for configuration, 1 for a failed run.
    pub fn exit_code(&self) -> i32 {
        match self.kind() {
            ErrorKind::Config => 2,
            _ => 1,
        }
    }

    pub fn config(place: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Config {
            place: place.to_string(),
            message: message.to_string(),
        }
    }

    pub fn source(backend: &'static str, message: impl fmt::Display) -> Self {
        Error::Source {
            backend,
            message: message.to_string(),
        }
    }

    pub fn sink(target: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Sink {
            target: target.to_string(),
            message: message.to_string(),
        }
    }

    pub fn state(message: impl fmt::Display) -> Self {
        Error::State {
            message: message.to_string(),
        }
    }

    pub fn data(message: impl fmt::Display) -> Self {
        Error::Data {
            message: message.to_string(),
        }
    }

    /// Wrap with context such as `stream orders`.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Error::Context {
            context: context.to_string(),
            source: Box::new(self),
        }
    }
}

/// The cause an I/O error implies: refused, reset or aborted connections
/// are transient, a timed-out one is a timeout.
pub fn io_cause(kind: std::io::ErrorKind) -> Option<Cause> {
    use std::io::ErrorKind as K;
    match kind {
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::AddrNotAvailable
        | K::Interrupted => Some(Cause::Transient),
        K::TimedOut | K::WouldBlock => Some(Cause::Timeout),
        K::PermissionDenied => Some(Cause::Permission),
        _ => None,
    }
}

/// The first `io::Error` in a source chain, if any.
pub fn find_io<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cause_survives_context_and_keeps_the_message() {
        let e = Error::source("postgres", "deadlock detected")
            .with_cause(Cause::Transient)
            .context("stream orders");
        assert!(e.is_transient());
        assert_eq!(e.kind(), ErrorKind::Source);
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "stream orders: source postgres: deadlock detected"
        );
        let m = Error::missing_relation("mysql", "x");
        assert_eq!(m.cause(), Some(Cause::MissingRelation));
        assert!(!m.is_transient());
        assert_eq!(Error::source("sqlite", "x").with_cause(None).cause(), None);
    }

    #[test]
    fn io_kinds() {
        use std::io::ErrorKind as K;
        assert_eq!(io_cause(K::ConnectionRefused), Some(Cause::Transient));
        assert_eq!(io_cause(K::ConnectionReset), Some(Cause::Transient));
        assert_eq!(io_cause(K::TimedOut), Some(Cause::Timeout));
        assert_eq!(io_cause(K::NotFound), None);
        let io = std::io::Error::new(K::ConnectionReset, "x");
        let wrapped = Error::state("y");
        assert!(find_io(&wrapped).is_none());
        assert_eq!(find_io(&io).map(|e| e.kind()), Some(K::ConnectionReset));
    }
}
