#!/usr/bin/env bash
# `mode: cdc` on PostgreSQL, in one run, as ratios against the same server:
#
#   bench/cdc.sh [SECONDS] [DELTA_ROWS] [CHANGES]
#       (defaults 10, 2000000, 1000000; needs the logical cluster on
#        127.0.0.1:5434, HIGHWATER_BENCH_PG_LOGICAL overrides it; with
#        HIGHWATER_BENCH_MARIADB=mysql://root@127.0.0.1:3307 also MariaDB's
#        peak memory for 1,000,000 changed keys; HIGHWATER_BENCH_BIN runs
#        that binary instead of building the release one)
#
# 1. Write overhead on the source: pgbench single-row updates (SECONDS each)
#    and a 200,000-row INSERT … SELECT, three rounds in rotating order, the
#    best of each, on a table captured with `cdc`, with `change_tracking`
#    (triggers) and with nothing, each in its own database. Target: cdc
#    within 5 % of nothing.
# 2. A delta run of 100 changed rows on a DELTA_ROWS-row table (wall time of
#    the whole `highwater run`). Target: <= 0.05 s.
# 3. CHANGES inserted rows delivered to CSV by a delta run, against
#    `pg_recvlogical` writing the same changes (pgoutput, the stream's
#    publication, its own slot) to a file. Target: >= 0.5x its rate.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-10}
DELTA_ROWS=${2:-2000000}
CHANGES=${3:-1000000}
BULK=200000
PGURL=${HIGHWATER_BENCH_PG_LOGICAL:-postgres://postgres@127.0.0.1:5434}
PGHOST=$(echo "$PGURL" | sed -E 's#.*@([^:/]+).*#\1#')
PGPORT=$(echo "$PGURL" | sed -E 's#.*:([0-9]+)$#\1#')
WORK=$(mktemp -d)
cleanup() {
  for db in hwb_none hwb_cdc hwb_ct; do
    psql "$PGURL/postgres" -qAt -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$db'" >/dev/null 2>&1 || true
    psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${HIGHWATER_BENCH_BIN:-}" ]; then
  HW=$HIGHWATER_BENCH_BIN   # a binary already built (e.g. to try the script)
else
  cargo build --release --quiet
  HW=${CARGO_TARGET_DIR:-$PWD/target}/release/highwater
fi

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
peak_kib() { grep 'Maximum resident' "$1" | awk '{print $6}'; }
hw() { local dir=$1; shift; (cd "$dir" && "$HW" -c highwater.yaml "$@"); }

cleanup_dbs() { for db in hwb_none hwb_cdc hwb_ct; do
  psql "$PGURL/postgres" -qAt -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$db'" >/dev/null
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
done; }
cleanup_dbs

# ---------------------------------------------------------------- 1. overhead
for mode in none cdc ct; do
  db=hwb_$mode
  psql "$PGURL/postgres" -qc "CREATE DATABASE $db" >/dev/null
  psql "$PGURL/$db" -q <<SQL
CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL, pad text);
INSERT INTO acct SELECT g, 0, repeat('x', 80) FROM generate_series(1, 100000) g;
CREATE TABLE bulk (id bigint PRIMARY KEY, qty int, name text, amount numeric(12,2), at timestamptz);
VACUUM ANALYZE;
SQL
  mkdir -p "$WORK/$mode"
  case $mode in
    cdc) m="mode: cdc" ;;
    ct) m="mode: change_tracking" ;;
    none) m="" ;;
  esac
  if [ -n "$m" ]; then
    cat >"$WORK/$mode/highwater.yaml" <<YAML
connections:
  pg: $PGURL/$db
  lake: file://./lake
streams:
  acct:
    from: pg
    table: acct
    $m
    primary_key: [id]
    to: lake
    path: "acct/{run_id}.csv"
  bulk:
    from: pg
    table: bulk
    $m
    primary_key: [id]
    to: lake
    path: "bulk/{run_id}.csv"
YAML
    # Sets capture up (slot or triggers); one stream at a time: two
    # change-tracking streams setting up at once race on _highwater_ct.
    hw "$WORK/$mode" run acct >/dev/null 2>&1
    hw "$WORK/$mode" run bulk >/dev/null 2>&1
  fi
done

cat >"$WORK/update.sql" <<'SQL'
\set id random(1, 100000)
UPDATE acct SET v = v + 1 WHERE id = :id;
SQL
declare -A TPS BULK_S
for mode in none cdc ct; do TPS[$mode]=0; BULK_S[$mode]=999; done
# Three rounds, the order rotating (a machine shared with other work
# drifts; each mode gets every slot once); the best of each is kept.
for round in 1 2 3; do
  case $round in 1) order="none cdc ct" ;; 2) order="cdc ct none" ;; 3) order="ct none cdc" ;; esac
  for mode in $order; do
    t=$(pgbench -h "$PGHOST" -p "$PGPORT" -U postgres -n -c 4 -j 2 -T "$SECONDS_EACH" -f "$WORK/update.sql" "hwb_$mode" 2>/dev/null |
      awk '/^tps/ {print int($3)}')
    [ "$t" -gt "${TPS[$mode]}" ] && TPS[$mode]=$t
    lo=$(( (round - 1) * BULK + 1 )); hi=$(( round * BULK ))
    psql "$PGURL/hwb_$mode" -qc "CHECKPOINT" >/dev/null
    t0=$(now)
    psql "$PGURL/hwb_$mode" -qc "INSERT INTO bulk SELECT g, g % 1000, 'customer ' || g, (g % 100000) / 100.0, now() FROM generate_series($lo, $hi) g"
    t1=$(now)
    s=$(elapsed "$t0" "$t1")
    if (( $(echo "$s < ${BULK_S[$mode]}" | bc -l) )); then BULK_S[$mode]=$s; fi
  done
done

# ------------------------------------------------------------ 2. delta run
psql "$PGURL/hwb_cdc" -q <<SQL
CREATE TABLE big (id bigint PRIMARY KEY, qty int, name text, amount numeric(12,2), status text, at timestamptz);
INSERT INTO big SELECT g, g % 1000, 'customer ' || g, (g % 100000) / 100.0, 'new', now() FROM generate_series(1, $DELTA_ROWS) g;
CREATE TABLE events (id bigint PRIMARY KEY, qty int, name text, amount numeric(12,2), at timestamptz);
VACUUM ANALYZE;
SQL
mkdir -p "$WORK/delta"
cat >"$WORK/delta/highwater.yaml" <<YAML
connections:
  pg: $PGURL/hwb_cdc
  lake: file://./lake
streams:
  big:
    from: pg
    table: big
    mode: cdc
    primary_key: [id]
    to: lake
    path: "big/{run_id}.csv"
  events:
    from: pg
    table: events
    mode: cdc
    primary_key: [id]
    to: lake
    path: "events/{run_id}.csv"
YAML
hw "$WORK/delta" run big >/dev/null 2>&1     # the full load
hw "$WORK/delta" run events >/dev/null 2>&1
DELTA=999
for i in 1 2 3; do
  psql "$PGURL/hwb_cdc" -qc "UPDATE big SET status = 'changed $i' WHERE id % 20000 = $i" >/dev/null
  t0=$(now); hw "$WORK/delta" run big >/dev/null 2>&1; t1=$(now)
  s=$(elapsed "$t0" "$t1")
  if (( $(echo "$s < $DELTA" | bc -l) )); then DELTA=$s; fi
done
DELTA_N=$(($(wc -l < "$(ls -t "$WORK"/delta/lake/big/*.csv | head -n1)") - 1))

# ------------------------------------------- 3. 1M changes vs pg_recvlogical
PUB=$(psql "$PGURL/hwb_cdc" -qAt -c "SELECT pubname FROM pg_publication WHERE pubname LIKE 'hw_cdc_%events%'")
psql "$PGURL/hwb_cdc" -qAt -c "SELECT pg_create_logical_replication_slot('hwb_recv', 'pgoutput')" >/dev/null
psql "$PGURL/hwb_cdc" -qc "INSERT INTO events SELECT g, g % 1000, 'customer ' || g, (g % 100000) / 100.0, now() FROM generate_series(1, $CHANGES) g" >/dev/null
END=$(psql "$PGURL/hwb_cdc" -qAt -c "SELECT pg_current_wal_flush_lsn()")
t0=$(now)
pg_recvlogical -h "$PGHOST" -p "$PGPORT" -U postgres -d hwb_cdc --slot hwb_recv --start --no-loop \
  --endpos "$END" -o proto_version=1 -o "publication_names=$PUB" -f "$WORK/recv.out"
t1=$(now)
RECV=$(elapsed "$t0" "$t1")
t0=$(now); /usr/bin/time -v "$HW" -c "$WORK/delta/highwater.yaml" run events >/dev/null 2>"$WORK/events.time"; t1=$(now)
EVENTS=$(elapsed "$t0" "$t1"); EVENTS_MEM=$(peak_kib "$WORK/events.time")
EVENTS_N=$(($(wc -l < "$(ls -t "$WORK"/delta/lake/events/*.csv | head -n1)") - 1))
psql "$PGURL/hwb_cdc" -qAt -c "SELECT pg_drop_replication_slot('hwb_recv')" >/dev/null

# ------------------------------------------------------------------- report
pct() { echo "($1 - $2) * 100 / $2" | bc -l; }
printf '\npgbench single-row updates, 4 clients, best of 3 x %ss:\n' "$SECONDS_EACH"
printf '  %-16s %8s tps\n' "nothing" "${TPS[none]}"
printf '  %-16s %8s tps  %+6.1f %%  (target within 5 %%)\n' "cdc" "${TPS[cdc]}" "$(pct "${TPS[cdc]}" "${TPS[none]}")"
printf '  %-16s %8s tps  %+6.1f %%\n' "change_tracking" "${TPS[ct]}" "$(pct "${TPS[ct]}" "${TPS[none]}")"
printf '%s-row INSERT ... SELECT, best of 3:\n' "$BULK"
printf '  %-16s %8.2fs\n' "nothing" "${BULK_S[none]}"
printf '  %-16s %8.2fs  %+6.1f %%  (target within 5 %%)\n' "cdc" "${BULK_S[cdc]}" "$(pct "${BULK_S[cdc]}" "${BULK_S[none]}")"
printf '  %-16s %8.2fs  %+6.1f %%\n' "change_tracking" "${BULK_S[ct]}" "$(pct "${BULK_S[ct]}" "${BULK_S[none]}")"
printf 'cdc delta run of %s changes on %s rows: %.3fs, best of 3 (target <= 0.05s)\n' "$DELTA_N" "$DELTA_ROWS" "$DELTA"
printf '%s changes: pg_recvlogical to a file %.2fs (%.0f/s); highwater cdc to CSV %.2fs (%.0f/s, %s rows, peak %s MiB): %.2fx its rate (target >= 0.5x)\n' \
  "$CHANGES" "$RECV" "$(echo "$CHANGES / $RECV" | bc -l)" "$EVENTS" "$(echo "$EVENTS_N / $EVENTS" | bc -l)" "$EVENTS_N" "$((EVENTS_MEM / 1024))" "$(echo "$RECV / $EVENTS" | bc -l)"

# ------------------------------------------------ MariaDB: bounded key memory
if [ -n "${HIGHWATER_BENCH_MARIADB:-}" ]; then
  MY=$HIGHWATER_BENCH_MARIADB
  MYHOST=$(echo "$MY" | sed -E 's#.*@([^:/]+).*#\1#'); MYPORT=$(echo "$MY" | sed -E 's#.*:([0-9]+)$#\1#')
  my() { mysql -uroot -h "$MYHOST" -P "$MYPORT" "$@"; }
  my -e "DROP DATABASE IF EXISTS hwb_my; CREATE DATABASE hwb_my; USE hwb_my;
         CREATE TABLE hwb_my.t (id int PRIMARY KEY, v varchar(40), n int);
         INSERT INTO hwb_my.t SELECT seq, CONCAT('v', seq), seq FROM seq_1_to_1000000;"
  declare -A MYMEM MYS
  for how in bounded unbounded; do
    d=$WORK/my-$how
    mkdir -p "$d"
    printf 'connections:\n  my: %s/hwb_my\n  lake: file://./lake\nstreams:\n  t:\n    from: my\n    table: t\n    mode: cdc\n    primary_key: [id]\n    to: lake\n    path: "t/{run_id}.csv"\n' "$MY" >"$d/highwater.yaml"
    hw "$d" run >/dev/null 2>&1                       # the full load
    # 1,000,000 changed keys in 100 transactions of 10,000 rows.
    my hwb_my -e "$(for i in $(seq 0 99); do echo "UPDATE t SET n = n + 1 WHERE id > $((i * 10000)) AND id <= $(((i + 1) * 10000));"; done)"
    batch=50000
    [ "$how" = unbounded ] && batch=1000000000
    t0=$(now)
    HIGHWATER_TEST_CDC_KEY_BATCH=$batch /usr/bin/time -v "$HW" -c "$d/highwater.yaml" run >/dev/null 2>"$WORK/my.time"
    t1=$(now)
    MYMEM[$how]=$(peak_kib "$WORK/my.time"); MYS[$how]=$(elapsed "$t0" "$t1")
  done
  my -e "DROP DATABASE IF EXISTS hwb_my"
  printf 'MariaDB cdc delta of 1,000,000 changed keys: keys in batches of 50,000 %.1fs, peak %s MiB; all keys in memory %.1fs, peak %s MiB\n' \
    "${MYS[bounded]}" "$((MYMEM[bounded] / 1024))" "${MYS[unbounded]}" "$((MYMEM[unbounded] / 1024))"
fi
