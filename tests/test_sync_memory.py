"""Peak memory of a ranged fetch step: `sync_days` over 16 days of a property over Google's row
cap (sharded), 16 days in flight, in a process of its own, with the emulator in another.

Run `.venv/bin/pytest -s tests/test_sync_memory.py` to see the figures printed. The ceiling is
generous (a measurement, not a benchmark): it catches a step that holds every day or every page
it ever fetched, not the last tens of MB.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys

import pytest

LARGE = "sc-domain:large.example"
DAYS = 16
CONCURRENCY = 16
# Measured growth above the imports (2 cores under load): ~540-750 MB on DuckDB and PostgreSQL at
# 16 days in flight of ~60,000 rows each (Arrow ~300 MB of it); ~360-420 MB at 8 in flight.
# Holding every fetched day would add ~1 GB more.
CEILING_GROWTH_MB = 1100

# What the step's process does: the imports a run worker needs for the path, then one step.
_CHILD = """
import datetime as dt, json, resource, sys
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.sync import sync_days
from gsc_pipeline.warehouse import open_warehouse

def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20

endpoint, warehouse_url, site, days, concurrency = sys.argv[1:6]
imports = rss_mb()
day_list = [dt.date(2026, 6, 25) - dt.timedelta(days=i) for i in range(int(days))]
results = sync_days(
    GscClient(endpoint, qpm_budget=9600.0), open_warehouse(warehouse_url), site, PAGE_QUERY,
    day_list, run_id="memory", concurrency=int(concurrency),
)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"imports_mb": imports, "peak_mb": peak, "end_mb": rss_mb(),
                  "rows": sum(r.rows for r in results)}))
"""


def _serve(conn) -> None:
    from gsc_pipeline.emulator.testing import running_emulator

    # The bench's large property, latency and quota 10x faster (the budget below follows).
    config = {
        "today": "2026-06-30",
        "time_scale": 10.0,
        "max_rows_per_day": 50_000,
        "latency": {"base_ms": 500, "per_row_us": 40, "jitter_sigma": 0.3},
        "quotas": {"site_qpm": 1200, "user_qpm": 1200},
        "properties": [{"site_url": LARGE, "page_query_rows_per_day": 60_000, "pages": 6_000,
                        "search_types": ["web"]}],
    }  # fmt: skip
    with running_emulator(config) as handle:
        conn.send(handle.base_url)
        conn.recv()


@pytest.fixture(scope="module")
def emulator_url():
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(child,), daemon=True)
    process.start()
    yield parent.recv()
    parent.send("stop")
    process.join(30)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/statm")
@pytest.mark.parametrize(
    "backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_peak_rss_of_a_ranged_step(request, emulator_url, backend):
    url = request.getfixturevalue("duckdb_path" if backend == "duckdb" else "postgres_schema_url")
    if backend == "duckdb":
        url = f"duckdb:///{url}"
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, emulator_url, url, LARGE, str(DAYS), str(CONCURRENCY)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    growth = figures["peak_mb"] - figures["imports_mb"]
    print(
        f"\n{backend}: {figures['rows']:,} rows in {DAYS} days, {CONCURRENCY} in flight: "
        f"imports {figures['imports_mb']:.0f} MB, peak {figures['peak_mb']:.0f} MB "
        f"(+{growth:.0f} MB), after the step {figures['end_mb']:.0f} MB"
    )
    assert figures["rows"] > DAYS * 50_000
    assert growth < CEILING_GROWTH_MB
