//! The `typeProperties` of every activity and dataset kind the interpreter
//! runs, as typed structs, parsed when the pipeline loads.
//!
//! Each struct names the properties highwater reads; a value that may be an
//! expression is a `Value` (a literal, an `@…` string, or a
//! `{"value": …, "type": "Expression"}` object), judged when it is literal.
//! Every other property lands in `rest` and is sorted by [`Shape`]:
//!
//! ```text
//! UNSUPPORTED   listed with the reason: refused at load (exit 2)
//! IGNORED       listed: no effect on which rows land where (batch sizes, staging, logging…)
//! anything else refused: "… is not a property of <kind>"
//! ```
//!
//! A `null` value counts as absent, as Data Factory writes them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// One problem found while parsing: the JSON path and what is wrong.
pub type Found = Vec<(String, String)>;

/// What every typed struct says about the properties it does not read.
pub trait Shape: DeserializeOwned {
    /// `a Wait activity`, `a SQL source`: for messages.
    const WHAT: &'static str;
    /// Properties highwater refuses, with the reason.
    const UNSUPPORTED: &'static [(&'static str, &'static str)] = &[];
    /// Properties that change nothing here.
    const IGNORED: &'static [&'static str] = &[];
    fn rest(&self) -> &BTreeMap<String, Value>;
}

/// Parse `v` (at JSON `path`) as `T`; report type errors and every
/// unsupported or unknown property.
pub fn parse<T: Shape>(v: &Value, path: &str, found: &mut Found) -> Option<T> {
    let v = match v {
        Value::Null => Value::Object(Map::new()),
        Value::Object(_) => v.clone(),
        other => {
            found.push((
                path.to_string(),
                format!("must be an object, got {}", kind_of(other)),
            ));
            return None;
        }
    };
    let t: T = match serde_path_to_error::deserialize(v) {
        Ok(t) => t,
        Err(e) => {
            let at = e.path().to_string();
            let place = if at == "." || at.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{at}")
            };
            found.push((place, e.into_inner().to_string()));
            return None;
        }
    };
    for (k, v) in t.rest() {
        if v.is_null() || T::IGNORED.contains(&k.as_str()) {
            continue;
        }
        match T::UNSUPPORTED.iter().find(|(u, _)| u == k) {
            Some((_, why)) => {
                found.push((format!("{path}.{k}"), format!("is not supported: {why}")))
            }
            None => found.push((
                format!("{path}.{k}"),
                format!("is not a property of {} highwater knows", T::WHAT),
            )),
        }
    }
    Some(t)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Is `v` an expression (evaluated at run time) rather than a literal?
pub fn is_expression(v: &Value) -> bool {
    match v {
        Value::String(s) => (s.starts_with('@') && !s.starts_with("@@")) || s.contains("@{"),
        Value::Object(m) => m.get("type").and_then(Value::as_str) == Some("Expression"),
        _ => false,
    }
}

/// Absent, null, or a literal empty string.
pub fn is_blank(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(_) => false,
    }
}

macro_rules! shape {
    ($t:ty, $what:expr $(, unsupported: $u:expr)? $(, ignored: $i:expr)?) => {
        impl Shape for $t {
            const WHAT: &'static str = $what;
            $(const UNSUPPORTED: &'static [(&'static str, &'static str)] = $u;)?
            $(const IGNORED: &'static [&'static str] = $i;)?
            fn rest(&self) -> &BTreeMap<String, Value> {
                &self.rest
            }
        }
    };
}

/// A `DatasetReference` / `PipelineReference`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    pub reference_name: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Reference, "a reference");

/// The source of a Lookup or Copy reading a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub sql_reader_query: Option<Value>,
    pub query: Option<Value>,
    pub sql_query: Option<Value>,
    /// Judged by `columns.rs` (Copy only).
    pub additional_columns: Option<Value>,
    /// File sources: parsed as [`StoreSettings`] by validate.rs.
    pub store_settings: Option<Value>,
    /// File sources: parsed as [`FormatReadSettings`] by validate.rs.
    pub format_settings: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Source, "a source",
    unsupported: &[
        ("sqlReaderStoredProcedureName", "reading through a stored procedure; use sqlReaderQuery"),
        ("storedProcedureParameters", "reading through a stored procedure; use sqlReaderQuery"),
    ],
    ignored: &["queryTimeout", "isolationLevel", "partitionOption", "partitionSettings",
        "maxConcurrentConnections", "sourceRetryCount", "sourceRetryWait",
        "disableMetricsCollection", "produceAdditionalTypes"]);

impl Source {
    /// The query, when one is given (literal non-empty, or an expression).
    pub fn query(&self) -> Option<&Value> {
        [&self.sql_reader_query, &self.query, &self.sql_query]
            .into_iter()
            .flatten()
            .find(|q| !is_blank(Some(q)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lookup {
    pub source: Option<Value>,
    pub dataset: Option<Value>,
    pub first_row_only: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Lookup, "a Lookup activity");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Copy {
    pub source: Option<Value>,
    /// Judged by `sink.rs` (tables) and `delimited.rs` (files).
    pub sink: Option<Value>,
    pub enable_skip_incompatible_row: Option<Value>,
    /// Judged by `columns.rs`.
    pub translator: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Copy, "a Copy activity",
    unsupported: &[
        ("redirectIncompatibleRowSettings", "skipping incompatible rows"),
        ("skipErrorFile", "skipping files"),
        ("preserve", "preserving file metadata"),
        ("preserveRules", "preserving file metadata"),
    ],
    ignored: &["enableStaging", "stagingSettings", "parallelCopies", "dataIntegrationUnits",
        "logSettings", "logStorageSettings", "validateDataConsistency"]);

/// The `storeSettings` of a file source (and of GetMetadata, Delete):
/// which files are read. The values are judged by `files/mod.rs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreSettings {
    pub recursive: Option<Value>,
    pub wildcard_folder_path: Option<Value>,
    pub wildcard_file_name: Option<Value>,
    pub prefix: Option<Value>,
    pub modified_datetime_start: Option<Value>,
    pub modified_datetime_end: Option<Value>,
    pub delete_files_after_completion: Option<Value>,
    pub enable_partition_discovery: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(StoreSettings, "storeSettings",
    unsupported: &[
        ("fileListPath", "a file listing the files to copy; use wildcards or a prefix"),
        ("partitionRootPath", "partition discovery"),
    ],
    ignored: &["type", "maxConcurrentConnections", "disableMetricsCollection"]);

/// The `formatSettings` of a file source.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FormatReadSettings {
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(FormatReadSettings, "formatSettings",
    unsupported: &[
        ("skipLineCount", "skipping lines at the start of each file"),
        ("compressionProperties", "zip and tar archives"),
    ],
    ignored: &["type"]);

/// A GetMetadata activity (the fields are judged by validate.rs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMetadata {
    pub dataset: Option<Value>,
    pub field_list: Option<Value>,
    pub store_settings: Option<Value>,
    pub format_settings: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(GetMetadata, "a GetMetadata activity");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delete {
    pub dataset: Option<Value>,
    pub recursive: Option<Value>,
    pub store_settings: Option<Value>,
    pub enable_logging: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Delete, "a Delete activity",
    unsupported: &[("logStorageSettings", "logging the deleted files to a store; the activity output lists them")],
    ignored: &["maxConcurrentConnections"]);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub dataset: Option<Value>,
    pub timeout: Option<Value>,
    pub sleep: Option<Value>,
    pub minimum_size: Option<Value>,
    pub child_items: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Validation, "a Validation activity");

/// One `storedProcedureParameters` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcParam {
    pub value: Option<Value>,
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(ProcParam, "a stored procedure parameter");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredProcedure {
    pub stored_procedure_name: Option<Value>,
    pub stored_procedure_parameters: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(StoredProcedure, "a Stored Procedure activity");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForEach {
    pub items: Option<Value>,
    pub is_sequential: Option<Value>,
    pub batch_count: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(ForEach, "a ForEach activity");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IfCondition {
    pub expression: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(IfCondition, "an If Condition activity");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    pub variable_name: Option<Value>,
    pub value: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Variable, "a Set/Append Variable activity",
    unsupported: &[("setSystemVariable", "the pipeline return value")]);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wait {
    pub wait_time_in_seconds: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Wait, "a Wait activity");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fail {
    pub message: Option<Value>,
    pub error_code: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Fail, "a Fail activity");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutePipeline {
    pub pipeline: Option<Reference>,
    pub parameters: Option<Map<String, Value>>,
    pub wait_on_completion: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(ExecutePipeline, "an Execute Pipeline activity");

/// One block of a Script activity's `scripts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptBlock {
    pub text: Option<Value>,
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    pub parameters: Option<Vec<Value>>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(ScriptBlock, "a script block");

/// One parameter of a script block.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptParameter {
    pub name: Option<Value>,
    pub value: Option<Value>,
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    pub direction: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(ScriptParameter, "a script parameter", ignored: &["size"]);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Script {
    /// Each parsed as a [`ScriptBlock`] by validate.rs.
    pub scripts: Option<Value>,
    pub script_block_execution_timeout: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Script, "a Script activity",
    ignored: &["logSettings", "returnMultistatementResult", "treatDecimalAsString"]);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub items: Option<Value>,
    pub condition: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Filter, "a Filter activity");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Until {
    pub expression: Option<Value>,
    pub timeout: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Until, "an Until activity");

/// `cases` and `defaultActivities` are parsed as activities.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Switch {
    pub on: Option<Value>,
    /// The spelling of Microsoft's JSON sample for `on`.
    pub expression: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Switch, "a Switch activity");

/// A Web activity's `authentication`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebAuth {
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    pub username: Option<Value>,
    pub password: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(WebAuth, "a Web activity authentication",
unsupported: &[
    ("pfx", "client certificates"),
    ("resource", "managed identity and service principal authentication"),
    ("userTenant", "service principal authentication"),
    ("credential", "credential references"),
]);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Web {
    pub url: Option<Value>,
    pub method: Option<Value>,
    pub headers: Option<Value>,
    pub body: Option<Value>,
    /// Parsed as a [`WebAuth`] by validate.rs.
    pub authentication: Option<Value>,
    pub http_request_timeout: Option<Value>,
    pub disable_cert_validation: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Web, "a Web activity",
    unsupported: &[
        ("datasets", "passing datasets to the endpoint"),
        ("linkedServices", "passing linked services to the endpoint"),
    ],
    ignored: &["connectVia", "turnOffAsync"]);

/// The typed `typeProperties` of an activity (nested activity lists
/// excluded: they are parsed as activities).
#[derive(Debug, Clone)]
pub enum ActivityProps {
    Lookup(Lookup),
    Copy(Copy),
    StoredProcedure(StoredProcedure),
    ForEach(ForEach),
    IfCondition(IfCondition),
    SetVariable(Variable),
    AppendVariable(Variable),
    Wait(Wait),
    Fail(Fail),
    ExecutePipeline(ExecutePipeline),
    Script(Script),
    Filter(Filter),
    Until(Until),
    Switch(Switch),
    Web(Box<Web>),
    GetMetadata(GetMetadata),
    Delete(Delete),
    Validation(Validation),
    /// The properties did not parse (reported).
    Invalid,
}

impl ActivityProps {
    /// Parse `tp` for an activity of `kind`.
    pub fn parse(kind: super::ActivityKind, tp: &Value, found: &mut Found) -> ActivityProps {
        use super::ActivityKind as K;
        let at = "typeProperties";
        let props = match kind {
            K::Lookup => parse(tp, at, found).map(ActivityProps::Lookup),
            K::Copy => parse(tp, at, found).map(ActivityProps::Copy),
            K::StoredProcedure => parse(tp, at, found).map(ActivityProps::StoredProcedure),
            K::ForEach => parse(tp, at, found).map(ActivityProps::ForEach),
            K::IfCondition => parse(tp, at, found).map(ActivityProps::IfCondition),
            K::SetVariable => parse(tp, at, found).map(ActivityProps::SetVariable),
            K::AppendVariable => parse(tp, at, found).map(ActivityProps::AppendVariable),
            K::Wait => parse(tp, at, found).map(ActivityProps::Wait),
            K::Fail => parse(tp, at, found).map(ActivityProps::Fail),
            K::ExecutePipeline => parse(tp, at, found).map(ActivityProps::ExecutePipeline),
            K::Script => parse(tp, at, found).map(ActivityProps::Script),
            K::Filter => parse(tp, at, found).map(ActivityProps::Filter),
            K::Until => parse(tp, at, found).map(ActivityProps::Until),
            K::Switch => parse(tp, at, found).map(ActivityProps::Switch),
            K::Web => parse(tp, at, found).map(|w| ActivityProps::Web(Box::new(w))),
            K::GetMetadata => parse(tp, at, found).map(ActivityProps::GetMetadata),
            K::Delete => parse(tp, at, found).map(ActivityProps::Delete),
            K::Validation => parse(tp, at, found).map(ActivityProps::Validation),
        };
        props.unwrap_or(ActivityProps::Invalid)
    }
}

// ------------------------------------------------------------- datasets

/// `location` of a file dataset.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    pub container: Option<Value>,
    pub bucket_name: Option<Value>,
    pub file_system: Option<Value>,
    pub folder_path: Option<Value>,
    pub file_name: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Location, "a file location",
    unsupported: &[("version", "S3 object versions")]);

/// A table in a database: `tableName` (`t`, `s.t`, `[s].[t]`) or
/// `schema` + `table`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    pub table_name: Option<Value>,
    pub schema: Option<Value>,
    pub table: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Table, "a table dataset");

impl Table {
    /// Does the dataset name a table (or an expression that may)?
    pub fn names_table(&self) -> bool {
        !is_blank(self.table_name.as_ref()) || !is_blank(self.table.as_ref())
    }
}

/// The values are judged by `delimited.rs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelimitedText {
    /// Parsed as a [`Location`] by [`DatasetProps::parse`].
    pub location: Option<Value>,
    pub column_delimiter: Option<Value>,
    pub row_delimiter: Option<Value>,
    pub quote_char: Option<Value>,
    pub escape_char: Option<Value>,
    pub null_value: Option<Value>,
    pub encoding_name: Option<Value>,
    pub compression_codec: Option<Value>,
    pub compression_level: Option<Value>,
    pub first_row_as_header: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(DelimitedText, "a DelimitedText dataset");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parquet {
    /// Parsed as a [`Location`] by [`DatasetProps::parse`].
    pub location: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Parquet, "a Parquet dataset", ignored: &["compressionCodec"]);

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Json {
    /// Parsed as a [`Location`] by [`DatasetProps::parse`].
    pub location: Option<Value>,
    pub encoding_name: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Json, "a Json dataset",
    unsupported: &[("compression", "compressed JSON output")]);

/// The legacy file datasets (`AzureBlob`, `AzureBlobFSFile`, `FileShare`,
/// `AmazonS3Object`) with a `format` object.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyFile {
    pub folder_path: Option<Value>,
    pub file_name: Option<Value>,
    pub bucket_name: Option<Value>,
    pub format: Option<Value>,
    pub compression: Option<Value>,
    /// Read filters, judged by `files/mod.rs`.
    pub prefix: Option<Value>,
    pub modified_datetime_start: Option<Value>,
    pub modified_datetime_end: Option<Value>,
    pub file_filter: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(LegacyFile, "a file dataset",
unsupported: &[
    ("key", "S3 object keys; use folderPath and fileName"),
    ("version", "S3 object versions"),
    ("partitionedBy", "Data Factory v1 partitioned paths; write the path as an expression"),
]);

/// Files copied as they are (Copy between Binary datasets), or looked at
/// (GetMetadata, Delete, Validation).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binary {
    /// Parsed as a [`Location`] by [`DatasetProps::parse`].
    pub location: Option<Value>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, Value>,
}
shape!(Binary, "a Binary dataset",
    unsupported: &[("compression", "compressing or decompressing Binary copies")]);

/// The dataset kinds highwater refuses wherever they are used.
const UNSUPPORTED_DATASETS: &[&str] = &["Avro", "Orc", "Xml", "Excel", "Iceberg"];

/// A dataset's typed `typeProperties`.
#[derive(Debug, Clone)]
pub enum DatasetProps {
    Table(Table),
    DelimitedText(Box<DelimitedText>),
    Parquet(Parquet),
    Json(Json),
    LegacyFile(Box<LegacyFile>),
    Binary(Binary),
    /// A kind highwater does not read or write (`Avro`, `Orc`, …).
    Unsupported,
    /// The properties did not parse (reported).
    Invalid,
}

impl DatasetProps {
    pub fn parse(kind: &str, tp: &Value, found: &mut Found) -> DatasetProps {
        let at = "typeProperties";
        let props = match kind {
            _ if UNSUPPORTED_DATASETS.contains(&kind) => return DatasetProps::Unsupported,
            "DelimitedText" => {
                parse(tp, at, found).map(|d| DatasetProps::DelimitedText(Box::new(d)))
            }
            "Parquet" => parse(tp, at, found).map(DatasetProps::Parquet),
            "Binary" => parse(tp, at, found).map(DatasetProps::Binary),
            "Json" => {
                let j: Option<Json> = parse(tp, at, found);
                if let Some(e) = j.as_ref().and_then(|j| j.encoding_name.as_ref())
                    && !is_expression(e)
                    && !e
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case("UTF-8") || s.is_empty())
                {
                    found.push((
                        format!("{at}.encodingName"),
                        format!("is not supported: JSON is written as UTF-8, not {e}"),
                    ));
                }
                j.map(DatasetProps::Json)
            }
            "AzureBlob" | "AzureBlobFSFile" | "FileShare" | "AmazonS3Object" => {
                parse(tp, at, found).map(|l| DatasetProps::LegacyFile(Box::new(l)))
            }
            _ => parse(tp, at, found).map(DatasetProps::Table),
        };
        if let Some(loc) = tp.get("location").filter(|l| !l.is_null())
            && matches!(kind, "DelimitedText" | "Parquet" | "Json" | "Binary")
        {
            parse::<Location>(loc, "typeProperties.location", found);
        }
        props.unwrap_or(DatasetProps::Invalid)
    }

    /// A file the Copy sink writes (else a table, or unsupported).
    pub fn is_file(&self) -> bool {
        matches!(
            self,
            DatasetProps::DelimitedText(_)
                | DatasetProps::Parquet(_)
                | DatasetProps::Json(_)
                | DatasetProps::LegacyFile(_)
                | DatasetProps::Binary(_)
        )
    }
}
