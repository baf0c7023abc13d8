"""Run the emulator from tests, demos and benchmarks, and drive it through its control API.

    with running_emulator({"seed": 7}) as gsc:
        service = build("searchconsole", "v1", http=httplib2.Http(),
                        client_options={"api_endpoint": gsc.base_url}, static_discovery=True)
        gsc.script_fault("sc-domain:example.com", start_row=25000, times=2)

Every helper speaks real HTTP to /_emulator/..., so `EmulatorHandle.connect(url)` drives an
emulator running in another process (the CLI) exactly like an in-process one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import pathlib
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gsc_pipeline.emulator.auth import write_key_file
from gsc_pipeline.emulator.config import EmulatorConfig, load_config
from gsc_pipeline.emulator.server import Emulator, start_server

__all__ = ["EmulatorHandle", "running_emulator"]


class EmulatorHandle:
    """A running emulator, addressed by its base URL."""

    # The server's process when the handle's maker started one (`tools.demo.emulator_process`).
    pid: int | None = None

    def __init__(self, base_url: str, config: EmulatorConfig | None = None) -> None:
        self.base_url = base_url
        self._config = config

    @classmethod
    def connect(cls, base_url: str) -> EmulatorHandle:
        """A handle for an emulator already running (e.g. `python -m gsc_pipeline.emulator`)."""
        return cls(base_url if base_url.endswith("/") else base_url + "/")

    @property
    def config(self) -> dict[str, Any]:
        """The effective configuration, as the server reports it (today, switches included)."""
        return self._control("GET", "config")

    @property
    def webmasters_url(self) -> str:
        """The endpoint for build("webmasters", "v3", ...), whose servicePath is empty."""
        return self.base_url + "webmasters/v3/"

    @property
    def batch_url(self) -> str:
        """For BatchHttpRequest(batch_uri=...): the client ignores api_endpoint for batches."""
        return self.base_url + "batch"

    def _control(self, method: str, action: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.base_url}_emulator/{action}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(f"emulator control {action}: {exc.read().decode()}") from None

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "stats")

    def reset_stats(self) -> None:
        self._control("POST", "stats/reset", {})

    def reset_quotas(self) -> None:
        """Refill every quota bucket and forget load-quota usage."""
        self._control("POST", "quotas/reset", {})

    def set_latency(self, **latency: float) -> dict[str, Any]:
        """Change the latency config's fields given (base_ms, per_row_us, jitter_sigma)."""
        return self._control("POST", "latency", latency)

    def set_quotas(self, **quotas: Any) -> dict[str, Any]:
        """Change the quota config's fields given (site_qpm, user_qpm, ...); buckets refill."""
        return self._control("POST", "quotas", quotas)

    def script_fault(
        self,
        site_url: str,
        *,
        date: dt.date | str | None = None,
        start_row: int | None = None,
        kind: str = "status",
        status: int = 503,
        times: int = 1,
        report: str | None = None,
    ) -> None:
        """Make the next `times` matching queries fail; `report` is e.g. 'date,page,query'."""
        self._control("POST", "faults", {
            "site_url": site_url, "date": str(date) if date else None, "start_row": start_row,
            "kind": kind, "status": status, "times": times, "report": report,
        })  # fmt: skip

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def set_fault_rates(self, **rates: float) -> None:
        """Change the seeded random fault rates (rate_503=0.1, ...) and restart their RNG."""
        self._control("POST", "faults/rates", rates)

    def set_today(self, today: dt.date | str) -> None:
        self._control("POST", "clock", {"today": str(today)})

    def set_switch(self, name: str, value: Any) -> None:
        self._control("POST", "switches", {name: value})

    def restate(
        self,
        start: dt.date | str,
        end: dt.date | str,
        *,
        factor: float = 0.8,
        site_url: str | None = None,
    ) -> None:
        """Change the totals of days [start, end] (final ones included), like Google's
        corrections: impressions times `factor`, for `site_url` or every site."""
        restated = [*self.config["switches"]["restated"], {
            "start": str(start), "end": str(end), "factor": factor, "site_url": site_url,
        }]  # fmt: skip
        self.set_switch("restated", restated)

    def service_account_info(self) -> dict[str, Any]:
        return self._control("GET", "service-account-key")

    def authorized_user_info(self) -> dict[str, Any]:
        return self._control("GET", "authorized-user")

    def write_service_account_key(self, path: str | pathlib.Path) -> pathlib.Path:
        """A service-account key file whose token_uri points at this emulator."""
        return write_key_file(path, self.service_account_info())

    def write_authorized_user(self, path: str | pathlib.Path) -> pathlib.Path:
        """An authorized-user JSON (client id, secret, refresh token) for this emulator."""
        return write_key_file(path, self.authorized_user_info())


@contextmanager
def running_emulator(
    config: EmulatorConfig | dict[str, Any] | str | pathlib.Path | None = None,
) -> Iterator[EmulatorHandle]:
    """An emulator on a free 127.0.0.1 port, served from a background thread's event loop.

    `None` means the default properties with zero latency (unlike the CLI's realistic default).
    """
    effective = load_config({} if config is None else config)
    emulator = Emulator(effective)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []
    base_url = ""

    async def serve() -> None:
        nonlocal stop, base_url
        stop = asyncio.Event()
        try:
            runner, base_url = await start_server(emulator, "127.0.0.1", 0)
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(),), name="gsc-emulator", daemon=True
    )
    thread.start()
    started.wait()
    if failure:
        thread.join()
        loop.close()
        raise failure[0]
    try:
        yield EmulatorHandle(base_url, effective)
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        loop.close()


def _serve_in_child(config: dict[str, Any], conn: Any) -> None:
    with running_emulator(config) as handle:
        conn.send(handle.base_url)
        conn.recv()  # until the parent says stop


@contextmanager
def emulator_process(config: dict[str, Any]) -> Iterator[str]:
    """The emulator in a spawned process of its own, so a measurement of this process's CPU or
    memory leaves the emulator's out: yields its base URL."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve_in_child, args=(config, child), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(30)
