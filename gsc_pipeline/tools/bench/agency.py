"""`gsc-pipeline bench --size agency`: what many properties and a 16-month backfill cost Dagster.

Fetching 16 months of 300 properties is ~430,000 requests: hours at Google's quota whatever
the orchestrator. What can go wrong with scale is the orchestration, so this measures it, at
30, 100 and 300 properties (the cost per property must stay flat):

1. definitions load: a fresh process imports the code location and builds the repository
   snapshot a code server sends (time, snapshot size, RSS);
2. the backfill plan: `launchPartitionBackfill` of every fetching asset x 16 months, submitted
   by the real daemon into a held run queue (max_concurrent_runs 0, nothing executes): runs,
   steps, event-log rows, time to submit, daemon and code-server CPU;
3. one executed slice (1 day of every property, small days, latency and quotas 10x faster):
   event-log rows and run-worker CPU per step, which scale the plan's execution cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from gsc_pipeline.config import CONFIG_ENV, load_config
from gsc_pipeline.constants import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.instance import init_instance
from gsc_pipeline.tools.bench.sampler import TreeSampler
from gsc_pipeline.tools.bench.scenario import Scenario, environ_set, write_scenario
from gsc_pipeline.tools.demo import dagster_daemon, emulator_process
from gsc_pipeline.tools.launch import BACKFILL_TAG, launch_backfill, wait_for_backfill

SIZES = (30, 100, 300)
# 16 months of days (Google keeps 16 months; the newest final days are left out).
PLAN_DAYS = 480
# Submitting a run costs the daemon per asset and per day in it; the full plan at 300
# properties would take the daemon an hour on 2 shared cores, so each size submits
# `MEASURED_DAYS` days (one run) and one extra plan at the smallest size a full run's days.
MEASURED_DAYS = 1
SLICE_PROPERTIES = 30

_LOAD_PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
import dagster
t1 = time.perf_counter()
from gsc_pipeline.definitions import defs
t2 = time.perf_counter()
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
repo = defs.get_repository_def()
snap = serialize_value(RepositorySnap.from_def(repo))
t3 = time.perf_counter()
print(json.dumps({"import_dagster": t1 - t0, "build": t2 - t1, "snapshot": t3 - t2,
                  "snapshot_bytes": len(snap), "assets": len(repo.asset_graph.get_all_asset_keys()),
                  "checks": len(repo.asset_graph.asset_check_keys),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def scenario(properties: int, days: int) -> Scenario:
    """Agency-sized properties: ~300 page x query rows a day, one page per report and day."""
    return Scenario(
        "agency", days=days, sequential_days=1,
        properties=tuple((f"sc-domain:p{i:03d}.example", 300, 60) for i in range(properties)),
        time_scale=10.0, daemon_tick_seconds=2,
    )  # fmt: skip


@dataclass
class Size:
    properties: int
    load: dict[str, float]
    days: int = MEASURED_DAYS
    runs: int = 0
    steps: int = 0
    planned_events: int = 0
    submit_seconds: float = 0.0
    cpu_by_role: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def requests(self) -> int:
        # Every report of these properties is one page a day (one request).
        return self.properties * 3 * self.days


@dataclass
class Slice:
    properties: int
    steps: int
    events: int
    run_seconds: float
    run_cpu: float
    requests: int
    succeeded: bool


def _write_config(workdir: Path, sc: Scenario) -> Path:
    path = workdir / "gsc.yaml"
    path.write_text(yaml.safe_dump(sc.pipeline_config(), sort_keys=False))
    return path


def measure_load(config_file: Path) -> dict[str, float]:
    """Import + Definitions + repository snapshot in a fresh process, as a code server does."""
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_PROBE], check=True, capture_output=True, text=True,
        env={**os.environ, CONFIG_ENV: str(config_file)},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _hold_queue(home: Path) -> None:
    """max_concurrent_runs 0: the daemon submits the backfill's runs, none is launched.

    Run monitoring fails a run not started within 180 s; creating one 900-asset run takes
    longer than that on a loaded 2-core machine, and the failure would start repairs.
    """
    path = home / "dagster.yaml"
    data = yaml.safe_load(path.read_text())
    data["concurrency"]["runs"]["max_concurrent_runs"] = 0
    data["run_monitoring"]["start_timeout_seconds"] = 7200
    path.write_text(yaml.safe_dump(data))


def measure_plan(size: Size, workdir: Path, timeout: float = 1200) -> None:
    sc = scenario(size.properties, size.days)
    config_file = _write_config(workdir, sc)
    config = load_config(config_file)
    home = (workdir / "home").resolve()
    env = {"DAGSTER_HOME": str(home), CONFIG_ENV: str(config_file),
           API_ENDPOINT_ENV: "http://127.0.0.1:9/", WAREHOUSE_URL_ENV:
           f"duckdb:///{workdir / 'warehouse.duckdb'}"}  # fmt: skip
    with environ_set(env):
        init_instance(home, config)
        _hold_queue(home)
        from gsc_pipeline.defs.assets import fetch_asset_keys

        keys = fetch_asset_keys(config)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            backfill_id = launch_backfill(instance, home / "workspace.yaml", keys,
                                          [d.isoformat() for d in sc.day_list],
                                          title=f"agency {size.properties}")  # fmt: skip
            expected = len(keys) * size.days
            with dagster_daemon(home, workdir / "daemon.log", sc.daemon_tick_seconds) as daemon:
                started = time.time()
                with TreeSampler(daemon.pid) as sampler:
                    while True:
                        data = instance.get_backfill(backfill_id).asset_backfill_data
                        done = data.requested_subset.num_partitions_and_non_partitioned_assets
                        if done >= expected:
                            break
                        if time.time() - started > timeout:
                            size.error = f"{done:,} of {expected:,} partitions submitted after "
                            size.error += f"{timeout:.0f} s"
                            break
                        time.sleep(1)
                    runs = instance.get_run_records(
                        dg.RunsFilter(tags={BACKFILL_TAG: backfill_id})
                    )  # fmt: skip
                    last = max((r.create_timestamp.timestamp() for r in runs), default=started)
                size.cpu_by_role = sampler.cpu_by_role()
            size.submit_seconds = last - started
            size.runs = len(runs)
            for record in runs:
                run = record.dagster_run
                plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
                size.steps += len(plan.steps)
                size.planned_events += len(instance.all_logs(run.run_id))


def measure_slice(workdir: Path) -> Slice:
    """1 day of `SLICE_PROPERTIES` properties, executed: one run, a step per asset."""
    sc = scenario(SLICE_PROPERTIES, 1)
    files = write_scenario(sc, workdir)
    config, home = files.config, files.home
    emulator_log = workdir / "emulator.log"
    with emulator_process("--config", str(files.emulator_file), log=emulator_log) as emu:
        env = {"DAGSTER_HOME": str(home), CONFIG_ENV: str(files.config_file),
               API_ENDPOINT_ENV: emu.base_url,
               WAREHOUSE_URL_ENV: f"duckdb:///{workdir / 'warehouse.duckdb'}"}  # fmt: skip
        with environ_set(env):
            init_instance(home, config)
            from gsc_pipeline.defs.assets import fetch_asset_keys
            from gsc_pipeline.tools.bench.run import _run_infos

            keys = fetch_asset_keys(config)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                backfill_id = launch_backfill(instance, home / "workspace.yaml", keys,
                                              [sc.day_list[0].isoformat()], title="agency slice")
                daemon = dagster_daemon(home, workdir / "daemon.log", sc.daemon_tick_seconds)
                with daemon as proc, TreeSampler(proc.pid) as sampler:
                    progress = wait_for_backfill(instance, backfill_id, timeout=1800)
                runs = [r for r in _run_infos(instance, backfill_id) if r.backfill]
        stats = emu.stats()
    for run in runs:
        sample = next((p for p in sampler.processes.values() if p.pid == run.pid), None)
        run.cpu_seconds = sample.cpu_seconds if sample else 0.0
    return Slice(
        properties=SLICE_PROPERTIES, steps=len(keys) * len(runs),
        events=sum(r.events for r in runs),
        run_seconds=sum((r.ended or 0) - (r.started or 0) for r in runs),
        run_cpu=sum(r.cpu_seconds for r in runs), requests=int(stats["requests_total"]),
        succeeded=progress.succeeded,
    )  # fmt: skip


def run_agency(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    sizes = []
    for n in SIZES:
        with tempfile.TemporaryDirectory(prefix=f"gsc-agency-{n}-") as tmp:
            workdir = Path(tmp)
            print(f"agency {n} properties: definitions load", flush=True)
            size = Size(n, measure_load(_write_config(workdir, scenario(n, PLAN_DAYS))))
            print(f"agency {n} properties: backfill plan ({size.days} days)", flush=True)
            measure_plan(size, workdir)
            sizes.append(size)
    with tempfile.TemporaryDirectory(prefix="gsc-agency-run-") as tmp:
        days = load_config(_write_config(Path(tmp), scenario(1, 1))).backfill_days_per_run
        full_run = Size(SIZES[0], sizes[0].load, days=days)
        print(f"agency {SIZES[0]} properties: backfill plan ({days} days)", flush=True)
        measure_plan(full_run, Path(tmp))
    with tempfile.TemporaryDirectory(prefix="gsc-agency-slice-") as tmp:
        print(f"agency slice: 1 day of {SLICE_PROPERTIES} properties, executed", flush=True)
        sl = measure_slice(Path(tmp))
    load_after = os.getloadavg()[0]
    path = out / "agency.md"
    path.write_text(report(sizes, full_run, sl, (load_before, load_after)))
    print(f"report: {path}")
    return 0 if sl.succeeded and not any(s.error for s in [*sizes, full_run]) else 1


def _plan_cpu(size: Size) -> float:
    return size.cpu_by_role.get("daemon", 0.0) + size.cpu_by_role.get("code server", 0.0)


def report(sizes: list[Size], full_run: Size, sl: Slice, load: tuple[float, float]) -> str:
    def per(value: float, n: int, scale: float = 1.0, fmt: str = ".1f") -> str:
        return f"{value * scale / n:{fmt}}"

    biggest = sizes[-1]

    def total(s: Size) -> float:
        return s.load["build"] + s.load["snapshot"]

    rows_load = [
        f"| {s.properties} | {s.load['assets']:,} | {s.load['checks']:,} | "
        f"{s.load['build']:.2f} | {s.load['snapshot']:.2f} | {total(s):.2f} "
        f"| {per(total(s), s.properties, 1000)} | "
        f"{s.load['snapshot_bytes'] / 2**20:.1f} | {s.load['rss_mb']:.0f} |"
        for s in sizes
    ]
    rows_plan = [
        f"| {s.properties} | {s.days} | {s.requests:,} | {s.runs} | {s.steps:,} | "
        f"{s.planned_events:,} | {s.submit_seconds:.1f} | {s.cpu_by_role.get('daemon', 0):.1f} | "
        f"{s.cpu_by_role.get('code server', 0):.1f} | "
        f"{per(_plan_cpu(s), s.properties * s.days, 1000, '.1f')} |"
        + (f" {s.error} |" if s.error else " |")
        for s in [*sizes, full_run]
    ]
    events_per_step = sl.events / max(1, sl.steps)
    cpu_per_step = sl.run_cpu / max(1, sl.steps)
    # Planning cost per property = fixed + per day (two measured points at the smallest size).
    small = sizes[0]
    per_prop = [(_plan_cpu(x) / x.properties, x.planned_events / x.properties, x.days)
                for x in (small, full_run)]  # fmt: skip
    (c1, e1, d1), (c2, e2, d2) = per_prop
    cpu_day, events_day = (c2 - c1) / (d2 - d1), (e2 - e1) / (d2 - d1)
    cpu_fixed, events_fixed = c1 - d1 * cpu_day, e1 - d1 * events_day
    runs = -(-PLAN_DAYS // full_run.days)
    n = biggest.properties
    plan_cpu = n * runs * (cpu_fixed + full_run.days * cpu_day)
    plan_events = n * runs * (events_fixed + full_run.days * events_day)
    steps = runs * n * 3
    requests = n * 3 * PLAN_DAYS
    lines = [
        "# Benchmark: agency (many properties, 16-month backfill plan)",
        "",
        "Produced by `gsc-pipeline bench --size agency` (see `gsc_pipeline/tools/bench/agency.py`; "
        f"{len(os.sched_getaffinity(0))} cores; 1-min load average {load[0]:.1f} before and "
        f"{load[1]:.1f} after, other work included). Properties have ~300 page x query rows "
        "a day: one page (one request) per report and day; reports page_query + page + site.",
        "",
        "## 1. Definitions load (fresh process, as a code server loads them)",
        "",
        "| properties | assets | checks | Definitions s | repository snapshot s | total s | "
        "ms per property | snapshot MB | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows_load,
        "",
        "Importing dagster itself (not in the totals): "
        + ", ".join(f"{s.load['import_dagster']:.2f} s" for s in sizes) + ".",
        "",
        "## 2. Backfill plan, submitted by the daemon",
        "",
        "Launched through GraphQL as from the UI; the real daemon submits the runs into a held "
        "queue (max_concurrent_runs 0: nothing executes). Event-log rows are those written while "
        "planning (ASSET_MATERIALIZATION_PLANNED, one per asset and day, and the run's own).",
        "",
        "| properties | days | API requests | runs | steps | event-log rows | "
        "daemon start → last run created s | daemon CPU s | code server CPU s | "
        "CPU ms per property-day | |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows_plan,
        "",
        f"Per property, planning costs {cpu_fixed * 1000:.0f} ms + {cpu_day * 1000:.1f} ms per "
        f"day of CPU and {events_fixed:.1f} + {events_day:.2f} per day event-log rows (from the "
        f"{small.days}- and {full_run.days}-day plans at {small.properties} properties). The "
        f"**16-month plan at {n} properties**: {requests:,} API requests, {runs} runs of "
        f"{full_run.days} days, {steps:,} steps, ~{plan_events:,.0f} event-log rows written "
        f"while planning, ~{plan_cpu:,.0f} CPU s of daemon + code server to submit it.",
        "",
        f"## 3. Executed slice: 1 day of {sl.properties} properties",
        "",
        f"{'Succeeded' if sl.succeeded else '**FAILED**'}: {sl.steps} steps in one run, "
        f"{sl.requests} API requests, {sl.events:,} event-log rows ({events_per_step:.1f} per "
        f"step), run worker {sl.run_cpu:.1f} CPU s ({cpu_per_step * 1000:.0f} ms per step), "
        f"{sl.run_seconds:.1f} s in the run ({sl.run_seconds / max(1, sl.steps) * 1000:.0f} ms "
        "per step, one step after another in the run's process).",
        "",
        f"Scaled to the 16-month plan at {n} properties ({steps:,} steps): "
        f"~{events_per_step * steps:,.0f} event-log rows and ~{cpu_per_step * steps:,.0f} "
        "run-worker CPU s of per-step overhead, besides one materialization per asset and day "
        f"({n * 3 * PLAN_DAYS:,}) and the fetching: {requests:,} requests ÷ 16/s budget = "
        f"{requests / 16 / 3600:.1f} h per credential at Google's quota.",
        "",
    ]
    return "\n".join(lines)
