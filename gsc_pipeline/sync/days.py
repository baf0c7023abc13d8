"""`sync_days`: one (site, report) over a list of days, fetched concurrently, each day written
as one partition by the group writer."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from gsc_pipeline.gsc.client import GscClient
from gsc_pipeline.gsc.errors import Cancelled, GscError
from gsc_pipeline.reports import Report
from gsc_pipeline.sync.fetch import fetch_day, plan_days
from gsc_pipeline.sync.result import PartitionResult
from gsc_pipeline.warehouse.base import Warehouse

# How often the calling thread notices the caller's stop_event while days are in flight.
_STOP_POLL_SECONDS = 0.05


class SyncCancelled(Exception):
    """The stop event was set: the days listed in `written` stand, no other day was written."""

    def __init__(self, message: str, written: list[PartitionResult]) -> None:
        super().__init__(message)
        self.written = written


def _write(warehouse: Warehouse, days: list[PartitionResult]) -> float:
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
    fetching: set[Future[PartitionResult]] = set()
    ready: list[PartitionResult] = []
    writing: Future[float] | None = None
    writing_days: list[PartitionResult] = []

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
                            result = fetched.committed(seconds)
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
