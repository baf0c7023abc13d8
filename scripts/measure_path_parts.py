"""Where the bench's fetch -> parse -> write path spends its CPU, part by part.

    .venv/bin/python scripts/measure_path_parts.py [--warehouse duckdb|postgres] [--rounds 2]
        [--duckdb-setting NAME=VALUE ...] [--duckdb-parts]

Runs the standard bench's path slice (`tools.bench.run.sync_slice`: `sync_days` as a step runs
it, over the first days of every property and report, against the emulator at real-time
latency) `--rounds` times, each into a fresh warehouse, and prints each round's CPU per row and
then the thread CPU (`time.thread_time`, so waiting is not counted) spent inside each part of
the path, summed over the rounds, and its largest single call. Parts nest: `GscClient._call`
includes `parse_rows_page` and building or taking a Google service object
(`GscClient._take_service`),
`Warehouse.run_transaction` includes `write_partitions`, `ensure_schema` and `claim_report`.
Each round's line also splits the process's CPU by thread: the calling thread (the one-time
setup left out), the sync's Python threads (`gsc-sync` fetches, `gsc-write` the group writer),
DuckDB's writer process (`warehouse.duckdb_writer`, its CPU over the slice) and what remains,
the native threads Python did not start (Arrow's workers, jemalloc's; DuckDB's when inline).
`--duckdb-setting threads=1` (repeatable) adds a setting to the DuckDB host database's
`duckdb.connect(config=...)` for an A/B; it runs DuckDB inline (`GSC_DUCKDB_WRITER=inline`).
`--duckdb-parts` runs DuckDB inline too, its file kept attached between transactions as its
writer process keeps it (`duckdb.LINGER_SECONDS`, `HOLD_SECONDS`), and adds DuckDB's own work to
the parts: each transaction's begin (with the attach when the file was detached) and its end
(COMMIT, with DuckDB's own checkpoint once the write-ahead log has grown past its threshold, and
the detach when the file is not kept), the detach wherever it runs (its checkpoint), each
Arrow insert by table and each statement by its first words. What the writer process adds on
top (the socket, the rows' memfd) is then the round's CPU against a run without the flag.
A measurement, not a test (docs/bench/README.md, stops 26, 37, 38 and 44).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil

from gsc_pipeline.gsc import client as client_module
from gsc_pipeline.sync import days as days_module
from gsc_pipeline.sync import fetch as fetch_module
from gsc_pipeline.tools.bench.command import standard_rounds
from gsc_pipeline.tools.bench.run import sync_slice
from gsc_pipeline.tools.bench.scenario import SCENARIOS
from gsc_pipeline.warehouse import duckdb as duckdb_module
from gsc_pipeline.warehouse import open_warehouse
from gsc_pipeline.warehouse.base import Warehouse

# Per part: CPU seconds, calls, the largest single call's CPU seconds.
_spent: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0, 0.0])
_lock = threading.Lock()
# CPU of the Python threads that ended, by name prefix (`gsc-sync_3` -> `gsc-sync`); those still
# running (a pool kept between syncs) are read from the OS (psutil).
_thread_cpu: collections.Counter[str] = collections.Counter()
_thread_run = threading.Thread.run


def _counted_run(self: threading.Thread) -> None:
    try:
        _thread_run(self)
    finally:
        with _lock:
            _thread_cpu[_kind(self.name)] += time.thread_time()


def _kind(thread_name: str) -> str:
    return thread_name.rsplit("_", 1)[0]


def _task_cpu() -> dict[int, float]:
    """CPU seconds of each of this process's threads now, by native id."""
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


def _live_python_threads(before: dict[int, float]) -> collections.Counter[str]:
    """CPU since `before` of the Python threads still running, but the calling one."""
    after = _task_cpu()
    out: collections.Counter[str] = collections.Counter()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.native_id in after:
            out[_kind(thread.name)] += after[thread.native_id] - before.get(thread.native_id, 0.0)
    return out


def _add(name: str, start: float) -> None:
    """This thread's CPU since `start` counted to the part `name`."""
    spent = time.thread_time() - start
    with _lock:
        part = _spent[name]
        part[0] += spent
        part[1] += 1
        part[2] = max(part[2], spent)


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(name, start)

    return timed


_rows_parsed = [0]


def _counting_parse(fn: Callable[..., Any]) -> Callable[..., Any]:
    def parse(*args: Any, **kwargs: Any) -> Any:
        page = fn(*args, **kwargs)
        with _lock:
            _rows_parsed[0] += len(page.rows)
        return page

    return parse


def _instrument() -> None:
    client_module.parse_rows_page = _counting_parse(client_module.parse_rows_page)
    for module, name in [
        (fetch_module, "merge_shards"),
        (fetch_module, "page_from_rows"),
        (fetch_module, "settle_tie_order"),
        (client_module, "parse_rows_page"),
        (days_module, "plan_days"),
    ]:
        setattr(module, name, _timed(name, getattr(module, name)))
    client_module.GscClient._call = _timed("GscClient._call", client_module.GscClient._call)
    # Building a Google service object (once per thread before stop 33, `_service`).
    for name in ("_take_service", "_service"):
        if hasattr(client_module.GscClient, name):
            method = getattr(client_module.GscClient, name)
            setattr(client_module.GscClient, name, _timed(f"GscClient.{name}", method))
    for name in ("run_transaction", "write_partitions", "ensure_schema", "claim_report"):
        setattr(Warehouse, name, _timed(f"Warehouse.{name}", getattr(Warehouse, name)))
    threading.Thread.run = _counted_run  # type: ignore[method-assign]


def _instrument_duckdb() -> None:
    """DuckDB inline, kept attached as its writer process keeps it, its work timed by part."""
    os.environ[duckdb_module.WRITER_ENV] = "inline"
    warehouse_class = duckdb_module.DuckDBWarehouse
    init = warehouse_class.__init__

    def lingering_init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("linger_seconds", duckdb_module.LINGER_SECONDS)
        init(self, *args, **kwargs)

    transaction = warehouse_class._inline_transaction

    @contextlib.contextmanager
    def timed_transaction(self: Any) -> Iterator[Any]:
        context = transaction(self)
        start = time.thread_time()
        conn = context.__enter__()
        _add("DuckDB transaction begin (+ attach)", start)
        try:
            yield conn
        except BaseException:
            if not context.__exit__(*sys.exc_info()):
                raise
        else:
            start = time.thread_time()
            context.__exit__(None, None, None)
            _add("DuckDB transaction end (COMMIT, + detach)", start)

    warehouse_class.__init__ = lingering_init  # type: ignore[method-assign]
    warehouse_class._inline_transaction = timed_transaction  # type: ignore[method-assign]
    warehouse_class._attach = _timed("DuckDB attach", warehouse_class._attach)
    warehouse_class._detach = _timed("DuckDB detach (its checkpoint)", warehouse_class._detach)
    connection_class = duckdb_module.DuckDBConnection
    execute, insert = connection_class.execute, connection_class.insert_arrow

    def timed_execute(self: Any, sql: str, params: Any = None) -> Any:
        start = time.thread_time()
        try:
            return execute(self, sql, params)
        finally:
            _add("DuckDB " + " ".join(sql.split()[:3])[:40], start)

    def timed_insert(self: Any, table: str, data: Any) -> None:
        start = time.thread_time()
        try:
            insert(self, table, data)
        finally:
            _add(f"DuckDB Arrow insert into {table}", start)

    connection_class.execute = timed_execute  # type: ignore[method-assign]
    connection_class.insert_arrow = timed_insert  # type: ignore[method-assign]


def _duckdb_setting(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE, e.g. threads=1")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", choices=["duckdb", "postgres"], default="duckdb")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--duckdb-setting",
        type=_duckdb_setting,
        action="append",
        default=[],
        help="NAME=VALUE for the DuckDB host's connect config (repeatable)",
    )
    parser.add_argument(
        "--duckdb-parts",
        action="store_true",
        help="DuckDB inline, kept attached as its writer keeps it, its work timed by part",
    )
    args = parser.parse_args()
    if args.duckdb_parts:
        _instrument_duckdb()
    if args.duckdb_setting:
        # The settings are this process's: DuckDB has to run in it, not in its writer.
        os.environ[duckdb_module.WRITER_ENV] = "inline"
    _instrument()
    duckdb_module.CONNECT_CONFIG.update(dict(args.duckdb_setting))
    scenario = SCENARIOS["standard"]
    total_cpu = 0.0
    for round_no, (files, endpoint, url) in enumerate(
        standard_rounds(args.warehouse, args.rounds, "gsc-path-parts-")
    ):
        credential = files.config.credentials["default"]
        _thread_cpu.clear()
        _rows_parsed[0] = 0
        helper = open_warehouse(url).helper_cpu_seconds
        tasks0, main0, helper0 = _task_cpu(), time.thread_time(), helper()
        path = sync_slice(scenario, files.config, endpoint, url, credential.step_concurrency)
        main = time.thread_time() - main0 - path.setup_cpu_seconds
        threads = _thread_cpu + _live_python_threads(tasks0)
        # DuckDB's writer process, setup included (sync_slice leaves it out).
        threads["DuckDB writer process"] = helper() - helper0
        total_cpu += path.cpu_seconds
        python_threads = sum(threads.values())
        by_thread = ", ".join(
            [f"calling thread {main:.2f}"]
            + [f"{name} {cpu:.2f}" for name, cpu in sorted(threads.items())]
            + [f"native threads {path.cpu_seconds - main - python_threads:.2f}"]
        )
        print(
            f"round {round_no + 1}: {path.cpu_seconds:.2f} CPU s, {path.rows:,} rows, "
            f"{path.cpu_us_per_row:.2f} µs/row, wall {path.seconds:.1f} s, {path.requests} "
            f"requests serving {_rows_parsed[0]:,} rows; {by_thread}",
            flush=True,
        )
    print(f"thread CPU by part, {args.rounds} round(s), of {total_cpu:.2f} process CPU s:")
    for name, (seconds, calls, largest) in sorted(_spent.items(), key=lambda item: -item[1][0]):
        print(f"  {name:42s} {seconds:6.3f} s in {calls:4d} calls (largest {largest * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
