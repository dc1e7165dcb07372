//! Copy between Binary datasets: files copied as they are, byte for byte.
//!
//! Each selected file is written with one atomic put at its name in the
//! sink's folder: its path below the source folder (`copyBehavior`
//! PreserveHierarchy, the default), or its name alone (FlattenHierarchy),
//! or the sink dataset's `fileName` when one file is copied. A re-run puts
//! the same bytes at the same names, so a crash never leaves a partial
//! file or a duplicate. `deleteFilesAfterCompletion` deletes the sources
//! after every file was written.

use std::time::Instant;

use highwater_core::{Error, Result};
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

use crate::pipeline::datasets::ResolvedDataset;
use crate::pipeline::files::{self, path};
use crate::pipeline::{Done, Frame, text};

pub(crate) async fn copy_files(
    frame: &Frame,
    src: &ResolvedDataset,
    dst: &ResolvedDataset,
    tp: &Value,
) -> Result<Done> {
    if src.kind != "Binary" || dst.kind != "Binary" {
        return Err(Error::config(
            "inputs/outputs",
            format!(
                "a Binary dataset copies only to and from another Binary dataset ({} {} → {} {})",
                src.kind, src.name, dst.kind, dst.name
            ),
        ));
    }
    let source = tp.get("source").cloned().unwrap_or(Value::Null);
    let behavior = text(
        tp.get("sink")
            .and_then(|s| s.get("storeSettings"))
            .and_then(|s| s.get("copyBehavior")),
    );
    let flatten = behavior.eq_ignore_ascii_case("FlattenHierarchy");
    if !(behavior.is_empty() || flatten || behavior.eq_ignore_ascii_case("PreserveHierarchy")) {
        return Err(Error::config(
            "sink.storeSettings.copyBehavior",
            format!(
                "`{behavior}` does not apply to Binary copies; use PreserveHierarchy or FlattenHierarchy"
            ),
        ));
    }
    let started = Instant::now();
    let sel = files::select_source(frame, src, &source).await?;
    let out = files::open(frame, dst)?;
    let to = files::location(dst);
    if to.file.is_some() && sel.files.len() > 1 {
        return Err(Error::config(
            format!("dataset {}", dst.name),
            format!(
                "names one file ({}), but the source selects {} files; name only a folder",
                to.file.as_deref().unwrap_or_default(),
                sel.files.len()
            ),
        ));
    }
    if flatten {
        let mut seen = std::collections::BTreeSet::new();
        if let Some(f) = sel.files.iter().find(|f| !seen.insert(f.name())) {
            return Err(Error::config(
                "sink.storeSettings.copyBehavior",
                format!(
                    "FlattenHierarchy would write two files named {} into one folder; use PreserveHierarchy",
                    f.name()
                ),
            ));
        }
    }
    let mut bytes = 0u64;
    let mut written = Vec::new();
    for f in &sel.files {
        let name = match &to.file {
            Some(n) => n.clone(),
            None if flatten => f.name().to_string(),
            None => f.rel.clone(),
        };
        let key = [to.folder.as_str(), name.as_str()]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let data = files::bytes(&sel.fs, f).await?;
        bytes += data.len() as u64;
        out.store
            .put(&path(&key, "sink file")?, PutPayload::from(data))
            .await
            .map_err(|e| files::store_error(&out, &key, e))?;
        written.push(out.url(&key));
    }
    if sel.filters.delete_after {
        files::delete(&sel.fs, &sel.files).await?;
    }
    Ok(Done {
        output: json!({
            "dataRead": bytes,
            "dataWritten": bytes,
            "filesRead": sel.files.len(),
            "filesWritten": written.len(),
            "copyDuration": started.elapsed().as_secs(),
            "sourcePeakConnections": 1,
            "sinkPeakConnections": 1,
        }),
        outputs: written,
        ..Done::default()
    })
}
