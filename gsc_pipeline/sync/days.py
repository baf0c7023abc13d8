"""`sync_days`: one (site, report) over a list of days, fetched concurrently, each day written
as one partition by the group writer."""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from gsc_pipeline.gsc.client import GscClient
from gsc_pipeline.gsc.errors import Cancelled, GscError
from gsc_pipeline.pandas_on_demand import spare_pandas
from gsc_pipeline.reports import Report
from gsc_pipeline.sync.fetch import Probes, fetch_day, plan_days
from gsc_pipeline.sync.result import PartitionResult
from gsc_pipeline.sync.shard_plan import ShardPlanner
from gsc_pipeline.sync.writer import GroupWriter
from gsc_pipeline.warehouse.base import Warehouse

# How often the calling thread notices the caller's stop_event while days are in flight.
_STOP_POLL_SECONDS = 0.05


class InFlight:
    """How many days a step keeps in flight: Little's law, L = rate x latency, within a cap.

    A day's pages are fetched one after another and its sibling shards at once only with
    free slots (`try_take`), so requests in flight never pass the limit. To
    keep the credential's budget (`qpm`, all of it when the step runs alone) busy at the
    latency measured so far, a step needs rate x latency requests in flight, plus one to
    cover the gap between a reply and the next request; before a latency is known, the cap.
    The slowest recent days set the latency (their p95), so a burst of slow pages does not
    leave the budget idle; too many in flight only waits in the rate limiter.

    `cap` and `memory_cap_bytes` bound memory: `cap` is the most days the step holds at once,
    fetching or fetched and not yet committed (waiting for the writer or in its transaction),
    whichever sync of the step holds them (`try_hold`, `set_held`). A writer that lags therefore
    stops new fetches instead of letting fetched days pile up. Days differ a thousandfold in size
    (500 rows to 60,000 a day), so the days held also stay within `memory_cap_bytes` of fetched
    rows, each sync's days counted at the size of its recent days (`observe_day_bytes`): a
    large property holds a few days, a small one `cap`. A sync whose days' size is not known
    yet holds at most a quarter of `cap` (its first day tells); a step holding nothing may
    always start one day.
    """

    def __init__(self, qpm: float, cap: int, memory_cap_bytes: int | None = None) -> None:
        self.rate_per_second = qpm / 60.0
        self.cap = max(1, cap)
        self.memory_cap_bytes = memory_cap_bytes
        self.limit = self.cap
        self._latency_s: float | None = None
        self._slots = threading.Lock()
        self.taken = 0
        self._held: dict[object, int] = {}  # days held, per sync holding any
        self._day_bytes: dict[object, float] = {}  # per sync: the size of its recent days

    def try_hold(self, holder: object) -> bool:
        """One more day for `holder` (a sync) if the step holds fewer than `cap` and the day
        fits in `memory_cap_bytes` beside the days held."""
        with self._slots:
            held = sum(self._held.values())
            if held >= self.cap or (held and not self._fits(holder)):
                return False
            self._held[holder] = self._held.get(holder, 0) + 1
            return True

    def _fits(self, holder: object) -> bool:
        if self.memory_cap_bytes is None:
            return True
        size = self._day_bytes.get(holder)
        if size is None:
            return self._held.get(holder, 0) < max(1, self.cap // 4)
        # A sync whose size is not known yet counts at this one's.
        held_bytes = sum(days * self._day_bytes.get(h, size) for h, days in self._held.items())
        return held_bytes + size <= self.memory_cap_bytes

    def observe_day_bytes(self, holder: object, nbytes: int) -> None:
        """A day `holder` fetched took `nbytes` (its rows and ledger as held until written)."""
        with self._slots:
            size = self._day_bytes.get(holder)
            # Weighted to the recent days, as the latency (a property's days drift in size).
            self._day_bytes[holder] = nbytes if size is None else 0.7 * size + 0.3 * nbytes

    def forget(self, holder: object) -> None:
        """`holder` has stopped: nothing held, its days' size forgotten."""
        with self._slots:
            self._held.pop(holder, None)
            self._day_bytes.pop(holder, None)

    def set_held(self, holder: object, days: int) -> None:
        """`holder` now holds `days` days (its days committed or dropped are given back)."""
        with self._slots:
            if days > 0:
                self._held[holder] = days
            else:
                self._held.pop(holder, None)

    def try_take(self) -> bool:
        """Take one of the `limit` requests in flight if one is free: a day fetching holds one,
        and each extra sibling shard a day fetches alongside holds one more."""
        with self._slots:
            if self.taken >= self.limit:
                return False
            self.taken += 1
            return True

    def release(self) -> None:
        with self._slots:
            self.taken -= 1

    def observe(self, latency_ms: float) -> None:
        if latency_ms <= 0:
            return
        seconds = latency_ms / 1000.0
        # An exponential average, weighted to the recent days (the API's latency drifts).
        self._latency_s = (
            seconds if self._latency_s is None else 0.7 * self._latency_s + 0.3 * seconds
        )
        self.limit = max(1, min(self.cap, math.ceil(self.rate_per_second * self._latency_s) + 1))


class SyncCancelled(Exception):
    """The stop event was set: the days listed in `written` stand, no other day was written."""

    def __init__(self, message: str, written: list[PartitionResult]) -> None:
        super().__init__(message)
        self.written = written


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
    memory_cap_bytes: int | None = None,
    stop_event: threading.Event | None = None,
    on_partition: Callable[[PartitionResult], None] | None = None,
    on_plan: Callable[[str], None] | None = None,
    in_flight: InFlight | None = None,
    probes: Probes | None = None,
) -> list[PartitionResult]:
    """Sync each day (one partition each); results in the order they were written.

    Days are fetched concurrently, as many as the measured latency needs to keep the client's
    budget busy (`InFlight`), within the memory caps (`concurrency` days, `memory_cap_bytes` of
    fetched rows), and written by one writer thread: a day is written as soon as it is fetched,
    and the days that are fetched while a write is in progress (or waiting for another
    process's DuckDB lock) are written together in the next transaction (group commit; still
    all-or-nothing per day). Where the warehouse asks for larger commits (DuckDB:
    `group_commit_rows`), a small group also waits for the days still fetching, up to a quarter
    of the days cap, never for a fetch not running. Fetching goes on meanwhile, but the step
    never holds more days than its caps allow, fetching or fetched and not yet committed, which
    bounds memory: a lagging writer stops new fetches.

    On the first error no further day starts, days in flight stop at their next API call and are
    not written, the days already fetched completely are still written, and the error is raised
    (typed). When `stop_event` is set the same happens and `SyncCancelled` is raised.
    `on_partition` runs in the calling thread after each day is committed; `on_plan` gets one
    line before the first day is fetched: the requests the days are planned to take, sharded
    days included (`ShardPlanner`: a day whose neighbours were capped starts at their splits).
    `in_flight`: the days in flight when several syncs share one budget
    (`sync.shared.SharedInFlight`); `probes`: their finality probe, sent once (`Probes`).

    First one probe request (`plan_days`): a day Google does not call final yet is fetched with
    dataState=all and stored as fresh data, never as an empty or partial "final" day, and a
    day outside Google's 16-month window is an error before anything is fetched.
    """
    if data_state not in ("final", "all"):
        raise ValueError(f"data_state must be 'final' or 'all', not {data_state!r}")
    # Before the first Arrow conversion: a process that only fetches never loads pandas.
    spare_pandas()
    all_days = list(days)
    # The probe is the first API call: a bad credential or endpoint fails it before any table
    # is created in the user's warehouse.
    try:
        plan = (
            plan_days(client, site_url, report, all_days, stop_event=stop_event, probes=probes)
            if all_days
            else None
        )
    except Cancelled:
        raise _stopped(site_url, report, [], len(all_days)) from None
    except GscError as exc:
        exc.add_note(f"sync of {site_url} {report.name}: 0 day(s) written before the error")
        raise
    warehouse.ensure_schema([report])
    warehouse.claim_report(site_url, report)
    if plan is None:
        return []
    # Days whose neighbours were capped start at their shard splits; the quota cost, up front.
    shard_planner = ShardPlanner.from_ledger(warehouse, site_url, report, all_days)
    if on_plan is not None:
        on_plan(shard_planner.describe(site_url, all_days))

    in_flight = in_flight or InFlight(client.limiter.qpm, concurrency, memory_cap_bytes)
    for latency_ms in client.stats.snapshot()["latencies_ms"][-1:]:
        in_flight.observe(latency_ms)  # the probe's latency, before the first day starts

    # Set on the first error or once the caller's stop_event is seen (the fetch threads watch
    # only this one): no further day starts, and the days in flight stop at their next call.
    stop_on_error_or_cancel = threading.Event()
    written: list[PartitionResult] = []

    def fetch(day: dt.date) -> PartitionResult:
        return fetch_day(
            client,
            site_url,
            report,
            day,
            run_id=run_id,
            data_state=plan.data_state(day, data_state),
            final_before=plan.final_before,
            stop_event=stop_on_error_or_cancel,
            shard_planner=shard_planner,
            request_slots=in_flight,
        )

    def fetched(day: dt.date) -> PartitionResult:
        result = fetch(day)
        in_flight.observe(result.latency_p95_ms)
        return result

    def on_written(result: PartitionResult) -> None:
        written.append(result)
        if on_partition is not None:
            on_partition(result)

    error = _fetch_and_write(
        all_days,
        fetched,
        warehouse,
        in_flight=in_flight,
        stop_event=stop_event,
        stop_on_error_or_cancel=stop_on_error_or_cancel,
        on_written=on_written,
    )
    if error is not None:
        error.add_note(
            f"sync of {site_url} {report.name}: {len(written)} day(s) written before the error"
        )
        raise error
    if stop_on_error_or_cancel.is_set():
        raise _stopped(site_url, report, written, len(all_days))
    return written


def _fetch_and_write(
    days: list[dt.date],
    fetch: Callable[[dt.date], PartitionResult],
    warehouse: Warehouse,
    *,
    in_flight: InFlight,
    stop_event: threading.Event | None,
    stop_on_error_or_cancel: threading.Event,
    on_written: Callable[[PartitionResult], None],
) -> BaseException | None:
    """Fetch `days` in order and hand each to a `GroupWriter`; the first error, if any.

    At most `in_flight.limit` requests are in flight (read afresh as latencies come in; a day
    holds one, the extra sibling shards it fetches at once one each), and no day starts while
    the step holds `in_flight.cap` days, fetching or fetched and not yet committed (bounding
    memory, `InFlight.try_hold`). This thread only starts fetches and writes and waits for
    them, looking at `stop_event` at least every `_STOP_POLL_SECONDS`.
    """
    todo = deque(days)
    fetching: set[Future[PartitionResult]] = set()
    errors: list[BaseException] = []
    holder = object()  # this sync's days in `in_flight`'s count of the step's days held
    # A group may wait for a quarter of the days the step may hold, no more: the days waiting
    # count against that cap, so waiting longer would hold back the next fetches.
    linger_days = max(1, in_flight.cap // 4)

    def start_day() -> bool:
        if not in_flight.try_hold(holder):
            return False
        if not in_flight.try_take():  # the day's own request in flight
            in_flight.set_held(holder, len(fetching) + writer.holding)
            return False
        return True

    def fail(error: BaseException) -> None:
        errors.append(error)
        stop_on_error_or_cancel.set()

    def stop_requested() -> bool:
        if stop_event is not None and stop_event.is_set():
            stop_on_error_or_cancel.set()
        return stop_on_error_or_cancel.is_set()

    try:
        with (
            ThreadPoolExecutor(in_flight.cap, thread_name_prefix="gsc-sync") as pool,
            GroupWriter(warehouse, on_written=on_written, on_error=fail) as writer,
        ):
            try:
                while True:
                    # What this sync holds now: its days fetching, and those the writer has not
                    # committed (a write collected or failed gives its days back).
                    in_flight.set_held(holder, len(fetching) + writer.holding)
                    while todo and not stop_requested() and start_day():
                        future = pool.submit(fetch, todo.popleft())
                        future.add_done_callback(lambda _: in_flight.release())
                        fetching.add(future)
                    # Days still fetching may join a small group (`GroupWriter.start_group`).
                    writer.start_group(
                        more_coming=bool(fetching) and not stop_on_error_or_cancel.is_set(),
                        linger_days=linger_days,
                    )
                    if not fetching and not writer.busy:
                        if not todo or stop_on_error_or_cancel.is_set():
                            break
                        # The step's other syncs hold every day it may: wait for one to commit.
                        stop_on_error_or_cancel.wait(_STOP_POLL_SECONDS)
                        stop_requested()
                        continue
                    done, _ = wait(fetching | writer.running, _STOP_POLL_SECONDS, FIRST_COMPLETED)
                    stop_requested()  # seen within the poll interval even while no day can start
                    for future in done & fetching:
                        error = future.exception()
                        if error is None:
                            result = future.result()
                            in_flight.observe_day_bytes(holder, result.held_bytes)
                            writer.add(result)
                        elif not (
                            isinstance(error, Cancelled) and stop_on_error_or_cancel.is_set()
                        ):
                            fail(error)  # a Cancelled after the stop is its effect, not an error
                    fetching -= done
                    writer.collect(done)
            except BaseException:
                # An interrupt in this thread (Dagster's Terminate raises here) or a failing
                # callback: the days in flight must stop at their next API call, not run on.
                stop_on_error_or_cancel.set()
                raise
    finally:
        in_flight.forget(holder)  # its days given back once the pool and the writer have stopped
    return errors[0] if errors else None


def _stopped(
    site_url: str, report: Report, written: list[PartitionResult], total: int
) -> SyncCancelled:
    return SyncCancelled(
        f"sync of {site_url} {report.name} stopped: {len(written)} of {total} day(s) written; "
        "the others were not written at all (no partial day)",
        written,
    )
