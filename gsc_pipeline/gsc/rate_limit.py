"""One request budget per credential (and one per site), shared by every thread, process and host.

Google counts a credential's calls (and a property's) per minute wherever they come from, so the
budget is one bucket per credential, not a share per step: a step running alone may use all of
it, and any number of steps, processes or hosts together never exceed it.

The bucket is the generic cell rate algorithm (GCRA, a token bucket written as "the next free
slot"): requests are spaced exactly `60 / qpm` seconds apart, at most `burst` back to back, in
arrival order. Its whole state is one number per key, so sharing it is one atomic
read-modify-write wherever every spender can reach it:
- `MemoryStore`: this process only (unit tests, one-off tools);
- `FileStore`: one file per key under a directory, updated under an exclusive `flock`: every
  process of one host (the default with a DuckDB warehouse);
- `PostgresStore`: one row per key, updated by a single `INSERT .. ON CONFLICT DO UPDATE` on the
  server's clock: every host reaching the database (a PostgreSQL warehouse, the k8s deployment).

Why not pyrate-limiter (pinned until now, unused, removed): its SQLite and PostgreSQL buckets
store one row per request and count them in a window, so "N per minute" admits all N at once at
the start of a window (the burst a server-side per-minute quota rejects) and every acquire costs
several queries plus a background leak thread per bucket; its blocking acquire sleeps in
`time.sleep` (a stopped run would wait out the delay) and adds a fixed 50 ms buffer to each wait.
GCRA needs one statement per request and waits on a `threading.Event`, so a stop aborts at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from gsc_pipeline.gsc.errors import Cancelled

# Where the budget is shared: a PostgreSQL URL or a directory; unset, the PostgreSQL warehouse
# when there is one, else a directory in the host's temporary directory (see `quota_store`).
QUOTA_STORE_ENV = "GSC_QUOTA_STORE"


class QuotaStore(Protocol):
    """Atomic GCRA reservations: the seconds from now until the claimed slot starts."""

    name: str

    def reserve(self, key: str, interval: float, burst: int) -> float: ...


def _gcra(next_free: float, now: float, interval: float, burst: int) -> tuple[float, float]:
    """(delay until the claimed slot, the new next free slot).

    The bucket holds `burst` tokens: a slot may start up to (burst-1) intervals before
    `next_free` catches up with real time.
    """
    start = max(now, next_free - (burst - 1) * interval)
    return start - now, max(next_free, now) + interval


class MemoryStore:
    """The bucket in this process (threads share it; other processes do not)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = f"memory:{id(self)}"
        self._clock = clock
        self._lock = threading.Lock()
        self._next_free: dict[str, float] = {}

    def reserve(self, key: str, interval: float, burst: int) -> float:
        with self._lock:
            now = self._clock()
            delay, self._next_free[key] = _gcra(self._next_free.get(key, now), now, interval, burst)
            return delay


class FileStore:
    """The bucket in a file per key, locked with `flock`: shared by every process of the host.

    The slot is wall-clock time, which every process of the host reads alike.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = f"file:{directory}"
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # flock does not exclude threads sharing a descriptor
        self._fds: dict[str, int] = {}

    def _fd(self, key: str) -> int:
        fd = self._fds.get(key)
        if fd is None:
            name = hashlib.sha256(key.encode()).hexdigest()[:32]
            fd = self._fds[key] = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o600)
        return fd

    def reserve(self, key: str, interval: float, burst: int) -> float:
        with self._lock:
            fd = self._fd(key)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = time.time()
                text = os.pread(fd, 64, 0).strip()
                delay, next_free = _gcra(float(text) if text else now, now, interval, burst)
                os.pwrite(fd, f"{next_free:.6f}".ljust(32).encode(), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return delay


# One statement, atomic under the row lock; `now` is the server's clock, computed once, so hosts
# with skewed clocks still space their requests correctly.
_RESERVE_SQL = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
INSERT INTO gsc_quota_bucket AS b (key, next_free)
SELECT %(key)s, now + %(interval)s FROM clock
ON CONFLICT (key) DO UPDATE
SET next_free = greatest(b.next_free, EXCLUDED.next_free - %(interval)s) + %(interval)s
RETURNING b.next_free, (SELECT now FROM clock)
"""


class PostgresStore:
    """The bucket in a PostgreSQL row per key: shared by every host reaching the database.

    The table `gsc_quota_bucket` is created in the connection's schema (its search_path) on
    first use; one connection per process, shared by its threads.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"postgres:{url}"
        self._lock = threading.Lock()
        self._conn = None

    def _connect(self):
        import psycopg2

        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        with conn.cursor() as cur:
            # Processes starting together must not race to create the table.
            cur.execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext('gsc_quota_bucket'))")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS gsc_quota_bucket "
                "(key text PRIMARY KEY, next_free double precision NOT NULL); COMMIT"
            )
        return conn

    def reserve(self, key: str, interval: float, burst: int) -> float:
        import psycopg2

        params = {"key": key, "interval": interval}
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    with self._conn.cursor() as cur:
                        cur.execute(_RESERVE_SQL, params)
                        new_next_free, now = cur.fetchone()
                    break
                except psycopg2.OperationalError as exc:
                    # A dropped connection (server restart, idle timeout): reconnect once.
                    self._conn = None
                    if attempt == 2:
                        raise ConnectionError(
                            f"the shared quota bucket in PostgreSQL is unreachable "
                            f"({exc}); check PostgreSQL is up, or set {QUOTA_STORE_ENV} to a "
                            "directory to share the budget on this host only"
                        ) from exc
        # new = max(old, now) + interval, so the slot is max(now, new - burst * interval).
        return max(0.0, new_next_free - burst * interval - now)


def default_quota_directory() -> Path:
    """The host-wide directory of file buckets (per user: a bucket file is private to it)."""
    return Path(tempfile.gettempdir()) / f"gsc_pipeline-quota-{os.getuid()}"


_stores: dict[str, QuotaStore] = {}
_stores_lock = threading.Lock()


def quota_store(warehouse_url: str | None = None) -> QuotaStore:
    """The process's store for `$GSC_QUOTA_STORE`, else a PostgreSQL warehouse, else the host.

    Every process spending a credential's budget must resolve to the same store: on one host the
    default directory does; across hosts the PostgreSQL warehouse they all write to does.
    """
    target = os.environ.get(QUOTA_STORE_ENV) or ""
    if not target and warehouse_url and warehouse_url.startswith(("postgresql://", "postgres://")):
        target = warehouse_url
    if not target:
        target = str(default_quota_directory())
    with _stores_lock:
        store = _stores.get(target)
        if store is None:
            if target.startswith(("postgresql://", "postgres://")):
                store = PostgresStore(target)
            elif target.startswith("/"):
                store = FileStore(Path(target))
            else:
                raise ValueError(
                    f"{QUOTA_STORE_ENV}={target!r}: use a postgresql:// URL (shared by every "
                    "host) or an absolute directory path (shared by this host's processes)"
                )
            _stores[target] = store
        return store


class RateLimiter:
    """At most `qpm` acquisitions per minute on `key` of `store`, evenly spaced, `burst` at once.

    Every limiter of the same store and key draws from the same bucket, in whichever process.
    """

    def __init__(
        self,
        qpm: float,
        *,
        burst: int = 2,
        clock: Callable[[], float] = time.monotonic,
        store: QuotaStore | None = None,
        key: str = "default",
    ) -> None:
        if qpm <= 0:
            raise ValueError(f"qpm must be positive, not {qpm}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self._store = store or MemoryStore(clock)
        self._key = key
        self._burst = burst
        self.qpm = qpm

    def set_qpm(self, qpm: float) -> None:
        self.qpm = qpm

    def reserve(self) -> float:
        """Claim the next slot; return how many seconds from now it starts (0 when free)."""
        return self._store.reserve(self._key, 60.0 / self.qpm, self._burst)

    def acquire(self, stop_event: threading.Event | None = None) -> float:
        """Block until a slot is ours; return the seconds waited. Raises `Cancelled` on stop."""
        delay = self.reserve()
        if delay <= 0:
            return 0.0
        if stop_event is None:
            time.sleep(delay)
        elif stop_event.wait(delay):
            raise Cancelled("stopped while waiting for the rate limiter")
        return delay


_shared: dict[tuple[str, str], RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(key: str, qpm: float, store: QuotaStore | None = None) -> RateLimiter:
    """The limiter of one bucket (a credential, a site) in `store` (default: this process).

    Two clients of the same bucket share one budget; when they ask for different budgets the
    smaller one wins, because Google counts the credential's calls, not the client's.
    """
    store = store or _process_store
    with _shared_lock:
        limiter = _shared.get((store.name, key))
        if limiter is None:
            limiter = _shared[(store.name, key)] = RateLimiter(qpm, store=store, key=key)
        elif qpm < limiter.qpm:
            limiter.set_qpm(qpm)
        return limiter


_process_store = MemoryStore()
