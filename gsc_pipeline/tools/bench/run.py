"""The measurements of `gsc-pipeline bench` (see `command.py` for what and why)."""

from __future__ import annotations

import datetime as dt
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
from dagster._core.events import DagsterEventType
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

from gsc_pipeline.config import PipelineConfig
from gsc_pipeline.emulator.testing import EmulatorHandle
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.gsc.client import API_ENDPOINT_ENV
from gsc_pipeline.instance import init_instance
from gsc_pipeline.reports import PAGE, PAGE_QUERY
from gsc_pipeline.sync import sync_days
from gsc_pipeline.sync.fetch import Probes
from gsc_pipeline.tools.bench.floor import Floor, cpu_seconds, reference_path
from gsc_pipeline.tools.bench.sampler import (
    TreeSampler,
    analyzes_so_far,
    machine_steal_and_busy,
    postgres_server_cpu,
    process_cpu,
)
from gsc_pipeline.tools.bench.scenario import Scenario, ScenarioFiles, environ_set
from gsc_pipeline.tools.demo import dagster_daemon, emulator_process
from gsc_pipeline.tools.launch import BACKFILL_TAG, launch_backfill, wait_for_backfill
from gsc_pipeline.warehouse import WAREHOUSE_URL_ENV, Warehouse, duckdb_writer, open_warehouse

_DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@dataclass
class Sequential:
    days: int
    seconds: float
    requests: int
    rows: int
    cpu_seconds: float
    # The warehouse's one-time setup before it (its driver's import, first connection, the
    # report tables): CPU s, outside `cpu_seconds` as the reference path keeps its DDL out.
    setup_cpu_seconds: float = 0.0

    @property
    def cpu_us_per_row(self) -> float:
        return self.cpu_seconds / max(1, self.rows) * 1e6

    @property
    def cpu_us_per_row_with_setup(self) -> float:
        return (self.cpu_seconds + self.setup_cpu_seconds) / max(1, self.rows) * 1e6


# What a run did, for splitting CPU and RSS: the backfill's fetch runs, the lifetime-stats
# refreshes the automation sensor starts (by the asset in the run's selection), anything else.
FETCH_KIND = "backfill fetch"
STATS_KIND = "url_lifetime_stats"
OTHER_KIND = "other"


@dataclass
class RunInfo:
    run_id: str
    backfill: bool
    status: str
    created: float
    started: float | None
    ended: float | None
    launching: float | None
    first_step: float | None
    events: int
    pid: int | None
    cpu_seconds: float = 0.0
    peak_rss: int = 0
    peak_private: int = 0
    kind: str = OTHER_KIND
    # What a run outside the backfill was: its assets and what launched it (a sensor's name).
    what: str = ""


def _run_what(run: Any) -> str:
    keys = sorted(key.to_user_string() for key in (run.asset_selection or ()))
    shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    launcher = run.tags.get("dagster/sensor_name") or run.tags.get("dagster/schedule_name")
    partitions = run.tags.get("dagster/partition") or "..".join(
        filter(None, (run.tags.get("dagster/asset_partition_range_start"),
                      run.tags.get("dagster/asset_partition_range_end")))
    )  # fmt: skip
    return "; ".join(
        filter(None, (shown or run.job_name, partitions, launcher and f"launched by {launcher}"))
    )


def _run_kind(run: Any, backfill_id: str) -> str:
    selection = {key.to_user_string() for key in (run.asset_selection or ())}
    if STATS_KIND in selection:
        return STATS_KIND
    if run.tags.get(BACKFILL_TAG) == backfill_id:
        return FETCH_KIND
    return OTHER_KIND


@dataclass
class Lifetime:
    full_seconds: float
    incremental_seconds: float
    full_rows_read: int
    incremental_rows_read: int


@dataclass
class SmallBackfill:
    """A 1-day backfill of one property launched while the daemon runs, as from the UI."""

    site_url: str
    day: dt.date
    succeeded: bool
    # Launch -> first run created: the daemon's backfill tick (up to 30 s), not the pipeline.
    pickup_seconds: float
    # First run created -> last run ended: what the user waits for once the daemon has it.
    after_pickup_seconds: float
    runs: int
    # Its first run, whose phases the report shows (queue, process start, steps).
    first_run: RunInfo | None = None


@dataclass
class BenchResult:
    scenario: Scenario
    warehouse: str
    config: PipelineConfig
    pool_limits: dict[str, int]
    sequential: Sequential
    # `sync_days` as the fetch step runs it (days in flight, group commit), no Dagster.
    path: Sequential
    floor: Floor
    succeeded: bool
    backfill_launched: float
    # CPU by role the daemon's tree spent from its start until it had settled, before the
    # backfill was launched: not in `cpu_by_role`.
    startup_cpu_by_role: dict[str, float]
    runs: list[RunInfo]
    emulator: dict[str, Any]
    cpu_by_role: dict[str, float]
    cpu_rusage_children: float
    rows_written: int
    lifetime: Lifetime | None
    lifetime_error: str | None = None
    # 1-minute load average before and after the backfill: other work on a shared machine
    # takes cores from the pipeline, and the report says so.
    load: tuple[float, float] = (0.0, 0.0)
    # The machine's CPU seconds over the backfill that a hypervisor gave to others while its
    # cores had work (steal), and the seconds they ran; None where the OS does not say.
    steal: tuple[float, float] | None = None
    small: SmallBackfill | None = None
    # A PostgreSQL warehouse's server CPU over the backfill (same window as `cpu_by_role`), when
    # the server runs on this machine: not the pipeline's, but on the same cores.
    postgres_server_cpu: float | None = None
    # ANALYZEs of the warehouse's tables over the backfill (PostgreSQL).
    postgres_analyzes: int | None = None
    # The largest peak RSS of each role's processes (the code server and the run fork server
    # live through the backfill; run workers come and go).
    peak_rss_by_role: dict[str, int] = field(default_factory=dict)
    cpu_count: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    # The emulator's warm-up (`warm_emulator`) and its CPU over the backfill (Google's side).
    warmup: Warmup | None = None
    emulator_cpu: float | None = None


@dataclass
class Warmup:
    requests: int
    rows: int
    wall_seconds: float
    emulator_cpu: float | None
    reports_built: int


def warm_emulator(
    scenario: Scenario, config: PipelineConfig, emu: EmulatorHandle, workdir: Path
) -> Warmup:
    """Every report the bench will ask for built once, before anything is measured.

    On Google's side building a day's report is Google's CPU, not this machine's; the emulator
    builds one on its first page (~6 µs a row: ~26 CPU s over the standard bench's backfill, on
    the same two cores as the pipeline) and then serves it from its cache (~4 ms a page). So the
    bench first fetches every day of every property and report as the backfill will
    (`sync_days`, the backfill's runs of days, each property's reports sharing their probe), at
    no latency and no quota, into a scratch warehouse that is then deleted; the measured work
    then meets reports already built, as it would meet Google's. Latency and quotas are then
    restored, buckets refilled and the counters zeroed. A request the backfill makes that this
    did not (a shard split another way) is built when it comes, as before.
    """
    saved = emu.config
    emu.set_latency(base_ms=0, per_row_us=0)
    unlimited = 10**9
    emu.set_quotas(site_qpm=unlimited, user_qpm=unlimited, project_qpm=unlimited)
    cpu0, t0 = process_cpu(emu.pid), time.perf_counter()
    client = GscClient(emu.base_url, None, qpm_budget=unlimited)
    scratch = workdir / "warmup.duckdb"
    warehouse = open_warehouse(f"duckdb:///{scratch}")
    concurrency = config.credentials["default"].step_concurrency
    rows, days, built = 0, scenario.day_list, 0
    try:
        warehouse.ensure_schema([r for p in config.properties for r in p.report_objects()])
        for start in range(0, len(days), config.backfill_days_per_run):
            chunk = days[start : start + config.backfill_days_per_run]
            rows += _sync_every_report(client, warehouse, config, chunk, "bench-warmup",
                                       concurrency)  # fmt: skip
        built = emu.stats()["reports_built"]
    finally:
        _end_duckdb_writer()
        for path in scratch.parent.glob(f"{scratch.name}*"):
            path.unlink()
        emu.set_latency(**saved["latency"])
        emu.set_quotas(**saved["quotas"])
        emu.reset_stats()
    cpu1 = process_cpu(emu.pid)
    return Warmup(client.stats.api_calls, rows, time.perf_counter() - t0,
                  None if cpu0 is None or cpu1 is None else cpu1 - cpu0, built)


def _sync_every_report(
    client: GscClient, warehouse: Warehouse, config: PipelineConfig, days: list[dt.date],
    run_id: str, concurrency: int,
) -> int:  # fmt: skip
    """`sync_days` of `days` for every property and report, as their steps run it; rows stored."""
    memory_cap = config.credentials["default"].step_memory_mb << 20
    rows = 0
    for prop in config.properties:
        probes = Probes()  # a property's reports share their probe, as in its step
        for report in prop.report_objects():
            for result in sync_days(client, warehouse, prop.site_url, report, days, run_id=run_id,
                                    concurrency=concurrency, memory_cap_bytes=memory_cap,
                                    probes=probes):  # fmt: skip
                rows += result.rows
    return rows


def sync_slice(
    scenario: Scenario, config: PipelineConfig, endpoint: str, warehouse_url: str,
    concurrency: int,
) -> Sequential:  # fmt: skip
    """`sync_days` in this process over the first days of every property and report.

    concurrency 1 is the sequential baseline (one request at a time, a transaction per day);
    the step's concurrency is the fetch -> parse -> write path as a step runs it, no Dagster.
    The warehouse's one-time setup (its driver's import, first connection, CREATE TABLE) is
    measured apart, as the reference path keeps its tables' DDL out of its figure: a cost per
    process, not per row (0.07-0.11 CPU s on DuckDB, 0.23-0.35 µs a row of this slice; it stays in
    the all-in figure, as every run pays it). CPU includes DuckDB's writer's (`cpu_seconds`).
    """
    credential = config.credentials["default"]
    client = GscClient(endpoint, None, qpm_budget=credential.qpm_budget)
    warehouse = open_warehouse(warehouse_url)
    days = scenario.day_list[: scenario.sequential_days]
    setup0 = cpu_seconds(warehouse)
    warehouse.ensure_schema([r for p in config.properties for r in p.report_objects()])
    setup = cpu_seconds(warehouse) - setup0
    cpu0, t0 = cpu_seconds(warehouse), time.perf_counter()
    rows = _sync_every_report(client, warehouse, config, days, "bench-slice", concurrency)
    return Sequential(len(days), time.perf_counter() - t0, client.stats.api_calls, rows,
                      cpu_seconds(warehouse) - cpu0, setup)


def _end_duckdb_writer(timeout: float = 120) -> None:
    """Let DuckDB's writer process, which the measurements above started, end. The backfill's
    processes (another DAGSTER_HOME) start their own, which the bench counts from its start;
    this one, idle, would only add its memory to the report's "DuckDB writer" role."""
    pid = duckdb_writer.writer_pid(start=False)
    duckdb_writer.close_idle_connections()
    if pid is None:
        return
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.TimeoutExpired:
        print(f"  DuckDB's writer ({pid}) serves another process too: the backfill shares it, "
              "and only its CPU from now on is counted", flush=True)


def _rusage_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_infos(instance: dg.DagsterInstance, backfill_id: str) -> list[RunInfo]:
    infos = []
    for record in instance.get_run_records():
        run = record.dagster_run
        logs = instance.all_logs(run.run_id)
        first: dict[DagsterEventType, Any] = {}
        for entry in logs:
            if entry.dagster_event and entry.dagster_event.event_type not in first:
                first[entry.dagster_event.event_type] = entry
        step = first.get(DagsterEventType.STEP_START)
        launching = first.get(DagsterEventType.RUN_STARTING)
        infos.append(RunInfo(
            run_id=run.run_id,
            backfill=run.tags.get(BACKFILL_TAG) == backfill_id,
            status=run.status.value,
            created=record.create_timestamp.timestamp(),
            started=record.start_time,
            ended=record.end_time,
            launching=launching.timestamp if launching else None,
            first_step=step.timestamp if step else None,
            events=len(logs),
            # Steps run in the run's own process (in_process executor): its pid.
            pid=step.dagster_event.pid if step else None,
            kind=_run_kind(run, backfill_id),
            what=_run_what(run),
        ))  # fmt: skip
    return sorted(infos, key=lambda r: r.created)


def _wait_settled(
    instance: dg.DagsterInstance, sampler: TreeSampler, started: float, timeout: float = 120.0
) -> float:
    """Seconds until the daemon started at `started` has settled: each of its daemons has
    reported in (its first iteration, the code server loaded), then its process tree used
    under 5% of a core over two seconds in a row. Gives up after `timeout` (noted, not fatal:
    the bench then counts what was still settling in the backfill's CPU)."""
    deadline = time.monotonic() + timeout
    required = set(instance.get_required_daemon_types())
    quiet = 0
    while time.monotonic() < deadline:
        beats = instance.get_daemon_heartbeats()
        if required <= {kind for kind, beat in beats.items() if beat.timestamp >= started}:
            before = sampler.total_cpu()
            time.sleep(1.0)
            sampler.sample()
            quiet = quiet + 1 if sampler.total_cpu() - before < 0.05 else 0
            if quiet >= 2:
                return time.time() - started
        else:
            time.sleep(0.5)
    print(f"  the daemon had not settled after {timeout:.0f} s; measuring anyway", flush=True)
    return time.time() - started


def _wait_idle(instance: dg.DagsterInstance, timeout: float) -> None:
    """Let runs still going (a lifetime-stats refresh) finish before the daemon stops."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r.status in _DONE for r in instance.get_runs(filters=RunsFilter())):
            return
        time.sleep(1)


def lifetime_refresh(
    scenario: Scenario, config: PipelineConfig, endpoint: str, warehouse_url: str
) -> Lifetime:
    """A full recompute over the whole backfill, then one new day and an incremental refresh."""
    from gsc_pipeline import lifetime

    warehouse = open_warehouse(warehouse_url)
    sites = [p.site_url for p in config.properties]
    t0 = time.perf_counter()
    full = lifetime.full_recompute(warehouse, sites)
    full_seconds = time.perf_counter() - t0
    client = GscClient(endpoint, None, qpm_budget=config.credentials["default"].qpm_budget)
    for site in sites:
        for report in (PAGE, PAGE_QUERY):
            sync_days(client, warehouse, site, report, [scenario.new_day], run_id="bench-new-day")
    t0 = time.perf_counter()
    incremental = lifetime.refresh(warehouse, sites)
    return Lifetime(full_seconds, time.perf_counter() - t0, full.source_rows_read,
                    incremental.source_rows_read)


def measure(
    scenario: Scenario, files: ScenarioFiles, warehouse_url: str, warehouse: str, workdir: Path,
    warm: bool = True,
) -> BenchResult:  # fmt: skip
    config, emulator_file, home = files.config, files.emulator_file, files.home
    print(f"bench {scenario.name} ({warehouse}) in {workdir}", flush=True)
    with emulator_process("--config", str(emulator_file), log=workdir / "emulator.log") as emu:
        warmup = None
        if warm:
            print("  warming the emulator: every report the bench asks for, built once",
                  flush=True)  # fmt: skip
            warmup = warm_emulator(scenario, config, emu, workdir)
            print(f"  warm: {warmup.requests:,} requests, {warmup.rows:,} rows in "
                  f"{warmup.wall_seconds:.0f} s", flush=True)
        slice_days = scenario.day_list[: scenario.sequential_days]
        step_concurrency = config.credentials["default"].step_concurrency
        print(f"  fetch -> parse -> write path, sequential baseline and reference path: "
              f"{len(slice_days)} day(s)", flush=True)
        path = sync_slice(scenario, config, emu.base_url, warehouse_url, step_concurrency)
        sequential = sync_slice(scenario, config, emu.base_url, warehouse_url, 1)
        floor = reference_path(config, emu.base_url, warehouse_url, slice_days)
        _end_duckdb_writer()
        emu.reset_stats()
        emu.reset_quotas()
        env = {"DAGSTER_HOME": str(home), API_ENDPOINT_ENV: emu.base_url,
               WAREHOUSE_URL_ENV: warehouse_url}
        with environ_set(env):
            limits = init_instance(home, config)
            from gsc_pipeline.defs.keys import fetch_asset_keys

            keys = fetch_asset_keys(config)
            partition_keys = [d.isoformat() for d in scenario.day_list]
            tick = scenario.daemon_tick_seconds
            with (
                dg.DagsterInstance.from_config(str(home)) as instance,
                dagster_daemon(home, workdir / "daemon.log", tick) as daemon,
            ):
                daemon_started = time.time()
                with TreeSampler(daemon.pid) as sampler:
                    # The deployment first starts and settles, as a user's is running when they
                    # launch a backfill: its start (imports, loading the code, first ticks) is no
                    # backfill's cost, and is reported apart.
                    settle_seconds = _wait_settled(instance, sampler, daemon_started)
                    startup_cpu = sampler.mark()
                    cpu_before = _rusage_children()
                    load_before = os.getloadavg()[0]
                    steal_before = machine_steal_and_busy()
                    server_before = postgres_server_cpu() if warehouse == "postgres" else None
                    emulator_before = process_cpu(emu.pid)
                    analyzes_before = (
                        analyzes_so_far(warehouse_url) if warehouse == "postgres" else 0
                    )
                    launched = time.time()
                    backfill_id = launch_backfill(instance, home / "workspace.yaml", keys,
                                                  partition_keys, title=f"bench {scenario.name}")
                    print(f"  backfill {backfill_id}: {len(keys)} assets x {len(partition_keys)} "
                          f"days, pool limits {limits}; the daemon settled in "
                          f"{settle_seconds:.0f} s ({sum(startup_cpu.values()):.1f} CPU s)",
                          flush=True)
                    progress = wait_for_backfill(
                        instance, backfill_id, timeout=3600,
                        on_progress=lambda p: print(
                            f"  {p.status.lower()}: {p.runs_done}/{p.runs_total} runs",
                            flush=True),
                    )
                    _wait_idle(instance, timeout=180)
                    # The backfill's numbers, before the small backfill adds to them.
                    cpu_by_role = sampler.cpu_by_role()
                    rss_by_role = sampler.peak_rss_by_role()
                    server_cpu = analyzes = None
                    if server_before is not None:
                        server_cpu = (postgres_server_cpu() or server_before) - server_before
                    if warehouse == "postgres":
                        analyzes = analyzes_so_far(warehouse_url) - analyzes_before
                    emulator_after = process_cpu(emu.pid)
                    cpu_children = _rusage_children() - cpu_before
                    load_after = os.getloadavg()[0]
                    steal_after = machine_steal_and_busy()
                    stats = emu.stats()
                    runs = _run_infos(instance, backfill_id)
                    small = small_backfill(instance, home, config, scenario, warehouse_url)
                    _wait_idle(instance, timeout=180)
        for run in runs:
            sample = next((p for p in sampler.processes.values() if p.pid == run.pid), None)
            if sample:
                run.cpu_seconds, run.peak_rss = sample.cpu_seconds, sample.peak_rss
                run.peak_private = sample.peak_private
        rows = _rows_written(warehouse_url, config) - small.rows
        lifetime, error = None, None
        try:
            lifetime = lifetime_refresh(scenario, config, emu.base_url, warehouse_url)
        except ImportError as exc:
            error = f"not available yet ({exc})"
    return BenchResult(
        scenario=scenario, warehouse=warehouse, config=config, pool_limits=limits,
        sequential=sequential, path=path, floor=floor, succeeded=progress.succeeded,
        backfill_launched=launched, startup_cpu_by_role=startup_cpu, runs=runs, emulator=stats,
        cpu_by_role=cpu_by_role, cpu_rusage_children=cpu_children, rows_written=rows,
        lifetime=lifetime, lifetime_error=error, load=(load_before, load_after),
        steal=None if steal_before is None or steal_after is None else (
            steal_after[0] - steal_before[0], steal_after[1] - steal_before[1]),
        small=small.result, postgres_server_cpu=server_cpu, postgres_analyzes=analyzes,
        peak_rss_by_role=rss_by_role, warmup=warmup,
        emulator_cpu=None if emulator_before is None or emulator_after is None
        else emulator_after - emulator_before,
    )  # fmt: skip


@dataclass
class _Small:
    result: SmallBackfill
    rows: int


def small_backfill(
    instance: dg.DagsterInstance, home: Path, config: PipelineConfig, scenario: Scenario,
    warehouse_url: str,
) -> _Small:  # fmt: skip
    """One day of the largest property, launched as from the UI while the daemon runs."""
    from gsc_pipeline.defs.schedules import property_asset_keys

    prop = next(p for p in config.properties if p.site_url == scenario.properties[-1][0])
    day = scenario.small_backfill_day
    launched = time.time()
    keys = property_asset_keys(config, prop)
    backfill_id = launch_backfill(instance, home / "workspace.yaml", keys, [day.isoformat()],
                                  title="bench 1-day backfill")
    print(f"  1-day backfill {backfill_id}: {prop.site_url} {day}", flush=True)
    progress = wait_for_backfill(instance, backfill_id, timeout=600, poll_seconds=0.2)
    runs = [r for r in _run_infos(instance, backfill_id) if r.backfill]
    created = min((r.created for r in runs), default=launched)
    ended = max((r.ended or created for r in runs), default=created)
    warehouse = open_warehouse(warehouse_url)
    rows = sum(
        int(warehouse.read_sql(f"SELECT count(*) AS n FROM {r.table} WHERE site_url = ? AND "
                               "date = ?", (prop.site_url, day))["n"].iloc[0])
        for r in prop.report_objects()
    )  # fmt: skip
    return _Small(SmallBackfill(
        prop.site_url, day, progress.succeeded, created - launched, ended - created, len(runs),
        first_run=min(runs, key=lambda r: r.created, default=None),
    ), rows)  # fmt: skip


def _rows_written(warehouse_url: str, config: PipelineConfig) -> int:
    warehouse = open_warehouse(warehouse_url)
    tables = {r.table for p in config.properties for r in p.report_objects()}
    return sum(int(warehouse.read_sql(f"SELECT count(*) AS n FROM {t}")["n"].iloc[0])
               for t in sorted(tables))


def utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M:%S")
