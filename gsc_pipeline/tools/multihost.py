"""`gsc-pipeline multihost`: run workers on separate hosts share one pool and one quota budget.

Each "host" is a Linux network namespace (`ip netns`, a veth pair into one bridge, so each has
its own IP address and loopback) running a Dagster run worker of the fetch job in its own
process. They share nothing but PostgreSQL (instance storage: runs, event log, pool slots; and
the warehouse) and the API endpoint, both reached over the bridge, as separate machines would.

The proof runs in rounds on one setup (namespaces, databases, emulator, one long-lived worker
process per host): each round every host runs the fetch job for its own property over the
round's own days, and the round is measured on its own (the emulator's counters are reset, the
steps are read from the round's runs only):
- every run succeeded, and the API saw one peer address per host;
- fetch steps at once, all hosts (step start/end events) ≤ the pool limit: the instance's
  event log claims pool slots atomically (`instance/storage.py`);
- peak requests in flight ≤ pool limit x step concurrency (a step holds a pool slot while it
  fetches; without a shared pool each host would claim its own slots);
- the busiest window of all hosts together ≤ the budget + the limiter's burst of 2 + the
  requests that took a token just before the window and reach the API inside it (at most the
  requests in flight): every request takes a token from the credential's one bucket, a row in
  the PostgreSQL warehouse (`gsc.rate_limit.PostgresStore`), and zero quota rejections.

What the measurements rely on, so that only a real violation fails them:
- Step intervals come from event timestamps written by the step processes. A slot is claimed
  before STEP_START and freed only after the run worker has received STEP_SUCCESS / FAILURE /
  UP_FOR_RETRY (`dagster/_core/execution/plan/active.py`), so each [start, end] lies inside
  its slot's hold; namespaces share the kernel's clock (network namespaces do not virtualise
  time), so intervals from different hosts compare without skew. A retried step is two
  intervals (STEP_RESTARTED starts the second), not one that never ends.
- The emulator counts requests when they arrive, not when their token was taken; under load a
  request may wait between the two, hence the in-flight allowance in the window's limit.
- Each proof takes its own /24 under a lock file (`_subnet`), so proofs running at once on one
  machine (two checkouts' CI, two sessions) never share addresses or interface names.

Needs root (network namespaces) and a PostgreSQL server on 127.0.0.1 (GSC_BENCH_POSTGRES_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import fcntl
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import yaml

BRIDGE = "gscmh"
# Each proof takes 10.211.<n>.0/24 (n >= 1: older checkouts use 10.211.0.0/24 without a lock).
SUBNET_PREFIX = "10.211"
PREFIX = 24
POSTGRES_ADMIN_ENV = "GSC_BENCH_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
TIME_SCALE = 10.0
# RateLimiter's default burst: a bucket may admit this many requests back to back.
LIMITER_BURST = 2
# How long one round may take before the proof gives up on it (a stuck host, not a slow one).
ROUND_TIMEOUT_S = 900.0
# What a host prints on its protocol line (its stdout; everything else goes to its log).
READY = "ready"


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


def _lock_dir() -> Path:
    run_lock = Path("/run/lock")
    return run_lock if run_lock.is_dir() else Path(tempfile.gettempdir())


def _names(subnet: int, count: int) -> tuple[str, list[str]]:
    """The bridge and the namespaces of subnet `subnet` (interface names: 15 characters)."""
    return f"{BRIDGE}{subnet}", [f"{BRIDGE}{subnet}h{i}" for i in range(count)]


def _remove(subnet: int, count: int) -> None:
    bridge, names = _names(subnet, count)
    for ns in names:
        subprocess.run(["ip", "link", "del", f"{ns}a"], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True)


@contextlib.contextmanager
def _subnet(count: int) -> Iterator[int]:
    """A /24 no other proof on this machine holds: its lock file is ours until we exit.

    Interfaces left by a proof that was killed (its lock died with it) carry our names and are
    removed; a subnet some other interface uses is skipped.
    """
    for subnet in range(1, 255):
        lock = open(_lock_dir() / f"gsc-multihost-{SUBNET_PREFIX}.{subnet}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        try:
            bridge, _ = _names(subnet, count)
            addresses = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True,
                                       text=True, check=True).stdout  # fmt: skip
            owners = {line.split()[1] for line in addresses.splitlines()
                      if f" {SUBNET_PREFIX}.{subnet}." in line}  # fmt: skip
            if owners - {bridge}:
                continue  # someone else's addresses
            _remove(subnet, max(count, 16))  # a killed proof's leftovers
            yield subnet
            return
        finally:
            lock.close()
    raise RuntimeError(f"no free {SUBNET_PREFIX}.<n>.0/24 for the multi-host proof")


@dataclass(frozen=True)
class Network:
    subnet: int
    bridge_ip: str
    # [(namespace, its address)]
    hosts: list[tuple[str, str]]


@contextlib.contextmanager
def hosts(count: int) -> Iterator[Network]:
    """`count` namespaces bridged to this one, on a subnet of their own; removed afterwards."""
    with _subnet(count) as subnet:
        bridge, names = _names(subnet, count)
        base = f"{SUBNET_PREFIX}.{subnet}"
        try:
            _ip("link", "add", bridge, "type", "bridge")
            _ip("addr", "add", f"{base}.1/{PREFIX}", "dev", bridge)
            _ip("link", "set", bridge, "up")
            out = []
            for i, ns in enumerate(names):
                address = f"{base}.{10 + i}"
                _ip("netns", "add", ns)
                _ip("link", "add", f"{ns}a", "type", "veth", "peer", "name", f"{ns}b")
                _ip("link", "set", f"{ns}a", "master", bridge, "up")
                _ip("link", "set", f"{ns}b", "netns", ns)
                _ip("netns", "exec", ns, "ip", "addr", "add", f"{address}/{PREFIX}", "dev",
                    f"{ns}b")  # fmt: skip
                _ip("netns", "exec", ns, "ip", "link", "set", f"{ns}b", "up")
                _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
                out.append((ns, address))
            yield Network(subnet, f"{base}.1", out)
        finally:
            _remove(subnet, count)


@contextlib.contextmanager
def tcp_forward(listen: tuple[str, int], target: tuple[str, int]) -> Iterator[None]:
    """Forward `listen` to `target` (PostgreSQL listens on loopback only), in a thread.

    A failure to listen is raised here, not left to the hosts as a refused connection.
    """
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[asyncio.Server] = concurrent.futures.Future()

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
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()  # the host sees the connection closed, as PostgreSQL down would be
            return
        except asyncio.CancelledError:  # stopping (`stop` below) as the host connected
            writer.close()
            return
        # A connection still open when the forward stops: its task ends here instead of ending
        # cancelled, which asyncio's stream server reports as an "Exception in callback".
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(asyncio.start_server(handle, *listen))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            started.set_exception(exc)
            return
        started.set_result(server)
        loop.run_forever()

    thread = threading.Thread(target=run, name="pg-forward", daemon=True)
    thread.start()
    server = started.result(timeout=120)

    async def stop() -> None:
        # Connections still open (a host's kept PostgreSQL connections) are closed here, in
        # the loop, not left to the garbage collector after the loop has closed.
        server.close()
        open_ = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in open_:
            task.cancel()
        await asyncio.gather(*open_, return_exceptions=True)

    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
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
                # template0: CREATE DATABASE from template1 fails while any other session (another
                # test, psql) is connected to template1; nobody can connect to template0.
                cur.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        yield
    finally:
        with con.cursor() as cur:
            for name in names:
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        con.close()


@dataclass(frozen=True)
class Plan:
    """The proof CI runs (`tests/test_multihost.py`) and `gsc-pipeline multihost` defaults to.

    Sized so that each round is short yet every claim can fail: a round's requests (3 hosts x
    3 days x 3 reports, ~40) exceed the busiest minute's limit, so hosts not sharing the bucket
    could be seen exceeding it, and 3 hosts' steps meet a pool of 2 at every round's start.
    """

    hosts: int = 3
    days: int = 3  # per host and round
    rounds: int = 10
    pool_limit: int = 2
    step_concurrency: int = 2
    # Low enough that the budget binds (2 steps x 2 in flight at ~50 ms could go 10x faster),
    # high enough that its 20% headroom covers the burst and the requests in flight: the
    # emulator (Google's quota) never rejects a request the budget admitted.
    quota_qpm: int = 30
    budget_fraction: float = 0.8
    # Rows per property-day: they cost CPU and prove nothing about the pool or the budget.
    rows_per_day: int = 300

    def __post_init__(self) -> None:
        for name in ("hosts", "days", "rounds", "pool_limit", "step_concurrency", "quota_qpm",
                     "rows_per_day"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"multihost plan: {name} must be at least 1, not "
                                 f"{getattr(self, name)}")  # fmt: skip
        if self.hosts > 200:
            raise ValueError(f"multihost plan: at most 200 hosts, not {self.hosts}")

    @property
    def budget_qpm(self) -> float:
        return self.quota_qpm * self.budget_fraction

    @property
    def budget_limit(self) -> float:
        """Most requests one emulated minute may take tokens for: the budget plus the burst."""
        return self.budget_qpm + LIMITER_BURST

    @property
    def in_flight_limit(self) -> int:
        return self.pool_limit * self.step_concurrency

    @property
    def arrival_limit(self) -> float:
        """Most requests one emulated minute may see arrive: those that took a token in it,
        plus those that took one before it and were still on their way (in flight) at its start.
        """
        return self.budget_limit + self.in_flight_limit


def _configs(plan: Plan, workdir: Path) -> tuple[Path, Path, list[str], list[dt.date]]:
    from gsc_pipeline.reports import DEFAULT_REPORTS
    from gsc_pipeline.tools.bench.scenario import TODAY

    sites = [f"sc-domain:host{i}.example" for i in range(plan.hosts)]
    last = TODAY - dt.timedelta(days=5)
    total = plan.days * plan.rounds
    days = [last - dt.timedelta(days=i) for i in reversed(range(total))]
    emulator = {
        "seed": 11, "today": TODAY.isoformat(), "time_scale": TIME_SCALE,
        "max_rows_per_day": 50_000,
        "latency": {"base_ms": 500, "per_row_us": 40, "jitter_sigma": 0.3},
        "quotas": {"site_qpm": plan.quota_qpm, "user_qpm": plan.quota_qpm},
        "properties": [{"site_url": s, "page_query_rows_per_day": plan.rows_per_day,
                        "pages": min(400, plan.rows_per_day), "search_types": ["web"]}
                       for s in sites],
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


def run_host(site_url: str, commands: TextIO, answers: TextIO) -> int:
    """In one host: for each line `ROUND FIRST LAST` of `commands`, execute the fetch job for
    one property's assets over [FIRST, LAST] and answer `ROUND EXIT_CODE`; stop at EOF."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from gsc_pipeline.config import load_config
    from gsc_pipeline.defs.names import (
        FETCH_JOB,
        HOST_TAG,
        MULTIHOST_ROUND_TAG,
        RANGE_END_TAG,
        RANGE_START_TAG,
    )
    from gsc_pipeline.defs.schedules import property_asset_keys

    config = load_config()
    prop = next(p for p in config.properties if p.site_url == site_url)
    keys = property_asset_keys(config, prop)
    repo = ReconstructableRepository.for_module("gsc_pipeline.definitions", "defs")
    job = repo.get_reconstructable_job(FETCH_JOB)
    with dg.DagsterInstance.get() as instance:
        print(READY, file=answers, flush=True)
        for line in commands:
            number, first, last = line.split()
            try:
                result = dg.execute_job(
                    job, instance=instance, asset_selection=keys,
                    tags={RANGE_START_TAG: first, RANGE_END_TAG: last,
                          HOST_TAG: os.uname().nodename, MULTIHOST_ROUND_TAG: number},
                )  # fmt: skip
                code = 0 if result.success else 1
            except Exception:  # noqa: BLE001 - the round fails, the parent reports it
                traceback.print_exc()
                code = 2
            print(number, code, file=answers, flush=True)
    return 0


class _Worker:
    """One host's long-lived process: rounds in on its stdin, answers out on its stdout."""

    def __init__(self, namespace: str, site: str, env: dict[str, str], log: Path) -> None:
        self.namespace = namespace
        self._log = open(log, "w")  # noqa: SIM115 - closed in close()
        cmd = ["ip", "netns", "exec", namespace, sys.executable, "-m",
               "gsc_pipeline.tools.multihost", "host", site]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, bufsize=1)  # fmt: skip
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"answers-{namespace}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._answers.put(line.strip())
        self._answers.put(None)  # the process has ended

    def answer(self, deadline: float) -> str | None:
        """The next line, or None when the process ended or the deadline passed."""
        try:
            return self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@dataclass
class Round:
    number: int
    first: dt.date
    last: dt.date
    exit_codes: list[int]
    stats: dict[str, Any]
    peak_steps: int
    window_peak: int
    # The quota buckets every host took its tokens from (rows of the warehouse's bucket table).
    buckets: list[str]
    seconds: float
    # From sending the round to its first fetch step starting (run and step process starts).
    to_first_step: float
    load: float

    def checks(self, plan: Plan, hosts: int) -> dict[str, bool]:
        stats = self.stats
        return {
            "runs": not any(self.exit_codes),
            "peers": len(stats["peak_qpm_by_user"]) == hosts,
            "steps": 1 <= self.peak_steps <= plan.pool_limit,
            "in flight": stats["peak_concurrent_requests"] <= plan.in_flight_limit,
            "budget": 0 < self.window_peak <= plan.arrival_limit,
            "buckets": len(self.buckets) == 1 + hosts,
            "rejections": sum(stats["quota_rejections"].values()) == 0,
        }

    def ok(self, plan: Plan, hosts: int) -> bool:
        return all(self.checks(plan, hosts).values())


@dataclass
class Outcome:
    plan: Plan
    hosts: list[tuple[str, str]]
    rounds: list[Round]
    rows: int
    # Where the time went: setup phases and the workers' start, in seconds.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def in_flight_limit(self) -> int:
        return self.plan.in_flight_limit

    @property
    def ok(self) -> bool:
        return len(self.rounds) == self.plan.rounds and all(
            r.ok(self.plan, len(self.hosts)) for r in self.rounds
        )


def _window_peak(per_second: list[list[int]], window: int) -> int:
    """The most requests any `window` consecutive seconds saw, all hosts together."""
    counts = {int(s): n for s, n, _ in per_second}
    if not counts:
        return 0
    return max(sum(counts.get(t - i, 0) for i in range(window))
               for t in range(min(counts), max(counts) + 1))  # fmt: skip


STEP_STARTS = ("STEP_START", "STEP_RESTARTED")
STEP_ENDS = ("STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY")


def peak_overlap(events: Iterable[tuple[str, str, str, float]]) -> int:
    """Most steps running at once, from (run id, step key, event type name, timestamp); run
    events (step key "") only mark when a run was last seen.

    Each step attempt is an interval from its start (STEP_START, or STEP_RESTARTED after a
    retry) to its end (success, failure, up for retry); an attempt with no end (its process was
    killed) lasts until its run's last event. At equal timestamps an end comes first: the slot
    it held is freed after its end event is written and claimed before the next start is.
    """
    by_step: dict[tuple[str, str], list[tuple[float, str]]] = {}
    last_seen: dict[str, float] = {}
    for run_id, step_key, kind, timestamp in events:
        last_seen[run_id] = max(last_seen.get(run_id, timestamp), timestamp)
        if step_key and (kind in STEP_STARTS or kind in STEP_ENDS):
            by_step.setdefault((run_id, step_key), []).append((timestamp, kind))
    edges = []
    for (run_id, _), marks in by_step.items():
        open_at: float | None = None
        for timestamp, kind in sorted(marks):
            if kind in STEP_STARTS:
                if open_at is not None:  # a start without an end: the earlier attempt died
                    edges += [(open_at, 1), (timestamp, -1)]
                open_at = timestamp
            elif open_at is not None:
                edges += [(open_at, 1), (timestamp, -1)]
                open_at = None
        if open_at is not None:
            edges += [(open_at, 1), (last_seen[run_id], -1)]
    level = peak = 0
    for _, step in sorted(edges):
        level += step
        peak = max(peak, level)
    return peak


def _fetch_step_events(instance: Any, run_ids: list[str]) -> list[tuple[str, str, str, float]]:
    """(run, step, event type, time) of the fetch steps' (`gsc__...`) starts and ends and of
    the runs' ends, read by type (a run's log messages are most of its events)."""
    from dagster._core.events import DagsterEventType as T

    kinds = {T.STEP_START, T.STEP_RESTARTED, T.STEP_SUCCESS, T.STEP_FAILURE, T.STEP_UP_FOR_RETRY,
             T.RUN_SUCCESS, T.RUN_FAILURE, T.RUN_CANCELED}  # fmt: skip
    events = []
    for run_id in run_ids:
        for record in instance.get_records_for_run(run_id, of_type=kinds).records:
            entry = record.event_log_entry
            event = entry.dagster_event
            step = (event.step_key or "") if event is not None else ""
            if event is not None and (step.startswith("gsc__") or not step):
                events.append((run_id, step, event.event_type_value, entry.timestamp))
    return events


def _buckets(warehouse: Any) -> list[str]:
    """The bucket rows (none when no host made a request: the table is made on first use)."""
    if not warehouse.read_sql("SELECT to_regclass('gsc_quota_bucket') IS NOT NULL AS t")["t"][0]:
        return []
    return sorted(warehouse.read_sql("SELECT key FROM gsc_quota_bucket")["key"])


def _count_rows(warehouse: Any) -> int:
    if not warehouse.read_sql("SELECT to_regclass('gsc_page_query') IS NOT NULL AS t")["t"][0]:
        return 0
    return int(warehouse.read_sql("SELECT count(*) AS n FROM gsc_page_query")["n"].iloc[0])


def prove(plan: Plan, workdir: Path, admin_url: str | None = None,
          on_round: Any = None) -> Outcome:  # fmt: skip
    """Run the plan's rounds on `plan.hosts` namespaces; `admin_url` creates and drops the
    databases. `on_round(round)` is called after each round is measured (progress)."""
    reason = netns_unavailable_reason()
    if reason:
        raise NetnsUnavailable(reason)
    import dagster as dg

    from gsc_pipeline.config import CONFIG_ENV, load_config
    from gsc_pipeline.constants import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
    from gsc_pipeline.defs.names import MULTIHOST_ROUND_TAG
    from gsc_pipeline.gsc.rate_limit import QUOTA_STORE_ENV
    from gsc_pipeline.instance import init_instance
    from gsc_pipeline.tools.bench.scenario import environ_set
    from gsc_pipeline.tools.demo import emulator_process
    from gsc_pipeline.warehouse import open_warehouse

    admin = admin_url or os.environ.get(POSTGRES_ADMIN_ENV, DEFAULT_ADMIN_URL)
    server = urlsplit(admin)
    tag = uuid.uuid4().hex[:8]
    dagster_db, warehouse_db = f"gsc_mh_dagster_{tag}", f"gsc_mh_wh_{tag}"
    emulator_file, config_file, sites, days = _configs(plan, workdir)
    credentials = server.netloc.rsplit("@", 1)[0] + "@" if "@" in server.netloc else ""
    home = workdir / "home"
    timings: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[name] = now - mark
        mark = now

    rounds: list[Round] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(databases(admin, [dagster_db, warehouse_db]))
        lap("databases")
        net = stack.enter_context(hosts(plan.hosts))
        lap("namespaces")
        # The hosts reach PostgreSQL through a forwarder on the bridge (it listens on loopback).
        stack.enter_context(
            tcp_forward(
                (net.bridge_ip, 5432), (server.hostname or "127.0.0.1", server.port or 5432)
            )
        )
        emu = stack.enter_context(emulator_process(
            "--config", str(emulator_file), "--host", net.bridge_ip,
            log=workdir / "emulator.log"))  # fmt: skip
        lap("emulator")
        bridge_pg = f"postgresql://{credentials}{net.bridge_ip}:5432"
        env = {
            "DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": f"{bridge_pg}/{dagster_db}",
            CONFIG_ENV: str(config_file), API_ENDPOINT_ENV: emu.base_url,
            WAREHOUSE_URL_ENV: f"{bridge_pg}/{warehouse_db}",
            # Empty: the budget is the PostgreSQL warehouse's, whatever the caller's env says.
            QUOTA_STORE_ENV: "",
        }  # fmt: skip
        stack.enter_context(environ_set(env))
        init_instance(home, load_config(config_file), postgres=True)
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        lap("instance")
        workers = []
        for (ns, _), site in zip(net.hosts, sites, strict=True):
            worker = _Worker(ns, site, {**os.environ, **env}, workdir / f"{ns}.log")
            stack.callback(worker.close)
            workers.append(worker)
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        for worker in workers:
            if worker.answer(deadline) != READY:
                raise RuntimeError(f"host {worker.namespace} did not start; see "
                                   f"{workdir / (worker.namespace + '.log')}")  # fmt: skip
        lap("workers start")
        window = max(1, round(60 / TIME_SCALE))
        # Opened once the first round has made its tables.
        warehouse = None
        for number in range(plan.rounds):
            chunk = days[number * plan.days : (number + 1) * plan.days]
            emu.reset_stats()
            started, sent_at = time.monotonic(), time.time()
            for worker in workers:
                worker.send(f"{number} {chunk[0].isoformat()} {chunk[-1].isoformat()}")
            deadline = started + ROUND_TIMEOUT_S
            codes = []
            for worker in workers:
                answer = worker.answer(deadline)
                codes.append(int(answer.split()[1]) if answer else -1)
            seconds = time.monotonic() - started
            stats = emu.stats()
            runs = instance.get_runs(filters=dg.RunsFilter(tags={MULTIHOST_ROUND_TAG: str(number)}))
            events = _fetch_step_events(instance, [run.run_id for run in runs])
            starts = [t for _, step, kind, t in events if step and kind in STEP_STARTS]
            warehouse = warehouse or open_warehouse(env[WAREHOUSE_URL_ENV])
            buckets = _buckets(warehouse)
            result = Round(
                number + 1, chunk[0], chunk[-1], codes, stats, peak_overlap(events),
                _window_peak(stats["per_second"], window), buckets, seconds,
                (min(starts) - sent_at) if starts else float("nan"), os.getloadavg()[0],
            )  # fmt: skip
            rounds.append(result)
            if on_round is not None:
                on_round(result)
            if any(code < 0 for code in codes):
                break  # a host died or hung: later rounds would only repeat it
        lap("rounds")
        warehouse = warehouse or open_warehouse(env[WAREHOUSE_URL_ENV])
        rows = _count_rows(warehouse)
    lap("teardown")
    return Outcome(plan, net.hosts, rounds, rows, timings)


def _ok(met: bool) -> str:
    return "met" if met else "**not met**"


def report(outcome: Outcome, command: str = "gsc-pipeline multihost") -> str:
    plan, rounds = outcome.plan, outcome.rounds
    count = len(outcome.hosts)
    window = max(1, round(60 / TIME_SCALE))
    failed = [r.number for r in rounds if not r.ok(plan, count)]
    peers = sorted({peer for r in rounds for peer in r.stats["peak_qpm_by_user"]})

    def worst(values: list[float]) -> str:
        return f"{max(values):g}" if values else "-"

    rejections = sum(sum(r.stats["quota_rejections"].values()) for r in rounds)
    summary = [
        f"| every host's run succeeded, every round | {sum(not any(r.exit_codes) for r in rounds)}"
        f" of {len(rounds)} rounds | all | {_ok(all(not any(r.exit_codes) for r in rounds))} |",
        f"| the API saw {count} separate hosts (peer addresses) | {', '.join(peers)} | "
        f"{count} each round | {_ok(all(r.checks(plan, count)['peers'] for r in rounds))} |",
        f"| fetch steps at once, all hosts (Dagster event log), worst round | "
        f"{worst([r.peak_steps for r in rounds])} | pool limit {plan.pool_limit} | "
        f"{_ok(all(r.checks(plan, count)['steps'] for r in rounds))} |",
        f"| requests in flight, all hosts (emulator peak), worst round | "
        f"{worst([r.stats['peak_concurrent_requests'] for r in rounds])} | pool limit x step "
        f"concurrency = {plan.in_flight_limit} | "
        f"{_ok(all(r.checks(plan, count)['in flight'] for r in rounds))} |",
        f"| busiest {window} s (one emulated minute), all hosts together, worst round | "
        f"{worst([r.window_peak for r in rounds])} requests | budget {plan.budget_qpm:,.0f} + "
        f"burst {LIMITER_BURST} + in flight {plan.in_flight_limit} = {plan.arrival_limit:g} | "
        f"{_ok(all(r.checks(plan, count)['budget'] for r in rounds))} |",
        f"| quota buckets all hosts drew from (PostgreSQL rows) | "
        f"{worst([len(r.buckets) for r in rounds])}: one for the credential, one per site | "
        f"1 + {count} | {_ok(all(r.checks(plan, count)['buckets'] for r in rounds))} |",
        f"| quota rejections, all rounds | {rejections} | 0 | {_ok(rejections == 0)} |",
    ]
    per_round = [
        f"| {r.number} | {r.first} .. {r.last} | {r.exit_codes} | "
        f"{len(r.stats['peak_qpm_by_user'])} | {r.peak_steps} | "
        f"{r.stats['peak_concurrent_requests']} | {r.window_peak} | {len(r.buckets)} | "
        f"{sum(r.stats['quota_rejections'].values())} | {r.stats['requests_total']} | "
        f"{r.to_first_step:.1f} | {r.seconds:.1f} | {r.load:.1f} | "
        f"{'ok' if r.ok(plan, count) else '**FAILED**'} |"
        for r in rounds
    ]
    timings = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in outcome.timings.items())
    verdict = (
        f"**{len(rounds)} of {plan.rounds} rounds passed.**"
        if not failed and len(rounds) == plan.rounds
        else f"**Failed rounds: {failed or 'none'}; {len(rounds)} of {plan.rounds} ran.**"
    )
    lines = [
        "# Multi-host proof: one pool and one quota budget across network namespaces",
        "",
        f"Produced by `{command}` ({len(os.sched_getaffinity(0))} cores, 1-min load average "
        f"{os.getloadavg()[0]:.1f} at the end). {count} hosts = {count} Linux network namespaces "
        "bridged to this one, each running a Dagster run worker of the fetch job (one property, "
        f"3 reports) in its own long-lived process; {plan.rounds} rounds in a row, each round "
        f"every host fetching {plan.days} days of its own (the rounds' days do not overlap), "
        "measured on its own (emulator counters reset; steps read from that round's runs). "
        "Dagster instance storage and the warehouse in PostgreSQL, reached over the bridge; the "
        f"emulator bound to the bridge address. Latency and quota windows run {TIME_SCALE:g}x "
        "faster, so QPM below is per emulated minute.",
        "",
        f"Credential: quota {plan.quota_qpm:,}/min, budget {plan.budget_fraction:.0%} = "
        f"{plan.budget_qpm:,.0f}/min, pool limit {plan.pool_limit}, step concurrency "
        f"{plan.step_concurrency}; {plan.rows_per_day:,} page x query rows per property-day.",
        "",
        verdict,
        "",
        "| Claim | Measured | Limit | |",
        "|---|---|---|---|",
        *summary,
        "",
        "Per round (steps: fetch steps at once; in flight: emulator peak; busiest: requests in "
        f"the busiest {window} s; start: seconds from sending the round to its first fetch step "
        "starting; load: 1-min load average after the round):",
        "",
        "| Round | Days | Exit codes | Peers | Steps | In flight | Busiest | Buckets | "
        "Rejections | Requests | Start s | Round s | Load | |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *per_round,
        "",
        f"Page x query rows stored, all rounds: {outcome.rows:,}. Time: {timings}.",
        "",
        "The busiest-minute limit counts arrivals at the API: the requests that took a token in "
        "that minute (budget + burst) and those that took one just before it and were still on "
        f"their way (at most the {plan.in_flight_limit} in flight). Without the shared pool each "
        f"host would claim its own slots: {count} x {plan.step_concurrency} = "
        f"{count * plan.step_concurrency} requests in flight could be reached; without the "
        "shared bucket each step alone may spend the whole budget, "
        f"{plan.pool_limit} budgets' worth at once.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gsc-pipeline multihost")
    parser.add_argument("--out", default="bench-report")
    parser.add_argument(
        "--rounds",
        type=int,
        default=Plan.rounds,
        help="backfills in a row on one setup, each measured on its own",
    )
    parser.add_argument("--days", type=int, default=Plan.days, help="days per host per round")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["host"]:
        # Answers go to the real stdout; anything else printed goes to the host's log.
        answers = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        return run_host(argv[1], sys.stdin, answers)
    args = parse_args(argv)
    plan = Plan(rounds=args.rounds, days=args.days)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def progress(result: Round) -> None:
        status = "ok" if result.ok(plan, plan.hosts) else "FAILED"
        print(
            f"round {result.number}/{plan.rounds}: {status} in {result.seconds:.1f} s "
            f"(steps {result.peak_steps}, busiest minute {result.window_peak})",
            flush=True,
        )

    with tempfile.TemporaryDirectory(prefix="gsc-multihost-") as tmp:
        outcome = prove(plan, Path(tmp), on_round=progress)
    path = out / "multihost.md"
    command = f"gsc-pipeline multihost --rounds {plan.rounds} --days {plan.days} --out {out}"
    path.write_text(report(outcome, command))
    print(f"report: {path}")
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
