//! `highwater.yaml` → a validated [`Plan`], without I/O.
//!
//! Two steps, as in ripgrep's low-level/high-level args:
//!
//! 1. [`raw`]: deserialize the YAML into structs that mirror the file
//!    (`deny_unknown_fields`, every field documented), keeping the line of
//!    each stream and connection.
//! 2. [`plan`]: validate into a [`Plan`] — connections resolved and typed,
//!    `${ENV}` expanded, relative paths resolved against the config's folder,
//!    modes checked against their required fields — reporting **every**
//!    error at once, each naming `file:line` and the stream.
//!
//! The caller reads the file and the environment and passes them in, so
//! this crate stays pure and testable.

pub mod plan;
pub mod raw;
pub mod secret;

pub use highwater_core::ConnKind;
pub use plan::{
    ConnectionSpec, FileFormat, Mode, Plan, StateLocation, StreamPlan, Target, WindowPlan,
    WriteMode,
};
pub use secret::{SecretUrl, Secrets};

/// The template `highwater init` writes. A test checks that it parses.
pub const INIT_TEMPLATE: &str = include_str!("init_template.yaml");
