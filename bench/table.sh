# Sourced by the bench scripts: the benchmark table.
#
#   bench_table URL ROWS    (re)creates the database at URL (a PostgreSQL URL ending
#                           in the database's name) with a table `bench` of ROWS rows:
#                           bigint key, int, text, numeric(12,2), text, 60-char text,
#                           two timestamptz (updated_at indexed).
bench_table() {
  local url=$1 rows=$2
  psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${url##*/}" -c "CREATE DATABASE ${url##*/}" >/dev/null
  psql "$url" -q <<SQL
CREATE TABLE bench (
  id bigint PRIMARY KEY, qty int, name text, amount numeric(12,2), status text,
  comment text, created_at timestamptz, updated_at timestamptz);
INSERT INTO bench
SELECT g, (g % 1000)::int, 'customer ' || g, (g % 100000) / 100.0, (ARRAY['new','paid','shipped'])[1 + g % 3],
       rpad(md5(g::text), 60, 'x'), timestamptz '2024-01-01' + g * interval '1 second',
       timestamptz '2024-01-01' + g * interval '1 second'
FROM generate_series(1, $rows) g;
CREATE INDEX ON bench (updated_at);
VACUUM ANALYZE bench;
SQL
}
