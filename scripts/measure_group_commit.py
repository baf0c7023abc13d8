"""What a DuckDB group commit's size costs: the large property's page_query over `--days` days
in `sync_days` (as a step runs it), against the emulator at `--time-scale`, with the warehouse's
`group_commit_rows` set to each of `--rows` in turn (0: commit whatever is ready, as before
stop 22).

    .venv/bin/python scripts/measure_group_commit.py [--days 30] [--time-scale 1]
        [--rows 0 122880 245760] [--rounds 2] [--duckdb-setting "SET GLOBAL ..."]...
        [--day-rows 60000]

Prints, per setting and round: the transactions, the process's CPU per row, and the thread CPU
in DuckDB's detach (the checkpoint), inserts and the Arrow JSON parse. At real time scale the
days arrive one by one, so `0` commits one day at a time. Then the same DuckDB cost without the
pipeline: `INSERT` + commit + detach of 24 days of `--day-rows` synthetic rows, 1, 2, 4 and 6 days a
commit, and the file's size after them, once with DuckDB's defaults and once per
`--duckdb-setting` (a statement run on the host database first, e.g. "SET GLOBAL
disabled_compression_methods='dict_fsst'"). A measurement, not a test (docs/bench/README.md,
stops 22 and 35).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from gsc_pipeline.emulator.testing import emulator_process
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.gsc import client as client_module
from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.sync import sync_days
from gsc_pipeline.tools.bench.scenario import LARGE, SCENARIOS
from gsc_pipeline.warehouse import duckdb as warehouse_duckdb
from gsc_pipeline.warehouse import open_warehouse
from gsc_pipeline.warehouse.base import report_schema


def _config(time_scale: float) -> dict:
    """The bench's emulator with its large property alone (bench/scenario.py)."""
    large = next(p for p in SCENARIOS["standard"].properties if p[0] == LARGE)
    scenario = dataclasses.replace(SCENARIOS["standard"], properties=(large,),
                                   time_scale=time_scale)  # fmt: skip
    return scenario.emulator_config()


_thread_cpu: collections.Counter[str] = collections.Counter()
_calls: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()


def _timed(owner: object, name: str, label: str) -> None:
    """Add the calling thread's CPU in `owner.name` to `_thread_cpu[label]`."""
    inner = getattr(owner, name)

    def timed(*args, **kwargs):
        start = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            with _lock:
                _thread_cpu[label] += time.thread_time() - start
                _calls[label] += 1

    setattr(owner, name, timed)


def _pipeline(endpoint: str, days: int, time_scale: float, rows: int) -> str:
    warehouse_duckdb.DuckDBWarehouse.group_commit_rows = rows
    _thread_cpu.clear()
    _calls.clear()
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = open_warehouse(f"duckdb:///{Path(tmp) / 'warehouse.duckdb'}")
        client = GscClient(endpoint, qpm_budget=960.0 * time_scale)
        day_list = [dt.date(2026, 6, 25) - dt.timedelta(days=i) for i in range(days)]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results = sync_days(client, warehouse, LARGE, PAGE_QUERY, day_list, run_id="measure",
                            concurrency=16)  # fmt: skip
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stored = sum(r.rows for r in results)
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(_thread_cpu.items()))
    return (f"group_commit_rows {rows:>7,}: {_calls['write_partitions']} transactions, "
            f"CPU {cpu:.2f} s = {cpu / stored * 1e6:.2f} µs/row, wall {wall:.1f} s; thread "
            f"CPU: {parts}")  # fmt: skip


def _synthetic_day(rng: np.random.Generator, n: int, day: int) -> pa.Table:
    return pa.table({
        "site_url": [LARGE] * n, "search_type": ["web"] * n,
        "date": pa.array(np.full(n, np.datetime64("2026-01-01", "D") + day)),
        "page": [f"https://large.example/p/{x}" for x in rng.integers(0, 6000, n)],
        "query": [f"query {x} words" for x in rng.integers(0, 10**6, n)],
        "clicks": rng.integers(0, 5, n), "impressions": rng.integers(5, 50, n),
        "ctr": rng.random(n), "position": rng.random(n) * 20,
    })  # fmt: skip


def _duckdb_only(days_per_commit: int, tables: list[pa.Table], setting: str | None) -> str:
    """The warehouse's own transactions (attach, delete + insert each day, commit, detach)."""
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = open_warehouse(f"duckdb:///{Path(tmp) / 'w.duckdb'}")
        if setting:
            warehouse._host_database().execute(setting)
        with warehouse.transaction() as conn:
            conn.execute(warehouse.create_table_sql("t", report_schema(PAGE_QUERY)))
        cpu0 = time.process_time()
        for first in range(0, len(tables), days_per_commit):
            with warehouse.transaction() as conn:
                for table in tables[first : first + days_per_commit]:
                    conn.execute("DELETE FROM t WHERE site_url = ? AND date = ?",
                                 (LARGE, table.column("date")[0].as_py()))  # fmt: skip
                    conn.insert_arrow("t", table)
        cpu = time.process_time() - cpu0
        wal = Path(f"{warehouse.path}.wal")
        wal_mb = wal.stat().st_size / 2**20 if wal.exists() else 0.0
        file_mb = Path(warehouse.path).stat().st_size / 2**20
    rows = sum(t.num_rows for t in tables)
    return (f"  {days_per_commit} day(s) a commit: {cpu / rows * 1e6:.2f} µs/row, "
            f"file {file_mb:.0f} MB, WAL left {wal_mb:.1f} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 122_880, 245_760])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duckdb-setting", action="append", default=[])
    parser.add_argument("--day-rows", type=int, default=60_000)
    args = parser.parse_args()
    _timed(warehouse_duckdb.DuckDBWarehouse, "_detach", "detach (checkpoint)")
    _timed(warehouse_duckdb.DuckDBConnection, "insert_arrow", "insert")
    _timed(client_module, "parse_rows_page", "JSON parse")
    _timed(warehouse_duckdb.DuckDBWarehouse, "write_partitions", "write_partitions")
    with emulator_process(_config(args.time_scale)) as endpoint:
        for _ in range(args.rounds):
            for rows in args.rows:  # alternating, so drift hits every setting alike
                print(_pipeline(endpoint, args.days, args.time_scale, rows), flush=True)
    rng = np.random.default_rng(1)
    tables = [_synthetic_day(rng, args.day_rows, i) for i in range(24)]
    for setting in [None, *args.duckdb_setting]:
        print(f"DuckDB alone, 24 days of {args.day_rows:,} rows, {setting or 'defaults'}:")
        for days_per_commit in (1, 2, 4, 6):
            print(_duckdb_only(days_per_commit, tables, setting), flush=True)


if __name__ == "__main__":
    main()
