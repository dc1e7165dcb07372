//! Data Factory pipelines refused at load (issue 8): every defect Data
//! Factory's own validation would catch and everything highwater does not
//! support is reported before anything runs — exit 2, every error at once,
//! each naming the pipeline file, the line, the activity and the property —
//! and nothing is written. The published tutorials still load.

use crate::util::*;

/// A factory whose pipeline first copies `t` into `lake/out/first.csv`
/// (activity `First`), then runs `activities` (which may depend on it).
fn factory(tag: &str, activities: &str) -> Dir {
    let dir = sqlite_factory(tag, "");
    let dataset = |name: &str, ls: &str, kind: &str, rest: &str| {
        dir.write(
            &format!("dataset/{name}.json"),
            &format!(
                r#"{{"name": "{name}", "properties": {{"type": "{kind}",
                "linkedServiceName": {{"referenceName": "{ls}", "type": "LinkedServiceReference"}},
                {rest}}}}}"#
            ),
        )
    };
    dataset(
        "Table",
        "Db",
        "AzureSqlTable",
        r#""typeProperties": {"tableName": "t"}"#,
    );
    dataset("NoTable", "Db", "AzureSqlTable", r#""typeProperties": {}"#);
    let location = |file: &str| {
        format!(
            r#""location": {{"type": "AzureBlobStorageLocation", "folderPath": "out", "fileName": {file}}}"#
        )
    };
    dataset(
        "Out",
        "Lake",
        "DelimitedText",
        &format!(r#""typeProperties": {{{}}}"#, location(r#""first.csv""#)),
    );
    dataset(
        "Bin",
        "Lake",
        "Binary",
        &format!(r#""typeProperties": {{{}}}"#, location(r#""blob.bin""#)),
    );
    dataset(
        "Named",
        "Lake",
        "DelimitedText",
        &format!(
            r#""parameters": {{"name": {{"type": "String"}}}},
               "typeProperties": {{{}}}"#,
            location(r#""@{dataset().name}.csv""#)
        ),
    );
    dataset(
        "Misnamed",
        "Lake",
        "DelimitedText",
        &format!(
            r#""parameters": {{"name": {{"type": "String", "defaultValue": "x"}}}},
               "typeProperties": {{{}}}"#,
            location(r#""@{dataset().nmae}.csv""#)
        ),
    );
    dir.write(
        "pipeline.json",
        &format!(
            r#"{{
  "name": "Load",
  "properties": {{
    "parameters": {{"limit": {{"type": "int", "defaultValue": 2}}}},
    "variables": {{"msg": {{"type": "String"}}}},
    "activities": [
      {{"name": "First", "type": "Copy",
        "typeProperties": {{"source": {{"type": "SqlSource"}}, "sink": {{"type": "DelimitedTextSink"}}}},
        "inputs": [{{"referenceName": "Table", "type": "DatasetReference"}}],
        "outputs": [{{"referenceName": "Out", "type": "DatasetReference"}}]}},
      {activities}
    ]
  }}
}}"#
        ),
    );
    dir
}

/// `dependsOn: First`.
const AFTER_FIRST: &str =
    r#""dependsOn": [{"activity": "First", "dependencyConditions": ["Succeeded"]}]"#;

/// A Copy named `C` after `First` with this source, inputs and outputs.
fn copy(source: &str, input: &str, output: &str) -> String {
    format!(
        r#"{{"name": "C", "type": "Copy", {AFTER_FIRST},
        "typeProperties": {{"source": {source}, "sink": {{"type": "DelimitedTextSink"}}}},
        "inputs": [{input}], "outputs": [{output}]}}"#
    )
}

fn reference(name: &str) -> String {
    format!(r#"{{"referenceName": "{name}", "type": "DatasetReference"}}"#)
}

/// The line of `"name": "<activity>"` in `text` (1-based).
fn line_of(text: &str, activity: &str) -> usize {
    let needle = format!("\"name\": \"{activity}\"");
    text.lines()
        .position(|l| l.contains(&needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no activity {activity} in {text}"))
}

/// Run the pipeline; it must be refused (exit 2) with every `expected`
/// text, and nothing may have run: no file, no run recorded.
fn refused(dir: &Dir) -> Result<String, String> {
    let o = dir.hw(&["pipeline", "run", "pipeline.json"]);
    let err = stderr(&o);
    if o.status.code() != Some(2) {
        return Err(format!(
            "exit {:?}, not 2\n--- stdout\n{}\n--- stderr\n{err}",
            o.status.code(),
            stdout(&o)
        ));
    }
    if dir.join("lake").exists() {
        return Err(format!(
            "something was written before the refusal: {:?}",
            dir.files("lake", "")
        ));
    }
    Ok(err)
}

#[test]
fn every_kind_of_defect_is_refused_at_load_naming_activity_and_property() {
    let lookup_n = r#"{"name": "L", "type": "Lookup", "typeProperties": {
        "source": {"type": "SqlSource", "sqlReaderQuery": "select count(*) as n from t"},
        "dataset": {"referenceName": "Table", "type": "DatasetReference"}}}"#;
    let all_rows = format!(
        r#"{{"name": "All", "type": "Lookup", {AFTER_FIRST}, "typeProperties": {{
        "source": {{"type": "SqlSource"}}, "firstRowOnly": false,
        "dataset": {{"referenceName": "Table", "type": "DatasetReference"}}}}}}"#
    );
    let query = |q: &str| format!(r#"{{"type": "SqlSource", "sqlReaderQuery": "{q}"}}"#);
    let after = |deps: &str| {
        deps.split(',')
            .map(|d| format!(r#"{{"activity": "{d}", "dependencyConditions": ["Succeeded"]}}"#))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cases: Vec<(&str, String, &str, Vec<&str>)> = vec![
        (
            "a Stored Procedure activity without storedProcedureName",
            format!(
                r#"{{"name": "Sp", "type": "SqlServerStoredProcedure", {AFTER_FIRST},
                "linkedServiceName": {{"referenceName": "Db", "type": "LinkedServiceReference"}},
                "typeProperties": {{"storedProcedureParameters": {{"x": {{"value": "1", "type": "Int32"}}}}}}}}"#
            ),
            "Sp",
            vec!["activity Sp: typeProperties.storedProcedureName is required"],
        ),
        (
            "a Stored Procedure activity without linkedServiceName",
            format!(
                r#"{{"name": "Sp", "type": "SqlServerStoredProcedure", {AFTER_FIRST},
                "typeProperties": {{"storedProcedureName": "usp"}}}}"#
            ),
            "Sp",
            vec!["activity Sp: linkedServiceName is required"],
        ),
        (
            "a Copy reading an activity it does not depend on",
            format!(
                "{lookup_n},\n{}",
                copy(
                    &query("select * from t where id < @{activity('L').output.firstRow.n}"),
                    &reference("Table"),
                    &reference("Out")
                )
            ),
            "C",
            vec![
                "activity C: typeProperties.source.sqlReaderQuery: activity('L') is not an activity C depends on",
                "dependsOn",
            ],
        ),
        (
            "an activity reading one that does not exist",
            copy(
                &query("select * from t where id < @{activity('Ghost').output.firstRow.n}"),
                &reference("Table"),
                &reference("Out"),
            ),
            "C",
            vec!["activity C: typeProperties.source.sqlReaderQuery: activity('Ghost'): there is no activity Ghost"],
        ),
        (
            "a dataset parameter reading an activity not depended on",
            format!(
                r#"{lookup_n},
                {{"name": "C", "type": "Copy", {AFTER_FIRST},
                 "typeProperties": {{"source": {{"type": "SqlSource"}}, "sink": {{"type": "DelimitedTextSink"}}}},
                 "inputs": [{}],
                 "outputs": [{{"referenceName": "Named", "type": "DatasetReference",
                   "parameters": {{"name": {{"value": "@string(activity('L').output.firstRow.n)", "type": "Expression"}}}}}}]}}"#,
                reference("Table")
            ),
            "C",
            vec!["activity C: outputs[0].parameters.name: activity('L') is not an activity C depends on"],
        ),
        (
            "firstRow of a Lookup with firstRowOnly: false",
            format!(
                "{all_rows},\n{}",
                copy(
                    &query("select * from t where id = @{activity('All').output.firstRow.id}"),
                    &reference("Table"),
                    &reference("Out")
                )
                .replace("\"First\"", "\"All\"")
            ),
            "C",
            vec![
                "activity C: typeProperties.source.sqlReaderQuery: activity('All').output.firstRow",
                "firstRowOnly: false",
            ],
        ),
        (
            "value of a Lookup that returns its first row only",
            format!(
                r#"{lookup_n},
                {{"name": "Each", "type": "ForEach",
                 "dependsOn": [{}],
                 "typeProperties": {{"items": "@activity('L').output.value", "activities": [
                    {{"name": "Pause", "type": "Wait", "typeProperties": {{"waitTimeInSeconds": 0}}}}]}}}}"#,
                after("First,L")
            ),
            "Each",
            vec!["activity Each: typeProperties.items: activity('L').output.value", "firstRowOnly"],
        ),
        (
            "an inner activity reading an outer one its ForEach does not depend on",
            format!(
                r#"{lookup_n},
                {{"name": "Each", "type": "ForEach", {AFTER_FIRST},
                 "typeProperties": {{"items": "@createArray(1, 2)", "activities": [
                    {{"name": "Set", "type": "SetVariable",
                      "typeProperties": {{"variableName": "msg", "value": "@string(activity('L').output.firstRow.n)"}}}}]}}}}"#
            ),
            "Set",
            vec!["activity Set: typeProperties.value: activity('L') is not an activity Set depends on", "nor one its container Each depends on"],
        ),
        (
            "a Binary dataset used as a table",
            copy(r#"{"type": "SqlSource"}"#, &reference("Table"), &reference("Bin")),
            "C",
            vec!["activity C: outputs[0]: dataset Bin is a Binary dataset"],
        ),
        (
            "a Lookup on a Binary dataset",
            format!(
                r#"{{"name": "LB", "type": "Lookup", {AFTER_FIRST}, "typeProperties": {{
                "source": {{"type": "BinarySource"}}, "dataset": {}}}}}"#,
                reference("Bin")
            ),
            "LB",
            vec!["activity LB: typeProperties.dataset: dataset Bin is a Binary dataset"],
        ),
        (
            "a reference to a missing dataset",
            copy(r#"{"type": "SqlSource"}"#, &reference("Table"), &reference("Nowhere")),
            "C",
            vec!["activity C: dataset Nowhere not found", "(outputs[0])"],
        ),
        (
            "a dataset parameter the dataset does not declare",
            copy(
                r#"{"type": "SqlSource"}"#,
                &reference("Table"),
                r#"{"referenceName": "Named", "type": "DatasetReference", "parameters": {"name": "a", "nmae": "b"}}"#,
            ),
            "C",
            vec!["activity C: outputs[0].parameters.nmae: dataset Named declares no parameter nmae (parameters: name)"],
        ),
        (
            "a dataset parameter without a default left out",
            copy(r#"{"type": "SqlSource"}"#, &reference("Table"), &reference("Named")),
            "C",
            vec!["activity C: outputs[0].parameters: dataset Named needs parameter name, which has no default value"],
        ),
        (
            "a dataset reading a parameter it does not declare",
            copy(r#"{"type": "SqlSource"}"#, &reference("Table"), &reference("Misnamed")),
            "dataset/Misnamed.json:4:",
            vec!["dataset Misnamed: typeProperties.location.fileName: dataset().nmae is not a parameter of the dataset (parameters: name)"],
        ),
        (
            "a Copy without outputs",
            format!(
                r#"{{"name": "C", "type": "Copy", {AFTER_FIRST},
                "typeProperties": {{"source": {{"type": "SqlSource"}}, "sink": {{"type": "DelimitedTextSink"}}}},
                "inputs": [{}]}}"#,
                reference("Table")
            ),
            "C",
            vec!["activity C: outputs: a Copy needs one output dataset"],
        ),
        (
            "a Copy without inputs",
            format!(
                r#"{{"name": "C", "type": "Copy", {AFTER_FIRST},
                "typeProperties": {{"source": {{"type": "SqlSource"}}, "sink": {{"type": "DelimitedTextSink"}}}},
                "outputs": [{}]}}"#,
                reference("Out")
            ),
            "C",
            vec!["activity C: inputs: a Copy needs one input dataset"],
        ),
        (
            "a table dataset without a table read by a Copy without a query",
            copy(r#"{"type": "SqlSource"}"#, &reference("NoTable"), &reference("Out")),
            "C",
            vec!["activity C: typeProperties.source: no query, and dataset NoTable names no table (tableName, or schema and table)"],
        ),
        (
            "a table dataset without a table written by a Copy",
            copy(r#"{"type": "SqlSource"}"#, &reference("Table"), &reference("NoTable"))
                .replace("DelimitedTextSink", "AzureSqlSink"),
            "C",
            vec!["activity C: outputs[0]: dataset NoTable names no table"],
        ),
        (
            "a Lookup without a dataset",
            format!(
                r#"{{"name": "LX", "type": "Lookup", {AFTER_FIRST}, "typeProperties": {{
                "source": {{"type": "SqlSource", "sqlReaderQuery": "select 1"}}}}}}"#
            ),
            "LX",
            vec!["activity LX: typeProperties.dataset is required"],
        ),
        (
            "a Copy property highwater does not support",
            copy(r#"{"type": "SqlSource"}"#, &reference("Table"), &reference("Out")).replace(
                r#""sink": {"type": "DelimitedTextSink"}"#,
                r#""sink": {"type": "DelimitedTextSink"}, "translator": {"type": "TabularTranslator", "schemaMapping": {"a": "$.a"}}"#,
            ),
            "C",
            vec!["activity C: typeProperties.translator.schemaMapping is not supported"],
        ),
        (
            "a source property highwater does not support",
            copy(
                r#"{"type": "SqlSource", "additionalColumns": [{"name": "f", "value": "$$FILEPATH"}]}"#,
                &reference("Table"),
                &reference("Out"),
            ),
            "C",
            vec!["activity C: typeProperties.source.additionalColumns[0] (f): $$FILEPATH is not supported"],
        ),
        (
            "a reading stored procedure",
            copy(
                r#"{"type": "SqlSource", "sqlReaderStoredProcedureName": "usp_read"}"#,
                &reference("Table"),
                &reference("Out"),
            ),
            "C",
            vec!["activity C: typeProperties.source.sqlReaderStoredProcedureName is not supported"],
        ),
        (
            "an unknown typeProperties property",
            format!(
                r#"{{"name": "W", "type": "Wait", {AFTER_FIRST},
                "typeProperties": {{"waitTimeInSeconds": 1, "waitTimeInSecond": 2}}}}"#
            ),
            "W",
            vec!["activity W: typeProperties.waitTimeInSecond is not a property of a Wait activity"],
        ),
        (
            "a Wait of a negative time",
            format!(
                r#"{{"name": "W", "type": "Wait", {AFTER_FIRST},
                "typeProperties": {{"waitTimeInSeconds": -1}}}}"#
            ),
            "W",
            vec!["activity W: typeProperties.waitTimeInSeconds"],
        ),
        (
            "a Set Variable of a variable not declared",
            format!(
                r#"{{"name": "S", "type": "SetVariable", {AFTER_FIRST},
                "typeProperties": {{"variableName": "mgs", "value": "x"}}}}"#
            ),
            "S",
            vec!["activity S: typeProperties.variableName: variable mgs is not declared (variables: msg)"],
        ),
        (
            "variables() of a variable not declared",
            format!(
                r#"{{"name": "S", "type": "SetVariable", {AFTER_FIRST},
                "typeProperties": {{"variableName": "msg", "value": "@variables('mgs')"}}}}"#
            ),
            "S",
            vec!["activity S: typeProperties.value: variables('mgs'): variable mgs is not declared"],
        ),
        (
            "a pipeline parameter not declared",
            copy(
                &query("select * from t where id < @{pipeline().parameters.limt}"),
                &reference("Table"),
                &reference("Out"),
            ),
            "C",
            vec!["activity C: typeProperties.source.sqlReaderQuery: pipeline().parameters.limt: the pipeline declares no parameter limt (parameters: limit)"],
        ),
        (
            "item() outside a ForEach",
            copy(
                &query("select * from t where id < @{item().n}"),
                &reference("Table"),
                &reference("Out"),
            ),
            "C",
            vec!["activity C: typeProperties.source.sqlReaderQuery: item() is only available inside a ForEach"],
        ),
        (
            "a ForEach without items",
            format!(
                r#"{{"name": "Each", "type": "ForEach", {AFTER_FIRST},
                "typeProperties": {{"activities": []}}}}"#
            ),
            "Each",
            vec!["activity Each: typeProperties.items is required"],
        ),
        (
            "a Fail without an error code",
            format!(
                r#"{{"name": "F", "type": "Fail", {AFTER_FIRST},
                "typeProperties": {{"message": "no"}}}}"#
            ),
            "F",
            vec!["activity F: typeProperties.errorCode is required"],
        ),
        (
            "a Lookup's firstRowOnly that is not a boolean",
            format!(
                r#"{{"name": "LY", "type": "Lookup", {AFTER_FIRST}, "typeProperties": {{
                "source": {{"type": "SqlSource"}}, "firstRowOnly": "yes",
                "dataset": {}}}}}"#,
                reference("Table")
            ),
            "LY",
            vec!["activity LY: typeProperties.firstRowOnly"],
        ),
    ];
    let mut failed = Vec::new();
    for (what, activities, activity, expected) in &cases {
        let dir = factory("adf_load", activities);
        let text = std::fs::read_to_string(dir.join("pipeline.json")).unwrap();
        // The place: the activity's line, or the dataset file's.
        let line = if activity.contains(".json") {
            activity.to_string()
        } else {
            format!("pipeline.json:{}:", line_of(&text, activity))
        };
        match refused(&dir) {
            Err(e) => failed.push(format!("{what}: {e}")),
            Ok(err) => {
                for want in expected.iter().copied().chain([line.as_str()]) {
                    if !err.contains(want) {
                        failed.push(format!("{what}: no `{want}` in\n{err}"));
                    }
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases:\n\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n\n")
    );
}

/// Several defects: all reported at once, in one exit 2.
#[test]
fn every_error_is_reported_at_once() {
    let dir = factory(
        "adf_load_all",
        &format!(
            r#"{{"name": "Sp", "type": "SqlServerStoredProcedure", {AFTER_FIRST},
              "linkedServiceName": {{"referenceName": "Db", "type": "LinkedServiceReference"}},
              "typeProperties": {{}}}},
            {},
            {{"name": "LX", "type": "Lookup", "typeProperties": {{"source": {{"type": "SqlSource"}}}}}}"#,
            copy(
                r#"{"type": "SqlSource", "sqlReaderQuery": "select @{activity('LX').output.firstRow.a}"}"#,
                &reference("Table"),
                &reference("Bin")
            )
        ),
    );
    let err = refused(&dir).unwrap();
    for want in [
        "5 errors in the pipeline",
        "activity Sp: typeProperties.storedProcedureName is required",
        "activity C: typeProperties.source.sqlReaderQuery: activity('LX') is not an activity C depends on",
        "activity C: outputs[0]: dataset Bin is a Binary dataset",
        "activity LX: typeProperties.dataset is required",
        "activity LX: typeProperties.source: no query",
    ] {
        assert!(err.contains(want), "no `{want}` in\n{err}");
    }
}

/// A pipeline run by Execute Pipeline is validated too, and its errors
/// name its own file.
#[test]
fn a_called_pipeline_is_validated_with_its_file() {
    let dir = factory(
        "adf_load_called",
        &format!(
            r#"{{"name": "Run", "type": "ExecutePipeline", {AFTER_FIRST},
              "typeProperties": {{"pipeline": {{"referenceName": "Child", "type": "PipelineReference"}},
                                 "parameters": {{"wrong": 1}}}}}}"#
        ),
    );
    dir.write(
        "child.json",
        r#"{"name": "Child", "properties": {
  "parameters": {"p": {"type": "int", "defaultValue": 1}},
  "activities": [
    {"name": "Sp", "type": "SqlServerStoredProcedure",
     "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
     "typeProperties": {}}
  ]}}"#,
    );
    let err = refused(&dir).unwrap();
    assert!(
        err.contains("child.json:4: activity Sp: typeProperties.storedProcedureName is required"),
        "{err}"
    );
    assert!(
        err.contains(
            "activity Run: typeProperties.parameters.wrong: pipeline Child declares no parameter wrong (parameters: p)"
        ),
        "{err}"
    );
}

/// A defect after a Copy into a PostgreSQL table: the table stays empty
/// (it is not even created), nothing is recorded.
#[tokio::test]
async fn nothing_is_written_into_a_table_before_a_refusal() {
    let db = PgDb::new("adf_load_pg").await;
    db.exec("CREATE TABLE target (id int, name text)").await;
    let dir = factory(
        "adf_load_pg",
        &format!(
            r#"{{"name": "ToPg", "type": "Copy", {AFTER_FIRST},
              "typeProperties": {{"source": {{"type": "SqlSource"}}, "sink": {{"type": "AzurePostgreSqlSink"}}}},
              "inputs": [{}], "outputs": [{}]}},
            {{"name": "Sp", "type": "SqlServerStoredProcedure",
              "dependsOn": [{{"activity": "ToPg", "dependencyConditions": ["Succeeded"]}}],
              "linkedServiceName": {{"referenceName": "Pg", "type": "LinkedServiceReference"}},
              "typeProperties": {{"storedProcedureParameters": {{}}}}}}"#,
            reference("Table"),
            reference("PgTarget")
        ),
    );
    dir.write(
        "dataset/PgTarget.json",
        r#"{"name": "PgTarget", "properties": {"type": "AzurePostgreSqlTable",
            "linkedServiceName": {"referenceName": "Pg", "type": "LinkedServiceReference"},
            "typeProperties": {"table": "target"}}}"#,
    );
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  Db: sqlite://src.db\n  Lake: file://./lake\n  Pg: {}\n",
            db.url
        ),
    );
    let err = refused(&dir).unwrap();
    assert!(
        err.contains("activity Sp: typeProperties.storedProcedureName is required"),
        "{err}"
    );
    let n: i64 = db
        .client
        .query_one("SELECT count(*) FROM target", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "rows were written before the refusal");
    let o = dir.hw(&["runs", "--json"]);
    assert_code(&o, 0);
    let runs: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(runs, serde_json::json!([]), "a run was recorded");
}

/// The published tutorials (tests/fixtures/adf) load: the only thing left
/// to complain about is the missing connections.
#[test]
fn the_published_tutorials_load() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adf");
    for (folder, pipeline) in [
        ("single", "pipeline.json"),
        ("multiple", "pipeline.json"),
        ("change-tracking", "pipelines/FullCopyPipeline.json"),
        ("change-tracking", "pipelines/IncrementalCopyPipeline.json"),
    ] {
        let dir = Dir::new("adf_load_tutorial");
        copy_tree(&fixtures.join(folder), &dir.path);
        dir.write("highwater.yaml", "connections: {}\n");
        let o = dir.hw(&["pipeline", "run", pipeline]);
        assert_code(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains("has no connection"),
            "{folder}/{pipeline} does not load:\n{err}"
        );
        for line in err.lines().skip(1) {
            assert!(
                line.trim_start().starts_with("linked service "),
                "{folder}/{pipeline}: {line}"
            );
        }
    }
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}
