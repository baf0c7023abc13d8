"""CPU of one repair-sensor tick while a backfill's runs are in flight.

    .venv/bin/python scripts/measure_repair_tick.py [--runs 4] [--days 30] [--rounds 3]

The standard scenario's definitions (3 properties x 3 reports, 4 in-run checks each), a fresh
local instance (`GscInstance`), and `--runs` ranged runs of every fetching asset over `--days`
days each, created as the backfill daemon creates them and not executed: each has a planned
check record per check and day (1,080 for 30 days), as a backfill's runs have until their steps
report. Then the repair sensor ticks as the daemon would ask the code server (its cursor from a
first tick before the runs), and the tick's process CPU and its run reads are printed, best and
median of `--rounds` ticks from that cursor. It requests nothing: no check has failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg

from gsc_pipeline.component import build_definitions
from gsc_pipeline.defs.keys import fetch_asset_keys
from gsc_pipeline.defs.names import FETCH_JOB, REPAIR_SENSOR
from gsc_pipeline.instance import write_instance_config
from gsc_pipeline.tools.bench.scenario import SCENARIOS, write_scenario
from gsc_pipeline.warehouse import WAREHOUSE_URL_ENV

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scenario = SCENARIOS["standard"]
    with tempfile.TemporaryDirectory(prefix="gsc-repair-tick-") as tmp:
        workdir = Path(tmp)
        files = write_scenario(scenario, workdir)
        os.environ[WAREHOUSE_URL_ENV] = f"duckdb:///{workdir / 'wh.duckdb'}"
        defs = build_definitions(files.config)
        home = workdir / "dagster_home"
        write_instance_config(home, workspace=False)
        keys = set(fetch_asset_keys(files.config))
        job = defs.resolve_job_def(files.config.namespaced(FETCH_JOB))
        checks = {k for k in job.asset_layer.asset_graph.asset_check_keys if k.asset_key in keys}
        job = job.get_subset(asset_selection=keys, asset_check_selection=checks)
        sensor = defs.resolve_sensor_def(files.config.namespaced(REPAIR_SENSOR))
        with dg.DagsterInstance.from_config(str(home)) as instance:

            def tick(cursor: str | None) -> tuple[dg.SensorResult, float, int]:
                reads: list[str] = []
                read = instance.get_run_by_id
                instance.get_run_by_id = lambda run_id: reads.append(run_id) or read(run_id)
                context = dg.build_sensor_context(
                    instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
                )
                start = time.process_time()
                try:
                    result = sensor.evaluate_tick(context)
                finally:
                    del instance.get_run_by_id
                return result, time.process_time() - start, len(reads)

            first, _, _ = tick(None)
            last = scenario.day_list[-1]
            for run in range(args.runs):
                end = last - dt.timedelta(days=run * args.days)
                start = end - dt.timedelta(days=args.days - 1)
                instance.create_run_for_job(
                    job, tags={RANGE[0]: start.isoformat(), RANGE[1]: end.isoformat()}
                )
            seconds, reads = [], 0
            for _ in range(args.rounds):
                result, cpu, reads = tick(first.cursor)
                assert not result.run_requests, result.run_requests
                seconds.append(cpu)
    print(f"{args.runs} runs in flight x {args.days} days x {len(keys)} assets x "
          f"{len(checks) // len(keys)} checks: repair tick CPU best {min(seconds):.2f} s, "
          f"median {statistics.median(seconds):.2f} s; {reads} run reads a tick")  # fmt: skip


if __name__ == "__main__":
    main()
