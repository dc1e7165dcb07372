#!/usr/bin/env bash
# Throughput, latency and memory of highwater against each database's own
# bulk tool, measured in the same run.
#
#   bench/bench.sh [ROWS]      (default 2000000; ROWS=200000 for a quick run)
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres), MariaDB on
# 127.0.0.1:3306 (root) and the psql, mariadb and sqlite3 clients.
# Environment: REPEAT (runs per figure, median printed; default 1),
# HIGHWATER_BIN (a built binary; default: `cargo build --release` into
# $CARGO_TARGET_DIR or ./target), HIGHWATER_BENCH_PG, HIGHWATER_BENCH_MY.
#
# One table of ROWS rows (bigint key, int, text, numeric(12,2), text,
# 60-char text, two timestamps) in each source. Every figure is highwater's
# whole-process wall time divided by its baseline's, with highwater's peak
# resident memory (/usr/bin/time -v):
#
#   PostgreSQL → CSV, Parquet    vs psql \copy (select …) to file csv header
#   MariaDB → CSV, Parquet       vs mariadb --batch --quick -e "select …" > file
#   SQLite → CSV, Parquet        vs sqlite3 -csv -header db "select …" > file
#   PostgreSQL → PostgreSQL      vs psql \copy (…) to stdout | psql \copy t from stdin
#     (merge and append)            into a new table with the same primary key
#   PostgreSQL → MariaDB         vs psql \copy … csv + LOAD DATA LOCAL INFILE
#     (merge and append)            into a new table with the same primary key
#   100 changed rows             whole-process time of the delta run into a
#                                   file, a PostgreSQL and a MariaDB merge target
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-2000000}
REPEAT=${REPEAT:-1}
PGURL=${HIGHWATER_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
MYHOST=${HIGHWATER_BENCH_MY_HOST:-127.0.0.1}
MYPORT=${HIGHWATER_BENCH_MY_PORT:-3306}
MYURL=mysql://root@$MYHOST:$MYPORT
DB=hw_bench
DST=hw_bench_dst
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ -n "${HIGHWATER_BIN:-}" ]; then
  HW=$HIGHWATER_BIN
else
  cargo build --release --quiet
  HW=${CARGO_TARGET_DIR:-$PWD/target}/release/highwater
fi

export PGOPTIONS="-c client_min_messages=warning"
my() { mariadb -h "$MYHOST" -P "$MYPORT" -uroot "$@"; }
pg() { psql "$PGURL/$1" -qX -v ON_ERROR_STOP=1 "${@:2}"; }

echo "Loading $ROWS rows into PostgreSQL, MariaDB and SQLite…" >&2
pg postgres -c "DROP DATABASE IF EXISTS $DST" -c "CREATE DATABASE $DST" >/dev/null
. "$(dirname "$0")/table.sh"
bench_table "$PGURL/$DB" "$ROWS"
my -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB; DROP DATABASE IF EXISTS $DST; CREATE DATABASE $DST"
my "$DB" <<SQL
CREATE TABLE bench (
  id bigint PRIMARY KEY, qty int, name varchar(64), amount decimal(12,2), status varchar(16),
  comment varchar(64), created_at datetime(6), updated_at datetime(6), KEY (updated_at));
INSERT INTO bench
SELECT seq, seq % 1000, CONCAT('customer ', seq), (seq % 100000) / 100.0, ELT(1 + seq % 3, 'new', 'paid', 'shipped'),
       RPAD(MD5(seq), 60, 'x'), TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND,
       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND
FROM seq_1_to_$ROWS;
ANALYZE TABLE bench;
SQL
sqlite3 "$WORK/bench.db" <<SQL
CREATE TABLE bench (
  id INTEGER PRIMARY KEY, qty INTEGER, name TEXT, amount NUMERIC, status TEXT,
  comment TEXT, created_at TEXT, updated_at TEXT);
WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < $ROWS)
INSERT INTO bench
SELECT x, x % 1000, 'customer ' || x, (x % 100000) / 100.0, CASE x % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' ELSE 'shipped' END,
       substr(hex(randomblob(30)), 1, 60), datetime('2024-01-01', '+' || x || ' seconds'),
       datetime('2024-01-01', '+' || x || ' seconds')
FROM g;
SQL

# The baselines' target tables: the types highwater gives a new table.
PG_TARGET="(id bigint PRIMARY KEY, qty integer, name text, amount numeric(12, 2), status text,
  comment text, created_at timestamptz, updated_at timestamptz)"
MY_TARGET="(id bigint NOT NULL PRIMARY KEY, qty int, name longtext, amount decimal(12, 2), status longtext,
  comment longtext, created_at datetime(6), updated_at datetime(6))"

stream() { # name from to extra…
  printf '  %s:\n    from: %s\n    table: bench\n    to: %s\n' "$1" "$2" "$3"
  shift 3
  for l in "$@"; do printf '    %s\n' "$l"; done
}
{
  printf 'connections:\n  pg: %s\n  my: %s\n  lite: sqlite://%s\n' "$PGURL/$DB" "$MYURL/$DB" "$WORK/bench.db"
  printf '  lake: file://./lake\n  pgdst: %s\n  mydst: %s\nstreams:\n' "$PGURL/$DST" "$MYURL/$DST"
  for src in pg my lite; do
    stream "${src}_csv" "$src" lake "path: csv/$src.csv"
    stream "${src}_parquet" "$src" lake "path: parquet/$src.parquet"
  done
  # partitions: N readers in one snapshot (full loads).
  for n in 2 4; do
    stream "pg_csv_p$n" pg lake "path: csv/pg_p$n.csv" "partitions: $n"
    stream "my_csv_p$n" my lake "path: csv/my_p$n.csv" "partitions: $n"
  done
  # share_partitions: the parts claimed by this process and a serve worker.
  stream pg_csv_s4 pg lake 'path: "shared/pg-{run_id}.csv"' "partitions: 4" "share_partitions: true"
  # Watermark streams: the first run is the full load, the next the delta.
  wm=("mode: watermark" "cursor: updated_at" "primary_key: [id]")
  stream delta_file pg lake "${wm[@]}" 'path: "delta/bench-{run_id}.csv"'
  for dst in pgdst mydst; do
    stream "${dst}_merge" pg "$dst" "${wm[@]}" "into: t_merge" "write: merge"
    stream "${dst}_append" pg "$dst" "${wm[@]}" "into: t_append" "write: append"
  done
} >"$WORK/highwater.yaml"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
ratio() { echo "$1 / $2" | bc -l; }

# measure VAR SETUP CMD…: median wall time of CMD over REPEAT runs (SETUP
# before each, untimed) into $VAR; for highwater (CMD `hw …`) its peak
# resident memory in MiB into ${VAR}_MEM.
measure() {
  local var=$1 setup=$2 times=() mem=0 t0 t1 kib
  shift 2
  for _ in $(seq "$REPEAT"); do
    $setup
    t0=$(now)
    if [ "$1" = hw ]; then
      shift
      /usr/bin/time -v -o "$WORK/time" "$HW" -c "$WORK/highwater.yaml" "$@" >/dev/null 2>>"$WORK/hw.log" ||
        { echo "failed: highwater $*" >&2; tail -n 20 "$WORK/hw.log" >&2; exit 1; }
      set -- hw "$@"
      kib=$(awk '/Maximum resident/ {print $6}' "$WORK/time")
      ((kib > mem)) && mem=$kib
    else
      "$@"
    fi
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  printf -v "$var" '%s' "$(printf '%s\n' "${times[@]}" | median)"
  printf -v "${var}_MEM" '%s' "$((mem / 1024))"
}
hw() { "$HW" -c "$WORK/highwater.yaml" "$@" >/dev/null 2>>"$WORK/hw.log"; }
none() { :; }
reset() { hw state reset "$1" >/dev/null 2>&1 || true; }

# Baselines as shell functions (`sh -c` bodies would lose the helpers).
psql_csv() { pg "$DB" -c "\\copy (select * from bench) to '$WORK/psql.csv' csv header"; }
my_cli() { my --batch --quick "$DB" -e "select * from bench" >"$WORK/my.tsv"; }
lite_cli() { sqlite3 -csv -header "$WORK/bench.db" "select * from bench" >"$WORK/lite.csv"; }
pg_pipe() {
  pg "$DB" -c "\\copy (select * from bench) to stdout" | pg "$DST" -c "\\copy base from stdin"
}
pg_base_table() { pg "$DST" -c "DROP TABLE IF EXISTS base" -c "CREATE TABLE base $PG_TARGET" >/dev/null; }
my_load() {
  pg "$DB" -c "\\copy (select id, qty, name, amount, status, comment, created_at at time zone 'UTC',
    updated_at at time zone 'UTC' from bench) to '$WORK/load.csv' csv"
  my --local-infile=1 "$DST" -e "LOAD DATA LOCAL INFILE '$WORK/load.csv' INTO TABLE base
    FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"'"
}
my_base_table() { my "$DST" -e "DROP TABLE IF EXISTS base; CREATE TABLE base $MY_TARGET"; }
fresh() { # stream table database: forget the stream, drop its target
  reset "$1"
  case $3 in
    pg) pg "$DST" -c "DROP TABLE IF EXISTS $2" >/dev/null 2>&1 ;;
    my) my "$DST" -e "DROP TABLE IF EXISTS $2" ;;
  esac
}
fresh_pg_merge() { fresh pgdst_merge t_merge pg; }
fresh_pg_append() { fresh pgdst_append t_append pg; }
fresh_my_merge() { fresh mydst_merge t_merge my; }
fresh_my_append() { fresh mydst_append t_append my; }
fresh_delta() { reset delta_file; rm -rf "$WORK/lake/delta"; }

echo "Measuring (REPEAT=$REPEAT)…" >&2
pg "$DB" -c "\\copy (select * from bench) to '/dev/null' csv header" # warm the cache
my "$DB" -e "select count(*) from bench" >/dev/null

measure PSQL none psql_csv
measure PG_CSV none hw run pg_csv
measure PG_PQ none hw run pg_parquet
measure PG_CSV_P2 none hw run pg_csv_p2
measure PG_CSV_P4 none hw run pg_csv_p4
# One `highwater serve` worker beside the run claims parts too.
"$HW" -c "$WORK/highwater.yaml" serve --listen 127.0.0.1:0 >"$WORK/worker.log" 2>&1 &
WORKER=$!
sleep 1
no_shared() { rm -rf "$WORK/lake/shared"; }
# The run reads one part at a time itself, so the worker gets some.
HIGHWATER_PARTS_LOCAL=1 measure PG_CSV_S4 no_shared hw run pg_csv_s4
kill "$WORKER" 2>/dev/null || true
WORKER_PARTS=$(grep -c "staged part" "$WORK/worker.log" || true)
measure MYCLI none my_cli
measure MY_CSV none hw run my_csv
measure MY_PQ none hw run my_parquet
measure MY_CSV_P2 none hw run my_csv_p2
measure MY_CSV_P4 none hw run my_csv_p4
measure LITECLI none lite_cli
measure LITE_CSV none hw run lite_csv
measure LITE_PQ none hw run lite_parquet
measure PGPIPE pg_base_table pg_pipe
measure PG_MERGE fresh_pg_merge hw run pgdst_merge
measure PG_APPEND fresh_pg_append hw run pgdst_append
measure MYLOAD my_base_table my_load
measure MY_MERGE fresh_my_merge hw run mydst_merge
measure MY_APPEND fresh_my_append hw run mydst_append

# Deltas: 100 changed rows after the full loads above.
fresh_delta
hw run delta_file
pg "$DB" -c "UPDATE bench SET status = 'changed', updated_at = now() WHERE id IN (SELECT id FROM bench ORDER BY id DESC LIMIT 100)"
sleep 0.2
REPEAT=1 measure D_FILE none hw run delta_file
REPEAT=1 measure D_PG none hw run pgdst_merge
REPEAT=1 measure D_MY none hw run mydst_merge
D_ROWS=$(($(wc -l <"$(ls -t "$WORK"/lake/delta/*.csv | head -n1)") - 1))
[ "$D_ROWS" -eq 100 ] || { echo "the delta file holds $D_ROWS rows, not 100" >&2; exit 1; }
for t in t_merge t_append; do
  n=$(pg "$DST" -Atc "select count(*) from $t")
  [ "$n" -eq "$ROWS" ] || { echo "PostgreSQL $t holds $n rows, not $ROWS" >&2; exit 1; }
  n=$(my -N "$DST" -e "select count(*) from $t")
  [ "$n" -eq "$ROWS" ] || { echo "MariaDB $t holds $n rows, not $ROWS" >&2; exit 1; }
done
changed=$(my -N "$DST" -e "select count(*) from t_merge where status = 'changed'")
[ "$changed" -eq 100 ] || { echo "MariaDB t_merge has $changed changed rows, not 100" >&2; exit 1; }

row() { # label seconds baseline-seconds baseline-name target mem
  printf '%-36s %8.2fs  %5.2fx %-18s (target %s)  peak %s MiB\n' "$1" "$2" "$(ratio "$2" "$3")" "$4" "$5" "$6"
}
printf '\nrows: %s   runs per figure: %s   %s\n' "$ROWS" "$REPEAT" "$(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-36s %8.2fs\n' "psql \\copy to csv" "$PSQL" "mariadb --batch --quick" "$MYCLI" \
  "sqlite3 -csv -header" "$LITECLI" "psql \\copy | psql \\copy (PK)" "$PGPIPE" \
  "psql \\copy csv + LOAD DATA (PK)" "$MYLOAD"
row "PostgreSQL -> CSV" "$PG_CSV" "$PSQL" "psql" "<= 1.05x" "$PG_CSV_MEM"
row "PostgreSQL -> CSV, partitions: 2" "$PG_CSV_P2" "$PSQL" "psql" "none; 1 vs 2 vs 4" "$PG_CSV_P2_MEM"
row "PostgreSQL -> CSV, partitions: 4" "$PG_CSV_P4" "$PSQL" "psql" "none; 1 vs 2 vs 4" "$PG_CSV_P4_MEM"
row "PostgreSQL -> CSV, share_partitions: 4" "$PG_CSV_S4" "$PSQL" "psql" "none; 1 part at a time + a serve worker, which read $WORKER_PARTS of $((4 * REPEAT))" "$PG_CSV_S4_MEM"
row "PostgreSQL -> Parquet" "$PG_PQ" "$PSQL" "psql" "<= 0.75x" "$PG_PQ_MEM"
row "MariaDB -> CSV" "$MY_CSV" "$MYCLI" "mariadb" "<= 1.0x" "$MY_CSV_MEM"
row "MariaDB -> CSV, partitions: 2" "$MY_CSV_P2" "$MYCLI" "mariadb" "none; 1 vs 2 vs 4" "$MY_CSV_P2_MEM"
row "MariaDB -> CSV, partitions: 4" "$MY_CSV_P4" "$MYCLI" "mariadb" "none; 1 vs 2 vs 4" "$MY_CSV_P4_MEM"
row "MariaDB -> Parquet" "$MY_PQ" "$MYCLI" "mariadb" "<= 1.0x" "$MY_PQ_MEM"
row "SQLite -> CSV" "$LITE_CSV" "$LITECLI" "sqlite3" "<= 1.0x" "$LITE_CSV_MEM"
row "SQLite -> Parquet" "$LITE_PQ" "$LITECLI" "sqlite3" "<= 1.0x" "$LITE_PQ_MEM"
row "PostgreSQL -> PostgreSQL merge" "$PG_MERGE" "$PGPIPE" "psql | psql" "<= 1.2x" "$PG_MERGE_MEM"
row "PostgreSQL -> PostgreSQL append" "$PG_APPEND" "$PGPIPE" "psql | psql" "<= 1.2x" "$PG_APPEND_MEM"
row "PostgreSQL -> MariaDB merge" "$MY_MERGE" "$MYLOAD" "csv + LOAD DATA" "<= 1.2x" "$MY_MERGE_MEM"
row "PostgreSQL -> MariaDB append" "$MY_APPEND" "$MYLOAD" "csv + LOAD DATA" "<= 1.2x" "$MY_APPEND_MEM"
printf '%-36s %8.3fs  (target <= 0.03s)  peak %s MiB\n' "100-row delta -> file" "$D_FILE" "$D_FILE_MEM" \
  "100-row delta -> PostgreSQL merge" "$D_PG" "$D_PG_MEM" "100-row delta -> MariaDB merge" "$D_MY" "$D_MY_MEM"
pg postgres -c "DROP DATABASE IF EXISTS $DB" -c "DROP DATABASE IF EXISTS $DST" >/dev/null
my -e "DROP DATABASE IF EXISTS $DB; DROP DATABASE IF EXISTS $DST"
