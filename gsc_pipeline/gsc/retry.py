"""The one retry policy of the GSC client (tenacity).

- `TransientError` and QPS `QuotaExceeded`: exponential backoff with full jitter
  (`uniform(0, min(cap, base * 2**n))`, never less than Google's Retry-After), up to
  `max_attempts` attempts.
- Load `QuotaExceeded`: Google's load windows last 10 minutes, so hammering is pointless; wait
  long (`load_wait`, doubling, capped at `load_wait_cap`) for up to `load_attempts` attempts.
- Everything else (permission, not found, invalid, auth): never retried.
Waits sleep on the caller's stop event, so a stopped run aborts mid-wait with `Cancelled`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from gsc_pipeline.gsc.errors import Cancelled, GscError, QuotaExceeded, TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_wait: float = 0.5
    max_wait: float = 32.0
    load_attempts: int = 4
    load_wait: float = 60.0
    load_wait_cap: float = 600.0


def _is_load(exc: BaseException | None) -> bool:
    return isinstance(exc, QuotaExceeded) and exc.kind == "load"


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (TransientError, QuotaExceeded))


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    stop_event: threading.Event | None,
    on_retry: Callable[[GscError, float], None],
    what: str,
) -> T:
    """Run `fn` under the policy; `on_retry(error, wait_seconds)` is called before each wait."""

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        n = state.attempt_number
        retry_after = getattr(exc, "retry_after", None) or 0.0
        if _is_load(exc):
            return min(policy.load_wait_cap, max(retry_after, policy.load_wait * 2 ** (n - 1)))
        jitter = random.uniform(0, min(policy.max_wait, policy.base_wait * 2 ** (n - 1)))
        return min(policy.max_wait, max(retry_after, jitter))

    def stop(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        limit = policy.load_attempts if _is_load(exc) else policy.max_attempts
        return state.attempt_number >= limit

    def sleep(seconds: float) -> None:
        if stop_event is None:
            time.sleep(seconds)
        elif stop_event.wait(seconds):
            raise Cancelled(f"{what}: stopped while backing off before a retry")

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception()
        assert isinstance(exc, GscError)
        on_retry(exc, state.upcoming_sleep)

    started = time.monotonic()
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_retryable),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    attempts = 0

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return fn()

    try:
        return retrying(attempt)
    except GscError as exc:
        exc.attempts = attempts
        if attempts > 1 and _retryable(exc):
            exc.args = (
                f"{exc} (gave up after {attempts} attempts over "
                f"{time.monotonic() - started:.1f}s)",
            )
        raise
