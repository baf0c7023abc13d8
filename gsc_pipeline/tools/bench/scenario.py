"""`gsc-pipeline bench`: sequential fetching vs the pipeline as users run it vs the lower bound.

One invocation, in a fresh temporary Dagster home and warehouse, against the emulator in its own
process (so its CPU is not counted as ours):

1. the sequential baseline: `sync_days` in this process, one request at a time, on a slice of
   the days (extrapolated linearly); its CPU time per row is the fetch -> parse -> write cost;
2. the pipeline: a backfill launched through GraphQL `launchPartitionBackfill` (as the UI does)
   and run by the real daemon with the default pool limit and run batching, while a sampler
   follows the daemon's process tree (daemon, code server, run workers) for CPU and RSS;
3. lifetime stats: a full recompute, then one new day and an incremental refresh.

The scenario is fixed in code (`SCENARIOS`) and printed in the report. Results go to
`<out>/<size>-<warehouse>.md` and `.png` (see `bench_report`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from gsc_pipeline.config import CONFIG_ENV, GOOGLE_QPM_QUOTA, PipelineConfig, load_config
from gsc_pipeline.reports import DEFAULT_REPORTS

# The emulated "today" is fixed so every run serves identical data (the emulator's data depends
# only on seed, site, search type and date).
TODAY = dt.date(2026, 6, 30)
FINAL_LAG_DAYS = 3
SMALL = "sc-domain:small.example"
MEDIUM = "sc-domain:medium.example"
LARGE = "sc-domain:large.example"


@dataclass(frozen=True)
class Scenario:
    name: str
    days: int
    # Days of the sequential baseline (per property and report), extrapolated to `days`.
    sequential_days: int
    # (site_url, page x query rows per day, distinct pages)
    properties: tuple[tuple[str, int, int], ...] = (
        (SMALL, 500, 80),
        (MEDIUM, 8_000, 1_200),
        # Over the 50k cap: page_query needs 3 requests a day (25k, 25k, then an empty page).
        (LARGE, 60_000, 6_000),
    )
    latency_base_ms: float = 500
    latency_per_row_us: float = 40
    jitter_sigma: float = 0.3
    quota_qpm: int = GOOGLE_QPM_QUOTA
    budget_fraction: float = 0.8
    # Emulator time_scale: latency / s and quota windows / s; the pipeline's quota x s with it.
    time_scale: float = 1.0
    # None: the real 30 s backfill tick; tests and smoke shorten it.
    daemon_tick_seconds: int | None = None
    seed: int = 5

    @property
    def budget_qpm(self) -> float:
        """The budget in emulated minutes (what the report compares with the quota)."""
        return self.quota_qpm * self.budget_fraction

    @property
    def budget_per_real_second(self) -> float:
        return self.budget_qpm * self.time_scale / 60

    @property
    def day_list(self) -> list[dt.date]:
        # Ends two days before the last final day, which is kept free for the "new day" of the
        # incremental lifetime-stats measurement.
        last = TODAY - dt.timedelta(days=FINAL_LAG_DAYS + 2)
        return [last - dt.timedelta(days=i) for i in reversed(range(self.days))]

    @property
    def new_day(self) -> dt.date:
        return self.day_list[-1] + dt.timedelta(days=1)

    @property
    def small_backfill_day(self) -> dt.date:
        """The last final day: in neither the backfill nor the lifetime stats' new day."""
        return TODAY - dt.timedelta(days=FINAL_LAG_DAYS)

    def emulator_config(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "today": TODAY.isoformat(),
            "time_scale": self.time_scale,
            "max_rows_per_day": 50_000,
            "latency": {
                "base_ms": self.latency_base_ms,
                "per_row_us": self.latency_per_row_us,
                "jitter_sigma": self.jitter_sigma,
            },
            "quotas": {"site_qpm": self.quota_qpm, "user_qpm": self.quota_qpm},
            "properties": [
                {"site_url": site, "page_query_rows_per_day": rows, "pages": pages,
                 "search_types": ["web"]}
                for site, rows, pages in self.properties
            ],
        }  # fmt: skip

    def pipeline_config(self) -> dict[str, Any]:
        """Only what the scenario fixes; pool limit, step concurrency and days per run stay at
        the defaults users get (config.py), which is what the bench measures."""
        return {
            "start_date": self.day_list[0].isoformat(),
            "credentials": {
                "default": {
                    "kind": "none",
                    # Quota windows run time_scale x faster, so the budget per real minute too.
                    "qpm_quota": int(self.quota_qpm * self.time_scale),
                    "budget_fraction": self.budget_fraction,
                }
            },
            "properties": [
                # The fetch backfill alone: no sitemaps snapshot in the measured runs.
                {"site_url": site, "reports": [r.name for r in DEFAULT_REPORTS], "sitemaps": False}
                for site, _, _ in self.properties
            ],
        }


SCENARIOS = {
    "standard": Scenario("standard", days=120, sequential_days=4),
    # Same shape, small enough for CI: 3 days, latency and quota windows 10x faster.
    "smoke": Scenario("smoke", days=3, sequential_days=1, time_scale=10.0, daemon_tick_seconds=2),
}


@dataclass
class ProcessSample:
    pid: int
    role: str
    cmdline: str
    cpu_seconds: float = 0.0
    peak_rss: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0


@dataclass
class TreeSampler:
    """Follows a process tree (children come and go) and keeps each process's CPU and peak RSS.

    psutil reads /proc, so a process's last sample is up to `interval` old when it exits: the
    CPU it spends in its final `interval` is missed (at most 0.5 s per run process).
    """

    root_pid: int
    interval: float = 0.5
    processes: dict[tuple[int, float], ProcessSample] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        now = time.time()
        for proc in procs:
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    cpu = proc.cpu_times()
                    rss = proc.memory_info().rss
                    entry = self.processes.get(key)
                    if entry is None:
                        cmd = " ".join(proc.cmdline())
                        entry = self.processes[key] = ProcessSample(
                            proc.pid, _role(proc.pid == self.root_pid, cmd), cmd, first_seen=now
                        )
            except psutil.Error:
                continue
            entry.cpu_seconds = max(entry.cpu_seconds, cpu.user + cpu.system)
            entry.peak_rss = max(entry.peak_rss, rss)
            entry.last_seen = now

    def cpu_by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.processes.values():
            out[p.role] = out.get(p.role, 0.0) + p.cpu_seconds
        return out


def _role(is_root: bool, cmdline: str) -> str:
    if is_root:
        return "daemon"
    # The code server starts each run in a multiprocessing child (DefaultRunLauncher).
    if "spawn_main" in cmdline or "execute_run" in cmdline:
        return "run worker"
    if "api grpc" in cmdline:
        return "code server"
    if "watch_orphans" in cmdline or cmdline.startswith("tail "):
        return "compute-log capture"
    return "other"


@contextlib.contextmanager
def environ_set(values: dict[str, str]) -> Iterator[None]:
    """The daemon and the in-process Definitions read these; restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _warehouse_url(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh DuckDB file, or a fresh PostgreSQL database dropped afterwards."""
    if kind == "duckdb":
        yield f"duckdb:///{workdir / 'warehouse.duckdb'}"
        return
    import psycopg2

    admin = os.environ.get("GSC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"gsc_bench_{uuid.uuid4().hex[:10]}"
    con = psycopg2.connect(admin)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        con.close()


def run_bench(
    size: str = "smoke", warehouse: str = "duckdb", out: Path = Path("bench-report")
) -> int:
    """Measure, write `<out>/<size>-<warehouse>.md` and `.png`; 0 when the backfill succeeded."""
    from gsc_pipeline.bench_report import write_report
    from gsc_pipeline.bench_run import measure

    scenario = SCENARIOS[size]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gsc-bench-") as tmp:
        workdir = Path(tmp)
        config_file = workdir / "gsc.yaml"
        config_file.write_text(yaml.safe_dump(scenario.pipeline_config(), sort_keys=False))
        config: PipelineConfig = load_config(config_file)
        with _warehouse_url(warehouse, workdir) as url, environ_set({CONFIG_ENV: str(config_file)}):
            result = measure(scenario, config, url, warehouse, workdir)
    stem = f"{scenario.name}-{warehouse}"
    md = write_report(result, out / f"{stem}.md", out / f"{stem}.png")
    print(f"report: {md} (chart {out / f'{stem}.png'})")
    return 0 if result.succeeded else 1
