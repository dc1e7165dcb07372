//! "Nothing missed, nothing twice", attacked: one conformance suite over
//! sources (PostgreSQL, MariaDB, SQLite) × modes (watermark, change
//! tracking) × targets (CSV files, a `write: merge` table) × state (the
//! default SQLite file; shared PostgreSQL state with two concurrent
//! `highwater run` processes).
//!
//! Each case: concurrent writers insert, update (and, for change tracking,
//! delete) rows of `t(id, v, n, ts)` in short transactions, some of which
//! sleep before committing (late commits), while the real binary is started
//! and killed with SIGKILL at random instants. Every writer owns the keys
//! `id % WRITERS == w`, so each key's versions are serial: `n` counts them
//! and `ts` is the database's `now()` at the write. Then the writers stop,
//! two clean runs pass any held-back bound, and the outputs must equal the
//! source:
//!
//! - files, watermark: replaying the published files in commit order (the
//!   order of their commit markers) leaves each key at its source row; no
//!   key is missing; a key's versions arrive in increasing `n`, and no row
//!   version arrives twice;
//! - files, change tracking: applying the full load, then every
//!   `I`/`U`/`D` in commit order, gives the source table; no change
//!   (key, `SYS_CHANGE_VERSION`) arrives twice, no file holds a key twice;
//! - merge target: the target table equals the source table row by row.
//!
//! Random instants are reproducible: the seed is printed and read from
//! `HIGHWATER_ATTACK_SEED`; `HIGHWATER_ATTACK_SECS` sets how long the
//! writers and kills go on (default 8). Thread timing still varies between
//! runs, so a seed narrows a failure down rather than replaying it exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use mysql_async::prelude::Queryable;

use crate::change_tracking::{Backend, Conn, Db};
use crate::util::*;

const WRITERS: i64 = 3;
const PRELOAD: i64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Watermark,
    ChangeTracking,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// CSV files on `file://`.
    Files,
    /// `write: merge` into a PostgreSQL table.
    PgMerge,
    /// `write: merge` into a MariaDB table.
    MyMerge,
    /// `write: merge` into a SQLite table.
    LiteMerge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The default SQLite state file; one process at a time.
    Local,
    /// `state: postgres://…`; two processes run the same config at once.
    SharedPg,
}

struct Case {
    name: &'static str,
    src: Backend,
    mode: Mode,
    target: Target,
    state: State,
}

macro_rules! cases {
    ($($(#[$m:meta])* $name:ident: $src:ident $mode:ident $target:ident $state:ident;)*) => {
        $(
            $(#[$m])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                attack(Case {
                    name: stringify!($name),
                    src: Backend::$src,
                    mode: Mode::$mode,
                    target: Target::$target,
                    state: State::$state,
                })
                .await
            }
        )*
    };
}

cases! {
    pg_watermark_files: Postgres Watermark Files Local;
    pg_ct_files: Postgres ChangeTracking Files Local;
    pg_watermark_merge: Postgres Watermark PgMerge Local;
    pg_ct_merge: Postgres ChangeTracking PgMerge Local;
    mariadb_watermark_files: Mariadb Watermark Files Local;
    mariadb_ct_files: Mariadb ChangeTracking Files Local;
    mariadb_watermark_merge: Mariadb Watermark PgMerge Local;
    mariadb_ct_merge: Mariadb ChangeTracking PgMerge Local;
    sqlite_watermark_files: Sqlite Watermark Files Local;
    sqlite_ct_files: Sqlite ChangeTracking Files Local;
    sqlite_watermark_merge: Sqlite Watermark PgMerge Local;
    sqlite_ct_merge: Sqlite ChangeTracking PgMerge Local;
    pg_ct_merge_into_mariadb: Postgres ChangeTracking MyMerge Local;
    mariadb_watermark_merge_into_sqlite: Mariadb Watermark LiteMerge Local;
    shared_pg_watermark_files: Postgres Watermark Files SharedPg;
    shared_pg_ct_merge: Postgres ChangeTracking PgMerge SharedPg;
    shared_mariadb_ct_files: Mariadb ChangeTracking Files SharedPg;
    shared_mariadb_watermark_merge: Mariadb Watermark PgMerge SharedPg;
    shared_sqlite_watermark_files: Sqlite Watermark Files SharedPg;
    shared_sqlite_ct_merge: Sqlite ChangeTracking PgMerge SharedPg;
}

/// SplitMix64: small, seedable, good enough for instants and choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn seed() -> u64 {
    match std::env::var("HIGHWATER_ATTACK_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("HIGHWATER_ATTACK_SEED={s} is not a u64")),
        Err(_) => SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

fn attack_secs() -> u64 {
    std::env::var("HIGHWATER_ATTACK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

/// The database's "now" as a cursor value of `t.ts`.
fn now_sql(b: Backend) -> &'static str {
    match b {
        Backend::Postgres => "now()",
        Backend::Mariadb => "NOW(6)",
        Backend::Sqlite => "strftime('%Y-%m-%d %H:%M:%f', 'now')",
    }
}

async fn create_source(db: &Db, b: Backend) {
    let ddl = match b {
        Backend::Postgres => {
            "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL, n bigint NOT NULL, ts timestamptz NOT NULL)"
        }
        Backend::Mariadb => {
            "CREATE TABLE t (id bigint PRIMARY KEY, v varchar(64) NOT NULL, n bigint NOT NULL, ts timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
        }
        Backend::Sqlite => {
            "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL, ts TEXT NOT NULL)"
        }
    };
    db.exec(ddl).await;
    let now = now_sql(b);
    let values: Vec<String> = (1..=PRELOAD)
        .map(|id| format!("({id}, 'p{id}', 1, {now})"))
        .collect();
    db.exec(&format!(
        "INSERT INTO t (id, v, n, ts) VALUES {}",
        values.join(", ")
    ))
    .await;
}

/// A statement that may fail (a writer rolls back and goes on).
async fn try_exec(c: &mut Conn, sql: &str) -> Result<(), String> {
    match c {
        Conn::Lite(c) => c.execute_batch(sql).map_err(|e| e.to_string()),
        Conn::Pg(c) => c.batch_execute(sql).await.map_err(|e| e.to_string()),
        Conn::My(c) => c.query_drop(sql).await.map_err(|e| e.to_string()),
    }
}

/// `(v, n)` of every row of `table`, by id.
async fn rows_of(c: &mut Conn, table: &str) -> BTreeMap<i64, (String, i64)> {
    let sql = match c {
        Conn::Pg(_) => format!("SELECT id::bigint, v::text, n::bigint FROM {table}"),
        Conn::My(_) => format!("SELECT CAST(id AS SIGNED), v, CAST(n AS SIGNED) FROM {table}"),
        Conn::Lite(_) => format!("SELECT id, v, n FROM {table}"),
    };
    let rows: Vec<(i64, String, i64)> = match c {
        Conn::Lite(c) => {
            let mut st = c.prepare(&sql).unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }
        Conn::Pg(c) => c
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
        Conn::My(c) => c.query(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")),
    };
    let mut out = BTreeMap::new();
    for (id, v, n) in rows {
        assert!(out.insert(id, (v, n)).is_none(), "{table}: id {id} twice");
    }
    out
}

/// One writer: owns the keys `id % WRITERS == w`; inserts, updates and
/// (when `deletes`) deletes them in transactions of 1–4 statements, some
/// of which wait before committing.
async fn writer(
    db: Arc<Db>,
    b: Backend,
    w: i64,
    deletes: bool,
    seed: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<AtomicU64>,
) {
    let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0xA5A5_5A5A_1234_5678));
    let mut c = db.connect().await;
    if let Conn::Lite(l) = &c {
        l.busy_timeout(Duration::from_secs(60)).unwrap();
    }
    let now = now_sql(b);
    let mut live: Vec<i64> = (1..=PRELOAD).filter(|id| id % WRITERS == w).collect();
    let mut next = PRELOAD + 1;
    while next % WRITERS != w {
        next += 1;
    }
    let begin = match b {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        _ => "BEGIN",
    };
    while !stop.load(Ordering::Relaxed) {
        let before = live.clone();
        let mut sql = vec![begin.to_string()];
        for _ in 0..1 + rng.below(4) {
            let r = rng.below(100);
            let tag = rng.below(1_000_000);
            if r < 35 || live.is_empty() {
                sql.push(format!(
                    "INSERT INTO t (id, v, n, ts) VALUES ({next}, 'i{tag}', 1, {now})"
                ));
                live.push(next);
                next += WRITERS;
            } else if deletes && r < 50 {
                let id = live.swap_remove(rng.below(live.len() as u64) as usize);
                sql.push(format!("DELETE FROM t WHERE id = {id}"));
            } else {
                let id = live[rng.below(live.len() as u64) as usize];
                sql.push(format!(
                    "UPDATE t SET v = 'u{tag}', n = n + 1, ts = {now} WHERE id = {id}"
                ));
            }
        }
        let mut ok = true;
        for s in &sql {
            if let Err(e) = try_exec(&mut c, s).await {
                eprintln!("writer {w}: {s}: {e} (rolled back)");
                ok = false;
                break;
            }
        }
        // A late commit: the transaction's now() is older than its commit.
        if ok && rng.chance(20) {
            tokio::time::sleep(Duration::from_millis(rng.below(120))).await;
        }
        if ok && try_exec(&mut c, "COMMIT").await.is_ok() {
            stats.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = try_exec(&mut c, "ROLLBACK").await;
            live = before;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
    }
}

/// The merge target of a case, when it has one.
enum Dst {
    Pg(PgDb),
    My(MyDb),
    Lite(PathBuf),
}

impl Dst {
    async fn new(t: Target, dir: &Dir) -> Option<Dst> {
        match t {
            Target::Files => None,
            Target::PgMerge => Some(Dst::Pg(PgDb::new("atk_dst").await)),
            Target::MyMerge => Some(Dst::My(MyDb::new("atk_dst").await)),
            Target::LiteMerge => Some(Dst::Lite(dir.join("target.db"))),
        }
    }

    fn url(&self) -> String {
        match self {
            Dst::Pg(p) => p.url.clone(),
            Dst::My(m) => m.url.clone(),
            Dst::Lite(_) => "sqlite://target.db".into(),
        }
    }

    async fn rows(&self) -> BTreeMap<i64, (String, i64)> {
        let mut c = match self {
            Dst::Pg(p) => Conn::Pg(p.connect().await),
            Dst::My(m) => Conn::My(m.connect().await),
            Dst::Lite(p) => Conn::Lite(rusqlite::Connection::open(p).unwrap()),
        };
        rows_of(&mut c, "t_copy").await
    }
}

fn config(case: &Case, src: &Db, dst: Option<&Dst>, state: Option<&PgDb>) -> String {
    let mut y = String::new();
    if let Some(s) = state {
        y += &format!("state: {}\n", s.url);
    }
    y += &format!(
        "connections:\n  src: {}\n  lake: file://./lake\n",
        src.url()
    );
    if let Some(d) = dst {
        y += &format!("  dst: {}\n", d.url());
    }
    y +=
        "streams:\n  t:\n    from: src\n    table: t\n    primary_key: [id]\n    batch_size: 100\n";
    y += match case.mode {
        Mode::Watermark => "    mode: watermark\n    cursor: ts\n",
        Mode::ChangeTracking => "    mode: change_tracking\n    change_retention: 7d\n",
    };
    y += match dst {
        None => "    to: lake\n    path: \"t/t-{run_id}.csv\"\n",
        Some(_) => "    to: dst\n    into: t_copy\n    write: merge\n",
    };
    y
}

/// What the kill loop saw.
#[derive(Default, Debug)]
struct Tally {
    started: u64,
    killed: u64,
    finished: u64,
    busy: u64,
    typical_ms: u64,
    /// Runs that ended by themselves with an error other than "busy".
    failed: Vec<String>,
}

/// Start `procs` runs, kill each at its own random instant (some are let
/// finish), until `deadline`. The instants spread over the time a run
/// takes here (measured as the loop goes), so kills land in start-up,
/// settling, reading, writing and committing alike.
async fn kill_loop(dir: &Dir, procs: usize, rng: &mut Rng, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut i = 0u64;
    // How long a run that was let finish took (moving average, ms).
    let mut typical = 300u64;
    while Instant::now() < deadline {
        let mut kids = Vec::new();
        for p in 0..procs {
            i += 1;
            let out = logs.join(format!("{i}-{p}.out"));
            let err = logs.join(format!("{i}-{p}.err"));
            let mut c = tokio::process::Command::from(dir.command(&["run"]));
            c.stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(&err).unwrap())
                .kill_on_drop(true);
            let child = c.spawn().expect("start highwater");
            tally.started += 1;
            // One in five runs may finish; the others die at a random
            // instant of a typical run's life.
            let delay = if rng.chance(20) {
                30_000
            } else {
                rng.below(typical * 5 / 4)
            };
            kids.push((child, delay, err));
        }
        let t0 = Instant::now();
        let waits = kids.into_iter().map(|(mut child, delay, err)| async move {
            tokio::select! {
                st = child.wait() => Some((st.unwrap().code(), err, t0.elapsed())),
                _ = tokio::time::sleep(Duration::from_millis(delay)) => {
                    let _ = child.start_kill(); // SIGKILL
                    let _ = child.wait().await;
                    None
                }
            }
        });
        for r in futures::future::join_all(waits).await {
            match r {
                None => tally.killed += 1,
                Some((Some(0), _, took)) => {
                    tally.finished += 1;
                    typical = (typical * 3 + took.as_millis() as u64) / 4;
                }
                Some((code, err, _)) => {
                    let text = std::fs::read_to_string(&err).unwrap_or_default();
                    if text.contains("another highwater process") {
                        tally.busy += 1;
                    } else {
                        tally.failed.push(format!("exit {code:?}: {text}"));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
    }
    tally.typical_ms = typical;
    tally
}

/// A clean run that must succeed; whether it left rows for a later run
/// (held back behind open transactions, or MariaDB's transaction list too
/// busy to be read fresh: both server-wide, so other tests cause them).
async fn clean_run(dir: &Dir, src: &Db, what: &str) -> bool {
    src.settle().await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    eprintln!("{what}: {}", stdout(&o).trim());
    let said = format!("{}{}", stdout(&o), stderr(&o));
    said.contains("held back") || said.contains("did not refresh")
}

async fn attack(case: Case) {
    let seed = seed();
    eprintln!(
        "attack {}: HIGHWATER_ATTACK_SEED={seed} ({:?} {:?} → {:?}, state {:?})",
        case.name, case.src, case.mode, case.target, case.state
    );
    let mut rng = Rng(seed);
    let dir = Dir::new(&format!("atk_{}", case.name));
    let src = Arc::new(Db::new(case.src, &dir, "atk").await);
    create_source(&src, case.src).await;
    let dst = Dst::new(case.target, &dir).await;
    let state = match case.state {
        State::Local => None,
        State::SharedPg => Some(PgDb::new("atk_state").await),
    };
    dir.write(
        "highwater.yaml",
        &config(&case, &src, dst.as_ref(), state.as_ref()),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (db, stop, commits) = (src.clone(), stop.clone(), commits.clone());
        let (b, deletes) = (case.src, case.mode == Mode::ChangeTracking);
        // A thread and runtime per writer: SQLite's calls block.
        writers.push(std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(writer(db, b, w, deletes, seed, stop, commits))
        }));
    }

    let procs = match case.state {
        State::Local => 1,
        State::SharedPg => 2,
    };
    let deadline = Instant::now() + Duration::from_secs(attack_secs());
    let tally = kill_loop(&dir, procs, &mut rng, deadline).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    eprintln!(
        "attack {}: {} writer commits; runs {tally:?}",
        case.name,
        commits.load(Ordering::Relaxed)
    );

    // Clean runs: the first may hold the newest rows back; more while
    // other tests' transactions keep rows back (the caps are server-wide).
    clean_run(&dir, &src, "clean run 1").await;
    for i in 2..60 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        if !clean_run(&dir, &src, &format!("clean run {i}")).await {
            break;
        }
    }

    let source = rows_of(&mut src.connect().await, "t").await;
    let ctx = format!("case {} seed {seed}", case.name);
    match &dst {
        Some(d) => {
            let target = d.rows().await;
            assert_same(&source, &target, &ctx);
        }
        None => {
            let files = published(&dir, &ctx);
            let replayed = match case.mode {
                Mode::Watermark => replay_watermark(&files, &ctx),
                Mode::ChangeTracking => replay_changes(&dir, &files, &ctx),
            };
            assert_same(&source, &replayed, &ctx);
        }
    }
    assert!(
        tally.failed.is_empty(),
        "{ctx}: runs that were not killed failed:\n{}",
        tally.failed.join("\n")
    );
}

/// Source and copy equal, with the differences spelled out.
fn assert_same(
    source: &BTreeMap<i64, (String, i64)>,
    copy: &BTreeMap<i64, (String, i64)>,
    ctx: &str,
) {
    if source == copy {
        return;
    }
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    let mut differ = Vec::new();
    for (id, s) in source {
        match copy.get(id) {
            None => missing.push((id, s)),
            Some(c) if c != s => differ.push((id, s, c)),
            _ => {}
        }
    }
    for (id, c) in copy {
        if !source.contains_key(id) {
            extra.push((id, c));
        }
    }
    panic!(
        "{ctx}: the copy differs from the source ({} source rows, {} copied)\n\
         missing (id, source): {missing:?}\n\
         stale (id, source, copy): {differ:?}\n\
         not in the source (id, copy): {extra:?}",
        source.len(),
        copy.len()
    );
}

/// A published file: its rows, header and commit marker's time.
struct Published {
    path: PathBuf,
    run_id: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// The published data files in commit order (the order their commit
/// markers were written; the stream lock serialises commits). Every data
/// file has a marker and every marker's file is there.
fn published(dir: &Dir, ctx: &str) -> Vec<Published> {
    let markers = dir.join("lake/_highwater/commits/t");
    let mut order: Vec<(SystemTime, String)> = std::fs::read_dir(&markers)
        .unwrap_or_else(|e| panic!("{ctx}: no commit markers in {}: {e}", markers.display()))
        .flatten()
        .filter_map(|e| {
            // `<run_id>.json#N` is the local store's temporary file of a
            // marker whose writer was killed: not a marker.
            let name = e.file_name().to_string_lossy().to_string();
            let run_id = name.strip_suffix(".json")?.to_string();
            Some((e.metadata().unwrap().modified().unwrap(), run_id))
        })
        .collect();
    order.sort();
    let data: BTreeSet<PathBuf> = dir.files("lake/t", "").into_iter().collect();
    let mut out = Vec::new();
    for (_, run_id) in order {
        let path = dir.join(&format!("lake/t/t-{run_id}.csv"));
        assert!(
            data.contains(&path),
            "{ctx}: committed run {run_id} has no data file\n{}",
            diagnose(dir, &run_id)
        );
        let (header, rows) = read_csv(&path);
        out.push(Published {
            path,
            run_id,
            header,
            rows,
        });
    }
    let named: BTreeSet<&PathBuf> = out.iter().map(|p| &p.path).collect();
    let stray: Vec<&PathBuf> = data.iter().filter(|p| !named.contains(p)).collect();
    assert!(
        stray.is_empty(),
        "{ctx}: data files without a commit marker: {stray:?}"
    );
    out
}

/// What is known of one attempt: its marker, staged files, and the
/// output of the processes that mention it.
fn diagnose(dir: &Dir, run_id: &str) -> String {
    let marker = dir.join(&format!("lake/_highwater/commits/t/{run_id}.json"));
    let mut out = format!(
        "marker: {}\n",
        std::fs::read_to_string(&marker).unwrap_or_else(|e| e.to_string())
    );
    out += &format!(
        "staging: {:?}\n",
        std::fs::read_dir(dir.join("lake/_highwater/staging/t"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default()
    );
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    logs.sort();
    for l in logs {
        let text = std::fs::read_to_string(&l).unwrap_or_default();
        if text.contains(run_id) {
            out += &format!("--- {}\n{text}\n", l.display());
        }
    }
    out
}

fn col(header: &[String], name: &str, path: &Path) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("{}: no column {name} in {header:?}", path.display()))
}

/// Watermark files replayed in commit order: the last version of each key
/// wins. Each key's versions must arrive in increasing `n`, each version
/// once, and no file may hold a key twice.
fn replay_watermark(files: &[Published], ctx: &str) -> BTreeMap<i64, (String, i64)> {
    let mut copy: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    let mut delivered: BTreeMap<(i64, i64), String> = BTreeMap::new();
    for f in files {
        let (ci, cv, cn) = (
            col(&f.header, "id", &f.path),
            col(&f.header, "v", &f.path),
            col(&f.header, "n", &f.path),
        );
        let mut in_file = BTreeSet::new();
        for r in &f.rows {
            let id: i64 = r[ci].parse().unwrap();
            let n: i64 = r[cn].parse().unwrap();
            assert!(
                in_file.insert(id),
                "{ctx}: {} holds id {id} twice",
                f.path.display()
            );
            if let Some(first) = delivered.insert((id, n), f.run_id.clone()) {
                panic!(
                    "{ctx}: version {n} of id {id} arrived twice: runs {first} and {}",
                    f.run_id
                );
            }
            if let Some((_, old)) = copy.get(&id) {
                assert!(
                    *old < n,
                    "{ctx}: id {id} went back from version {old} to {n} in run {}",
                    f.run_id
                );
            }
            copy.insert(id, (r[cv].clone(), n));
        }
    }
    copy
}

/// Change-tracking files applied in commit order: a full load replaces
/// the copy; `I`/`U` upsert; `D` deletes. A file is a full load when it is
/// the first one or its run reported `full_reload`.
fn replay_changes(dir: &Dir, files: &[Published], ctx: &str) -> BTreeMap<i64, (String, i64)> {
    let runs: serde_json::Value =
        serde_json::from_str(&stdout(&dir.hw(&["runs", "--json"]))).unwrap_or_default();
    let mut reloads = BTreeSet::new();
    for r in runs.as_array().into_iter().flatten() {
        for s in r["streams"].as_array().into_iter().flatten() {
            if s["full_reload"] == serde_json::Value::Bool(true) {
                for o in s["outputs"].as_array().into_iter().flatten() {
                    if let Some(name) = o.as_str().and_then(|u| u.rsplit('/').next()) {
                        reloads.insert(name.to_string());
                    }
                }
            }
        }
    }
    let mut copy: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    let mut applied: BTreeMap<(i64, String), String> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let name = f.path.file_name().unwrap().to_string_lossy().to_string();
        let full = i == 0 || reloads.contains(&name);
        let (ci, cv, cn, cver, cop) = (
            col(&f.header, "id", &f.path),
            col(&f.header, "v", &f.path),
            col(&f.header, "n", &f.path),
            col(&f.header, "SYS_CHANGE_VERSION", &f.path),
            col(&f.header, "SYS_CHANGE_OPERATION", &f.path),
        );
        if full {
            copy.clear();
        }
        let mut in_file = BTreeSet::new();
        for r in &f.rows {
            let id: i64 = r[ci].parse().unwrap();
            assert!(
                in_file.insert(id),
                "{ctx}: {} holds id {id} twice",
                f.path.display()
            );
            if !full {
                let key = (id, r[cver].clone());
                if let Some(first) = applied.insert(key, f.run_id.clone()) {
                    panic!(
                        "{ctx}: change (id {id}, version {}) arrived twice: runs {first} and {}",
                        r[cver], f.run_id
                    );
                }
            }
            match r[cop].as_str() {
                "I" | "U" => {
                    copy.insert(id, (r[cv].clone(), r[cn].parse().unwrap()));
                }
                "D" => {
                    copy.remove(&id);
                }
                op => panic!("{ctx}: unknown operation {op:?} in {}", f.path.display()),
            }
        }
    }
    copy
}

/// The MariaDB late-commit cap reads `information_schema.INNODB_TRX`,
/// which InnoDB serves from a cache refreshed only after 100 ms without
/// readers. While anything polls it more often (monitoring, several
/// highwater processes or streams), the list stays frozen, an open
/// transaction is missing from it, the cap becomes `NOW(6) - 50 ms`, and
/// a row that transaction commits late falls below the watermark: lost.
/// (Found by `mariadb_watermark_files` with `HIGHWATER_ATTACK_SECS=20`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_late_commit_hidden_by_innodb_trx_cache() {
    let db = MyDb::new("atk_trx_cache").await;
    let mut c = db.connect().await;
    c.query_drop(
        "CREATE TABLE t (id bigint PRIMARY KEY, v varchar(64) NOT NULL, n bigint NOT NULL, ts timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6));
         INSERT INTO t VALUES (1, 'a', 1, NOW(6) - INTERVAL 1 HOUR)",
    )
    .await
    .unwrap();
    let dir = Dir::new("atk_trx_cache");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    primary_key: [id]\n    mode: watermark\n    cursor: ts\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n",
            db.url
        ),
    );
    assert_code(&dir.hw(&["run"]), 0);

    // A poller keeps the INNODB_TRX cache from refreshing.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (url, stop) = (db.url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut p = my_connect(&url).await;
            while !stop.load(Ordering::Relaxed) {
                let _: Option<i64> = p
                    .query_first("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut late = db.connect().await;
    late.query_drop("BEGIN").await.unwrap();
    late.query_drop("INSERT INTO t VALUES (2, 'late', 1, NOW(6))")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.query_drop("INSERT INTO t VALUES (3, 'after', 1, NOW(6))")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = dir.hw(&["run"]);
    assert_code(&o, 0);
    late.query_drop("COMMIT").await.unwrap();
    stop.store(true, Ordering::Relaxed);
    poller.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Other tests' transactions on this server may hold rows back for a
    // while (the cap is server-wide): run until nothing is held back.
    for _ in 0..60 {
        let o = dir.hw(&["run"]);
        assert_code(&o, 0);
        if !stdout(&o).contains("held back") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut ids: Vec<String> = all_csv_rows(&dir, "lake/t")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["1", "2", "3"],
        "the late row 2 must arrive once (first delta run said: {})",
        stdout(&o)
    );
}
