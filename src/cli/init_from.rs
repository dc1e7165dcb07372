//! `highwater init --from URL`: look at a real database and write a
//! commented `highwater.yaml` with one stream per table.
//!
//! ```text
//! list tables (connectors::discover) ─► filter --tables ─► describe each
//!   (Source::describe, as check and run do: Arrow types, primary key)
//!   ─► propose: cursor column by name and type → watermark
//!               no cursor, a primary key      → change_tracking
//!               neither                       → full
//!   ─► render YAML (identifiers quoted for YAML and for Relation::table),
//!      secrets in the URLs replaced by ${…} placeholders
//! ```
//!
//! Like dlt's `sql_database` reflection and Sling's `sling conns discover`,
//! discovery reads the catalog only; nothing is created in the source.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use arrow_schema::{DataType, Schema};
use highwater_config::SecretUrl;
use highwater_connectors::discover::{self, Found};
use highwater_core::{ConnKind, Relation};

use super::output;

/// What `init --from` was given.
pub struct InitFrom<'a> {
    pub config: &'a Path,
    pub force: bool,
    pub from: &'a str,
    pub schema: Option<&'a str>,
    pub tables: Option<&'a str>,
    pub to: Option<&'a str>,
    pub format: &'a str,
    /// `schedule:` for every stream (cron), for `highwater serve`.
    pub schedule: Option<&'a str>,
}

/// One proposed stream.
struct Proposal {
    stream: String,
    found: Found,
    primary_key: Vec<String>,
    cursor: Option<(String, String)>,
    /// The cursor is a zone-less timestamp (PostgreSQL, MariaDB).
    zoneless: bool,
    /// Why no cursor / about the mode.
    notes: Vec<String>,
    mode: &'static str,
}

pub async fn run(a: InitFrom<'_>) -> i32 {
    if a.config.exists() && !a.force {
        output::error(&format!(
            "{} exists already (use --force to replace it)",
            a.config.display()
        ));
        return 2;
    }
    if !matches!(a.format, "csv" | "parquet" | "jsonl") {
        output::error("--format: expected csv, parquet or jsonl");
        return 2;
    }
    let base = a
        .config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // `${VAR}` in the given URLs is read from the environment now and
    // written as it is.
    let from_real = match expand(a.from) {
        Ok(u) => u,
        Err(e) => return fail(&format!("--from: {e}")),
    };
    let kind = match highwater_config::plan::parse_connection(&from_real, Path::new(".")) {
        Ok((_, k)) => k,
        Err(e) => return fail(&format!("--from: {e}")),
    };
    if let Some(to) = a.to
        && let Err(e) = highwater_config::plan::parse_connection(to, Path::new("."))
    {
        return fail(&format!("--to: {e}"));
    }
    let secret = SecretUrl::new(from_real.clone());
    let redact = |t: &str| {
        let mut s = highwater_config::Secrets::default();
        s.add_url(&secret);
        s.redact(t)
    };
    let found = match discover::tables(&kind, &from_real, a.schema).await {
        Ok(f) => f,
        Err(e) => {
            let msg = match e.kind() {
                // Names --from or --schema already.
                highwater_core::ErrorKind::Config => e.to_string(),
                _ => format!("--from {secret}: {e}"),
            };
            output::error(&redact(&msg));
            return e.exit_code();
        }
    };
    let patterns: Vec<String> = a
        .tables
        .map(|t| {
            t.split(',')
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let found: Vec<Found> = found
        .into_iter()
        .filter(|f| {
            patterns.is_empty()
                || patterns.iter().any(|p| {
                    let q = match &f.schema {
                        Some(s) => format!("{s}.{}", f.name),
                        None => f.name.clone(),
                    };
                    glob(p, &f.name.to_lowercase()) || glob(p, &q.to_lowercase())
                })
        })
        .collect();
    if found.is_empty() {
        let what = match (a.schema, a.tables) {
            (Some(s), Some(t)) => format!(" in schema {s} matching {t}"),
            (Some(s), None) => format!(" in schema {s}"),
            (None, Some(t)) => format!(" matching {t}"),
            (None, None) => String::new(),
        };
        return fail(&format!(
            "no table{what} found in {secret}; nothing written"
        ));
    }
    let source = match highwater_connectors::source(&kind, &from_real).await {
        Ok(s) => s,
        Err(e) => return fail(&redact(&e.to_string())),
    };
    let qualify_all = {
        let schemas: BTreeSet<_> = found.iter().map(|f| f.schema.clone()).collect();
        schemas.len() > 1
    };
    let mut names = BTreeSet::new();
    let mut proposals = Vec::new();
    for f in found {
        let rel = Relation::Table {
            schema: f.schema.clone(),
            name: f.name.clone(),
        };
        let described = match source.describe(&rel).await {
            Ok(info) => source.primary_key(&rel).await.map(|key| (info, key)),
            Err(e) => Err(e),
        };
        let (info, key) = match described {
            Ok(i) => i,
            Err(e) => {
                output::error(&redact(&format!("describing {rel}: {e}")));
                return e.exit_code();
            }
        };
        let base_name = match (&f.schema, qualify_all) {
            (Some(s), true) if s != "public" => format!("{s}_{}", f.name),
            _ => f.name.clone(),
        };
        let stream = unique_name(&stream_name(&base_name), &mut names);
        proposals.push(propose(stream, f, &kind, &info.schema, key));
    }

    // Secrets stay out of the file.
    let (from_text, mut vars) = SecretUrl::new(a.from).with_placeholders("SOURCE");
    let from_text = portable_path(&from_text, &kind, base);
    let to_text = match a.to {
        Some(t) => {
            let (text, v) = SecretUrl::new(t).with_placeholders("TARGET");
            vars.extend(v);
            text
        }
        None => "file://./lake".to_string(),
    };
    let to_kind =
        highwater_config::plan::parse_connection(&expand(&to_text).unwrap_or_default(), base)
            .map(|(_, k)| k)
            .unwrap_or(ConnKind::File(base.join("lake")));
    let to_text = portable_path(&to_text, &to_kind, base);
    let mut seen = BTreeSet::new();
    vars.retain(|(v, _)| seen.insert(v.clone()));

    let text = render(
        &Target {
            from: &from_text,
            to: &to_text,
            kind: &to_kind,
            format: a.format,
            schedule: a.schedule,
        },
        &proposals,
        &vars,
    );
    if let Err(e) = std::fs::write(a.config, &text) {
        return fail(&format!("cannot write {}: {e}", a.config.display()));
    }
    let count = |m: &str| proposals.iter().filter(|p| p.mode == m).count();
    println!(
        "wrote {}: {} stream(s) ({} watermark, {} change_tracking, {} full)",
        a.config.display(),
        proposals.len(),
        count("watermark"),
        count("change_tracking"),
        count("full")
    );
    for (var, _) in &vars {
        println!("  set {var} in the environment: the file reads the password from ${{{var}}}");
    }
    println!(
        "next: review the proposals (comments say why), then `highwater check` and `highwater run`"
    );
    0
}

fn fail(msg: &str) -> i32 {
    output::error(msg);
    2
}

/// `${VAR}` replaced from the environment.
fn expand(url: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = url;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find('}').ok_or("unclosed `${`")?;
        let var = &after[..j];
        let v = std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?;
        out.push_str(&v);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A relative sqlite:// or file:// path given on the command line is
/// relative to the current folder; the config resolves it against its own
/// folder, so write it absolute when the two differ.
fn portable_path(url: &str, kind: &ConnKind, base: &Path) -> String {
    let rel = |scheme: &str| {
        let p = url.strip_prefix(scheme)?;
        let path = Path::new(p);
        let same = std::fs::canonicalize(base).ok() == std::env::current_dir().ok();
        (path.is_relative() && !same).then(|| {
            std::path::absolute(path)
                .map(|a| format!("{scheme}{}", a.display()))
                .unwrap_or_else(|_| url.to_string())
        })
    };
    let fixed = match kind {
        ConnKind::Sqlite(_) => rel("sqlite://"),
        ConnKind::File(_) => rel("file://"),
        _ => None,
    };
    fixed.unwrap_or_else(|| url.to_string())
}

/// `*` and `?` globbing.
fn glob(p: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A stream name from a table name: letters and digits kept (any script),
/// anything else `_` (stream names name files and folders).
fn stream_name(table: &str) -> String {
    let mut s: String = table
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect();
    let trimmed = s.trim_matches('_');
    s = if trimmed.is_empty() {
        "table".to_string()
    } else {
        trimmed.to_string()
    };
    s.chars()
        .take(highwater_config::plan::MAX_STREAM_NAME - 4)
        .collect()
}

fn unique_name(base: &str, taken: &mut BTreeSet<String>) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while !taken.insert(name.to_lowercase()) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// Lower-case letters and digits only: `Last-Modified At` → `lastmodifiedat`.
fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn type_text(t: &DataType) -> &'static str {
    match t {
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::Date32 | DataType::Date64 => "date",
        t if t.is_integer() => "integer",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        _ => "other",
    }
}

/// How well a column's name and type say "changes when the row changes":
/// a score (higher wins) and the reason, or `None`.
fn cursor_score(name: &str, t: &DataType, kind: &ConnKind) -> Option<(u32, String)> {
    if !highwater_config::plan::cursor_type_usable(kind, t) {
        return None;
    }
    let n = squash(name);
    let time_like = matches!(t, DataType::Timestamp(..) | DataType::Date32 | DataType::Date64)
        // SQLite keeps timestamps as text.
        || (matches!(kind, ConnKind::Sqlite(_))
            && matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View));
    let is_int = t.is_integer();
    let (score, why) = if time_like && (n == "updatedat" || n == "updatedon" || n == "updated") {
        (100, "named like an update time (updated_at)")
    } else if time_like && n.starts_with("lastmodif") {
        (95, "named like a last-modified time (last_modified*)")
    } else if time_like && n.starts_with("modif") {
        (90, "named like a modification time (modified*)")
    } else if time_like && (n.contains("updated") || n.starts_with("lastupdate")) {
        (85, "named like an update time (*updated*)")
    } else if time_like
        && (n.starts_with("changedat") || n.starts_with("lastchange") || n == "mtime")
    {
        (80, "named like a change time")
    } else if is_int
        && (n.ends_with("rowversion")
            || n == "rowver"
            || n == "version"
            || n.ends_with("changeversion")
            || n.ends_with("changeseq")
            || n == "lsn")
    {
        (
            70,
            "named like a row version (rowversion-like): it must grow on every change",
        )
    } else {
        return None;
    };
    // A date moves once a day: a row version or a timestamp is finer.
    let (score, why) = if matches!(t, DataType::Date32 | DataType::Date64) {
        (
            score - 40,
            format!("{why}; a date: rows updated twice a day arrive again"),
        )
    } else {
        (score, why.to_string())
    };
    Some((score, format!("{}, {why}", type_text(t))))
}

fn propose(
    stream: String,
    found: Found,
    kind: &ConnKind,
    schema: &Schema,
    primary_key: Vec<String>,
) -> Proposal {
    let mut notes = Vec::new();
    let best = schema
        .fields()
        .iter()
        .filter_map(|f| cursor_score(f.name(), f.data_type(), kind).map(|(s, why)| (s, f, why)))
        .max_by_key(|(s, f, _)| (*s, std::cmp::Reverse(f.name().clone())));
    let cursor = best
        .as_ref()
        .map(|(_, f, why)| (f.name().clone(), why.clone()));
    let zoneless = best.as_ref().is_some_and(|(_, f, _)| {
        matches!(
            f.data_type(),
            DataType::Timestamp(_, None) | DataType::Date32
        ) && matches!(kind, ConnKind::Postgres | ConnKind::Mysql)
    });
    let mode = if cursor.is_some() {
        "watermark"
    } else if !primary_key.is_empty() && !found.view {
        notes.push(
            "no column named like an update time or row version: change_tracking finds the \
             changes instead (the first run creates triggers and a change log next to the \
             table: it needs the rights to; `highwater changes disable` removes them)"
                .to_string(),
        );
        "change_tracking"
    } else {
        notes.push(if found.view {
            "a view with no column named like an update time: every run copies all rows".into()
        } else {
            "no primary key and no column named like an update time: every run copies all rows \
             (add a primary key for change_tracking)"
                .into()
        });
        "full"
    };
    if cursor.is_none()
        && let [k] = primary_key.as_slice()
        && schema
            .field_with_name(k)
            .is_ok_and(|f| f.data_type().is_integer())
    {
        notes.push(format!(
            "if rows are only ever inserted, never updated, `mode: watermark` with `cursor: {k}` \
             is cheaper"
        ));
    }
    let created = schema.fields().iter().find(|f| {
        matches!(
            squash(f.name()).as_str(),
            "createdat" | "created" | "insertedat"
        )
    });
    if cursor.is_none()
        && let Some(c) = created
    {
        notes.push(format!(
            "{} is not proposed as the cursor: it does not move when a row is updated",
            c.name()
        ));
    }
    Proposal {
        stream,
        found,
        primary_key,
        cursor,
        zoneless,
        notes,
        mode,
    }
}

/// A YAML scalar: plain when it is a simple identifier that YAML reads as
/// a string, otherwise double-quoted (JSON escaping is valid YAML).
fn y(s: &str) -> String {
    let simple = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let keyword = matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
    );
    if simple && !keyword {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The `table:` text `Relation::table` reads back as (schema, name): a
/// part holding `.` or `"` is double-quoted, quotes doubled.
fn table_text(f: &Found) -> String {
    let part = |p: &str| {
        if p.contains(['.', '"']) {
            format!("\"{}\"", p.replace('"', "\"\""))
        } else {
            p.to_string()
        }
    };
    match &f.schema {
        Some(s) => format!("{}.{}", part(s), part(&f.name)),
        None => part(&f.name),
    }
}

fn list(cols: &[String]) -> String {
    format!(
        "[{}]",
        cols.iter().map(|c| y(c)).collect::<Vec<_>>().join(", ")
    )
}

/// The connections and per-stream settings `render` writes.
struct Target<'a> {
    from: &'a str,
    to: &'a str,
    kind: &'a ConnKind,
    format: &'a str,
    schedule: Option<&'a str>,
}

fn render(t: &Target<'_>, proposals: &[Proposal], vars: &[(String, String)]) -> String {
    let (from, to, to_kind, format) = (t.from, t.to, t.kind, t.format);
    let file_target = matches!(
        to_kind,
        ConnKind::File(_) | ConnKind::Azure { .. } | ConnKind::S3 { .. }
    );
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# highwater.yaml — written by `highwater init --from`: one stream per table.\n\
         # Each stream's comment says why its mode and cursor were proposed; edit freely.\n\
         # Check it with `highwater check`, preview with `highwater run --dry-run`,\n\
         # run it with `highwater run`. Docs: README.md and docs/."
    );
    if !vars.is_empty() {
        let _ = writeln!(
            o,
            "#\n# Secrets are not in this file: set {} in the environment.",
            vars.iter()
                .map(|(v, _)| v.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    let _ = writeln!(
        o,
        "\n# Where positions (watermarks, versions) and the run history are kept.\n\
         state: .highwater/state.db\n\nconnections:\n  source: {}\n  target: {}",
        y(from),
        y(to)
    );
    if matches!(to_kind, ConnKind::Azure { .. } | ConnKind::S3 { .. }) {
        let _ = writeln!(
            o,
            "  # Cloud credentials come from the environment (README: \"Cloud storage\"):\n  \
             #   az://  AZURE_STORAGE_ACCOUNT_NAME + AZURE_STORAGE_ACCOUNT_KEY (or SAS, connection string)\n  \
             #   s3://  AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL"
        );
    }
    let _ = writeln!(o, "\nstreams:");
    for p in proposals {
        let _ = writeln!(o);
        let what = if p.found.view { "view" } else { "table" };
        let key = if p.primary_key.is_empty() {
            "no primary key".to_string()
        } else {
            format!("primary key ({})", p.primary_key.join(", "))
        };
        let _ = writeln!(o, "  # {what} {}: {key}", table_text(&p.found));
        for n in &p.notes {
            comment(&mut o, "  ", n);
        }
        let _ = writeln!(o, "  {}:", y(&p.stream));
        let _ = writeln!(o, "    from: source");
        let _ = writeln!(o, "    table: {}", y(&table_text(&p.found)));
        let _ = writeln!(o, "    mode: {}", p.mode);
        if let Some((c, why)) = &p.cursor {
            let _ = writeln!(o, "    cursor: {}    # {why}", y(c));
        }
        if !p.primary_key.is_empty() {
            let _ = writeln!(o, "    primary_key: {}", list(&p.primary_key));
        }
        if p.zoneless {
            comment(
                &mut o,
                "    ",
                "the cursor has no time zone: say in which offset every writer writes it, \
                 or the newest 12 h (PostgreSQL) / 13 h (MariaDB) of rows wait for a later run",
            );
            let _ = writeln!(o, "    # writer_time_zone: \"+00:00\"");
        }
        let _ = writeln!(o, "    to: target");
        if file_target {
            let ext = format;
            let path = format!("{0}/{0}-{{run_id}}.{ext}", p.stream);
            let _ = writeln!(o, "    path: {}", y(&path));
            let _ = writeln!(o, "    format: {format}");
        } else {
            let _ = writeln!(o, "    into: {}", y(&p.stream));
            let write = if p.primary_key.is_empty() {
                "append"
            } else {
                "merge"
            };
            let _ = writeln!(o, "    write: {write}");
        }
        match t.schedule {
            Some(cron) => {
                let _ = writeln!(o, "    schedule: {}    # for `highwater serve`", y(cron));
            }
            None => {
                let _ = writeln!(
                    o,
                    "    # schedule: \"*/15 * * * *\"    # for `highwater serve`"
                );
            }
        }
    }
    o
}

/// `text` as `# ` comment lines of at most 88 columns, indented by `indent`.
fn comment(o: &mut String, indent: &str, text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty()
            && indent.len() + 2 + line.chars().count() + 1 + word.chars().count() > 88
        {
            let _ = writeln!(o, "{indent}# {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(o, "{indent}# {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quoting() {
        assert!(glob("ord*", "orders"));
        assert!(glob("*item?", "order items"));
        assert!(!glob("ord*", "customers"));
        assert_eq!(stream_name("Order Items"), "Order_Items");
        assert_eq!(stream_name("\"quoted\""), "quoted");
        assert_eq!(stream_name("prénoms"), "prénoms");
        assert_eq!(y("orders"), "orders");
        assert_eq!(y("yes"), "\"yes\"");
        assert_eq!(y("a\"b c"), "\"a\\\"b c\"");
        let f = Found {
            schema: Some("my.s".into()),
            name: "we\"ird".into(),
            view: false,
        };
        assert_eq!(table_text(&f), "\"my.s\".\"we\"\"ird\"");
        assert_eq!(
            Relation::table(&table_text(&f)),
            Relation::Table {
                schema: Some("my.s".into()),
                name: "we\"ird".into()
            }
        );
    }
}
