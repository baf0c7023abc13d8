"""`gsc-pipeline multihost`: run workers on separate hosts share one pool and one quota budget.

Each "host" is a Linux network namespace (`ip netns`, a veth pair into one bridge, so each has
its own IP address and loopback) running a Dagster run of the fetch job in its own process.
They share nothing but PostgreSQL (instance storage: runs, event log, pool slots; and the
warehouse) and the API endpoint, both reached over the bridge, as separate machines would.
The emulator's statistics (by peer address: one "user" per host) show what the API saw:
- peak requests in flight ≤ pool limit x step concurrency (a step holds a pool slot while it
  fetches; without a shared pool each host would claim its own slots);
- the busiest window of all hosts together ≤ the budget (+ the limiter's burst of 2): every
  request takes a token from the credential's one bucket, a row in the PostgreSQL warehouse
  (`gsc.rate_limit.PostgresStore`), and zero quota rejections;
- fetch steps at once, all hosts (step start/end events) ≤ the pool limit: the instance's
  event log claims pool slots atomically (`instance/storage.py`).
Needs root (network namespaces) and a PostgreSQL server on 127.0.0.1 (GSC_BENCH_POSTGRES_URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

BRIDGE = "gscmh0"
HOST_IP = "10.211.0.1"
PREFIX = 24
POSTGRES_ADMIN_ENV = "GSC_BENCH_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
TIME_SCALE = 10.0
# RateLimiter's default burst: a bucket may admit this many requests back to back.
LIMITER_BURST = 2


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here (not root, no `ip`, or no kernel support)."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def netns_unavailable_reason() -> str | None:
    """None when `ip netns add` and a veth pair work here; otherwise why not."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"gscprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
        try:
            _ip("link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b")
            _ip("link", "del", f"{name}a")
        finally:
            _ip("netns", "del", name)
    except subprocess.CalledProcessError as exc:
        return f"`ip {' '.join(exc.cmd[1:])}` failed: {exc.stderr.strip()}"
    return None


@contextlib.contextmanager
def hosts(count: int) -> Iterator[list[tuple[str, str]]]:
    """`count` namespaces bridged to this one: [(namespace, its address)], removed afterwards."""
    tag = os.getpid() % 10_000
    names = [f"gsch{tag}x{i}" for i in range(count)]
    bridge = f"{BRIDGE}{tag}"[:15]
    _ip("link", "add", bridge, "type", "bridge")
    try:
        _ip("addr", "add", f"{HOST_IP}/{PREFIX}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        out = []
        for i, ns in enumerate(names):
            address = f"10.211.0.{10 + i}"
            _ip("netns", "add", ns)
            _ip("link", "add", f"{ns}a"[:15], "type", "veth", "peer", "name", f"{ns}b"[:15])
            _ip("link", "set", f"{ns}a"[:15], "master", bridge, "up")
            _ip("link", "set", f"{ns}b"[:15], "netns", ns)
            _ip("netns", "exec", ns, "ip", "addr", "add", f"{address}/{PREFIX}", "dev",
                f"{ns}b"[:15])  # fmt: skip
            _ip("netns", "exec", ns, "ip", "link", "set", f"{ns}b"[:15], "up")
            _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
            out.append((ns, address))
        yield out
    finally:
        for ns in names:
            subprocess.run(["ip", "link", "del", f"{ns}a"[:15]], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@contextlib.contextmanager
def tcp_forward(listen: tuple[str, int], target: tuple[str, int]) -> Iterator[None]:
    """Forward `listen` to `target` (PostgreSQL listens on loopback only), in a thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def serve() -> asyncio.Server:
        return await asyncio.start_server(handle, *listen)

    server: asyncio.Server | None = None

    def run() -> None:
        nonlocal server
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="pg-forward", daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield
    finally:
        if server is not None:
            loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@contextlib.contextmanager
def databases(admin_url: str, names: list[str]) -> Iterator[None]:
    import psycopg2

    con = psycopg2.connect(admin_url)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            for name in names:
                cur.execute(f"CREATE DATABASE {name}")
        yield
    finally:
        with con.cursor() as cur:
            for name in names:
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        con.close()


@dataclass(frozen=True)
class Plan:
    hosts: int = 3
    days: int = 20
    pool_limit: int = 2
    step_concurrency: int = 2
    # Low enough that the budget binds: 2 steps x 2 in flight at ~50 ms could go 10x faster.
    quota_qpm: int = 60
    budget_fraction: float = 0.8

    @property
    def budget_qpm(self) -> float:
        return self.quota_qpm * self.budget_fraction

    @property
    def budget_limit(self) -> float:
        """Most requests one emulated minute may see: the budget plus the bucket's burst."""
        return self.budget_qpm + LIMITER_BURST


def _configs(plan: Plan, workdir: Path) -> tuple[Path, Path, list[str], list[dt.date]]:
    from gsc_pipeline.reports import DEFAULT_REPORTS
    from gsc_pipeline.tools.bench.scenario import TODAY

    sites = [f"sc-domain:host{i}.example" for i in range(plan.hosts)]
    last = TODAY - dt.timedelta(days=5)
    days = [last - dt.timedelta(days=i) for i in reversed(range(plan.days))]
    emulator = {
        "seed": 11, "today": TODAY.isoformat(), "time_scale": TIME_SCALE,
        "max_rows_per_day": 50_000,
        "latency": {"base_ms": 500, "per_row_us": 40, "jitter_sigma": 0.3},
        "quotas": {"site_qpm": plan.quota_qpm, "user_qpm": plan.quota_qpm},
        "properties": [{"site_url": s, "page_query_rows_per_day": 3000, "pages": 400,
                        "search_types": ["web"]} for s in sites],
    }  # fmt: skip
    pipeline = {
        "start_date": days[0].isoformat(),
        "credentials": {"default": {
            "kind": "none", "qpm_quota": int(plan.quota_qpm * TIME_SCALE),
            "budget_fraction": plan.budget_fraction, "pool_limit": plan.pool_limit,
            "step_concurrency": plan.step_concurrency}},
        "properties": [{"site_url": s, "reports": [r.name for r in DEFAULT_REPORTS]}
                       for s in sites],
    }  # fmt: skip
    emulator_file, config_file = workdir / "emulator.yaml", workdir / "gsc.yaml"
    emulator_file.write_text(yaml.safe_dump(emulator))
    config_file.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return emulator_file, config_file, sites, days


def run_host(site_url: str, first: str, last: str) -> int:
    """In one host: execute the fetch job for one property's assets over [first, last]."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from gsc_pipeline.config import load_config
    from gsc_pipeline.defs.names import FETCH_JOB, HOST_TAG, RANGE_END_TAG, RANGE_START_TAG
    from gsc_pipeline.defs.schedules import property_asset_keys

    config = load_config()
    prop = next(p for p in config.properties if p.site_url == site_url)
    keys = property_asset_keys(config, prop)
    repo = ReconstructableRepository.for_module("gsc_pipeline.definitions", "defs")
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            repo.get_reconstructable_job(FETCH_JOB),
            instance=instance,
            asset_selection=keys,
            tags={RANGE_START_TAG: first, RANGE_END_TAG: last, HOST_TAG: os.uname().nodename},
        )  # fmt: skip
        return 0 if result.success else 1


@dataclass
class Outcome:
    plan: Plan
    hosts: list[tuple[str, str]]
    exit_codes: list[int]
    stats: dict[str, Any]
    rows: int
    peak_steps: int
    window_peak: int
    # The quota buckets every host took its tokens from (rows of the warehouse's bucket table).
    buckets: list[str]

    @property
    def in_flight_limit(self) -> int:
        return self.plan.pool_limit * self.plan.step_concurrency

    @property
    def ok(self) -> bool:
        return (
            not any(self.exit_codes)
            and self.stats["peak_concurrent_requests"] <= self.in_flight_limit
            and self.peak_steps <= self.plan.pool_limit
            and self.window_peak <= self.plan.budget_limit
            and sum(self.stats["quota_rejections"].values()) == 0
            and len(self.stats["peak_qpm_by_user"]) == len(self.hosts)
            and len(self.buckets) == 1 + len(self.hosts)
        )


def _window_peak(per_second: list[list[int]], window: int) -> int:
    """The most requests any `window` consecutive seconds saw, all hosts together."""
    counts = {int(s): n for s, n, _ in per_second}
    if not counts:
        return 0
    return max(sum(counts.get(t - i, 0) for i in range(window))
               for t in range(min(counts), max(counts) + 1))  # fmt: skip


def _peak_fetch_steps(instance: Any) -> int:
    """Most fetch steps running at once across all runs (STEP_START .. STEP_SUCCESS/FAILURE)."""
    from dagster._core.events import DagsterEventType

    edges = []
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None or not (event.step_key or "").startswith("gsc__"):
                continue
            if event.event_type == DagsterEventType.STEP_START:
                edges.append((entry.timestamp, 1))
            elif event.event_type in (DagsterEventType.STEP_SUCCESS,
                                      DagsterEventType.STEP_FAILURE):  # fmt: skip
                edges.append((entry.timestamp, -1))
    level = peak = 0
    for _, step in sorted(edges):
        level += step
        peak = max(peak, level)
    return peak


def prove(plan: Plan, workdir: Path, admin_url: str | None = None) -> Outcome:
    """Run the plan on `plan.hosts` namespaces; `admin_url` creates and drops the databases."""
    reason = netns_unavailable_reason()
    if reason:
        raise NetnsUnavailable(reason)
    import dagster as dg

    from gsc_pipeline.config import CONFIG_ENV, load_config
    from gsc_pipeline.constants import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
    from gsc_pipeline.instance import init_instance
    from gsc_pipeline.tools.bench.scenario import environ_set
    from gsc_pipeline.tools.demo import emulator_process
    from gsc_pipeline.warehouse import open_warehouse

    admin = admin_url or os.environ.get(POSTGRES_ADMIN_ENV, DEFAULT_ADMIN_URL)
    server = urlsplit(admin)
    tag = uuid.uuid4().hex[:8]
    dagster_db, warehouse_db = f"gsc_mh_dagster_{tag}", f"gsc_mh_wh_{tag}"
    emulator_file, config_file, sites, days = _configs(plan, workdir)
    # The hosts reach PostgreSQL through a forwarder on the bridge (it listens on loopback).
    credentials = server.netloc.rsplit("@", 1)[0] + "@" if "@" in server.netloc else ""
    bridge_pg = f"postgresql://{credentials}{HOST_IP}:5432"
    home = workdir / "home"
    with (
        contextlib.ExitStack() as stack,
        databases(admin, [dagster_db, warehouse_db]),
        hosts(plan.hosts) as namespaces,
        tcp_forward((HOST_IP, 5432), (server.hostname or "127.0.0.1", server.port or 5432)),
        emulator_process("--config", str(emulator_file), "--host", HOST_IP,
                         log=workdir / "emulator.log") as emu,  # fmt: skip
    ):
        env = {
            "DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": f"{bridge_pg}/{dagster_db}",
            CONFIG_ENV: str(config_file), API_ENDPOINT_ENV: emu.base_url,
            WAREHOUSE_URL_ENV: f"{bridge_pg}/{warehouse_db}",
        }  # fmt: skip
        stack.enter_context(environ_set(env))
        init_instance(home, load_config(config_file), postgres=True)
        procs = []
        for (ns, _), site in zip(namespaces, sites, strict=True):
            cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "gsc_pipeline.tools.multihost",
                   "host", site, days[0].isoformat(), days[-1].isoformat()]  # fmt: skip
            log = open(workdir / f"{ns}.log", "w")  # noqa: SIM115 - closed when it exits
            procs.append((subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log,
                                           stderr=subprocess.STDOUT), log))  # fmt: skip
        codes = []
        for proc, log in procs:
            codes.append(proc.wait(timeout=900))
            log.close()
        stats = emu.stats()
        warehouse = open_warehouse(env[WAREHOUSE_URL_ENV])
        rows = int(warehouse.read_sql("SELECT count(*) AS n FROM gsc_page_query")["n"].iloc[0])
        buckets = sorted(warehouse.read_sql("SELECT key FROM gsc_quota_bucket")["key"])
        with dg.DagsterInstance.from_config(str(home)) as instance:
            peak_steps = _peak_fetch_steps(instance)
    window = max(1, round(60 / TIME_SCALE))
    return Outcome(plan, namespaces, codes, stats, rows, peak_steps,
                   _window_peak(stats["per_second"], window), buckets)  # fmt: skip


def _ok(met: bool) -> str:
    return "met" if met else "**not met**"


def report(outcome: Outcome) -> str:
    plan, stats = outcome.plan, outcome.stats
    window = max(1, round(60 / TIME_SCALE))
    users = stats["peak_qpm_by_user"]
    lines = [
        "# Multi-host proof: one pool and one quota budget across network namespaces",
        "",
        f"Produced by `gsc-pipeline multihost` ({len(os.sched_getaffinity(0))} cores, 1-min "
        f"load average {os.getloadavg()[0]:.1f}). {plan.hosts} hosts = {plan.hosts} Linux network "
        "namespaces bridged to this one, each running a Dagster run of the fetch job "
        f"(one property, 3 reports, {plan.days} days) in its own process; Dagster instance "
        "storage and the warehouse in PostgreSQL, reached over the bridge; the emulator "
        f"bound to the bridge address. Latency and quota windows run {TIME_SCALE:g}x faster, "
        "so QPM below is per emulated minute.",
        "",
        f"Credential: quota {plan.quota_qpm:,}/min, budget {plan.budget_fraction:.0%} = "
        f"{plan.budget_qpm:,.0f}/min, pool limit {plan.pool_limit}, step concurrency "
        f"{plan.step_concurrency}.",
        "",
        "| Claim | Measured | Limit | |",
        "|---|---|---|---|",
        f"| every host's run succeeded | exit codes {outcome.exit_codes} | all 0 | "
        f"{_ok(not any(outcome.exit_codes))} |",
        f"| the API saw {plan.hosts} separate hosts (peer addresses) | {len(users)}: "
        f"{', '.join(sorted(users))} | {plan.hosts} | "
        f"{_ok(len(users) == plan.hosts)} |",
        f"| fetch steps at once, all hosts (Dagster event log) | {outcome.peak_steps} | pool "
        f"limit {plan.pool_limit} | {_ok(outcome.peak_steps <= plan.pool_limit)} |",
        f"| requests in flight, all hosts (emulator peak) | {stats['peak_concurrent_requests']} | "
        f"pool limit x step concurrency = {outcome.in_flight_limit} | "
        f"{_ok(stats['peak_concurrent_requests'] <= outcome.in_flight_limit)} |",
        f"| busiest {window} s (one emulated minute), all hosts together | "
        f"{outcome.window_peak} requests | budget {plan.budget_qpm:,.0f} + burst "
        f"{LIMITER_BURST} | {_ok(outcome.window_peak <= plan.budget_limit)} |",
        f"| quota buckets all hosts drew from (PostgreSQL rows) | {len(outcome.buckets)}: one "
        f"for the credential, one per site | 1 + {plan.hosts} | "
        f"{_ok(len(outcome.buckets) == 1 + plan.hosts)} |",
        f"| quota rejections | {stats['quota_rejections']} | 0 | "
        f"{_ok(sum(stats['quota_rejections'].values()) == 0)} |",
        "",
        f"Requests {stats['requests_total']:,}, rows served {stats['rows_served']:,}, "
        f"page x query rows stored {outcome.rows:,}. Peak QPM per host (emulator's sliding "
        f"minute, by peer): {json.dumps(users)}; per site: "
        f"{json.dumps(stats['peak_qpm_by_site'])}.",
        "",
        "Without the shared pool each host would claim its own slots: "
        f"{plan.hosts} x {plan.step_concurrency} = {plan.hosts * plan.step_concurrency} "
        "requests in flight could be reached; without the shared bucket each step alone may spend "
        f"the whole budget, {plan.pool_limit} budgets' worth at once.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["host"]:
        return run_host(*argv[1:4])
    out = Path(argv[0]) if argv else Path("docs/bench")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gsc-multihost-") as tmp:
        outcome = prove(Plan(), Path(tmp))
    path = out / "multihost.md"
    path.write_text(report(outcome))
    print(f"report: {path}")
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
