//! Datasets as one activity uses them: `typeProperties` evaluated with the
//! reference's parameters, the linked service's connection, the table or
//! query to read, the file to write.

use highwater_core::{Delta, Error, NullCursorPolicy, ReadRequest, Relation, Result, TableWrite};
use serde_json::Value;

use super::model::DatasetRef;
use super::{EvalScope, Frame, resolve, scope, sink, text};

/// A dataset with its `typeProperties` evaluated for one use.
pub(crate) struct ResolvedDataset {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) linked_service: String,
    pub(crate) tp: Value,
    pub(crate) is_file: bool,
    /// The container (bucket, file system) this file dataset binds its
    /// account-level connection (`az://`, `s3://`) to; its paths are then
    /// inside that container. `None`: the connection names its own.
    pub(crate) bucket: Option<String>,
}

pub(crate) fn dataset(frame: &Frame, r: &DatasetRef) -> Result<ResolvedDataset> {
    let d = frame.run.factory.datasets.get(&r.name).ok_or_else(|| {
        Error::config(
            format!("dataset {}", r.name),
            "not found in dataset/ or datasets/ next to the pipeline",
        )
    })?;
    let mut params = d.defaults.clone();
    for (k, v) in &r.parameters {
        let v = resolve(
            v,
            &format!("dataset {} parameter {k}", r.name),
            &scope(frame),
        )?;
        params.insert(k.clone(), v);
    }
    let tp = resolve(
        &d.type_properties,
        &format!("dataset {} typeProperties", d.name),
        &EvalScope {
            frame,
            dataset: Some(&params),
        },
    )?;
    let mut resolved = ResolvedDataset {
        name: d.name.clone(),
        kind: d.kind.clone(),
        linked_service: d.linked_service.clone(),
        tp,
        is_file: d.is_file(),
        bucket: None,
    };
    let account = frame
        .run
        .plan
        .connections
        .get(&d.linked_service)
        .filter(|c| c.kind.is_account());
    if let Some(c) = account.filter(|_| resolved.is_file) {
        let container = super::files::location(&resolved).container;
        if container.is_empty() {
            return Err(Error::config(
                format!("dataset {}", d.name),
                format!(
                    "its connection {} ({}) is a whole storage account: the dataset's location must name the container (container, bucketName or fileSystem)",
                    d.linked_service,
                    c.url.redacted()
                ),
            ));
        }
        resolved.bucket = Some(container);
    }
    Ok(resolved)
}

/// The connection a file dataset reads and writes through: its linked
/// service's, bound to the dataset's container when that connection is a
/// whole account (`az://`, `s3://`).
pub(crate) fn dataset_connection<'a>(
    frame: &'a Frame,
    d: &ResolvedDataset,
) -> Result<std::borrow::Cow<'a, highwater_config::ConnectionSpec>> {
    use highwater_core::ConnKind;
    let conn = connection(frame, &d.linked_service)?;
    let Some(bucket) = &d.bucket else {
        return Ok(std::borrow::Cow::Borrowed(conn));
    };
    let mut bound = conn.clone();
    bound.kind = match &conn.kind {
        ConnKind::Azure { .. } => ConnKind::Azure {
            container: bucket.clone(),
            prefix: String::new(),
        },
        ConnKind::S3 { .. } => ConnKind::S3 {
            bucket: bucket.clone(),
            prefix: String::new(),
        },
        other => other.clone(),
    };
    Ok(std::borrow::Cow::Owned(bound))
}

pub(crate) fn connection<'a>(
    frame: &'a Frame,
    linked_service: &str,
) -> Result<&'a highwater_config::ConnectionSpec> {
    frame
        .run
        .plan
        .connections
        .get(linked_service)
        .ok_or_else(|| {
            Error::config(
                format!("linked service {linked_service}"),
                format!(
                    "no connection named {linked_service} in {}",
                    frame.run.plan.file
                ),
            )
        })
}

/// The table of a table dataset: `tableName` or `schema` + `table`.
pub(crate) fn dataset_table(d: &ResolvedDataset) -> Option<Relation> {
    let tp = &d.tp;
    let unbracket = |s: &str| {
        s.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    };
    if let Some(t) = tp
        .get("table")
        .map(|v| text(Some(v)))
        .filter(|t| !t.is_empty())
    {
        let schema = tp
            .get("schema")
            .map(|v| text(Some(v)))
            .filter(|s| !s.is_empty())
            .map(|s| unbracket(&s));
        return Some(Relation::Table {
            schema,
            name: unbracket(&t),
        });
    }
    let t = text(tp.get("tableName"));
    if t.trim().is_empty() {
        return None;
    }
    let parts: Vec<String> = t.split("].[").map(unbracket).collect();
    Some(if parts.len() == 2 {
        Relation::Table {
            schema: Some(parts[0].clone()),
            name: parts[1].clone(),
        }
    } else {
        Relation::table(&unbracket(&t))
    })
}

/// The query of a Lookup or Copy source, else the dataset's table.
pub(crate) fn source_relation(tp: &Value, d: &ResolvedDataset) -> Result<Relation> {
    let source = tp.get("source").cloned().unwrap_or(Value::Null);
    for k in ["sqlReaderQuery", "query", "sqlQuery"] {
        let q = text(source.get(k));
        if !q.trim().is_empty() {
            return Ok(Relation::Query(q));
        }
    }
    dataset_table(d).ok_or_else(|| {
        Error::config(
            format!("dataset {}", d.name),
            "no query in typeProperties.source and no table in the dataset",
        )
    })
}

pub(crate) async fn read_rows(
    frame: &Frame,
    d: &ResolvedDataset,
    relation: Relation,
    record_name: &str,
) -> Result<highwater_core::Extract> {
    if d.is_file {
        return Err(Error::config(
            format!("dataset {}", d.name),
            format!(
                "a {} dataset cannot be read yet; read from a table dataset",
                d.kind
            ),
        ));
    }
    let conn = connection(frame, &d.linked_service)?;
    let relation = match relation {
        Relation::Table { .. } => Relation::table(
            &highwater_connectors::resolve_table(
                &conn.kind,
                conn.url.expose(),
                &relation.to_string(),
            )
            .await?,
        ),
        q => q,
    };
    let source = highwater_connectors::source(&conn.kind, conn.url.expose()).await?;
    let req = ReadRequest {
        stream: record_name.to_string(),
        relation,
        delta: Delta::Full,
        primary_key: vec![],
        batch_size: 16_384,
        on_null_cursor: NullCursorPolicy::default(),
        partitions: 1,
    };
    let read = source.read(&req);
    crate::attempt::bounded("reading the source", crate::attempt::idle_timeout(), read).await
}

/// Output path and format of a file dataset. A dataset that names only a
/// folder gets a file inside it named by Data Factory's rule for copies
/// from a database, `data_<activity run id>.<ext>`, so two copies (say
/// the iterations of a parallel ForEach) never write the same file; the
/// bool says whether the name was generated.
pub(crate) fn file_target(
    d: &ResolvedDataset,
    activity_run_id: &str,
    extension: Option<&str>,
) -> (String, &'static str, bool) {
    let tp = &d.tp;
    let loc = tp.get("location").unwrap_or(tp);
    let mut parts = vec![super::files::location(d).folder];
    let file_name = text(loc.get("fileName"));
    let format = file_format(d);
    let generated = file_name.trim_matches('/').is_empty();
    if generated {
        let ext = match (extension, format) {
            (Some(e), _) => e,
            (None, "parquet") => ".parquet",
            (None, "jsonl") => ".json",
            _ => ".txt",
        };
        parts.push(format!("data_{activity_run_id}{ext}"));
    } else {
        parts.push(file_name);
    }
    let path = parts
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    (path, format, generated)
}

/// The output format of a file dataset.
pub(crate) fn file_format(d: &ResolvedDataset) -> &'static str {
    let tp = &d.tp;
    match d.kind.as_str() {
        "Parquet" => "parquet",
        "Json" => "jsonl",
        "DelimitedText" => "csv",
        _ => match tp
            .get("format")
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str)
        {
            Some("ParquetFormat") => "parquet",
            Some("JsonFormat") => "jsonl",
            _ => "csv",
        },
    }
}

/// A Copy into a table dataset: the table, and how rows land — insert
/// (Data Factory's default) appends; an upsert in any of its spellings
/// ([`sink::parse`]) merges by `upsertSettings.keys`, in the sink's one
/// commit transaction with its `_highwater_commits` record.
pub(crate) fn table_sink(tp: &Value, d: &ResolvedDataset) -> Result<(String, TableWrite)> {
    let place = || format!("dataset {}", d.name);
    let sink = tp.get("sink").cloned().unwrap_or(Value::Null);
    let write = sink::parse(&sink, false).map_err(|e| Error::config(place(), e.join("; ")))?;
    let table = dataset_table(d)
        .ok_or_else(|| Error::config(place(), "the table dataset names no tableName or table"))?;
    Ok((table.to_string(), write))
}
