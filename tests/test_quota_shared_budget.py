"""One quota budget per credential, shared by every process: the file and PostgreSQL buckets.

Two judges, neither of them the limiter's view of itself:
- the moments the limiter let each request go, recorded by every worker process: the shared
  bucket's promise is that these, all processes together, stay inside the budget;
- the emulator's own per-minute accounting of arrivals and the 429s its quotas return: no
  rejection, and never more than the quota. Arrivals are not held to the budget itself: on a
  loaded machine a request granted at the end of one window can arrive in the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gsc_pipeline.emulator.stats import _SlidingCount
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc.rate_limit import FileStore, PostgresStore, quota_store

SITE = "sc-domain:example.com"
# Emulated minutes last 6 real seconds, so a run of a few seconds spans several windows.
TIME_SCALE = 10.0
QUOTA = 60  # per emulated minute, per site and per user (all processes are one peer)
BUDGET = 48  # 80% of it, per emulated minute
BURST = 2  # RateLimiter's default: a slot may start this many requests early

# One "process" spending the budget: a client of the shared store, `threads` callers as fast as
# the limiter lets them. It starts its requests when the `go` file appears, so every process
# competes from the same moment (process start-up times differ under load). The client builds
# its request right after both limiters (credential and site) let it go: that moment is recorded
# and printed as the process's last line.
WORKER = """
import json, os, sys, threading, time
from pathlib import Path
from gsc_pipeline.gsc import GscClient, RetryPolicy
from gsc_pipeline.gsc.rate_limit import quota_store
endpoint, site, qpm, requests, threads, go = json.loads(sys.argv[1])
client = GscClient(endpoint, qpm_budget=qpm, quota_store=quota_store(),
                   retry_policy=RetryPolicy(max_attempts=1))
granted = []
service = client._take_service
def granted_then_service():
    granted.append(time.time())
    return service()
client._take_service = granted_then_service
print("ready", flush=True)
while not Path(go).exists():
    threading.Event().wait(0.01)
body = {"startDate": "2026-08-10", "endDate": "2026-08-10", "dimensions": ["date"]}
left = iter(range(requests))
lock = threading.Lock()
def work():
    while True:
        with lock:
            if next(left, None) is None:
                return
        client.query(site, body)
pool = [threading.Thread(target=work) for _ in range(threads)]
[t.start() for t in pool]
[t.join() for t in pool]
print(json.dumps(granted), flush=True)
"""


def _spend(
    store_target: str, processes: int, requests: int, tmp_path: Path
) -> tuple[dict, int]:
    """`processes` workers spend `requests` each from one budget.

    Returns the emulator's stats and the most grants, all processes together, inside any
    emulated minute.
    """
    config = {
        "today": "2026-08-18",
        "time_scale": TIME_SCALE,
        "quotas": {"site_qpm": QUOTA, "user_qpm": QUOTA},
    }
    go = tmp_path / "go"
    with running_emulator(config) as gsc:
        # The client's budget is per real minute; the emulator's minute is TIME_SCALE shorter.
        args = json.dumps([gsc.base_url, SITE, BUDGET * TIME_SCALE, requests, 3, str(go)])
        env = {**os.environ, "GSC_QUOTA_STORE": store_target}
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        go.touch()
        granted: list[float] = []
        for worker in workers:
            out, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err
            granted += json.loads(out.splitlines()[-1])
        assert len(granted) == processes * requests
        # Counted as the emulator counts arrivals: the most inside any emulated minute.
        grants = _SlidingCount(60.0 / TIME_SCALE)
        for moment in sorted(granted):
            grants.add(moment)
        return gsc.stats(), grants.peak


@pytest.fixture(params=["file", "postgres"])
def store_target(request, tmp_path) -> str:
    if request.param == "file":
        return str(tmp_path / "quota")
    return request.getfixturevalue("postgres_schema_url")


def test_processes_share_one_budget(store_target, tmp_path):
    # 3 processes x 3 threads, 30 requests each: alone each could spend the whole budget, so
    # without one shared bucket they send 3 budgets' worth in the same emulated minute.
    stats, granted_peak = _spend(store_target, processes=3, requests=30, tmp_path=tmp_path)
    assert stats["requests_total"] == 90
    # The busiest emulated minute of grants, all processes together, stays inside the budget
    # (unshared, it would hold up to 90)...
    assert granted_peak <= BUDGET + BURST
    # ...and Google's side of it: never over the quota, not one request rejected.
    assert sum(stats["quota_rejections"].values()) == 0, stats["quota_rejections"]
    assert stats["peak_qpm_by_site"][SITE] <= QUOTA


def test_a_lone_process_reaches_the_whole_budget(store_target, tmp_path):
    # 70 requests at 48 per emulated minute span more than one window; the busiest one is full.
    stats, granted_peak = _spend(store_target, processes=1, requests=70, tmp_path=tmp_path)
    assert BUDGET * 0.9 <= granted_peak <= BUDGET + BURST
    assert sum(stats["quota_rejections"].values()) == 0
    assert BUDGET * 0.9 <= stats["peak_qpm_by_site"][SITE] <= QUOTA


def test_two_stores_on_one_directory_share_the_bucket(tmp_path):
    # Two FileStores stand for two processes: each sees the other's reservations.
    a, b = FileStore(tmp_path), FileStore(tmp_path)
    delays = [store.reserve("cred", 60.0, 2) for store in (a, b, a, b)]
    assert delays[:2] == [0.0, 0.0]
    assert delays[2] == pytest.approx(60.0, abs=5) and delays[3] == pytest.approx(120.0, abs=5)
    assert b.reserve("other", 60.0, 2) == 0.0  # keys are separate buckets


def test_two_connections_share_the_postgres_bucket(postgres_schema_url):
    a, b = PostgresStore(postgres_schema_url), PostgresStore(postgres_schema_url)
    delays = [store.reserve("cred", 60.0, 2) for store in (a, b, a, b)]
    assert delays[:2] == [0.0, 0.0]
    assert delays[2] == pytest.approx(60.0, abs=5) and delays[3] == pytest.approx(120.0, abs=5)
    assert b.reserve("other", 60.0, 2) == 0.0


def test_the_store_follows_the_warehouse_unless_told(monkeypatch, tmp_path):
    monkeypatch.delenv("GSC_QUOTA_STORE", raising=False)
    pg = "postgresql://postgres@127.0.0.1:5432/test"
    assert isinstance(quota_store(pg), PostgresStore)
    assert isinstance(quota_store(f"duckdb:///{tmp_path}/wh.duckdb"), FileStore)
    monkeypatch.setenv("GSC_QUOTA_STORE", str(tmp_path / "q"))
    assert quota_store(pg).name == f"file:{tmp_path / 'q'}"
    monkeypatch.setenv("GSC_QUOTA_STORE", "redis://x")
    with pytest.raises(ValueError, match="postgresql:// URL .* or an absolute directory"):
        quota_store()
