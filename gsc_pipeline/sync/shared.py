"""Several `sync_days` at once (a property's reports in one step) under one Little's law.

Each `sync_days` sizes its days in flight as budget x latency (`InFlight`). Run side by side,
N of them would keep N times what the credential's budget needs (the surplus only waits in the
rate limiter, holding memory) and pass the step's memory cap. `SharedInFlight` sizes the step as
a whole, once, from every report's latencies, and gives each report running an equal share of it
(at least one day); a report that finishes hands its share to the others. The days the
reports hold (fetching, or fetched and not yet committed) count against the step's caps (days
and bytes of fetched rows), each report's days at its own days' size.
Reports start only while fewer are running than the step's limit, so the step never has more
than `cap` days in flight: with `step_concurrency: 1` its reports run one after another, one
request at a time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from gsc_pipeline.gsc.errors import Cancelled
from gsc_pipeline.sync.days import InFlight

# How often a report waiting for its turn notices the step's stop event.
_STOP_POLL_SECONDS = 0.05


class SharedInFlight:
    """One `InFlight` (budget `qpm`, memory caps `cap` days and `memory_cap_bytes`) for every
    report of a step."""

    def __init__(self, qpm: float, cap: int, memory_cap_bytes: int | None = None) -> None:
        self._whole = InFlight(qpm, cap, memory_cap_bytes)
        self._turn = threading.Condition()
        self._active = 0

    @property
    def limit(self) -> int:
        """Days in flight for the step as a whole."""
        return self._whole.limit

    @property
    def cap(self) -> int:
        return self._whole.cap

    def observe(self, latency_ms: float) -> None:
        with self._turn:
            self._whole.observe(latency_ms)
            self._turn.notify_all()  # a larger limit may let a waiting report start

    def share_limit(self) -> int:
        """One running report's share: at least 1, so every report makes progress."""
        return max(1, self._whole.limit // max(1, self._active))

    @contextlib.contextmanager
    def share(self, stop_event: threading.Event | None = None) -> Iterator[InFlight]:
        """The `InFlight` one report's `sync_days` takes while it runs, once its turn comes
        (fewer reports running than the step's limit); `Cancelled` if `stop_event` is set
        while it waits."""
        with self._turn:
            while self._active >= max(1, self._whole.limit):
                if stop_event is not None and stop_event.is_set():
                    raise Cancelled("stopped while waiting for a share of the step's days")
                self._turn.wait(_STOP_POLL_SECONDS)
            self._active += 1
        try:
            yield _Share(self)
        finally:
            with self._turn:
                self._active -= 1
                self._turn.notify_all()


class _Share(InFlight):
    """A report's view: its limit is its share of the step's, its latencies feed the step's."""

    def __init__(self, shared: SharedInFlight) -> None:  # noqa: D107 - no InFlight state of its own
        self._shared = shared
        self.cap = shared.cap
        self.rate_per_second = shared._whole.rate_per_second
        self._slots = threading.Lock()
        self.taken = 0  # this report's requests in flight, against its share

    @property
    def limit(self) -> int:  # type: ignore[override]
        return self._shared.share_limit()

    def observe(self, latency_ms: float) -> None:
        self._shared.observe(latency_ms)

    # Days held count against the step's caps, whichever report holds them.
    def try_hold(self, holder: object) -> bool:
        return self._shared._whole.try_hold(holder)

    def set_held(self, holder: object, days: int) -> None:
        self._shared._whole.set_held(holder, days)

    def observe_day_bytes(self, holder: object, nbytes: int) -> None:
        self._shared._whole.observe_day_bytes(holder, nbytes)

    def forget(self, holder: object) -> None:
        self._shared._whole.forget(holder)
