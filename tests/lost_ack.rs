//! Faults between highwater and its servers (issue 7). Lost commit
//! acknowledgements (item 4): the target commits, the connection drops
//! before the answer reaches highwater. A TCP proxy between
//! highwater and the target forwards everything, but when the client sends
//! the trigger bytes (`COMMIT`, or the marker's PUT) it lets the server
//! answer and then cuts both sockets without forwarding that answer.
//! Settling must ask the target what it committed: no duplicates on an
//! append target, and the position moves. The same proxy resets or stalls
//! a source mid-read: transient resets are retried, stalls time out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::util::*;

/// What a [`FaultyProxy`] does to the first connection it catches; every
/// other connection passes through untouched.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Forward the client chunk containing the last of these byte strings
    /// (seen in order on one connection), let the server answer, then cut
    /// both sockets without forwarding the answer: a lost acknowledgement.
    LoseAnswerTo(&'static [&'static [u8]]),
    /// Once the server has sent more than this many bytes on a connection,
    /// cut it (a reset mid-read).
    ResetAfter(usize),
    /// Once the server has sent more than this many bytes, stop forwarding
    /// and keep the connection open and silent (a stalled server).
    StallAfter(usize),
}

/// A TCP proxy between highwater and a real server that injects one fault.
pub struct FaultyProxy {
    pub port: u16,
    /// The fault happened.
    pub fired: Arc<AtomicBool>,
}

impl FaultyProxy {
    pub async fn start(upstream: &str, fault: Fault) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fired = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let f = fired.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                tokio::spawn(pump(client, server, fault, f.clone()));
            }
        });
        FaultyProxy { port, fired }
    }
}

async fn pump(client: TcpStream, server: TcpStream, fault: Fault, fired: Arc<AtomicBool>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let cut = Arc::new(tokio::sync::Notify::new());
    let armed = Arc::new(AtomicBool::new(false));
    let (cut2, armed2, fired2) = (cut.clone(), armed.clone(), fired.clone());
    // client → server: watch for the triggers of a lost answer.
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut stage = 0;
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Fault::LoseAnswerTo(triggers) = fault {
                let t = triggers[stage];
                if !fired2.load(Ordering::SeqCst) && buf[..n].windows(t.len()).any(|w| w == t) {
                    stage += 1;
                    if stage == triggers.len() {
                        fired2.store(true, Ordering::SeqCst);
                        armed2.store(true, Ordering::SeqCst);
                    }
                }
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if armed2.load(Ordering::SeqCst) {
                // Wait for the server's answer, then cut everything.
                cut2.notified().await;
                break;
            }
        }
    });
    // server → client: swallow the answer, or reset or stall mid-stream.
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if armed.load(Ordering::SeqCst) {
            cut.notify_one();
            break;
        }
        match fault {
            Fault::ResetAfter(after) | Fault::StallAfter(after)
                if sent + n > after && !fired.swap(true, Ordering::SeqCst) =>
            {
                if let Fault::StallAfter(_) = fault {
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
                break;
            }
            _ => {}
        }
        sent += n;
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
    // Dropping the halves closes both sockets.
}

/// The commit of the transaction that records `_highwater_commits`.
pub const COMMIT_AFTER_RECORD: &[&[u8]] = &[b"(stream, run_id, info, committed_at)", b"COMMIT"];

fn config(src: &str, dst: &str) -> String {
    format!(
        "connections:\n  src: {src}\n  dwh: {dst}\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    \
         cursor: id\n    primary_key: [id]\n    to: dwh\n    into: t_copy\n    write: append\n"
    )
}

/// Replace the `host:port` of a URL with the proxy's.
fn via(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = auth
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}127.0.0.1:{port}/{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_commit_answer_postgres_target_is_settled_not_repeated() {
    let src = PgDb::new("lostack_src").await;
    src.exec("CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g")
        .await;
    let dst = PgDb::new("lostack_dst").await;
    let proxy =
        FaultyProxy::start("127.0.0.1:5432", Fault::LoseAnswerTo(COMMIT_AFTER_RECORD)).await;
    let dir = Dir::new("lostack_pg");
    dir.write(
        "highwater.yaml",
        &config(&src.url, &via(&dst.url, proxy.port)),
    );
    let o = dir.hw(&["run"]);
    assert!(
        proxy.fired.load(Ordering::SeqCst),
        "the proxy cut a COMMIT answer"
    );
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("answer to the commit was lost")
            || stderr(&o).contains("answer to the commit was lost"),
        "the run says what happened\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    // A second run finds nothing new: the position moved.
    assert_code(&dir.hw(&["run"]), 0);
    let n: i64 = dst
        .client
        .query_one("SELECT count(*) FROM t_copy", &[])
        .await
        .unwrap()
        .get(0);
    let d: i64 = dst
        .client
        .query_one("SELECT count(DISTINCT id) FROM t_copy", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((n, d), (1000, 1000), "every row once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_commit_answer_mariadb_target_is_settled_not_repeated() {
    let src = PgDb::new("lostack_src").await;
    src.exec("CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g")
        .await;
    let dst = MyDb::new("lostack_dst").await;
    let proxy =
        FaultyProxy::start("127.0.0.1:3306", Fault::LoseAnswerTo(COMMIT_AFTER_RECORD)).await;
    let dir = Dir::new("lostack_my");
    // mysql_async moves to the Unix socket unless told not to.
    let url = format!("{}?prefer_socket=false", via(&dst.url, proxy.port));
    dir.write("highwater.yaml", &config(&src.url, &url));
    let o = dir.hw(&["run"]);
    assert!(
        proxy.fired.load(Ordering::SeqCst),
        "the proxy cut a COMMIT answer"
    );
    assert_code(&o, 0);
    assert_code(&dir.hw(&["run"]), 0);
    let mut c = dst.connect().await;
    let (n, d): (i64, i64) = c
        .query_first("SELECT count(*), count(DISTINCT id) FROM t_copy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n, d), (1000, 1000), "every row once");
}

/// A connection reset in the middle of the source's read (after the
/// attempt began and batches were written) is transient: the run tries the
/// whole attempt again, as an attempt of its own, and succeeds; every row
/// arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_read_is_retried_and_loses_nothing() {
    let src = PgDb::new("reset_src").await;
    src.exec("CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, repeat('v', 100) || g FROM generate_series(1, 20000) g")
        .await;
    let FaultyProxy { port, fired } =
        FaultyProxy::start("127.0.0.1:5432", Fault::ResetAfter(200_000)).await;
    let dir = Dir::new("reset");
    dir.write(
        "highwater.yaml",
        &format!(
            "connections:\n  src: {}\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    \
             cursor: id\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n    batch_size: 500\n",
            via(&src.url, port)
        ),
    );
    let o = dir.hw(&["run"]);
    assert!(fired.load(Ordering::SeqCst));
    assert_code(&o, 0);
    assert!(stderr(&o).contains("retrying"), "{}", stderr(&o));
    let mut ids: Vec<i64> = all_csv_rows(&dir, "lake/t")
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=20000).collect::<Vec<_>>(), "every row once");
}

/// A source that stops answering in the middle of a read (the connection
/// stays open) fails the run after the idle timeout instead of hanging it;
/// nothing is committed and the next run copies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_stalls_mid_read_times_out() {
    let src = PgDb::new("stall_src").await;
    src.exec("CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, repeat('v', 100) || g FROM generate_series(1, 20000) g")
        .await;
    let FaultyProxy { port, fired } =
        FaultyProxy::start("127.0.0.1:5432", Fault::StallAfter(200_000)).await;
    let dir = Dir::new("stall");
    let cfg = |url: &str| {
        format!(
            "connections:\n  src: {url}\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    \
             cursor: id\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n"
        )
    };
    dir.write("highwater.yaml", &cfg(&via(&src.url, port)));
    let started = std::time::Instant::now();
    let o = dir.hw_env(&["run"], &[("HIGHWATER_IDLE_TIMEOUT", "2")]);
    assert!(fired.load(Ordering::SeqCst));
    assert_code(&o, 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "failed in time"
    );
    assert!(stderr(&o).contains("no answer for 2 s"), "{}", stderr(&o));
    assert!(dir.files("lake/t", ".csv").is_empty(), "nothing published");
    dir.write("highwater.yaml", &cfg(&src.url));
    assert_code(&dir.hw(&["run"]), 0);
    assert_eq!(all_csv_rows(&dir, "lake/t").len(), 20000);
}

/// A shared state database that stops answering (the connection stays
/// open) fails the run after the idle timeout instead of hanging it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_store_that_stalls_fails_the_run_in_time() {
    let src = PgDb::new("stall_state_src").await;
    src.exec("CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g")
        .await;
    let state = PgDb::new("stall_state").await;
    let FaultyProxy { port, fired } =
        FaultyProxy::start("127.0.0.1:5432", Fault::StallAfter(1_200)).await;
    let dir = Dir::new("stall_state");
    dir.write(
        "highwater.yaml",
        &format!(
            "state: {}\nconnections:\n  src: {}\n  lake: file://./lake\nstreams:\n  t:\n    from: src\n    table: t\n    mode: watermark\n    \
             cursor: id\n    to: lake\n    path: \"t/t-{{run_id}}.csv\"\n",
            via(&state.url, port),
            src.url
        ),
    );
    let started = std::time::Instant::now();
    let o = dir.hw_env(&["run"], &[("HIGHWATER_IDLE_TIMEOUT", "2")]);
    assert!(fired.load(Ordering::SeqCst), "the state connection stalled");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(45),
        "failed in time, not hung"
    );
    assert_code(&o, 1);
    assert!(stderr(&o).contains("no answer"), "{}", stderr(&o));
}
