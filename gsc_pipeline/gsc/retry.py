"""The one retry policy of the GSC client.

- `TransientError` (5xx, resets, timeouts, malformed bodies): exponential backoff with full
  jitter (`uniform(0, min(max_wait, base_wait * 2**n))`), up to `max_attempts` attempts.
- QPS `QuotaExceeded` (429, 403 rateLimitExceeded): Google counts queries per minute, so a
  few quick retries cannot outlast a busy window. Slow down (exponential with equal jitter,
  `uniform(d/2, d)`, each wait at most `quota_wait_cap` and never less than Retry-After) and
  keep going until `quota_retry_seconds` of waiting (three windows) have not helped.
- Load `QuotaExceeded` (403 quotaExceeded, load): Google's short load windows last 10 minutes
  and it advises waiting, not hammering: wait minutes (`load_wait`, doubling, capped at
  `load_wait_cap`) for up to `load_retry_seconds`.
- Everything else (permission, not found, invalid, auth, unreachable endpoint): never retried.
Each wait is announced through `log` (what the call is waiting for, how long, for how long at
most) and sleeps on the caller's stop event, so a stopped run aborts mid-wait with `Cancelled`.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from gsc_pipeline.gsc.errors import Cancelled, GscError, QuotaExceeded, TransientError

T = TypeVar("T")

# The fields holding seconds: what `RetryPolicy.scaled` shrinks for an accelerated emulator.
_TIME_FIELDS = (
    "base_wait",
    "max_wait",
    "quota_wait_cap",
    "quota_retry_seconds",
    "load_wait",
    "load_wait_cap",
    "load_retry_seconds",
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_wait: float = 0.5
    max_wait: float = 32.0
    # Google's QPS window is one minute: a single wait never needs to be longer, and giving up
    # only after three windows of waiting means a busy minute never fails a step.
    quota_wait_cap: float = 60.0
    quota_retry_seconds: float = 180.0
    # Load quota: 10-minute short windows; waits of minutes for up to three of them.
    load_wait: float = 60.0
    load_wait_cap: float = 600.0
    load_retry_seconds: float = 1800.0

    def scaled(self, time_scale: float) -> RetryPolicy:
        """The same policy on a clock `time_scale` times faster (the emulator's `time_scale`)."""
        return dataclasses.replace(
            self, **{name: getattr(self, name) / time_scale for name in _TIME_FIELDS}
        )


class _Backoff:
    """The waits of one call: None once the policy says to give up."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.transient_failures = 0
        self.quota_rejections = {"qps": 0, "load": 0}
        self.quota_waited = {"qps": 0.0, "load": 0.0}

    def next_wait(self, exc: TransientError | QuotaExceeded) -> float | None:
        p = self.policy
        retry_after = getattr(exc, "retry_after", None) or 0.0
        if isinstance(exc, QuotaExceeded):
            kind = exc.kind
            limit = p.load_retry_seconds if kind == "load" else p.quota_retry_seconds
            if self.quota_waited[kind] >= limit:
                return None
            self.quota_rejections[kind] += 1
            n = self.quota_rejections[kind]
            if kind == "load":
                wait = min(p.load_wait_cap, max(retry_after, p.load_wait * 2 ** (n - 1)))
            else:
                ceiling = min(p.quota_wait_cap, p.base_wait * 2 ** (n - 1))
                wait = min(p.quota_wait_cap, max(retry_after, random.uniform(ceiling / 2, ceiling)))
            self.quota_waited[kind] += wait
            return wait
        self.transient_failures += 1
        if self.transient_failures >= p.max_attempts:
            return None
        ceiling = min(p.max_wait, p.base_wait * 2 ** (self.transient_failures - 1))
        return min(p.max_wait, max(retry_after, random.uniform(0, ceiling)))


def describe_wait(exc: GscError, wait: float, attempt: int, policy: RetryPolicy, what: str) -> str:
    """What a call is waiting for, in the words a user reads in the run log."""
    if isinstance(exc, QuotaExceeded) and exc.kind == "load":
        return (
            f"quota (load, 10-minute windows) exceeded for {what}; waiting {wait / 60:.1f} min "
            f"(attempt {attempt}, retrying for up to {policy.load_retry_seconds / 60:.0f} min)"
        )
    if isinstance(exc, QuotaExceeded):
        return (
            f"quota (per-minute) exceeded for {what}; waiting {wait:.1f} s (attempt {attempt}, "
            f"retrying for up to {policy.quota_retry_seconds:.0f} s)"
        )
    return (
        f"transient failure for {what}; retrying in {wait:.1f} s (attempt {attempt} of "
        f"{policy.max_attempts}): {exc}"
    )


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    stop_event: threading.Event | None,
    on_retry: Callable[[GscError, float], None],
    what: str,
    log: Callable[[str], None] | None = None,
) -> T:
    """Run `fn` under the policy; `on_retry(error, wait_seconds)` and `log(message)` are called
    before each wait."""
    backoff = _Backoff(policy)
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            return fn()
        except (TransientError, QuotaExceeded) as exc:
            wait = backoff.next_wait(exc)
            if wait is None:
                exc.attempts = attempts
                if attempts > 1:
                    exc.args = (
                        f"{exc} (gave up after {attempts} attempts over "
                        f"{time.monotonic() - started:.1f}s)",
                    )
                raise
            on_retry(exc, wait)
            if log is not None:
                log(describe_wait(exc, wait, attempts, policy, what))
            if stop_event is None:
                time.sleep(wait)
            elif stop_event.wait(wait):
                raise Cancelled(f"{what}: stopped while backing off before a retry") from exc
        except GscError as exc:
            exc.attempts = attempts
            raise
