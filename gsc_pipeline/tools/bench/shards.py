"""The quota cost of sharding: a property three times over Google's 50,000-row cap, its
page_query days fetched with sharding off (capped at 50,000) and on (complete).

In-process, against the emulator with no latency (requests and rows do not depend on it), on
a fresh DuckDB file: what a capped day costs in requests, and what it buys in rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gsc_pipeline.constants import GOOGLE_QPM_QUOTA
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.reports import DAILY_ROW_CAP, PAGE_QUERY
from gsc_pipeline.sync import sync_days
from gsc_pipeline.tools.bench.scenario import FINAL_LAG_DAYS, TODAY
from gsc_pipeline.warehouse import open_warehouse

BIG = "sc-domain:big.example"
BIG_ROWS = 150_000
BIG_PAGES = 20_000


@dataclass(frozen=True)
class ShardCost:
    """Per mode (off / auto): requests and stored rows over `days` capped days."""

    days: int
    rows_per_day: int
    requests: dict[str, int]
    rows: dict[str, int]
    shards: int
    capped_shards: int
    seconds: dict[str, float]

    def markdown(self) -> list[str]:
        off, on = self.requests["off"], self.requests["auto"]
        return [
            f"## Quota cost of sharding past the {DAILY_ROW_CAP:,}-row cap",
            "",
            f"One property with ~{self.rows_per_day:,} page x query rows a day, {self.days} "
            "day(s) of page_query, sharding off (`shard: off`) and on (`auto`: device, "
            "country, then page prefixes):",
            "",
            "| | requests | per day | rows stored | per day | quota minutes a day* | seconds |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| shard: {mode} | {self.requests[mode]:,} | "
                f"{self.requests[mode] / self.days:.1f} | {self.rows[mode]:,} | "
                f"{self.rows[mode] / self.days:,.0f} | "
                f"{self.requests[mode] / self.days / GOOGLE_QPM_QUOTA:.3f} | {self.seconds[mode]} |"
                for mode in ("off", "auto")
            ),
            "",
            f"Sharding cost {on - off:,} extra requests ({on / off:.1f}x) for "
            f"{self.rows['auto'] - self.rows['off']:,} more rows; {self.shards} shards stored, "
            f"{self.capped_shards} still capped. *Share of one minute of Google's "
            f"{GOOGLE_QPM_QUOTA:,} queries/min per-site quota.",
            "",
        ]


def shard_cost(days: int = 3) -> ShardCost:
    """Fetch `days` capped days with sharding off and on; requests counted by the client."""
    last = TODAY - dt.timedelta(days=FINAL_LAG_DAYS + 2)
    day_list = [last - dt.timedelta(days=i) for i in reversed(range(days))]
    config = {
        "today": TODAY.isoformat(),
        "properties": [{"site_url": BIG, "page_query_rows_per_day": BIG_ROWS,
                        "pages": BIG_PAGES, "search_types": ["web"]}],
        "latency": {"base_ms": 0, "per_row_us": 0, "jitter_sigma": 0},
    }  # fmt: skip
    requests: dict[str, int] = {}
    rows: dict[str, int] = {}
    seconds: dict[str, float] = {}
    shards = capped = 0
    with running_emulator(config) as gsc, tempfile.TemporaryDirectory() as tmp:
        for mode, levels in (("off", ()), ("auto", PAGE_QUERY.shard)):
            report = dataclasses.replace(PAGE_QUERY, shard=levels)
            warehouse = open_warehouse(str(Path(tmp) / f"{mode}.duckdb"))
            client = GscClient(gsc.base_url, qpm_budget=1e6, timeout=60)
            started = time.perf_counter()
            results = sync_days(client, warehouse, BIG, report, day_list, run_id=mode)
            seconds[mode] = round(time.perf_counter() - started, 1)
            # +1: the finality probe `sync_days` sends first, whatever the mode.
            requests[mode] = sum(r.api_calls for r in results) + 1
            rows[mode] = sum(r.rows for r in results)
            if mode == "auto":
                shards = sum(r.shards for r in results)
                capped = sum(r.capped_shards for r in results)
    return ShardCost(days, BIG_ROWS, requests, rows, shards, capped, seconds)
