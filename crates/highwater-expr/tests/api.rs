//! The public API: parsing, error messages, scopes, interpolation.
//! Expected values of evaluation were checked against the reference
//! evaluator, `data-factory-testing-framework` 1.4.4 (see `reference.rs`).

use chrono::{DateTime, TimeZone, Utc};
use highwater_expr::{
    ContextScope, EmptyScope, Error, EvalErrorKind, Expr, NodeKind, Scope, Template, evaluate,
    to_interpolated_string,
};
use serde_json::{Value, json};

/// A scope with a pinned clock, GUID and random numbers.
struct Fixed;

impl Scope for Fixed {
    fn now(&self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 15, 10, 20, 30).unwrap()
    }
    fn new_guid(&self) -> u128 {
        0x0123_4567_89ab_cdef_0123_4567_89ab_cdef
    }
    fn random(&self, min: i64, _max: i64) -> i64 {
        min
    }
}

fn eval(text: &str) -> Value {
    evaluate(text, &Fixed).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn eval_err(text: &str) -> Error {
    match evaluate(text, &Fixed) {
        Ok(v) => panic!("{text}: expected an error, got {v}"),
        Err(e) => e,
    }
}

fn kind(text: &str) -> EvalErrorKind {
    match eval_err(text) {
        Error::Eval { error, .. } => error.kind(),
        other => panic!("{text}: expected an evaluation error, got {other}"),
    }
}

#[test]
fn the_three_shapes_of_a_value() {
    assert!(matches!(
        Expr::parse("plain").unwrap().template(),
        Template::Literal(s) if s == "plain"
    ));
    assert!(matches!(
        Expr::parse("@add(1, 2)").unwrap().template(),
        Template::Expression(_)
    ));
    assert!(matches!(
        Expr::parse("a @{1} b").unwrap().template(),
        Template::Interpolation(_)
    ));
    assert_eq!(eval("@add(1, 2)"), json!(3));
    assert_eq!(eval("@@foo"), json!("@foo"));
    assert_eq!(eval("@@{x} @{'y'}"), json!("@{x} @{'y'}"));
    assert_eq!(eval("a @@{x} b"), json!("a @{x} b"));
    assert_eq!(eval("a@@b"), json!("a@@b"));
    assert_eq!(eval("@"), json!("@"));
    assert_eq!(eval("@@"), json!("@"));
    assert_eq!(eval("abc@"), json!("abc@"));
    assert_eq!(eval(""), json!(""));
    assert_eq!(eval("@{'x'}@{'y'}"), json!("xy"));
}

#[test]
fn interpolation_stringifies_like_data_factory() {
    assert_eq!(
        eval("a @{true} b @{null} c @{createArray(1,2)} d @{json('{\"a\":1}')} e @{3.0} f @{2.50}"),
        json!("a True b  c [1,2] d {\"a\":1} e 3 f 2.5")
    );
    assert_eq!(eval("@{false}"), json!("False"));
    assert_eq!(eval("@{1e17}"), json!("1E+17"));
    assert_eq!(to_interpolated_string(&json!(null)), "");
    assert_eq!(to_interpolated_string(&json!([1.0, "é"])), "[1.0,\"é\"]");
    assert_eq!(to_interpolated_string(&json!(-7)), "-7");
}

#[test]
fn parse_errors_point_at_the_character() {
    let e = Expr::parse("@concat('a', 'b'").unwrap_err();
    assert_eq!((e.line(), e.column()), (1, 2));
    assert_eq!(
        e.to_string(),
        "syntax error at line 1, column 2: '(' after 'concat' is not closed by ')'\n  @concat('a', 'b'\n   ^"
    );

    // Line and column inside a multi-line JSON value.
    let e = Expr::parse("@concat(\n  'a',\n  b c)").unwrap_err();
    assert_eq!((e.line(), e.column()), (3, 3));
    assert!(e.to_string().ends_with("\n    b c)\n    ^"), "{e}");

    let e = Expr::parse("@concat('it''s)").unwrap_err();
    assert_eq!(e.column(), 9);
    assert!(e.message().contains("not closed by a quote"));

    let e = Expr::parse("x @{concat('a')").unwrap_err();
    assert_eq!(e.column(), 3);
    assert!(e.message().contains("'@{' is not closed by '}'"));

    let e = Expr::parse("a @{} b").unwrap_err();
    assert_eq!(e.column(), 5);

    for bad in [
        "@0x10",
        "@9223372036854775808",
        "@add(1 2)",
        "@foo",
        "@ ",
        "@add(1,)",
        "@a.",
        "@x()[1",
        "@'abc' 'd'",
        "@1e999",
        "@a(#)",
        "@{x} @",
        "@{'a'",
    ] {
        assert!(Expr::parse(bad).is_err(), "{bad} should not parse");
    }

    // Deep nesting is an error, not a stack overflow.
    let deep = format!("@{}1{}", "array(".repeat(500), ")".repeat(500));
    assert!(
        Expr::parse(&deep)
            .unwrap_err()
            .message()
            .contains("nests deeper")
    );
}

#[test]
fn evaluation_errors_name_the_function_and_the_argument() {
    let e = eval_err("@add(1, 'x')");
    assert_eq!(
        e.to_string(),
        "`add` expects numbers, got string 'x' as argument 2\n at line 1, column 2:\n  @add(1, 'x')\n   ^"
    );
    let Error::Eval { error, .. } = &e else {
        panic!("not an eval error")
    };
    assert_eq!(error.function(), Some("add"));
    assert_eq!(error.kind(), EvalErrorKind::Type);

    // Names ignore case; a typo gets a suggestion.
    assert_eq!(eval("@FORMATdatetime('2024-01-01', 'yyyy')"), json!("2024"));
    assert!(
        eval_err("@formatDateTme('2024-01-01')")
            .to_string()
            .starts_with("unknown function `formatDateTme`; did you mean `formatDateTime`?")
    );
    assert!(
        eval_err("@add(1)")
            .to_string()
            .starts_with("`add` takes 2 arguments, got 1")
    );
    assert!(
        eval_err("@json('{\"a\":1}').b")
            .to_string()
            .starts_with("property 'b' doesn't exist, available properties are 'a'")
    );
    assert!(
        eval_err("@concat('a', toUpper(null))")
            .to_string()
            .contains("`toUpper` expects a string, got null as argument 1\n at line 1, column 14")
    );
    assert_eq!(kind("@div(1, 0)"), EvalErrorKind::DivideByZero);
    assert_eq!(kind("@div(1.5, 0.0)"), EvalErrorKind::DivideByZero);
    assert_eq!(kind("@mod(1, 0)"), EvalErrorKind::DivideByZero);
    assert_eq!(
        kind("@add(9223372036854775807, 1)"),
        EvalErrorKind::Overflow
    );
    assert_eq!(
        kind("@mul(-9223372036854775808, -1)"),
        EvalErrorKind::Overflow
    );
    assert_eq!(
        kind("@div(-9223372036854775808, -1)"),
        EvalErrorKind::Overflow
    );
    assert_eq!(kind("@mul(1e308, 10)"), EvalErrorKind::Overflow);
    assert_eq!(kind("@addDays('9999-12-31', 1)"), EvalErrorKind::Overflow);
    assert_eq!(kind("@nosuch()"), EvalErrorKind::UnknownFunction);
    assert_eq!(kind("@if(1, 2, 3)"), EvalErrorKind::Type);
    assert_eq!(kind("@createArray(1)[2]"), EvalErrorKind::NotFound);
    assert_eq!(kind("@item()"), EvalErrorKind::Context);
    assert_eq!(kind("@substring('abc', 5)"), EvalErrorKind::Value);
    assert_eq!(
        kind("@convertFromUtc('2024-01-01T00:00:00Z', 'Mars Time')"),
        EvalErrorKind::Value
    );
}

#[test]
fn lazy_functions_short_circuit() {
    assert_eq!(eval("@if(true, 1, div(1, 0))"), json!(1));
    assert_eq!(eval("@if(false, div(1, 0), 'ok')"), json!("ok"));
    assert_eq!(eval("@and(false, div(1, 0))"), json!(false));
    assert_eq!(eval("@or(true, div(1, 0))"), json!(true));
    assert_eq!(eval("@coalesce(null, 'a', div(1, 0))"), json!("a"));
    assert_eq!(eval("@coalesce(null, null)"), json!(null));
    assert_eq!(kind("@and(true, 'x')"), EvalErrorKind::Type);
    assert_eq!(kind("@or(false, div(1, 0))"), EvalErrorKind::DivideByZero);
}

#[test]
fn safe_navigation_cuts_the_chain() {
    assert_eq!(eval("@json('{\"a\":null}').a?.b.c"), json!(null));
    assert_eq!(eval("@json('{\"a\":1}')?.b.c[0]"), json!(null));
    assert_eq!(eval("@createArray(1, 2)?[5]"), json!(null));
    assert_eq!(
        kind("@json('{\"a\":{\"b\":null}}')?.a.b.c"),
        EvalErrorKind::NotFound
    );
    assert_eq!(eval("@json('{\"A b\":[1]}')['a B'][0]"), json!(1));
    assert_eq!(eval("@createArray(10, 20)[json('1')]"), json!(20));
    assert_eq!(kind("@createArray(1)['0']"), EvalErrorKind::Type);
    assert_eq!(kind("@json('{\"a\":1}')[0]"), EvalErrorKind::Type);
    assert_eq!(kind("@createArray(1)[1.0]"), EvalErrorKind::Type);
    assert_eq!(kind("@'abc'.length"), EvalErrorKind::Type);
}

#[test]
fn injected_clock_guid_and_random() {
    assert_eq!(eval("@utcNow()"), json!("2024-01-15T10:20:30.0000000Z"));
    assert_eq!(eval("@utcNow('yyyy-MM-dd')"), json!("2024-01-15"));
    assert_eq!(
        eval("@getFutureTime(1, 'Day')"),
        json!("2024-01-16T10:20:30.0000000Z")
    );
    assert_eq!(
        eval("@getPastTime(1, 'Month', 'yyyy-MM')"),
        json!("2023-12")
    );
    assert_eq!(
        eval("@guid()"),
        json!("01234567-89ab-cdef-0123-456789abcdef")
    );
    assert_eq!(
        eval("@guid('N')"),
        json!("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        eval("@guid('B')"),
        json!("{01234567-89ab-cdef-0123-456789abcdef}")
    );
    assert_eq!(
        eval("@guid('P')"),
        json!("(01234567-89ab-cdef-0123-456789abcdef)")
    );
    assert_eq!(
        eval("@guid('X')"),
        json!("{0x01234567,0x89ab,0xcdef,{0x01,0x23,0x45,0x67,0x89,0xab,0xcd,0xef}}")
    );
    assert_eq!(kind("@guid('n')"), EvalErrorKind::Value);
    assert_eq!(eval("@rand(5, 10)"), json!(5));

    // The default scope: real randomness within bounds.
    for _ in 0..50 {
        let v = evaluate("@rand(-3, 3)", &EmptyScope).unwrap();
        let n = v.as_i64().unwrap();
        assert!((-3..3).contains(&n), "{n}");
    }
    assert_eq!(evaluate("@rand(7, 7)", &EmptyScope).unwrap(), json!(7));
    let g = evaluate("@guid()", &EmptyScope).unwrap();
    assert_eq!(g.as_str().unwrap().len(), 36);
}

#[test]
fn context_scope_reads_every_key() {
    let ctx = json!({
        "parameters": {"tableList": ["orders", "customers"], "Schema": "dbo"},
        "global_parameters": {"env": "dev"},
        "variables": {"Counter": 3},
        "activities": {"Lookup1": {"firstRow": {"Col": 42}, "count": 1}},
        "activity_errors": {"Copy1": {"message": "boom", "errorCode": "2200"}},
        "item": {"name": "orders", "watermark": "2024-01-01T00:00:00Z"},
        "run_id": "run-1",
        "pipeline_name": "load",
        "system": {"DataFactory": "adf-dev", "TriggerName": "nightly", "TriggerType": "ScheduleTrigger",
                   "TriggerTime": "2024-01-15T00:00:00Z", "TriggeredByPipelineName": "parent"},
        "trigger": {"startTime": "2024-01-15T00:00:00Z", "scheduledTime": "2024-01-15T00:00:00Z",
                    "outputs": {"windowStartTime": "2024-01-14T00:00:00Z", "windowEndTime": "2024-01-15T00:00:00Z"}},
        "dataset": {"folder": "raw"},
        "linked_service": {"host": "db"},
        "now": "2024-01-15T10:20:30Z"
    });
    let scope = ContextScope::from_json(&ctx).unwrap();
    let ev = |t: &str| evaluate(t, &scope).unwrap_or_else(|e| panic!("{t}: {e}"));
    assert_eq!(ev("@pipeline().parameters.tableList[0]"), json!("orders"));
    assert_eq!(ev("@pipeline().parameters.schema"), json!("dbo"));
    assert_eq!(ev("@pipeline().globalParameters.env"), json!("dev"));
    assert_eq!(ev("@pipeline().RunId"), json!("run-1"));
    assert_eq!(ev("@pipeline().Pipeline"), json!("load"));
    assert_eq!(ev("@pipeline().DataFactory"), json!("adf-dev"));
    assert_eq!(ev("@pipeline().TriggerName"), json!("nightly"));
    assert_eq!(ev("@pipeline().triggertype"), json!("ScheduleTrigger"));
    assert_eq!(ev("@pipeline().TriggerTime"), json!("2024-01-15T00:00:00Z"));
    assert_eq!(ev("@pipeline().TriggerId"), json!("run-1"));
    assert_eq!(ev("@pipeline().GroupId"), json!("run-1"));
    assert_eq!(ev("@pipeline().TriggeredByPipelineName"), json!("parent"));
    assert_eq!(ev("@variables('counter')"), json!(3));
    assert_eq!(ev("@activity('lookup1').output.firstRow.Col"), json!(42));
    assert_eq!(ev("@activity('Copy1').error.message"), json!("boom"));
    assert_eq!(ev("@activity('Copy1')?.output"), json!(null));
    assert_eq!(ev("@item().name"), json!("orders"));
    assert_eq!(ev("@item()['watermark']"), json!("2024-01-01T00:00:00Z"));
    assert_eq!(
        ev("@trigger().outputs.windowStartTime"),
        json!("2024-01-14T00:00:00Z")
    );
    assert_eq!(
        ev("@trigger().scheduledTime"),
        json!("2024-01-15T00:00:00Z")
    );
    assert_eq!(ev("@dataset().folder"), json!("raw"));
    assert_eq!(ev("@linkedService().host"), json!("db"));
    assert_eq!(ev("@utcNow()"), json!("2024-01-15T10:20:30.0000000Z"));
    assert_eq!(
        ev(
            "@{pipeline().parameters.Schema}.@{item().name}_@{formatDateTime(trigger().outputs.windowStartTime, 'yyyyMMdd')}.parquet"
        ),
        json!("dbo.orders_20240114.parquet")
    );

    let msg = evaluate("@activity('Nope').output", &scope)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("activity 'Nope' has not run"), "{msg}");
    let msg = evaluate("@variables('x')", &scope).unwrap_err().to_string();
    assert!(
        msg.contains("variable 'x' is not defined (variables: 'Counter')"),
        "{msg}"
    );

    // Defaults and validation.
    let empty = ContextScope::from_json(&json!({})).unwrap();
    assert_eq!(
        evaluate("@pipeline().TriggerType", &empty).unwrap(),
        json!("Manual")
    );
    assert_eq!(
        evaluate("@length(pipeline().RunId)", &empty).unwrap(),
        json!(36)
    );
    assert_eq!(
        kind_of(evaluate("@dataset()", &empty)),
        EvalErrorKind::Context
    );
    assert_eq!(
        kind_of(evaluate("@trigger()", &empty)),
        EvalErrorKind::Context
    );
    for bad in [
        json!([]),
        json!({"params": {}}),
        json!({"parameters": []}),
        json!({"now": "yesterday"}),
        json!({"run_id": 5}),
    ] {
        let e = ContextScope::from_json(&bad).unwrap_err();
        assert_eq!(e.kind(), EvalErrorKind::Context, "{bad}");
    }
    assert!(
        ContextScope::from_json(&json!({"params": {}}))
            .unwrap_err()
            .to_string()
            .contains("unknown context key 'params'")
    );
}

fn kind_of(r: Result<Value, Error>) -> EvalErrorKind {
    match r {
        Err(Error::Eval { error, .. }) => error.kind(),
        other => panic!("expected an evaluation error, got {other:?}"),
    }
}

#[test]
fn parse_once_evaluate_many_times() {
    let expr = Expr::parse("@{item()}-@{variables('n')}").unwrap();
    for i in 0..3 {
        let scope =
            ContextScope::from_json(&json!({"item": i, "variables": {"n": i * 2}})).unwrap();
        assert_eq!(expr.eval(&scope).unwrap(), json!(format!("{i}-{}", i * 2)));
        assert_eq!(
            expr.eval_to_string(&scope).unwrap(),
            format!("{i}-{}", i * 2)
        );
    }
    assert_eq!(expr.source(), "@{item()}-@{variables('n')}");
    assert!(!expr.is_literal());
}

#[test]
fn spans_cover_their_source() {
    let text = "@concat(pipeline().parameters.x, 'y')";
    let expr = Expr::parse(text).unwrap();
    let Template::Expression(node) = expr.template() else {
        panic!("an expression")
    };
    assert_eq!(&text[node.span.start..node.span.end], &text[1..]);
    let NodeKind::Call { name, args } = &node.kind else {
        panic!("a call")
    };
    let name_span = node.name_span().unwrap();
    assert_eq!(name, "concat");
    assert_eq!(&text[name_span.start..name_span.end], "concat");
    assert_eq!(
        &text[args[0].span.start..args[0].span.end],
        "pipeline().parameters.x"
    );
    assert_eq!(&text[args[1].span.start..args[1].span.end], "'y'");
}

#[test]
fn canonical_print() {
    for (input, printed) in [
        ("@add( 1 ,2 )", "@add(1, 2)"),
        ("@'it''s'", "@'it''s'"),
        ("@TRUE", "@true"),
        ("@x()?.a?['b'][0].c", "@x()?.a?['b'][0].c"),
        ("a @{1.50} b @@{c}", "a @{1.5} b @@{c}"),
        ("@@x", "@@x"),
        ("@", "@@"),
        ("plain", "plain"),
        ("@1e21", "@1e21"),
        ("@-5", "@-5"),
    ] {
        let e = Expr::parse(input).unwrap();
        assert_eq!(e.to_string(), printed, "{input}");
        assert_eq!(Expr::parse(printed).unwrap().template(), e.template());
    }
}
