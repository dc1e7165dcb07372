#!/usr/bin/env bash
# Latency of a small delta: the whole-process wall time of `highwater run
# <stream>` after 100 rows changed in a ROWS-row table, per target.
#
#   bench/delta.sh [ROWS] [RUNS]      (defaults 2000000 and 15)
#
# Targets (issue 12: <= 0.03 s each; issue 11: cdc <= 0.05 s):
#
#   file         watermark (updated_at) into a CSV file per run
#   pg merge     watermark into a PostgreSQL table, write: merge
#   my merge     watermark into a MariaDB table, write: merge
#   cdc          mode: cdc on the logical cluster (127.0.0.1:5434) into CSV
#
# Needs PostgreSQL on 127.0.0.1:5432, the logical cluster on 5434 and
# MariaDB on 3306 (see README "tests"), psql and mariadb. Environment:
# HIGHWATER_BIN (a built binary; default `cargo build --release` into
# $CARGO_TARGET_DIR or ./target), WORK (a folder to keep; with SKIP_SETUP=1
# the tables, full loads and state in it are reused; with REUSE_TABLES=1
# only the source tables are, the targets and state start afresh), ONLY (a space-separated
# subset of: file pg my cdc), STRACE=1 (also print `strace -c -f` of one
# run per target, into $WORK/strace.<target>).
#
# Each round updates 100 rows (status and updated_at = now()) and times
# one run per target; the median of RUNS rounds is printed, and every run
# is checked to have delivered exactly 100 rows.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-2000000}
RUNS=${2:-15}
PGURL=${HIGHWATER_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
LOGURL=${HIGHWATER_BENCH_PG_LOGICAL:-postgres://postgres@127.0.0.1:5434}
MYURL=${HIGHWATER_BENCH_MY:-mysql://root@127.0.0.1:3306}
ONLY=${ONLY:-file pg my cdc}
SRC=hw_delta_src
DST=hw_delta_dst
CDC=hw_delta_cdc
if [ -n "${WORK:-}" ]; then
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi

if [ -n "${HIGHWATER_BIN:-}" ]; then
  HW=$HIGHWATER_BIN
else
  cargo build --release --quiet --bin highwater
  HW=${CARGO_TARGET_DIR:-$PWD/target}/release/highwater
fi

export PGOPTIONS="-c client_min_messages=warning"
my() { mariadb -h 127.0.0.1 -P 3306 -uroot "$@"; }
pg() { psql "$1" -qX -v ON_ERROR_STOP=1 "${@:2}"; }
. bench/table.sh

cat >"$WORK/highwater.yaml" <<YAML
connections:
  pg: $PGURL/$SRC
  logical: $LOGURL/$CDC
  lake: file://./lake
  pgdst: $PGURL/$DST
  mydst: $MYURL/$DST
streams:
  d_file:
    from: pg
    table: bench
    mode: watermark
    cursor: updated_at
    primary_key: [id]
    to: lake
    path: "file/{run_id}.csv"
  d_pg:
    from: pg
    table: bench
    mode: watermark
    cursor: updated_at
    primary_key: [id]
    to: pgdst
    into: t_merge
    write: merge
  d_my:
    from: pg
    table: bench
    mode: watermark
    cursor: updated_at
    primary_key: [id]
    to: mydst
    into: t_merge
    write: merge
  d_cdc:
    from: logical
    table: bench
    mode: cdc
    primary_key: [id]
    to: lake
    path: "cdc/{run_id}.csv"
YAML

hw() { (cd "$WORK" && "$HW" -c highwater.yaml "$@"); }
declare -A STREAM=([file]=d_file [pg]=d_pg [my]=d_my [cdc]=d_cdc)

if [ "${SKIP_SETUP:-0}" != 1 ]; then
  echo "Building $ROWS-row tables and running the full loads…" >&2
  rm -rf "$WORK/lake" "$WORK/.highwater"
  if [ "${REUSE_TABLES:-0}" != 1 ]; then
    bench_table "$PGURL/$SRC" "$ROWS"
    if [[ " $ONLY " == *" cdc "* ]]; then
      pg "$LOGURL/postgres" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$CDC'" \
        >/dev/null 2>&1 || true
      bench_table "$LOGURL/$CDC" "$ROWS"
    fi
  fi
  pg "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $DST" -c "CREATE DATABASE $DST" >/dev/null
  my -e "DROP DATABASE IF EXISTS $DST; CREATE DATABASE $DST"
  for t in $ONLY; do
    hw run "${STREAM[$t]}" >/dev/null 2>>"$WORK/hw.log" || { tail -n 20 "$WORK/hw.log" >&2; exit 1; }
  done
fi

# A run's delivered rows: the newest file's lines, or the merge target's
# rows carrying this round's status.
delivered() { # target round
  case $1 in
    file | cdc) echo $(($(wc -l <"$(ls -t "$WORK/lake/$1"/*.csv | head -n1)") - 1)) ;;
    pg) pg "$PGURL/$DST" -Atc "SELECT count(*) FROM t_merge WHERE status = 'r$2'" ;;
    my) my -N "$DST" -e "SELECT count(*) FROM t_merge WHERE status = 'r$2'" ;;
  esac
}

declare -A TIMES
for round in $(seq "$RUNS"); do
  # 100 rows spread over the table, different each round.
  upd="UPDATE bench SET status = 'r$round', updated_at = now()
       WHERE id IN (SELECT 1 + ((g * 19997 + $round * 7919) % $ROWS) FROM generate_series(1, 100) g)"
  pg "$PGURL/$SRC" -c "$upd"
  [[ " $ONLY " == *" cdc "* ]] && pg "$LOGURL/$CDC" -c "$upd"
  for t in $ONLY; do
    t0=$EPOCHREALTIME
    hw run "${STREAM[$t]}" >/dev/null 2>>"$WORK/hw.log" ||
      { echo "failed: highwater run ${STREAM[$t]}" >&2; tail -n 20 "$WORK/hw.log" >&2; exit 1; }
    t1=$EPOCHREALTIME
    TIMES[$t]+="$(echo "$t1 - $t0" | bc -l) "
    n=$(delivered "$t" "$round")
    [ "$n" -eq 100 ] || { echo "$t: round $round delivered $n rows, not 100" >&2; exit 1; }
  done
done

if [ "${STRACE:-0}" = 1 ]; then
  round=strace
  upd="UPDATE bench SET status = 'rs', updated_at = now() WHERE id IN (SELECT g * 17 FROM generate_series(1, 100) g)"
  pg "$PGURL/$SRC" -c "$upd"
  [[ " $ONLY " == *" cdc "* ]] && pg "$LOGURL/$CDC" -c "$upd"
  for t in $ONLY; do
    (cd "$WORK" && strace -c -f -o "$WORK/strace.$t" "$HW" -c highwater.yaml run "${STREAM[$t]}" >/dev/null 2>&1)
    echo "strace -c of $t: $WORK/strace.$t" >&2
  done
fi

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
declare -A GOAL=([file]=0.03 [pg]=0.03 [my]=0.03 [cdc]=0.05)
declare -A LABEL=([file]="file" [pg]="PostgreSQL merge" [my]="MariaDB merge" [cdc]="cdc (file)")
printf '\n%s-row table, 100 changed rows, median of %s runs, %s\n' "$ROWS" "$RUNS" "$(date -u +%Y-%m-%dT%H:%MZ)"
for t in $ONLY; do
  m=$(echo "${TIMES[$t]}" | median)
  printf '100-row delta -> %-18s %6.3fs  (target <= %ss)  runs: %s\n' "${LABEL[$t]}" "$m" "${GOAL[$t]}" "${TIMES[$t]}"
done
