"""Run workers on separate hosts (network namespaces) share one pool and one quota budget.

Needs root and iproute2 (network namespaces) and PostgreSQL. Where namespaces cannot be made
the test skips saying why; in CI (`GSC_REQUIRE_NETNS=1`, set by .ci/run) that is a failure.
"""

from __future__ import annotations

import os

import pytest

from gsc_pipeline.tools.multihost import Plan, netns_unavailable_reason, prove, report

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multihost")]


def test_hosts_share_one_pool_and_one_budget(postgres_url, tmp_path):
    reason = netns_unavailable_reason()
    if reason:
        if os.environ.get("GSC_REQUIRE_NETNS") == "1":
            pytest.fail(f"{reason}; CI requires network namespaces (or unset GSC_REQUIRE_NETNS)")
        pytest.skip(f"{reason}: the multi-host proof needs network namespaces")
    plan = Plan(hosts=3, days=8)
    outcome = prove(plan, tmp_path, admin_url=postgres_url)
    assert outcome.exit_codes == [0, 0, 0]
    stats = outcome.stats
    # Three peers: the runs really came from three network namespaces.
    assert sorted(stats["peak_qpm_by_user"]) == [address for _, address in outcome.hosts]
    # The pool held across hosts: never more fetch steps than slots, nor requests than they allow.
    assert 1 <= outcome.peak_steps <= plan.pool_limit
    assert stats["peak_concurrent_requests"] <= plan.pool_limit * plan.step_concurrency
    # One budget across hosts: the busiest emulated minute of all hosts together stays inside
    # the credential's one bucket (its budget plus the limiter's burst of 2).
    assert 0 < outcome.window_peak <= plan.budget_limit
    # ... because every host drew from the same rows: one credential bucket, one per site.
    credential = [key for key in outcome.buckets if not key.startswith("site ")]
    assert len(credential) == 1 and len(outcome.buckets) == 1 + plan.hosts
    assert sum(stats["quota_rejections"].values()) == 0
    assert outcome.rows > 0
    assert outcome.ok
    assert "| quota rejections |" in report(outcome)
