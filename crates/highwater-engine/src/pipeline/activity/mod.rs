//! One module per activity type. Each takes the activity's evaluated
//! `typeProperties` and returns what it produced ([`super::Done`]).

pub(crate) mod copy;
pub(crate) mod copy_files;
pub(crate) mod delete;
pub(crate) mod execute_pipeline;
pub(crate) mod fail;
pub(crate) mod filter;
pub(crate) mod for_each;
pub(crate) mod get_metadata;
pub(crate) mod if_condition;
pub(crate) mod lookup;
pub(crate) mod script;
pub(crate) mod stored_procedure;
pub(crate) mod switch;
pub(crate) mod until;
pub(crate) mod validation;
pub(crate) mod variables;
pub(crate) mod wait;
pub(crate) mod web;

use serde_json::Value;

use super::{Activity, ActivityKind};

/// The `typeProperties` evaluated before an activity runs: all but what the
/// activity evaluates itself (a Filter's `condition` for each item, an
/// Until's `expression` after each iteration).
pub(crate) fn eager(a: &Activity) -> std::borrow::Cow<'_, Value> {
    let own = match a.kind {
        ActivityKind::Filter => "condition",
        ActivityKind::Until => "expression",
        _ => return std::borrow::Cow::Borrowed(&a.type_properties),
    };
    let mut tp = a.type_properties.clone();
    if let Some(m) = tp.as_object_mut() {
        m.remove(own);
    }
    std::borrow::Cow::Owned(tp)
}
