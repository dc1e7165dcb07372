#!/usr/bin/env bash
# Throughput and latency of highwater against PostgreSQL's own COPY, in one run.
#
#   bench/bench.sh [ROWS]        (default 2000000; needs PostgreSQL on 127.0.0.1:5432)
#
# Loads ROWS rows (bigint, int, text, numeric(12,2), text, 60-char text, two
# timestamptz) and prints, as ratios against `psql \copy (select …) to … csv header`:
# the full load to CSV and to Parquet, the wall time of a run whose delta is
# 100 changed rows, and highwater's peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-2000000}
PGURL=${HIGHWATER_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=hw_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --release --quiet
HW=$PWD/target/release/highwater

. bench/table.sh
bench_table "$PGURL/$DB" "$ROWS"

cat > "$WORK/highwater.yaml" <<YAML
connections:
  pg: $PGURL/$DB
  lake: file://./lake
streams:
  full_csv:
    from: pg
    table: bench
    to: lake
    path: "csv/bench.csv"
  full_parquet:
    from: pg
    table: bench
    to: lake
    path: "parquet/bench.parquet"
  delta:
    from: pg
    table: bench
    mode: watermark
    cursor: updated_at
    primary_key: [id]
    to: lake
    path: "delta/bench-{run_id}.csv"
YAML

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
peak_kib() { grep 'Maximum resident' "$1" | awk '{print $6}'; }

# Warm the cache once so the first measurement is not penalised.
psql "$PGURL/$DB" -qc "\\copy (select * from bench) to '/dev/null' csv header"

t0=$(now); psql "$PGURL/$DB" -qc "\\copy (select * from bench) to '$WORK/psql.csv' csv header"; t1=$(now)
PSQL=$(elapsed "$t0" "$t1")

t0=$(now); /usr/bin/time -v "$HW" -c "$WORK/highwater.yaml" run full_csv >/dev/null 2>"$WORK/csv.time"; t1=$(now)
CSV=$(elapsed "$t0" "$t1"); CSV_MEM=$(peak_kib "$WORK/csv.time")

t0=$(now); /usr/bin/time -v "$HW" -c "$WORK/highwater.yaml" run full_parquet >/dev/null 2>"$WORK/pq.time"; t1=$(now)
PQ=$(elapsed "$t0" "$t1"); PQ_MEM=$(peak_kib "$WORK/pq.time")

"$HW" -c "$WORK/highwater.yaml" run delta >/dev/null 2>&1   # the first, full run
psql "$PGURL/$DB" -qc "UPDATE bench SET status = 'changed', updated_at = now() WHERE id IN (SELECT id FROM bench ORDER BY id DESC LIMIT 100)"
sleep 0.2
t0=$(now); /usr/bin/time -v "$HW" -c "$WORK/highwater.yaml" run delta >/dev/null 2>"$WORK/delta.time"; t1=$(now)
DELTA=$(elapsed "$t0" "$t1"); DELTA_MEM=$(peak_kib "$WORK/delta.time")
DELTA_ROWS=$(($(wc -l < "$(ls -t "$WORK"/lake/delta/*.csv | head -n1)") - 1))

PSQL_BYTES=$(stat -c %s "$WORK/psql.csv"); HW_BYTES=$(stat -c %s "$WORK/lake/csv/bench.csv")
printf '\nrows: %s   psql csv: %s bytes   highwater csv: %s bytes\n' "$ROWS" "$PSQL_BYTES" "$HW_BYTES"
printf '%-34s %8.2fs\n' "psql \\copy to csv" "$PSQL"
printf '%-34s %8.2fs  %5.2fx psql  (target <= 1.05x)  peak %s MiB\n' "highwater full load to CSV" "$CSV" "$(echo "$CSV / $PSQL" | bc -l)" "$((CSV_MEM / 1024))"
printf '%-34s %8.2fs  %5.2fx psql  (target <= 1.20x)  peak %s MiB\n' "highwater full load to Parquet" "$PQ" "$(echo "$PQ / $PSQL" | bc -l)" "$((PQ_MEM / 1024))"
printf '%-34s %8.3fs  (target <= 0.10s; %s rows)  peak %s MiB\n' "highwater 100-row delta run" "$DELTA" "$DELTA_ROWS" "$((DELTA_MEM / 1024))"
psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
