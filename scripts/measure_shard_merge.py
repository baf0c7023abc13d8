"""CPU of `merge_shards` on 4 synthetic shards of 20,000 page x query rows of one day (keys
drawn from 6,000 pages and 20,000 queries, so shards overlap), best of 7.

    .venv/bin/python scripts/measure_shard_merge.py

Run it from another checkout (cd there, PYTHONPATH=. /work/main/.venv/bin/python ...) to
measure that checkout's merge. A measurement, not a test (docs/bench/README.md, stop 22).
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa

from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.sync.shards import merge_shards
from gsc_pipeline.warehouse.base import report_schema


def main() -> None:
    rng = np.random.default_rng(0)
    schema = report_schema(PAGE_QUERY)

    def shard(n: int) -> pa.Table:
        return pa.Table.from_pydict({
            "site_url": ["sc-domain:large.example"] * n, "search_type": ["web"] * n,
            "date": [dt.date(2026, 6, 1)] * n,
            "page": [f"https://large.example/p/{x}" for x in rng.integers(0, 6000, n)],
            "query": [f"query {x} words" for x in rng.integers(0, 20000, n)],
            "clicks": rng.integers(0, 5, n), "impressions": rng.integers(5, 50, n),
            "ctr": rng.random(n), "position": rng.random(n) * 20,
        }, schema=schema)  # fmt: skip

    shards = [shard(20_000) for _ in range(4)]
    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        merged = merge_shards(shards, PAGE_QUERY)
        best = min(best, time.process_time() - start)
    print(f"merge_shards: 80,000 shard rows -> {merged.num_rows:,} rows in {best * 1000:.1f} ms "
          f"CPU (best of 7), {best / 80_000 * 1e6:.2f} µs per shard row")  # fmt: skip


if __name__ == "__main__":
    main()
