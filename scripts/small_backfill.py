"""The bench's 1-day, 1-property UI backfill alone, without the standard backfill before it.

    .venv/bin/python scripts/small_backfill.py [--warehouse duckdb|postgres] [--repeat N]

The standard scenario's emulator (real time), a fresh Dagster home, the real daemon (backfill
tick shortened to 2 s: it only changes the pickup, which the target excludes). A warm-up 1-day
backfill of the small property first (the code server loaded, as after the bench's backfill),
then `small_backfill` (tools/bench/run.py) of the large property, N times on N different days;
each prints run created -> run ended and the run's timeline (scripts/run_timeline.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

import dagster as dg

from gsc_pipeline.config import CONFIG_ENV
from gsc_pipeline.gsc.client import API_ENDPOINT_ENV
from gsc_pipeline.instance import init_instance
from gsc_pipeline.tools.bench.command import _warehouse_url
from gsc_pipeline.tools.bench.run import _wait_idle, small_backfill
from gsc_pipeline.tools.bench.sampler import TreeSampler
from gsc_pipeline.tools.bench.scenario import SCENARIOS, environ_set, write_scenario
from gsc_pipeline.tools.demo import dagster_daemon, emulator_process
from gsc_pipeline.tools.launch import launch_backfill, wait_for_backfill
from gsc_pipeline.warehouse import WAREHOUSE_URL_ENV

TIMELINE = Path(__file__).with_name("run_timeline.py")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warehouse", default="duckdb", choices=["duckdb", "postgres"])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    base = SCENARIOS["standard"]
    with tempfile.TemporaryDirectory(prefix="gsc-small-") as tmp:
        workdir = Path(tmp)
        files = write_scenario(base, workdir)
        config, home = files.config, files.home
        with (
            _warehouse_url(args.warehouse, workdir) as url,
            emulator_process("--config", str(files.emulator_file)) as emu,
            environ_set({CONFIG_ENV: str(files.config_file), "DAGSTER_HOME": str(home),
                         API_ENDPOINT_ENV: emu.base_url, WAREHOUSE_URL_ENV: url}),
        ):  # fmt: skip
            init_instance(home, config)
            from gsc_pipeline.defs.schedules import property_asset_keys

            with (
                dg.DagsterInstance.from_config(str(home)) as instance,
                dagster_daemon(home, workdir / "daemon.log", 2) as daemon,
            ):
                small = config.properties[0]
                warm = launch_backfill(instance, home / "workspace.yaml",
                                       property_asset_keys(config, small),
                                       [base.day_list[-1].isoformat()], "warm-up")  # fmt: skip
                wait_for_backfill(instance, warm, timeout=600)
                _wait_idle(instance, timeout=180)
                for i in range(args.repeat):
                    # An earlier final day each time: the same size, never fetched before.
                    day = base.small_backfill_day - dt.timedelta(days=i)
                    with TreeSampler(daemon.pid) as sampler:
                        result = _small_on(instance, home, config, base, url, day)
                    cpu = {role: round(s, 1) for role, s in sampler.cpu_by_role().items()}
                    _wait_idle(instance, timeout=180)
                    print(f"1-day backfill {day}: created -> ended "
                          f"{result.after_pickup_seconds:.1f} s, {result.runs} run(s), succeeded "
                          f"{result.succeeded}, load {os.getloadavg()[0]:.2f}, CPU s {cpu}",
                          flush=True)  # fmt: skip
            subprocess.run([sys.executable, str(TIMELINE), str(home), "--steps"], check=False)


def _small_on(instance, home, config, scenario, url, day):  # noqa: ANN001, ANN202
    """`small_backfill` on `day` (the scenario's day is a property; shadowed on a subclass)."""

    class OnDay(type(scenario)):
        @property
        def small_backfill_day(self) -> dt.date:
            return day

    values = {f.name: getattr(scenario, f.name) for f in fields(scenario)}
    return small_backfill(instance, home, config, OnDay(**values), url).result


if __name__ == "__main__":
    main()
