//! The tree-walking evaluator.
//!
//! It resolves references through the [`Scope`], handles the lazy functions
//! itself (`and`/`or` stop at the first deciding argument, `if` evaluates one
//! branch, `coalesce` stops at the first non-null), evaluates the arguments
//! of every other function left to right and calls the library in
//! [`crate::functions`]. Property access ignores case; `?.` and `?[`
//! short-circuit the rest of the chain to null when the target is null or
//! the property/index is missing, as in Data Factory.

use serde_json::Value;

use crate::ast::{Node, NodeKind, Segment, Span, Template};
use crate::error::{EvalError, EvalErrorKind};
use crate::functions::{self, Args};
use crate::scope::Scope;
use crate::value::{get_ci, key_list, to_interpolated_string, type_name};

/// Evaluates a whole template.
pub(crate) fn eval_template(t: &Template, scope: &dyn Scope) -> Result<Value, EvalError> {
    match t {
        Template::Literal(s) => Ok(Value::String(s.clone())),
        Template::Expression(node) => eval(node, scope),
        Template::Interpolation(segments) => {
            let mut out = String::new();
            for seg in segments {
                match seg {
                    Segment::Text(s) => out.push_str(s),
                    Segment::Expr(node) => {
                        out.push_str(&to_interpolated_string(&eval(node, scope)?))
                    }
                }
            }
            Ok(Value::String(out))
        }
    }
}

/// Evaluates one expression node.
pub(crate) fn eval(node: &Node, scope: &dyn Scope) -> Result<Value, EvalError> {
    eval_chain(node, scope).map(|(v, _)| v)
}

/// The value, and whether a `?.`/`?[` cut the chain short.
fn eval_chain(node: &Node, scope: &dyn Scope) -> Result<(Value, bool), EvalError> {
    match &node.kind {
        NodeKind::Null => Ok((Value::Null, false)),
        NodeKind::Bool(b) => Ok((Value::Bool(*b), false)),
        NodeKind::Int(i) => Ok((Value::from(*i), false)),
        NodeKind::Float(x) => Ok((crate::value::float_value(*x).unwrap_or(Value::Null), false)),
        NodeKind::Str(s) => Ok((Value::String(s.clone()), false)),
        NodeKind::Call { name, args } => {
            call(name, node.name_span().unwrap_or(node.span), args, scope)
                .map(|v| (v, false))
                .map_err(|e| e.at(node.span))
        }
        NodeKind::Property { target, name, safe } => {
            let (t, cut) = eval_chain(target, scope)?;
            if cut {
                return Ok((Value::Null, true));
            }
            select_property(t, name, *safe, node.span)
        }
        NodeKind::Index {
            target,
            index,
            safe,
        } => {
            let (t, cut) = eval_chain(target, scope)?;
            if cut {
                return Ok((Value::Null, true));
            }
            let i = eval(index, scope)?;
            match i {
                Value::String(name) => select_property(t, &name, *safe, node.span),
                Value::Number(_) if crate::value::is_int(&i) => {
                    select_index(t, i.as_i64().unwrap_or(i64::MAX), *safe, node.span)
                }
                other => Err(EvalError::new(
                    EvalErrorKind::Type,
                    format!(
                        "an index must be an integer (for arrays) or a string (for objects), got {}",
                        crate::value::describe(&other)
                    ),
                )
                .at(index.span)),
            }
        }
    }
}

fn select_property(
    target: Value,
    name: &str,
    safe: bool,
    span: Span,
) -> Result<(Value, bool), EvalError> {
    match target {
        Value::Object(map) => match get_ci(&map, name) {
            Some(v) => Ok((v.clone(), false)),
            None if safe => Ok((Value::Null, true)),
            None => Err(EvalError::not_found(format!(
                "property '{name}' doesn't exist, available properties are {} (use '?.{name}' to get null instead)",
                key_list(&map)
            ))
            .at(span)),
        },
        Value::Null if safe => Ok((Value::Null, true)),
        Value::Null => Err(EvalError::new(
            EvalErrorKind::NotFound,
            format!("cannot select property '{name}' of null (use '?.{name}' to get null instead)"),
        )
        .at(span)),
        Value::Array(_) => Err(EvalError::new(
            EvalErrorKind::Type,
            format!("cannot select property '{name}' of an array; array elements are selected by an integer index, e.g. [0]"),
        )
        .at(span)),
        other => Err(EvalError::new(
            EvalErrorKind::Type,
            format!(
                "cannot select property '{name}' of a {} value",
                type_name(&other)
            ),
        )
        .at(span)),
    }
}

fn select_index(target: Value, i: i64, safe: bool, span: Span) -> Result<(Value, bool), EvalError> {
    match target {
        Value::Array(items) => {
            let found = usize::try_from(i).ok().and_then(|u| items.get(u));
            match found {
                Some(v) => Ok((v.clone(), false)),
                None if safe => Ok((Value::Null, true)),
                None => Err(EvalError::not_found(format!(
                    "array index {i} is outside the bounds of the array (length {}{})",
                    items.len(),
                    if items.is_empty() { "" } else { ", valid indexes start at 0" }
                ))
                .at(span)),
            }
        }
        Value::Null if safe => Ok((Value::Null, true)),
        Value::Null => Err(EvalError::new(
            EvalErrorKind::NotFound,
            format!("cannot index null with [{i}] (use '?[{i}]' to get null instead)"),
        )
        .at(span)),
        Value::Object(_) => Err(EvalError::new(
            EvalErrorKind::Type,
            format!("cannot index an object with the integer {i}; object properties are selected by name, e.g. ['name']"),
        )
        .at(span)),
        other => Err(EvalError::new(
            EvalErrorKind::Type,
            format!("cannot index a {} value with [{i}]", type_name(&other)),
        )
        .at(span)),
    }
}

fn arity_error(f: &functions::Function, got: usize) -> EvalError {
    let want = if f.min == f.max {
        match f.min {
            0 => "no arguments".to_string(),
            1 => "1 argument".to_string(),
            n => format!("{n} arguments"),
        }
    } else if f.max == usize::MAX {
        format!(
            "at least {} argument{}",
            f.min,
            if f.min == 1 { "" } else { "s" }
        )
    } else {
        format!("{} to {} arguments", f.min, f.max)
    };
    EvalError::new(
        EvalErrorKind::Arity,
        format!("`{}` takes {want}, got {got}", f.name),
    )
}

fn call(name: &str, name_span: Span, args: &[Node], scope: &dyn Scope) -> Result<Value, EvalError> {
    let Some(f) = functions::lookup(name) else {
        let hint = functions::suggest(name)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(EvalError::new(
            EvalErrorKind::UnknownFunction,
            format!("unknown function `{name}`{hint}"),
        )
        .at(name_span));
    };
    if args.len() < f.min || args.len() > f.max {
        return Err(arity_error(f, args.len()).in_function(f.name));
    }
    let result = match f.imp {
        Some(imp) => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(eval(a, scope)?);
            }
            imp(&Args {
                name: f.name,
                values,
                scope,
            })
        }
        None => special(f.name, args, scope),
    };
    result.map_err(|e| e.in_function(f.name))
}

fn string_arg(fname: &str, node: &Node, scope: &dyn Scope) -> Result<String, EvalError> {
    match eval(node, scope)? {
        Value::String(s) => Ok(s),
        other => Err(EvalError::new(
            EvalErrorKind::Type,
            format!(
                "`{fname}` expects a string name, got {} as argument 1",
                crate::value::describe(&other)
            ),
        )),
    }
}

/// References and the lazy functions.
fn special(name: &str, args: &[Node], scope: &dyn Scope) -> Result<Value, EvalError> {
    match name {
        "pipeline" => scope.pipeline(),
        "activity" => scope.activity(&string_arg(name, &args[0], scope)?),
        "item" => scope.item(),
        "variables" => scope.variable(&string_arg(name, &args[0], scope)?),
        "dataset" => scope.dataset(),
        "linkedService" => scope.linked_service(),
        "trigger" => scope.trigger(),
        "and" | "or" => {
            let decisive = name == "or";
            for (i, a) in args.iter().enumerate() {
                match eval(a, scope)? {
                    Value::Bool(b) if b == decisive => return Ok(Value::Bool(decisive)),
                    Value::Bool(_) => {}
                    other => {
                        return Err(EvalError::new(
                            EvalErrorKind::Type,
                            format!(
                                "`{name}` expects booleans, got {} as argument {}",
                                crate::value::describe(&other),
                                i + 1
                            ),
                        ));
                    }
                }
            }
            Ok(Value::Bool(!decisive))
        }
        "if" => match eval(&args[0], scope)? {
            Value::Bool(true) => eval(&args[1], scope),
            Value::Bool(false) => eval(&args[2], scope),
            other => Err(EvalError::new(
                EvalErrorKind::Type,
                format!(
                    "`if` expects a boolean, got {} as argument 1",
                    crate::value::describe(&other)
                ),
            )),
        },
        "coalesce" => {
            for a in args {
                let v = eval(a, scope)?;
                if !v.is_null() {
                    return Ok(v);
                }
            }
            Ok(Value::Null)
        }
        other => Err(EvalError::new(
            EvalErrorKind::UnknownFunction,
            format!("unknown function `{other}`"),
        )),
    }
}
