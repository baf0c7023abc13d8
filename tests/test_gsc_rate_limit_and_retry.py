"""GSC client internals without a server: the limiter's spacing, the retry policy, error mapping."""

from __future__ import annotations

import threading

import httplib2
import orjson
import pytest
from googleapiclient.errors import HttpError

from gsc_pipeline.gsc import (
    AuthError,
    Cancelled,
    InvalidRequest,
    QuotaExceeded,
    RateLimiter,
    RetryPolicy,
    SiteNotFound,
    SitePermissionDenied,
    TransientError,
    load_credentials,
)
from gsc_pipeline.gsc.client import map_http_error
from gsc_pipeline.gsc.rate_limit import shared_limiter
from gsc_pipeline.gsc.retry import call_with_retries


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_spaces_requests_evenly_after_a_small_burst():
    clock = FakeClock()
    limiter = RateLimiter(60, burst=2, clock=clock)
    assert [limiter.reserve() for _ in range(5)] == [0.0, 0.0, 1.0, 2.0, 3.0]


def test_limiter_never_exceeds_budget_in_any_minute():
    clock = FakeClock()
    qpm = 960
    limiter = RateLimiter(qpm, burst=3, clock=clock)
    starts = []
    for i in range(5000):
        # Callers arrive in irregular clumps; each starts at its reserved slot.
        if i % 97 == 0:
            clock.now += 7.3
        starts.append(clock.now + limiter.reserve())
    starts.sort()
    worst = max(
        sum(1 for t in starts[j : j + qpm + 10] if t < starts[j] + 60.0) for j in range(len(starts))
    )
    assert worst <= qpm + 2  # the budget plus the burst allowance, never a minute's worth


def test_limiter_wait_aborts_on_stop():
    limiter = RateLimiter(1, burst=1)
    limiter.acquire()
    stop_event = threading.Event()
    stop_event.set()
    with pytest.raises(Cancelled):
        limiter.acquire(stop_event)


def test_shared_limiter_is_per_credential_and_keeps_the_smaller_budget():
    a = shared_limiter("test-key-a", 600)
    assert shared_limiter("test-key-a", 900) is a and a.qpm == 600
    assert shared_limiter("test-key-a", 300) is a and a.qpm == 300
    assert shared_limiter("test-key-b", 600) is not a


def http_error(status: int, message: str, reason: str = "", headers=None) -> HttpError:
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason}]}}
    resp = httplib2.Response({"status": status, **(headers or {})})
    return HttpError(resp, orjson.dumps(body))


@pytest.mark.parametrize(
    ("status", "message", "reason", "expected"),
    [
        (429, "Search Analytics QPS quota exceeded.", "rateLimitExceeded", QuotaExceeded),
        (403, "Search Analytics QPS quota exceeded.", "quotaExceeded", QuotaExceeded),
        (403, "Search Analytics load quota exceeded.", "quotaExceeded", QuotaExceeded),
        (403, "User does not have sufficient permission", "forbidden", SitePermissionDenied),
        (404, "'x' is not a verified Search Console site", "notFound", SiteNotFound),
        (400, "Duplicate dimensions are not allowed.", "invalidParameter", InvalidRequest),
        (401, "Invalid Credentials", "authError", AuthError),
        (503, "Backend Error", "backendError", TransientError),
        (500, "Internal error", "internalError", TransientError),
    ],
)
def test_http_errors_map_to_typed_errors(status, message, reason, expected):
    err = map_http_error(http_error(status, message, reason), "sc-domain:x.com")
    assert type(err) is expected
    assert str(err).startswith("sc-domain:x.com: ")
    assert message in str(err)


def test_quota_kind_and_retry_after():
    load = map_http_error(
        http_error(403, "Search Analytics load quota exceeded.", "quotaExceeded"), "s"
    )
    qps = map_http_error(
        http_error(429, "QPS quota exceeded.", "rateLimitExceeded", {"retry-after": "7"}), "s"
    )
    assert (load.kind, load.retry_after) == ("load", None)
    assert (qps.kind, qps.retry_after) == ("qps", 7.0)


def test_non_json_error_body_still_maps():
    err = map_http_error(HttpError(httplib2.Response({"status": 502}), b"<html>bad gateway"), "s")
    assert isinstance(err, TransientError) and "bad gateway" in str(err)


def run_policy(outcomes, policy, stop_event=None):
    """Run the policy over a scripted list of outcomes (exceptions or a value)."""
    calls, waits = [], []
    it = iter(outcomes)

    def fn():
        calls.append(1)
        outcome = next(it)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    result = call_with_retries(
        fn,
        policy,
        stop_event=stop_event,
        on_retry=lambda e, w: waits.append((type(e), w)),
        what="s",
    )
    return result, len(calls), waits


FAST = RetryPolicy(
    max_attempts=4,
    base_wait=0.001,
    max_wait=0.002,
    quota_wait_cap=0.002,
    quota_retry_seconds=0.02,
    load_wait=0.001,
    load_wait_cap=0.003,
    load_retry_seconds=0.005,
)


def test_transient_and_qps_errors_are_retried_until_success():
    result, calls, waits = run_policy(
        [TransientError("503"), QuotaExceeded("qps", kind="qps"), TransientError("reset"), "ok"],
        FAST,
    )
    assert (result, calls) == ("ok", 4)
    assert [t for t, _ in waits] == [TransientError, QuotaExceeded, TransientError]
    assert all(0 <= w <= max(FAST.max_wait, FAST.quota_wait_cap) for _, w in waits)


def test_gives_up_naming_the_attempts():
    with pytest.raises(TransientError, match=r"gave up after 4 attempts") as info:
        run_policy([TransientError("503")] * 10, FAST)
    assert info.value.attempts == 4


def test_load_quota_waits_long_but_capped_then_fails():
    with pytest.raises(QuotaExceeded, match="gave up after 3 attempts") as info:
        run_policy([QuotaExceeded("load", kind="load", retry_after=99)] * 5, FAST)
    assert info.value.kind == "load"


class RecordingStopEvent:
    """A stop event that is never set and records each back-off instead of sleeping."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def is_set(self) -> bool:
        return False

    def wait(self, timeout: float) -> bool:
        self.slept.append(timeout)
        return False


def test_load_quota_waits_double_up_to_the_cap():
    policy = RetryPolicy(load_wait=10, load_wait_cap=25, load_retry_seconds=80)
    stop_event = RecordingStopEvent()

    def fn():
        raise QuotaExceeded("load", kind="load")

    with pytest.raises(QuotaExceeded, match="gave up after 5 attempts"):
        call_with_retries(fn, policy, stop_event=stop_event, on_retry=lambda e, w: None, what="s")
    assert stop_event.slept == [10, 20, 25, 25]


def test_qps_backoff_respects_retry_after_and_jitters_within_the_cap():
    policy = RetryPolicy(max_attempts=6, base_wait=1, max_wait=4)
    stop_event = RecordingStopEvent()
    outcomes = iter([QuotaExceeded("q", kind="qps", retry_after=3)] + [TransientError("t")] * 4)

    def fn():
        try:
            raise next(outcomes)
        except StopIteration:
            return "ok"

    assert call_with_retries(
        fn, policy, stop_event=stop_event, on_retry=lambda e, w: None, what="s"
    )
    assert stop_event.slept[0] >= 3
    assert all(0 <= w <= 4 for w in stop_event.slept) and len(stop_event.slept) == 5


def waits_until_give_up(policy: RetryPolicy, error: BaseException) -> tuple[list[float], list[str]]:
    """Every wait the policy takes under `error` forever (recorded, never slept), and the lines
    it logs; the call must end by giving up."""
    stop_event, lines = RecordingStopEvent(), []

    def fn():
        raise error

    with pytest.raises(type(error), match="gave up after"):
        call_with_retries(
            fn,
            policy,
            stop_event=stop_event,
            on_retry=lambda e, w: None,
            what="sc-domain:x.com",
            log=lines.append,
        )
    return stop_event.slept, lines


@pytest.mark.parametrize(
    "error",
    [QuotaExceeded("429", kind="qps"), QuotaExceeded("403 rateLimitExceeded", kind="qps")],
)
def test_sustained_qps_quota_slows_down_and_outlasts_the_quota_window(error):
    slept, lines = waits_until_give_up(RetryPolicy(), error)
    # Slower and slower (jittered, each capped at a minute), and for longer than two of
    # Google's one-minute windows before it gives up; the old policy quit after ~22 s.
    assert sum(slept) >= 120 and max(slept) <= 60
    assert slept[-1] > 8 * slept[0]
    assert lines[0].startswith("quota (per-minute) exceeded for sc-domain:x.com; waiting ")
    assert lines[4].endswith("(attempt 5, retrying for up to 180 s)")
    assert len(lines) == len(slept)


def test_load_quota_waits_minutes_for_several_load_windows():
    slept, lines = waits_until_give_up(RetryPolicy(), QuotaExceeded("load", kind="load"))
    assert slept[:4] == [60, 120, 240, 480] and max(slept) == 600
    assert sum(slept) >= 1800  # three of Google's 10-minute load windows
    assert lines[0] == (
        "quota (load, 10-minute windows) exceeded for sc-domain:x.com; waiting 1.0 min "
        "(attempt 1, retrying for up to 30 min)"
    )


def test_transient_waits_are_announced():
    slept, lines = waits_until_give_up(RetryPolicy(max_attempts=3), TransientError("s: HTTP 503"))
    assert len(slept) == 2
    assert lines[1].startswith("transient failure for sc-domain:x.com; retrying in ")
    assert lines[1].endswith("(attempt 2 of 3): s: HTTP 503")


def test_scaled_policy_keeps_its_shape_on_a_faster_clock():
    fast = RetryPolicy().scaled(60)
    assert (fast.quota_retry_seconds, fast.quota_wait_cap, fast.load_wait) == (3.0, 1.0, 1.0)
    assert fast.max_attempts == RetryPolicy().max_attempts


@pytest.mark.parametrize(
    "error",
    [SitePermissionDenied("no"), SiteNotFound("no"), InvalidRequest("bad"), AuthError("auth")],
)
def test_permanent_errors_are_never_retried(error):
    with pytest.raises(type(error)) as info:
        run_policy([error, "ok"], FAST)
    assert info.value.attempts == 1 and "gave up" not in str(info.value)


@pytest.mark.parametrize(
    "error",
    [TransientError("503"), QuotaExceeded("429", kind="qps"), QuotaExceeded("l", kind="load")],
)
def test_stop_during_backoff_cancels_without_another_call(error):
    stop_event = threading.Event()
    calls = []

    def fn():
        calls.append(1)
        stop_event.set()
        raise error

    slow = RetryPolicy(base_wait=30, max_wait=30)
    with pytest.raises(Cancelled):
        call_with_retries(fn, slow, stop_event=stop_event, on_retry=lambda e, w: None, what="s")
    assert len(calls) == 1


def test_load_credentials_kinds(tmp_path):
    assert load_credentials("none") is None
    with pytest.raises(AuthError, match="exactly one"):
        load_credentials("service_account")
    with pytest.raises(AuthError, match="neither JSON nor base64"):
        load_credentials("oauth", json_text="not json at all")
    user = (
        '{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}'
    )
    creds = load_credentials("oauth", json_text=user)
    assert creds.refresh_token == "r"
    import base64

    assert load_credentials(json_text=base64.b64encode(user.encode()).decode()).client_id == "c"
    with pytest.raises(AuthError, match="expected 'service_account'"):
        load_credentials("service_account", json_text=user)
    path = tmp_path / "key.json"
    path.write_text('{"type": "service_account"}')
    with pytest.raises(AuthError, match="incomplete service_account"):
        load_credentials("auto", path=path)
