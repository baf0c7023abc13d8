"""Measure url_lifetime_stats: an incremental refresh after the daily window vs a full recompute.

    .venv/bin/python scripts/measure_lifetime.py [--days 120] [--warehouse PATH_OR_URL] [--out FILE]

Benchmark size: three properties with ~50,000 (capped), ~5,000 and ~500 page x query rows a day
over `--days` days, served by the emulator over HTTP and synced with `sync_days` into a DuckDB
file (or, given a postgresql:// URL, an empty PostgreSQL database). The last three days first
arrive as fresh data; then the emulated clock moves three days on and the daily window (4 days
per property) is re-fetched as final, which is what a daily schedule run does. Printed: rows
read and written, and seconds, for both refreshes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import tempfile
import time

from gsc_pipeline import lifetime
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.reports import PAGE, PAGE_QUERY
from gsc_pipeline.sync import sync_days
from gsc_pipeline.warehouse import open_warehouse

TODAY = dt.date(2026, 8, 18)
PROPERTIES = [
    {"site_url": "sc-domain:large.example", "page_query_rows_per_day": 60000, "pages": 4000},
    {"site_url": "sc-domain:medium.example", "page_query_rows_per_day": 5000, "pages": 800},
    {"site_url": "https://www.small.example/", "page_query_rows_per_day": 500, "pages": 100},
]
REFRESH_DAYS = 4


def _sync(base_url: str, wh, site: str, days: list[dt.date], state: str, run: str) -> None:
    client = GscClient(base_url, None, qpm_budget=100_000)
    for report in (PAGE, PAGE_QUERY):
        sync_days(client, wh, site, report, days, run_id=run, data_state=state, concurrency=4)


def measure(days: int, warehouse_url: str) -> dict[str, dict[str, float]]:
    config = {
        "seed": 42,
        "today": TODAY.isoformat(),
        "latency": {"base_ms": 0, "per_row_us": 0, "jitter_sigma": 0},
        "switches": {"final_lag_days": 3},
        "properties": [{**p, "search_types": ["web"]} for p in PROPERTIES],
    }
    all_days = [TODAY - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]
    sites = [p["site_url"] for p in PROPERTIES]
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE, PAGE_QUERY])
    with running_emulator(config) as emulator:
        started = time.perf_counter()
        for site in sites:
            _sync(emulator.base_url, wh, site, all_days[:-3], "final", "backfill")
            _sync(emulator.base_url, wh, site, all_days[-3:], "all", "fresh")
        seconds = time.perf_counter() - started
        print(f"synced {days} days x {len(sites)} properties in {seconds:.0f} s")
        counts = wh.read_sql(
            "SELECT (SELECT COUNT(*) FROM gsc_page) AS page_rows, "
            "(SELECT COUNT(*) FROM gsc_page_query) AS page_query_rows"
        )
        source_rows = int(counts["page_rows"].iloc[0] + counts["page_query_rows"].iloc[0])
        full = lifetime.full_recompute(wh, sites)
        emulator.set_today(TODAY + dt.timedelta(days=3))
        window = all_days[-REFRESH_DAYS:]
        for site in sites:
            _sync(emulator.base_url, wh, site, window, "final", "daily_refresh")
    incremental = lifetime.refresh(wh, sites)
    assert incremental.days_refreshed == REFRESH_DAYS * len(sites)
    keys = ("days_refreshed", "source_rows_read", "state_rows_read", "rows_written", "seconds")
    result = {
        "full_recompute": {k: getattr(full, k) for k in keys},
        "incremental_daily_window": {k: getattr(incremental, k) for k in keys},
        "report_rows_in_warehouse": {"rows": source_rows},
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--warehouse", default=None, help="DuckDB path or postgresql:// URL")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.warehouse or str(pathlib.Path(tmp) / "lifetime_bench.duckdb")
        if not url.startswith("postgresql://"):
            url = f"duckdb:///{pathlib.Path(url).resolve()}"
        result = measure(args.days, url)
    print(f"{'refresh':<26}{'days':>6}{'source rows read':>18}{'state rows read':>17}"
          f"{'rows written':>14}{'seconds':>9}")  # fmt: skip
    for name in ("full_recompute", "incremental_daily_window"):
        r = result[name]
        print(
            f"{name:<26}{r['days_refreshed']:>6}{r['source_rows_read']:>18,}"
            f"{r['state_rows_read']:>17,}{r['rows_written']:>14,}{r['seconds']:>9.2f}"
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
