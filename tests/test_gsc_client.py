"""The GSC client against the emulator over real HTTP: typed errors, retries, quota, threads."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httplib2
import pytest

from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import (
    AuthError,
    Cancelled,
    EndpointUnreachable,
    GscClient,
    InvalidRequest,
    QuotaExceeded,
    RetryPolicy,
    SiteNotFound,
    SitePermissionDenied,
    TransientError,
    load_credentials,
)

TODAY = "2026-08-18"
SITE = "sc-domain:example.com"
FAST_RETRY = RetryPolicy(max_attempts=5, base_wait=0.01, max_wait=0.05)


def body(day: str = "2026-08-01", **extra) -> dict:
    return {
        "startDate": day,
        "endDate": day,
        "dimensions": ["date", "page", "query"],
        "type": "web",
        "rowLimit": 500,
        "startRow": 0,
        "dataState": "final",
        **extra,
    }


@pytest.fixture
def emulator():
    with running_emulator({"today": TODAY}) as handle:
        yield handle


@pytest.fixture
def client(emulator):
    return GscClient(emulator.base_url, qpm_budget=60_000, timeout=10, retry_policy=FAST_RETRY)


def test_query_returns_rows_and_counts_the_call(client, emulator):
    result = client.query(SITE, body())
    assert len(result["rows"]) == 500
    assert result["rows"][0]["keys"][0] == "2026-08-01"
    assert client.stats.api_calls == 1 and client.stats.retries == 0
    assert len(client.stats.latencies_ms) == 1
    assert emulator.stats()["requests_total"] == 1
    assert {s["siteUrl"] for s in client.list_sites()} >= {SITE, "https://www.example.org/"}
    assert client.get_site(SITE)["permissionLevel"] == "siteOwner"


@pytest.mark.parametrize(
    ("site", "request_body", "error", "text"),
    [
        ("sc-domain:not-yours.example", body(), SitePermissionDenied, "add it as a user"),
        ("sc-domain:nowhere.example", body(), SiteNotFound, "not a property of this account"),
        (SITE, body(dimensions=["date", "page", "page"]), InvalidRequest,
         "Duplicate dimensions are not allowed."),
    ],
)  # fmt: skip
def test_permanent_errors_are_typed_and_not_retried(client, emulator, site, request_body, error,
                                                    text):  # fmt: skip
    with pytest.raises(error, match=text) as info:
        client.query(site, request_body)
    assert str(info.value).startswith(site)
    assert info.value.attempts == 1
    assert emulator.stats()["requests_total"] == 1
    assert client.stats.retries == 0


@pytest.mark.parametrize(
    ("kind", "status"),
    [("status", 503), ("status", 500), ("reset", 0), ("truncated", 0), ("malformed", 0)],
)
def test_transient_faults_are_retried_to_the_same_answer(client, emulator, kind, status):
    expected = client.query(SITE, body())
    emulator.script_fault(SITE, date="2026-08-01", kind=kind, status=status or 503, times=2)
    assert client.query(SITE, body()) == expected
    assert client.stats.retries >= 1
    # The scripted faults were all consumed: the emulator answered them, then the good one.
    assert emulator.stats()["requests_total"] >= 3


def test_a_hung_response_times_out_and_is_retried():
    with running_emulator({"today": TODAY, "faults": {"slow_seconds": 1}}) as emulator:
        client = GscClient(emulator.base_url, timeout=0.3, retry_policy=FAST_RETRY)
        emulator.script_fault(SITE, kind="slow", times=1)
        assert len(client.query(SITE, body())["rows"]) == 500
        assert client.stats.retries == 1


def test_a_persistent_fault_fails_naming_the_attempts(client, emulator):
    emulator.script_fault(SITE, kind="status", status=503, times=50)
    with pytest.raises(TransientError, match="gave up after 5 attempts"):
        client.query(SITE, body())
    assert emulator.stats()["requests_total"] == 5


@pytest.mark.parametrize("qps_status", [429, 403])
def test_qps_rejections_are_retried(qps_status):
    config = {"today": TODAY, "time_scale": 60, "quotas": {"site_qpm": 5, "qps_status": qps_status}}
    with running_emulator(config) as emulator:
        # No proactive limit here (a huge budget), so the server's bucket must push back.
        client = GscClient(
            emulator.base_url,
            qpm_budget=1e7,
            retry_policy=RetryPolicy(base_wait=0.02, max_wait=0.1, quota_wait_cap=0.1),
        )
        results = [client.query(SITE, body(rowLimit=1)) for _ in range(12)]
        assert all(len(r["rows"]) == 1 for r in results)
        stats = emulator.stats()
        assert stats["quota_rejections"]["site"] >= 1
        assert client.stats.retries == stats["quota_rejections"]["site"]
        assert client.stats.quota_wait_seconds > 0


def test_sustained_quota_rejections_outlast_the_window_and_succeed():
    # One query per (emulated) minute, and a minute lasts 1 s: after each call the site's
    # bucket is empty for a whole quota window, 60 emulated seconds of 429s, longer than the
    # ~22 s after which the old policy gave up. The default policy, on the same fast clock,
    # slows down and keeps going until the window turns.
    scale = 60
    config = {"today": TODAY, "time_scale": scale, "quotas": {"site_qpm": 1, "qps_status": 429}}
    lines: list[str] = []
    with running_emulator(config) as emulator:
        client = GscClient(
            emulator.base_url,
            qpm_budget=1e7,  # no proactive limit: the server's quota must push back
            retry_policy=RetryPolicy().scaled(scale),
            log=lines.append,
        )
        results = [client.query(SITE, body(rowLimit=1)) for _ in range(3)]
        rejections = emulator.stats()["quota_rejections"]["site"]
    assert all(len(r["rows"]) == 1 for r in results)
    assert rejections >= 2 and client.stats.retries == rejections == len(lines)
    assert all(
        line.startswith(f"quota (per-minute) exceeded for {SITE}; waiting ")
        and line.endswith(", retrying for up to 3 s)")
        for line in lines
    )


def test_a_refused_first_connection_fails_at_once_naming_the_variable():
    # A bound socket that never listens: the port is taken, and connecting is refused.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{taken.getsockname()[1]}/"
        client = GscClient(endpoint)  # the default policy would retry a transient error
        with pytest.raises(EndpointUnreachable) as info:
            client.query(SITE, body())
    assert info.value.attempts == 1 and client.stats.retries == 0
    assert f"check GSC_API_ENDPOINT={endpoint!r}: is the server running" in str(info.value)
    assert "ConnectionRefusedError" in str(info.value)


def test_a_refused_connection_after_the_first_answer_is_retried():
    with running_emulator({"today": TODAY}) as emulator:
        client = GscClient(emulator.base_url, retry_policy=FAST_RETRY)
        client.query(SITE, body(rowLimit=1))
    # The emulator is gone: the server went away mid-job, which may heal, so retry.
    with pytest.raises(TransientError, match="gave up after 5 attempts"):
        client.query(SITE, body(rowLimit=1))
    assert client.stats.retries == 4


def test_load_quota_fails_after_capped_waits():
    config = {
        "today": TODAY,
        "quotas": {"load": {"enabled": True, "short_window_budget": 10}},
    }
    with running_emulator(config) as emulator:
        client = GscClient(
            emulator.base_url,
            retry_policy=RetryPolicy(load_wait=0.01, load_wait_cap=0.02, load_retry_seconds=0.03),
        )
        client.query(SITE, body())  # page x query costs 9 of the 10 units
        with pytest.raises(QuotaExceeded, match="gave up after 3 attempts") as info:
            client.query(SITE, body())
        assert info.value.kind == "load"
        assert emulator.stats()["quota_rejections"]["load"] == 3
        assert 0.02 <= client.stats.quota_wait_seconds < 1


def test_rate_limiter_keeps_peak_qpm_under_budget():
    # A 2-second emulated minute; the site allows 120/min; we budget 80% of it.
    scale, site_qpm = 30, 120
    config = {"today": TODAY, "time_scale": scale, "quotas": {"site_qpm": site_qpm}}
    with running_emulator(config) as emulator:
        budget = 0.8 * site_qpm
        client = GscClient(emulator.base_url, qpm_budget=budget * scale, retry_policy=FAST_RETRY)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: client.query(SITE, body(rowLimit=1)), range(150)))
        stats = emulator.stats()
    peak = stats["peak_qpm_by_site"][SITE]
    assert stats["quota_rejections"]["site"] == 0
    assert stats["requests_total"] == 150
    # Inside the budget (plus the limiter's burst of 2 and send jitter on a busy machine: a
    # slot reserved on time can leave late, and at 30x every 10 ms late is 0.3 s emulated),
    # always under the site's quota, yet close to the budget: the budget is used.
    assert 0.8 * budget <= peak <= budget * 1.1 + 2 < site_qpm
    assert client.stats.quota_wait_seconds > 0


def test_many_threads_share_one_client(client, emulator):
    days = [f"2026-07-{d:02d}" for d in range(1, 31)]
    expected = {d: client.query(SITE, body(d, rowLimit=50)) for d in days}
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda d: (d, client.query(SITE, body(d, rowLimit=50))), days * 3))
    assert all(result == expected[d] for d, result in got)
    assert client.stats.api_calls == 4 * len(days) == emulator.stats()["requests_total"]
    assert len(client.stats.latencies_ms) == client.stats.api_calls


def test_threads_that_come_and_go_reuse_the_clients_services(client, emulator, monkeypatch):
    """A step's pools of fetch threads end with each report: the next pool's threads take the
    services (and connections) the last one gave back instead of building their own."""
    import gsc_pipeline.gsc.client as client_module

    built = []
    build = client_module.build
    monkeypatch.setattr(client_module, "build", lambda *a, **k: built.append(1) or build(*a, **k))
    for day in ("2026-07-01", "2026-07-02", "2026-07-03"):
        with ThreadPoolExecutor(1) as pool:
            pool.submit(client.query, SITE, body(day, rowLimit=50)).result()
    assert len(built) == 1
    assert emulator.stats()["requests_total"] == 3


def test_stop_event_prevents_calls(client, emulator):
    stop_event = threading.Event()
    stop_event.set()
    with pytest.raises(Cancelled):
        client.query(SITE, body(), stop_event=stop_event)
    assert emulator.stats()["requests_total"] == 0


def test_quota_user_is_sent(client, emulator):
    GscClient(emulator.base_url, quota_user="tenant-42").query(SITE, body(rowLimit=1))
    assert "tenant-42" in emulator.stats()["peak_qpm_by_user"]


def test_every_call_asks_for_compact_json(client, monkeypatch):
    """Google pretty-prints its answers unless asked not to (`prettyPrint=false`): ~1.5x the bytes
    of a full page to read and parse (`scripts/measure_parse.py`). The emulator answers compact
    JSON either way, so the requests themselves are looked at, as they go out over HTTP."""
    sent: list[str] = []
    request = httplib2.Http.request

    def recording(self, uri, *args, **kwargs):
        sent.append(uri)
        return request(self, uri, *args, **kwargs)

    monkeypatch.setattr(httplib2.Http, "request", recording)
    assert len(client.query_page(SITE, body(rowLimit=3)).rows) == 3
    assert client.query(SITE, body(rowLimit=3))["rows"]
    assert client.list_sites()
    assert client.get_site(SITE)["siteUrl"] == SITE
    client.list_sitemaps(SITE)
    assert len(sent) == 5
    for uri in sent:
        assert parse_qs(urlsplit(uri).query)["prettyPrint"] == ["false"], uri


@pytest.mark.parametrize("kind", ["service_account", "oauth"])
def test_credentials_authenticate_against_the_emulator(tmp_path, kind):
    config = {"today": TODAY, "switches": {"auth_required": True}}
    with running_emulator(config) as emulator:
        with pytest.raises(AuthError, match="rejected"):
            GscClient(emulator.base_url).query(SITE, body(rowLimit=1))
        if kind == "service_account":
            path = emulator.write_service_account_key(tmp_path / "key.json")
        else:
            path = emulator.write_authorized_user(tmp_path / "user.json")
        credentials = load_credentials(kind, path=path)
        client = GscClient(emulator.base_url, credentials=credentials)
        assert len(client.query(SITE, body(rowLimit=3))["rows"]) == 3


@pytest.mark.parametrize("endpoint", ["not a url", "127.0.0.1:8765", "ftp://host/", "http://"])
def test_an_endpoint_that_is_not_a_url_is_refused_at_once_by_name(endpoint):
    # Refused when the client is made: no request, no retry as a "transient" failure.
    with pytest.raises(EndpointUnreachable, match=r"GSC_API_ENDPOINT=.* is not an http\(s\) URL"):
        GscClient(endpoint)


def test_a_garbage_key_names_where_it_came_from():
    with pytest.raises(AuthError, match="^environment variable GSC_SA_KEY: neither JSON nor"):
        load_credentials(
            "service_account", json_text="garbage!", source="environment variable GSC_SA_KEY"
        )
