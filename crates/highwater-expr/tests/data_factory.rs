//! Where the Data Factory service and Microsoft's function reference are
//! followed rather than the reference package (which formats with the
//! invariant culture on .NET 8): standard date formats in en-US,
//! `lastIndexOf` with an empty search text. Also XML with namespaces and
//! `pipeline().libraryVariables`. Expected values are the documented ones.

use highwater_expr::{ContextScope, evaluate};
use serde_json::{Value, json};

fn eval(text: &str, scope: &ContextScope) -> Value {
    evaluate(text, scope).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn empty() -> ContextScope {
    ContextScope::from_json(&json!({})).expect("valid context")
}

#[test]
fn standard_date_formats_are_en_us() {
    let s = empty();
    let t = "2018-03-15T13:00:00Z";
    let cases = [
        ("D", "Thursday, March 15, 2018"),
        ("d", "3/15/2018"),
        ("f", "Thursday, March 15, 2018 1:00 PM"),
        ("F", "Thursday, March 15, 2018 1:00:00 PM"),
        ("g", "3/15/2018 1:00 PM"),
        ("G", "3/15/2018 1:00:00 PM"),
        ("M", "March 15"),
        ("m", "March 15"),
        ("O", "2018-03-15T13:00:00.0000000Z"),
        ("o", "2018-03-15T13:00:00.0000000Z"),
        ("R", "Thu, 15 Mar 2018 13:00:00 GMT"),
        ("r", "Thu, 15 Mar 2018 13:00:00 GMT"),
        ("s", "2018-03-15T13:00:00"),
        ("t", "1:00 PM"),
        ("T", "1:00:00 PM"),
        ("u", "2018-03-15 13:00:00Z"),
        ("U", "Thursday, March 15, 2018 1:00:00 PM"),
        ("Y", "March 2018"),
        ("y", "March 2018"),
    ];
    for (f, want) in cases {
        let got = eval(&format!("@formatDateTime('{t}', '{f}')"), &s);
        assert_eq!(got, json!(want), "format '{f}'");
    }
    // An empty format is 'G'.
    assert_eq!(
        eval("@formatDateTime('2024-07-15T10:20:30Z', '')", &s),
        json!("7/15/2024 10:20:30 AM")
    );
    // Midnight and single-digit hours in the 12-hour clock.
    assert_eq!(
        eval("@formatDateTime('2024-01-05T00:07:09Z', 'G')", &s),
        json!("1/5/2024 12:07:09 AM")
    );
    // The date functions that take a format use the same culture.
    assert_eq!(
        eval("@addDays('2024-01-31', 30, 'D')", &s),
        json!("Friday, March 1, 2024")
    );
    assert_eq!(
        eval(
            "@convertFromUtc('2018-03-15T13:00:00Z', 'AUS Eastern Standard Time', 'D')",
            &s
        ),
        json!("Friday, March 16, 2018")
    );
}

#[test]
fn last_index_of_an_empty_text_is_the_last_position() {
    let s = empty();
    assert_eq!(eval("@lastIndexOf('hello world', '')", &s), json!(10));
    assert_eq!(eval("@lastIndexOf('', '')", &s), json!(0));
    assert_eq!(
        eval("@lastIndexOf('hello world hello world', 'world')", &s),
        json!(18)
    );
    assert_eq!(eval("@indexOf('hello world', '')", &s), json!(0));
}

#[test]
fn json_of_xml_makes_repeated_elements_arrays() {
    let s = empty();
    assert_eq!(
        eval(
            "@json(xml('<produce><item><name>Gala</name><type>apple</type><count>20</count></item><item><name>Honeycrisp</name><type>apple</type><count>10</count></item></produce>'))",
            &s
        ),
        json!({"produce": {"item": [
            {"name": "Gala", "type": "apple", "count": "20"},
            {"name": "Honeycrisp", "type": "apple", "count": "10"}
        ]}})
    );
    // One element stays an object.
    assert_eq!(
        eval("@json(xml('<a><b>1</b></a>'))", &s),
        json!({"a": {"b": "1"}})
    );
    assert_eq!(
        eval(
            "@json(xml(json('{\"person\": {\"@id\": \"1\", \"name\": [\"A\", \"B\"]}}')))",
            &s
        ),
        json!({"person": {"@id": "1", "name": ["A", "B"]}})
    );
}

#[test]
fn xpath_with_namespaces() {
    let s = empty();
    let doc = r#"<?xml version="1.0"?><file xmlns="https://contoso.com"><location>Paris</location></file>"#;
    let x = |path: &str| eval(&format!("@xpath(xml('{doc}'), '{path}')"), &s);
    // Microsoft's documented example: the element keeps its namespace.
    let want = json!([{"$content-type": "application/xml;charset=utf-8", "$content": base64(r#"<location xmlns="https://contoso.com">Paris</location>"#)}]);
    let got = x(r#"/*[name()="file"]/*[name()="location"]"#);
    assert_eq!(shown(&got), shown(&want), "{got}");
    let got = x(
        r#"/*[local-name()="file" and namespace-uri()="https://contoso.com"]/*[local-name()="location"]"#,
    );
    assert_eq!(shown(&got), shown(&want), "{got}");
    // An unprefixed name test means "in no namespace", as in .NET.
    assert_eq!(x("/file/location"), json!([]));
    assert_eq!(x("string(/*/*)"), json!("Paris"));
    assert_eq!(x("namespace-uri(/*)"), json!("https://contoso.com"));
    // Prefixed documents: the prefix resolves through the declarations.
    let doc = r#"<r:root xmlns:r="urn:r" xmlns:q="urn:q"><q:v q:k="1">x</q:v><w>y</w></r:root>"#;
    let x = |path: &str| eval(&format!("@xpath(xml('{doc}'), '{path}')"), &s);
    assert_eq!(x("namespace-uri(/*/*[1])"), json!("urn:q"));
    assert_eq!(x("namespace-uri(/*/*[1]/@*)"), json!("urn:q"));
    assert_eq!(x("namespace-uri(/*/*[2])"), json!(""));
    assert_eq!(x("local-name(/*/*[1])"), json!("v"));
    assert_eq!(x("count(/*/@*)"), json!(0.0));
    assert_eq!(x("string(/*/w)"), json!("y"));
}

fn base64(s: &str) -> String {
    let v = evaluate(&format!("@base64('{}')", s.replace('\'', "''")), &empty()).unwrap();
    v.as_str().unwrap().to_string()
}

/// The XML text of an xpath() node-set result, whatever its JSON shape.
fn shown(v: &Value) -> String {
    v.to_string()
}

#[test]
fn library_variables_are_an_empty_object_unless_given() {
    assert_eq!(eval("@pipeline().libraryVariables", &empty()), json!({}));
    let s = ContextScope::from_json(&json!({"library_variables": {"region": "eu"}})).unwrap();
    assert_eq!(eval("@pipeline().libraryVariables.region", &s), json!("eu"));
}
