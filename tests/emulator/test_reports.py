"""Report semantics: keys, ordering, paging, the daily cap, empty answers, site addressing."""

from __future__ import annotations

import json
from typing import Any

import httplib2
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from gsc_pipeline.emulator.testing import EmulatorHandle, running_emulator

from .client import (
    PREFIX_SITE,
    SITE,
    UNVERIFIED,
    all_rows,
    query,
    service_for,
    small_config,
)


def test_keys_follow_the_requested_dimension_order(service: Any) -> None:
    rows = query(service, dimensions=["device", "country", "date"], rowLimit=5)["rows"]
    for row in rows:
        device, country, date = row["keys"]
        assert device in {"MOBILE", "DESKTOP", "TABLET"}
        assert len(country) == 3 and country.islower()
        assert date == "2026-08-01"


def test_no_dimensions_is_one_totals_row_without_keys(service: Any) -> None:
    response = query(service)
    assert len(response["rows"]) == 1
    assert "keys" not in response["rows"][0]
    assert response["responseAggregationType"] == "byProperty"


def test_rows_are_clicks_descending(service: Any) -> None:
    rows = all_rows(service, dimensions=["page", "query"])
    clicks = [r["clicks"] for r in rows]
    assert clicks == sorted(clicks, reverse=True)
    assert len(rows) > 100


def test_date_ascending_first_then_clicks_descending(service: Any) -> None:
    rows = all_rows(service, startDate="2026-07-20", endDate="2026-07-26",
                    dimensions=["page", "date"])  # fmt: skip
    dates = [r["keys"][1] for r in rows]
    assert dates == sorted(dates)
    assert len(set(dates)) == 7
    for day in set(dates):
        clicks = [r["clicks"] for r in rows if r["keys"][1] == day]
        assert clicks == sorted(clicks, reverse=True)


def test_paging_concatenates_to_the_whole_report(service: Any) -> None:
    whole = query(service, dimensions=["page", "query"], rowLimit=25000)["rows"]
    paged = all_rows(service, dimensions=["page", "query"], row_limit=37)
    assert paged == whole
    assert len(whole) % 37 != 0  # the last page was short, which is what ended paging


def test_start_row_past_the_end_has_no_rows_key(service: Any) -> None:
    response = query(service, dimensions=["query"], startRow=10**6)
    assert "rows" not in response
    assert response["responseAggregationType"] == "byProperty"


def test_empty_answers_have_no_rows_key(service: Any) -> None:
    assert "rows" not in query(service, startDate="2030-01-01", endDate="2030-01-02")
    # A type the property has no data for.
    assert "rows" not in query(service, PREFIX_SITE, type="news")
    no_match = [{"filters": [{"dimension": "query", "expression": "no such query"}]}]
    assert "rows" not in query(service, dimensions=["query"], dimensionFilterGroups=no_match)


def test_daily_cap_keeps_the_top_rows_per_day() -> None:
    with running_emulator(small_config(max_rows_per_day=50)) as gsc:
        service = service_for(gsc)
        rows = all_rows(service, startDate="2026-08-01", endDate="2026-08-03",
                        dimensions=["date", "page", "query"], row_limit=20)  # fmt: skip
        per_day = {d: [r for r in rows if r["keys"][0] == d] for d in {r["keys"][0] for r in rows}}
        assert {len(v) for v in per_day.values()} == {50}
        one_day = all_rows(service_for(gsc), startDate="2026-08-01", endDate="2026-08-01",
                            dimensions=["date", "page", "query"], row_limit=20)  # fmt: skip
        assert len(one_day) == 50
    with running_emulator(small_config()) as gsc:
        full = query(service_for(gsc), dimensions=["date", "page", "query"], rowLimit=25000)
    top = sorted((r["clicks"] for r in full["rows"]), reverse=True)[:50]
    assert [r["clicks"] for r in one_day] == top


def test_each_filtered_request_gets_its_own_daily_cap() -> None:
    """Google's cap is per request shape: device filters each return up to the cap, and the
    filtered requests together hold every row the capped unfiltered one cut."""
    dims = ["date", "page", "query"]
    with running_emulator(small_config(max_rows_per_day=100)) as gsc:
        service = service_for(gsc)
        capped = all_rows(service, dimensions=dims, row_limit=40)
        per_device = {
            device: all_rows(service, dimensions=dims, row_limit=40, dimensionFilterGroups=[
                {"filters": [{"dimension": "device", "expression": device}]}])
            for device in ("DESKTOP", "MOBILE", "TABLET")
        }  # fmt: skip
    with running_emulator(small_config()) as gsc:
        truth = all_rows(service_for(gsc), dimensions=dims)
    assert len(capped) == 100 < len(truth)
    assert max(len(rows) for rows in per_device.values()) == 100  # a shard is capped alone
    assert sum(len(rows) for rows in per_device.values()) > 100
    merged: dict[tuple, float] = {}
    for rows in per_device.values():
        for row in rows:
            merged[tuple(row["keys"])] = merged.get(tuple(row["keys"]), 0) + row["impressions"]
    assert len(merged) > len(capped)


def test_a_large_day_needs_two_full_pages() -> None:
    """The default shop property (~30,000 rows a day) pages at rowLimit 25,000 like Google."""
    with running_emulator({"today": "2026-08-18"}) as gsc:
        service = service_for(gsc)
        body = {"startDate": "2026-08-01", "endDate": "2026-08-01",
                "dimensions": ["date", "page", "query"], "rowLimit": 25000}  # fmt: skip
        first = service.searchanalytics().query(siteUrl="sc-domain:shop.example",
                                                body=body).execute()  # fmt: skip
        second = service.searchanalytics().query(
            siteUrl="sc-domain:shop.example", body={**body, "startRow": 25000}
        ).execute()
    assert len(first["rows"]) == 25000
    assert 0 < len(second["rows"]) < 25000
    keys = {tuple(r["keys"]) for r in first["rows"] + second["rows"]}
    assert len(keys) == len(first["rows"]) + len(second["rows"])


@pytest.mark.parametrize("search_type", ["web", "image", "video", "news", "discover",
                                         "googleNews"])  # fmt: skip
def test_every_search_type_has_its_own_data(service: Any, search_type: str) -> None:
    response = query(service, type=search_type, dimensions=["page"])
    assert response["rows"]
    expected = "byPage"
    assert response["responseAggregationType"] == expected
    if search_type in ("discover", "googleNews"):
        assert "position" not in response["rows"][0]
    else:
        assert 1 <= response["rows"][0]["position"] <= 100


def test_discover_position_switch(emulator: EmulatorHandle) -> None:
    emulator.set_switch("discover_position", "zero")
    response = query(service_for(emulator), type="discover", dimensions=["page"])
    assert {r["position"] for r in response["rows"]} == {0}


def test_search_types_differ(service: Any) -> None:
    web = query(service)["rows"][0]
    image = query(service, type="image")["rows"][0]
    assert web["impressions"] > image["impressions"]


def test_sites_list_and_get(service: Any) -> None:
    entries = service.sites().list().execute()["siteEntry"]
    assert {e["siteUrl"]: e["permissionLevel"] for e in entries} == {
        SITE: "siteOwner", PREFIX_SITE: "siteFullUser", UNVERIFIED: "siteUnverifiedUser",
    }  # fmt: skip
    assert service.sites().get(siteUrl=PREFIX_SITE).execute() == {
        "siteUrl": PREFIX_SITE, "permissionLevel": "siteFullUser"
    }  # fmt: skip


def test_empty_account_lists_as_empty_object() -> None:
    with running_emulator(small_config(properties=[])) as gsc:
        assert service_for(gsc).sites().list().execute() == {}


def _status(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HttpError) as caught:
        call.execute()
    return caught.value.resp.status, json.loads(caught.value.content)["error"]


def test_unknown_site_is_404_and_unreadable_site_403(service: Any) -> None:
    day = {"startDate": "2026-08-01", "endDate": "2026-08-01"}
    status, error = _status(service.searchanalytics().query(siteUrl="sc-domain:nowhere.test",
                                                            body=day))  # fmt: skip
    assert (status, error["errors"][0]["reason"]) == (404, "notFound")
    assert error["message"] == (
        "'sc-domain:nowhere.test' is not a verified Search Console site in this account."
    )
    status, error = _status(service.sites().get(siteUrl="sc-domain:nowhere.test"))
    assert status == 404
    status, error = _status(service.searchanalytics().query(siteUrl=UNVERIFIED, body=day))
    assert (status, error["errors"][0]["domain"], error["errors"][0]["reason"]) == (
        403, "global", "forbidden"
    )  # fmt: skip
    assert error["message"].startswith(
        f"User does not have sufficient permission for site '{UNVERIFIED}'"
    )
    # The other form of a known property is a different property: 403, not empty.
    status, _ = _status(service.searchanalytics().query(siteUrl="https://example.com/", body=day))
    assert status == 403


def test_percent_encoded_site_urls_through_both_apis(shared_emulator: EmulatorHandle) -> None:
    """`https://www.example.org/` travels as one segment, https%3A%2F%2Fwww.example.org%2F."""
    searchconsole = service_for(shared_emulator)
    webmasters = build("webmasters", "v3", http=httplib2.Http(),
                       client_options={"api_endpoint": shared_emulator.webmasters_url},
                       static_discovery=True)  # fmt: skip
    body = {"startDate": "2026-08-01", "endDate": "2026-08-01", "dimensions": ["page"]}
    a = searchconsole.searchanalytics().query(siteUrl=PREFIX_SITE, body=body).execute()
    b = webmasters.searchanalytics().query(siteUrl=PREFIX_SITE, body=body).execute()
    assert a == b
    assert all(r["keys"][0].startswith(PREFIX_SITE) for r in a["rows"])
    assert webmasters.sites().get(siteUrl=PREFIX_SITE).execute()["siteUrl"] == PREFIX_SITE
    domain = webmasters.searchanalytics().query(siteUrl=SITE, body=body).execute()
    assert all(r["keys"][0].startswith("https://example.com/") for r in domain["rows"])


def test_built_reports_are_kept_up_to_cache_rows() -> None:
    from gsc_pipeline.emulator.aggregate import ReportBuilder
    from gsc_pipeline.emulator.config import EmulatorConfig
    from gsc_pipeline.emulator.data import FactSource
    from gsc_pipeline.emulator.query import parse_query

    config = EmulatorConfig.model_validate(small_config())
    spec = {"dimensions": ["page", "query"], "endDate": "2026-08-01"}
    first = parse_query({**spec, "startDate": "2026-08-01"})
    second = parse_query({**spec, "startDate": "2026-08-01", "endDate": "2026-08-02"})

    def builder(cache_rows: int) -> ReportBuilder:
        return ReportBuilder(FactSource(config.seed, config.properties), 50_000, cache_rows)

    def build_(reports: ReportBuilder, spec: Any) -> Any:
        return reports.report(SITE, spec, config.start_today(), config.switches)

    roomy = builder(10_000)
    kept = build_(roomy, first)
    assert len(kept.rows) > 0
    build_(roomy, second)
    assert build_(roomy, first) is kept  # served from the cache, not built again
    assert roomy.built == 2
    tight = builder(len(kept.rows))
    kept = build_(tight, first)
    build_(tight, second)  # over the budget: the oldest report goes
    assert build_(tight, first) is not kept
    assert tight.built == 3


def test_stats_count_the_reports_built(make_emulator: Any) -> None:
    gsc = make_emulator()
    service = service_for(gsc)
    for start_row in (0, 10, 0):  # one report, its pages served from the cache
        query(service, dimensions=["page", "query"], rowLimit=10, startRow=start_row)
    assert gsc.stats()["reports_built"] == 1
    query(service, dimensions=["page"], rowLimit=10)
    assert gsc.stats()["reports_built"] == 2
    gsc.reset_stats()
    assert gsc.stats()["reports_built"] == 0
