//! Change tracking on PostgreSQL: a trigger writing a change log whose
//! version is the writing transaction's id (see [`crate::change_tracking`]
//! for the objects and the net-change semantics).
//!
//! Why a run never skips a change. A version taken from a sequence at write
//! time follows *write* order, not commit order: a run could read version
//! 10 committed while 9 is still open, move to 10 and lose 9 forever. Here
//! the version of a change is the 64-bit id of its transaction
//! (`pg_current_xact_id()`, which never wraps), and a run caps what it reads
//! by its snapshot's `xmin`, the oldest transaction still running:
//!
//! ```text
//! BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
//! to = pg_snapshot_xmin(pg_current_snapshot()) - 1
//!      every transaction with id <= to has finished: committed ones are
//!      visible in this snapshot, aborted ones left nothing
//! read log rows with after < hw_version <= to
//! ```
//!
//! A transaction with id ≤ `to` committed before the snapshot, so its
//! changes are in this read (or in an earlier one). A transaction still
//! running has an id ≥ `xmin` > `to`, and one that starts later gets a larger
//! id still: both are read by a later run, whose window starts at `to`. So
//! two transactions that commit in the opposite order of their ids cannot
//! make a run skip a change; the price is that a long-running write
//! transaction (in any database of the cluster) holds the window back.
//! Writers are not serialised and any isolation level works for them.
//!
//! The log is append-only: statement-level triggers append one row per
//! changed row (key, operation, version, `hw_seq`), with no index lookups
//! and no upsert, so tracking costs the source little more than the rows
//! themselves (one BRIN index over the order number, the version and the
//! time: three single-column ones cost a fifth more on a bulk insert). `hw_seq` is the writing statement's place in the order of writes
//! (a sequence number taken after the statement locked its rows), so of two
//! writes of one row the later has the larger number, even when its
//! transaction id is smaller. A run nets the changes itself: a key's state
//! is its last write; the run delivers the keys whose last write has a
//! version in `(after, to]`, with the snapshot's values; a key whose last
//! write is newer than `to` waits for the next run, which delivers it with
//! its newest values (net changes). Every later write of a key is in the
//! log's tail from that key's row on, so the last writes are found in the
//! tail from the window's first row, not in the whole log.
//!
//! A full load reads every row of the table except keys whose last write is
//! newer than `to` (visible but past the window): those come with the next
//! delta, so each change lands exactly once. `TRUNCATE` clears the log and
//! raises the minimum valid version, so every stream reloads.
//!
//! Setup (or the repair of an incomplete setup) is one transaction: a run
//! killed in the middle leaves nothing, and the generation is written last
//! all the same. Every run checks the meta row's generation, the log, the
//! function and both triggers (present and enabled) before trusting a
//! position.

use highwater_core::{ChangeVersion, Error, Relation, Result, failpoint};
use tokio_postgres::Client;

use super::source::pg_err;
use super::types::PgKind;
use crate::change_tracking::{
    Installed, META_TABLE, Names, OPERATION_COLUMN, Status, VERSION_COLUMN, table_of, trigger_name,
};
use crate::util::quote_ident;

fn q(s: &str) -> String {
    quote_ident(s, '"')
}

pub(super) async fn names(client: &Client, rel: &Relation) -> Result<Names> {
    let (schema, table) = table_of(rel)?;
    let schema = match schema {
        Some(s) => s.to_string(),
        None => client
            .query_typed_one("SELECT current_schema()::text", &[])
            .await
            .map_err(pg_err)?
            .get(0),
    };
    Ok(Names::new(schema, table, '"'))
}

/// `(min_valid_version, generation)` of the meta row, if there is one (the
/// generation is NULL until setup finishes, and absent from meta tables
/// made before generations).
async fn meta_row(client: &Client, n: &Names) -> Result<Option<(i64, Option<String>)>> {
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL,
                    EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1)
                             AND attname = 'generation' AND NOT attisdropped)",
            &[&n.meta()],
        )
        .await
        .map_err(pg_err)?;
    let (exists, has_generation): (bool, bool) = (row.get(0), row.get(1));
    if !exists {
        return Ok(None);
    }
    let generation = if has_generation {
        "generation"
    } else {
        "NULL::text"
    };
    let row = client
        .query_opt(
            &format!(
                "SELECT min_valid_version, {generation} FROM {} WHERE table_name = $1",
                n.meta()
            ),
            &[&n.table],
        )
        .await
        .map_err(pg_err)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// What exists of the table's tracking objects: the meta row and its
/// generation, the log, the function and the two triggers (enabled).
async fn inspect(client: &Client, n: &Names) -> Result<Installed> {
    let mut found = Installed::default();
    match meta_row(client, n).await? {
        None => found.lacks(format!("row {} in {}.{META_TABLE}", n.table, n.space)),
        Some((_, None)) => {
            found.any = true;
            found.lacks(crate::change_tracking::no_generation());
        }
        Some((_, Some(g))) => {
            found.any = true;
            found.generation = Some(g);
        }
    }
    let names = TRIGGERS.map(|t| trigger_name(&n.table, t));
    // A trigger of an earlier version (row level) counts as missing: the
    // setup is then repaired, which installs the statement-level ones.
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL,
                    to_regprocedure($2 || '()') IS NOT NULL,
                    (SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = to_regclass($3) AND tgname = $4
                        AND (tgtype & 1) = 0),
                    (SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = to_regclass($3) AND tgname = $5),
                    (SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = to_regclass($3) AND tgname = $6),
                    (SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = to_regclass($3) AND tgname = $7)",
            &[
                &n.log(),
                &n.trigger("fn"),
                &n.t(),
                &names[0],
                &names[1],
                &names[2],
                &names[3],
            ],
        )
        .await
        .map_err(pg_err)?;
    if row.get::<_, bool>(0) {
        found.any = true;
        // The append-only log (its order column and sequence); a log of
        // an earlier version (one row per key) is repaired as missing.
        let current: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1)
                                 AND attname = 'hw_seq' AND NOT attisdropped)
                        AND to_regclass($2) IS NOT NULL",
                &[&n.log(), &n.seq()],
            )
            .await
            .map_err(pg_err)?
            .get(0);
        if !current {
            found.lacks(format!(
                "table {} in the append-only layout (it is of an earlier version)",
                n.log
            ));
        }
    } else {
        found.lacks(format!("table {}", n.log));
    }
    if row.get::<_, bool>(1) {
        found.any = true;
    } else {
        found.lacks(format!("function {}", trigger_name(&n.table, "fn")));
    }
    for (i, name) in names.into_iter().enumerate().map(|(i, t)| (i + 2, t)) {
        match row.get::<_, Option<String>>(i).as_deref() {
            None => found.lacks(format!("trigger {name}")),
            Some("D") => {
                found.any = true;
                found.lacks(format!("trigger {name} (disabled)"));
            }
            Some(_) => found.any = true,
        }
    }
    Ok(found)
}

/// Verify the tracking objects (install or repair them, in one
/// transaction, if incomplete) and prune, before the read snapshot.
/// Returns notes.
pub(super) async fn prepare(
    client: &Client,
    rel: &Relation,
    pk: &[String],
    retention_secs: i64,
) -> Result<Vec<String>> {
    let n = names(client, rel).await?;
    let mut notes = Vec::new();
    if !inspect(client, &n).await?.complete() {
        client.batch_execute("BEGIN").await.map_err(pg_err)?;
        let res = async {
            // Two streams on one table must not set it up twice at once.
            client
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))",
                    &[&format!("highwater-ct:{}", n.t())],
                )
                .await
                .map_err(pg_err)?;
            let found = inspect(client, &n).await?;
            if found.complete() {
                return Ok(None);
            }
            // Setups of different tables share the schema's meta table:
            // concurrent `CREATE TABLE IF NOT EXISTS` of it can fail.
            client
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))",
                    &[&format!("highwater-ct-meta:{}", n.meta())],
                )
                .await
                .map_err(pg_err)?;
            let generation = crate::change_tracking::new_generation();
            let created = install(client, &n, pk, &generation).await?;
            Ok(Some(crate::change_tracking::install_note(
                &n.table,
                &found,
                &created,
                &generation,
            )))
        }
        .await;
        match res {
            Ok(note) => {
                client.batch_execute("COMMIT").await.map_err(pg_err)?;
                notes.extend(note);
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
    }
    // Prune: one statement, its own transaction.
    let pruned = client
        .query_one(
            &format!(
                "WITH d AS (DELETE FROM {log} WHERE hw_changed_at < clock_timestamp() - make_interval(secs => $1)
                            RETURNING hw_version),
                      m AS (SELECT count(*) AS n, max(hw_version) AS v FROM d),
                      u AS (UPDATE {meta} SET min_valid_version = GREATEST(min_valid_version, (SELECT v FROM m))
                             WHERE table_name = $2 AND (SELECT v FROM m) IS NOT NULL RETURNING 1)
                 SELECT n, v FROM m, (SELECT count(*) FROM u) AS uu",
                log = n.log(),
                meta = n.meta()
            ),
            &[&(retention_secs as f64), &n.table],
        )
        .await
        .map_err(pg_err)?;
    let (count, max): (i64, Option<i64>) = (pruned.get(0), pruned.get(1));
    if count > 0 {
        tracing::info!(table = %n.t(), rows = count, min_valid_version = ?max, "Pruned the change log.");
    }
    Ok(notes)
}

/// The table's triggers, by suffix: INSERT (`trg`, the name of the one
/// row-level trigger of earlier versions), UPDATE, DELETE, TRUNCATE.
const TRIGGERS: [&str; 4] = ["trg", "upd", "del", "truncate"];

/// Remove what is left of an earlier setup, create every object, and write
/// the meta row's generation last. Inside the caller's transaction.
async fn install(
    client: &Client,
    n: &Names,
    pk: &[String],
    generation: &str,
) -> Result<Vec<String>> {
    let mut defs = Vec::new();
    for c in pk {
        let row = client
            .query_opt(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&n.t(), c],
            )
            .await
            .map_err(pg_err)?;
        let Some(row) = row else {
            return Err(Error::config(
                format!("primary_key column {c}"),
                format!("not found in {}", n.t()),
            ));
        };
        let ty: String = row.get(0);
        defs.push(format!("{} {ty}", q(c)));
    }
    let cols = pk.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    let of = |r: &str| {
        pk.iter()
            .map(|c| format!("{r}.{}", q(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (log, meta, t, func, seq) = (n.log(), n.meta(), n.t(), n.trigger("fn"), n.seq());
    // Statement-level triggers read the statement's rows from transition
    // tables (`hw_new`, `hw_old`) and append them to the log: one INSERT …
    // SELECT per statement, no index lookups, no upsert (issue 12: a
    // 200,000-row insert into a tracked table took 7× the untracked time
    // with a row trigger, 3× with an upsert per statement). An UPDATE's
    // keys gone from its rows were deleted, keys new to them inserted (a
    // key changed), the rest updated: one full join of the two tables.
    let marked = |rows: &str, mark: &str| format!("(SELECT true AS {mark}, * FROM {rows})");
    let upd_rows = format!(
        "SELECT {}, CASE WHEN n.hw_n_ IS NULL THEN 'D' WHEN o.hw_o_ IS NULL THEN 'I' ELSE 'U' END,
                hw_txid_, hw_seq_, hw_at_
           FROM {} n FULL JOIN {} o ON {}",
        pk.iter()
            .map(|c| format!("COALESCE(n.{0}, o.{0})", q(c)))
            .collect::<Vec<_>>()
            .join(", "),
        marked("hw_new", "hw_n_"),
        marked("hw_old", "hw_o_"),
        pk.iter()
            .map(|c| format!("n.{0} = o.{0}", q(c)))
            .collect::<Vec<_>>()
            .join(" AND ")
    );
    let append = |select: &str| {
        format!("INSERT INTO {log} ({cols}, hw_op, hw_version, hw_seq, hw_changed_at) {select};")
    };
    let plain = |rows: &str, op: &str| {
        append(&format!(
            "SELECT {}, '{op}', hw_txid_, hw_seq_, hw_at_ FROM {rows} r",
            of("r")
        ))
    };
    let [trigger, upd, del, truncate] = TRIGGERS.map(|t| q(&trigger_name(&n.table, t)));
    let has_generation: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1)
                             AND attname = 'generation' AND NOT attisdropped)",
            &[&meta],
        )
        .await
        .map_err(pg_err)?
        .get(0);
    let setup_err = |e| super::errors::source_at(format!("setting up change tracking on {t}"), e);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {meta} (
                table_name text PRIMARY KEY,
                min_valid_version bigint NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                generation text);
             {add_generation}
             DROP TRIGGER IF EXISTS {trigger} ON {t};
             DROP TRIGGER IF EXISTS {upd} ON {t};
             DROP TRIGGER IF EXISTS {del} ON {t};
             DROP TRIGGER IF EXISTS {truncate} ON {t};
             DROP TABLE IF EXISTS {log};
             DROP SEQUENCE IF EXISTS {seq};
             CREATE TABLE {log} (
                {defs},
                hw_op char(1) NOT NULL,
                hw_version bigint NOT NULL,
                hw_seq bigint NOT NULL,
                hw_changed_at timestamptz NOT NULL);
             CREATE INDEX {idx} ON {log} USING brin (hw_seq, hw_version, hw_changed_at);
             CREATE SEQUENCE {seq} OWNED BY {log}.hw_seq;
             CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS $hw$
             #variable_conflict use_variable
             DECLARE
               hw_txid_ bigint := pg_current_xact_id()::text::bigint;
               -- The statement's place in the order of writes: taken when
               -- its rows are locked, so of two writes of one row the later
               -- has the larger number (transaction ids need not be).
               hw_seq_ bigint := nextval({seq_lit});
               hw_at_ timestamptz := clock_timestamp();
             BEGIN
               IF TG_OP = 'TRUNCATE' THEN
                 DELETE FROM {log};
                 UPDATE {meta} SET min_valid_version = hw_txid_ WHERE table_name = TG_TABLE_NAME;
               ELSIF TG_OP = 'INSERT' THEN
                 {ins_new}
               ELSIF TG_OP = 'DELETE' THEN
                 {del_old}
               ELSE
                 {upd_all}
               END IF;
               RETURN NULL;
             END $hw$;",
            add_generation = if has_generation {
                String::new()
            } else {
                format!("ALTER TABLE {meta} ADD COLUMN IF NOT EXISTS generation text;")
            },
            defs = defs.join(", "),
            idx = q(&format!("_hw_brin_{}", n.table)),
            seq_lit = crate::change_tracking::literal(&seq),
            ins_new = plain("hw_new", "I"),
            del_old = plain("hw_old", "D"),
            upd_all = append(&upd_rows),
        ))
        .await
        .map_err(|e| super::errors::source_at(format!("setting up change tracking on {t}"), e))?;
    client
        .execute(
            &format!(
                "INSERT INTO {meta} (table_name, min_valid_version, generation) VALUES ($1, 0, NULL)
                 ON CONFLICT (table_name) DO UPDATE SET generation = NULL, created_at = now()"
            ),
            &[&n.table],
        )
        .await
        .map_err(pg_err)?;
    failpoint("change_tracking.mid_setup");
    client
        .batch_execute(&format!(
            "CREATE TRIGGER {trigger} AFTER INSERT ON {t} REFERENCING NEW TABLE AS hw_new
               FOR EACH STATEMENT EXECUTE FUNCTION {func}();
             CREATE TRIGGER {upd} AFTER UPDATE ON {t} REFERENCING OLD TABLE AS hw_old NEW TABLE AS hw_new
               FOR EACH STATEMENT EXECUTE FUNCTION {func}();
             CREATE TRIGGER {del} AFTER DELETE ON {t} REFERENCING OLD TABLE AS hw_old
               FOR EACH STATEMENT EXECUTE FUNCTION {func}();
             CREATE TRIGGER {truncate} AFTER TRUNCATE ON {t}
               FOR EACH STATEMENT EXECUTE FUNCTION {func}();"
        ))
        .await
        .map_err(setup_err)?;
    failpoint("change_tracking.before_complete");
    // The marker that setup finished: the generation, written last.
    client
        .execute(
            &format!("UPDATE {meta} SET generation = $1 WHERE table_name = $2"),
            &[&generation, &n.table],
        )
        .await
        .map_err(pg_err)?;
    Ok(vec![
        format!("table {}", n.log),
        format!("sequence _hw_seq_{}", n.table),
        format!("function {}", trigger_name(&n.table, "fn")),
        format!(
            "triggers {}",
            TRIGGERS.map(|t| trigger_name(&n.table, t)).join(", ")
        ),
        format!("row {} in {}.{META_TABLE}", n.table, n.space),
    ])
}

/// What to read, decided in the snapshot.
pub(super) struct Plan {
    pub sql: String,
    pub version_to: ChangeVersion,
    pub full_reload: bool,
    pub notes: Vec<String>,
}

/// The highest version all of whose transactions have finished, in the
/// current snapshot.
const TO_SQL: &str = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1";

/// Inside the REPEATABLE READ transaction: the window and the `COPY` query.
/// `select` are the table's select expressions (already cast), `names` its
/// column names.
pub(super) async fn plan(
    client: &Client,
    rel: &Relation,
    names_: &[String],
    kinds: &[PgKind],
    pk: &[String],
    after: Option<&ChangeVersion>,
) -> Result<Plan> {
    let n = names(client, rel).await?;
    let to: i64 = client.query_one(TO_SQL, &[]).await.map_err(pg_err)?.get(0);
    let Some((min_valid, Some(generation))) = meta_row(client, &n).await? else {
        return Err(Error::source(
            "postgres",
            format!(
                "change tracking on {} was removed or left incomplete during the run; run again",
                n.t()
            ),
        ));
    };
    let (reload, note) = crate::change_tracking::reload_decision(
        &n.table,
        after,
        &generation,
        min_valid,
        to,
        "changes were pruned after change_retention, or the table was truncated",
    );
    let notes: Vec<String> = note.into_iter().collect();
    let after_v = after.map_or(0, |a| a.version);
    client
        .execute(
            "SELECT set_config('highwater.after', $1, true), set_config('highwater.to', $2, true)",
            &[&after_v.to_string(), &to.to_string()],
        )
        .await
        .map_err(pg_err)?;
    let lo = "(SELECT current_setting('highwater.after')::int8)";
    let hi = "(SELECT current_setting('highwater.to')::int8)";
    let (vc, oc) = (q(VERSION_COLUMN), q(OPERATION_COLUMN));
    let col = |alias: &str, c: &str, k: &PgKind| k.select_expr(&format!("{alias}.{}", q(c)));
    let join = pk
        .iter()
        .map(|c| format!("t.{0} = c.{0}", q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let key = pk.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
    let log = n.log();
    // The log holds every change; a key's state is its last write (the
    // largest `hw_seq`), whose version may be smaller than an earlier
    // write's (transaction ids are taken at a transaction's first write,
    // not its commit). Every write after a row's is in the log's tail from
    // that row on, so the last write of each key with a row in a range is
    // found in the tail from the range's first row.
    let last_of = |range: &str| {
        format!(
            "SELECT DISTINCT ON ({key}) {key}, hw_op, hw_version FROM {log}
              WHERE hw_seq >= (SELECT min(hw_seq) FROM {log} WHERE {range})
              ORDER BY {key}, hw_seq DESC"
        )
    };
    let sql = if reload {
        let list: Vec<String> = names_
            .iter()
            .zip(kinds)
            .map(|(c, k)| col("t", c, k))
            .collect();
        // Keys whose last write is past the window come with the next
        // delta, with the values of its snapshot.
        format!(
            "COPY (WITH late AS ({}),
                        c AS (SELECT * FROM late WHERE hw_version > {hi})
                   SELECT {}, {hi} AS {vc}, 'I'::text AS {oc} FROM {} AS t
                    WHERE NOT EXISTS (SELECT 1 FROM c WHERE {join}))
             TO STDOUT (FORMAT binary)",
            last_of(&format!("hw_version > {hi}")),
            list.join(", "),
            n.t(),
        )
    } else {
        let list: Vec<String> = names_
            .iter()
            .zip(kinds)
            .map(|(c, k)| col(if pk.contains(c) { "c" } else { "t" }, c, k))
            .collect();
        // The window's keys: those whose last write has a version in it.
        // `I` when the key's current life began in it: its last insert
        // (also in the tail: versions after the window's start are) has a
        // version after the window's start.
        let window = format!("hw_version > {lo} AND hw_version <= {hi}");
        let tail = format!(" OR hw_version > {lo}");
        let same = pk
            .iter()
            .map(|c| format!("i.{0} = l.{0}", q(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "COPY (WITH tail AS MATERIALIZED (SELECT {key}, hw_op, hw_version, hw_seq FROM {log}
                                   WHERE hw_seq >= (SELECT min(hw_seq) FROM {log} WHERE {window}){tail}),
                        l AS (SELECT DISTINCT ON ({key}) {key}, hw_op, hw_version FROM tail
                               ORDER BY {key}, hw_seq DESC),
                        i AS (SELECT DISTINCT ON ({key}) {key}, hw_version FROM tail WHERE hw_op = 'I'
                               ORDER BY {key}, hw_seq DESC),
                        c AS (SELECT l.*, i.hw_version AS hw_created FROM l LEFT JOIN i ON {same}
                               WHERE l.hw_version > {lo} AND l.hw_version <= {hi})
                   SELECT {}, c.hw_version AS {vc},
                          CASE WHEN c.hw_op = 'D' THEN 'D' WHEN c.hw_created > {lo} THEN 'I' ELSE 'U' END::text AS {oc}
                     FROM c LEFT JOIN {} AS t ON {join}
                    ORDER BY c.hw_version)
             TO STDOUT (FORMAT binary)",
            list.join(", "),
            n.t()
        )
    };
    Ok(Plan {
        sql,
        version_to: ChangeVersion::new(to, generation),
        full_reload: reload,
        notes,
    })
}

pub async fn status(url: &str, rel: &Relation, after: Option<i64>) -> Result<Status> {
    let client = super::source::connect(url).await?;
    let n = names(&client, rel).await?;
    let found = inspect(&client, &n).await?;
    if !found.any {
        return Ok(Status::default());
    }
    let min_valid = meta_row(&client, &n).await?.map(|m| m.0);
    let current: i64 = client.query_one(TO_SQL, &[]).await.map_err(pg_err)?.get(0);
    let has_log: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&n.log()])
        .await
        .map_err(pg_err)?
        .get(0);
    let log_rows = if has_log {
        Some(
            client
                .query_one(&format!("SELECT count(*) FROM {}", n.log()), &[])
                .await
                .map_err(pg_err)?
                .get(0),
        )
    } else {
        None
    };
    let changed_after = match after {
        // Keys changed in the window (the log holds every change).
        Some(a) if has_log => {
            let keys: Vec<String> = client
                .query(
                    "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1)
                       AND attnum > 0 AND NOT attisdropped AND attname NOT IN ('hw_op', 'hw_version', 'hw_seq', 'hw_changed_at')
                     ORDER BY attnum",
                    &[&n.log()],
                )
                .await
                .map_err(pg_err)?
                .iter()
                .map(|r| q(r.get(0)))
                .collect();
            Some(
                client
                    .query_one(
                        &format!(
                            "SELECT count(*) FROM (SELECT DISTINCT {} FROM {}
                              WHERE hw_version > $1 AND hw_version <= $2) k",
                            keys.join(", "),
                            n.log()
                        ),
                        &[&a, &current],
                    )
                    .await
                    .map_err(pg_err)?
                    .get(0),
            )
        }
        _ => None,
    };
    Ok(Status {
        set_up: true,
        missing: found.missing,
        generation: found.generation,
        current_version: Some(current),
        min_valid_version: min_valid,
        log_rows,
        changed_after,
    })
}

pub async fn disable(url: &str, rel: &Relation) -> Result<Vec<String>> {
    let client = super::source::connect(url).await?;
    let n = names(&client, rel).await?;
    let mut removed = Vec::new();
    client.batch_execute("BEGIN").await.map_err(pg_err)?;
    let res: Result<()> = async {
        let has_table: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&n.t()])
            .await
            .map_err(pg_err)?
            .get(0);
        if has_table {
            for tg in TRIGGERS {
                let name = trigger_name(&n.table, tg);
                let exists: bool = client
                    .query_one(
                        "SELECT count(*) > 0 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2",
                        &[&n.t(), &name],
                    )
                    .await
                    .map_err(pg_err)?
                    .get(0);
                if exists {
                    client
                        .batch_execute(&format!("DROP TRIGGER {} ON {}", q(&name), n.t()))
                        .await
                        .map_err(pg_err)?;
                    removed.push(format!("trigger {name}"));
                }
            }
        }
        let has_fn: bool = client
            .query_one("SELECT to_regprocedure($1 || '()') IS NOT NULL", &[&n.trigger("fn")])
            .await
            .map_err(pg_err)?
            .get(0);
        if has_fn {
            client
                .batch_execute(&format!("DROP FUNCTION {}()", n.trigger("fn")))
                .await
                .map_err(pg_err)?;
            removed.push(format!("function {}", trigger_name(&n.table, "fn")));
        }
        let has_log: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&n.log()])
            .await
            .map_err(pg_err)?
            .get(0);
        if has_log {
            client
                .batch_execute(&format!("DROP TABLE {}", n.log()))
                .await
                .map_err(pg_err)?;
            removed.push(format!("table {}", n.log));
        }
        if meta_row(&client, &n).await?.is_some() {
            client
                .execute(
                    &format!("DELETE FROM {} WHERE table_name = $1", n.meta()),
                    &[&n.table],
                )
                .await
                .map_err(pg_err)?;
            removed.push(format!("row {} in {}.{META_TABLE}", n.table, n.space));
            let left: i64 = client
                .query_one(&format!("SELECT count(*) FROM {}", n.meta()), &[])
                .await
                .map_err(pg_err)?
                .get(0);
            if left == 0 {
                client
                    .batch_execute(&format!("DROP TABLE {}", n.meta()))
                    .await
                    .map_err(pg_err)?;
                removed.push(format!("table {}.{META_TABLE}", n.space));
            }
        }
        Ok(())
    }
    .await;
    match res {
        Ok(()) => {
            client.batch_execute("COMMIT").await.map_err(pg_err)?;
            Ok(removed)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}
