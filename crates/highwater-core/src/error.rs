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
            Error::Context { source, .. } => source.kind(),
        }
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

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
