//! Typed run events: they feed the progress bars and log lines of the CLI.

use highwater_core::StreamRun;

/// Something that happened during a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stream started.
    Started { stream: &'a str, mode: &'a str },
    /// Rows written so far by a stream (sent after each batch).
    Progress { stream: &'a str, rows: u64 },
    /// Something the user should know (settled attempts, held-back bounds, warnings).
    Note { stream: &'a str, message: &'a str },
    /// A stream finished, successfully or not.
    Finished { run: &'a StreamRun },
}

/// Receives events; called from several streams concurrently.
pub trait Observer: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// An observer that drops everything.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: Event<'_>) {}
}
