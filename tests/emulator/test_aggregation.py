"""Every report is a true aggregation of the same facts, with the anonymized-query gap."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import re2

from .client import PREFIX_SITE, SITE, all_rows, query

WEEK = {"startDate": "2026-08-01", "endDate": "2026-08-07"}


def _sum(rows: list[dict[str, Any]], metric: str) -> int:
    return sum(r[metric] for r in rows)


@pytest.mark.parametrize("site", [SITE, PREFIX_SITE])
def test_page_query_sums_le_page_totals_le_property_totals(service: Any, site: str) -> None:
    page_query = all_rows(service, site, dimensions=["date", "page", "query"], **WEEK)
    pages = all_rows(service, site, dimensions=["date", "page"], **WEEK)
    totals = all_rows(service, site, dimensions=["date"], **WEEK)
    assert len(totals) == 7
    for day in {r["keys"][0] for r in totals}:
        pq = [r for r in page_query if r["keys"][0] == day]
        pg = [r for r in pages if r["keys"][0] == day]
        (total,) = [r for r in totals if r["keys"][0] == day]
        assert _sum(pq, "clicks") < _sum(pg, "clicks") <= total["clicks"]
        assert _sum(pq, "impressions") < _sum(pg, "impressions") <= total["impressions"]
        # Per page too: its page x query rows never exceed the page's total.
        by_page: dict[str, int] = defaultdict(int)
        for r in pq:
            by_page[r["keys"][1]] += r["clicks"]
        page_clicks = {r["keys"][1]: r["clicks"] for r in pg}
        assert all(clicks <= page_clicks[page] for page, clicks in by_page.items())


def test_anonymized_share_of_clicks(service: Any) -> None:
    """Configured 25% of clicks come from hidden queries: missing from query rows only."""
    named = _sum(all_rows(service, dimensions=["query"], **WEEK), "clicks")
    total = query(service, **WEEK)["rows"][0]["clicks"]
    assert 0.2 < 1 - named / total < 0.3


@pytest.mark.parametrize("dimension", ["country", "device", "date", "page"])
def test_any_non_query_breakdown_sums_to_the_property_total(service: Any, dimension: str) -> None:
    total = query(service, **WEEK)["rows"][0]
    rows = all_rows(service, dimensions=[dimension], **WEEK)
    assert _sum(rows, "clicks") == total["clicks"]
    assert _sum(rows, "impressions") == total["impressions"]
    weighted = sum(r["position"] * r["impressions"] for r in rows) / total["impressions"]
    assert weighted == pytest.approx(total["position"])


def test_metric_invariants(service: Any) -> None:
    rows = all_rows(service, dimensions=["date", "page", "query", "country", "device"], **WEEK)
    assert rows
    for r in rows:
        assert 0 <= r["clicks"] <= r["impressions"]
        assert r["ctr"] == pytest.approx(r["clicks"] / r["impressions"])
        assert 1 <= r["position"] <= 100


def test_zipf_like_shape(service: Any) -> None:
    pages = all_rows(service, dimensions=["page"], **WEEK)
    impressions = sorted((r["impressions"] for r in pages), reverse=True)
    top_tenth = sum(impressions[: len(impressions) // 10])
    assert top_tenth > 0.3 * sum(impressions)  # uniform would be 0.1


def test_weekly_seasonality(service: Any) -> None:
    rows = all_rows(service, SITE, dimensions=["date"], startDate="2026-06-01",
                    endDate="2026-06-28")  # fmt: skip
    # 2026-06-01 is a Monday; weekends (indexes 5, 6 mod 7) dip.
    weekday = [r["impressions"] for i, r in enumerate(rows) if i % 7 < 5]
    weekend = [r["impressions"] for i, r in enumerate(rows) if i % 7 >= 5]
    assert sum(weekend) / len(weekend) < sum(weekday) / len(weekday)


def _with_filter(service: Any, dimension: str, operator: str, expression: str) -> list[dict]:
    groups = [{"groupType": "and", "filters": [
        {"dimension": dimension, "operator": operator, "expression": expression}]}]
    return all_rows(service, dimensions=[dimension], dimensionFilterGroups=groups, **WEEK)


@pytest.mark.parametrize(
    ("dimension", "operator", "expression", "keep"),
    [
        ("query", "equals", "best to", lambda k: k == "best to"),
        ("query", "notEquals", "best to", lambda k: k != "best to"),
        ("query", "contains", "coffee", lambda k: "coffee" in k),
        ("query", "notContains", "coffee", lambda k: "coffee" not in k),
        ("query", "includingRegex", r"^(best|cheap) \w+$",
         lambda k: re2.search(r"^(best|cheap) \w+$", k)),
        ("query", "excludingRegex", r"best|cheap", lambda k: not re2.search(r"best|cheap", k)),
        ("page", "contains", "/blog/", lambda k: "/blog/" in k),
        ("page", "equals", "https://example.com/", lambda k: k == "https://example.com/"),
        ("country", "equals", "USA", lambda k: k == "usa"),
        ("device", "notEquals", "mobile", lambda k: k != "MOBILE"),
    ],
)  # fmt: skip
def test_filters_select_exactly_the_matching_rows(
    service: Any, dimension: str, operator: str, expression: str, keep: Any
) -> None:
    everything = all_rows(service, dimensions=[dimension], **WEEK)
    expected = [r for r in everything if keep(r["keys"][0])]
    assert expected, "the filter should match something in this data"
    assert len(expected) < len(everything), "and leave something out"
    got = _with_filter(service, dimension, operator, expression)
    assert sorted(map(str, got)) == sorted(map(str, expected))


def test_filters_in_a_group_are_anded_and_groups_too(service: Any) -> None:
    groups = [
        {"filters": [{"dimension": "device", "expression": "DESKTOP"},
                     {"dimension": "country", "expression": "usa"}]},
        {"filters": [{"dimension": "page", "operator": "contains", "expression": "/blog/"}]},
    ]  # fmt: skip
    rows = all_rows(service, dimensions=["device", "country", "page"],
                    dimensionFilterGroups=groups, **WEEK)  # fmt: skip
    assert rows
    assert all(r["keys"][:2] == ["DESKTOP", "usa"] and "/blog/" in r["keys"][2] for r in rows)


def test_query_filter_drops_anonymized_clicks_from_totals(service: Any) -> None:
    total = query(service, **WEEK)["rows"][0]["clicks"]
    any_query = [{"filters": [{"dimension": "query", "operator": "notContains",
                               "expression": "zzz-never"}]}]  # fmt: skip
    filtered = query(service, dimensionFilterGroups=any_query, **WEEK)["rows"][0]["clicks"]
    named = _sum(all_rows(service, dimensions=["query"], **WEEK), "clicks")
    assert filtered == named < total


def test_aggregation_types(service: Any) -> None:
    assert query(service)["responseAggregationType"] == "byProperty"
    assert query(service, dimensions=["page"])["responseAggregationType"] == "byPage"
    assert query(service, aggregationType="byPage")["responseAggregationType"] == "byPage"
    by_country_page = query(service, dimensions=["country"], aggregationType="byPage")
    assert by_country_page["responseAggregationType"] == "byPage"
    assert query(service, type="discover")["responseAggregationType"] == "byPage"
    page_filter = [{"filters": [{"dimension": "page", "operator": "contains",
                                 "expression": "/"}]}]  # fmt: skip
    assert query(service, dimensionFilterGroups=page_filter)["responseAggregationType"] == "byPage"


def test_search_appearance_grouping(service: Any) -> None:
    rows = all_rows(service, dimensions=["searchAppearance"], **WEEK)
    assert rows
    assert all(r["keys"][0].isupper() for r in rows)
    total = query(service, **WEEK)["rows"][0]["clicks"]
    assert _sum(rows, "clicks") < total
