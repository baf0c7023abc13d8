"""dataState final vs all, firstIncompleteDate, the clock, hourly data and the 16-month window."""

from __future__ import annotations

import json
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from gsc_pipeline.emulator.testing import EmulatorHandle

from .client import all_rows, query, service_for

# Today is 2026-08-18 and final_lag_days 3: the 16th, 17th and 18th are still incomplete.
RECENT = {"startDate": "2026-08-12", "endDate": "2026-08-18", "dimensions": ["date"]}


def _by_date(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {r["keys"][0]: r["clicks"] for r in rows}


def test_final_omits_incomplete_days_all_includes_them(service: Any) -> None:
    final = query(service, **RECENT)
    assert list(_by_date(final["rows"])) == [f"2026-08-{d}" for d in range(12, 16)]
    assert "metadata" not in final
    fresh = query(service, dataState="all", **RECENT)
    assert list(_by_date(fresh["rows"])) == [f"2026-08-{d}" for d in range(12, 19)]
    assert fresh["metadata"] == {"firstIncompleteDate": "2026-08-16"}
    # Complete days are identical in both states.
    assert {d: c for d, c in _by_date(fresh["rows"]).items() if d < "2026-08-16"} == _by_date(
        final["rows"]
    )


def test_metadata_only_when_grouped_by_date_over_incomplete_days(service: Any) -> None:
    assert "metadata" not in query(service, dataState="all", startDate="2026-08-16",
                                   endDate="2026-08-18")  # fmt: skip
    assert "metadata" not in query(service, dataState="all", startDate="2026-08-01",
                                   endDate="2026-08-10", dimensions=["date"])  # fmt: skip


def test_fresh_days_grow_then_become_final(emulator: EmulatorHandle) -> None:
    service = service_for(emulator)
    day = {"startDate": "2026-08-17", "endDate": "2026-08-17", "dimensions": ["date"]}
    first = query(service, dataState="all", **day)["rows"][0]["clicks"]
    assert "rows" not in query(service, **day)
    emulator.set_today("2026-08-19")
    later = query(service, dataState="all", **day)["rows"][0]["clicks"]
    assert later > first
    emulator.set_today("2026-08-20")
    final = query(service, **day)
    assert final["rows"][0]["clicks"] > later
    assert query(service, dataState="all", **day)["rows"] == final["rows"]


def test_snake_case_metadata_switch(emulator: EmulatorHandle) -> None:
    emulator.set_switch("metadata_key_case", "snake")
    response = query(service_for(emulator), dataState="all", **RECENT)
    assert response["metadata"] == {"first_incomplete_date": "2026-08-16"}


def test_future_days_are_empty(service: Any) -> None:
    assert "rows" not in query(service, startDate="2026-08-19", endDate="2026-09-30",
                               dataState="all")  # fmt: skip


def test_sixteen_month_window_clamps_by_default(service: Any) -> None:
    rows = all_rows(service, startDate="2025-04-10", endDate="2025-04-25", dimensions=["date"])
    assert rows[0]["keys"][0] == "2025-04-18"
    assert "rows" not in query(service, startDate="2024-01-01", endDate="2024-01-31")


def test_old_dates_error_switch(emulator: EmulatorHandle) -> None:
    emulator.set_switch("old_dates", "error")
    with pytest.raises(HttpError) as caught:
        query(service_for(emulator), startDate="2025-04-10", endDate="2025-04-25")
    assert caught.value.resp.status == 400
    assert "retention" in json.loads(caught.value.content)["error"]["message"]
    assert "rows" in query(service_for(emulator), startDate="2025-04-18", endDate="2025-04-25")


def test_hourly_data_covers_the_last_ten_days(service: Any) -> None:
    rows = all_rows(service, startDate="2026-08-01", endDate="2026-08-18",
                    dimensions=["hour"], dataState="hourly_all")  # fmt: skip
    hours = [r["keys"][0] for r in rows]
    assert hours == sorted(hours)
    assert hours[0].startswith("2026-08-09T") and hours[-1].startswith("2026-08-18T")
    assert hours[0].endswith("-07:00")
    response = query(service, startDate="2026-08-16", endDate="2026-08-16", dimensions=["hour"],
                     dataState="hourly_all")  # fmt: skip
    assert response["metadata"] == {"firstIncompleteHour": "2026-08-16T00:00:00-07:00"}
    day_total = query(service, startDate="2026-08-12", endDate="2026-08-12")["rows"][0]
    hourly = all_rows(service, startDate="2026-08-12", endDate="2026-08-12", dimensions=["hour"],
                      dataState="hourly_all")  # fmt: skip
    assert len(hourly) == 24
    assert sum(r["clicks"] for r in hourly) == day_total["clicks"]
