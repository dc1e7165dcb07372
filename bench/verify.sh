#!/usr/bin/env bash
# `highwater verify` against the database's own checksum and against reladiff, in one run.
#
#   bench/verify.sh [ROWS]       (default 2000000; needs PostgreSQL on 127.0.0.1:5432)
#
# Two databases: a source table of ROWS rows (bigint key, int, text, numeric(12,2),
# text, 60-char text, two timestamptz) and its copy made by `highwater run` (a merge
# target). Prints, for two equal tables:
#   - highwater verify (full mode: checksums inside both databases),
#   - `select count(*), sum(hashtext(t::text))` by psql on both sides at once (the
#     target: verify at most 1.5x this),
#   - reladiff (PyPI, installed into ~/.cache/highwater-bench/venv; hashdiff across
#     the two databases, 4 threads a side),
#   - verify of a watermark stream (the row-by-row comparison, every row read) and of
#     a watermark stream's CSV file target (replayed);
# then corrupts 100 rows of the copy (30 deleted, 40 changed, 30 added) and prints
# verify (bisection; the keys found are checked) against reladiff, and every
# highwater command's peak memory (the bound: 100 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-2000000}
PGURL=${HIGHWATER_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
SRC=hw_bench_vsrc
DST=hw_bench_vdst
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ -n "${HIGHWATER_BENCH_BIN:-}" ]; then
  HW=$HIGHWATER_BENCH_BIN   # a smoke test of the script with another build
else
  cargo build --release --quiet --bin highwater
  HW=${CARGO_TARGET_DIR:-$PWD/target}/release/highwater
fi

VENV=$HOME/.cache/highwater-bench/venv
if [ ! -x "$VENV/bin/reladiff" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'reladiff[postgresql]' psycopg2-binary
fi

psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DST" -c "CREATE DATABASE $DST" >/dev/null
. bench/table.sh
bench_table "$PGURL/$SRC" "$ROWS"

cat > "$WORK/highwater.yaml" <<YAML
connections:
  src: $PGURL/$SRC
  dst: $PGURL/$DST
  lake: file://./lake
streams:
  copy:
    from: src
    table: bench
    primary_key: [id]
    to: dst
    into: copy
    write: merge
  rows:
    from: src
    table: bench
    mode: watermark
    cursor: updated_at
    primary_key: [id]
    to: dst
    into: wcopy
    write: merge
  files:
    from: src
    table: bench
    mode: watermark
    cursor: updated_at
    primary_key: [id]
    to: lake
    path: "files/bench-{run_id}.csv"
YAML
cd "$WORK"
"$HW" run >/dev/null
psql "$PGURL/$DST" -qc "VACUUM ANALYZE copy" -c "VACUUM ANALYZE wcopy"

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }
peak_mib() { echo "$(grep 'Maximum resident' "$1" | awk '{print $6}') / 1024" | bc; }
# verify NAME STREAM EXPECTED_EXIT: time and peak memory of `highwater verify --json STREAM`.
verify() {
  local t0 t1 code=0
  t0=$(now)
  /usr/bin/time -v "$HW" verify --json "$2" >"$WORK/$1.json" 2>"$WORK/$1.time" || code=$?
  t1=$(now)
  if [ "$code" != "$3" ]; then
    echo "verify $2 exited $code, expected $3" >&2; cat "$WORK/$1.time" "$WORK/$1.json" >&2; exit 1
  fi
  eval "${1}_T=$(elapsed "$t0" "$t1")"
  eval "${1}_MEM=$(peak_mib "$WORK/$1.time")"
}
checksums() {
  psql "$PGURL/$SRC" -qAtc "select count(*), sum(hashtext(t::text)) from bench t" >/dev/null &
  psql "$PGURL/$DST" -qAtc "select count(*), sum(hashtext(t::text)) from copy t" >/dev/null &
  wait
}
reladiff() {
  local url=${PGURL/#postgres:/postgresql:}
  "$VENV/bin/reladiff" "$url/$SRC" bench "$url/$DST" copy -k id -c '%' -j 4 "$@" 2>"$WORK/reladiff.err"
  if grep -q ERROR "$WORK/reladiff.err"; then cat "$WORK/reladiff.err" >&2; exit 1; fi
}

# Warm the caches once so the first measurement is not penalised.
checksums

t0=$(now); checksums; t1=$(now); PSQL=$(elapsed "$t0" "$t1")
verify EQUAL copy 0
grep -q 'equal by checksum' "$WORK/EQUAL.json"
t0=$(now); reladiff >"$WORK/reladiff.equal"; t1=$(now); RELADIFF=$(elapsed "$t0" "$t1")
[ ! -s "$WORK/reladiff.equal" ] || { echo "reladiff found differences in equal tables" >&2; exit 1; }
verify ROWS rows 0
verify FILES files 0

# 100 differing rows: 30 deleted, 40 changed, 30 added.
psql "$PGURL/$DST" -q <<SQL
DELETE FROM copy WHERE id IN (SELECT g * ($ROWS / 31) FROM generate_series(1, 30) g);
UPDATE copy SET status = 'corrupt' WHERE id IN (SELECT 7 + g * ($ROWS / 41) FROM generate_series(1, 40) g);
INSERT INTO copy SELECT $ROWS + g, g, 'extra ' || g, 1.5, 'new', 'x', now(), now()
  FROM generate_series(1, 30) g;
SQL
verify DIFF copy 1
t0=$(now); reladiff >"$WORK/reladiff.diff"; t1=$(now); RELADIFF_DIFF=$(elapsed "$t0" "$t1")

python3 - "$WORK/DIFF.json" "$ROWS" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))[0]
rows = int(sys.argv[2])
want = {
    "missing": sorted(g * (rows // 31) for g in range(1, 31)),
    "different": sorted(7 + g * (rows // 41) for g in range(1, 41)),
    "extra": [rows + g for g in range(1, 31)],
}
for kind, keys in want.items():
    got = sorted(int(k) for k in v[kind])
    assert got == keys, f"{kind}: got {got[:5]}… ({len(got)}), want {keys[:5]}… ({len(keys)})"
print(f"100 differing rows found and listed: {len(v['missing'])} missing, "
      f"{len(v['different'])} different, {len(v['extra'])} extra ({'; '.join(v['notes'])})")
PY
# reladiff lists a missing row as `-`, an extra one as `+`, a changed one as both.
RELADIFF_FOUND=$(grep -c '^[-+]' "$WORK/reladiff.diff" || true)
[ "$RELADIFF_FOUND" = 140 ] || echo "reladiff listed $RELADIFF_FOUND lines, expected 140" >&2

echo "rows: $ROWS"
printf '%-58s %8.2f s\n' "psql count + sum(hashtext) on both sides at once" "$PSQL"
printf '%-58s %8.2f s  %5s x psql   %4s MiB\n' "highwater verify, equal tables (checksums)" "$EQUAL_T" "$(ratio "$EQUAL_T" "$PSQL")" "$EQUAL_MEM"
printf '%-58s %8.2f s  %5s x psql\n' "reladiff -j 4, equal tables" "$RELADIFF" "$(ratio "$RELADIFF" "$PSQL")"
printf '%-58s %8.2f s  %5s x reladiff\n' "  highwater verify / reladiff" "$EQUAL_T" "$(ratio "$EQUAL_T" "$RELADIFF")"
printf '%-58s %8.2f s  %5s x psql   %4s MiB\n' "highwater verify, 100 differing rows (bisection)" "$DIFF_T" "$(ratio "$DIFF_T" "$PSQL")" "$DIFF_MEM"
printf '%-58s %8.2f s  %5s x psql   (%s +/- lines)\n' "reladiff -j 4, 100 differing rows" "$RELADIFF_DIFF" "$(ratio "$RELADIFF_DIFF" "$PSQL")" "$RELADIFF_FOUND"
printf '%-58s %8.2f s  %5s x psql   %4s MiB\n' "highwater verify, watermark table (row by row)" "$ROWS_T" "$(ratio "$ROWS_T" "$PSQL")" "$ROWS_MEM"
printf '%-58s %8.2f s  %5s x psql   %4s MiB\n' "highwater verify, watermark CSV files (replayed)" "$FILES_T" "$(ratio "$FILES_T" "$PSQL")" "$FILES_MEM"
for m in "$EQUAL_MEM" "$DIFF_MEM" "$ROWS_MEM" "$FILES_MEM"; do
  [ "$m" -le 100 ] || echo "PEAK MEMORY OVER 100 MiB: $m MiB"
done
for db in $SRC $DST; do psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null; done
