"""Request counters the benchmark and tests read to prove quota compliance and concurrency."""

from __future__ import annotations

import time
from collections import Counter, deque

# How many seconds of the per-second timeline to keep (a long benchmark stays bounded).
TIMELINE_SECONDS = 6 * 3600


class _SlidingCount:
    """Peak number of events inside any window of `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.events: deque[float] = deque()
        self.peak = 0

    def add(self, now: float) -> None:
        self.events.append(now)
        while self.events[0] <= now - self.window:
            self.events.popleft()
        self.peak = max(self.peak, len(self.events))


class Stats:
    """Counts for GET /_emulator/stats.

    Peak QPM is measured in emulated minutes: the window is 60 / time_scale real seconds, so
    a peak of 1,200 means the site's quota was used exactly, whatever the time scale.
    """

    def __init__(self, time_scale: float) -> None:
        self.minute = 60.0 / time_scale
        self.reset()

    def reset(self) -> None:
        self.started_at = time.time()
        self.requests_total = 0
        self.by_site: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_report: Counter[str] = Counter()
        self.quota_rejections: Counter[str] = Counter(site=0, user=0, project=0, load=0)
        self.faults: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_concurrent = 0
        self.rows_served = 0
        self.site_qpm: dict[str, _SlidingCount] = {}
        self.user_qpm: dict[str, _SlidingCount] = {}
        # unix second -> [requests started, max in flight]
        self.timeline: dict[int, list[int]] = {}

    def request_started(self) -> None:
        self.in_flight += 1
        self.peak_concurrent = max(self.peak_concurrent, self.in_flight)
        self._tick(started=1)

    def request_finished(self) -> None:
        self.in_flight -= 1

    def _tick(self, started: int) -> None:
        second = int(time.time())
        slot = self.timeline.get(second)
        if slot is None:
            slot = self.timeline[second] = [0, 0]
            if len(self.timeline) > TIMELINE_SECONDS:
                del self.timeline[min(self.timeline)]
        slot[0] += started
        slot[1] = max(slot[1], self.in_flight)

    def call(self, site: str | None, user: str) -> None:
        """One API call arrived (a batch counts each of its calls)."""
        now = time.monotonic()
        self.requests_total += 1
        if site is not None:
            self.by_site[site] += 1
            self.site_qpm.setdefault(site, _SlidingCount(self.minute)).add(now)
        self.user_qpm.setdefault(user, _SlidingCount(self.minute)).add(now)

    def answered(self, status: int, report: str | None, rows: int) -> None:
        self.by_status[str(status)] += 1
        if report is not None:
            self.by_report[report] += 1
        self.rows_served += rows

    def rejected(self, kind: str) -> None:
        self.quota_rejections[kind] += 1

    def fault(self, label: str) -> None:
        self.faults[label] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "requests_total": self.requests_total,
            "requests_by_site": dict(self.by_site),
            "requests_by_status": dict(self.by_status),
            "requests_by_report": dict(self.by_report),
            "quota_rejections": dict(self.quota_rejections),
            "faults_injected": dict(self.faults),
            "peak_concurrent_requests": self.peak_concurrent,
            "in_flight": self.in_flight,
            "peak_qpm_by_site": {k: v.peak for k, v in self.site_qpm.items()},
            "peak_qpm_by_user": {k: v.peak for k, v in self.user_qpm.items()},
            "qpm_window_seconds": self.minute,
            "rows_served": self.rows_served,
            "started_at": self.started_at,
            "per_second": [[s, v[0], v[1]] for s, v in sorted(self.timeline.items())],
        }
