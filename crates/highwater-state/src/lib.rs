//! State stores: where positions, write-ahead attempts and the run history
//! live.
//!
//! [`SqliteState`] is the default (`.highwater/state.db` beside the config).
//! Stream locks are OS file locks on `<state dir>/locks/<stream>.lock`, so a
//! process killed with `kill -9` releases them, and a second process never
//! settles an attempt that a live process is still working on.
//!
//! Every change of state is one SQLite transaction; `commit_attempt` is a
//! compare-and-swap on the position the attempt started from.

mod sqlite;

pub use sqlite::SqliteState;
