"""Fetch one (site, report) over a list of days and write each day as one partition.

No Dagster here: the assets, the bench and the tests all call `sync_days`. Days are fetched
concurrently (pages within a day in order) and each day is written as soon as all its pages are
in, by one writer thread that groups the days ready together into one transaction, without
holding any warehouse lock while fetching. API rows become Arrow columns in
`page_from_rows`, the one place that maps the API's shape to the warehouse's.
"""

from __future__ import annotations

import datetime as dt
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gsc_pipeline.gsc.client import ClientStats, GscClient
from gsc_pipeline.gsc.errors import Cancelled, GscError, InvalidRequest
from gsc_pipeline.reports import (
    DAILY_ROW_CAP,
    PACIFIC,
    RETENTION_MONTHS,
    Report,
    oldest_available_day,
    pacific_today,
)
from gsc_pipeline.warehouse.base import (
    INSTANT_TYPE,
    LEDGER_SCHEMA,
    PartitionBatch,
    Warehouse,
    column_name,
    report_schema,
)

# How often the calling thread notices the caller's stop event while days are in flight.
_STOP_POLL_SECONDS = 0.05
# How far past a sync's last day its finality probe looks for Google's first incomplete day.
PROBE_DAYS_AHEAD = 7
# Re-fetch passes allowed when a day's pages disagree (ties in arbitrary order); the emulator
# needs ~5 at 30,000 rows a day and ~7 at 50,000.
MAX_TIE_PASSES = 12


class SyncCancelled(Exception):
    """The stop event was set: the days listed in `written` stand, no other day was written."""

    def __init__(self, message: str, written: list[PartitionResult]) -> None:
        super().__init__(message)
        self.written = written


class BadApiData(GscError):
    """The API answered with rows that cannot be right; nothing of that day is written."""


class OutsideRetentionWindow(GscError):
    """A day older than Google's 16-month window: Google would answer it empty, not with data."""


@dataclass(frozen=True)
class PartitionResult:
    """What one day's sync did: for logs and Dagster partition metadata."""

    site_url: str
    report: str
    day: dt.date
    rows: int
    pages: int
    api_calls: int
    retries: int
    quota_wait_seconds: float
    fetch_seconds: float
    write_seconds: float
    latency_p50_ms: float
    latency_p95_ms: float
    achieved_qpm: float
    truncated: bool
    clicks: float
    impressions: float
    data_state: str
    first_incomplete_date: dt.date | None
    # Extra passes over the pages to settle rows tied across page boundaries (0: none needed).
    tie_passes: int = 0

    def metadata(self) -> dict[str, Any]:
        """Plain values (str/int/float/bool/None) for Dagster metadata and JSON logs."""
        values = asdict(self)
        values["day"] = self.day.isoformat()
        values["first_incomplete_date"] = (
            self.first_incomplete_date.isoformat() if self.first_incomplete_date else None
        )
        values["truncated_days"] = int(self.truncated)
        return values


def page_from_rows(
    report: Report, site_url: str, search_type: str, day: dt.date, rows: pa.StructArray
) -> pa.Table:
    """API rows (Arrow structs, `SEARCH_ROW_TYPE`) -> the report table's columns.

    Raises BadApiData on rows that cannot be right: keys of the wrong length, another day, no
    clicks or impressions, more clicks than impressions. Arrow compute only, no per-row Python.
    """
    where = f"{site_url} {report.name} {search_type} {day}"
    n = len(rows)
    width = len(report.api_dimensions)
    keys, clicks, impressions, ctr, position = rows.flatten()  # offset-aware, unlike .field()
    if rows.null_count or (width and keys.null_count):
        raise BadApiData(f"{where}: a row without keys")
    if n and width:
        lengths = pc.min_max(pc.list_value_length(keys)).as_py()
        if lengths != {"min": width, "max": width}:
            raise BadApiData(
                f"{where}: rows carry keys of the wrong length (expected {width}: "
                f"{report.api_dimensions}); the report definition and the API disagree"
            )
    columns = [pc.list_element(keys, i) for i in range(width)]
    time_columns: dict[str, Any] = {}
    if report.time_dimension == "date":
        _check_same_day(where, columns[0], day)
    elif report.hourly:
        time_columns["hour"] = _hours_of_day(where, columns[0], day)
    dimension_columns = columns[1:] if report.time_dimension else columns
    if clicks.null_count or impressions.null_count:
        raise BadApiData(f"{where}: a row has no clicks or no impressions")
    if n and pc.any(pc.greater(clicks, impressions)).as_py():
        raise BadApiData(f"{where}: a row has more clicks than impressions")
    schema = report_schema(report)
    everywhere = pa.array(np.zeros(n, np.int32))
    data: dict[str, Any] = {
        "site_url": pa.array([site_url]).take(everywhere),
        "search_type": pa.array([search_type]).take(everywhere),
        "date": pa.array([day], pa.date32()).take(everywhere),
        **time_columns,
        **{column_name(d): c for d, c in zip(report.dimensions, dimension_columns, strict=True)},
        "clicks": clicks,
        "impressions": impressions,
        "ctr": ctr,
        # discover/googleNews rows may have no position at all: null.
        "position": position,
    }
    return pa.Table.from_pydict(data, schema=schema)


def _check_same_day(where: str, dates: pa.Array, day: dt.date) -> None:
    same_day = pc.equal(dates, day.isoformat())
    if (pc.sum(same_day).as_py() or 0) != len(dates):  # a null date counts as wrong too
        wrong = dates[pc.index(pc.fill_null(same_day, False), False).as_py()]
        raise BadApiData(f"{where}: a row is dated {wrong.as_py()}, not the requested day")


def _hours_of_day(where: str, keys: pa.Array, day: dt.date) -> pa.Array:
    """Google's hour keys (`2025-04-07T00:00:00-07:00`) as instants, all within `day` (Pacific).
    """
    hours = pc.strptime(keys, format="%Y-%m-%dT%H:%M:%S%z", unit="us", error_is_null=True)
    hours = hours.cast(INSTANT_TYPE)
    start = dt.datetime.combine(day, dt.time(), PACIFIC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), PACIFIC)
    inside = pc.and_(
        pc.greater_equal(hours, pa.scalar(start, INSTANT_TYPE)),
        pc.less(hours, pa.scalar(end, INSTANT_TYPE)),
    )
    if (pc.sum(inside).as_py() or 0) != len(keys):  # an unparsable hour counts as wrong too
        wrong = keys[pc.index(pc.fill_null(inside, False), False).as_py()]
        raise BadApiData(f"{where}: a row is for hour {wrong.as_py()}, not an hour of the day")
    return hours


def _first_incomplete_date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value[:10]) if value else None


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _distinct_rows(table: pa.Table, keys: list[str]) -> pa.Table:
    """Each natural key once (its first occurrence)."""
    indexed = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    first = indexed.group_by(keys, use_threads=False).aggregate([("_row", "min")])
    return table.take(first.column("_row_min"))


def _settle_tie_order(
    refetch: Callable[[int], pa.Table], pages: list[pa.Table], report: Report, where: str
) -> tuple[list[pa.Table], int]:
    """The pages with every row exactly once, and how many re-fetch passes that took.

    Google orders rows by clicks and returns ties in arbitrary order, so a row tied across a page
    boundary can come back on both pages or on neither. The page sizes still say how many rows
    the day holds: fetch every page again and keep each natural key once until the union holds
    them all, then cut it into pages again in the API's order (clicks, then impressions).
    """
    expected = sum(page.num_rows for page in pages)
    keys = [c for c in report.key_columns if c not in ("site_url", "search_type", "date")]
    settled = _distinct_rows(pa.concat_tables(pages), keys)
    passes = 0
    while settled.num_rows < expected:
        if passes == MAX_TIE_PASSES:
            raise BadApiData(
                f"{where}: pages still miss {expected - settled.num_rows} of {expected} rows "
                f"after {passes} re-fetches (rows tied on clicks in arbitrary order); not written"
            )
        passes += 1
        again = [refetch(i * report.row_limit) for i in range(len(pages))]
        settled = _distinct_rows(pa.concat_tables([settled, *again]), keys)
    if not passes:
        return pages, 0
    ordered = settled.sort_by([("clicks", "descending"), ("impressions", "descending")])
    cuts = [i * report.row_limit for i in range(len(pages))] + [ordered.num_rows]
    return [ordered.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False)], passes


@dataclass(frozen=True)
class FetchedDay:
    """One day fully fetched and parsed, not yet written: its batch and what the fetch cost."""

    batch: PartitionBatch
    pages: int
    api_calls: int
    retries: int
    quota_wait_seconds: float
    fetch_seconds: float
    latencies_ms: list[float]
    truncated: bool
    clicks: float
    impressions: float
    data_state: str
    first_incomplete_date: dt.date | None
    tie_passes: int = 0

    def result(self, write_seconds: float) -> PartitionResult:
        """The day's result once written (`write_seconds`: its group commit's duration)."""
        fetch_seconds = self.fetch_seconds
        return PartitionResult(
            site_url=self.batch.site_url,
            report=self.batch.report.name,
            day=self.batch.day,
            rows=self.batch.rows.num_rows,
            pages=self.pages,
            api_calls=self.api_calls,
            retries=self.retries,
            quota_wait_seconds=round(self.quota_wait_seconds, 3),
            fetch_seconds=round(fetch_seconds, 3),
            write_seconds=round(write_seconds, 3),
            latency_p50_ms=round(_percentile(self.latencies_ms, 50), 1),
            latency_p95_ms=round(_percentile(self.latencies_ms, 95), 1),
            achieved_qpm=round(self.api_calls * 60 / fetch_seconds, 1) if fetch_seconds else 0.0,
            truncated=self.truncated,
            clicks=self.clicks,
            impressions=self.impressions,
            data_state=self.data_state,
            first_incomplete_date=self.first_incomplete_date,
            tie_passes=self.tie_passes,
        )


def fetch_day(
    client: GscClient,
    site_url: str,
    report: Report,
    day: dt.date,
    *,
    run_id: str,
    data_state: str = "final",
    final_before: dt.date | None = None,
    halt: threading.Event | None = None,
) -> FetchedDay:
    """Fetch every page of one day (all search types) into one partition batch; no write.

    `final_before` is what Google said of finality before this fetch (`DayPlan`): recorded in
    the ledger's first_incomplete_date where the pages themselves carry no metadata, so an
    empty final day is stored with Google's word that it is final, not just a short page.
    Raises `Cancelled` when `halt` is set by the time the last page is in: a stop never lets a
    day whose fetch did not complete reach the warehouse.
    """
    halt = halt or threading.Event()
    sink = ClientStats()
    tables: list[pa.Table] = []
    ledger: dict[str, list[Any]] = {name: [] for name in LEDGER_SCHEMA.names}
    truncated = False
    tie_passes = 0
    first_incomplete: dt.date | None = None
    started = time.perf_counter()
    for search_type in report.search_types:

        def fetch_page(start_row: int, search_type: str = search_type) -> tuple[pa.Table, Any]:
            body = {**report.request_body(day, search_type, data_state), "startRow": start_row}
            # Arrow straight from the response bytes: no Python object per row (CPU and RSS).
            response = client.query_page(site_url, body, stop_event=halt, sink=sink)
            page = page_from_rows(report, site_url, search_type, day, response.rows)
            return page, _first_incomplete_date(
                response.first_incomplete_date or response.first_incomplete_hour
            )

        pages: list[pa.Table] = []
        incomplete: list[dt.date | None] = []
        while True:
            page, page_incomplete = fetch_page(len(pages) * report.row_limit)
            pages.append(page)
            incomplete.append(page_incomplete)
            first_incomplete = first_incomplete or page_incomplete
            if page.num_rows < report.row_limit:
                break
        returned = [page.num_rows for page in pages]
        if len(pages) > 1:
            pages, passes = _settle_tie_order(
                lambda start_row: fetch_page(start_row)[0],
                pages,
                report,
                f"{site_url} {report.name} {search_type} {day}",
            )
            tie_passes += passes
        for i, page in enumerate(pages):
            clicks = pc.sum(page.column("clicks")).as_py() or 0.0
            impressions = pc.sum(page.column("impressions")).as_py() or 0.0
            for name, value in (
                ("site_url", site_url),
                ("report", report.name),
                ("search_type", search_type),
                ("date", day),
                ("start_row", i * report.row_limit),
                ("row_limit", report.row_limit),
                ("rows_returned", returned[i]),
                ("clicks", float(clicks)),
                ("impressions", float(impressions)),
                ("data_state", report.data_state(data_state)),
                ("first_incomplete_date", incomplete[i] or final_before),
                ("fetched_at", dt.datetime.now(dt.UTC).replace(tzinfo=None)),
                ("run_id", run_id),
            ):
                ledger[name].append(value)
        tables += pages
        truncated = truncated or sum(returned) >= DAILY_ROW_CAP
    fetch_seconds = time.perf_counter() - started
    if halt.is_set():
        raise Cancelled(f"{site_url} {report.name} {day}: stopped before writing; not written")
    batch = PartitionBatch(
        site_url=site_url,
        report=report,
        day=day,
        rows=pa.concat_tables(tables),
        ledger=pa.Table.from_pydict(ledger, schema=LEDGER_SCHEMA),
    )
    stats = sink.snapshot()
    return FetchedDay(
        batch=batch,
        pages=len(ledger["start_row"]),
        api_calls=stats["api_calls"],
        retries=stats["retries"],
        quota_wait_seconds=stats["quota_wait_seconds"],
        fetch_seconds=fetch_seconds,
        latencies_ms=stats["latencies_ms"],
        truncated=truncated,
        clicks=float(sum(ledger["clicks"])),
        impressions=float(sum(ledger["impressions"])),
        data_state=report.data_state(data_state),
        first_incomplete_date=first_incomplete or final_before,
        tie_passes=tie_passes,
    )


@dataclass(frozen=True)
class DayPlan:
    """How to fetch a list of days, from what Google says of them (one probe request).

    `first_incomplete` is Google's firstIncompleteDate when it falls in the days' range; days
    on or after it are not final yet and are fetched with dataState=all (stored as fresh data
    that the finalization sensor replaces once Google calls them final). When Google reports
    no incomplete day in the range, every day is final and `final_before` (the day after the
    range) is the evidence recorded for them.
    """

    first_incomplete: dt.date | None
    final_before: dt.date

    def data_state(self, day: dt.date, requested: str) -> str:
        if requested == "final" and day >= self.final_before:
            return "all"
        return requested


def plan_days(
    client: GscClient,
    site_url: str,
    report: Report,
    days: list[dt.date],
    *,
    stop_event: threading.Event | None = None,
) -> DayPlan:
    """Ask Google which of `days` are final, and refuse days outside its 16-month window.

    One dataState=all request grouped by date from the last day to a week after it: Google
    adds metadata.firstIncompleteDate only when that range holds incomplete data (so a range
    of old days comes back without it: all final). Raises `OutsideRetentionWindow` before
    anything is fetched for a day Google no longer keeps (Google answers those with an empty
    200 or a 400, never with the day's data). The window follows Google's clock when the
    probe shows it (its today is on or after its first incomplete day), else Pacific today.
    """
    first, last = min(days), max(days)
    body = {
        "startDate": last.isoformat(),
        "endDate": (last + dt.timedelta(days=PROBE_DAYS_AHEAD)).isoformat(),
        "dimensions": ["date"],
        "type": report.search_types[0],
        "dataState": "all",
        "rowLimit": 1,
    }
    page = client.query_page(site_url, body, stop_event=stop_event)
    incomplete = _first_incomplete_date(page.first_incomplete_date)
    oldest = oldest_available_day(incomplete or pacific_today())
    if first < oldest:
        raise OutsideRetentionWindow(
            f"{site_url} {report.name}: {first.isoformat()} is older than Google's "
            f"{RETENTION_MONTHS}-month window (the oldest day it keeps is {oldest.isoformat()});"
            " nothing was fetched or written. Set start_date on or after that day and backfill "
            "only partitions from it."
        )
    if incomplete is None:
        return DayPlan(None, last + dt.timedelta(days=1))
    return DayPlan(incomplete, incomplete)


def aggregation_rejected(exc: BaseException, site_url: str, report: Report) -> BaseException:
    """`exc` restated when Google refused the report's aggregation type for this property.

    Some properties answer byPage or byProperty with a 400 whatever the request; the fix is
    per property: let it fetch its reports with aggregation_type auto. Any other error is
    returned unchanged.
    """
    if not isinstance(exc, InvalidRequest) or "aggregation type" not in str(exc).lower():
        return exc
    return InvalidRequest(
        f"{site_url} report {report.name!r}: Google refuses aggregation_type "
        f"{report.aggregation_type!r} for this property ({exc}). Set `aggregation_type: auto` "
        "on this property in the config (its reports are then fetched with Google's default "
        "aggregation), or declare the report with aggregation_type: auto"
    )


def _write(warehouse: Warehouse, days: list[FetchedDay]) -> float:
    """Write `days` in one transaction (group commit); its duration in seconds."""
    started = time.perf_counter()
    warehouse.write_partitions([d.batch for d in days])
    return time.perf_counter() - started


def sync_days(
    client: GscClient,
    warehouse: Warehouse,
    site_url: str,
    report: Report,
    days: Iterable[dt.date],
    *,
    run_id: str,
    data_state: str = "final",
    concurrency: int = 4,
    stop_event: threading.Event | None = None,
    on_partition: Callable[[PartitionResult], None] | None = None,
) -> list[PartitionResult]:
    """Sync each day (one partition each); results in the order they were written.

    Days are fetched on `concurrency` threads and written by one writer thread: a day is
    written as soon as it is fetched, and the days that are fetched while a write is in
    progress (or waiting for another process's DuckDB lock) are written together in the next
    transaction (group commit; still all-or-nothing per day). Fetching goes on meanwhile, with
    at most `concurrency` fetched days waiting, which bounds memory.

    On the first error no further day starts, days in flight stop at their next API call and are
    not written, the days already fetched completely are still written, and the error is raised
    (typed). When `stop_event` is set the same happens and `SyncCancelled` is raised.
    `on_partition` runs in the calling thread after each day is committed.

    First one probe request (`plan_days`): a day Google does not call final yet is fetched with
    dataState=all and stored as fresh data, never as an empty or partial "final" day, and a
    day outside Google's 16-month window is an error before anything is fetched.
    """
    if data_state not in ("final", "all"):
        raise ValueError(f"data_state must be 'final' or 'all', not {data_state!r}")
    all_days = list(days)
    warehouse.ensure_schema([report])
    warehouse.claim_report(site_url, report)
    if not all_days:
        return []
    try:
        plan = plan_days(client, site_url, report, all_days, stop_event=stop_event)
    except Cancelled:
        raise _stopped(site_url, report, [], len(all_days)) from None
    except GscError as exc:
        exc.add_note(f"sync of {site_url} {report.name}: 0 day(s) written before the error")
        raise
    concurrency = max(1, concurrency)
    pending = all_days[::-1]
    halt = threading.Event()  # set on stop or on the first error; workers check it
    results: list[PartitionResult] = []
    first_error: BaseException | None = None
    fetching: set[Future[FetchedDay]] = set()
    ready: list[FetchedDay] = []
    writing: Future[float] | None = None
    writing_days: list[FetchedDay] = []

    def stopped() -> bool:
        return stop_event is not None and stop_event.is_set()

    with (
        ThreadPoolExecutor(concurrency, thread_name_prefix="gsc-sync") as pool,
        # One writer: the fetch threads never block on a write (nor on another process's
        # DuckDB lock), and the days that finish meanwhile form the next group commit.
        ThreadPoolExecutor(1, thread_name_prefix="gsc-write") as writer,
    ):
        try:
            while True:
                while (
                    pending
                    and len(fetching) < concurrency
                    and len(ready) < concurrency
                    and not halt.is_set()
                ):
                    if stopped():
                        halt.set()
                        break
                    day = pending.pop()
                    fetching.add(
                        pool.submit(
                            fetch_day,
                            client,
                            site_url,
                            report,
                            day,
                            run_id=run_id,
                            data_state=plan.data_state(day, data_state),
                            final_before=plan.final_before,
                            halt=halt,
                        )
                    )
                if writing is None and ready:
                    writing_days, ready = ready, []
                    writing = writer.submit(_write, warehouse, writing_days)
                if not fetching and writing is None:
                    break
                waiting: set[Future[Any]] = set(fetching)
                if writing is not None:
                    waiting.add(writing)
                done, _ = wait(waiting, _STOP_POLL_SECONDS, FIRST_COMPLETED)
                if stopped():
                    halt.set()
                for future in done:
                    if future is writing:
                        continue
                    fetching.discard(future)
                    exc = future.exception()
                    if exc is None:
                        ready.append(future.result())
                    elif first_error is None and not (isinstance(exc, Cancelled) and halt.is_set()):
                        first_error = exc
                        halt.set()
                if writing is not None and writing in done:
                    exc = writing.exception()
                    if exc is None:
                        seconds = writing.result()
                        for fetched in writing_days:
                            result = fetched.result(seconds)
                            results.append(result)
                            if on_partition is not None:
                                on_partition(result)
                    else:
                        # A failed write (e.g. the lock wait ran out): none of its days stand,
                        # and the days waiting behind it are not tried either.
                        ready.clear()
                        if first_error is None:
                            first_error = exc
                        halt.set()
                    writing, writing_days = None, []
        except BaseException:
            # An interrupt in this thread (Dagster's Terminate raises here) or a failing
            # callback: the days in flight must stop at their next API call, not run on.
            halt.set()
            raise
    if first_error is not None:
        first_error.add_note(
            f"sync of {site_url} {report.name}: {len(results)} day(s) written before the error"
        )
        raise first_error
    if halt.is_set():
        raise _stopped(site_url, report, results, len(all_days))
    return results


def _stopped(
    site_url: str, report: Report, written: list[PartitionResult], total: int
) -> SyncCancelled:
    return SyncCancelled(
        f"sync of {site_url} {report.name} stopped: {len(written)} of {total} day(s) written; "
        "the others were not written at all (no partial day)",
        written,
    )
