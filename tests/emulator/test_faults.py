"""Scripted and seeded random faults, as the real client experiences them."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any

import httplib2
import pytest
from googleapiclient.errors import HttpError

from gsc_pipeline.emulator.testing import EmulatorHandle

from .client import PREFIX_SITE, SITE, query, service_for

DAY = {"startDate": "2026-08-01", "endDate": "2026-08-01"}
PAGE_QUERY = {**DAY, "dimensions": ["date", "page", "query"], "rowLimit": 40}


def _status_of(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(HttpError) as caught:
        call()
    error = json.loads(caught.value.content)["error"]
    return caught.value.resp.status, error["errors"][0]["reason"]


def test_a_scripted_page_fails_twice_then_succeeds(emulator: EmulatorHandle) -> None:
    service = service_for(emulator)
    emulator.script_fault(SITE, date="2026-08-01", start_row=40, times=2, status=503)
    first = query(service, **PAGE_QUERY)
    assert len(first["rows"]) == 40
    second_page = {**PAGE_QUERY, "startRow": 40}
    for _ in range(2):
        assert _status_of(lambda: query(service, **second_page)) == (503, "backendError")
    assert len(query(service, **second_page)["rows"]) == 40
    assert emulator.stats()["faults_injected"] == {"status_503": 2}


def test_scripts_match_only_their_site_date_row_and_report(emulator: EmulatorHandle) -> None:
    service = service_for(emulator)
    emulator.script_fault(SITE, date="2026-08-02", start_row=0, report="date,page,query",
                          status=500)  # fmt: skip
    query(service, **PAGE_QUERY)  # another date
    query(service, PREFIX_SITE, **{**PAGE_QUERY, "startDate": "2026-08-02",
                                   "endDate": "2026-08-02"})  # another site
    query(service, startDate="2026-08-02", endDate="2026-08-02")  # another report
    assert _status_of(
        lambda: query(service, **{**PAGE_QUERY, "startDate": "2026-08-02", "endDate": "2026-08-02"})
    ) == (500, "backendError")


def test_clear_faults(emulator: EmulatorHandle) -> None:
    emulator.script_fault(SITE, times=5)
    emulator.clear_faults()
    assert query(service_for(emulator))["rows"]


def test_connection_reset(emulator: EmulatorHandle) -> None:
    # httplib2 silently retries a dropped connection once, so one reset is invisible...
    emulator.script_fault(SITE, kind="reset", times=1)
    assert query(service_for(emulator))["rows"]
    # ...and two in a row reach the caller.
    emulator.script_fault(SITE, kind="reset", times=2)
    with pytest.raises(ConnectionError):
        query(service_for(emulator))
    assert emulator.stats()["faults_injected"] == {"reset": 3}


def test_truncated_body(emulator: EmulatorHandle) -> None:
    emulator.script_fault(SITE, kind="truncated")
    with pytest.raises(http.client.IncompleteRead):
        query(service_for(emulator))


def test_malformed_json_reaches_the_caller_as_a_string(emulator: EmulatorHandle) -> None:
    emulator.script_fault(SITE, kind="malformed")
    response = query(service_for(emulator))
    # googleapiclient hands back undecodable bodies as str: the caller must check the type.
    assert isinstance(response, str)
    with pytest.raises(ValueError):
        json.loads(response)


def test_slow_response_outlasts_the_client_timeout(
    make_emulator: Callable[..., EmulatorHandle],
) -> None:
    gsc = make_emulator(faults={"slow_seconds": 1.0})
    gsc.script_fault(SITE, kind="slow")
    with pytest.raises(TimeoutError):
        query(service_for(gsc, httplib2.Http(timeout=0.2)))
    assert gsc.stats()["faults_injected"] == {"slow": 1}


def _outcomes(gsc: EmulatorHandle, n: int) -> list[Any]:
    service = service_for(gsc)
    outcomes: list[Any] = []
    for _ in range(n):
        try:
            outcomes.append(type(query(service)).__name__)
        except HttpError as exc:
            outcomes.append(exc.resp.status)
    return outcomes


def test_seeded_random_faults_are_reproducible(
    make_emulator: Callable[..., EmulatorHandle],
) -> None:
    rates = {"seed": 4, "rate_500": 0.1, "rate_503": 0.2, "rate_malformed": 0.1}
    first = _outcomes(make_emulator(faults=rates), 60)
    second = _outcomes(make_emulator(faults=rates), 60)
    assert first == second
    counts = {k: first.count(k) for k in set(first)}
    assert set(counts) == {"dict", "str", 500, 503}
    assert 30 < counts["dict"] < 50


def test_fault_rates_change_at_runtime(emulator: EmulatorHandle) -> None:
    emulator.set_fault_rates(rate_503=1.0)
    assert set(_outcomes(emulator, 3)) == {503}
    emulator.set_fault_rates(rate_503=0.0)
    assert set(_outcomes(emulator, 3)) == {"dict"}
