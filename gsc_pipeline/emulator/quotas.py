"""Google's query quotas: per-site, per-user and per-project token buckets, and load quota."""

from __future__ import annotations

import time

from gsc_pipeline.emulator.config import QuotaConfig
from gsc_pipeline.emulator.query import QuerySpec


class TokenBucket:
    """`per_minute` tokens a (scaled) minute; starts full, so a burst up to the quota passes."""

    def __init__(self, per_minute: int, time_scale: float, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0 * time_scale
        self.tokens = self.capacity
        self.updated = now

    def available(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens >= 1.0

    def take(self) -> None:
        self.tokens -= 1.0


def load_cost(spec: QuerySpec) -> float:
    """Relative cost of a query: page and query grouping multiply it, and so do long ranges."""
    days = (spec.end - spec.start).days + 1
    cost = 1.0
    grouped = set(spec.dimensions) | {f.dimension for f in spec.filters}
    if "page" in grouped:
        cost *= 3
    if "query" in grouped:
        cost *= 3
    return cost * days


class _Window:
    """A fixed window (10 minutes or a day, scaled) with a cost budget."""

    def __init__(self, seconds: float, budget: float) -> None:
        self.seconds = seconds
        self.budget = budget
        self.current = -1
        self.used = 0.0

    def fits(self, now: float, cost: float) -> bool:
        window = int(now // self.seconds)
        if window != self.current:
            self.current, self.used = window, 0.0
        return self.used + cost <= self.budget


class Quotas:
    """All state lives on the server's event loop thread, so no locks are needed."""

    def __init__(self, config: QuotaConfig, time_scale: float) -> None:
        self.config = config
        self.time_scale = time_scale
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._load: dict[tuple[str, str], tuple[_Window, _Window]] = {}

    def reset(self) -> None:
        self._buckets.clear()
        self._load.clear()

    def _bucket(self, kind: str, key: str, per_minute: int, now: float) -> TokenBucket:
        bucket = self._buckets.get((kind, key))
        if bucket is None:
            bucket = self._buckets[kind, key] = TokenBucket(per_minute, self.time_scale, now)
        return bucket

    def admit(self, site: str | None, user: str) -> str | None:
        """Take one token from every applicable bucket, or none and name the empty one."""
        now = time.monotonic()
        buckets = [("project", self._bucket("project", "", self.config.project_qpm, now))]
        if site is not None:
            buckets.append(("site", self._bucket("site", site, self.config.site_qpm, now)))
        buckets.append(("user", self._bucket("user", user, self.config.user_qpm, now)))
        for kind, bucket in buckets:
            if not bucket.available(now):
                return kind
        for _, bucket in buckets:
            bucket.take()
        return None

    def admit_load(self, site: str, user: str, spec: QuerySpec) -> bool:
        load = self.config.load
        if not load.enabled:
            return True
        windows = self._load.get((site, user))
        if windows is None:
            windows = self._load[site, user] = (
                _Window(load.short_window_seconds / self.time_scale, load.short_window_budget),
                _Window(load.daily_window_seconds / self.time_scale, load.daily_budget),
            )
        now = time.monotonic()
        cost = load_cost(spec)
        if not all(w.fits(now, cost) for w in windows):
            return False
        for w in windows:
            w.used += cost
        return True
