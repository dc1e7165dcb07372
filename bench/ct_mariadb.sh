#!/usr/bin/env bash
# `mode: change_tracking` on MariaDB with concurrent writers, in one run, as
# ratios tracked / untracked against the same server:
#
#   bench/ct_mariadb.sh [SECONDS] [WRITERS] [ROUNDS]
#       (defaults 8, 4, 2; HIGHWATER_BENCH_MARIADB=mysql://root@127.0.0.1:3306
#        names the server, HIGHWATER_BENCH_BIN the highwater binary — else
#        the debug build of this tree: only setup and the runs between the
#        writers need it, the triggers run in the server;
#        HIGHWATER_BENCH_RUN_EVERY=0 writes without runs, default a run
#        every 1 s)
#
# Two databases with the same tables: `hwb_ct_on` (both tables tracked by
# `mode: change_tracking`, a `highwater run` every second while the writers
# write) and `hwb_ct_off` (nothing). Each phase runs WRITERS concurrent
# writers for SECONDS on each database in turn, ROUNDS times in alternating
# order, and keeps the best. A writer is a `mysql` client fed statements
# (autocommitted unless said):
#
#   updates    single-row UPDATEs of its own rows
#   txns       transactions of two UPDATEs of its own rows
#   long       `updates`, while one more session holds a transaction open on
#              another row for the whole phase (the triggers of earlier
#              highwater versions made every writer wait for it)
#   bulk       1,000-row INSERT … SELECT statements, own keys
#   server     `updates` looped inside the server (a stored procedure): no
#              client or network time, so the triggers' cost shows in full
#
# Target: tracked >= 0.7x untracked in every phase.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
WRITERS=${2:-4}
ROUNDS=${3:-2}
RUN_EVERY=${HIGHWATER_BENCH_RUN_EVERY:-1}
URL=${HIGHWATER_BENCH_MARIADB:-mysql://root@127.0.0.1:3306}
MYHOST=$(echo "$URL" | sed -E 's#.*@([^:/]+).*#\1#')
MYPORT=$(echo "$URL" | sed -E 's#.*:([0-9]+)/?$#\1#')
my() { mysql -uroot -h "$MYHOST" -P "$MYPORT" "$@"; }
WORK=$(mktemp -d)
RUNNER=
cleanup() {
  [ -n "$RUNNER" ] && kill "$RUNNER" 2>/dev/null || true
  for db in hwb_ct_on hwb_ct_off; do my -e "DROP DATABASE IF EXISTS $db" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${HIGHWATER_BENCH_BIN:-}" ]; then
  HW=$HIGHWATER_BENCH_BIN
else
  cargo build --quiet --bin highwater
  HW=${CARGO_TARGET_DIR:-$PWD/target}/debug/highwater
fi
hw() { (cd "$WORK" && "$HW" -c highwater.yaml "$@"); }

ROWS=$((WRITERS * 10000 + 1))
for db in hwb_ct_on hwb_ct_off; do
  my -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db"
  my "$db" <<SQL
CREATE TABLE acct (id int PRIMARY KEY, v int NOT NULL, pad varchar(100)) ENGINE=InnoDB;
INSERT INTO acct SELECT seq, 0, REPEAT('x', 80) FROM seq_0_to_$((ROWS - 1));
CREATE TABLE bulk (id bigint PRIMARY KEY, qty int, name varchar(40), at datetime(6)) ENGINE=InnoDB;
DELIMITER //
CREATE PROCEDURE hw_updates(IN w INT, IN secs INT, IN per_txn INT)
BEGIN
  DECLARE n INT DEFAULT 0;
  DECLARE t_end DATETIME(6) DEFAULT SYSDATE(6) + INTERVAL secs SECOND;
  WHILE SYSDATE(6) < t_end DO
    IF per_txn > 1 THEN START TRANSACTION; END IF;
    UPDATE acct SET v = v + 1 WHERE id = 1 + w * 10000 + (n MOD 10000);
    IF per_txn > 1 THEN
      UPDATE acct SET v = v + 1 WHERE id = 1 + w * 10000 + ((n + 5000) MOD 10000);
      COMMIT;
    END IF;
    SET n = n + 1;
  END WHILE;
  SELECT n * per_txn;
END//
CREATE PROCEDURE hw_bulk(IN w INT, IN secs INT, IN base BIGINT)
BEGIN
  DECLARE n INT DEFAULT 0;
  DECLARE t_end DATETIME(6) DEFAULT SYSDATE(6) + INTERVAL secs SECOND;
  WHILE SYSDATE(6) < t_end DO
    INSERT INTO bulk (id, qty, name, at)
      SELECT base + w * 100000000 + n * 1000 + seq, seq, 'bulk', UTC_TIMESTAMP(6) FROM seq_1_to_1000;
    SET n = n + 1;
  END WHILE;
  SELECT n * 1000;
END//
DELIMITER ;
SQL
done
cat >"$WORK/highwater.yaml" <<YAML
connections:
  src: $URL/hwb_ct_on
  lake: file://./lake
streams:
  acct:
    from: src
    table: acct
    mode: change_tracking
    primary_key: [id]
    to: lake
    path: "acct/{run_id}.csv"
    format: csv
  bulk:
    from: src
    table: bulk
    mode: change_tracking
    primary_key: [id]
    to: lake
    path: "bulk/{run_id}.csv"
    format: csv
YAML
hw run >/dev/null

# Statements sent by writer W, forever (the phase's `timeout` ends them).
gen() {
  local kind=$1 w=$2 base=$3
  awk -v kind="$kind" -v w="$w" -v base="$base" 'BEGIN {
    for (n = 0; ; n++) {
      id = 1 + w * 10000 + n % 10000
      if (kind == "txns")
        printf "BEGIN; UPDATE acct SET v = v + 1 WHERE id = %d; UPDATE acct SET v = v + 1 WHERE id = %d; COMMIT;\n", id, 1 + w * 10000 + (n + 5000) % 10000
      else if (kind == "bulk")
        printf "INSERT INTO bulk (id, qty, name, at) SELECT %d + seq, seq, \"bulk\", UTC_TIMESTAMP(6) FROM seq_1_to_1000;\n", base + w * 100000000 + n * 1000
      else
        printf "UPDATE acct SET v = v + 1 WHERE id = %d;\n", id
    }
  }'
}
# What the writers of KIND have done so far in DB: updates or rows.
done_so_far() {
  case $2 in
    bulk) my "$1" -N -e "SELECT COUNT(*) FROM bulk" ;;
    *) my "$1" -N -e "SELECT SUM(v) FROM acct WHERE id > 0" ;;
  esac
}
# phase DB KIND BASE → updated rows (or inserted rows) per second of all
# writers together (BASE: first key of the bulk inserts)
phase() {
  local db=$1 kind=$2 base=$3 pids=() holder= before after
  if [ "$db" = hwb_ct_on ] && [ "$RUN_EVERY" != 0 ]; then
    rm -f "$WORK/stop"
    (while [ ! -f "$WORK/stop" ]; do hw run >/dev/null 2>&1 || echo "highwater run failed" >&2; sleep "$RUN_EVERY"; done) >/dev/null &
    RUNNER=$!
  fi
  if [ "$kind" = long ]; then
    my "$db" -e "BEGIN; UPDATE acct SET v = v + 1 WHERE id = 0; DO SLEEP($SECS + 2); COMMIT" &
    holder=$!
    sleep 0.5
  fi
  before=$(done_so_far "$db" "$kind")
  for w in $(seq 0 $((WRITERS - 1))); do
    case $kind in
      server) my "$db" -N -e "CALL hw_updates($w, $SECS, 1)" >/dev/null & ;;
      *) gen "$kind" "$w" "$base" | timeout "$SECS" mysql -uroot -h "$MYHOST" -P "$MYPORT" "$db" >/dev/null 2>&1 & ;;
    esac
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  after=$(done_so_far "$db" "$kind")
  [ -n "$holder" ] && wait "$holder"
  if [ -n "$RUNNER" ]; then touch "$WORK/stop"; wait "$RUNNER" || true; RUNNER=; fi
  echo "($after - $before) / $SECS" | bc -l
}

best() { echo "$1 $2" | awk '{print ($1 > $2) ? $1 : $2}'; }
printf '%-9s %14s %14s %7s\n' phase tracked/s untracked/s ratio
for kind in updates txns long bulk server; do
  on=0
  off=0
  for r in $(seq 1 "$ROUNDS"); do
    base=$((r * 1000000000))
    if [ $((r % 2)) = 1 ]; then
      on=$(best "$on" "$(phase hwb_ct_on $kind $base)")
      off=$(best "$off" "$(phase hwb_ct_off $kind $base)")
    else
      off=$(best "$off" "$(phase hwb_ct_off $kind $base)")
      on=$(best "$on" "$(phase hwb_ct_on $kind $base)")
    fi
  done
  printf '%-9s %14.0f %14.0f %7.2f\n' "$kind" "$on" "$off" "$(echo "$on / $off" | bc -l)"
done
# Every change was delivered: the last run leaves nothing pending.
hw run >/dev/null
pending=$(my hwb_ct_on -N -e "SELECT (SELECT COUNT(*) FROM _hw_ct_acct WHERE hw_version = 9223372036854775807) + (SELECT COUNT(*) FROM _hw_ct_bulk WHERE hw_version = 9223372036854775807)" 2>/dev/null || echo n/a)
echo "log rows left pending after a final run: $pending (earlier highwater versions: n/a)"
