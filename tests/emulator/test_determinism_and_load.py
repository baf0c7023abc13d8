"""Same seed, same data across restarts; tie order; concurrency and the stats endpoint."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import aiohttp
import httplib2

from gsc_pipeline.emulator.testing import EmulatorHandle, running_emulator

from .client import SITE, all_rows, query, service_for, small_config

REPORTS = [
    {"dimensions": ["date", "page", "query"]},
    {"dimensions": ["country", "device"], "type": "image"},
    {"dimensions": ["date"], "dataState": "all", "startDate": "2026-08-10",
     "endDate": "2026-08-18"},
]  # fmt: skip


def _raw(gsc: EmulatorHandle, body: dict[str, Any]) -> bytes:
    """The exact bytes on the wire, so determinism covers formatting too."""
    payload = {"startDate": "2026-08-01", "endDate": "2026-08-03", "rowLimit": 25000, **body}
    _, content = httplib2.Http().request(
        f"{gsc.base_url}webmasters/v3/sites/sc-domain%3Aexample.com/searchAnalytics/query",
        "POST", body=json.dumps(payload), headers={"content-type": "application/json"},
    )  # fmt: skip
    return content


def test_same_seed_same_bytes_across_restarts_and_request_orders() -> None:
    with running_emulator(small_config()) as first:
        forward = [_raw(first, body) for body in REPORTS]
    with running_emulator(small_config()) as second:
        backward = [_raw(second, body) for body in reversed(REPORTS)][::-1]
    assert forward == backward
    with running_emulator(small_config(seed=12)) as other:
        assert _raw(other, REPORTS[0]) != forward[0]


def _paged_keys(service: Any, row_limit: int) -> list[tuple[str, ...]]:
    rows = all_rows(service, dimensions=["page", "query"], row_limit=row_limit)
    return [tuple(r["keys"]) for r in rows]


def test_arbitrary_tie_order_makes_naive_paging_lose_rows(emulator: EmulatorHandle) -> None:
    service = service_for(emulator)
    whole = [tuple(r["keys"]) for r in query(service, dimensions=["page", "query"],
                                             rowLimit=25000)["rows"]]  # fmt: skip
    assert _paged_keys(service, 25) == whole  # stable by default
    emulator.set_switch("arbitrary_tie_order", True)
    paged = _paged_keys(service, 25)
    assert len(paged) == len(whole)
    duplicated = [k for k, n in Counter(paged).items() if n > 1]
    missing = set(whole) - set(paged)
    assert duplicated and missing
    # Order by clicks still holds; only ties move.
    clicks = [r["clicks"] for r in query(service, dimensions=["page", "query"],
                                         rowLimit=25000)["rows"]]  # fmt: skip
    assert clicks == sorted(clicks, reverse=True)


async def _concurrent(base_url: str, n: int) -> list[int]:
    url = f"{base_url}webmasters/v3/sites/sc-domain%3Aexample.com/searchAnalytics/query"
    body = {"startDate": "2026-08-01", "endDate": "2026-08-01", "dimensions": ["page"]}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> int:
            async with session.post(url, json=body, params={"quotaUser": f"u{i % 4}"}) as r:
                await r.read()
                return r.status

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_serves_250_concurrent_connections_and_counts_them() -> None:
    # 400 ms per response, so all requests are in flight together.
    with running_emulator(small_config(latency={"base_ms": 400})) as gsc:
        statuses = asyncio.run(_concurrent(gsc.base_url, 250))
        stats = gsc.stats()
    assert statuses == [200] * 250
    assert stats["peak_concurrent_requests"] >= 200
    assert stats["requests_total"] == 250
    assert stats["requests_by_report"] == {"page": 250}
    assert stats["peak_qpm_by_site"] == {SITE: 250}
    assert stats["peak_qpm_by_user"] == {f"u{i}": 63 if i < 2 else 62 for i in range(4)}
    assert sum(started for _, started, _ in stats["per_second"]) == 250
    assert max(in_flight for _, _, in_flight in stats["per_second"]) >= 200
    assert stats["in_flight"] == 0


def test_stats_count_rows_and_reset(emulator: EmulatorHandle) -> None:
    service = service_for(emulator)
    response = query(service, dimensions=["page"], rowLimit=7)
    stats = emulator.stats()
    assert stats["rows_served"] == len(response["rows"]) == 7
    assert stats["requests_by_site"] == {SITE: 1}
    assert stats["requests_by_report"] == {"page": 1}
    emulator.reset_stats()
    stats = emulator.stats()
    assert stats["requests_total"] == 0 and stats["rows_served"] == 0
    assert stats["quota_rejections"] == {"site": 0, "user": 0, "project": 0, "load": 0}


def test_time_scale_shrinks_the_qpm_window() -> None:
    with running_emulator(small_config(time_scale=60)) as gsc:
        assert gsc.stats()["qpm_window_seconds"] == 1.0
        assert gsc.config["time_scale"] == 60


def _timed_query(gsc: EmulatorHandle) -> float:
    service = service_for(gsc)
    start = time.perf_counter()
    query(service, dimensions=["page"], rowLimit=10)
    return time.perf_counter() - start


def test_latency_is_base_plus_per_row_divided_by_time_scale() -> None:
    latency = {"base_ms": 300, "per_row_us": 10000}  # 10 rows: 0.3 + 0.1 s
    with running_emulator(small_config(latency=latency)) as gsc:
        real = _timed_query(gsc)
    with running_emulator(small_config(latency=latency, time_scale=10)) as gsc:
        fast = _timed_query(gsc)
    assert real >= 0.4
    assert 0.04 <= fast < 0.4


def test_latency_changes_at_runtime() -> None:
    with running_emulator(small_config(latency={"base_ms": 1000})) as gsc:
        assert _timed_query(gsc) >= 1.0
        assert gsc.set_latency(base_ms=0) == {"base_ms": 0, "per_row_us": 0, "jitter_sigma": 0}
        assert _timed_query(gsc) < 1.0
        assert gsc.config["latency"]["base_ms"] == 0
