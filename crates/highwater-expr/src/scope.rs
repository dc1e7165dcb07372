//! Where references get their values: the [`Scope`] trait the pipeline engine
//! implements, [`EmptyScope`] for values that may not reference anything, and
//! [`ContextScope`], built from the JSON context file of `highwater expr`.
//!
//! The evaluator calls a scope method each time the expression evaluates the
//! matching reference (`pipeline()`, `activity('x')`, `item()`, …) and then
//! walks properties on the returned value itself, ignoring case; so a scope
//! returns whole objects and never interprets property paths.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::EvalError;
use crate::value::get_ci;

/// What an expression can reference.
///
/// Contract for implementors:
/// - Each method is called once per evaluation of the reference; results are
///   not cached by the evaluator, so they may change between evaluations (a
///   variable set by a previous activity) but must not change within one.
/// - Names (`activity`, `variable`) arrive exactly as written in the
///   expression; look them up ignoring case, as Data Factory does (see
///   [`crate::value::get_ci`]).
/// - Return [`EvalError::not_found`] for a name that does not exist and
///   [`EvalError::context`] for a reference that makes no sense here
///   (`item()` outside a ForEach); the evaluator adds the location and the
///   error fails the evaluation.
/// - Methods take `&self` and may be called from one thread at a time per
///   evaluation; a scope shared across threads needs `Sync` itself.
///
/// Every method has a default: a scope implements only what it has.
pub trait Scope {
    /// The object `pipeline()` returns: `RunId`, `Pipeline`, `DataFactory`,
    /// `TriggerTime`, `TriggerName`, `TriggerType`, `TriggerId`, `GroupId`,
    /// `TriggeredByPipelineName`, `parameters`, `globalParameters` and
    /// `libraryVariables` (an empty object unless given).
    fn pipeline(&self) -> Result<Value, EvalError> {
        Err(EvalError::context("pipeline() is not available here"))
    }

    /// The object `activity(name)` returns; its `output` (and `error`, `status`)
    /// are read by property access. Only activities that already ran exist.
    fn activity(&self, name: &str) -> Result<Value, EvalError> {
        Err(EvalError::context(format!(
            "activity('{name}') is not available here"
        )))
    }

    /// The current ForEach item.
    fn item(&self) -> Result<Value, EvalError> {
        Err(EvalError::context(
            "item() is only available inside a ForEach activity",
        ))
    }

    /// The current value of pipeline variable `name`.
    fn variable(&self, name: &str) -> Result<Value, EvalError> {
        Err(EvalError::context(format!(
            "variables('{name}') is not available here"
        )))
    }

    /// The object `dataset()` returns (the dataset's parameters).
    fn dataset(&self) -> Result<Value, EvalError> {
        Err(EvalError::context(
            "dataset() is only available inside a dataset definition",
        ))
    }

    /// The object `linkedService()` returns (the linked service's parameters).
    fn linked_service(&self) -> Result<Value, EvalError> {
        Err(EvalError::context(
            "linkedService() is only available inside a linked service definition",
        ))
    }

    /// The object `trigger()` returns: `startTime`, `scheduledTime`,
    /// `outputs.windowStartTime`, `outputs.windowEndTime`, ….
    fn trigger(&self) -> Result<Value, EvalError> {
        Err(EvalError::context("trigger() is not available here"))
    }

    /// The current time for `utcNow()`, `getFutureTime()`, `getPastTime()`.
    /// Override to pin time in tests.
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// A new random GUID for `guid()`, as its 128 bits. Override in tests.
    fn new_guid(&self) -> u128 {
        uuid::Uuid::new_v4().as_u128()
    }

    /// A uniformly random integer in `min..max` (or `min` when they are
    /// equal), for `rand()`. Callers guarantee `min <= max`.
    fn random(&self, min: i64, max: i64) -> i64 {
        let span = max.abs_diff(min);
        if span == 0 {
            return min;
        }
        let r = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u64;
        min.wrapping_add_unsigned(r)
    }
}

/// A scope with no references at all; `utcNow()` and `guid()` still work.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyScope;

impl Scope for EmptyScope {}

/// A [`Scope`] built from the JSON context object of `highwater expr
/// --context FILE.json` (see [`ContextScope::from_json`] for the keys).
#[derive(Debug, Clone, Default)]
pub struct ContextScope {
    pipeline: Map<String, Value>,
    variables: Map<String, Value>,
    activities: Map<String, Value>,
    item: Option<Value>,
    trigger: Option<Value>,
    dataset: Option<Value>,
    linked_service: Option<Value>,
    now: Option<DateTime<Utc>>,
}

const CONTEXT_KEYS: &[&str] = &[
    "parameters",
    "global_parameters",
    "library_variables",
    "variables",
    "activities",
    "activity_errors",
    "item",
    "run_id",
    "pipeline_name",
    "system",
    "trigger",
    "dataset",
    "linked_service",
    "now",
];

impl ContextScope {
    /// Builds a scope from the context object. Every key is optional:
    ///
    /// ```json
    /// {
    ///   "parameters": {"tableList": ["a", "b"]},
    ///   "global_parameters": {"env": "dev"},
    ///   "library_variables": {"region": "eu"},
    ///   "variables": {"counter": 1},
    ///   "activities": {"Lookup1": {"firstRow": {"Col": 42}}},
    ///   "activity_errors": {"Copy1": {"message": "boom"}},
    ///   "item": {"name": "orders"},
    ///   "run_id": "0b5e7d4a-…",
    ///   "pipeline_name": "load",
    ///   "system": {"DataFactory": "adf-dev", "TriggerName": "nightly"},
    ///   "trigger": {"startTime": "2024-01-01T00:00:00Z"},
    ///   "dataset": {"folder": "raw"},
    ///   "linked_service": {"host": "db"},
    ///   "now": "2024-01-15T10:20:30Z"
    /// }
    /// ```
    ///
    /// `activities` maps a name to that activity's `output`;
    /// `activity_errors` to its `error`. `system` supplies the other
    /// `pipeline()` properties. Defaults: `RunId` is a fresh GUID,
    /// `TriggerTime` is `now`, `TriggerType` is `Manual`. `now` pins
    /// `utcNow()`, `getFutureTime()` and `getPastTime()`.
    ///
    /// Unknown keys and mistyped values are errors (of kind
    /// [`crate::EvalErrorKind::Context`]) naming the key.
    pub fn from_json(context: &Value) -> Result<ContextScope, EvalError> {
        let obj = context.as_object().ok_or_else(|| {
            EvalError::context(format!(
                "the context must be a JSON object, got {}",
                crate::value::type_name(context)
            ))
        })?;
        for key in obj.keys() {
            if !CONTEXT_KEYS.contains(&key.as_str()) {
                return Err(EvalError::context(format!(
                    "unknown context key '{key}'; the keys are {}",
                    CONTEXT_KEYS.join(", ")
                )));
            }
        }
        let object = |key: &str| -> Result<Map<String, Value>, EvalError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(Map::new()),
                Some(Value::Object(m)) => Ok(m.clone()),
                Some(other) => Err(EvalError::context(format!(
                    "context key '{key}' must be an object, got {}",
                    crate::value::type_name(other)
                ))),
            }
        };
        let string = |key: &str| -> Result<Option<String>, EvalError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(EvalError::context(format!(
                    "context key '{key}' must be a string, got {}",
                    crate::value::type_name(other)
                ))),
            }
        };

        let now = match string("now")? {
            None => None,
            Some(s) => {
                let ts = crate::datetime::parse_timestamp(&s).ok_or_else(|| {
                    EvalError::context(format!(
                        "context key 'now' must be an ISO 8601 timestamp, got '{s}'"
                    ))
                })?;
                Some(ts.to_utc())
            }
        };

        let mut pipeline = Map::new();
        let run_id =
            string("run_id")?.unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string());
        pipeline.insert("RunId".into(), Value::String(run_id.clone()));
        if let Some(name) = string("pipeline_name")? {
            pipeline.insert("Pipeline".into(), Value::String(name));
        }
        let trigger_time = now.unwrap_or_else(Utc::now);
        pipeline.insert(
            "TriggerTime".into(),
            Value::String(crate::datetime::Timestamp::utc(trigger_time.naive_utc()).to_iso()),
        );
        pipeline.insert("TriggerType".into(), Value::String("Manual".into()));
        pipeline.insert("TriggerName".into(), Value::String("Manual".into()));
        pipeline.insert("TriggerId".into(), Value::String(run_id.clone()));
        pipeline.insert("GroupId".into(), Value::String(run_id));
        for (k, v) in object("system")? {
            pipeline.insert(k, v);
        }
        pipeline.insert("parameters".into(), Value::Object(object("parameters")?));
        pipeline.insert(
            "globalParameters".into(),
            Value::Object(object("global_parameters")?),
        );
        pipeline.insert(
            "libraryVariables".into(),
            Value::Object(object("library_variables")?),
        );

        let mut activities = Map::new();
        for (name, output) in object("activities")? {
            let mut a = Map::new();
            a.insert("output".into(), output);
            a.insert("status".into(), Value::String("Succeeded".into()));
            activities.insert(name, Value::Object(a));
        }
        for (name, error) in object("activity_errors")? {
            let entry = activities
                .entry(name)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(a) = entry {
                a.insert("error".into(), error);
                a.insert("status".into(), Value::String("Failed".into()));
            }
        }

        let present = |key: &str| obj.get(key).filter(|v| !v.is_null()).cloned();
        Ok(ContextScope {
            pipeline,
            variables: object("variables")?,
            activities,
            item: present("item"),
            trigger: present("trigger"),
            dataset: present("dataset"),
            linked_service: present("linked_service"),
            now,
        })
    }
}

fn names(map: &Map<String, Value>) -> String {
    crate::value::key_list(map)
}

impl Scope for ContextScope {
    fn pipeline(&self) -> Result<Value, EvalError> {
        Ok(Value::Object(self.pipeline.clone()))
    }

    fn activity(&self, name: &str) -> Result<Value, EvalError> {
        get_ci(&self.activities, name).cloned().ok_or_else(|| {
            EvalError::not_found(format!(
                "activity '{name}' has not run (activities in the context: {})",
                names(&self.activities)
            ))
        })
    }

    fn item(&self) -> Result<Value, EvalError> {
        self.item.clone().ok_or_else(|| {
            EvalError::context(
                "item() is only available inside a ForEach (the context has no 'item')",
            )
        })
    }

    fn variable(&self, name: &str) -> Result<Value, EvalError> {
        get_ci(&self.variables, name).cloned().ok_or_else(|| {
            EvalError::not_found(format!(
                "variable '{name}' is not defined (variables: {})",
                names(&self.variables)
            ))
        })
    }

    fn dataset(&self) -> Result<Value, EvalError> {
        self.dataset.clone().ok_or_else(|| {
            EvalError::context("dataset() is not available (the context has no 'dataset')")
        })
    }

    fn linked_service(&self) -> Result<Value, EvalError> {
        self.linked_service.clone().ok_or_else(|| {
            EvalError::context(
                "linkedService() is not available (the context has no 'linked_service')",
            )
        })
    }

    fn trigger(&self) -> Result<Value, EvalError> {
        self.trigger.clone().ok_or_else(|| {
            EvalError::context("trigger() is not available (the context has no 'trigger')")
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }
}
