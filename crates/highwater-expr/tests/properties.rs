//! Property tests: the parser and evaluator never panic on arbitrary input,
//! and printing a tree parses back to the same tree.

use highwater_expr::{EmptyScope, Expr, Node, NodeKind, Span, Template};
use proptest::prelude::*;

/// Text biased toward expression syntax, so the parser gets deep.
fn expression_like() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "@",
        "@@",
        "@{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "?.",
        "?[",
        ".",
        ",",
        "'",
        "''",
        " ",
        "\n",
        "concat",
        "add",
        "if",
        "true",
        "null",
        "x",
        "1",
        "-2",
        "1.5e3",
        "utcNow",
        "item()",
        "pipeline()",
        ".parameters",
        "a",
        "é",
        "😀",
        "\t",
        "0x",
        "e",
        "div",
        "json('{}')",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

fn xml_like() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "<a>",
        "</a>",
        "<b x='1'>",
        "</b>",
        "<c/>",
        "text",
        "&amp;",
        "&#65;",
        "&bad;",
        "<!--c-->",
        "<![CDATA[x]]>",
        "<?xml version=\"1.0\"?>",
        "<?pi d?>",
        " ",
        "<",
        ">",
        "\"",
        "=",
        "é",
    ]);
    prop::collection::vec(pieces, 0..20).prop_map(|v| v.concat())
}

fn xpath_like() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "/",
        "//",
        "a",
        "b",
        "*",
        "@x",
        "text()",
        "node()",
        "[",
        "]",
        "1",
        "2.5",
        "'s'",
        "(",
        ")",
        ",",
        "=",
        "!=",
        "<",
        ">=",
        "+",
        "-",
        " div ",
        " mod ",
        " and ",
        " or ",
        "|",
        ".",
        "..",
        "count(",
        "sum(",
        "string(",
        "substring(",
        "last()",
        "position()",
        "child::",
        "ancestor::",
        "following-sibling::",
        "name(",
        "concat(",
        " ",
    ]);
    prop::collection::vec(pieces, 0..16).prop_map(|v| v.concat())
}

fn ident() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,6}"
}

fn leaf() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        Just(NodeKind::Null),
        any::<bool>().prop_map(NodeKind::Bool),
        any::<i64>().prop_map(NodeKind::Int),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(NodeKind::Float),
        any::<String>().prop_map(NodeKind::Str),
    ]
}

fn node(kind: NodeKind) -> Node {
    Node {
        kind,
        span: Span::default(),
    }
}

fn tree() -> impl Strategy<Value = Node> {
    leaf().prop_map(node).prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            (ident(), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(name, args)| { node(NodeKind::Call { name, args }) }),
            (inner.clone(), ident(), any::<bool>()).prop_map(|(t, name, safe)| {
                node(NodeKind::Property {
                    target: Box::new(t),
                    name,
                    safe,
                })
            }),
            (inner.clone(), inner, any::<bool>()).prop_map(|(t, i, safe)| {
                node(NodeKind::Index {
                    target: Box::new(t),
                    index: Box::new(i),
                    safe,
                })
            }),
        ]
    })
}

fn round_trips(text: &str) -> Result<(), TestCaseError> {
    if let Ok(expr) = Expr::parse(text) {
        let printed = expr.to_string();
        let again = Expr::parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("{text:?} printed as {printed:?}: {e}")))?;
        prop_assert_eq!(
            again.template(),
            expr.template(),
            "printed as {:?}",
            printed
        );
        // Evaluation never panics either (it may fail).
        let _ = expr.eval(&EmptyScope);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_any_string(text in any::<String>()) {
        round_trips(&text)?;
    }

    #[test]
    fn parser_never_panics_on_expression_like_text(text in expression_like()) {
        round_trips(&text)?;
    }

    #[test]
    fn print_then_parse_is_identity(n in tree()) {
        let template = Template::Expression(n);
        let printed = template.to_string();
        let parsed = Expr::parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("{printed:?}: {e}")))?;
        prop_assert_eq!(parsed.template(), &template, "printed as {:?}", printed);
        let _ = parsed.eval(&EmptyScope);
    }

    #[test]
    fn xml_and_xpath_never_panic(text in xml_like(), path in xpath_like()) {
        if let Ok(doc) = highwater_expr::xml::parse(&text) {
            let again = highwater_expr::xml::parse(&highwater_expr::xml::write(&doc));
            prop_assert!(again.is_ok(), "{:?} re-serialized does not parse", text);
            let _ = highwater_expr::xml::to_json(&doc);
            let _ = highwater_expr::xpath::evaluate(&doc, &path);
        }
        let doc = highwater_expr::xml::parse("<a x='1'><b>1</b><b>t<c/></b><!--c--></a>").unwrap();
        let _ = highwater_expr::xpath::evaluate(&doc, &path);
    }

    #[test]
    fn interpolations_round_trip(parts in prop::collection::vec((".{0,6}", tree()), 1..4), tail in ".{0,6}") {
        let mut text = String::new();
        for (t, n) in &parts {
            text.push_str(&t.replace('@', "#"));
            text.push_str(&format!("@{{{n}}}"));
        }
        text.push_str(&tail.replace('@', "#"));
        round_trips(&text)?;
    }
}
