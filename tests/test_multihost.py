"""Run workers on separate hosts (network namespaces) share one pool and one quota budget.

The proof needs root and iproute2 (network namespaces) and PostgreSQL. Where namespaces cannot
be made it skips saying why; in CI (`GSC_REQUIRE_NETNS=1`, set by .ci/run) that is a failure.
Its measurements (steps at once from step events, the busiest window) are checked here on
fabricated events too: a pool that was not applied must show more steps than the limit.
"""

from __future__ import annotations

import logging
import os
import socket

import pytest

from gsc_pipeline.tools.multihost import (
    Plan,
    _window_peak,
    netns_unavailable_reason,
    peak_overlap,
    prove,
    report,
    tcp_forward,
)


def _steps(*intervals: tuple[str, float, float]) -> list[tuple[str, str, str, float]]:
    """STEP_START / STEP_SUCCESS events of one step per run: (run, start, end)."""
    out = []
    for run, start, end in intervals:
        out += [(run, "gsc__p", "STEP_START", start), (run, "gsc__p", "STEP_SUCCESS", end)]
    return out


def test_steps_at_once_counts_overlapping_steps_of_different_runs():
    # Three hosts' steps overlapping (no pool applied): the measurement must say 3, not hide it.
    assert peak_overlap(_steps(("a", 0, 10), ("b", 1, 11), ("c", 2, 12))) == 3
    # A pool of 2: the third starts after the first ended.
    assert peak_overlap(_steps(("a", 0, 10), ("b", 1, 11), ("c", 10.5, 20))) == 2


def test_steps_at_once_an_end_and_a_start_at_one_instant_do_not_overlap():
    # The slot is freed after the end event is written and claimed before the next start.
    assert peak_overlap(_steps(("a", 0, 10), ("b", 10, 20))) == 1


def test_steps_at_once_a_retried_step_is_two_attempts_not_one_without_end():
    # Step up for retry (its slot freed), then restarted after two other steps ran: on main's
    # measurement the first STEP_START never ended, so it counted 3 steps at once.
    events = [
        ("a", "gsc__p", "STEP_START", 0.0),
        ("a", "gsc__p", "STEP_UP_FOR_RETRY", 1.0),
        *_steps(("b", 2, 4), ("c", 3, 5)),
        ("a", "gsc__p", "STEP_RESTARTED", 6.0),
        ("a", "gsc__p", "STEP_SUCCESS", 7.0),
    ]
    assert peak_overlap(events) == 2


def test_steps_at_once_an_attempt_without_an_end_lasts_until_its_run_ends():
    # A killed step process writes no end: it counts until its run's last event (a run event,
    # step key ""), not for ever.
    events = [
        ("a", "gsc__p", "STEP_START", 0.0),
        ("a", "", "PIPELINE_FAILURE", 3.0),
        *_steps(("b", 5, 10), ("c", 6, 11)),
    ]
    assert peak_overlap(events) == 2
    assert peak_overlap([*events, ("d", "gsc__p", "STEP_START", 2.0)]) == 2


def test_window_peak_sums_consecutive_seconds():
    per_second = [[100, 5, 1], [101, 7, 2], [103, 9, 2], [110, 1, 1]]
    assert _window_peak(per_second, 3) == 16  # 101..103
    assert _window_peak(per_second, 6) == 21
    assert _window_peak([], 6) == 0


def test_plan_rejects_what_cannot_run():
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        Plan(rounds=0)
    with pytest.raises(ValueError, match="at most 200 hosts"):
        Plan(hosts=201)


def test_the_forward_stops_quietly_with_a_connection_open(caplog):
    """A host's kept PostgreSQL connection is still open when the proof ends: stopping the
    forward ends it without asyncio reporting "Exception in callback" (a traceback on stderr)."""
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        with socket.create_server(("127.0.0.1", 0)) as free:
            listen = free.getsockname()
        caplog.set_level(logging.ERROR, logger="asyncio")
        with tcp_forward(listen, upstream.getsockname()):
            client = socket.create_connection(listen)
            far_end, _ = upstream.accept()
            client.sendall(b"ping")
            assert far_end.recv(4) == b"ping"
        client.close()
        far_end.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


@pytest.mark.slow
@pytest.mark.xdist_group("multihost")
@pytest.mark.timeout(900)  # 10 rounds: ~3-5 min on 2 loaded cores (docs/bench/multihost.md)
def test_hosts_share_one_pool_and_one_budget(postgres_url, tmp_path):
    reason = netns_unavailable_reason()
    if reason:
        if os.environ.get("GSC_REQUIRE_NETNS") == "1":
            pytest.fail(f"{reason}; CI requires network namespaces (or unset GSC_REQUIRE_NETNS)")
        pytest.skip(f"{reason}: the multi-host proof needs network namespaces")
    # The plan `gsc-pipeline multihost` runs: 10 rounds on one setup, each asserted on its own.
    plan = Plan()
    assert plan.rounds == 10 and plan.hosts == 3
    outcome = prove(plan, tmp_path, admin_url=postgres_url)
    text = report(outcome, "tests/test_multihost.py")
    print(text)  # the per-round table, in the test's output when it fails
    assert len(outcome.rounds) == plan.rounds, text
    addresses = [address for _, address in outcome.hosts]
    for r in outcome.rounds:
        stats = r.stats
        assert r.exit_codes == [0, 0, 0], text
        # Three peers: the runs really came from three network namespaces.
        assert sorted(stats["peak_qpm_by_user"]) == addresses, text
        # The pool held across hosts: never more fetch steps than slots, nor requests than
        # they allow.
        assert 1 <= r.peak_steps <= plan.pool_limit, text
        assert stats["peak_concurrent_requests"] <= plan.in_flight_limit, text
        # One budget across hosts: the busiest emulated minute of all hosts together stays
        # inside the credential's one bucket (budget, burst, and requests already on their way).
        assert 0 < r.window_peak <= plan.arrival_limit, text
        # ... because every host drew from the same rows: one credential bucket, one per site.
        credential = [key for key in r.buckets if not key.startswith("site ")]
        assert len(credential) == 1 and len(r.buckets) == 1 + plan.hosts, text
        assert sum(stats["quota_rejections"].values()) == 0, text
    assert outcome.rows > 0
    assert outcome.ok
    assert "**10 of 10 rounds passed.**" in text
