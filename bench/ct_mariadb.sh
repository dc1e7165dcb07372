#!/usr/bin/env bash
# `mode: change_tracking` on MariaDB with concurrent writers, in one run, as
# ratios tracked / untracked against the same server:
#
#   bench/ct_mariadb.sh [SECONDS] [WRITERS] [ROUNDS]
#       (defaults 8, 4, 2; HIGHWATER_BENCH_MARIADB=mysql://root@127.0.0.1:3306
#        names the server, HIGHWATER_BENCH_BIN the highwater binary — else
#        the debug build of this tree: only setup and the runs between the
#        writers need it, the triggers run in the server)
#
# Two databases with the same tables: `hwb_ct_on` (both tables tracked by
# `mode: change_tracking`, a `highwater run` every second while the writers
# write) and `hwb_ct_off` (nothing). Each phase runs WRITERS concurrent
# writer processes (`mysql` calling a stored procedure that loops for
# SECONDS, so client overhead does not hide the server's) on each
# database in turn, ROUNDS times in alternating order, and keeps the best:
#
#   updates    each writer: autocommitted single-row UPDATEs of its own rows
#   txns       each writer: transactions of two UPDATEs of its own rows
#   long txn   `updates`, while one more session holds a transaction open on
#              another row for the whole phase (the triggers of earlier
#              highwater versions made every writer wait for it)
#   bulk       each writer: 1,000-row INSERT … SELECT statements, own keys
#
# Target: tracked >= 0.7x untracked in every phase.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
WRITERS=${2:-4}
ROUNDS=${3:-2}
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

BASE=0
# phase DB KIND → rows or statements per second of all writers together
phase() {
  local db=$1 kind=$2 pids=() holder= total=0 out
  if [ "$db" = hwb_ct_on ]; then
    (while true; do hw run >/dev/null 2>&1 || echo "highwater run failed" >&2; sleep 1; done) >/dev/null &
    RUNNER=$!
  fi
  if [ "$kind" = long ]; then
    my "$db" -e "BEGIN; UPDATE acct SET v = v + 1 WHERE id = 0; DO SLEEP($SECS + 2); COMMIT" &
    holder=$!
    sleep 0.5
  fi
  BASE=$((BASE + 1000000000))
  for w in $(seq 0 $((WRITERS - 1))); do
    case $kind in
      updates | long) my "$db" -N -e "CALL hw_updates($w, $SECS, 1)" >"$WORK/out.$w" & ;;
      txns) my "$db" -N -e "CALL hw_updates($w, $SECS, 2)" >"$WORK/out.$w" & ;;
      bulk) my "$db" -N -e "CALL hw_bulk($w, $SECS, $BASE)" >"$WORK/out.$w" & ;;
    esac
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  [ -n "$holder" ] && wait "$holder"
  if [ -n "$RUNNER" ]; then kill "$RUNNER"; wait "$RUNNER" 2>/dev/null || true; RUNNER=; fi
  for w in $(seq 0 $((WRITERS - 1))); do
    out=$(cat "$WORK/out.$w")
    total=$((total + out))
  done
  echo "$total / $SECS" | bc -l
}

best() { echo "$1 $2" | awk '{print ($1 > $2) ? $1 : $2}'; }
printf '%-9s %14s %14s %7s\n' phase tracked/s untracked/s ratio
for kind in updates txns long bulk; do
  on=0
  off=0
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
      on=$(best "$on" "$(phase hwb_ct_on $kind)")
      off=$(best "$off" "$(phase hwb_ct_off $kind)")
    else
      off=$(best "$off" "$(phase hwb_ct_off $kind)")
      on=$(best "$on" "$(phase hwb_ct_on $kind)")
    fi
  done
  printf '%-9s %14.0f %14.0f %7.2f\n' "$kind" "$on" "$off" "$(echo "$on / $off" | bc -l)"
done
# Every change was delivered: the last run leaves nothing pending.
hw run >/dev/null
pending=$(my hwb_ct_on -N -e "SELECT (SELECT COUNT(*) FROM _hw_ct_acct WHERE hw_version = 9223372036854775807) + (SELECT COUNT(*) FROM _hw_ct_bulk WHERE hw_version = 9223372036854775807)" 2>/dev/null || echo n/a)
echo "log rows left pending after a final run: $pending (earlier highwater versions: n/a)"
