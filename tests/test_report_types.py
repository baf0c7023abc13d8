"""Every kind of report through `sync_days`: declared reports with filters, discover and Google
News, search appearance and hourly data, on DuckDB and PostgreSQL, each compared row for row with
a direct paged fetch from the emulator over HTTP, and proven by the same checks as every report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import dagster as dg
import pandas as pd
import pytest
import re2

from gsc_pipeline import proof
from gsc_pipeline.config import parse_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import FETCH_JOB
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.reports import (
    HOURLY_PAGE,
    HOURLY_SITE,
    SEARCH_APPEARANCE,
    Filter,
    Report,
    declare,
)
from gsc_pipeline.sync import sync_days
from gsc_pipeline.warehouse import LEDGER_TABLE, ReportDefinitionChanged
from tests.pipeline_env import direct_fetch, warehouse_rows

TODAY = dt.date(2026, 3, 20)
SITE_URL = "sc-domain:news.example"
# A property whose API answers byPage and byProperty with a 400.
STRICT = "sc-domain:strict.example"
FINAL_DAYS = [dt.date(2026, 3, 9), dt.date(2026, 3, 10)]
BRAND = declare(
    "brand_queries_by_country",
    ("query", "country"),
    search_types=("web", "image"),
    filters=(Filter("query", "shoes|coffee", "includingRegex"),),
)
DISCOVER = declare("discover_pages", ("page",), search_types=("discover", "googleNews"))
APPEARANCE = dataclasses.replace(SEARCH_APPEARANCE, search_types=("web", "image"))
# The emulator's today is 2026-03-20 with a 3-day lag: Google's first incomplete day is 03-18.
COMPLETE_HOUR_DAY = dt.date(2026, 3, 16)
INCOMPLETE_HOUR_DAY = dt.date(2026, 3, 18)
OUTSIDE_HOURLY_WINDOW = dt.date(2026, 3, 8)


@pytest.fixture(scope="module")
def emulator():
    config = {
        "seed": 5,
        "today": TODAY.isoformat(),
        "properties": [
            {"site_url": SITE_URL, "page_query_rows_per_day": 600, "pages": 60,
             "search_types": ["web", "image", "discover", "googleNews"]},
            {"site_url": STRICT, "page_query_rows_per_day": 100, "pages": 20,
             "rejected_aggregations": ["byPage", "byProperty"]},
        ],
    }  # fmt: skip
    with running_emulator(config) as handle:
        yield handle


def _sync(emulator, warehouse, report: Report, days: list[dt.date], data_state: str = "final"):
    client = GscClient(emulator.base_url, qpm_budget=1e6, timeout=30)
    return sync_days(
        client, warehouse, SITE_URL, report, days, run_id="test", data_state=data_state
    )


def _assert_stored_as_served(emulator, warehouse, report: Report, days: list[dt.date]) -> None:
    for day in days:
        expected = direct_fetch(emulator.base_url, SITE_URL, report, day)
        assert len(expected) > 0, (report.name, day)
        pd.testing.assert_frame_equal(warehouse_rows(warehouse, SITE_URL, report, day), expected)
    outcomes = proof.report_checks(warehouse, SITE_URL, report, days)
    assert all(o.passed for o in outcomes), [o for o in outcomes if not o.passed]


def test_declared_report_with_a_filter_stores_what_the_api_serves(emulator, warehouse):
    _sync(emulator, warehouse, BRAND, FINAL_DAYS)
    _assert_stored_as_served(emulator, warehouse, BRAND, FINAL_DAYS)
    stored = warehouse.read_sql(f"SELECT query, search_type FROM {BRAND.table}")
    # The filter reached Google: every stored query matches it, both search types are there.
    assert all(re2.search("shoes|coffee", q) for q in stored["query"])
    assert set(stored["search_type"]) == {"web", "image"}
    unfiltered = dataclasses.replace(BRAND, filters=())
    everything = direct_fetch(emulator.base_url, SITE_URL, unfiltered, FINAL_DAYS[0])
    assert len(everything) > len(stored) / len(FINAL_DAYS)


def test_checks_fail_on_a_declared_report_with_a_row_removed(emulator, warehouse):
    _sync(emulator, warehouse, BRAND, FINAL_DAYS)
    with warehouse.transaction() as conn:
        conn.execute(
            f"DELETE FROM {BRAND.table} WHERE date = ? AND query = "
            f"(SELECT MIN(query) FROM {BRAND.table} WHERE date = ?)",
            [FINAL_DAYS[1], FINAL_DAYS[1]],
        )
    outcome = proof.rows_match_ledger(warehouse, SITE_URL, BRAND, FINAL_DAYS)
    assert not outcome.passed
    assert outcome.bad_days == (FINAL_DAYS[1],)


def test_discover_and_google_news_store_pages_without_a_position(emulator, warehouse):
    _sync(emulator, warehouse, DISCOVER, FINAL_DAYS)
    _assert_stored_as_served(emulator, warehouse, DISCOVER, FINAL_DAYS)
    stored = warehouse.read_sql(
        f"SELECT search_type, COUNT(*) AS n, COUNT(position) AS positions FROM {DISCOVER.table} "
        "GROUP BY search_type ORDER BY search_type"
    )
    assert stored["search_type"].tolist() == ["discover", "googleNews"]
    # Google sends no position for discover/googleNews: stored as NULL, never as 0.
    assert stored["positions"].tolist() == [0, 0]
    assert (stored["n"] > 0).all()


def test_changing_a_declared_reports_filters_is_refused(emulator, warehouse):
    _sync(emulator, warehouse, BRAND, FINAL_DAYS[:1])
    before = warehouse.read_sql(f"SELECT COUNT(*) AS n FROM {BRAND.table}")["n"].iloc[0]
    changed = dataclasses.replace(BRAND, filters=(Filter("query", "tea", "contains"),))
    with pytest.raises(ReportDefinitionChanged) as err:
        _sync(emulator, warehouse, changed, FINAL_DAYS)
    message = str(err.value)
    assert "brand_queries_by_country" in message and "give the changed report a new name" in message
    assert warehouse.read_sql(f"SELECT COUNT(*) AS n FROM {BRAND.table}")["n"].iloc[0] == before
    ledger_days = warehouse.read_sql(f"SELECT DISTINCT date FROM {LEDGER_TABLE}")
    assert len(ledger_days) == 1


def test_search_appearance_is_fetched_per_day_grouped_by_appearance_alone(emulator, warehouse):
    _sync(emulator, warehouse, APPEARANCE, FINAL_DAYS)
    _assert_stored_as_served(emulator, warehouse, APPEARANCE, FINAL_DAYS)
    stored = warehouse.read_sql(
        f"SELECT date, search_type, search_appearance FROM {APPEARANCE.table} "
        "ORDER BY date, search_type, search_appearance"
    )
    assert sorted(set(stored["date"].astype(str))) == [d.isoformat() for d in FINAL_DAYS]
    assert set(stored["search_type"]) == {"web", "image"}
    assert set(stored["search_appearance"]) <= {
        "AMP_BLUE_LINK", "FAQ_RICH_RESULT", "PRODUCT_SNIPPETS", "REVIEW_SNIPPET", "VIDEO"
    }  # fmt: skip
    # One request per day and search type, without a date dimension (Google refuses one).
    ledger = warehouse.read_sql(f"SELECT * FROM {LEDGER_TABLE} WHERE report = 'search_appearance'")
    assert len(ledger) == len(FINAL_DAYS) * 2


def _hourly_ledger(warehouse, report: Report) -> dict[str, tuple[str, str]]:
    ledger = warehouse.read_sql(
        f"SELECT date, data_state, first_incomplete_date FROM {LEDGER_TABLE} WHERE report = ?",
        [report.name],
    )
    return {
        str(r.date)[:10]: (r.data_state, str(r.first_incomplete_date)[:10])
        for r in ledger.itertuples(index=False)
    }


def test_hourly_reports_store_every_hour_google_serves(emulator, warehouse):
    days = [OUTSIDE_HOURLY_WINDOW, COMPLETE_HOUR_DAY, INCOMPLETE_HOUR_DAY]
    for report in (HOURLY_SITE, HOURLY_PAGE):
        _sync(emulator, warehouse, report, days)
        _assert_stored_as_served(emulator, warehouse, report, days[1:])
        # Google's hourly window is ~10 days: an older day is stored empty, as served.
        assert warehouse_rows(warehouse, SITE_URL, report, OUTSIDE_HOURLY_WINDOW).empty
        # Every page says HOURLY_ALL; the first incomplete hour's day marks 03-18 as partial.
        assert _hourly_ledger(warehouse, report) == {
            "2026-03-08": ("hourly_all", "2026-03-18"),
            "2026-03-16": ("hourly_all", "2026-03-18"),
            "2026-03-18": ("hourly_all", "2026-03-18"),
        }
        outcome = proof.hours_of_day(warehouse, SITE_URL, report, days)
        assert outcome.passed
        assert outcome.metadata["incomplete_days"] == 1
        assert outcome.metadata["empty_days"] == 1
    hours = warehouse.read_sql(
        f"SELECT hour FROM {HOURLY_SITE.table} WHERE date = ? ORDER BY hour", [COMPLETE_HOUR_DAY]
    )["hour"]
    # Pacific midnight to 23:00 (PDT, UTC-7), each hour once.
    assert [pd.Timestamp(h).tz_convert("UTC").isoformat() for h in hours[[0, 23]]] == [
        "2026-03-16T07:00:00+00:00", "2026-03-17T06:00:00+00:00"
    ]  # fmt: skip
    assert len(hours) == 24


def test_hours_of_day_fails_on_an_hour_outside_its_day_or_stored_twice(emulator, warehouse):
    _sync(emulator, warehouse, HOURLY_SITE, [COMPLETE_HOUR_DAY])
    good = proof.hours_of_day(warehouse, SITE_URL, HOURLY_SITE)
    assert good.passed and good.metadata["hours_without_rows"] == 0
    with warehouse.transaction() as conn:
        conn.execute(
            f"UPDATE {HOURLY_SITE.table} SET hour = hour + INTERVAL '1 day' WHERE hour = "
            f"(SELECT MIN(hour) FROM {HOURLY_SITE.table})"
        )
    moved = proof.hours_of_day(warehouse, SITE_URL, HOURLY_SITE)
    assert not moved.passed and moved.bad_days == (COMPLETE_HOUR_DAY,)
    assert moved.metadata["hours_outside_their_day"] == 1
    _sync(emulator, warehouse, HOURLY_SITE, [COMPLETE_HOUR_DAY])
    assert proof.hours_of_day(warehouse, SITE_URL, HOURLY_SITE).passed
    with warehouse.transaction() as conn:
        conn.execute(
            f"INSERT INTO {HOURLY_SITE.table} SELECT * FROM {HOURLY_SITE.table} WHERE hour = "
            f"(SELECT MAX(hour) FROM {HOURLY_SITE.table})"
        )
    doubled = proof.hours_of_day(warehouse, SITE_URL, HOURLY_SITE)
    assert not doubled.passed and doubled.bad_days == (COMPLETE_HOUR_DAY,)
    assert doubled.metadata["doubled_hours"] == 1


def test_incomplete_hours_are_flagged_until_replaced_once_google_completes_them(
    emulator, warehouse
):
    _sync(emulator, warehouse, HOURLY_SITE, [INCOMPLETE_HOUR_DAY])
    partial = warehouse_rows(warehouse, SITE_URL, HOURLY_SITE, INCOMPLETE_HOUR_DAY)
    assert proof.incomplete_hours_replaced(warehouse, SITE_URL, HOURLY_SITE).passed
    emulator.set_today("2026-03-23")  # Google's first incomplete day moves to 03-21
    try:
        # Any later fetch for the site records Google's new word on finality.
        _sync(emulator, warehouse, HOURLY_SITE, [dt.date(2026, 3, 19)])
        stale = proof.incomplete_hours_replaced(warehouse, SITE_URL, HOURLY_SITE)
        assert not stale.passed and stale.bad_days == (INCOMPLETE_HOUR_DAY,)
        _sync(emulator, warehouse, HOURLY_SITE, [INCOMPLETE_HOUR_DAY])
        assert proof.incomplete_hours_replaced(warehouse, SITE_URL, HOURLY_SITE).passed
        complete = warehouse_rows(warehouse, SITE_URL, HOURLY_SITE, INCOMPLETE_HOUR_DAY)
        pd.testing.assert_frame_equal(
            complete, direct_fetch(emulator.base_url, SITE_URL, HOURLY_SITE, INCOMPLETE_HOUR_DAY)
        )
        assert complete["clicks"].sum() > partial["clicks"].sum()
        checked = proof.hours_of_day(warehouse, SITE_URL, HOURLY_SITE).metadata
        assert checked["checked_partitions"] == 2
    finally:
        emulator.set_today(TODAY.isoformat())


def test_a_property_rejecting_an_aggregation_type_is_told_to_use_auto(
    monkeypatch, emulator, tmp_path
):
    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    tags = {"dagster/asset_partition_range_start": "2026-03-09",
            "dagster/asset_partition_range_end": "2026-03-10"}  # fmt: skip

    def run(**prop: object) -> dg.ExecuteInProcessResult:
        prop = {"site_url": STRICT, "reports": ["page", "site"], "sitemaps": False, **prop}
        config = parse_config({"start_date": "2026-01-01", "properties": [prop]})
        with dg.instance_for_test() as instance:
            return build_definitions(config).resolve_job_def(FETCH_JOB).execute_in_process(
                instance=instance, tags=tags, raise_on_error=False
            )

    failed = run()
    assert not failed.success
    messages = [str(e.step_failure_data.error) for e in failed.all_events if e.is_step_failure]
    assert any(
        "Google refuses aggregation_type 'byPage' for this property" in m
        and "Set `aggregation_type: auto` on this property" in m
        for m in messages
    ), messages
    assert run(aggregation_type="auto").success
