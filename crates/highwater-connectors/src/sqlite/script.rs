//! The Script activity on SQLite (see [`crate::script`]): each statement
//! of a block in turn, `@name` parameters bound by SQLite itself; a
//! watchdog thread interrupts a block at its time limit.

use std::path::Path;
use std::time::{Duration, Instant};

use fallible_iterator::FallibleIterator;
use highwater_core::{Error, Result};
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection};
use serde_json::{Map, Value};

use crate::procedure::ProcType;
use crate::script::{BlockKind, ScriptBlock, ScriptOutcome, float};

fn err(e: rusqlite::Error) -> Error {
    Error::source("sqlite", e)
}

fn bind_value(ty: ProcType, v: &Option<String>) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    let Some(v) = v else { return S::Null };
    match ty {
        ProcType::Boolean => S::Integer(i64::from(v.eq_ignore_ascii_case("true") || v == "1")),
        ProcType::Int16 | ProcType::Int32 | ProcType::Int64 => match v.trim().parse() {
            Ok(i) => S::Integer(i),
            Err(_) => S::Text(v.clone()),
        },
        ProcType::Double | ProcType::Single | ProcType::Decimal => match v.trim().parse() {
            Ok(f) => S::Real(f),
            Err(_) => S::Text(v.clone()),
        },
        _ => S::Text(v.clone()),
    }
}

pub(crate) fn run(path: &Path, blocks: &[ScriptBlock], limit: Duration) -> Result<ScriptOutcome> {
    let conn = Connection::open(path).map_err(|e| Error::Connection {
        target: format!("sqlite://{}", path.display()),
        message: e.to_string(),
    })?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
    let mut out = ScriptOutcome::default();
    for (i, b) in blocks.iter().enumerate() {
        let deadline = Instant::now() + limit;
        // A watchdog interrupts the statement running at the deadline.
        let handle = conn.get_interrupt_handle();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if wait.recv_timeout(limit).is_err() {
                handle.interrupt();
            }
        });
        let r = block(&conn, b, &mut out);
        let _ = done.send(());
        let _ = watchdog.join();
        if let Err(e) = r {
            if Instant::now() > deadline {
                return Err(Error::data(format!(
                    "scripts[{i}] did not finish within {}s (scriptBlockExecutionTimeout)",
                    limit.as_secs()
                )));
            }
            return Err(e);
        }
    }
    Ok(out)
}

fn block(conn: &Connection, b: &ScriptBlock, out: &mut ScriptOutcome) -> Result<()> {
    let mut batch = Batch::new(conn, &b.text);
    while let Some(mut stmt) = batch.next().map_err(err)? {
        for p in &b.params {
            let name = p.name.trim().trim_start_matches('@');
            let idx = stmt.parameter_index(&format!("@{name}")).map_err(err)?;
            if let Some(idx) = idx {
                stmt.raw_bind_parameter(idx, bind_value(p.ty, &p.value))
                    .map_err(err)?;
            }
        }
        let ncols = stmt.column_count();
        if ncols == 0 {
            let n = stmt.raw_execute().map_err(err)?;
            if b.kind == BlockKind::NonQuery {
                out.records_affected += n as u64;
            }
            continue;
        }
        let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
        let mut rows = stmt.raw_query();
        let mut set = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let mut m = Map::new();
            for (k, n) in names.iter().enumerate() {
                let v = match r.get_ref(k).map_err(err)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::from(i),
                    ValueRef::Real(f) => float(f),
                    ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(bl) => Value::String(String::from_utf8_lossy(bl).into_owned()),
                };
                m.insert(n.clone(), v);
            }
            set.push(m);
        }
        if b.kind == BlockKind::Query {
            out.result_sets.push(set);
        }
    }
    Ok(())
}
