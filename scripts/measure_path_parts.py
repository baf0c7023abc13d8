"""Where the bench's fetch -> parse -> write path spends its CPU, part by part.

    .venv/bin/python scripts/measure_path_parts.py [--warehouse duckdb|postgres] [--rounds 2]

Runs the standard bench's path slice (`tools.bench.run.sync_slice`: `sync_days` as a step runs
it, over the first days of every property and report, against the emulator at real-time
latency) `--rounds` times, each into a fresh warehouse, and prints each round's CPU per row and
then the thread CPU (`time.thread_time`, so waiting is not counted) spent inside each part of
the path, summed over the rounds. Parts nest: `GscClient._call` includes `parse_rows_page` and
building or taking a Google service object (`GscClient._take_service`),
`Warehouse.run_transaction` includes `write_partitions`, `ensure_schema` and `claim_report`.
A measurement, not a test (docs/bench/README.md, stop 26).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gsc_pipeline.gsc import client as client_module
from gsc_pipeline.sync import days as days_module
from gsc_pipeline.sync import fetch as fetch_module
from gsc_pipeline.tools.bench.command import _warehouse_url
from gsc_pipeline.tools.bench.run import sync_slice
from gsc_pipeline.tools.bench.scenario import SCENARIOS, write_scenario
from gsc_pipeline.tools.demo import emulator_process
from gsc_pipeline.warehouse.base import Warehouse

_spent: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
_lock = threading.Lock()


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                _spent[name][0] += time.thread_time() - start
                _spent[name][1] += 1

    return timed


def _instrument() -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", choices=["duckdb", "postgres"], default="duckdb")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    _instrument()
    scenario = SCENARIOS["standard"]
    total_cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="gsc-path-parts-") as tmp:
        workdir = Path(tmp)
        files = write_scenario(scenario, workdir)
        credential = files.config.credentials["default"]
        with emulator_process(
            "--config", str(files.emulator_file), log=workdir / "emulator.log"
        ) as emu:
            for round_no in range(args.rounds):
                roundir = workdir / f"round{round_no}"
                roundir.mkdir()
                with _warehouse_url(args.warehouse, roundir) as url:
                    path = sync_slice(
                        scenario, files.config, emu.base_url, url, credential.step_concurrency
                    )
                total_cpu += path.cpu_seconds
                print(
                    f"round {round_no + 1}: {path.cpu_seconds:.2f} CPU s, {path.rows:,} rows, "
                    f"{path.cpu_us_per_row:.2f} µs/row, wall {path.seconds:.1f} s",
                    flush=True,
                )
    print(f"thread CPU by part, {args.rounds} round(s), of {total_cpu:.2f} process CPU s:")
    for name, (seconds, calls) in sorted(_spent.items(), key=lambda item: -item[1][0]):
        print(f"  {name:32s} {seconds:6.3f} s in {calls:4d} calls")


if __name__ == "__main__":
    main()
