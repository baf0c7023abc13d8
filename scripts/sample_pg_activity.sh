#!/bin/bash
# What PostgreSQL is doing for a bench's warehouse, twice a second, until stopped.
#
#     scripts/sample_pg_activity.sh [ADMIN_URL] > activity.log &
#     .venv/bin/python -m gsc_pipeline.cli bench --size standard --warehouse postgres --out DIR
#     kill %1
#
# One line per active statement (or background process) of a database named gsc_bench_*: the
# time, the backend's type, its state and the statement's first 90 characters. Line it up with
# the report's chart (seconds since the first run started) to see which statements run while the
# request rate dips. ADMIN_URL defaults to the bench's (GSC_BENCH_POSTGRES_URL). A measurement,
# not a test (docs/bench/README.md, stop 44).
url="${1:-${GSC_BENCH_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}}"
while true; do
  psql "$url" -At -F'|' -c "SELECT to_char(clock_timestamp(), 'HH24:MI:SS.MS'), backend_type,
      datname, state, left(regexp_replace(query, '\s+', ' ', 'g'), 90)
    FROM pg_stat_activity
    WHERE datname LIKE 'gsc_bench%' AND (backend_type <> 'client backend' OR state = 'active')
      AND pid <> pg_backend_pid()"
  sleep 0.5
done
