"""The GSC API client: google-api-python-client over httplib2, for Google or the emulator.

Only the endpoint and the credentials differ between the two. httplib2.Http is not thread-safe,
so each call takes a service object (its own Http, wrapped in AuthorizedHttp when there are
credentials) that no other thread holds meanwhile, from the client's idle ones, and gives it
back: a step's threads come and go (a pool per report), the services and their keep-alive
connections stay. The stats and the rate limiter are shared and locked.
"""

from __future__ import annotations

import http.client
import io
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import google.auth.credentials
import google.auth.exceptions
import google_auth_httplib2
import httplib2
import orjson
import pyarrow as pa
import pyarrow.json as pajson
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.model import JsonModel

from gsc_pipeline.constants import API_ENDPOINT_ENV
from gsc_pipeline.gsc.credentials import credential_key
from gsc_pipeline.gsc.errors import (
    AuthError,
    Cancelled,
    EndpointUnreachable,
    GscError,
    InvalidRequest,
    QuotaExceeded,
    SiteNotFound,
    SitePermissionDenied,
    TransientError,
)
from gsc_pipeline.gsc.rate_limit import QuotaStore, RateLimiter, shared_limiter
from gsc_pipeline.gsc.retry import RetryPolicy, call_with_retries

GOOGLE_ENDPOINT = "https://searchconsole.googleapis.com/"
# The environment variable pointing the pipeline at another API root (the emulator).
_LOG = logging.getLogger(__name__)
# Google's per-credential limit is 1,200 queries/min; keep 20% headroom by default.
DEFAULT_QPM_BUDGET = 960.0


class ClientStats:
    """Thread-safe counters of API calls; also used as a per-partition sink by sync."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.api_calls = 0
        self.retries = 0
        self.quota_wait_seconds = 0.0
        self.latencies_ms: list[float] = []

    def record_call(self, latency_ms: float) -> None:
        with self._lock:
            self.api_calls += 1
            self.latencies_ms.append(latency_ms)

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def record_quota_wait(self, seconds: float) -> None:
        with self._lock:
            self.quota_wait_seconds += seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "api_calls": self.api_calls,
                "retries": self.retries,
                "quota_wait_seconds": self.quota_wait_seconds,
                "latencies_ms": list(self.latencies_ms),
            }


class OrjsonModel(JsonModel):
    """JSON bodies through orjson; a body that does not parse raises instead of returning str.

    The stock JsonModel hands back the raw text when JSON parsing fails, which would let a
    truncated 5 MB page through as a string.
    """

    def serialize(self, body_value: Any) -> bytes:
        return orjson.dumps(body_value)

    def deserialize(self, content: bytes | str) -> Any:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise TransientError(
                f"malformed JSON in a 2xx response ({len(content)} bytes): {exc}; retrying"
            ) from exc


# A searchAnalytics.query response as Arrow reads it. Numbers are parsed straight to doubles
# (the API sends clicks as integers); fields not listed (responseAggregationType, ...) are
# skipped; a row without `position` (discover, googleNews) gets a null.
SEARCH_ROW_TYPE = pa.struct(
    [
        ("keys", pa.list_(pa.string())),
        ("clicks", pa.float64()),
        ("impressions", pa.float64()),
        ("ctr", pa.float64()),
        ("position", pa.float64()),
    ]
)
_SEARCH_RESPONSE_SCHEMA = pa.schema(
    [
        ("rows", pa.list_(SEARCH_ROW_TYPE)),
        (
            "metadata",
            pa.struct(
                [
                    ("firstIncompleteDate", pa.string()),
                    ("first_incomplete_date", pa.string()),
                    ("firstIncompleteHour", pa.string()),
                    ("first_incomplete_hour", pa.string()),
                ]
            ),  # fmt: skip
        ),
    ]
)


@dataclass(frozen=True)
class RowsPage:
    """One searchAnalytics.query page: its rows as one Arrow struct per API row, no Python dicts.

    `rows` follows `SEARCH_ROW_TYPE` (empty when the response has no `rows`, as the API does
    past the last row); validating the values against the request is the caller's job.
    """

    rows: pa.StructArray
    first_incomplete_date: str | None
    # Hourly requests (dataState HOURLY_ALL): the first hour still incomplete, Pacific offset.
    first_incomplete_hour: str | None = None


def parse_rows_page(content: bytes) -> RowsPage:
    """Response bytes -> `RowsPage` with Arrow's C++ JSON reader (no per-row Python objects).

    ~1 µs a row against ~3.6 µs for orjson -> dicts -> Arrow, and a 25,000-row page costs a
    few MB instead of ~25 MB of dicts. A body that is not one JSON object raises
    `TransientError` (retried), like `OrjsonModel`.
    """
    try:
        # The whole body is one JSON object, so one block must hold it; newlines_in_values
        # accepts Google's pretty-printed bodies.
        table = pajson.read_json(
            io.BytesIO(content),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(content) + 1),
            parse_options=pajson.ParseOptions(
                explicit_schema=_SEARCH_RESPONSE_SCHEMA,
                unexpected_field_behavior="ignore",
                newlines_in_values=True,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TransientError(
            f"malformed JSON in a 2xx response ({len(content)} bytes): {exc}; retrying"
        ) from exc
    if table.num_rows != 1:
        raise TransientError(
            f"malformed JSON in a 2xx response ({len(content)} bytes): {table.num_rows} "
            "top-level values, expected one object; retrying"
        )
    rows_column = table.column("rows").combine_chunks()
    rows = rows_column.flatten() if rows_column.null_count == 0 else pa.array([], SEARCH_ROW_TYPE)
    meta = table.column("metadata")[0]
    first = first_hour = None
    if meta.is_valid:
        first = meta["firstIncompleteDate"].as_py() or meta["first_incomplete_date"].as_py()
        first_hour = meta["firstIncompleteHour"].as_py() or meta["first_incomplete_hour"].as_py()
    return RowsPage(rows=rows, first_incomplete_date=first, first_incomplete_hour=first_hour)


# Nothing answers at the endpoint at all (as opposed to a connection that dropped mid-call).
_NOTHING_LISTENING = (ConnectionRefusedError, socket.gaierror, httplib2.ServerNotFoundError)


def _raw_body(resp: Any, content: bytes) -> bytes:
    """postproc for requests whose body the caller parses itself (errors are raised before)."""
    return content


def _error_details(exc: HttpError) -> tuple[str, str]:
    """(message, reason) from Google's error envelope, tolerating non-JSON bodies."""
    try:
        error = orjson.loads(exc.content).get("error", {})
    except (orjson.JSONDecodeError, AttributeError):
        return (exc.content or b"").decode(errors="replace")[:500], ""
    if not isinstance(error, dict):
        return str(error)[:500], ""
    items = error.get("errors") or [{}]
    return str(error.get("message", "")), str(items[0].get("reason", ""))


def _retry_after(exc: HttpError) -> float | None:
    value = exc.resp.get("retry-after") if exc.resp is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def map_http_error(exc: HttpError, site_url: str) -> GscError:
    """One place turning an HTTP status + Google's envelope into a typed error."""
    status = exc.resp.status
    message, reason = _error_details(exc)
    lowered = message.lower()
    if status == 429 or reason in ("rateLimitExceeded", "userRateLimitExceeded"):
        return QuotaExceeded(
            f"{site_url}: QPS quota exceeded ({message}); lower qpm_budget or the concurrency",
            kind="qps",
            retry_after=_retry_after(exc),
        )
    if status == 403 and reason == "quotaExceeded":
        kind = "load" if "load" in lowered else "qps"
        return QuotaExceeded(
            f"{site_url}: {kind} quota exceeded ({message}); "
            + (
                "fetch fewer page/query days per 10 minutes"
                if kind == "load"
                else "lower qpm_budget or the concurrency"
            ),
            kind=kind,
            retry_after=_retry_after(exc),
        )
    if status == 401:
        return AuthError(
            f"{site_url}: the credential was rejected ({message}); refresh or replace it"
        )
    if status == 403:
        return SitePermissionDenied(
            f"{site_url}: the credential has no access ({message}); add it as a user in "
            "Search Console, and check sc-domain: vs URL-prefix form"
        )
    if status == 404:
        return SiteNotFound(
            f"{site_url}: not a property of this account ({message}); check the site_url "
            "(sc-domain:host or https://host/ with the trailing slash)"
        )
    if status == 400:
        return InvalidRequest(f"{site_url}: Google rejected the request: {message}")
    if status >= 500 or status == 408:
        return TransientError(f"{site_url}: HTTP {status} from the API ({message}); retrying")
    return GscError(f"{site_url}: unexpected HTTP {status} from the API: {message}")


def _check_endpoint(endpoint: str) -> None:
    """Refuse an endpoint that is not an http(s) URL at once: no request could ever reach it,
    and the transport would report it as a transient failure worth retrying."""
    url = urllib.parse.urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise EndpointUnreachable(
            f"{API_ENDPOINT_ENV}={endpoint!r} is not an http(s) URL; set it to the API root, "
            f"e.g. http://127.0.0.1:8765/ for `gsc-pipeline emulator`, or unset "
            f"{API_ENDPOINT_ENV} to use Google"
        )


class GscClient:
    """Search Console API calls with one retry policy and a smooth per-credential rate limit.

    `endpoint` None means Google; the emulator passes its base URL and no credentials.
    `qpm_budget` is the credential's budget (of Google's 1,200 queries/min), drawn from one
    bucket per credential and one per site in `quota_store`, so every client of that store
    (threads, processes, hosts) shares it; None: this process only.
    `stop_event` (or the per-call one) aborts limiter waits and retry back-offs with `Cancelled`.
    `log` receives one line per retry wait saying what it waits for (default: this module's
    logger); Dagster assets pass their run log.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        credentials: google.auth.credentials.Credentials | None = None,
        qpm_budget: float = DEFAULT_QPM_BUDGET,
        timeout: float = 120.0,
        *,
        quota_user: str | None = None,
        retry_policy: RetryPolicy | None = None,
        stop_event: threading.Event | None = None,
        limiter: RateLimiter | None = None,
        quota_store: QuotaStore | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint_is_google = not endpoint
        if endpoint:
            _check_endpoint(endpoint)
        self.endpoint = endpoint or GOOGLE_ENDPOINT
        if not self.endpoint.endswith("/"):
            self.endpoint += "/"
        self.credentials = credentials
        self.timeout = timeout
        self.quota_user = quota_user
        self.retry_policy = retry_policy or RetryPolicy()
        self.stop_event = stop_event
        self.limiter = limiter or shared_limiter(
            credential_key(credentials, self.endpoint), qpm_budget, quota_store
        )
        # Google's other per-minute quota counts each property's calls, whichever credential
        # makes them; an injected `limiter` (tests) stands for both.
        self._site_budget = None if limiter else (qpm_budget, quota_store)
        self.stats = ClientStats()
        self.log = log or _LOG.warning
        # Until the endpoint has answered once, a refused connection means a wrong URL or a
        # server that is not running: fail at once instead of retrying for a minute.
        self._answered_once = False
        # Services not in a call now (building one parses the discovery document: ~3 ms).
        self._idle_services: list[Any] = []
        self._services_lock = threading.Lock()

    def _take_service(self) -> Any:
        with self._services_lock:
            if self._idle_services:
                return self._idle_services.pop()
        http: Any = httplib2.Http(timeout=self.timeout)
        if self.credentials is not None:
            http = google_auth_httplib2.AuthorizedHttp(self.credentials, http=http)
        return build(
            "searchconsole",
            "v1",
            http=http,
            client_options={"api_endpoint": self.endpoint},
            static_discovery=True,
            model=OrjsonModel(),
            cache_discovery=False,
        )

    def _give_back_service(self, service: Any) -> None:
        with self._services_lock:
            self._idle_services.append(service)

    def _params(self) -> dict[str, Any]:
        """Google's standard query parameters on every call: the body as compact JSON (Google
        pretty-prints by default: a 25,000-row page x query page is 6.0 MB indented against 3.9
        compact, `scripts/measure_parse.py`), and the `quotaUser` the quota is counted against,
        if one is configured."""
        params: dict[str, Any] = {"prettyPrint": False}
        if self.quota_user:
            params["quotaUser"] = self.quota_user
        return params

    def query(
        self,
        site_url: str,
        body: dict[str, Any],
        *,
        stop_event: threading.Event | None = None,
        sink: ClientStats | None = None,
    ) -> dict[str, Any]:
        """One searchAnalytics.query call (with retries and rate limiting); the parsed body."""
        return self._call(
            site_url,
            lambda s: s.searchanalytics().query(siteUrl=site_url, body=body, **self._params()),
            stop_event,
            sink,
        )

    def query_page(
        self,
        site_url: str,
        body: dict[str, Any],
        *,
        stop_event: threading.Event | None = None,
        sink: ClientStats | None = None,
    ) -> RowsPage:
        """`query`, with the body parsed by `parse_rows_page` instead of into dicts.

        Same transport, retry policy and rate limiter; a malformed body is retried like any
        transient error.
        """

        def make_request(s: Any) -> Any:
            request = s.searchanalytics().query(siteUrl=site_url, body=body, **self._params())
            request.postproc = _raw_body
            return request

        return self._call(site_url, make_request, stop_event, sink, parse=parse_rows_page)

    def list_sites(self, *, stop_event: threading.Event | None = None) -> list[dict[str, Any]]:
        """The account's properties: [{'siteUrl': ..., 'permissionLevel': ...}]."""
        body = self._call("(sites)", lambda s: s.sites().list(**self._params()), stop_event, None)
        return list(body.get("siteEntry", []))

    def get_site(self, site_url: str, *, stop_event: threading.Event | None = None) -> dict:
        return self._call(
            site_url, lambda s: s.sites().get(siteUrl=site_url, **self._params()), stop_event, None
        )

    def list_sitemaps(
        self, site_url: str, *, stop_event: threading.Event | None = None
    ) -> list[dict[str, Any]]:
        """sitemaps.list: the property's submitted sitemaps (Google's WmxSitemap dicts)."""
        body = self._call(
            site_url,
            lambda s: s.sitemaps().list(siteUrl=site_url, **self._params()),
            stop_event,
            None,
        )
        return list(body.get("sitemap", []))

    def _call(self, site_url: str, make_request, stop_event, sink, parse=None) -> Any:
        stop_event = stop_event or self.stop_event
        sinks = (self.stats,) if sink is None else (self.stats, sink)

        def attempt() -> dict[str, Any]:
            if stop_event is not None and stop_event.is_set():
                raise Cancelled(f"{site_url}: stopped before the API call")
            waited = self.limiter.acquire(stop_event)
            if self._site_budget is not None and not site_url.startswith("("):
                site = shared_limiter(f"site {site_url}@{self.endpoint}", *self._site_budget)
                waited += site.acquire(stop_event)
            for s in sinks:
                s.record_quota_wait(waited)
            service = self._take_service()
            request = make_request(service)
            started = time.perf_counter()
            try:
                content = request.execute()
                self._answered_once = True
                # Inside the attempt, so a malformed body (TransientError) is retried.
                return content if parse is None else parse(content)
            except HttpError as exc:
                self._answered_once = True
                raise map_http_error(exc, site_url) from exc
            except google.auth.exceptions.RefreshError as exc:
                raise AuthError(
                    f"{site_url}: could not obtain an access token ({exc}); check the "
                    "credential is valid and not revoked"
                ) from exc
            except google.auth.exceptions.TransportError as exc:
                raise TransientError(f"{site_url}: token endpoint unreachable ({exc})") from exc
            except TimeoutError as exc:
                raise TransientError(
                    f"{site_url}: no response within {self.timeout}s; retrying"
                ) from exc
            except _NOTHING_LISTENING as exc:
                if not self._answered_once:
                    raise self._unreachable(exc) from exc
                raise TransientError(
                    f"{site_url}: connection failed mid-call ({type(exc).__name__}: {exc})"
                ) from exc
            except (http.client.HTTPException, httplib2.HttpLib2Error, OSError) as exc:
                raise TransientError(
                    f"{site_url}: connection failed mid-call ({type(exc).__name__}: {exc})"
                ) from exc
            finally:
                self._give_back_service(service)
                latency = (time.perf_counter() - started) * 1000
                for s in sinks:
                    s.record_call(latency)

        def on_retry(exc: GscError, wait: float) -> None:
            for s in sinks:
                s.record_retry()
                if isinstance(exc, QuotaExceeded):
                    s.record_quota_wait(wait)

        return call_with_retries(
            attempt,
            self.retry_policy,
            stop_event=stop_event,
            on_retry=on_retry,
            what=site_url,
            log=self.log,
        )

    def _unreachable(self, exc: BaseException) -> EndpointUnreachable:
        reason = f"{type(exc).__name__}: {exc}"
        if self.endpoint_is_google:
            return EndpointUnreachable(
                f"cannot reach Google's Search Console API at {self.endpoint} ({reason}); "
                f"{API_ENDPOINT_ENV} is unset, so check this machine's network, DNS and proxy"
            )
        return EndpointUnreachable(
            f"cannot reach the Search Console API at {self.endpoint} ({reason}); check "
            f"{API_ENDPOINT_ENV}={self.endpoint!r}: is the server running and are the host and "
            f"port right? (unset {API_ENDPOINT_ENV} to use Google)"
        )
