"""A day whose neighbours were capped starts at the splits they needed: no capped whole-day
request, the same rows (equal to the emulator's uncapped truth), every check still passing; a
site that shrank goes back to one request a day. Real emulator over HTTP, DuckDB and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from gsc_pipeline import proof, reconcile
from gsc_pipeline.config import PropertyConfig
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.reports import (
    DAILY_ROW_CAP,
    PAGE,
    PAGE_QUERY,
    Filter,
    ReportDefinitionError,
    declare,
)
from gsc_pipeline.reports import SITE as SITE_REPORT
from gsc_pipeline.sync import sync_days
from gsc_pipeline.sync.shards import (
    Shard,
    _named_country_children,
    _named_prefix_children,
    tree_from_labels,
)
from gsc_pipeline.warehouse import LEDGER_TABLE, open_warehouse

TODAY = "2026-08-18"
SITE = "sc-domain:large.example"  # ~60,000 page x query rows a day: the device split suffices
DAYS = [dt.date(2026, 8, 1) + dt.timedelta(days=i) for i in range(4)]
NO_LATENCY = {"base_ms": 0, "per_row_us": 0, "jitter_sigma": 0}
# A capped whole-day request: 25,000 + 25,000 rows (the cap: no empty page asked after it).
CAPPED_WHOLE_DAY = 2
# What a day with no known neighbour asks first: the row at the cap (rowLimit 1).
PROBE = 1


def emulator_config(rows_per_day: int, **extra) -> dict:
    site = {"site_url": SITE, "page_query_rows_per_day": rows_per_day, "pages": 8_000}
    return {"today": TODAY, "properties": [site], "latency": NO_LATENCY, **extra}


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(emulator_config(60_000)) as handle:
        yield handle


@pytest.fixture(scope="module")
def truth() -> dict[dt.date, dict[tuple[str, str], tuple[float, float]]]:
    """Every page x query row of each day: the same emulator data without the daily cap."""
    with running_emulator(emulator_config(60_000, max_rows_per_day=10_000_000)) as handle:
        client = GscClient(handle.base_url, qpm_budget=1e6, timeout=60)
        out = {}
        for day in DAYS:
            rows: dict[tuple[str, str], tuple[float, float]] = {}
            start = 0
            while True:
                body = {**PAGE_QUERY.request_body(day, "web", "final"), "startRow": start}
                page = client.query_page(SITE, body).rows.to_pylist()
                rows |= {(r["keys"][1], r["keys"][2]): (r["clicks"], r["impressions"])
                         for r in page}  # fmt: skip
                if len(page) < PAGE_QUERY.row_limit:
                    break
                start += PAGE_QUERY.row_limit
            out[day] = rows
        return out


@pytest.fixture(scope="module")
def whole_first(emulator, tmp_path_factory):
    """The old way (`shard_start: whole`): every capped day pays its whole-day request."""
    path = str(tmp_path_factory.mktemp("whole") / "whole.duckdb")
    client = GscClient(emulator.base_url, qpm_budget=1e6, timeout=60)
    report = dataclasses.replace(PAGE_QUERY, shard_start="whole")
    return sync_days(client, open_warehouse(path), SITE, report, DAYS, run_id="w", concurrency=1)


@pytest.fixture
def client(emulator) -> GscClient:
    return GscClient(emulator.base_url, qpm_budget=1e6, timeout=60)


def stored(warehouse, day: dt.date) -> dict[tuple[str, str], tuple[float, float]]:
    frame = warehouse.read_sql(
        "SELECT page, query, clicks, impressions FROM gsc_page_query "
        "WHERE site_url = ? AND date = ?",
        [SITE, day],
    )
    return {(r.page, r.query): (r.clicks, r.impressions) for r in frame.itertuples(index=False)}


def all_checks_pass(warehouse, days) -> None:
    outcomes = proof.report_checks(warehouse, SITE, PAGE_QUERY, days)
    assert [(o.name, o.passed) for o in outcomes] == [
        (proof.NO_MISSING_BATCHES, True), (proof.NO_DUPLICATE_BATCHES, True),
        (proof.ROWS_MATCH_LEDGER, True), (proof.TRUNCATED_DAYS, True),
    ]  # fmt: skip
    assert outcomes[3].metadata["sharded_days"] == len(days)


def test_a_ranged_run_over_capped_days_skips_the_whole_day_requests(
    client, truth, whole_first, warehouse
):
    assert all(r.started_split == 0 and r.shards == 3 for r in whole_first)
    assert [r.api_calls - r.pages for r in whole_first] == [CAPPED_WHOLE_DAY] * len(DAYS)

    results = sorted(
        sync_days(client, warehouse, SITE, PAGE_QUERY, DAYS, run_id="r1", concurrency=4),
        key=lambda r: r.day,
    )

    # The first day learns (one row at the cap says its whole day is capped: the probe) while
    # the others, in flight beside it, wait for that answer; every day starts at the device
    # split: each sends only its shards' pages, the first one the probe too.
    assert [r.started_split for r in results] == [1, 1, 1, 1]
    assert [r.api_calls - r.pages for r in results] == [PROBE, 0, 0, 0]
    old = sum(r.api_calls for r in whole_first)
    assert sum(r.api_calls for r in results) == old - CAPPED_WHOLE_DAY * len(DAYS) + PROBE
    for result in results:
        rows = stored(warehouse, result.day)
        assert rows == truth[result.day]  # row for row, clicks and impressions equal
        assert result.rows == len(rows) and not result.truncated and result.shards == 3
    all_checks_pass(warehouse, DAYS)


def test_the_ledger_starts_the_next_step_at_the_split_and_plans_its_cost(client, warehouse):
    sync_days(client, warehouse, SITE, PAGE_QUERY, DAYS[:1], run_id="r1")
    lines: list[str] = []
    results = sync_days(client, warehouse, SITE, PAGE_QUERY, DAYS[1:], run_id="r2",
                        on_plan=lines.append)  # fmt: skip
    results.sort(key=lambda r: r.day)
    # Known before any fetch: 3 days start split, each planned at its neighbour's 4 pages.
    [line] = lines
    assert "3 day(s) planned at ~12 request(s)" in line
    assert "3 day x search type(s) start at their neighbours' shard splits" in line
    assert all(r.started_split == 1 for r in results)
    assert [r.planned_requests for r in results] == [r.api_calls for r in results] == [4, 4, 4]
    # A day fetched again starts at its own stored split.
    [again] = sync_days(client, warehouse, SITE, PAGE_QUERY, DAYS[:1], run_id="r3")
    assert again.started_split == 1 and again.api_calls == again.pages
    all_checks_pass(warehouse, DAYS)
    for report in (SITE_REPORT, PAGE):
        sync_days(client, warehouse, SITE, report, DAYS, run_id="totals")
    remainder = reconcile.capped_remainder(warehouse, SITE, DAYS)
    assert remainder.passed and remainder.metadata["capped_remainder_clicks"] == 0


def test_a_site_that_shrank_goes_back_to_one_request_a_day(client, warehouse):
    sync_days(client, warehouse, SITE, PAGE_QUERY, DAYS[:1], run_id="big")
    with running_emulator(emulator_config(15_000)) as small:
        client = GscClient(small.base_url, qpm_budget=1e6, timeout=60)
        results = sync_days(client, warehouse, SITE, PAGE_QUERY, DAYS[1:], run_id="small",
                            concurrency=1)  # fmt: skip
        # The first small day starts split (its neighbour was capped) and merges to well
        # under the cap: the days after it send one request each again.
        assert [r.started_split for r in results] == [1, 0, 0]
        assert [r.shards for r in results] == [3, 1, 1]
        assert [r.api_calls for r in results][1:] == [1, 1]
        # The next step reads that from the ledger: one request planned, one sent.
        [later] = sync_days(client, warehouse, SITE, PAGE_QUERY, [dt.date(2026, 8, 5)],
                            run_id="later")  # fmt: skip
        assert later.planned_requests == later.api_calls == 1 and later.shards == 1
    assert all(o.passed for o in proof.report_checks(warehouse, SITE, PAGE_QUERY, DAYS))


def test_a_day_with_no_known_neighbour_asks_one_row_at_the_cap_first(warehouse):
    """Under the cap, the probe is the one request more; a day with a neighbour sends none."""
    with running_emulator(emulator_config(15_000)) as small:
        client = GscClient(small.base_url, qpm_budget=1e6, timeout=60)
        sent: list[dict] = []
        query_page = client.query_page

        def recorded(site_url, body, **kwargs):
            sent.append(body)
            return query_page(site_url, body, **kwargs)

        client.query_page = recorded
        results = sync_days(client, warehouse, SITE, PAGE_QUERY, DAYS[:2], run_id="r1",
                            concurrency=1)  # fmt: skip
        shapes = [(r.api_calls, r.pages, r.shards, r.started_split) for r in results]
        assert shapes == [(PROBE + 1, 1, 1, 0), (1, 1, 1, 0)]
        # Planned so before the first request: the probe is in the step's estimate.
        assert [r.planned_requests for r in results] == [PROBE + 1, 1]
        probes = [b for b in sent if b["rowLimit"] == 1 and "query" in b["dimensions"]]
        assert [(b["startDate"], b["startRow"]) for b in probes] == [
            (DAYS[0].isoformat(), DAILY_ROW_CAP - 1)
        ]
        # It served no row: every row served is stored (but the step's probe of finality).
        assert small.stats()["rows_served"] == sum(r.rows for r in results) + 1
    assert all(o.passed for o in proof.report_checks(warehouse, SITE, PAGE_QUERY, DAYS[:2]))


def test_a_lost_shard_of_a_day_started_split_is_a_missing_batch(client, warehouse):
    results = sync_days(client, warehouse, SITE, PAGE_QUERY, DAYS[:2], run_id="r1",
                        concurrency=1)  # fmt: skip
    assert results[1].started_split == 1
    with warehouse.transaction() as conn:
        conn.execute(
            f"DELETE FROM {LEDGER_TABLE} WHERE date = ? AND shard = ?",
            [DAYS[1], "device=TABLET (3/3)"],
        )
    outcome = proof.no_missing_batches(warehouse, SITE, PAGE_QUERY, DAYS[:2])
    assert not outcome.passed and outcome.bad_partitions == [DAYS[1].isoformat()]
    assert outcome.metadata["uncovered_sharded_days"] == 1
    assert not proof.rows_match_ledger(warehouse, SITE, PAGE_QUERY, DAYS[:2]).passed


def test_stored_labels_rebuild_the_same_shards():
    device = Shard().child("device=MOBILE (2/3)", Filter("device", "MOBILE"), level=1)
    countries = _named_country_children(device, ["usa", "ind"], rest=True)
    pages = _named_prefix_children(
        Shard(countries[0].filters, countries[0].steps, 2), ["https://x/a/", "https://x/b/"], 1
    )
    labels = (
        ["device=DESKTOP (1/3)", "device=TABLET (3/3)"]
        + [c.label for c in countries[1:]]
        + [p.label for p in pages]
    )
    tree = tree_from_labels(labels, PAGE_QUERY)
    assert tree is not None and list(tree) == ["", device.label, countries[0].label]
    assert tree[device.label] == tuple(countries)  # filters, catch-all regex, levels
    assert [p.filters for p in tree[countries[0].label]] == [p.filters for p in pages]
    # Shards that do not cover the day (one lost) are no plan to start from.
    assert tree_from_labels(["device=DESKTOP (1/3)", "device=TABLET (3/3)"], PAGE_QUERY) is None
    # Labels this report's levels cannot make: no plan from them.
    assert tree_from_labels(labels, dataclasses.replace(PAGE_QUERY, shard=("device",))) is None


def test_shard_start_config():
    assert declare("pq", ("page", "query")).shard_start == "learned"
    assert declare("pq", ("page", "query"), shard_start="whole").shard_start == "whole"
    with pytest.raises(ReportDefinitionError, match="shard_start"):
        declare("pq", ("page", "query"), shard_start="later")
    prop = PropertyConfig(site_url=SITE, reports=("page_query",), shard_start="whole")
    assert [r.shard_start for r in prop.report_objects()] == ["whole"]
