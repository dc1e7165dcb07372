//! Validation: [`crate::raw::RawConfig`] → [`Plan`], every error at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use highwater_core::{ConnKind, Error, Lag, NullCursorPolicy, Relation};

use crate::raw::{DurationOrNumber, RawConfig, RawStream};
use crate::secret::{SecretUrl, Secrets};

/// Placeholders a `path:` template may use.
pub const PATH_PLACEHOLDERS: &[&str] = &["stream", "run_id", "yyyy", "MM", "dd", "HH", "mm"];

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The config file as named by the user (for messages).
    pub file: String,
    pub state: StateLocation,
    /// Line of `state:` in the config file (0: not given, the default).
    pub state_line: u64,
    pub concurrency: usize,
    pub connections: BTreeMap<String, ConnectionSpec>,
    pub streams: Vec<StreamPlan>,
    pub secrets: Secrets,
}

/// Where the state store lives.
#[derive(Debug, Clone)]
pub enum StateLocation {
    Sqlite(PathBuf),
    Postgres(SecretUrl),
}

/// A connection, typed by its URL scheme.
#[derive(Debug, Clone)]
pub struct ConnectionSpec {
    pub name: String,
    pub url: SecretUrl,
    pub kind: ConnKind,
    pub line: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full,
    Watermark,
    ChangeTracking,
    /// Log-based change capture (PostgreSQL logical decoding).
    Cdc,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Watermark => "watermark",
            Mode::ChangeTracking => "change_tracking",
            Mode::Cdc => "cdc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Parquet,
    Jsonl,
}

impl FileFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
            FileFormat::Jsonl => "jsonl",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Append,
    Merge,
}

/// Where a stream's rows go.
#[derive(Debug, Clone)]
pub enum Target {
    File { path: String, format: FileFormat },
    Table { into: String, write: WriteMode },
}

/// `window:` of a stream: tumbling windows of its cursor, each
/// `[start, end)` copied once.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPlan {
    pub size_secs: i64,
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: Option<chrono::DateTime<chrono::Utc>>,
    pub delay_secs: i64,
    pub max_concurrency: usize,
    pub retry_count: u32,
    pub retry_interval_secs: i64,
}

/// One validated stream.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub name: String,
    /// Line of the stream's key in the config file.
    pub line: u64,
    pub from: String,
    pub relation: Relation,
    pub mode: Mode,
    pub cursor: Vec<String>,
    pub primary_key: Vec<String>,
    pub to: String,
    pub target: Target,
    pub schedule: Option<String>,
    /// `window:`: the stream runs in tumbling windows of its cursor.
    pub window: Option<WindowPlan>,
    /// `verify:`: when `serve` verifies the stream (cron).
    pub verify: Option<String>,
    pub on_null_cursor: NullCursorPolicy,
    pub lag: Option<Lag>,
    /// `writer_time_zone:` as minutes east of UTC.
    pub writer_offset_minutes: Option<i32>,
    pub batch_size: usize,
    pub change_retention_secs: i64,
    /// `partitions:` of a full load: 1 (one connection), N, or 0 for `auto`.
    pub partitions: usize,
    /// `share_partitions:`: other processes sharing the state may claim
    /// parts of the full load (see the engine's `parts` module).
    pub share_partitions: bool,
}

impl Plan {
    /// `file:line` of a stream, for messages.
    pub fn place(&self, stream: &StreamPlan) -> String {
        format!("{}:{}", self.file, stream.line)
    }
}

/// Parse and validate. `file` names the config in messages; `base_dir` is
/// its folder (relative paths resolve against it); `env` reads variables.
pub fn load(
    file: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, Error> {
    load_inner(file, text, base_dir, env, Purpose::Run)
}

/// Like [`load`], for `highwater pipeline run`: a config that only names
/// connections (and the state store), without streams, is valid.
pub fn load_connections(
    file: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, Error> {
    load_inner(file, text, base_dir, env, Purpose::Connections)
}

/// Like [`load`], for commands that only read the state store (`runs`,
/// `state`): only `state:` must be valid and its `${ENV}` set. A connection
/// whose variables are unset is kept with a placeholder for them (or left
/// out when its URL then does not parse); errors about connections and
/// streams are ignored, and streams that do not validate are left out.
pub fn load_for_history(
    file: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, Error> {
    load_inner(file, text, base_dir, env, Purpose::History)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Run,
    Connections,
    History,
}

fn load_inner(
    file: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    purpose: Purpose,
) -> Result<Plan, Error> {
    let require_streams = purpose == Purpose::Run;
    let history = purpose == Purpose::History;
    // Every URL credential written in the file, known before anything
    // can fail: a message may quote any part of the text.
    let mut secrets = Secrets::default();
    secrets.add_urls_in(text);
    let raw: RawConfig = match serde_saphyr::from_str_with_options(
        text,
        serde_saphyr::options! { with_snippet: false },
    ) {
        Ok(r) => r,
        Err(e) => return Err(yaml_error(file, &e, &secrets)),
    };
    let mut errors: Vec<String> = Vec::new();

    let state_line = raw.state.as_ref().map_or(0, |s| s.referenced.line());
    let state = match &raw.state {
        None => StateLocation::Sqlite(base_dir.join(".highwater/state.db")),
        Some(s) => match expand_url(&s.value, env, &mut secrets) {
            Err(m) => {
                let why = if history {
                    " (the state store's URL needs it, even to read history; the connections' variables are not needed)"
                } else {
                    ""
                };
                errors.push(format!("{file}:{}: state: {m}{why}", s.referenced.line()));
                StateLocation::Sqlite(PathBuf::new())
            }
            Ok(v) if v.starts_with("postgres://") || v.starts_with("postgresql://") => {
                let url = SecretUrl::new(v);
                secrets.add_url(&url);
                if let Some(m) = crate::secret::ambiguous_credentials(url.expose()) {
                    errors.push(format!("{file}:{}: state: {m}", s.referenced.line()));
                }
                StateLocation::Postgres(url)
            }
            Ok(v) => {
                StateLocation::Sqlite(resolve(base_dir, v.strip_prefix("sqlite://").unwrap_or(&v)))
            }
        },
    };

    let concurrency = match &raw.concurrency {
        None => 4,
        Some(c) if c.value >= 1 && c.value <= 256 => c.value as usize,
        Some(c) => {
            errors.push(format!(
                "{file}:{}: concurrency must be between 1 and 256, got {}",
                c.referenced.line(),
                c.value
            ));
            1
        }
    };
    let default_batch = match &raw.batch_size {
        None => 16_384,
        Some(b) if b.value >= 1 && b.value <= 10_000_000 => b.value as usize,
        Some(b) => {
            errors.push(format!(
                "{file}:{}: batch_size must be between 1 and 10000000, got {}",
                b.referenced.line(),
                b.value
            ));
            16_384
        }
    };

    // Reading history: an unset variable of a connection stands for a
    // placeholder (not a secret, never used to connect).
    let lenient = |k: &str| env(k).or_else(|| Some("hw_unset".to_string()));
    let conn_env: &dyn Fn(&str) -> Option<String> = if history { &lenient } else { env };
    // Errors before this point are about `state:` (and the settings above).
    let state_errors = errors.len();
    let mut connections = BTreeMap::new();
    for (name, url) in &raw.connections {
        let line = url.referenced.line();
        match expand_url(&url.value, conn_env, &mut secrets)
            .and_then(|v| parse_connection(&v, base_dir))
        {
            Ok((url, kind)) => {
                secrets.add_url(&url);
                if kind.is_database()
                    && let Some(m) = crate::secret::ambiguous_credentials(url.expose())
                {
                    errors.push(format!("{file}:{line}: connection {name}: {m}"));
                }
                connections.insert(
                    name.clone(),
                    ConnectionSpec {
                        name: name.clone(),
                        url,
                        kind,
                        line,
                    },
                );
            }
            Err(m) => errors.push(format!("{file}:{line}: connection {name}: {m}")),
        }
    }

    if require_streams && raw.streams.is_empty() {
        errors.push(format!(
            "{file}: no streams: add at least one under `streams:`"
        ));
    }
    let mut streams = Vec::new();
    for (name, spanned) in raw.streams {
        let line = key_line(text, &name, spanned.referenced.line());
        let mut errs = Vec::new();
        if let Err(m) = check_stream_name(&name) {
            errs.push(m);
        }
        let s = validate_stream(
            &name,
            spanned.value,
            &connections,
            &raw.connections,
            default_batch,
            &mut errs,
        );
        // A hostile name is quoted, so the message stays one line.
        let shown = match check_stream_name(&name) {
            Ok(()) => name.clone(),
            Err(_) => format!("{name:?}"),
        };
        for e in errs {
            errors.push(format!("{file}:{line}: stream {shown}: {e}"));
        }
        if let Some(mut s) = s {
            s.line = line;
            streams.push(s);
        }
    }

    if history {
        // Only what opening the state store needs matters.
        errors.truncate(state_errors);
    }
    // One line each (a value may hold a newline), no secret.
    let errors: Vec<String> = errors
        .iter()
        .map(|e| {
            let e: String = e
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            secrets.redact(&e)
        })
        .collect();
    match errors.len() {
        0 => Ok(Plan {
            file: file.to_string(),
            state,
            state_line,
            concurrency,
            connections,
            streams,
            secrets,
        }),
        1 => {
            let (place, message) = split_place(&errors[0], file);
            Err(Error::config(place, message))
        }
        n => Err(Error::config(
            file,
            format!(
                "{n} errors in the configuration:\n  {}",
                errors.join("\n  ")
            ),
        )),
    }
}

/// The line of `name:` at or before `value_line` (the mapping's first
/// entry); YAML spans point at the value, users look for the key.
fn key_line(text: &str, name: &str, value_line: u64) -> u64 {
    let lines: Vec<&str> = text.lines().collect();
    let upto = (value_line as usize).min(lines.len());
    for i in (0..upto).rev() {
        let t = lines[i].trim_start();
        for k in [
            name.to_string(),
            format!("\"{name}\""),
            format!("{name:?}"),
            format!("'{name}'"),
        ] {
            if let Some(rest) = t.strip_prefix(&k)
                && rest.trim_start().starts_with(':')
            {
                return i as u64 + 1;
            }
        }
    }
    value_line
}

/// `file:line: message` → (`file:line`, `message`); the Config error prints
/// them joined again, so a single error reads exactly like a listed one.
fn split_place(msg: &str, file: &str) -> (String, String) {
    let Some(rest) = msg.strip_prefix(file) else {
        return (file.to_string(), msg.to_string());
    };
    let line: String = rest
        .strip_prefix(':')
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if line.is_empty() {
        let m = rest.trim_start_matches(':').trim_start();
        return (file.to_string(), m.to_string());
    }
    let m = rest[1 + line.len()..].trim_start_matches(':').trim_start();
    (format!("{file}:{line}"), m.to_string())
}

fn validate_stream(
    name: &str,
    s: RawStream,
    conns: &BTreeMap<String, ConnectionSpec>,
    declared: &BTreeMap<String, serde_saphyr::Spanned<String>>,
    default_batch: usize,
    errs: &mut Vec<String>,
) -> Option<StreamPlan> {
    let conn_ref = |field: &str, v: &Option<String>, errs: &mut Vec<String>| -> Option<String> {
        match v {
            None => {
                errs.push(format!("`{field}` is required (a connection name)"));
                None
            }
            Some(c) if declared.contains_key(c) => Some(c.clone()),
            Some(c) => {
                let known: Vec<&str> = declared.keys().map(String::as_str).collect();
                errs.push(format!(
                    "{field}: unknown connection `{c}` (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
                None
            }
        }
    };
    let from = conn_ref("from", &s.from, errs);
    let to = conn_ref("to", &s.to, errs);

    if let Some(f) = from.as_ref().and_then(|f| conns.get(f))
        && !f.kind.is_database()
    {
        errs.push(format!("from: connection `{}` is not a database", f.name));
    }

    let relation = match (&s.table, &s.query) {
        (Some(t), None) if !t.trim().is_empty() => Some(Relation::table(t.trim())),
        (None, Some(q)) if !q.trim().is_empty() => {
            Some(Relation::Query(q.trim().trim_end_matches(';').to_string()))
        }
        (Some(_), Some(_)) => {
            errs.push("give either `table` or `query`, not both".into());
            None
        }
        _ => {
            errs.push("`table` (or `query`) is required".into());
            None
        }
    };

    let mode = match s.mode.as_deref() {
        None | Some("full") => Mode::Full,
        Some("watermark") => Mode::Watermark,
        Some("change_tracking") => Mode::ChangeTracking,
        Some("cdc") => Mode::Cdc,
        Some(other) => {
            errs.push(format!(
                "mode: unknown mode `{other}` (expected full, watermark, change_tracking or cdc)"
            ));
            Mode::Full
        }
    };
    let cursor = s.cursor.map(|c| c.into_vec()).unwrap_or_default();
    let primary_key = s.primary_key.map(|c| c.into_vec()).unwrap_or_default();
    if cursor
        .iter()
        .chain(&primary_key)
        .any(|c| c.trim().is_empty())
    {
        errs.push("column names must not be empty".into());
    }
    match mode {
        Mode::Watermark if cursor.is_empty() => {
            errs.push("mode watermark needs `cursor` (a column)".into())
        }
        Mode::ChangeTracking if primary_key.is_empty() => {
            errs.push("mode change_tracking needs `primary_key`".into())
        }
        Mode::ChangeTracking if matches!(relation, Some(Relation::Query(_))) => {
            errs.push("mode change_tracking needs `table`, not `query`".into())
        }
        Mode::Cdc if primary_key.is_empty() => errs.push("mode cdc needs `primary_key`".into()),
        Mode::Cdc if matches!(relation, Some(Relation::Query(_))) => {
            errs.push("mode cdc needs `table`, not `query`".into())
        }
        Mode::Cdc
            if from
                .as_ref()
                .and_then(|f| conns.get(f))
                .is_some_and(|f| !matches!(f.kind, ConnKind::Postgres | ConnKind::Mysql)) =>
        {
            errs.push(
                "mode cdc reads PostgreSQL's write-ahead log or MariaDB's binary log: `from` must be a postgres or mysql connection"
                    .into(),
            )
        }
        Mode::Full | Mode::ChangeTracking | Mode::Cdc if !cursor.is_empty() => errs.push(format!(
            "`cursor` is only used by mode watermark (this stream is {})",
            mode.as_str()
        )),
        _ => {}
    }

    let on_null_cursor = match s.on_null_cursor.as_deref() {
        None | Some("error") => NullCursorPolicy::Error,
        Some("skip") => NullCursorPolicy::Skip,
        Some(o) => {
            errs.push(format!("on_null_cursor: expected error or skip, got `{o}`"));
            NullCursorPolicy::Error
        }
    };
    let lag = match &s.lag {
        None => None,
        Some(DurationOrNumber::Number(n)) if (0..=MAX_LAG_UNITS).contains(n) => {
            Some(Lag::Units(*n))
        }
        Some(DurationOrNumber::Number(n)) => {
            errs.push(format!(
                "lag: {n} is out of range: give 0 to {MAX_LAG_UNITS} (cursor units) for an integer cursor, or a duration like 30s, 5m, 2h, 1d for a time cursor"
            ));
            None
        }
        Some(DurationOrNumber::Text(t)) => match parse_duration_secs(t) {
            Some(secs) if secs <= MAX_DURATION_SECS => Some(Lag::Micros(secs * 1_000_000)),
            Some(_) => {
                errs.push(format!(
                    "lag: `{}` is longer than {}d",
                    t.trim(),
                    MAX_DURATION_SECS / 86_400
                ));
                None
            }
            None => {
                errs.push(format!(
                    "lag: `{}` is not a duration like 30s, 5m, 2h, 1d",
                    t.trim()
                ));
                None
            }
        },
    };
    let writer_offset_minutes = match s.writer_time_zone.as_deref().map(str::trim) {
        None => None,
        Some(z) => match parse_utc_offset(z) {
            Some(m) if mode == Mode::Watermark => Some(m),
            Some(_) => {
                errs.push("writer_time_zone: only used by mode watermark".to_string());
                None
            }
            None => {
                errs.push(format!(
                    "writer_time_zone: `{z}` is not a UTC offset like \"+00:00\", \"UTC\" or \"-05:00\" (-14:00 to +14:00; a zone with daylight saving time has no single offset)"
                ));
                None
            }
        },
    };
    let change_retention_secs = match &s.change_retention {
        None => 2 * 86_400,
        Some(DurationOrNumber::Text(t)) => match parse_duration_secs(t) {
            Some(v) if v > 0 && v <= MAX_DURATION_SECS => v,
            Some(v) if v > 0 => {
                errs.push(format!(
                    "change_retention: `{}` is longer than {}d",
                    t.trim(),
                    MAX_DURATION_SECS / 86_400
                ));
                2 * 86_400
            }
            _ => {
                errs.push(format!(
                    "change_retention: `{}` is not a duration like 2d, 12h",
                    t.trim()
                ));
                2 * 86_400
            }
        },
        Some(DurationOrNumber::Number(n)) => {
            errs.push(format!("change_retention: give a unit, e.g. `{n}d`"));
            2 * 86_400
        }
    };
    let partitions = match &s.partitions {
        None => 1,
        Some(DurationOrNumber::Number(n)) if (1..=16).contains(n) => *n as usize,
        Some(DurationOrNumber::Text(t)) if t.trim().eq_ignore_ascii_case("auto") => 0,
        Some(other) => {
            errs.push(format!(
                "partitions: expected a number from 1 to 16 or `auto`, got {}",
                match other {
                    DurationOrNumber::Number(n) => n.to_string(),
                    DurationOrNumber::Text(t) => format!("`{t}`"),
                }
            ));
            1
        }
    };
    if partitions != 1 {
        if mode != Mode::Full {
            errs.push(format!(
                "partitions: splits full loads; this stream is mode {}",
                mode.as_str()
            ));
        }
        if let Some(f) = from.as_ref().and_then(|f| conns.get(f))
            && !matches!(f.kind, ConnKind::Postgres | ConnKind::Mysql)
        {
            errs.push(format!(
                "partitions: parallel reads in one snapshot need a PostgreSQL or MariaDB/MySQL source (`{}` is not: SQLite is one file read by one process)",
                f.name
            ));
        }
    }
    let share_partitions = s.share_partitions.unwrap_or(false);
    if share_partitions {
        if partitions == 1 {
            errs.push("share_partitions: needs `partitions:` (a number, or `auto`)".to_string());
        }
        if let Some(f) = from.as_ref().and_then(|f| conns.get(f))
            && f.kind != ConnKind::Postgres
        {
            errs.push(format!(
                "share_partitions: needs a PostgreSQL source (`{}` is not): only PostgreSQL hands one snapshot to other processes",
                f.name
            ));
        }
        if let Some(t) = to.as_ref().and_then(|t| conns.get(t))
            && t.kind.is_database()
        {
            errs.push(format!(
                "share_partitions: needs a file target (local folder, Azure Blob or S3); `{}` is a database",
                t.name
            ));
        }
        if s.window.is_some() {
            errs.push("share_partitions: a windowed stream is not a full load".to_string());
        }
    }
    let batch_size = match s.batch_size {
        None => default_batch,
        Some(b) if (1..=10_000_000).contains(&b) => b as usize,
        Some(b) => {
            errs.push(format!(
                "batch_size must be between 1 and 10000000, got {b}"
            ));
            default_batch
        }
    };

    let target = match to.as_ref().and_then(|t| conns.get(t)) {
        Some(t) if t.kind.is_account() => {
            errs.push(format!(
                "to: connection `{}` names no container or bucket ({}); a stream writes under az://container[/prefix] or s3://bucket[/prefix]",
                t.name,
                t.url.redacted()
            ));
            None
        }
        Some(t) if t.kind.is_database() => {
            if s.path.is_some() || s.format.is_some() {
                errs.push(format!(
                    "`path`/`format` are for file targets; `{}` is a database (use `into`)",
                    t.name
                ));
            }
            let write = match s.write.as_deref() {
                None | Some("append") => WriteMode::Append,
                Some("merge") => WriteMode::Merge,
                Some(o) => {
                    errs.push(format!("write: expected append or merge, got `{o}`"));
                    WriteMode::Append
                }
            };
            if write == WriteMode::Merge && primary_key.is_empty() {
                errs.push("write: merge needs `primary_key`".into());
            }
            match &s.into {
                Some(i) if !i.trim().is_empty() => Some(Target::Table {
                    into: i.trim().to_string(),
                    write,
                }),
                _ => {
                    errs.push(format!(
                        "`into` is required: the table to write in `{}`",
                        t.name
                    ));
                    None
                }
            }
        }
        Some(t) => {
            if s.into.is_some() || s.write.is_some() {
                errs.push(format!(
                    "`into`/`write` are for database targets; `{}` is a file target (use `path`)",
                    t.name
                ));
            }
            match &s.path {
                None => {
                    errs.push("`path` is required for a file target, e.g. \"{stream}/{stream}-{run_id}.csv\"".into());
                    None
                }
                Some(p) => {
                    if let Err(m) = check_template_with(p, s.window.is_some()) {
                        errs.push(format!("path: {m}"));
                    }
                    if s.window.is_some() {
                        if !p.contains("{run_id}") && !p.contains("{window_start:") {
                            errs.push(format!(
                                "path: `{p}` needs {{window_start:…}} (or {{run_id}}): each window writes its own file, e.g. \"{{stream}}/{{window_start:yyyy}}/{{window_start:MM}}/{{window_start:dd}}/{{window_start:HH}}.csv\""
                            ));
                        }
                    } else if mode != Mode::Full && !p.contains("{run_id}") {
                        errs.push(format!(
                            "path: `{p}` needs {{run_id}}: a {} stream writes a new file per run and never replaces an earlier one, e.g. \"{{stream}}/{{stream}}-{{run_id}}.csv\"",
                            mode.as_str()
                        ));
                    }
                    let format = match s.format.as_deref() {
                        Some(f) => parse_format(f).unwrap_or_else(|| {
                            errs.push(format!(
                                "format: unknown format `{f}` (expected csv, parquet or jsonl)"
                            ));
                            FileFormat::Csv
                        }),
                        None => {
                            let file_name = p.rsplit('/').next().unwrap_or(p);
                            match file_name.rsplit_once('.') {
                                Some((_, ext)) => parse_format(ext).unwrap_or_else(|| {
                                    errs.push(format!(
                                        "path: `.{ext}` is not a known file format; set `format:` to csv, parquet or jsonl (or end the path with .csv, .parquet or .jsonl)"
                                    ));
                                    FileFormat::Csv
                                }),
                                None => {
                                    errs.push(format!(
                                        "path: `{p}` has no file extension; set `format:` to csv, parquet or jsonl"
                                    ));
                                    FileFormat::Csv
                                }
                            }
                        }
                    };
                    Some(Target::File {
                        path: p.clone(),
                        format,
                    })
                }
            }
        }
        None => None,
    };

    if let Some(Err(e)) = s.schedule.as_ref().map(|c| c.parse::<croner::Cron>()) {
        errs.push(format!(
            "schedule: `{}` is not a cron expression ({e}); e.g. \"*/5 * * * *\" (minute hour day month weekday)",
            s.schedule.as_deref().unwrap_or_default()
        ));
    }
    if let Some(Err(e)) = s.verify.as_ref().map(|c| c.parse::<croner::Cron>()) {
        errs.push(format!(
            "verify: `{}` is not a cron expression ({e}); e.g. \"0 3 * * *\" (minute hour day month weekday)",
            s.verify.as_deref().unwrap_or_default()
        ));
    }
    let window = s
        .window
        .as_ref()
        .and_then(|w| validate_window(w, mode, s.schedule.is_some(), s.lag.is_some(), errs));
    let (from, to, relation, target) = (from?, to?, relation?, target?);
    let _ = name;
    Some(StreamPlan {
        name: name.to_string(),
        line: 0,
        from,
        relation,
        mode,
        cursor,
        primary_key,
        to,
        target,
        schedule: s.schedule,
        window,
        verify: s.verify,
        on_null_cursor,
        lag,
        writer_offset_minutes,
        batch_size,
        change_retention_secs,
        partitions,
        share_partitions,
    })
}

/// A stream's `window:`, checked (errors go to `errs`).
fn validate_window(
    w: &crate::raw::RawWindow,
    mode: Mode,
    schedule: bool,
    lag: bool,
    errs: &mut Vec<String>,
) -> Option<WindowPlan> {
    let n = errs.len();
    if mode != Mode::Watermark {
        errs.push(format!(
            "window: needs mode watermark and a time `cursor` (the window's bounds apply to the cursor); this stream is {}",
            mode.as_str()
        ));
    }
    if schedule {
        errs.push(
            "give either `schedule` or `window`, not both (a window runs when it is due)".into(),
        );
    }
    if lag {
        errs.push(
            "lag: does not apply to a windowed stream; use window.delay to wait for late rows"
                .into(),
        );
    }
    let duration = |field: &str, v: Option<&str>, default: i64, errs: &mut Vec<String>| match v {
        None => default,
        Some(t) => match parse_duration_secs(t) {
            Some(secs) if (0..=MAX_DURATION_SECS).contains(&secs) => secs,
            _ => {
                errs.push(format!(
                    "window.{field}: `{}` is not a duration like 30s, 15m, 1h, 1d",
                    t.trim()
                ));
                default
            }
        },
    };
    let size_secs = match w.size.as_deref() {
        None => {
            errs.push("window.size is required, e.g. `size: 1h`".into());
            3600
        }
        Some(t) => {
            let secs = duration("size", Some(t), 3600, errs);
            if secs < 60 || secs % 60 != 0 {
                errs.push(format!(
                    "window.size: `{}` must be whole minutes, at least 1m",
                    t.trim()
                ));
            }
            secs.max(60)
        }
    };
    let time = |field: &str, v: &str, errs: &mut Vec<String>| {
        let v = v.trim();
        let parsed = chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.to_utc())
            .ok()
            .or_else(|| {
                chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
                    .or_else(|_| chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S"))
                    .ok()
                    .or_else(|| {
                        chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                            .ok()
                            .and_then(|d| d.and_hms_opt(0, 0, 0))
                    })
                    .map(|t| t.and_utc())
            });
        if parsed.is_none() {
            errs.push(format!(
                "window.{field}: `{v}` is not a time like \"2026-01-01T00:00:00Z\" (UTC)"
            ));
        }
        parsed
    };
    let start = match w.start.as_deref() {
        None => {
            errs.push("window.start is required: the first window's start, e.g. `start: \"2026-01-01T00:00:00Z\"`".into());
            None
        }
        Some(v) => time("start", v, errs),
    };
    let end = w.end.as_deref().and_then(|v| time("end", v, errs));
    if let (Some(a), Some(b)) = (start, end)
        && b <= a
    {
        errs.push("window.end must be after window.start".into());
    }
    let delay_secs = duration("delay", w.delay.as_deref(), 0, errs);
    let retry_interval_secs = duration("retry_interval", w.retry_interval.as_deref(), 30, errs);
    let max_concurrency = match w.max_concurrency {
        None => 1,
        Some(n) if (1..=50).contains(&n) => n as usize,
        Some(n) => {
            errs.push(format!("window.max_concurrency must be 1 to 50, got {n}"));
            1
        }
    };
    let retry_count = match w.retry {
        None => 0,
        Some(n) if (0..=100).contains(&n) => n as u32,
        Some(n) => {
            errs.push(format!("window.retry must be 0 to 100, got {n}"));
            0
        }
    };
    if errs.len() > n {
        return None;
    }
    Some(WindowPlan {
        size_secs,
        start: start?,
        end,
        delay_secs,
        max_concurrency,
        retry_count,
        retry_interval_secs,
    })
}

/// `UTC`, `Z`, `+HH:MM`, `-HH:MM` or `+HH` → minutes east of UTC, within ±14 h.
fn parse_utc_offset(z: &str) -> Option<i32> {
    if z.eq_ignore_ascii_case("utc") || z == "Z" {
        return Some(0);
    }
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None => (rest, "0"),
    };
    if h.is_empty() || h.len() > 2 || m.len() > 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    let total = h * 60 + m;
    (m < 60 && total <= 14 * 60).then_some(sign * total)
}

/// What `check` and `run` verify once the source described the stream's
/// relation: the cursor and primary-key columns exist, each cursor column
/// has a type the source can bound (per backend), and `lag:` is of the
/// cursor's kind (a duration for time cursors, a number for integers).
pub fn check_columns(
    s: &StreamPlan,
    source: &ConnKind,
    schema: &arrow_schema::Schema,
) -> Result<(), Error> {
    use arrow_schema::DataType as T;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for (what, cols) in [("cursor", &s.cursor), ("primary_key", &s.primary_key)] {
        for c in cols.iter() {
            if !names.contains(&c.as_str()) {
                return Err(Error::config(
                    format!("{what} column {c}"),
                    format!(
                        "not found in {} (columns: {})",
                        s.relation,
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    if s.mode != Mode::Watermark {
        return Ok(());
    }
    for c in &s.cursor {
        let Ok(field) = schema.field_with_name(c) else {
            continue;
        };
        let t = field.data_type();
        let is_int = t.is_integer();
        let is_time = matches!(t, T::Timestamp(..) | T::Date32 | T::Date64);
        if !cursor_type_usable(source, t) {
            return Err(Error::config(
                format!("cursor column {c}"),
                format!(
                    "has type {t}, which cannot be a cursor; use a timestamp, date or integer column"
                ),
            ));
        }
        let time_like = is_time || matches!(t, T::Utf8 | T::LargeUtf8 | T::Utf8View);
        match s.lag {
            Some(Lag::Units(n)) if !is_int => {
                return Err(Error::config(
                    "lag",
                    format!(
                        "`{n}` is a number, but cursor column {c} is not an integer ({t}); give a duration like `lag: {n}s`"
                    ),
                ));
            }
            Some(Lag::Micros(us)) if !time_like => {
                return Err(Error::config(
                    "lag",
                    format!(
                        "`{}s` is a duration, but cursor column {c} is an integer ({t}); give a number of cursor units like `lag: 100`",
                        us / 1_000_000
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a column of Arrow type `t` (as the source describes it) can be a
/// watermark cursor of a `source` connection: timestamps, dates and
/// integers; on SQLite anything but floats and blobs (timestamps are text).
pub fn cursor_type_usable(source: &ConnKind, t: &arrow_schema::DataType) -> bool {
    use arrow_schema::DataType as T;
    let is_time = matches!(t, T::Timestamp(..) | T::Date32 | T::Date64);
    match source {
        ConnKind::Postgres => is_time || matches!(t, T::Int16 | T::Int32 | T::Int64 | T::Int8),
        ConnKind::Mysql => is_time || t.is_integer(),
        ConnKind::Sqlite(_) => !matches!(
            t,
            T::Float16
                | T::Float32
                | T::Float64
                | T::Binary
                | T::LargeBinary
                | T::BinaryView
                | T::FixedSizeBinary(_)
        ),
        _ => true,
    }
}

fn parse_format(f: &str) -> Option<FileFormat> {
    match f.to_ascii_lowercase().as_str() {
        "csv" | "txt" => Some(FileFormat::Csv),
        "parquet" => Some(FileFormat::Parquet),
        "jsonl" | "ndjson" | "json" => Some(FileFormat::Jsonl),
        _ => None,
    }
}

/// Check `{placeholder}` names in a path template.
pub fn check_template(t: &str) -> Result<(), String> {
    check_template_with(t, false)
}

/// The format of a `{window_start:FMT}` / `{window_end:FMT}` placeholder:
/// `yyyy`, `MM`, `dd`, `HH`, `mm`, `ss` and `-`, `_`, `.` between them,
/// as a chrono format; `None` when it holds anything else.
pub fn window_format(fmt: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = fmt;
    while !rest.is_empty() {
        let token = ["yyyy", "MM", "dd", "HH", "mm", "ss"]
            .into_iter()
            .zip(["%Y", "%m", "%d", "%H", "%M", "%S"])
            .find(|(t, _)| rest.starts_with(t));
        match token {
            Some((t, f)) => {
                out.push_str(f);
                rest = &rest[t.len()..];
            }
            None => {
                let c = rest.chars().next()?;
                if !matches!(c, '-' | '_' | '.') {
                    return None;
                }
                out.push(c);
                rest = &rest[1..];
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// [`check_template`]; with `window`, `{window_start:FMT}` and
/// `{window_end:FMT}` are known too.
pub fn check_template_with(t: &str, window: bool) -> Result<(), String> {
    if t.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "`{}` holds a control character or `\\`; separate folders with `/`",
            t.escape_debug()
        ));
    }
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            return Err(format!("unclosed `{{` in `{t}`"));
        };
        let name = &after[..j];
        let windowed = name
            .strip_prefix("window_start:")
            .or_else(|| name.strip_prefix("window_end:"));
        if let Some(fmt) = windowed {
            if !window {
                return Err(format!("`{{{name}}}` is for streams with `window:` only"));
            }
            if window_format(fmt).is_none() {
                return Err(format!(
                    "`{{{name}}}`: `{fmt}` is not a window format (yyyy MM dd HH mm ss, with - _ . between)"
                ));
            }
        } else if !PATH_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` (known: {})",
                PATH_PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        rest = &after[j + 1..];
    }
    if t.trim().is_empty() || t.ends_with('/') {
        return Err(format!("`{t}` does not name a file"));
    }
    if t.split('/').any(|seg| seg == "..") {
        return Err(format!("`{t}` must stay inside the target (no `..`)"));
    }
    let t_rel = t.strip_prefix('/').unwrap_or(t);
    if t_rel.split('/').any(|seg| seg.is_empty() || seg == ".") {
        return Err(format!(
            "`{}` has an empty or `.` folder; write folders as `a/b/file`",
            t.escape_debug()
        ));
    }
    if t_rel.split('/').next() == Some("_highwater") {
        return Err(format!(
            "`{t}`: the folder `_highwater/` holds highwater's commit markers; write data elsewhere"
        ));
    }
    Ok(())
}

/// The longest `lag:` or `change_retention:` (ten years): longer is a
/// mistake, and time arithmetic on it must not overflow.
pub const MAX_DURATION_SECS: i64 = 3650 * 86_400;

/// The largest numeric `lag:` (integer cursors; e.g. ten years of
/// nanoseconds fits).
pub const MAX_LAG_UNITS: i64 = 1_000_000_000_000_000_000;

/// The longest stream name.
pub const MAX_STREAM_NAME: usize = 100;

/// A stream name becomes part of file paths (`{stream}`, lock files) and
/// messages: letters, digits, `_`, `-` and `.`, not starting with `.`.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_STREAM_NAME
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the name must be 1 to {MAX_STREAM_NAME} letters, digits, `_`, `-` or `.`, not starting with `.` (it names files and folders)"
        ))
    }
}

/// `30s`, `5m`, `2h`, `2d`, `1w`, or a number of seconds as text.
pub fn parse_duration_secs(t: &str) -> Option<i64> {
    let t = t.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "s" | "sec" | "secs" | "seconds" => 1,
        "m" | "min" | "minutes" => 60,
        "h" | "hours" => 3600,
        "d" | "days" => 86_400,
        "w" | "weeks" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A YAML error as one line, `file:line:column: message`, without the
/// source snippet (it may quote a password) and with every credential
/// found in the text redacted.
fn yaml_error(file: &str, e: &serde_saphyr::Error, secrets: &Secrets) -> Error {
    let e = e.without_snippet();
    let mut message = e.to_string();
    // The location is ours to print; drop the library's own prefix.
    for prefix in ["error: ", "Error: "] {
        if let Some(m) = message.strip_prefix(prefix) {
            message = m.to_string();
        }
    }
    if let Some(rest) = message.strip_prefix("line ")
        && let Some((_, m)) = rest.split_once(": ")
        && rest.split(':').next().is_some_and(|l| l.contains("column"))
    {
        message = m.to_string();
    }
    let mut message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(i) = message.rfind(" at line ")
        && message[i..].contains(", column ")
    {
        message.truncate(i);
    }
    for (untagged, says) in [
        (
            "data did not match any variant of untagged enum OneOrMany",
            "expected a column name or a list of names (quote a name YAML reads as something else: \"n\", \"yes\", \"on\", \"null\", \"1\")",
        ),
        (
            "data did not match any variant of untagged enum DurationOrNumber",
            "expected a duration like 30s, 5m, 2h, 1d, or a whole number",
        ),
    ] {
        if message.contains(untagged) {
            message = message.replace(untagged, says);
        }
    }
    let message = secrets.redact(&message);
    match e.location() {
        Some(l) if l.line() > 0 => Error::config(
            format!("{file}:{}:{}", l.line(), l.column()),
            format!("invalid configuration: {message}"),
        ),
        _ => Error::config(file, format!("invalid configuration: {message}")),
    }
}

/// `${VAR}` expanded in a connection or state URL. Values are remembered
/// as secrets; a value inside the URL's user or password is inserted
/// literally (percent-encoded), so a password may hold `@ / : # %`.
fn expand_url(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Secrets,
) -> Result<String, String> {
    // Where the credentials are, read on the text with each `${…}` masked.
    let masked: String = {
        let mut m = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            m.push_str(&rest[..i]);
            let len = rest[i..].find('}').map_or(rest.len() - i, |j| j + 1);
            m.push_str(&"x".repeat(len));
            rest = &rest[i + len..];
        }
        m.push_str(rest);
        m
    };
    let userinfo = masked.find("://").and_then(|start| {
        let rest = &masked[start + 3..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        rest[..end].rfind('@').map(|at| start + 3..start + 3 + at)
    });
    expand_env_with(s, env, secrets, &|at, v| match &userinfo {
        Some(r) if r.contains(&at) => {
            percent_encoding::utf8_percent_encode(v, crate::secret::USERINFO_VALUE).to_string()
        }
        _ => v.to_string(),
    })
}

/// Replace `${VAR}` with the environment's value; values are remembered as
/// secrets. `insert(offset, value)` gives the text inserted for a
/// placeholder at byte `offset` of `s`. Messages never quote `s`.
fn expand_env_with(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Secrets,
    insert: &dyn Fn(usize, &str) -> String,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let offset = s.len() - rest.len() + i;
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after
            .find('}')
            .ok_or_else(|| "unclosed `${`: write `${NAME}`".to_string())?;
        let var = &after[..j];
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(
                "`${…}` holds something other than an environment variable name (letters, digits, _)"
                    .into(),
            );
        }
        let val = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
        secrets.add(&val);
        out.push_str(&insert(offset, &val));
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Type a connection URL by its scheme and resolve relative paths.
pub fn parse_connection(url: &str, base_dir: &Path) -> Result<(SecretUrl, ConnKind), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected a URL like postgres://…, sqlite://…, file://…".into());
    };
    // `az://` / `s3://` alone is the whole account: Data Factory datasets
    // name their container or bucket (`location.container`, `bucketName`);
    // a stream's target needs one in the URL (checked with the streams).
    let split_bucket = |rest: &str| -> Result<(String, String), String> {
        let (b, p) = rest.split_once('/').unwrap_or((rest, ""));
        if b.is_empty() && !p.trim_matches('/').is_empty() {
            return Err(format!(
                "{scheme}:// needs a container or bucket name before the path"
            ));
        }
        Ok((b.to_string(), p.trim_matches('/').to_string()))
    };
    let kind = match scheme {
        "sqlite" => {
            if rest.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            ConnKind::Sqlite(resolve(base_dir, rest))
        }
        "postgres" | "postgresql" => ConnKind::Postgres,
        "mysql" | "mariadb" => ConnKind::Mysql,
        "mssql" | "sqlserver" => ConnKind::Mssql,
        "file" => {
            if rest.is_empty() {
                return Err("file:// needs a folder".into());
            }
            ConnKind::File(resolve(base_dir, rest))
        }
        "az" | "azure" | "abfs" => {
            let (container, prefix) = split_bucket(rest)?;
            ConnKind::Azure { container, prefix }
        }
        "s3" => {
            let (bucket, prefix) = split_bucket(rest)?;
            ConnKind::S3 { bucket, prefix }
        }
        other => {
            return Err(format!(
                "unknown scheme `{other}://` (expected sqlite, postgres, mysql, mssql, file, az, s3)"
            ));
        }
    };
    Ok((SecretUrl::new(url), kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "PW").then(|| "hunter2secret".to_string())
    }

    #[test]
    fn init_template_parses() {
        let p = load(
            "highwater.yaml",
            crate::INIT_TEMPLATE,
            Path::new("/tmp/x"),
            &env,
        )
        .unwrap();
        assert_eq!(p.streams.len(), 1);
        assert_eq!(p.streams[0].mode, Mode::Watermark);
        assert!(
            matches!(&p.connections["shop"].kind, ConnKind::Sqlite(path) if path == Path::new("/tmp/x/shop.db"))
        );
    }

    #[test]
    fn all_errors_at_once_with_lines() {
        let y = "connections:\n  a: postgres://u:${PW}@h/db\n  b: file://./out\nstreams:\n  one:\n    from: a\n    table: t\n    mode: watermark\n    to: b\n    path: x.csv\n  two:\n    from: nope\n    table: t\n    to: b\n    path: \"{bogus}.csv\"\n";
        let e = load("h.yaml", y, Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("h.yaml:5: stream one: mode watermark needs `cursor`"),
            "{e}"
        );
        assert!(
            e.contains("h.yaml:11: stream two: from: unknown connection `nope`"),
            "{e}"
        );
        assert!(e.contains("unknown placeholder `{bogus}`"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn unknown_key_names_line() {
        let y = "connections:\n  b: file://./out\nstreams:\n  one:\n    from: b\n    tabel: t\n";
        let e = load("h.yaml", y, Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tabel"), "{e}");
        assert!(e.contains("6"), "{e}");
    }

    /// Random configs from the fragments users write (valid, borderline,
    /// hostile): validation returns, it never panics.
    #[test]
    fn random_configs_never_panic() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let keys = [
            "from",
            "to",
            "table",
            "query",
            "mode",
            "cursor",
            "primary_key",
            "lag",
            "path",
            "format",
            "into",
            "write",
            "schedule",
            "on_null_cursor",
            "batch_size",
            "change_retention",
            "bogus",
        ];
        let values = [
            "a",
            "b",
            "c",
            "watermark",
            "change_tracking",
            "full",
            "merge",
            "append",
            "x",
            "[x, y]",
            "[]",
            "{}",
            "~",
            "\"\"",
            "0",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551616",
            "1e400",
            "100000000d",
            "3650d",
            "3651d",
            "99999999999999999999s",
            "1.5",
            "\"{run_id}.csv\"",
            "\"{\"",
            "\"}\"",
            "\"{stream}/{run_id}\"",
            "\"../{run_id}.csv\"",
            "\"a//{run_id}.csv\"",
            "\"_highwater/{run_id}.csv\"",
            "\"\\u0000{run_id}.csv\"",
            "\"t.xlsx\"",
            "\"* * * * *\"",
            "\"* * *\"",
            "\"60 25 32 13 8\"",
            "\"é{run_id}.csv\"",
            "\"ｄ\"",
            "\"５s\"",
            "\"s\"",
            "\"d5\"",
            "&a x",
            "*a",
            "!!binary aGk=",
            "|\n  multi\n  line",
        ];
        let urls = [
            "postgres://u:${PW}@h/db",
            "postgres://u:p@ss/w:rd#%41@h/db",
            "postgres://u:p%40ss@h/db?password=x&sig=y",
            "mysql://u:p?ss@h/db",
            "sqlite://",
            "sqlite://x.db",
            "file://",
            "file://./out",
            "az://",
            "s3://b/p",
            "nope://x",
            "${PW}",
            "${",
            "${NOPE}",
            "${a-b}",
            "postgres://é:ü@h/ｄｂ",
            "",
        ];
        let names = [
            "a",
            "\"../../x\"",
            "\"\"",
            "\"é\"",
            "'q'",
            "\"a\\nb\"",
            "s.t",
            ".h",
            "-",
        ];
        let (mut valid, mut stream_errors) = (0, 0);
        for _ in 0..3000 {
            let mut y = String::new();
            if next(3) == 0 {
                y.push_str(&format!("state: {}\n", urls[next(urls.len())]));
            }
            if next(4) == 0 {
                y.push_str(&format!("concurrency: {}\n", values[next(values.len())]));
            }
            if next(4) == 0 {
                y.push_str(&format!("batch_size: {}\n", values[next(values.len())]));
            }
            y.push_str("connections:\n");
            for c in ["a", "b", "c"] {
                if next(4) > 0 {
                    y.push_str(&format!("  {c}: {}\n", urls[next(urls.len())]));
                }
            }
            y.push_str("streams:\n");
            for _ in 0..next(3) + 1 {
                y.push_str(&format!("  {}:\n", names[next(names.len())]));
                for _ in 0..next(8) {
                    y.push_str(&format!(
                        "    {}: {}\n",
                        keys[next(keys.len())],
                        values[next(values.len())]
                    ));
                }
            }
            if next(10) == 0 {
                let cut = next(y.len() + 1);
                y.truncate(
                    (0..=cut)
                        .rev()
                        .find(|i| y.is_char_boundary(*i))
                        .unwrap_or(0),
                );
            }
            for f in [load, load_connections] {
                let r = std::panic::catch_unwind(|| f("h.yaml", &y, Path::new("."), &env));
                assert!(r.is_ok(), "panicked on:\n{y}");
                if let Ok(Ok(_)) = r {
                    valid += 1;
                }
                if let Ok(Err(e)) = r {
                    let e = e.to_string();
                    stream_errors += usize::from(e.contains(": stream "));
                    assert!(
                        !e.contains("hunter2secret") && !e.contains("ss/w:rd"),
                        "{e}"
                    );
                }
            }
        }
        // The generator reaches validation, not only the YAML parser.
        assert!(
            valid > 10 && stream_errors > 300,
            "{valid} valid, {stream_errors}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30s"), Some(30));
        assert_eq!(parse_duration_secs("2d"), Some(172_800));
        assert_eq!(parse_duration_secs("x"), None);
    }
}
