"""The emulator's HTTP server: Google's wire protocol on loopback, plus a control API.

Routing is done by hand on the raw path because `{siteUrl}` is one percent-encoded segment
(`https%3A%2F%2Fwww.example.com%2F`) that routers tend to decode and split.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import numpy as np
import orjson
from aiohttp import web
from pydantic import ValidationError

from gsc_pipeline.emulator.aggregate import ReportBuilder
from gsc_pipeline.emulator.auth import Authority, GrantError
from gsc_pipeline.emulator.batch import BatchFormatError, batch_response, parse_batch
from gsc_pipeline.emulator.config import (
    EmulatorConfig,
    FaultConfig,
    LatencyConfig,
    QuotaConfig,
    SwitchConfig,
)
from gsc_pipeline.emulator.data import FactSource
from gsc_pipeline.emulator.errors import (
    ApiError,
    backend_error,
    bad_request,
    forbidden,
    load_exceeded,
    not_found,
    qps_exceeded,
    unauthenticated,
)
from gsc_pipeline.emulator.faults import Fault, Faults, ScriptedFault
from gsc_pipeline.emulator.query import not_valid_aggregation, parse_query
from gsc_pipeline.emulator.quotas import Quotas
from gsc_pipeline.emulator.sitemaps import site_sitemaps
from gsc_pipeline.emulator.stats import Stats

API_PREFIX = "/webmasters/v3/"
BATCH_PATHS = frozenset({"/batch", "/batch/webmasters/v3", "/batch/searchconsole/v1"})
JSON = "application/json; charset=UTF-8"


@dataclass
class Answer:
    status: int
    body: bytes
    rows: int = 0
    fault: Fault | None = None


def _error(exc: ApiError) -> Answer:
    return Answer(exc.code, exc.body())


class Emulator:
    """All mutable state lives here and is touched only from the server's event loop."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.today = config.start_today()
        self.switches = config.switches
        self.source = FactSource(config.seed, config.properties)
        self.reports = ReportBuilder(self.source, config.max_rows_per_day, config.cache_rows)
        self.quotas = Quotas(config.quotas, config.time_scale)
        self.faults = Faults(config.faults)
        self.stats = Stats(config.time_scale)
        self.authority = Authority(config.auth)
        self._latency_rng = np.random.default_rng(config.seed)
        self._tie_rng = np.random.default_rng(config.seed + 1)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        if path.startswith("/_emulator/"):
            return await self._control(request, path.removeprefix("/_emulator/"))
        if path == "/token" and request.method == "POST":
            return await self._token(request)
        if path in BATCH_PATHS and request.method == "POST":
            return await self._batch(request)
        query = dict(parse_qsl(request.query_string))
        answer = await self.call(
            request.method, path, query, request.headers.get("Authorization"),
            await request.read(), request.remote or "anonymous",
        )  # fmt: skip
        return await self._respond(request, answer)

    # ---- the API proper -------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        authorization: str | None,
        body: bytes,
        peer: str,
    ) -> Answer:
        """One API call, direct or from a batch: auth, quota, validation, faults, latency."""
        self.stats.request_started()
        try:
            answer, report = await self._call(method, path, query, authorization, body, peer)
        finally:
            self.stats.request_finished()
        self.stats.answered(answer.status, report, answer.rows)
        return answer

    async def _call(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        authorization: str | None,
        body: bytes,
        peer: str,
    ) -> tuple[Answer, str | None]:
        if not path.startswith(API_PREFIX):
            return Answer(404, ApiError(404, "Not Found", "notFound").body()), None
        segments = path.removeprefix(API_PREFIX).split("/")
        if segments[0] != "sites" or len(segments) not in (1, 2, 3, 4):
            return Answer(404, ApiError(404, "Not Found", "notFound").body()), None
        site_url = unquote(segments[1]) if len(segments) > 1 else None
        is_query = segments[2:] == ["searchAnalytics", "query"]
        # sitemaps.list (…/sitemaps) and sitemaps.get (…/sitemaps/{feedpath}, one segment).
        is_sitemaps = segments[2:3] == ["sitemaps"]
        if len(segments) > 2 and not (is_query or is_sitemaps):
            return Answer(404, ApiError(404, "Not Found", "notFound").body()), None
        if is_query and method != "POST":
            return Answer(404, ApiError(404, "Not Found", "notFound").body()), None
        if not is_query and method != "GET":
            return Answer(405, ApiError(405, "Method Not Allowed", "badRequest").body()), None

        principal, presented = self.authority.principal(authorization)
        user = principal or query.get("quotaUser") or peer
        self.stats.call(site_url, user)
        if self.switches.auth_required and principal is None:
            return _error(unauthenticated(invalid=presented)), None
        rejected = self.quotas.admit(site_url if is_query else None, user)
        if rejected is not None:
            self.stats.rejected(rejected)
            return _error(qps_exceeded(self.config.quotas.qps_status)), None
        if is_sitemaps:
            return self._sitemaps(site_url or "", segments[3:]), "sitemaps"
        if not is_query:
            return self._sites(site_url), None

        site = self.config.site(site_url or "")
        if site is None:
            # The other form of a known property (sc-domain: vs URL prefix) is a property the
            # credential cannot read, which Google reports as 403, not as unknown.
            if _host(site_url or "") in {_host(p.site_url) for p in self.config.properties}:
                return _error(forbidden(site_url or "")), None
            return _error(not_found(site_url or "")), None
        if site.permission == "siteUnverifiedUser":
            return _error(forbidden(site.site_url)), None
        try:
            spec = parse_query(orjson.loads(body or b"{}"))
        except orjson.JSONDecodeError:
            return _error(bad_request("Invalid JSON payload received.", reason="parseError")), None
        except ApiError as exc:
            return _error(exc), None
        if spec.aggregation in site.rejected_aggregations:
            return _error(not_valid_aggregation(spec.aggregation)), spec.report
        if not self.quotas.admit_load(site.site_url, user, spec):
            self.stats.rejected("load")
            return _error(load_exceeded()), spec.report
        fault = self.faults.pick(site.site_url, spec)
        if fault is not None:
            self.stats.fault(f"status_{fault.status}" if fault.kind == "status" else fault.kind)
            if fault.kind == "status":
                return _error(backend_error(fault.status)), spec.report
        try:
            report = self.reports.report(site.site_url, spec, self.today, self.switches)
        except ApiError as exc:
            return _error(exc), spec.report
        tie_rng = self._tie_rng if self.switches.arbitrary_tie_order else None
        rows = report.page(spec.start_row, spec.row_limit, tie_rng)
        tail = b'"responseAggregationType":"' + report.aggregation.encode() + b'"'
        if report.metadata:
            tail += b',"metadata":' + orjson.dumps(report.metadata)
        # Google omits `rows` entirely (not []) when there is nothing to return.
        payload = (b'{"rows":[' + b",".join(rows) + b"]," + tail + b"}") if rows else (
            b"{" + tail + b"}"
        )
        await self._latency(len(rows))
        return Answer(200, payload, len(rows), fault), spec.report

    def _sitemaps(self, site_url: str, feed: list[str]) -> Answer:
        site = self.config.site(site_url)
        if site is None:
            return _error(not_found(site_url))
        if site.permission == "siteUnverifiedUser":
            return _error(forbidden(site.site_url))
        entries = site_sitemaps(self.config.seed, site, self.today)
        if not feed:
            # Like `rows`, an empty list is left out: a site without sitemaps answers {}.
            return Answer(200, orjson.dumps({"sitemap": entries} if entries else {}))
        path = unquote(feed[0])
        entry = next((e for e in entries if e["path"] == path), None)
        if entry is None:
            return _error(ApiError(404, "Requested entity was not found.", "notFound"))
        return Answer(200, orjson.dumps(entry))

    def _sites(self, site_url: str | None) -> Answer:
        if site_url is None:
            entries = [{"siteUrl": p.site_url, "permissionLevel": p.permission}
                       for p in self.config.properties]  # fmt: skip
            return Answer(200, orjson.dumps({"siteEntry": entries} if entries else {}))
        site = self.config.site(site_url)
        if site is None:
            return _error(not_found(site_url))
        return Answer(
            200, orjson.dumps({"siteUrl": site.site_url, "permissionLevel": site.permission})
        )

    async def _latency(self, rows: int) -> None:
        latency = self.config.latency
        seconds = latency.base_ms / 1e3 + latency.per_row_us * rows / 1e6
        if seconds <= 0:
            return
        if latency.jitter_sigma > 0:
            seconds *= math.exp(self._latency_rng.normal(0.0, latency.jitter_sigma))
        await asyncio.sleep(seconds / self.config.time_scale)

    async def _respond(self, request: web.Request, answer: Answer) -> web.StreamResponse:
        fault = answer.fault
        if fault is None:
            return web.Response(status=answer.status, body=answer.body, content_type=None,
                                headers={"Content-Type": JSON})  # fmt: skip
        if fault.kind == "reset":
            _abort(request)
            return web.Response(status=500)
        if fault.kind == "slow":
            await asyncio.sleep(self.config.faults.slow_seconds)
        elif fault.kind == "malformed":
            return web.Response(status=200, body=answer.body[: max(1, len(answer.body) // 2)],
                                headers={"Content-Type": JSON})  # fmt: skip
        elif fault.kind == "truncated":
            # Announce the full length, send half, hang up: the client sees a short read.
            response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
            response.content_length = len(answer.body)
            await response.prepare(request)
            await response.write(answer.body[: len(answer.body) // 2])
            _abort(request)
            return response
        return web.Response(status=answer.status, body=answer.body,
                            headers={"Content-Type": JSON})  # fmt: skip

    # ---- batch and token ------------------------------------------------------------------

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        try:
            calls = parse_batch(request.headers.get("Content-Type", ""), await request.read())
        except BatchFormatError as exc:
            return web.Response(status=400, body=bad_request(str(exc)).body(),
                                headers={"Content-Type": JSON})  # fmt: skip
        peer = request.remote or "anonymous"
        answers = await asyncio.gather(*(
            self.call(c.method, c.target.split("?", 1)[0],
                      dict(parse_qsl(c.target.split("?", 1)[1])) if "?" in c.target else {},
                      c.headers.get("authorization") or request.headers.get("Authorization"),
                      c.body, peer)
            for c in calls
        ))  # fmt: skip
        # A transport-level fault in any call breaks the whole batch response, as it would.
        fault = next((a.fault for a in answers if a.fault and a.fault.kind != "status"), None)
        content_type, body = batch_response(
            [(c.content_id, a.status, a.body) for c, a in zip(calls, answers, strict=True)]
        )
        if fault is not None:
            return await self._respond(request, Answer(200, body, fault=fault))
        return web.Response(status=200, body=body, headers={"Content-Type": content_type})

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        try:
            body: dict[str, Any] = self.authority.grant(form)
        except GrantError as exc:
            return web.Response(status=400, body=orjson.dumps(exc.body),
                                headers={"Content-Type": JSON})  # fmt: skip
        return web.Response(body=orjson.dumps(body), headers={"Content-Type": JSON})

    # ---- control API ----------------------------------------------------------------------

    async def _control(self, request: web.Request, action: str) -> web.Response:
        try:
            result = await self._control_action(request, request.method, action)
        except (ValueError, TypeError, KeyError, ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if result is None:
            return web.json_response({"error": f"unknown control endpoint {action}"}, status=404)
        return web.Response(body=orjson.dumps(result), headers={"Content-Type": JSON})

    async def _control_action(
        self, request: web.Request, method: str, action: str
    ) -> dict[str, Any] | None:
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        token_uri = f"http://{request.host}/token"
        match method, action:
            case "GET", "stats":
                return {**self.stats.snapshot(), "reports_built": self.reports.built}
            case "POST", "stats/reset":
                self.stats.reset()
                self.reports.built = 0
                return {"ok": True}
            case "POST", "quotas/reset":
                self.quotas.reset()
                return {"ok": True}
            case "POST", "faults":
                date = body.pop("date", None)
                fault = ScriptedFault(
                    **body, date=dt.date.fromisoformat(date) if date else None
                )
                self.faults.script(fault)
                return {"scripted": len(self.faults.scripted)}
            case "DELETE", "faults":
                self.faults.clear()
                return {"ok": True}
            case "POST", "faults/rates":
                self.faults = Faults(FaultConfig.model_validate(
                    {**self.faults.config.model_dump(), **body}
                ))  # fmt: skip
                return self.faults.config.model_dump()
            case "POST", "latency":
                latency = LatencyConfig.model_validate({**self.config.latency.model_dump(), **body})
                self.config = self.config.model_copy(update={"latency": latency})
                return latency.model_dump()
            case "POST", "quotas":
                # New limits start with full buckets; the load quota's usage starts over too.
                quotas = QuotaConfig.model_validate({**self.config.quotas.model_dump(), **body})
                self.config = self.config.model_copy(update={"quotas": quotas})
                self.quotas = Quotas(quotas, self.config.time_scale)
                return quotas.model_dump()
            case "GET", "clock":
                return {"today": self.today.isoformat()}
            case "POST", "clock":
                self.today = dt.date.fromisoformat(body["today"])
                return {"today": self.today.isoformat()}
            case "POST", "switches":
                self.switches = SwitchConfig.model_validate(
                    {**self.switches.model_dump(), **body}
                )
                return self.switches.model_dump()
            case "GET", "config":
                config = self.config.model_dump(mode="json")
                config["today"] = self.today.isoformat()
                config["switches"] = self.switches.model_dump()
                config["faults"] = self.faults.config.model_dump()
                return config
            case "GET", "service-account-key":
                return self.authority.service_account_info(token_uri)
            case "GET", "authorized-user":
                return self.authority.authorized_user_info(token_uri)
        return None


def _host(site_url: str) -> str:
    host = site_url.removeprefix("sc-domain:").split("://", 1)[-1].split("/", 1)[0]
    return host.removeprefix("www.")


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


async def start_server(emulator: Emulator, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Listen on host:port (0 picks a free port); returns the runner and the base URL."""
    runner = web.AppRunner(emulator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    # A deep backlog so 200+ clients connecting at once are not refused.
    await web.TCPSite(runner, host, port, backlog=2048).start()
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{bound_host}:{bound_port}/"
