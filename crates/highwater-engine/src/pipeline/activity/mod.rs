//! One module per activity type. Each takes the activity's evaluated
//! `typeProperties` and returns what it produced ([`super::Done`]).

pub(crate) mod copy;
pub(crate) mod copy_files;
pub(crate) mod delete;
pub(crate) mod execute_pipeline;
pub(crate) mod fail;
pub(crate) mod for_each;
pub(crate) mod get_metadata;
pub(crate) mod if_condition;
pub(crate) mod lookup;
pub(crate) mod stored_procedure;
pub(crate) mod validation;
pub(crate) mod variables;
pub(crate) mod wait;
