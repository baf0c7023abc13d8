"""What PostgreSQL sessions wait on while a bench runs: lock waits, by statement.

    .venv/bin/python scripts/measure_pg_waits.py [--seconds 600] [--database-like 'gsc_bench%']
        [--url postgresql://postgres@127.0.0.1:5432/postgres] [--out samples.txt]

Start it, then `gsc-pipeline bench --size standard --warehouse postgres` in another shell. Every
second it samples `pg_stat_activity` of the databases named like `--database-like` (the bench
makes a fresh `gsc_bench_*` database) and, at the end (or Ctrl-C), prints per kind of statement
the samples found active, those waiting on a lock, and the longest lock wait seen. A session
waiting on a lock for N seconds shows in about N samples.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import time

import psycopg2

_KINDS = (
    ("CREATE INDEX", "create index"),
    ("pg_advisory_xact_lock", "advisory lock"),
    ("copies - 1", "duplicate-rows proof"),
    ("COPY ", "COPY"),
    ("DELETE FROM gsc_fetch_ledger", "ledger delete"),
    ("DELETE FROM", "other delete"),
    ("lifetime", "lifetime stats"),
    ("WITH clock AS", "quota bucket"),
)


def kind(query: str) -> str:
    return next((name for text, name in _KINDS if text in query), query[:30])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--database-like", default="gsc_bench%")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--out", type=pathlib.Path, help="also write every sample here")
    args = parser.parse_args()
    conn = psycopg2.connect(args.url)
    conn.autocommit = True
    active: collections.Counter[str] = collections.Counter()
    locked: collections.Counter[str] = collections.Counter()
    longest: dict[str, float] = collections.defaultdict(float)
    out = args.out.open("w") if args.out else None
    end = time.monotonic() + args.seconds
    try:
        while time.monotonic() < end:
            tick = time.monotonic()
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT wait_event_type, extract(epoch FROM now() - query_start), "
                    "regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND state <> 'idle' AND datname LIKE %s",
                    (args.database_like,),
                )
                rows = cur.fetchall()
            for wait, seconds, query in rows:
                name = kind(query)
                active[name] += 1
                if wait == "Lock":
                    locked[name] += 1
                    longest[name] = max(longest[name], float(seconds or 0))
            if out:
                out.write(f"{time.time():.1f} " + " | ".join(
                    f"{w}:{float(s or 0):.1f}:{q[:70]}" for w, s, q in rows) + "\n")  # fmt: skip
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    except KeyboardInterrupt:
        pass
    print(f"{'statement':<24}{'active samples':>16}{'waiting on a lock':>19}{'longest wait s':>16}")
    for name, n in active.most_common():
        print(f"{name:<24}{n:>16}{locked[name]:>19}{longest.get(name, 0.0):>16.1f}")
    print(f"total lock-wait samples: {sum(locked.values())}")


if __name__ == "__main__":
    main()
