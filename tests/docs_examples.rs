//! The runnable examples of the docs (issue 13): every page of `docs/`
//! per mode and per target is run, block by block, in a fresh folder.
//!
//! Fenced blocks whose info string ends in ` example` are run in order:
//!
//! ```text
//! sql example    statements run on src.db (SQLite) in the folder
//! yaml example   written as highwater.yaml
//! sh example     one command a line:
//!                  export NAME=VALUE        set for the following commands
//!                  highwater ARGS…  # → T   run; exit 0; stdout holds T
//!                  aws s3 mb s3://B …       create bucket B in moto
//!                  az storage container create --name C …   in Azurite
//! ```
//!
//! Bucket and container names `example-lake` are replaced by a unique name.

use std::path::Path;
use std::process::Command;

use crate::util::*;

fn python() -> String {
    std::env::var("HIGHWATER_TEST_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/highwater-ci/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

fn create_container(kind: &str, name: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/objstore.py");
    let o = Command::new(python())
        .args([script, "create", kind, name])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); run `bash .ci/run` once", python()));
    assert!(
        o.status.success(),
        "create {kind} {name} (is the emulator running? `bash .ci/run` starts Azurite and moto): {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Split a command line: whitespace, with "…" and '…' quoting.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The example blocks of a page: (kind, text).
fn blocks(page: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = page.lines();
    while let Some(l) = lines.next() {
        let Some(info) = l.trim_start().strip_prefix("```") else {
            continue;
        };
        let info = info.trim();
        let mut body = String::new();
        for b in lines.by_ref() {
            if b.trim_start().starts_with("```") {
                break;
            }
            body.push_str(b);
            body.push('\n');
        }
        if let Some(kind) = info.strip_suffix(" example") {
            out.push((kind.trim().to_string(), body));
        }
    }
    out
}

fn run_page(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    let page = std::fs::read_to_string(&path).unwrap();
    let dir = Dir::new("docs");
    let lake = unique("doc").replace('_', "-");
    let mut env: Vec<(String, String)> = vec![];
    let examples = blocks(&page);
    assert!(
        examples.iter().any(|(k, _)| k == "yaml") && examples.iter().any(|(k, _)| k == "sh"),
        "{name}: no runnable example"
    );
    for (kind, text) in examples {
        let text = text.replace("example-lake", &lake);
        match kind.as_str() {
            "sql" => rusqlite::Connection::open(dir.join("src.db"))
                .unwrap()
                .execute_batch(&text)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{text}")),
            "yaml" => dir.write("highwater.yaml", &text),
            "sh" => {
                for line in text.lines() {
                    let (cmd, expect) = match line.split_once("# →") {
                        Some((c, e)) => (c.trim(), Some(e.trim())),
                        None => (line.split('#').next().unwrap_or("").trim(), None),
                    };
                    let w = words(cmd);
                    match w.first().map(String::as_str) {
                        None => {}
                        Some("export") => {
                            let (k, v) = w[1].split_once('=').unwrap();
                            env.push((k.to_string(), v.to_string()));
                        }
                        Some("aws") => create_container("s3", w[3].trim_start_matches("s3://")),
                        Some("az") => {
                            let i = w.iter().position(|x| x == "--name").unwrap();
                            create_container("az", &w[i + 1]);
                        }
                        Some("highwater") => {
                            let args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
                            let env: Vec<(&str, &str)> =
                                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                            let o = dir.hw_env(&args, &env);
                            assert!(
                                o.status.success(),
                                "{name}: `{cmd}` failed\n--- stdout\n{}\n--- stderr\n{}",
                                stdout(&o),
                                stderr(&o)
                            );
                            if let Some(e) = expect {
                                assert!(
                                    stdout(&o).contains(e),
                                    "{name}: `{cmd}` printed no `{e}`:\n{}",
                                    stdout(&o)
                                );
                            }
                        }
                        Some(other) => panic!("{name}: unknown example command {other}"),
                    }
                }
            }
            other => panic!("{name}: unknown example block `{other} example`"),
        }
    }
}

#[test]
fn mode_full() {
    run_page("mode-full.md");
}

#[test]
fn mode_watermark() {
    run_page("mode-watermark.md");
}

#[test]
fn mode_change_tracking() {
    run_page("mode-change-tracking.md");
}

#[test]
fn target_files_local() {
    run_page("target-files.md");
}

#[test]
fn target_s3() {
    run_page("target-s3.md");
}

#[test]
fn target_azure_blob() {
    run_page("target-azure-blob.md");
}

#[test]
fn target_databases() {
    run_page("target-databases.md");
}

#[test]
fn verify_page() {
    run_page("verify.md");
}

#[test]
fn every_doc_page_the_readme_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for page in [
        "mode-full.md",
        "mode-watermark.md",
        "mode-change-tracking.md",
        "target-files.md",
        "target-s3.md",
        "target-azure-blob.md",
        "target-databases.md",
    ] {
        assert!(
            readme.contains(&format!("docs/{page}")),
            "README does not link docs/{page}"
        );
    }
    for link in readme.split("](").skip(1) {
        let target = link.split(')').next().unwrap_or("");
        if target.starts_with("docs/") {
            assert!(
                root.join(target).exists(),
                "README links a missing {target}"
            );
        }
    }
}
