//! Delete: the files of a file dataset, chosen as a Copy source chooses
//! them (`storeSettings` wildcards, prefix, modified window), only in the
//! dataset's folder (and its subfolders with `recursive`, default false).
//! A file selected outside that folder (a wildcard folder or prefix that
//! leads elsewhere) fails the activity before anything is deleted. On a
//! `file://` connection, a recursive Delete also removes the subfolders it
//! left empty (object stores have no folders to remove).

use highwater_core::{Error, Result};
use serde_json::{Value, json};

use crate::pipeline::datasets::dataset;
use crate::pipeline::files;
use crate::pipeline::{Activity, Done, Frame};

pub(crate) async fn delete(frame: &Frame, a: &Activity, tp: &Value) -> Result<Done> {
    let r = a.lookup_dataset().ok_or_else(|| {
        Error::config(
            "typeProperties.dataset",
            "a Delete needs a dataset reference",
        )
    })?;
    let d = dataset(frame, &r)?;
    if !d.is_file {
        return Err(Error::config(
            format!("dataset {}", d.name),
            "Delete removes files of file datasets only",
        ));
    }
    let mut settings = tp.get("storeSettings").cloned().unwrap_or(Value::Null);
    if let (Some(m), Some(rec)) = (settings.as_object_mut(), tp.get("recursive"))
        && !m.contains_key("recursive")
    {
        m.insert("recursive".into(), rec.clone());
    } else if settings.is_null()
        && let Some(rec) = tp.get("recursive")
    {
        settings = json!({ "recursive": rec });
    }
    let filters = files::filters(&settings, &d, false)?;
    let fs = files::open(frame, &d)?;
    let loc = files::location(&d);
    let selected = files::select(&fs, &loc, &filters).await?;
    let inside = |k: &str| loc.folder.is_empty() || k.starts_with(&format!("{}/", loc.folder));
    if let Some(out) = selected.iter().find(|f| !inside(f.key())) {
        return Err(Error::config(
            format!("dataset {}", d.name),
            format!(
                "the filters select {}, outside the dataset's folder {}; nothing was deleted",
                fs.url(out.key()),
                fs.url(&loc.folder)
            ),
        ));
    }
    files::delete(&fs, &selected).await?;
    if filters.recursive {
        remove_empty_local_folders(&fs, &loc.folder);
    }
    let deleted: Vec<String> = selected.iter().map(|f| fs.url(f.key())).collect();
    Ok(Done {
        output: json!({
            "filesDeleted": deleted.len(),
            "deleted": selected.iter().map(|f| f.rel.clone()).collect::<Vec<_>>(),
        }),
        outputs: deleted,
        ..Done::default()
    })
}

/// Remove the empty directories below `folder` on a local connection,
/// deepest first (the dataset's folder itself stays).
fn remove_empty_local_folders(fs: &files::FileStore, folder: &str) {
    let Some(root) = fs.root.strip_prefix("file://") else {
        return;
    };
    let top = std::path::Path::new(root).join(folder);
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("_highwater") {
                walk(&p, out);
                out.push(p);
            }
        }
    }
    let mut dirs = Vec::new();
    walk(&top, &mut dirs);
    for d in dirs {
        // Fails (and is left) when not empty.
        let _ = std::fs::remove_dir(d);
    }
}
