"""Past Google's 50,000-row cap: a 150,000-row day stored complete through shards, against the
emulator over HTTP, on DuckDB and PostgreSQL; a day past the shard budget stays capped."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import threading

import pyarrow as pa
import pytest

from gsc_pipeline import proof, reconcile
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.gsc.client import ClientStats
from gsc_pipeline.gsc.errors import Cancelled, InvalidRequest
from gsc_pipeline.reports import DAILY_ROW_CAP, PAGE, PAGE_QUERY, SITE, Filter, declare
from gsc_pipeline.sync import sync_days
from gsc_pipeline.sync.days import InFlight
from gsc_pipeline.sync.fetch import _SearchTypeDay
from gsc_pipeline.sync.shards import DEVICES, Shard, merge_shards, uncovered_shards
from gsc_pipeline.warehouse import LEDGER_TABLE, open_warehouse, report_schema

TODAY = "2026-08-18"
BIG = "sc-domain:big.example"  # ~150,000 page x query rows a day: three times the cap
DAY = dt.date(2026, 8, 1)
PROPERTIES = [{"site_url": BIG, "page_query_rows_per_day": 150_000, "pages": 20_000}]


@pytest.fixture(scope="module")
def emulator():
    with running_emulator({"today": TODAY, "properties": PROPERTIES}) as handle:
        yield handle


@pytest.fixture(scope="module")
def truth() -> dict[tuple[str, str], tuple[int, int, float]]:
    """The day's every page x query row: the same emulator data without the daily cap."""
    config = {"today": TODAY, "properties": PROPERTIES, "max_rows_per_day": 10_000_000}
    with running_emulator(config) as handle:
        client = GscClient(handle.base_url, qpm_budget=1e6, timeout=60)
        rows: dict[tuple[str, str], tuple[int, int, float]] = {}
        start = 0
        while True:
            body = {**PAGE_QUERY.request_body(DAY, "web", "final"), "startRow": start}
            page = client.query_page(BIG, body).rows.to_pylist()
            rows |= {(r["keys"][1], r["keys"][2]): (r["clicks"], r["impressions"], r["position"])
                     for r in page}  # fmt: skip
            if len(page) < PAGE_QUERY.row_limit:
                return rows
            start += PAGE_QUERY.row_limit


@pytest.fixture
def client(emulator) -> GscClient:
    return GscClient(emulator.base_url, qpm_budget=1e6, timeout=60)


def stored(warehouse) -> dict[tuple[str, str], tuple[float, float, float]]:
    frame = warehouse.read_sql(
        "SELECT page, query, clicks, impressions, position FROM gsc_page_query "
        "WHERE site_url = ? AND date = ?",
        [BIG, DAY],
    )
    assert not frame.duplicated(["page", "query"]).any()
    return {(r.page, r.query): (r.clicks, r.impressions, r.position)
            for r in frame.itertuples(index=False)}  # fmt: skip


def shard_ledger(warehouse):
    return warehouse.read_sql(
        f"SELECT shard, SUM(rows_returned) AS rows_returned, COUNT(*) AS pages, "
        f"MAX(merged_rows) AS merged_rows FROM {LEDGER_TABLE} "
        "WHERE site_url = ? AND date = ? GROUP BY shard ORDER BY shard",
        [BIG, DAY],
    )


def test_a_day_three_times_the_cap_is_stored_complete_in_shards(client, truth, warehouse):
    assert len(truth) > 3 * DAILY_ROW_CAP * 0.9
    [result] = sync_days(client, warehouse, BIG, PAGE_QUERY, [DAY], run_id="r1")

    rows = stored(warehouse)
    assert rows.keys() == truth.keys()  # row for row: no page x query pair lost or invented
    for key, (clicks, impressions, position) in truth.items():
        got = rows[key]
        assert (got[0], got[1]) == (clicks, impressions), key
        assert got[2] == pytest.approx(position, rel=1e-9), key
    assert result.rows == len(truth) and not result.truncated and result.capped_shards == 0

    ledger = shard_ledger(warehouse)
    assert len(ledger) == result.shards > 3
    assert "" not in set(ledger["shard"])  # the capped whole-day request is not stored
    assert (ledger["rows_returned"] < DAILY_ROW_CAP).all()
    assert set(ledger["merged_rows"]) == {len(truth)}
    # The capped whole-day request (3 pages) and the country requests come on top of the pages.
    assert result.api_calls > result.pages + 3
    outcomes = proof.report_checks(warehouse, BIG, PAGE_QUERY, [DAY])
    assert [(o.name, o.passed) for o in outcomes] == [
        (proof.NO_MISSING_BATCHES, True), (proof.NO_DUPLICATE_BATCHES, True),
        (proof.ROWS_MATCH_LEDGER, True), (proof.TRUNCATED_DAYS, True),
    ]  # fmt: skip
    assert outcomes[3].metadata["sharded_days"] == 1


def test_page_prefix_shards_alone_store_the_day_complete(client, truth, duckdb_path):
    warehouse = open_warehouse(duckdb_path)
    by_page = dataclasses.replace(PAGE_QUERY, shard=("page",))
    [result] = sync_days(client, warehouse, BIG, by_page, [DAY], run_id="r1")
    assert stored(warehouse).keys() == truth.keys() and result.capped_shards == 0
    labels = list(shard_ledger(warehouse)["shard"])
    # The emulator's six URL sections, then every other page (the home page).
    assert len(labels) == 7 and all(label.startswith("page") for label in labels)
    assert "page=other (7/7)" in labels
    assert all(o.passed for o in proof.report_checks(warehouse, BIG, by_page, [DAY]))


def test_a_sharded_day_reconciles_with_no_capped_remainder(client, warehouse):
    for report in (PAGE_QUERY, SITE, PAGE):
        sync_days(client, warehouse, BIG, report, [DAY], run_id="r1")
    outcome = reconcile.capped_remainder(warehouse, BIG, [DAY])
    assert outcome.passed and outcome.metadata["capped_remainder_clicks"] == 0
    view = warehouse.read_sql(
        "SELECT level, page, total_clicks, stored_clicks, remainder_clicks, reason "
        "FROM gsc_remainder WHERE site_url = ? AND date = ?",
        [BIG, DAY],
    )
    [day] = view[view["level"] == "day"].itertuples(index=False)
    site_clicks = warehouse.read_sql("SELECT clicks FROM gsc_site")["clicks"].iloc[0]
    stored_clicks = warehouse.read_sql("SELECT SUM(clicks) AS c FROM gsc_page_query")["c"].iloc[0]
    assert (day.total_clicks, day.stored_clicks) == (site_clicks, stored_clicks)
    assert day.remainder_clicks == site_clicks - stored_clicks > 0  # anonymized queries
    assert day.reason == "anonymized"
    assert outcome.metadata["anonymized_clicks"] == day.remainder_clicks
    pages = view[view["level"] == "page"]
    assert len(pages) == warehouse.read_sql("SELECT COUNT(*) AS n FROM gsc_page")["n"].iloc[0]
    assert pages["remainder_clicks"].sum() == pytest.approx(day.remainder_clicks)
    assert (pages["remainder_clicks"] >= 0).all() and set(pages["reason"]) == {"anonymized"}


def test_a_lost_shard_is_a_missing_batch(client, warehouse):
    sync_days(client, warehouse, BIG, PAGE_QUERY, [DAY], run_id="r1")
    ledger = shard_ledger(warehouse)
    lost = ledger["shard"].iloc[0]
    with warehouse.transaction() as conn:
        conn.execute(f"DELETE FROM {LEDGER_TABLE} WHERE shard = ?", [lost])
    outcome = proof.no_missing_batches(warehouse, BIG, PAGE_QUERY, [DAY])
    assert not outcome.passed and outcome.metadata["uncovered_sharded_days"] == 1
    assert not proof.rows_match_ledger(warehouse, BIG, PAGE_QUERY, [DAY]).passed


def test_a_day_past_the_shard_budget_stays_capped_and_fails(client, warehouse):
    # The capped whole day (3 requests) and one per device shard fit 6; no country split does.
    tight = dataclasses.replace(PAGE_QUERY, shard_budget=6)
    [result] = sync_days(client, warehouse, BIG, tight, [DAY], run_id="r1")
    assert result.truncated and result.capped_shards == 2 and result.shards == 3
    ledger = shard_ledger(warehouse)
    assert list(ledger["shard"]) == ["device=DESKTOP (1/3)", "device=MOBILE (2/3)",
                                     "device=TABLET (3/3)"]  # fmt: skip
    outcome = proof.truncated_days(warehouse, BIG, tight, [DAY])
    assert not outcome.passed and outcome.bad_partitions == [DAY.isoformat()]
    assert outcome.metadata["capped_shards"] == 2
    assert outcome.metadata["max_rows_per_day"] == DAILY_ROW_CAP
    # What was stored is still proven exact: pages, no duplicates, rows = ledger.
    for check in (proof.no_missing_batches, proof.no_duplicate_batches, proof.rows_match_ledger):
        assert check(warehouse, BIG, tight, [DAY]).passed
    sync_days(client, warehouse, BIG, SITE, [DAY], run_id="r1")
    remainder = reconcile.capped_remainder(warehouse, BIG, [DAY])
    assert not remainder.passed and remainder.bad_partitions == [DAY.isoformat()]
    assert remainder.metadata["capped_shards"] == 2
    assert remainder.metadata["capped_remainder_clicks"] > 0
    [line] = remainder.metadata["capped_days"]
    assert line.startswith("2026-08-01 web: 2 capped shard(s), ")


def test_shard_config_values():
    assert declare("pq", ("page", "query")).shard == ("device", "country", "page")
    assert declare("pq", ("page", "query"), shard="off").shard == ()
    assert declare("p", ("page",)).shard == ()
    assert declare("pq", ("page", "query"), shard=("country",)).shard == ("country",)
    with pytest.raises(ValueError, match="shard: .*'browser'"):
        declare("pq", ("page", "query"), shard=("browser",))
    with pytest.raises(ValueError, match="byProperty"):
        declare("s", ("country",), aggregation_type="byProperty", shard=("page",))


def test_shards_merge_to_the_report_grain_with_weighted_position():
    schema = report_schema(PAGE_QUERY)

    def shard_rows(clicks: float, impressions: float, position: float) -> pa.Table:
        return pa.Table.from_pydict(
            {"site_url": [BIG], "search_type": ["web"], "date": [DAY], "page": ["p"],
             "query": ["q"], "clicks": [clicks], "impressions": [impressions],
             "ctr": [clicks / impressions], "position": [position]},
            schema=schema,
        )  # fmt: skip

    merged = merge_shards([shard_rows(1, 10, 2.0), shard_rows(3, 30, 6.0)], PAGE_QUERY)
    assert merged.schema == schema
    assert merged.to_pylist()[0] == {
        "site_url": BIG, "search_type": "web", "date": DAY, "page": "p", "query": "q",
        "clicks": 4.0, "impressions": 40.0, "ctr": 0.1, "position": 5.0,
    }  # fmt: skip


def test_shard_merge_sums_each_page_and_query_once_whatever_the_shards_overlap():
    """Many rows over shards that share pages and queries: the same totals as a plain sum per
    (page, query), the day's columns kept, every key once."""
    rng = random.Random(7)
    schema = report_schema(PAGE_QUERY)
    shards = []
    for _ in range(3):
        keys = [(f"https://x/{rng.randrange(40)}", f"q{rng.randrange(30)}") for _ in range(300)]
        keys = list(dict.fromkeys(keys))  # one request never repeats a key
        impressions = [float(rng.randrange(1, 50)) for _ in keys]
        shards.append(pa.Table.from_pydict(
            {"site_url": [BIG] * len(keys), "search_type": ["web"] * len(keys),
             "date": [DAY] * len(keys), "page": [k[0] for k in keys],
             "query": [k[1] for k in keys], "clicks": [i // 3 for i in impressions],
             "impressions": impressions, "ctr": [1 / 3] * len(keys),
             "position": [float(rng.randrange(1, 20)) for _ in keys]},
            schema=schema,
        ))  # fmt: skip
    expected: dict[tuple[str, str], list[float]] = {}
    for row in pa.concat_tables(shards).to_pylist():
        totals = expected.setdefault((row["page"], row["query"]), [0.0, 0.0, 0.0])
        totals[0] += row["clicks"]
        totals[1] += row["impressions"]
        totals[2] += row["position"] * row["impressions"]
    merged = merge_shards(shards, PAGE_QUERY)
    assert merged.schema == schema
    got = {(r["page"], r["query"]): r for r in merged.to_pylist()}
    assert len(got) == merged.num_rows == len(expected)
    for key, (clicks, impressions, weighted) in expected.items():
        row = got[key]
        assert (row["site_url"], row["search_type"], row["date"]) == (BIG, "web", DAY)
        assert (row["clicks"], row["impressions"]) == (clicks, impressions)
        assert row["position"] == pytest.approx(weighted / impressions)
        assert row["ctr"] == pytest.approx(clicks / impressions)


def test_uncovered_shards_names_the_missing_siblings():
    device = Shard().child("device=MOBILE (2/3)", Filter("device", "MOBILE"), level=1)
    assert uncovered_shards({""}) == []
    assert uncovered_shards({"device=DESKTOP (1/3)", device.label, "device=TABLET (3/3)"}) == []
    assert uncovered_shards({"device=DESKTOP (1/3)", device.label}) == [
        "the day: shard(s) [3] of 3"
    ]
    deeper = {"device=DESKTOP (1/3)", "device=TABLET (3/3)",
              "device=MOBILE (2/3) > country=usa (1/2)"}  # fmt: skip
    assert uncovered_shards(deeper) == ["device=MOBILE (2/3): shard(s) [2] of 2"]


@pytest.mark.parametrize("concurrency", [2, 8])
def test_a_days_sibling_shards_are_in_flight_at_once_within_the_limit(truth, duckdb_path,
                                                                     concurrency):  # fmt: skip
    """One capped day: its device shards (then their children) are fetched at once, as the
    emulator's own count of concurrent requests shows, never more than the step's limit; the
    day is stored row for row as one after another would."""
    config = {
        "today": TODAY,
        "properties": PROPERTIES,
        "latency": {"base_ms": 300, "per_row_us": 0, "jitter_sigma": 0},
    }
    warehouse = open_warehouse(duckdb_path)
    with running_emulator(config) as handle:
        client = GscClient(handle.base_url, qpm_budget=1e6, timeout=60)
        [result] = sync_days(
            client, warehouse, BIG, PAGE_QUERY, [DAY], run_id="r1", concurrency=concurrency
        )
        peak = handle.stats()["peak_concurrent_requests"]
    # One day alone: requests one after another would peak at 1 (the sequential split did).
    # 3 device shards at once (then more siblings where a device is split by country), and
    # never more requests in flight than the step's limit (the day's own and one per sibling).
    assert min(concurrency, 3) <= peak <= concurrency, peak
    assert stored(warehouse).keys() == truth.keys() and result.capped_shards == 0
    assert set(shard_ledger(warehouse)["merged_rows"]) == {len(truth)}
    assert all(o.passed for o in proof.report_checks(warehouse, BIG, PAGE_QUERY, [DAY]))


def test_the_first_error_among_sibling_shards_stops_the_day():
    """Three device shards fetched at once, 10 pages each to the cap: the first one's 400 on
    its second page stops the others at their next call (not their 10 pages) and is what the
    day raises; with the step's stop set, the siblings make no API call at all."""
    config = {
        "today": TODAY,
        "properties": PROPERTIES,
        "latency": {"base_ms": 300, "per_row_us": 0, "jitter_sigma": 0},
    }
    small_pages = dataclasses.replace(PAGE_QUERY, row_limit=5_000)
    devices = [Shard((Filter("device", d),), (f"device={d} ({k}/3)",), 1)
               for k, d in enumerate(DEVICES, 1)]  # fmt: skip
    step_stop = threading.Event()
    slots = InFlight(1e6, 8)
    with running_emulator(config) as handle:
        client = GscClient(handle.base_url, qpm_budget=1e6, timeout=60)
        day = _SearchTypeDay(
            client, BIG, small_pages, DAY, "web", "final", step_stop, ClientStats(), slots
        )
        handle.script_fault(BIG, date=DAY, start_row=5_000, status=400, times=1)
        with pytest.raises(InvalidRequest):
            day.fetch_many(devices)
        # At once (each sibling's first page); then the second pages in flight when the 400
        # came, at most one more each: not the 10 pages each sibling would take to the cap.
        assert handle.stats()["peak_concurrent_requests"] >= 2
        assert handle.stats()["requests_total"] <= 9
        assert slots.taken == 0  # every extra slot given back

        handle.reset_stats()
        step_stop.set()
        with pytest.raises(Cancelled):
            day.fetch_many(devices)
        assert handle.stats()["requests_total"] == 0 and slots.taken == 0
