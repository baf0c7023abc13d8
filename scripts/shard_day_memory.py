"""Arrow memory a capped day's fetch holds at its peak: one 150,000-row page x query day
(three times Google's cap, stored through shards), fetched by `fetch_day` in this process.

    .venv/bin/python scripts/shard_day_memory.py [--concurrency N]

Prints Arrow's default pool peak (`max_memory`: every page, shard and merged table alive at
once counts) against the merged day's own size, and the step's requests in flight at once as
the emulator counted them (`--concurrency` is the step's in-flight limit).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

import pyarrow as pa

from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.sync.days import InFlight
from gsc_pipeline.sync.fetch import fetch_day

BIG = "sc-domain:big.example"
DAY = dt.date(2026, 8, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    config = {
        "today": "2026-08-18",
        "properties": [{"site_url": BIG, "page_query_rows_per_day": 150_000, "pages": 20_000}],
        "latency": {"base_ms": 100, "per_row_us": 0, "jitter_sigma": 0},
    }
    with running_emulator(config) as handle:
        client = GscClient(handle.base_url, qpm_budget=1e6, timeout=60)
        slots = InFlight(1e6, args.concurrency)
        kwargs = {}
        if hasattr(slots, "try_take"):  # before the change: no slots, shards one at a time
            slots.try_take()  # the day's own request in flight, as sync_days takes it
            kwargs["request_slots"] = slots
        result = fetch_day(client, BIG, PAGE_QUERY, DAY, run_id="m", **kwargs)
        peak_requests = handle.stats()["peak_concurrent_requests"]
    pool = pa.default_memory_pool()
    print(json.dumps({
        "rows": result.rows, "shards": result.shards, "api_calls": result.api_calls,
        "fetch_seconds": result.fetch_seconds, "peak_concurrent_requests": peak_requests,
        "arrow_peak_mb": round(pool.max_memory() / 2**20, 1),
        "merged_day_mb": round(result.batch.rows.nbytes / 2**20, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
