"""Per-site, per-user and per-project QPM buckets and the load quota, under bursts."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from gsc_pipeline.emulator.quotas import TokenBucket
from gsc_pipeline.emulator.testing import EmulatorHandle

from .client import PREFIX_SITE, SITE, service_for

DAY = {"startDate": "2026-08-01", "endDate": "2026-08-01"}


def _burst(service: Any, n: int, site: str = SITE, body: dict | None = None,
           **params: Any) -> Counter[Any]:  # fmt: skip
    """Status (and error reason) of n back-to-back queries."""
    outcomes: Counter[Any] = Counter()
    for _ in range(n):
        try:
            service.searchanalytics().query(siteUrl=site, body=body or DAY, **params).execute()
            outcomes[200] += 1
        except HttpError as exc:
            error = json.loads(exc.content)["error"]
            outcomes[(exc.resp.status, error["errors"][0]["reason"], error["message"])] += 1
    return outcomes


QPS_429 = (429, "rateLimitExceeded", "Search Analytics QPS quota exceeded.")


def test_site_quota_rejects_a_burst_beyond_it(make_emulator: Callable[..., EmulatorHandle]) -> None:
    gsc = make_emulator(quotas={"site_qpm": 30})
    service = service_for(gsc)
    assert _burst(service, 36) == {200: 30, QPS_429: 6}
    # Another site has its own bucket.
    assert _burst(service, 5, site=PREFIX_SITE) == {200: 5}
    stats = gsc.stats()
    assert stats["quota_rejections"]["site"] == 6
    assert stats["requests_by_status"] == {"200": 35, "429": 6}
    assert stats["peak_qpm_by_site"][SITE] == 36  # arrivals, rejected ones included


def test_user_quota_spans_sites_and_keys_on_quota_user(
    make_emulator: Callable[..., EmulatorHandle],
) -> None:
    gsc = make_emulator(quotas={"user_qpm": 20})
    service = service_for(gsc)
    assert _burst(service, 12, quotaUser="alice") == {200: 12}
    assert _burst(service, 12, site=PREFIX_SITE, quotaUser="alice") == {200: 8, QPS_429: 4}
    assert _burst(service, 5, quotaUser="bob") == {200: 5}
    stats = gsc.stats()
    assert stats["quota_rejections"]["user"] == 4
    assert stats["peak_qpm_by_user"] == {"alice": 24, "bob": 5}


def test_project_quota(make_emulator: Callable[..., EmulatorHandle]) -> None:
    gsc = make_emulator(quotas={"project_qpm": 10})
    service = service_for(gsc)
    assert _burst(service, 6, quotaUser="a") + _burst(service, 6, PREFIX_SITE, quotaUser="b") == {
        200: 10, QPS_429: 2,
    }  # fmt: skip
    assert gsc.stats()["quota_rejections"]["project"] == 2


def test_qps_status_403_switch(make_emulator: Callable[..., EmulatorHandle]) -> None:
    gsc = make_emulator(quotas={"site_qpm": 3, "qps_status": 403})
    assert _burst(service_for(gsc), 4) == {
        200: 3, (403, "quotaExceeded", "Search Analytics QPS quota exceeded."): 1,
    }  # fmt: skip


def test_load_quota_charges_page_and_query_grouping_more(
    make_emulator: Callable[..., EmulatorHandle],
) -> None:
    gsc = make_emulator(quotas={"load": {"enabled": True, "short_window_budget": 50}})
    service = service_for(gsc)
    heavy = {**DAY, "dimensions": ["page", "query"]}  # costs 9 per day
    outcomes = _burst(service, 7, body=heavy)
    assert outcomes[200] == 5
    ((status, reason, message),) = [k for k in outcomes if k != 200]
    assert (status, reason) == (403, "quotaExceeded")
    assert message.startswith("Search Analytics load quota exceeded.")
    assert _burst(service, 5, body=DAY) == {200: 5}  # 45 + 5 = 50, exactly the budget
    assert gsc.stats()["quota_rejections"]["load"] == 2
    gsc.reset_quotas()
    assert _burst(service, 1, body=heavy) == {200: 1}


def test_load_quota_long_ranges_cost_more(make_emulator: Callable[..., EmulatorHandle]) -> None:
    gsc = make_emulator(quotas={"load": {"enabled": True, "short_window_budget": 1000,
                                         "daily_budget": 60}})  # fmt: skip
    month = {"startDate": "2026-07-01", "endDate": "2026-07-30", "dimensions": ["date"]}
    assert _burst(service_for(gsc), 3, body=month)[200] == 2


@pytest.mark.parametrize("time_scale", [1.0, 10.0])
def test_bucket_refills_at_the_scaled_quota_rate(time_scale: float) -> None:
    bucket = TokenBucket(per_minute=60, time_scale=time_scale, now=0.0)
    for _ in range(60):
        assert bucket.available(0.0)
        bucket.take()
    assert not bucket.available(0.0)
    # One token per (scaled) second.
    assert not bucket.available(0.9 / time_scale)
    assert bucket.available(1.0 / time_scale)
    bucket.take()
    assert bucket.available(1000.0)
    assert bucket.tokens == 60  # never above capacity


def test_quotas_change_at_runtime_with_full_buckets(
    make_emulator: Callable[..., EmulatorHandle],
) -> None:
    gsc = make_emulator(quotas={"site_qpm": 30})
    service = service_for(gsc)
    assert _burst(service, 31) == {200: 30, QPS_429: 1}
    assert gsc.set_quotas(site_qpm=40)["site_qpm"] == 40
    assert gsc.config["quotas"]["site_qpm"] == 40
    assert _burst(service, 41) == {200: 40, QPS_429: 1}
    with pytest.raises(ValueError, match="site_qpm"):
        gsc.set_quotas(site_qpm=0)
