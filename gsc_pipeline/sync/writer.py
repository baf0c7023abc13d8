"""The group writer: fetched days written on one thread, the days ready together in one
transaction (group commit)."""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa

from gsc_pipeline.sync.result import PartitionResult
from gsc_pipeline.warehouse.base import Warehouse

_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))


def _malloc_trim() -> Callable[[], object]:
    """glibc's malloc_trim(0), or nothing where the C library has none (macOS, musl)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    return (lambda: trim(0)) if trim is not None else (lambda: None)


# glibc's mallopt(M_MMAP_THRESHOLD): blocks from this size up get their own mapping, returned to
# the system when freed. By default glibc raises the threshold to the largest block freed so far
# (up to 32 MB), so after the first 4 MB response body every body and every multi-MB buffer
# came from a thread's arena instead, where the freed ones stayed resident: ~150-400 MB of a
# step's peak was free memory in glibc's arenas (scripts/measure_step_memory.py, mallinfo2).
# Fixed at 1 MB the dynamic raise is off (docs/bench/ab-p20p20mem.md). Fixed at 64 KB, the
# ~150 MB that still sat free in the arenas at a step's peak goes back: a 30-day one-report run's
# peak RSS 583-594 -> 467-471 MB (128 KB: 562-566 -> 491-495) (docs/bench/README.md, stop 25).
# On Linux Arrow's buffers no longer come from malloc (`gsc_pipeline/__init__.py`: jemalloc); the
# bodies, the warehouses' drivers and DuckDB still do.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 << 10
_large_blocks_mapped = False


def map_large_blocks() -> None:
    """Fix glibc's mmap threshold at `MMAP_THRESHOLD_BYTES` for the process, once (nothing
    where the C library has no mallopt)."""
    global _large_blocks_mapped
    mallopt = getattr(_LIBC, "mallopt", None)
    if not _large_blocks_mapped and mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        _large_blocks_mapped = True


# The days' pages were allocated on many fetch threads; glibc keeps freed memory in each
# thread's arena, so a run process kept ~100-300 MB after a step that it no longer used (the next
# step's pages did not always land in it). Trimmed once a step's writes are done: after every
# group commit it cost CPU and did not lower the peak (docs/bench/ab-p14path.md).
_malloc_trim_now = _malloc_trim()


def _release_freed_memory() -> None:
    """Hand what the allocators hold free back to the system (glibc's arenas, Arrow's pool)."""
    _malloc_trim_now()
    pa.default_memory_pool().release_unused()


class GroupWriter:
    """Writes fetched days on its own thread, all the days waiting in one transaction.

    One writer: the fetch threads never block on a write (nor on another process's DuckDB
    lock), and the days fetched while a write runs form the next group commit (still
    all-or-nothing per day). One thread drives it: `add` each fetched day, `start_group` when a
    write may start, and `collect` a finished write, which hands each committed day to
    `on_written` (or the write's error to `on_error`) on that thread.
    """

    def __init__(
        self,
        warehouse: Warehouse,
        *,
        on_written: Callable[[PartitionResult], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        map_large_blocks()  # before the step's fetch threads allocate their first pages
        self._warehouse = warehouse
        self._on_written = on_written
        self._on_error = on_error
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gsc-write")
        self._waiting: list[PartitionResult] = []
        self._writing: Future[list[PartitionResult]] | None = None
        self._writing_days = 0

    def __enter__(self) -> GroupWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.shutdown(wait=True)
        self._waiting.clear()
        _release_freed_memory()

    @property
    def holding(self) -> int:
        """How many fetched days the writer holds: waiting, or in the write in progress (their
        rows are in memory until the write is collected)."""
        return len(self._waiting) + self._writing_days

    @property
    def busy(self) -> bool:
        return self._writing is not None or bool(self._waiting)

    @property
    def running(self) -> set[Future[list[PartitionResult]]]:
        """The write in progress, if any (to wait on it beside the fetches)."""
        return {self._writing} if self._writing is not None else set()

    def add(self, day: PartitionResult) -> None:
        self._waiting.append(day)

    def start_group(self, *, more_coming: bool = False, linger_days: int = 1) -> None:
        """Write the days waiting, in one transaction, unless a write is running.

        While `more_coming` (days of this sync still fetching), a group under the warehouse's
        `group_commit_rows` waits for them, up to `linger_days` days: the caller then writes it
        when the fetches end, so a day never waits for a fetch that is not running.
        """
        if self._writing is not None or not self._waiting:
            return
        if (
            more_coming
            and len(self._waiting) < linger_days
            and sum(day.batch.rows.num_rows for day in self._waiting if day.batch)
            < self._warehouse.group_commit_rows
        ):
            return
        group, self._waiting = self._waiting, []
        self._writing_days = len(group)
        self._writing = self._thread.submit(self._write, group)

    def collect(self, done: set[Future]) -> None:
        """Hand on the running write's days (or its error) if it is among `done`."""
        if self._writing is None or self._writing not in done:
            return
        finished, self._writing, self._writing_days = self._writing, None, 0
        error = finished.exception()
        if error is not None:
            # A failed write (e.g. the lock wait ran out): none of its days stand, and the days
            # waiting behind it are not tried either.
            self._waiting.clear()
            self._on_error(error)
            return
        for day in finished.result():
            self._on_written(day)

    def _write(self, group: list[PartitionResult]) -> list[PartitionResult]:
        started = time.perf_counter()
        self._warehouse.write_partitions([day.batch for day in group])
        seconds = time.perf_counter() - started
        written = [day.committed(seconds) for day in group]
        group.clear()  # the last references to the days' rows (the pool holds the list)
        return written
