"""sync_days end to end: the emulator over HTTP, real DuckDB files and real Postgres."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading
import time
from types import SimpleNamespace
from unittest import mock

import httplib2
import orjson
import pytest
from googleapiclient.discovery import build

from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import (
    ClientStats,
    GscClient,
    InvalidRequest,
    RateLimiter,
    RetryPolicy,
    SitePermissionDenied,
)
from gsc_pipeline.gsc.client import parse_rows_page
from gsc_pipeline.gsc.errors import TransientError
from gsc_pipeline.reports import PAGE, PAGE_QUERY, SITE, Report
from gsc_pipeline.sync import BadApiData, PartitionResult, SyncCancelled, sync_days
from gsc_pipeline.sync.days import InFlight
from gsc_pipeline.sync.fetch import Probes
from gsc_pipeline.sync.pages import page_from_rows
from gsc_pipeline.warehouse import LEDGER_TABLE, open_warehouse
from gsc_pipeline.warehouse.base import batch_schema

TODAY = "2026-08-18"
SHOP = "sc-domain:shop.example"  # ~30,000 rows a day: two pages at rowLimit 25,000
SMALL = "https://www.example.org/"
HUGE = "sc-domain:huge.example"  # more than Google's 50,000 rows a day
DAY = dt.date(2026, 8, 1)
FAST_RETRY = RetryPolicy(max_attempts=6, base_wait=0.01, max_wait=0.05)
WEB_IMAGE = Report("page_query_web_image", ("page", "query"), search_types=("web", "image"))

PROPERTIES = [
    {"site_url": SHOP, "page_query_rows_per_day": 30000, "pages": 4000,
     "search_types": ["web", "image", "discover"]},
    {"site_url": SMALL, "page_query_rows_per_day": 150, "pages": 40,
     "search_types": ["web", "image"], "permission": "siteFullUser"},
    {"site_url": HUGE, "page_query_rows_per_day": 70000, "pages": 9000},
    {"site_url": "sc-domain:not-yours.example", "permission": "siteUnverifiedUser"},
]  # fmt: skip


@pytest.fixture(scope="module")
def emulator():
    with running_emulator({"today": TODAY, "properties": PROPERTIES}) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean_emulator(emulator):
    emulator.clear_faults()
    emulator.reset_stats()
    emulator.reset_quotas()


@pytest.fixture
def client(emulator) -> GscClient:
    return GscClient(emulator.base_url, qpm_budget=1e6, timeout=30, retry_policy=FAST_RETRY)


def direct_rows(emulator, site: str, report: Report, day: dt.date) -> list[tuple]:
    """The day's rows fetched by hand with the stock client, paging until a short page."""
    service = build(
        "searchconsole", "v1", http=httplib2.Http(),
        client_options={"api_endpoint": emulator.base_url}, static_discovery=True,
    )  # fmt: skip
    out = []
    for search_type in report.search_types:
        start = 0
        while True:
            body = {
                "startDate": day.isoformat(), "endDate": day.isoformat(),
                "dimensions": report.api_dimensions, "type": search_type,
                "aggregationType": report.aggregation_type, "rowLimit": report.row_limit,
                "startRow": start,
            }  # fmt: skip
            rows = service.searchanalytics().query(siteUrl=site, body=body).execute().get(
                "rows", []
            )
            out += [
                (search_type, day, *r["keys"][1:], r["clicks"], r["impressions"], r["ctr"],
                 r.get("position"))
                for r in rows
            ]  # fmt: skip
            if len(rows) < report.row_limit:
                break
            start += report.row_limit
    return sorted(out, key=repr)


def stored_rows(warehouse, site: str, report: Report, day: dt.date) -> list[tuple]:
    dims = ", ".join(report.dimensions)
    with warehouse.transaction() as conn:
        rows = conn.execute(
            f"SELECT search_type, date, {dims + ', ' if dims else ''}clicks, impressions, ctr, "
            f"position FROM {report.table} WHERE site_url = ? AND date = ?",
            [site, day],
        ).fetchall()
    return sorted(rows, key=repr)


def ledger(warehouse, site: str, report: Report) -> list[tuple]:
    with warehouse.transaction() as conn:
        return conn.execute(
            f"SELECT date, search_type, start_row, row_limit, rows_returned, clicks, impressions "
            f"FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ? "
            "ORDER BY date, search_type, start_row",
            [site, report.name],
        ).fetchall()


def count_rows(warehouse, report: Report) -> int:
    with warehouse.transaction() as conn:
        return conn.execute(f"SELECT count(*) FROM {report.table}").fetchone()[0]


def test_days_equal_a_direct_paged_fetch(emulator, client, warehouse):
    days = [DAY, DAY + dt.timedelta(days=1)]
    results = sync_days(client, warehouse, SHOP, WEB_IMAGE, days, run_id="r1", concurrency=2)
    assert sorted(r.day for r in results) == days
    for day in days:
        expected = direct_rows(emulator, SHOP, WEB_IMAGE, day)
        assert len(expected) > 25_000  # web alone needs a second page
        assert stored_rows(warehouse, SHOP, WEB_IMAGE, day) == expected
    pages = ledger(warehouse, SHOP, WEB_IMAGE)
    web_pages = [p for p in pages if p[0] == DAY and p[1] == "web"]
    assert [p[2] for p in web_pages] == [0, 25_000]
    assert web_pages[0][4] == 25_000 and 0 < web_pages[1][4] < 25_000
    by_day = {r.day: r for r in results}
    for day in days:
        result = by_day[day]
        assert result.rows == sum(p[4] for p in pages if p[0] == day)
        assert result.pages == len([p for p in pages if p[0] == day]) == result.api_calls
        assert result.clicks == pytest.approx(sum(p[5] for p in pages if p[0] == day))
        assert not result.truncated


@pytest.mark.parametrize("report", [PAGE, SITE], ids=lambda r: r.name)
def test_other_reports_equal_a_direct_fetch(emulator, client, warehouse, report):
    sync_days(client, warehouse, SMALL, report, [DAY], run_id="r1")
    expected = direct_rows(emulator, SMALL, report, DAY)
    assert expected and stored_rows(warehouse, SMALL, report, DAY) == expected


def test_without_shards_the_50k_daily_cap_is_paged_to_the_end_and_flagged(
    emulator, client, duckdb_path
):
    warehouse = open_warehouse(duckdb_path)
    unsharded = dataclasses.replace(PAGE_QUERY, shard=())
    [result] = sync_days(client, warehouse, HUGE, unsharded, [DAY], run_id="r1")
    assert result.rows == 50_000 and result.truncated
    assert [p[2:5] for p in ledger(warehouse, HUGE, PAGE_QUERY)] == [
        (0, 25_000, 25_000), (25_000, 25_000, 25_000), (50_000, 25_000, 0),
    ]  # fmt: skip
    assert result.metadata()["truncated_days"] == 1


def test_faults_are_retried_and_the_result_is_still_exact(emulator, client, warehouse):
    for kind, start_row in (("status", 0), ("truncated", 25_000), ("malformed", 0),
                            ("reset", 25_000)):  # fmt: skip
        emulator.script_fault(SHOP, date=DAY, start_row=start_row, kind=kind, times=2)
    [result] = sync_days(client, warehouse, SHOP, WEB_IMAGE, [DAY], run_id="r1")
    assert result.retries >= 4
    assert result.api_calls == result.pages + result.retries
    assert stored_rows(warehouse, SHOP, WEB_IMAGE, DAY) == direct_rows(
        emulator, SHOP, WEB_IMAGE, DAY
    )
    assert len(ledger(warehouse, SHOP, WEB_IMAGE)) == result.pages


def test_resync_changes_nothing(emulator, client, warehouse):
    days = [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    sync_days(client, warehouse, SMALL, WEB_IMAGE, days, run_id="r1")
    first = [stored_rows(warehouse, SMALL, WEB_IMAGE, d) for d in days]
    first_ledger = ledger(warehouse, SMALL, WEB_IMAGE)
    sync_days(client, warehouse, SMALL, WEB_IMAGE, days, run_id="r2", concurrency=3)
    assert [stored_rows(warehouse, SMALL, WEB_IMAGE, d) for d in days] == first
    assert ledger(warehouse, SMALL, WEB_IMAGE) == first_ledger
    assert count_rows(warehouse, WEB_IMAGE) == sum(len(r) for r in first)


@pytest.mark.parametrize(
    ("site", "report", "error", "text", "first_call_refused"),
    [
        ("sc-domain:not-yours.example", PAGE_QUERY, SitePermissionDenied, "add it as a user",
         True),
        (SHOP, Report("discover_query", ("query",), search_types=("discover",)), InvalidRequest,
         "cannot be grouped by query", False),
    ],
)  # fmt: skip
def test_permanent_errors_leave_nothing_written(
    client, warehouse, site, report, error, text, first_call_refused
):
    days = [DAY + dt.timedelta(days=i) for i in range(4)]
    with pytest.raises(error, match=text) as info:
        sync_days(client, warehouse, site, report, days, run_id="r1", concurrency=2)
    assert "0 day(s) written" in "".join(info.value.__notes__)
    tables = warehouse.read_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    if first_call_refused:
        # A credential or property refused at the probe: not even the tables were created.
        assert tables.empty, tables
    else:
        assert count_rows(warehouse, report) == 0
        assert ledger(warehouse, site, report) == []


def test_an_error_stops_scheduling_and_written_days_stand(emulator, client, warehouse):
    days = [DAY + dt.timedelta(days=i) for i in range(6)]
    emulator.script_fault(SMALL, date=days[2], kind="status", status=503, times=50)
    written: list[dt.date] = []
    with pytest.raises(Exception, match="gave up after 6 attempts"):
        sync_days(
            client, warehouse, SMALL, WEB_IMAGE, days, run_id="r1", concurrency=1,
            on_partition=lambda r: written.append(r.day),
        )  # fmt: skip
    assert written == days[:2]
    with warehouse.transaction() as conn:
        stored = conn.execute(f"SELECT DISTINCT date FROM {WEB_IMAGE.table} ORDER BY date")
        assert [r[0] for r in stored.fetchall()] == days[:2]


def test_a_failed_write_stops_the_sync_and_only_committed_days_stand(client, duckdb_path):
    warehouse = open_warehouse(duckdb_path)
    days = [DAY - dt.timedelta(days=i) for i in range(6)]
    real_write = type(warehouse).write_partitions

    def write_unless_day_2(self, batches):
        if any(b.day == days[2] for b in batches):
            raise TimeoutError("lock wait ran out")
        real_write(self, batches)

    written: list[dt.date] = []
    with (
        mock.patch.object(type(warehouse), "write_partitions", write_unless_day_2),
        pytest.raises(TimeoutError, match="lock wait") as info,
    ):
        sync_days(
            client, warehouse, SMALL, WEB_IMAGE, days, run_id="r1", concurrency=1,
            on_partition=lambda r: written.append(r.day),
        )  # fmt: skip
    assert f"{len(written)} day(s) written before the error" in "".join(info.value.__notes__)
    assert days[2] not in written and len(written) < len(days)
    with warehouse.transaction() as conn:
        stored = conn.execute(f"SELECT DISTINCT date FROM {WEB_IMAGE.table}").fetchall()
    assert sorted(d for (d,) in stored) == sorted(written)


def test_stop_cancels_promptly_and_writes_no_partial_day(emulator, duckdb_path):
    warehouse = open_warehouse(duckdb_path)
    emulator.reset_stats()
    client = GscClient(emulator.base_url, qpm_budget=1e6, retry_policy=FAST_RETRY)
    stop_event = threading.Event()
    seen_at_stop: list[int] = []
    days = [DAY - dt.timedelta(days=i) for i in range(12)]

    def on_partition(result: PartitionResult) -> None:
        if not stop_event.is_set():
            seen_at_stop.append(emulator.stats()["requests_total"])
            stop_event.set()

    with pytest.raises(SyncCancelled) as info:
        sync_days(
            client, warehouse, SHOP, WEB_IMAGE, days, run_id="r1", concurrency=3,
            stop_event=stop_event, on_partition=on_partition,
        )  # fmt: skip
    written = sorted(r.day for r in info.value.written)
    assert 1 <= len(written) < len(days)
    # In-flight calls finished; no new call started after the stop.
    assert emulator.stats()["requests_total"] - seen_at_stop[0] <= 3
    with warehouse.transaction() as conn:
        stored = conn.execute(
            f"SELECT date, count(*) FROM {WEB_IMAGE.table} GROUP BY date ORDER BY date"
        ).fetchall()
    assert [d for d, _ in stored] == written
    for day, n in stored:  # every written day is complete
        assert n == len(direct_rows(emulator, SHOP, WEB_IMAGE, day))


def test_stop_during_a_retry_backoff_returns_at_once(emulator, duckdb_path):
    stop_event = threading.Event()

    class StopOnRetry(ClientStats):
        def record_retry(self) -> None:
            super().record_retry()
            stop_event.set()

    client = GscClient(
        emulator.base_url, retry_policy=RetryPolicy(base_wait=600, max_wait=600)
    )
    client.stats = StopOnRetry()
    emulator.script_fault(SMALL, kind="status", status=503, times=50)
    warehouse = open_warehouse(duckdb_path)
    with pytest.raises(SyncCancelled, match="0 of 1"):
        sync_days(client, warehouse, SMALL, PAGE, [DAY], run_id="r1", stop_event=stop_event)
    assert emulator.stats()["requests_total"] == 1


@pytest.mark.parametrize("case", ["camel", "snake"])
def test_fresh_data_records_first_incomplete_date(emulator, client, duckdb_path, case):
    emulator.set_switch("metadata_key_case", case)
    warehouse = open_warehouse(duckdb_path)
    day = dt.date(2026, 8, 17)
    [result] = sync_days(client, warehouse, SMALL, PAGE, [day], run_id="r1", data_state="all")
    assert result.first_incomplete_date is not None
    assert result.data_state == "all"
    with warehouse.transaction() as conn:
        row = conn.execute(
            f"SELECT data_state, first_incomplete_date FROM {LEDGER_TABLE}"
        ).fetchone()
    assert row == ("all", result.first_incomplete_date)


def test_a_steps_reports_send_one_finality_probe(emulator, client, duckdb_path):
    """A property's step syncs its reports at once over the same days: one probe serves all
    (three syncs here, one of them over two search types), and each day is still written."""
    warehouse = open_warehouse(duckdb_path)
    days = [DAY - dt.timedelta(days=i) for i in range(2)]
    reports = (PAGE, SITE, WEB_IMAGE)

    def step(probes: Probes | None, run_id: str) -> int:
        """The three syncs at once, as a step runs them; the API requests they sent."""
        emulator.reset_stats()
        written: dict[str, list[dt.date]] = {}

        def sync(report: Report) -> None:
            results = sync_days(
                client, warehouse, SMALL, report, days, run_id=run_id, probes=probes
            )
            written[report.name] = sorted(r.day for r in results)

        threads = [threading.Thread(target=sync, args=(r,)) for r in reports]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert written == {r.name: sorted(days) for r in reports}
        return emulator.stats()["requests_total"]

    probes = Probes()
    shared = step(probes, "r1")
    # 2 days x (page 1 + site 1 + web and image 2) requests, and one probe.
    assert shared == 2 * 4 + 1
    assert probes.sent == 1
    # Without a shared `Probes` every sync sends its own.
    assert step(None, "r2") == shared + 2


def test_a_failed_probe_is_not_remembered_and_an_answer_expires():
    probes = Probes()
    key = (SMALL, "web", DAY)

    def unavailable() -> dt.date | None:
        raise TransientError("HTTP 503 from the API")

    with pytest.raises(TransientError):
        probes.first_incomplete(key, unavailable)
    assert probes.first_incomplete(key, lambda: DAY) == DAY
    assert probes.first_incomplete(key, lambda: None) == DAY  # the answer serves
    assert probes.first_incomplete((SMALL, "image", DAY), lambda: None) is None  # another probe
    assert probes.sent == 2
    expired = Probes(answer_seconds=0.0)
    assert expired.first_incomplete(key, lambda: DAY) == DAY
    assert expired.first_incomplete(key, lambda: None) is None


def test_days_run_concurrently_and_callbacks_come_from_the_caller(emulator, client, duckdb_path):
    warehouse = open_warehouse(duckdb_path)
    caller = threading.get_ident()
    threads: set[int] = set()
    days = [DAY - dt.timedelta(days=i) for i in range(8)]
    results = sync_days(
        client, warehouse, SMALL, WEB_IMAGE, days, run_id="r1", concurrency=4,
        on_partition=lambda r: threads.add(threading.get_ident()),
    )  # fmt: skip
    assert threads == {caller}
    assert sorted(r.day for r in results) == sorted(days)
    assert 1 <= emulator.stats()["peak_concurrent_requests"] <= 4
    assert all(r.batch is None for r in results)  # written days hold no rows
    meta = results[0].metadata()
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in meta.values())
    assert "batch" not in meta
    assert {"rows", "pages", "api_calls", "retries", "quota_wait_seconds", "fetch_seconds",
            "write_seconds", "latency_p50_ms", "latency_p95_ms", "achieved_qpm",
            "truncated_days"} <= set(meta)  # fmt: skip


def test_days_fetched_during_a_slow_write_are_committed_together(emulator, client, duckdb_path):
    """A write waiting (here: for another process's DuckDB lock) does not stop the fetching,
    and the days fetched meanwhile go into the next transaction together."""
    warehouse = open_warehouse(duckdb_path)
    groups: list[list[dt.date]] = []
    real_write = type(warehouse).write_partitions
    caller = threading.get_ident()
    callbacks: list[tuple[dt.date, int, int]] = []

    def slow_write(self, batches):
        if not groups:
            time.sleep(1.0)  # the first write is slow; the fetch threads must not wait for it
        real_write(self, batches)
        groups.append([b.day for b in batches])

    days = [DAY - dt.timedelta(days=i) for i in range(6)]
    with mock.patch.object(type(warehouse), "write_partitions", slow_write):
        results = sync_days(
            client, warehouse, SMALL, WEB_IMAGE, days, run_id="r1", concurrency=4,
            on_partition=lambda r: callbacks.append(
                (r.day, threading.get_ident(), sum(len(g) for g in groups))
            ),
        )  # fmt: skip
    assert sorted(r.day for r in results) == sorted(days)
    # Fetching went on during the slow write: the days that landed meanwhile (at least two: the
    # step holds up to 4 days, the write at most 4 of the 6) were committed together, in fewer
    # transactions. (With 2, the cap on days held would let one day wait at a time.) (How many days
    # the first write holds depends on which fetches finished first; counting the requests sent
    # during the write instead was flaky: both days in flight may be on their last request.)
    assert max((len(g) for g in groups[1:]), default=0) >= 2 and len(groups) < len(days)
    assert sorted(d for g in groups for d in g) == sorted(days)
    # Each callback on the caller's thread, and only once its day's group was committed.
    written_in_order = [d for g in groups for d in g]
    for day, thread, committed in callbacks:
        assert thread == caller
        assert day in written_in_order[:committed]
    assert count_rows(warehouse, WEB_IMAGE) == sum(r.rows for r in results)


def test_duckdb_small_days_wait_for_the_fetches_running_to_share_a_commit(
    emulator, client, duckdb_path
):
    """On DuckDB a commit under two row groups waits while days of the sync are still being
    fetched, up to a quarter of the step's days (4 of 16): every group but the last holds 4
    days, and every day is written exactly once."""
    warehouse = open_warehouse(duckdb_path)
    assert warehouse.group_commit_rows > 0
    groups: list[list[dt.date]] = []
    real_write = type(warehouse).write_partitions

    def recording_write(self, batches):
        real_write(self, batches)
        groups.append([b.day for b in batches])

    days = [DAY - dt.timedelta(days=i) for i in range(10)]
    with mock.patch.object(type(warehouse), "write_partitions", recording_write):
        results = sync_days(client, warehouse, SMALL, WEB_IMAGE, days, run_id="r1", concurrency=16)
    assert sorted(r.day for r in results) == sorted(days)
    assert sorted(d for g in groups for d in g) == sorted(days)
    assert all(len(g) >= 4 for g in groups[:-1]), groups
    assert count_rows(warehouse, WEB_IMAGE) == sum(r.rows for r in results)


class _Rows:
    def __init__(self, n: int) -> None:
        self.num_rows = n


class _Batch:
    def __init__(self, rows: int) -> None:
        self.rows = _Rows(rows)


class _Day:
    def __init__(self, rows: int) -> None:
        self.batch = _Batch(rows)

    def committed(self, _seconds: float) -> _Day:
        return self


class _RecordingWarehouse:
    group_commit_rows = 100

    def __init__(self) -> None:
        self.groups: list[int] = []

    def write_partitions(self, batches) -> None:
        self.groups.append(len(batches))


@pytest.mark.parametrize(
    ("rows", "more_coming", "writes"),
    [
        ([10, 10], True, False),  # small, days still fetching: waits
        ([10, 10], False, True),  # nothing fetching: written now
        ([60, 50], True, True),  # the warehouse's rows reached
        ([1, 1, 1, 1], True, True),  # linger_days reached
    ],
)
def test_a_small_group_waits_only_while_days_are_fetching(rows, more_coming, writes):
    from gsc_pipeline.sync.writer import GroupWriter

    warehouse = _RecordingWarehouse()
    writer = GroupWriter(warehouse, on_written=lambda _: None, on_error=pytest.fail)  # type: ignore[arg-type]
    with writer:  # leaving waits for the write
        for n in rows:
            writer.add(_Day(n))  # type: ignore[arg-type]
        writer.start_group(more_coming=more_coming, linger_days=4)
        assert bool(writer.running) == writes
        if not writes:  # the fetches ended: the same group goes now
            writer.start_group(more_coming=False, linger_days=4)
    assert warehouse.groups == [len(rows)]


class ScriptedClient:
    """A stand-in client answering from a dict of day -> rows (for data the API must not send)."""

    def __init__(self, rows_by_day):
        self.rows_by_day = rows_by_day
        # What `sync_days` sizes its days in flight from: the budget and the latencies seen.
        self.limiter = RateLimiter(1e6)
        self.stats = ClientStats()

    def query_page(self, site_url, body, *, stop_event=None, sink=None):
        # Through the real parser: the rows arrive as bytes, as they do from the API.
        return parse_rows_page(orjson.dumps({"rows": self.rows_by_day[body["startDate"]]}))


def good_row(day: str, i: int) -> dict:
    return {"keys": [day, f"https://s/{i}", f"q{i}"], "clicks": 1, "impressions": 2,
            "ctr": 0.5, "position": 3.0}  # fmt: skip


@pytest.mark.parametrize(
    ("bad_row", "text"),
    [
        ({"keys": ["2026-08-02", "p"], "clicks": 1, "impressions": 2}, "keys of the wrong length"),
        ({"keys": ["2026-07-02", "p", "q"], "clicks": 1, "impressions": 2}, "dated 2026-07-02"),
        ({"keys": ["2026-08-02", "p", "q"], "clicks": 3, "impressions": 2}, "more clicks than"),
        ({"keys": ["2026-08-02", "p", "q"], "impressions": 2}, "no clicks"),
        ({"clicks": 1, "impressions": 2}, "without keys"),
        ({"keys": [None, "p", "q"], "clicks": 1, "impressions": 2}, "dated None"),
    ],
)
def test_bad_api_data_writes_nothing_for_that_day(duckdb_path, bad_row, text):
    rows = {
        "2026-08-01": [good_row("2026-08-01", i) for i in range(3)],
        "2026-08-02": [good_row("2026-08-02", 0), bad_row],
    }
    warehouse = open_warehouse(duckdb_path)
    days = [dt.date(2026, 8, 1), dt.date(2026, 8, 2)]
    with pytest.raises(BadApiData, match=text):
        sync_days(ScriptedClient(rows), warehouse, SHOP, PAGE_QUERY, days, run_id="r",
                  concurrency=1)  # fmt: skip
    with warehouse.transaction() as conn:
        stored = conn.execute(f"SELECT DISTINCT date FROM {PAGE_QUERY.table}").fetchall()
    assert stored == [(dt.date(2026, 8, 1),)]


def test_parse_rows_page_reads_bytes_straight_into_arrow():
    body = {
        "rows": [
            {"keys": ["2026-08-01", "https://s/é", "q \"x\""], "clicks": 2, "impressions": 5,
             "ctr": 0.4, "position": 1.5},
            {"keys": ["2026-08-01", "https://s/2", "q2"], "clicks": 0, "impressions": 1,
             "ctr": 0.0},  # no position (discover, googleNews)
        ],
        "responseAggregationType": "byPage",
        "metadata": {"firstIncompleteDate": "2026-08-17"},
    }  # fmt: skip
    for raw in (orjson.dumps(body), orjson.dumps(body, option=orjson.OPT_INDENT_2)):
        page = parse_rows_page(raw)
        assert page.first_incomplete_date == "2026-08-17"
        assert page.rows.to_pylist() == [
            {**body["rows"][0], "clicks": 2.0, "impressions": 5.0},
            {**body["rows"][1], "clicks": 0.0, "impressions": 1.0, "position": None},
        ]
        table = page_from_rows(PAGE_QUERY, SHOP, "web", DAY, page.rows)
        # The request's own columns are held dictionary-encoded: one value, a byte a row.
        assert table.schema.equals(batch_schema(PAGE_QUERY))
        assert table.column("site_url").to_pylist() == [SHOP, SHOP]
        assert table.column("date").to_pylist() == [DAY, DAY]
        assert table.column("page").to_pylist() == ["https://s/é", "https://s/2"]
        assert table.column("query").to_pylist() == ['q "x"', "q2"]
        # A slice of the rows (its keys start mid-array): that row's own keys.
        second = page_from_rows(PAGE_QUERY, SHOP, "web", DAY, page.rows.slice(1))
        assert second.column("page").to_pylist() == ["https://s/2"]
        assert second.column("query").to_pylist() == ["q2"]
    # No `rows` at all: what the API sends past the last row.
    empty = parse_rows_page(b'{"responseAggregationType": "byPage"}')
    assert len(empty.rows) == 0 and empty.first_incomplete_date is None
    assert page_from_rows(PAGE_QUERY, SHOP, "web", DAY, empty.rows).num_rows == 0
    snake = parse_rows_page(b'{"rows": [], "metadata": {"first_incomplete_date": "2026-08-17"}}')
    assert snake.first_incomplete_date == "2026-08-17"
    for malformed in (b"", b'{"rows": [{"keys": ["2026-08-01"', b"[1, 2]", b'{"a": 1}\n{"a": 2}'):
        with pytest.raises(TransientError, match="malformed JSON"):
            parse_rows_page(malformed)


def test_in_flight_is_rate_times_latency_within_the_cap():
    in_flight = InFlight(qpm=960, cap=32)  # 16 requests/s
    assert in_flight.limit == 32  # no latency measured yet: the cap
    in_flight.observe(1500)
    assert in_flight.limit == 25  # 16/s x 1.5 s + 1
    for _ in range(20):
        in_flight.observe(50)
    assert in_flight.limit == 2  # 16/s x 0.05 s + 1
    in_flight.observe(60_000)
    assert in_flight.limit == 32  # never above the memory cap
    in_flight.observe(0)  # no measurement: unchanged
    assert in_flight.limit == 32


class _HeldDay:
    """A fetched day as the group writer sees it (its batch, and itself once committed)."""

    def __init__(self, day: int, held_bytes: int = 0) -> None:
        self.day = day
        self.batch = SimpleNamespace(rows=SimpleNamespace(num_rows=1))
        self.held_bytes = held_bytes

    def committed(self, _seconds: float) -> _HeldDay:
        return self


class _LaggingWriter:
    """A warehouse whose every write waits until the step can start no more days: until a day
    was refused (the step holds its cap) or, on a sync without that bound, until the step has
    started one day more than the cap beyond the days committed (or every day)."""

    group_commit_rows = 0  # every group is written at once (none waits for more days)

    def __init__(self, cap: int, total: int, day_bytes: int = 0) -> None:
        self.cap, self.total, self.day_bytes = cap, total, day_bytes
        self.state = threading.Condition()
        self.started = self.committed = self.most_held = 0
        self.refused = False

    def fetch(self, day: int) -> _HeldDay:
        with self.state:
            self.started += 1
            self.most_held = max(self.most_held, self.started - self.committed)
            self.state.notify_all()
        return _HeldDay(day, self.day_bytes)

    def write_partitions(self, batches: list[int]) -> None:
        with self.state:
            lagged = self.state.wait_for(
                lambda: self.refused
                or self.started >= min(self.total, self.committed + self.cap + 1),
                timeout=60,
            )
            assert lagged, "the step neither refused a day nor started one past its cap"
            self.refused = False
            self.committed += len(batches)


@pytest.mark.parametrize("reports", [1, 2])
def test_a_lagging_writer_stops_new_fetches_at_the_cap(monkeypatch, reports):
    """The days a step holds, fetching or fetched and not yet committed, never pass its cap:
    while the writer lags, no day starts (with one sync and with two sharing the step's cap)."""
    from gsc_pipeline.sync.days import _fetch_and_write
    from gsc_pipeline.sync.shared import SharedInFlight

    cap, days_each = 4, 12
    writer = _LaggingWriter(cap, reports * days_each)
    try_hold = getattr(InFlight, "try_hold", None)

    def spy_try_hold(self, holder):
        taken = try_hold(self, holder)
        if not taken:
            with writer.state:
                writer.refused = True
                writer.state.notify_all()
        return taken

    monkeypatch.setattr(InFlight, "try_hold", spy_try_hold, raising=False)
    shared = SharedInFlight(qpm=960, cap=cap)
    written: list[int] = []
    errors: list[BaseException | None] = []

    def sync(first: int) -> None:
        with shared.share() as in_flight:
            errors.append(
                _fetch_and_write(
                    list(range(first, first + days_each)),
                    writer.fetch,
                    writer,  # type: ignore[arg-type]
                    in_flight=in_flight,
                    stop_event=None,
                    stop_on_error_or_cancel=threading.Event(),
                    on_written=lambda day: written.append(day.day),
                )
            )

    threads = [threading.Thread(target=sync, args=(i * 100,)) for i in range(reports)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [None] * reports
    assert sorted(written) == [i * 100 + d for i in range(reports) for d in range(days_each)]
    assert writer.most_held <= cap


@pytest.mark.parametrize(("day_mb", "most_held"), [(10, 3), (1, 8)])
def test_the_days_held_stay_within_the_memory_cap(monkeypatch, day_mb, most_held):
    """Large days: the step holds as many as fit in its memory cap (30 MB: 3 of 10 MB), after
    at most a quarter of its day cap before the first day's size is known; small days: its day
    cap (8), as without a memory cap. Checked while the writer lags, so days pile up."""
    from gsc_pipeline.sync.days import _fetch_and_write

    cap = 8
    writer = _LaggingWriter(cap, 24, day_bytes=day_mb << 20)
    try_hold = InFlight.try_hold
    held_when_refused: list[int] = []

    def spy_try_hold(self, holder):
        taken = try_hold(self, holder)
        if not taken:
            held_when_refused.append(sum(self._held.values()))
            with writer.state:
                writer.refused = True
                writer.state.notify_all()
        return taken

    monkeypatch.setattr(InFlight, "try_hold", spy_try_hold)
    written: list[int] = []
    error = _fetch_and_write(
        list(range(24)),
        writer.fetch,
        writer,  # type: ignore[arg-type]
        in_flight=InFlight(qpm=960, cap=cap, memory_cap_bytes=30 << 20),
        stop_event=None,
        stop_on_error_or_cancel=threading.Event(),
        on_written=lambda day: written.append(day.day),
    )
    assert error is None
    assert sorted(written) == list(range(24))
    # Every write waited for a refusal: the first at a quarter of the day cap (size unknown),
    # the rest where the caps bind.
    assert held_when_refused[0] == cap // 4
    assert max(held_when_refused) == most_held
    assert writer.most_held <= most_held


def test_a_step_of_small_and_large_reports_counts_each_at_its_own_size():
    """Sizes are per sync: a report of 1-MB days fills what a 10-MB report leaves, and a sync
    that stopped is forgotten (its days given back, its size no longer counted)."""
    in_flight = InFlight(qpm=960, cap=16, memory_cap_bytes=30 << 20)
    large, small = object(), object()
    assert [in_flight.try_hold(large) for _ in range(5)] == [True] * 4 + [False]  # size unknown
    in_flight.observe_day_bytes(large, 10 << 20)
    in_flight.set_held(large, 2)  # two of its days committed: 20 MB held
    in_flight.observe_day_bytes(small, 1 << 20)
    held_small = sum(in_flight.try_hold(small) for _ in range(16))
    assert held_small == 10  # 20 MB + 10 x 1 MB = the 30-MB cap
    assert not in_flight.try_hold(large)
    in_flight.forget(small)
    assert in_flight.try_hold(large)  # 30 MB with the small report's days given back


_MMAP_PROBE = """
import ctypes, sys
from gsc_pipeline.sync.writer import GroupWriter
from gsc_pipeline.warehouse import open_warehouse

libc = ctypes.CDLL("libc.so.6")
if not hasattr(libc, "mallinfo2"):
    print("no mallinfo2"); sys.exit(0)

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc.mallinfo2.restype = MallInfo2
block = b"x" * (8 << 20)
del block  # glibc's default raises its mmap threshold to 8 MB here
with GroupWriter(open_warehouse(sys.argv[1]), on_written=print, on_error=print):
    mapped = libc.mallinfo2().hblkhd
    body = b"y" * (3 << 20)  # a 3 MB response body
    print("mapped" if libc.mallinfo2().hblkhd >= mapped + (3 << 20) else "arena")
"""


def test_a_step_gives_freed_response_sized_blocks_back_to_the_system(duckdb_path):
    """Once a step's writer exists, a multi-MB block (a response body, an Arrow buffer) gets its
    own mapping even after glibc's dynamic threshold was raised by freeing a larger one, so
    freeing it returns it to the system instead of leaving it resident in a thread's arena.

    In a fresh interpreter, as a run's process is: glibc's allocator state is per process, and
    the tests run before this one in a pytest worker leave theirs behind."""
    import subprocess
    import sys

    probe = subprocess.run(
        [sys.executable, "-c", _MMAP_PROBE, str(duckdb_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    answer = probe.stdout.strip().splitlines()[-1]
    if answer == "no mallinfo2":
        pytest.skip("glibc's mallinfo2 is needed to see where a block was allocated")
    assert answer == "mapped", "the body came from an arena"


def _count_days_in_flight(monkeypatch) -> dict[str, int]:
    """Spy on the days `sync_days` fetches at once (the emulator only sees requests)."""
    from gsc_pipeline.sync import days as days_module

    counts = {"now": 0, "peak": 0}
    lock = threading.Lock()
    real = days_module.fetch_day

    def counting(*args, **kwargs):
        with lock:
            counts["now"] += 1
            counts["peak"] = max(counts["peak"], counts["now"])
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                counts["now"] -= 1

    monkeypatch.setattr(days_module, "fetch_day", counting)
    return counts


@pytest.mark.parametrize(
    ("latency_ms", "qpm", "low"),
    [
        # 2 requests/s at a few ms: one or two days keep the budget busy, not the cap.
        (0, 120, 1),
        # 20 requests/s at 400 ms: about 9 days in flight, more than a fixed 4.
        (400, 1200, 6),
    ],
)
def test_days_in_flight_follow_the_latency(monkeypatch, duckdb_path, latency_ms, qpm, low):
    counts = _count_days_in_flight(monkeypatch)
    config = {
        "today": TODAY,
        "properties": PROPERTIES,
        "latency": {"base_ms": latency_ms, "per_row_us": 0, "jitter_sigma": 0},
    }
    days = [DAY - dt.timedelta(days=i) for i in range(20)]
    with running_emulator(config) as gsc:
        client = GscClient(gsc.base_url, qpm_budget=qpm, timeout=30, retry_policy=FAST_RETRY)
        results = sync_days(
            client, open_warehouse(duckdb_path), SMALL, SITE, days, run_id="r1", concurrency=20
        )
        assert sum(gsc.stats()["quota_rejections"].values()) == 0
    assert len(results) == len(days)
    # Never more than the slowest latency the client measured calls for (a loaded machine
    # measures more than the emulator's own latency), not the cap of 20.
    slowest = max(client.stats.snapshot()["latencies_ms"]) / 1000
    assert low <= counts["peak"] <= math.ceil(qpm / 60 * slowest) + 1
