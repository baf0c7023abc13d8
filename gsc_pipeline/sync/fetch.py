"""Fetching one day: every page of every search type, settled and parsed into one partition
batch, and the probe (`plan_days`) that says which days are final before any is fetched."""

from __future__ import annotations

import datetime as dt
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gsc_pipeline.gsc.client import ClientStats, GscClient
from gsc_pipeline.gsc.errors import Cancelled, GscError, InvalidRequest
from gsc_pipeline.reports import DAILY_ROW_CAP, RETENTION_MONTHS, Report
from gsc_pipeline.search_calendar import oldest_available_day, pacific_today
from gsc_pipeline.sync.pages import page_from_rows
from gsc_pipeline.sync.result import PartitionResult
from gsc_pipeline.sync.shard_plan import ShardPlanner
from gsc_pipeline.sync.shards import (
    RequestSlots,
    Shard,
    ShardFetch,
    SplitDay,
    merge_shards,
    split_capped_day,
    split_planned_day,
)
from gsc_pipeline.sync.tie_order import settle_tie_order
from gsc_pipeline.warehouse.base import LEDGER_SCHEMA, PartitionBatch

# How far past a sync's last day its finality probe looks for Google's first incomplete day.
PROBE_DAYS_AHEAD = 7
# How long one probe's answer serves the other syncs of a step (`Probes`). Google moves its
# first incomplete day a few times a day; a step's reports start within a second of each other.
PROBE_ANSWER_SECONDS = 60.0


class OutsideRetentionWindow(GscError):
    """A day older than Google's 16-month window: Google would answer it empty, not with data."""


def _first_incomplete_date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value[:10]) if value else None


def _percentile(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def fetch_day(
    client: GscClient,
    site_url: str,
    report: Report,
    day: dt.date,
    *,
    run_id: str,
    data_state: str = "final",
    final_before: dt.date | None = None,
    stop_event: threading.Event | None = None,
    shard_planner: ShardPlanner | None = None,
    request_slots: RequestSlots | None = None,
) -> PartitionResult:
    """Fetch every page of one day (all search types) into one partition batch; no write.

    `final_before` is what Google said of finality before this fetch (`DayPlan`): recorded in
    the ledger's first_incomplete_date where the pages themselves carry no metadata, so an
    empty final day is stored with Google's word that it is final, not just a short page.
    Raises `Cancelled` when `stop_event` is set by the time the last page is in: a stop never
    lets a day whose fetch did not complete reach the warehouse. The result holds the batch for
    the group writer. A search type whose day hits Google's row cap is re-fetched in shards
    when the report shards (`sync.shards`); a day under the cap costs no extra request.
    With a `shard_planner`, a day whose neighbours were capped starts directly at the splits
    they needed (no capped whole-day request), and what this day shows is learned for the next.
    With `request_slots` (the step's requests in flight, `InFlight`), a split's sibling shards
    are fetched at once, each extra request taking a free slot; without, one after another.
    A sharded day's shard pages are released once merged (only the merged rows are kept).
    """
    stop_event = stop_event or threading.Event()
    sink = ClientStats()
    tables: list[pa.Table] = []
    ledger: dict[str, list[Any]] = {name: [] for name in LEDGER_SCHEMA.names}
    truncated = False
    tie_passes = 0
    shards = capped_shards = started_split = 0
    first_incomplete: dt.date | None = None
    started = time.perf_counter()
    try:
        for search_type in report.search_types:
            requests = _SearchTypeDay(
                client, site_url, report, day, search_type, data_state, stop_event, sink,
                request_slots,
            )  # fmt: skip
            split, planned = _split_day(requests, shard_planner)
            started_split += planned
            if len(split.leaves) > 1:
                rows = merge_shards([page for leaf in split.leaves for page in leaf.pages], report)
                merged_rows: int | None = rows.num_rows
            else:
                rows, merged_rows = pa.concat_tables(split.leaves[0].pages), None
            if shard_planner:
                shard_planner.learn(search_type, day, split, rows.num_rows)
            tables.append(rows)
            del rows
            for leaf in split.leaves:
                tie_passes += leaf.tie_passes
                first_incomplete = first_incomplete or next(
                    (d for d in leaf.first_incomplete if d), None
                )
                pages, leaf.pages = leaf.pages, []  # merged: a shard's pages go page by page
                for i in range(len(pages)):
                    page, pages[i] = pages[i], None
                    clicks = pc.sum(page.column("clicks")).as_py() or 0.0
                    impressions = pc.sum(page.column("impressions")).as_py() or 0.0
                    del page
                    for name, value in (
                        ("site_url", site_url),
                        ("report", report.name),
                        ("search_type", search_type),
                        ("date", day),
                        ("start_row", i * report.row_limit),
                        ("row_limit", report.row_limit),
                        ("rows_returned", leaf.returned[i]),
                        ("clicks", float(clicks)),
                        ("impressions", float(impressions)),
                        ("data_state", report.data_state(data_state)),
                        ("first_incomplete_date", leaf.first_incomplete[i] or final_before),
                        ("fetched_at", dt.datetime.now(dt.UTC).replace(tzinfo=None)),
                        ("run_id", run_id),
                        ("shard", leaf.shard.label),
                        ("merged_rows", merged_rows),
                    ):
                        ledger[name].append(value)
            shards += len(split.leaves)
            capped_shards += split.capped_shards
            truncated = truncated or split.capped_shards > 0
    finally:
        if shard_planner:  # no day of the step waits on this one any longer
            shard_planner.release(day)
    fetch_seconds = time.perf_counter() - started
    if stop_event.is_set():
        raise Cancelled(f"{site_url} {report.name} {day}: stopped before writing; not written")
    batch = PartitionBatch(
        site_url=site_url,
        report=report,
        day=day,
        rows=pa.concat_tables(tables),
        ledger=pa.Table.from_pydict(ledger, schema=LEDGER_SCHEMA),
    )
    stats = sink.snapshot()
    return PartitionResult(
        site_url=site_url,
        report=report.name,
        day=day,
        rows=batch.rows.num_rows,
        pages=len(ledger["start_row"]),
        api_calls=stats["api_calls"],
        retries=stats["retries"],
        quota_wait_seconds=round(stats["quota_wait_seconds"], 3),
        fetch_seconds=round(fetch_seconds, 3),
        latency_p50_ms=round(_percentile(stats["latencies_ms"], 50), 1),
        latency_p95_ms=round(_percentile(stats["latencies_ms"], 95), 1),
        achieved_qpm=round(stats["api_calls"] * 60 / fetch_seconds, 1) if fetch_seconds else 0.0,
        truncated=truncated,
        clicks=float(sum(ledger["clicks"])),
        impressions=float(sum(ledger["impressions"])),
        data_state=report.data_state(data_state),
        first_incomplete_date=first_incomplete or final_before,
        tie_passes=tie_passes,
        shards=shards,
        capped_shards=capped_shards,
        started_split=started_split,
        planned_requests=shard_planner.planned_requests(day) if shard_planner else None,
        batch=batch,
    )


def _split_day(
    requests: _SearchTypeDay, planner: ShardPlanner | None
) -> tuple[SplitDay, bool]:
    """One search type of a day as the shards to store, and whether it started split.

    With a planner: a day whose neighbours were capped starts at their splits (no whole-day
    request); a day with no known neighbour (the scout of a step's days without one, the others
    waiting on its answer) first asks for the row at the cap and starts split if it is there;
    any other sends its whole-day request, split once it comes back capped.
    """
    report, search_type, day = requests.report, requests.search_type, requests.day
    if planner:
        planner.await_scout(search_type, day)
    probes = 0
    try:
        plan = planner.plan(search_type, day) if planner else {}
        if not plan and planner and planner.blind(search_type, day):
            # Nothing known of the day's size: one row at the cap tells whether its whole-day
            # request would come back capped, before the cap's pages are fetched to be discarded.
            probes = 1
            if requests.reaches_cap(Shard()):
                planner.learn_capped(search_type, day)
                plan = {"": None}
        whole = None if plan else requests.fetch(Shard())
        if planner and whole is not None:
            if whole.capped and report.shard:
                planner.learn_capped(search_type, day)
            else:
                planner.learn(search_type, day, SplitDay([whole], 0), whole.rows)
    finally:
        if planner:  # the days waiting on this one's whole-day answer go on
            planner.scouted(search_type, day)
    if whole is None:
        return split_planned_day(plan, report, requests, spent=probes), True
    if whole.capped and report.shard:
        capped = deque([whole])
        del whole  # the split takes it out of `capped`: its pages go once it is split
        return split_capped_day(capped, report, requests), False
    return SplitDay([whole], probes + whole.requests), False


@dataclass(frozen=True)
class _SearchTypeDay:
    """One search type of one day: the requests its whole-day fetch and shards send."""

    client: GscClient
    site_url: str
    report: Report
    day: dt.date
    search_type: str
    data_state: str
    stop_event: threading.Event
    sink: ClientStats
    slots: RequestSlots | None = None

    @property
    def where(self) -> str:
        return f"{self.site_url} {self.report.name} {self.search_type} {self.day}"

    def _query(self, shard: Shard, **changes: Any) -> Any:
        body = {
            **self.report.request_body(self.day, self.search_type, self.data_state, shard.filters),
            **changes,
        }
        return self.client.query_page(
            self.site_url, body, stop_event=self.stop_event, sink=self.sink
        )

    def _page(self, shard: Shard, start_row: int) -> tuple[pa.Table, dt.date | None]:
        # Arrow straight from the response bytes: no Python object per row (CPU and RSS).
        response = self._query(shard, startRow=start_row)
        page = page_from_rows(self.report, self.site_url, self.search_type, self.day, response.rows)
        return page, _first_incomplete_date(
            response.first_incomplete_date or response.first_incomplete_hour
        )

    def fetch(self, shard: Shard) -> ShardFetch:
        """Every page of one request shape (the whole day, or a shard), tie order settled.

        When the report shards, a shape whose pages reach Google's daily cap stops there,
        unsettled (`complete` False): it is split and its rows discarded, so neither the empty
        page after the cap nor tie passes are worth a request; `finish` completes a capped
        shape that is kept (no split left within the budget).
        """
        return self._more(ShardFetch(shard, [], [], [], 0), until_cap=bool(self.report.shard))

    def reaches_cap(self, shard: Shard) -> bool:
        """Whether `shard`'s request holds Google's daily cap of rows: one request for the row
        at the cap (`startRow` DAILY_ROW_CAP - 1, `rowLimit` 1), not the cap's pages."""
        return len(self._query(shard, startRow=DAILY_ROW_CAP - 1, rowLimit=1).rows) > 0

    def fetch_many(self, shards: Sequence[Shard]) -> list[ShardFetch]:
        """`fetch` of each sibling shard, results in their order; at once as far as the step's
        requests in flight allow (`slots`: one more taken per extra shard fetched alongside,
        only while one is free, looked at again each time a shard starts, so slots freed by
        the step's other days are used; the step never has more requests in flight than its
        limit, and a day with none free goes on one shard after another in its own thread).

        The first error stops the day: the siblings make no further API call (nor any after
        `stop_event`), and it is raised once they have all returned.
        """
        if self.slots is None or len(shards) < 2:
            return [self.fetch(shard) for shard in shards]
        slots = self.slots
        day_stop = _EitherStop(self.stop_event)
        siblings = replace(self, stop_event=day_stop)
        results: list[ShardFetch | None] = [None] * len(shards)
        errors: list[BaseException] = []
        lock = threading.Lock()
        claimed = 0  # shards started
        starting = 0  # extra workers started that have not claimed a shard yet

        pool = _shard_pool()
        futures: list[Future[None]] = []

        def grow() -> None:
            # Under `lock`: one more worker per unclaimed shard, while a slot is free.
            nonlocal starting
            while len(shards) - claimed > starting and slots.try_take():
                starting += 1
                futures.append(pool.submit(work, True))

        def work(extra: bool) -> None:
            nonlocal claimed, starting
            started = extra
            try:
                while True:
                    with lock:
                        if started:  # counted as starting until it looks for a shard
                            starting, started = starting - 1, False
                        if claimed == len(shards) or day_stop.is_set():
                            return
                        i, claimed = claimed, claimed + 1
                        grow()
                    try:
                        results[i] = siblings.fetch(shards[i])
                    except BaseException as exc:
                        with lock:
                            errors.append(exc)
                        day_stop.set()
                        return
            finally:
                if extra:
                    slots.release()

        work(False)
        with lock:  # no worker starts after this day's own thread is done
            claimed = len(shards)
        wait(futures)  # `futures` grows no more: every worker has claimed its last shard
        # The first error, not a sibling's Cancelled that it caused.
        first = next((e for e in errors if not isinstance(e, Cancelled)), None)
        if first is not None or errors:
            raise first or errors[0]
        if any(result is None for result in results):  # the step stopped between two shards
            raise Cancelled(f"{self.where}: stopped before the API call")
        return results  # type: ignore[return-value]

    def finish(self, node: ShardFetch) -> ShardFetch:
        """`node` with the pages it stopped before (see `fetch`), tie order settled."""
        return node if node.complete else self._more(node, until_cap=False)

    def _more(self, node: ShardFetch, *, until_cap: bool) -> ShardFetch:
        row_limit = self.report.row_limit
        pages, incomplete = list(node.pages), list(node.first_incomplete)
        requests = node.requests
        while True:
            page, page_incomplete = self._page(node.shard, len(pages) * row_limit)
            requests += 1
            pages.append(page)
            incomplete.append(page_incomplete)
            if page.num_rows < row_limit:
                break
            if until_cap and sum(p.num_rows for p in pages) >= DAILY_ROW_CAP:
                returned = [p.num_rows for p in pages]
                return ShardFetch(node.shard, pages, returned, incomplete, requests, complete=False)
        returned = [page.num_rows for page in pages]
        passes = 0
        if len(pages) > 1:
            where = f"{self.where} {node.shard.label}".rstrip()

            def refetch(start_row: int) -> pa.Table:
                nonlocal requests
                requests += 1
                return self._page(node.shard, start_row)[0]

            pages, passes = settle_tie_order(refetch, pages, self.report, where)
        return ShardFetch(node.shard, pages, returned, incomplete, requests, passes)

    def country_impressions(self, shard: Shard) -> list[tuple[str, float]]:
        """A shard's countries with their impressions: one request grouped by country."""
        # Grouped by country, not hour: an hourly report's HOURLY_ALL is not needed.
        state = {"dataState": self.data_state} if self.report.hourly else {}
        rows = self._query(shard, dimensions=["country"], startRow=0, **state).rows
        keys, _, impressions, _, _ = rows.flatten()
        countries = pc.list_element(keys, 0).to_pylist() if len(rows) else []
        return list(zip(countries, impressions.to_pylist(), strict=True))


# The threads that fetch a day's extra sibling shards, shared by every step of the process and
# kept: each thread builds its API client once (`GscClient._service`), not once per split. Its
# size only bounds threads: the requests in flight are bounded by the steps' `RequestSlots`.
_SHARD_THREADS = 64
_shard_pool_lock = threading.Lock()
_shard_executor: ThreadPoolExecutor | None = None


def _shard_pool() -> ThreadPoolExecutor:
    global _shard_executor
    with _shard_pool_lock:
        if _shard_executor is None:
            _shard_executor = ThreadPoolExecutor(_SHARD_THREADS, thread_name_prefix="gsc-shard")
        return _shard_executor


class _EitherStop(threading.Event):
    """Set when set itself (a sibling shard failed) or when `parent` is (the step's stop)."""

    _POLL_SECONDS = 0.05  # how soon a wait notices `parent`

    def __init__(self, parent: threading.Event) -> None:
        super().__init__()
        self._parent = parent

    def is_set(self) -> bool:
        return super().is_set() or self._parent.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = self._POLL_SECONDS
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    return False
            super().wait(left)
        return True


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


class Probes:
    """One finality probe's answer for every sync of a step that would send the same one.

    The reports of a property's step sync the same days of the same site, so their probes are
    the same request (the site, the first search type, the last day): the first sync to get
    there sends it, syncs arriving meanwhile wait for its answer, and the answer serves for
    `PROBE_ANSWER_SECONDS`. A probe that fails is not remembered: the next sync sends its own.
    """

    def __init__(self, answer_seconds: float = PROBE_ANSWER_SECONDS) -> None:
        self.answer_seconds = answer_seconds
        self.sent = 0
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str, dt.date], threading.Lock] = {}
        self._answers: dict[tuple[str, str, dt.date], tuple[float, dt.date | None]] = {}

    def first_incomplete(
        self, key: tuple[str, str, dt.date], probe: Callable[[], dt.date | None]
    ) -> dt.date | None:
        """`probe()`'s answer for `key`, sent once while a recent answer is known."""
        with self._lock:
            key_lock = self._keys.setdefault(key, threading.Lock())
        with key_lock:
            known = self._answers.get(key)
            if known is not None and time.monotonic() - known[0] < self.answer_seconds:
                return known[1]
            answer = probe()
            with self._lock:
                self.sent += 1
                self._answers[key] = (time.monotonic(), answer)
            return answer


def plan_days(
    client: GscClient,
    site_url: str,
    report: Report,
    days: list[dt.date],
    *,
    stop_event: threading.Event | None = None,
    probes: Probes | None = None,
) -> DayPlan:
    """Ask Google which of `days` are final, and refuse days outside its 16-month window.

    One dataState=all request grouped by date from the last day to a week after it: Google
    adds metadata.firstIncompleteDate only when that range holds incomplete data (so a range
    of old days comes back without it: all final). Raises `OutsideRetentionWindow` before
    anything is fetched for a day Google no longer keeps (Google answers those with an empty
    200 or a 400, never with the day's data). The window follows Google's clock when the
    probe shows it (its today is on or after its first incomplete day), else Pacific today.
    With `probes`, the syncs of a step that would send the same probe send it once.
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

    def probe() -> dt.date | None:
        page = client.query_page(site_url, body, stop_event=stop_event)
        return _first_incomplete_date(page.first_incomplete_date)

    incomplete = (
        probe()
        if probes is None
        else probes.first_incomplete((site_url, report.search_types[0], last), probe)
    )
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
