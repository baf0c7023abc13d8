"""A smooth per-credential request limiter shared by every thread of the process.

Why not pyrate-limiter: its blocking acquire sleeps in `time.sleep` (a stopped run would wait out
the delay), adds a fixed 50 ms buffer to every wait (so the achieved rate drifts below the
budget), runs a background leak thread per bucket, and a "N per minute" rate admits all N at once
at the start of a window — the burst a server-side 1,200/min bucket rejects. What we need is
small: the generic cell rate algorithm (GCRA, a token bucket expressed as "the next free slot"),
which spaces requests exactly `60 / qpm` seconds apart, admits at most `burst` requests back to
back, serves waiters in arrival order, and waits on a `threading.Event` so a stop aborts at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gsc_pipeline.gsc.errors import Cancelled


class RateLimiter:
    """At most `qpm` acquisitions per minute, evenly spaced, with a burst of `burst`."""

    def __init__(
        self,
        qpm: float,
        *,
        burst: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if qpm <= 0:
            raise ValueError(f"qpm must be positive, not {qpm}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self._lock = threading.Lock()
        self._clock = clock
        self._burst = burst
        self._next_free = clock()
        self._interval = 60.0 / qpm
        self.qpm = qpm

    def set_qpm(self, qpm: float) -> None:
        with self._lock:
            self._interval = 60.0 / qpm
            self.qpm = qpm

    def reserve(self) -> float:
        """Claim the next slot; return how many seconds from now it starts (0 when free)."""
        with self._lock:
            now = self._clock()
            # The bucket holds `burst` tokens: a slot may start up to (burst-1) intervals
            # before `_next_free` catches up with real time.
            earliest = self._next_free - (self._burst - 1) * self._interval
            start = max(now, earliest)
            self._next_free = max(self._next_free, now) + self._interval
            return start - now

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


_shared: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(credential_key: str, qpm: float) -> RateLimiter:
    """The process-wide limiter of one credential (created on first use).

    Two clients of the same credential share one budget; when they ask for different budgets the
    smaller one wins, because Google counts the credential's calls, not the client's.
    """
    with _shared_lock:
        limiter = _shared.get(credential_key)
        if limiter is None:
            limiter = _shared[credential_key] = RateLimiter(qpm)
        elif qpm < limiter.qpm:
            limiter.set_qpm(qpm)
        return limiter
