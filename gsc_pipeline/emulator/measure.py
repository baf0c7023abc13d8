"""Measure the emulator's own cost: `python -m gsc_pipeline.emulator.measure`.

Runs the emulator as a subprocess with zero latency and unlimited quotas, then reports
requests/s for small pages under concurrency and the server's CPU time per 25,000-row page
(read from the server process, so the client's JSON parsing is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import aiohttp
import psutil
import yaml

BIG_SITE = "sc-domain%3Ashop.example"
SMALL_SITE = "sc-domain%3Aexample.com"
CONFIG = {
    "today": "2026-08-18",
    "latency": {"base_ms": 0, "per_row_us": 0},
    "quotas": {"site_qpm": 10**9, "user_qpm": 10**9, "project_qpm": 10**9},
}


def _url(base: str, site: str) -> str:
    return f"{base}webmasters/v3/sites/{site}/searchAnalytics/query"


async def _small_pages(base: str, total: int, concurrency: int) -> float:
    body = {"startDate": "2026-08-01", "endDate": "2026-08-01", "dimensions": ["page"],
            "rowLimit": 10}  # fmt: skip
    queue = iter(range(total))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            for _ in queue:
                async with session.post(_url(base, SMALL_SITE), json=body) as response:
                    await response.read()
                    assert response.status == 200, response.status

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


async def _big_pages(base: str, process: psutil.Process, pages: int) -> tuple[int, float, float]:
    """(bytes per page, server CPU ms for the first page, server CPU ms per cached page)."""
    body = {"startDate": "2026-08-01", "endDate": "2026-08-01", "rowLimit": 25000,
            "dimensions": ["date", "page", "query"]}  # fmt: skip
    async with aiohttp.ClientSession() as session:

        async def fetch() -> int:
            async with session.post(_url(base, BIG_SITE), json=body) as response:
                return len(await response.read())

        before = _cpu(process)
        size = await fetch()
        cold_ms = (_cpu(process) - before) * 1000
        before = _cpu(process)
        for _ in range(pages):
            await fetch()
        return size, cold_ms, (_cpu(process) - before) * 1000 / pages


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--pages", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "measure.yaml"
        config.write_text(yaml.safe_dump(CONFIG))
        server = subprocess.Popen(
            [sys.executable, "-m", "gsc_pipeline.emulator", "--port", "0", "--config",
             str(config)], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            base = server.stdout.readline().rsplit(" ", 1)[1].strip()
            process = psutil.Process(server.pid)
            rps = asyncio.run(_small_pages(base, args.requests, args.concurrency))

            size, cold_ms, warm_ms = asyncio.run(_big_pages(base, process, args.pages))
        finally:
            server.terminate()
            server.wait(timeout=10)
    result = {
        "small_page_requests_per_second": round(rps),
        "client_connections": args.concurrency,
        "cpu_ms_per_25000_row_page_cached": round(warm_ms, 2),
        "cpu_ms_first_25000_row_page_including_generation": round(cold_ms, 1),
        "bytes_per_25000_row_page": size,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
