#!/usr/bin/env bash
# Tumbling windows per minute under `highwater serve` with 1, 2 and 4 workers
# sharing one PostgreSQL state store, in one run.
#
#   bench/windows.sh [HOURS]     (default 2: 120 one-minute windows; needs PostgreSQL on 127.0.0.1:5432)
#
# A factory with one TumblingWindowTrigger of 1-minute windows over the last
# HOURS hours, all due at once (a backfill), `maxConcurrency` 4 (per worker;
# HIGHWATER_BENCH_MAX_CONCURRENCY), each window a Copy of that minute's rows
# (10) from a PostgreSQL table to its own CSV file. For each worker count
# (HIGHWATER_BENCH_WORKERS, default "1 2 4"): a fresh state database and lake,
# the workers started together, and the wall time until every window's success
# marker (`window/<trigger>/<start>`) is in the state store. Prints windows per
# minute and the ratio against 1 worker, after checking that every window ran
# once and every row arrived once.
set -euo pipefail
cd "$(dirname "$0")/.."
HOURS=${1:-2}
WORKERS=${HIGHWATER_BENCH_WORKERS:-"1 2 4"}
MAXC=${HIGHWATER_BENCH_MAX_CONCURRENCY:-4}
PGURL=${HIGHWATER_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DB=hw_bench_windows
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${HIGHWATER_BENCH_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# HIGHWATER_BENCH_BIN: a highwater binary to measure instead of a fresh release build.
HW=${HIGHWATER_BENCH_BIN:-}
if [ -z "$HW" ]; then
  cargo build --release --quiet --bin highwater
  HW=${CARGO_TARGET_DIR:-$PWD/target}/release/highwater
fi
WINDOWS=$((HOURS * 60))
NOW=$(( $(date +%s) / 60 * 60 ))
START=$(date -u -d "@$((NOW - WINDOWS * 60))" +%Y-%m-%dT%H:%M:%SZ)
END=$(date -u -d "@$NOW" +%Y-%m-%dT%H:%M:%SZ)

psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
psql "$PGURL/$DB" -q <<SQL
CREATE TABLE events (id bigint PRIMARY KEY, ts timestamptz NOT NULL, name text);
INSERT INTO events
SELECT g, timestamptz '$START' + (g - 1) * interval '6 seconds', 'event ' || g
FROM generate_series(1, $WINDOWS * 10) g;
CREATE INDEX ON events (ts);
VACUUM ANALYZE events;
SQL

F=$WORK/factory
mkdir -p "$F/dataset" "$F/pipeline" "$F/trigger"
cat > "$F/dataset/Events.json" <<'JSON'
{"name": "Events", "properties": {"type": "AzurePostgreSqlTable",
  "linkedServiceName": {"referenceName": "Db", "type": "LinkedServiceReference"},
  "typeProperties": {"tableName": "events"}}}
JSON
cat > "$F/dataset/Out.json" <<'JSON'
{"name": "Out", "properties": {"type": "DelimitedText",
  "linkedServiceName": {"referenceName": "Lake", "type": "LinkedServiceReference"},
  "parameters": {"file": {"type": "String"}},
  "typeProperties": {"location": {"type": "AzureBlobStorageLocation", "folderPath": "windows",
     "fileName": {"value": "@dataset().file", "type": "Expression"}},
     "columnDelimiter": ",", "firstRowAsHeader": true}}}
JSON
cat > "$F/pipeline/CopyMinute.json" <<'JSON'
{"name": "CopyMinute", "properties": {
  "parameters": {"windowStart": {"type": "String"}, "windowEnd": {"type": "String"}},
  "activities": [{"name": "CopyEvents", "type": "Copy",
     "typeProperties": {"source": {"type": "AzurePostgreSqlSource",
        "query": "select id, ts, name from events where ts >= '@{pipeline().parameters.windowStart}' and ts < '@{pipeline().parameters.windowEnd}' order by id"},
        "sink": {"type": "DelimitedTextSink"}},
     "inputs": [{"referenceName": "Events", "type": "DatasetReference"}],
     "outputs": [{"referenceName": "Out", "type": "DatasetReference",
        "parameters": {"file": "@concat('w-', formatDateTime(pipeline().parameters.windowStart, 'yyyyMMddHHmm'), '.csv')"}}]}]}}
JSON
cat > "$F/trigger/Minutes.json" <<JSON
{"name": "Minutes", "properties": {"type": "TumblingWindowTrigger", "runtimeState": "Started",
  "typeProperties": {"frequency": "Minute", "interval": 1, "startTime": "$START",
     "endTime": "$END",
     "delay": "00:00:00", "maxConcurrency": $MAXC},
  "pipeline": {"pipelineReference": {"referenceName": "CopyMinute", "type": "PipelineReference"},
     "parameters": {"windowStart": "@trigger().outputs.windowStartTime",
                    "windowEnd": "@trigger().outputs.windowEndTime"}}}}
JSON

now() { date +%s.%N; }
count() { psql "$PGURL/$1" -tAqc "$2" 2>/dev/null || echo 0; }

declare -A RATE
for n in $WORKERS; do
  STATE=hw_bench_windows_state_$n
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $STATE" -c "CREATE DATABASE $STATE" >/dev/null
  rm -rf "$F/lake"
  cat > "$F/highwater.yaml" <<YAML
state: $PGURL/$STATE
connections:
  Db: $PGURL/$DB
  Lake: file://./lake
YAML
  PIDS=()
  t0=$(now)
  for i in $(seq 1 "$n"); do
    "$HW" -c "$F/highwater.yaml" serve --listen 127.0.0.1:0 --log-format json >"$WORK/serve-$n-$i.log" 2>&1 &
    PIDS+=("$!")
  done
  while [ "$(count "$STATE" "SELECT count(*) FROM highwater.positions WHERE stream LIKE 'window/Minutes/%'")" -lt "$WINDOWS" ]; do
    for p in "${PIDS[@]}"; do
      kill -0 "$p" 2>/dev/null || { echo "a worker stopped:" >&2; cat "$WORK"/serve-"$n"-*.log >&2; exit 1; }
    done
    sleep 0.1
  done
  t1=$(now)
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  RUNS=$(count "$STATE" "SELECT count(*) FROM highwater.runs")
  OK=$(count "$STATE" "SELECT count(*) FROM highwater.runs WHERE status = 'Succeeded'")
  ROWS=$(cat "$F"/lake/windows/*.csv | grep -vc '^id,')
  FILES=$(find "$F/lake/windows" -name '*.csv' | wc -l)
  if [ "$RUNS" != "$WINDOWS" ] || [ "$OK" != "$WINDOWS" ] || [ "$ROWS" != $((WINDOWS * 10)) ] || [ "$FILES" != "$WINDOWS" ]; then
    echo "workers=$n: expected $WINDOWS runs, all succeeded, $WINDOWS files and $((WINDOWS * 10)) rows; got $RUNS runs ($OK succeeded), $FILES files, $ROWS rows" >&2
    exit 1
  fi
  SECS=$(echo "$t1 - $t0" | bc -l)
  RATE[$n]=$(echo "$WINDOWS * 60 / $SECS" | bc -l)
  BUSY=$(uptime | sed 's/.*load average: //')
  printf 'workers %s: %s windows in %7.2fs  %8.1f windows/min  %5.2fx 1 worker  (load %s)\n' \
    "$n" "$WINDOWS" "$SECS" "${RATE[$n]}" "$(echo "${RATE[$n]} / ${RATE[${WORKERS%% *}]}" | bc -l)" "$BUSY"
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $STATE WITH (FORCE)" >/dev/null
done
printf '\n%s one-minute windows (%s rows each, PostgreSQL → CSV), maxConcurrency %s per worker, %s cores\n' \
  "$WINDOWS" 10 "$MAXC" "$(nproc)"
psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
