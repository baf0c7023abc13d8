"""Two processes creating one new DuckDB file at once: how often DuckDB leaves it empty.

    .venv/bin/python scripts/measure_file_creation.py [--pairs 300]

For each way below, `--pairs` times: a new path, two forked processes that meet at a barrier
and each attach the file and create a table in it, then a third that attaches it once they have
ended. Counts each outcome: what the two answered, the file's size, what the third answered.
- `duckdb ATTACH, default threads` / `duckdb ATTACH, one thread`: DuckDB's own ATTACH of the
  missing file (what `DuckDBWarehouse` did up to stop 41), in a host database with DuckDB's
  default threads and with `threads=1`;
- `DuckDBWarehouse`: the warehouse's transaction (`GSC_DUCKDB_WRITER=inline`, its
  `CONNECT_CONFIG`), which creates a missing file whole and links it into place, and waits out
  the other's lock.
A lock conflict is what two processes should see (the warehouse waits it out); an empty file
that no later ATTACH opens is the failure (docs/bench/README.md, issue 14 stop 42: 1 pair in
300 with one thread, then none through the warehouse). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import re
import tempfile
from typing import Any


def _duckdb_attach(path: str, threads: int | None) -> None:
    import duckdb

    host = duckdb.connect(":memory:", config={} if threads is None else {"threads": threads})
    con = host.cursor()
    con.execute(f"ATTACH '{path}' AS x")
    con.execute("CREATE TABLE IF NOT EXISTS x.t (a INTEGER)")
    con.execute("DETACH x")


def _warehouse_attach(path: str, _: Any) -> None:
    from gsc_pipeline.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(path, writer="inline")
    with warehouse.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (a INTEGER)")
    warehouse.close()


def _attempt(attach, path: str, arg: Any, barrier, answers) -> None:
    if barrier is not None:
        barrier.wait(60)
    try:
        attach(path, arg)
        answers.put("ok")
    except Exception as exc:  # noqa: BLE001 - counted
        answers.put(re.sub(r'"[^"]*"', '"<file>"', f"{type(exc).__name__}: {exc}")[:80])


def _pairs(attach, arg: Any, pairs: int) -> collections.Counter:
    ctx = mp.get_context("fork")
    outcomes: collections.Counter = collections.Counter()
    for _ in range(pairs):
        path = os.path.join(tempfile.mkdtemp(prefix="gsc-create-"), "wh.duckdb")
        barrier, answers = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_attempt, args=(attach, path, arg, barrier, answers))
                 for _ in range(2)]  # fmt: skip
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        both = tuple(sorted(answers.get() for _ in procs))
        size = os.path.getsize(path) if os.path.exists(path) else None
        later = ctx.Process(target=_attempt, args=(attach, path, arg, None, answers))
        later.start()
        later.join()
        outcomes[(both, "empty" if size == 0 else "whole", answers.get())] += 1
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    args = parser.parse_args()
    ways = [
        ("duckdb ATTACH, default threads", _duckdb_attach, None),
        ("duckdb ATTACH, one thread", _duckdb_attach, 1),
        ("DuckDBWarehouse", _warehouse_attach, None),
    ]
    for name, attach, arg in ways:
        print(f"{name}: {args.pairs} pairs")
        for (both, file, later), count in _pairs(attach, arg, args.pairs).most_common():
            print(f"  {count:4d}  the two: {' | '.join(both)}; file {file}; a later one: {later}")


if __name__ == "__main__":
    main()
