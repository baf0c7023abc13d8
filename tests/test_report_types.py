"""Every kind of report through `sync_days`: declared reports with filters, discover and Google
News, search appearance and hourly data, on DuckDB and PostgreSQL, each compared row for row with
a direct paged fetch from the emulator over HTTP, and proven by the same checks as every report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest
import re2

from gsc_pipeline import proof
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.reports import Filter, Report, declare
from gsc_pipeline.sync import sync_days
from gsc_pipeline.warehouse import LEDGER_TABLE, ReportDefinitionChanged, open_warehouse
from tests.pipeline_env import direct_fetch, warehouse_rows

TODAY = dt.date(2026, 3, 20)
SITE_URL = "sc-domain:news.example"
FINAL_DAYS = [dt.date(2026, 3, 9), dt.date(2026, 3, 10)]
BRAND = declare(
    "brand_queries_by_country",
    ("query", "country"),
    search_types=("web", "image"),
    filters=(Filter("query", "shoes|coffee", "includingRegex"),),
)
DISCOVER = declare("discover_pages", ("page",), search_types=("discover", "googleNews"))


@pytest.fixture(scope="module")
def emulator():
    config = {
        "seed": 5,
        "today": TODAY.isoformat(),
        "properties": [
            {"site_url": SITE_URL, "page_query_rows_per_day": 600, "pages": 60,
             "search_types": ["web", "image", "discover", "googleNews"]},
        ],
    }  # fmt: skip
    with running_emulator(config) as handle:
        yield handle


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request):
    if request.param == "duckdb":
        return open_warehouse(request.getfixturevalue("duckdb_path"))
    return open_warehouse(request.getfixturevalue("postgres_schema_url"))


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
