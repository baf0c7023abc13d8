"""The quota cost of sharding: a property three times over Google's 50,000-row cap, its
page_query days fetched with sharding off (capped at 50,000) and on (complete), each day
starting with its whole-day request (`shard_start: whole`) or at the splits its neighbours
needed (`learned`, the default), with the request cost the planner put in the step's log first.

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
# The modes compared: (`shard`, `shard_start`) by name, and their label in the table.
MODES = {"off": "shard: off", "whole": "shard: auto, shard_start: whole",
         "learned": "shard: auto, shard_start: learned",
         "ledger": "learned, the next step (these days in the ledger)"}  # fmt: skip


@dataclass(frozen=True)
class ShardCost:
    """Per mode (off / whole / learned): requests, served and stored rows over `days` capped
    days, and the requests the planner announced before fetching."""

    days: int
    rows_per_day: int
    requests: dict[str, int]
    rows: dict[str, int]
    shards: int
    capped_shards: int
    seconds: dict[str, float]
    served: dict[str, int]
    planned: dict[str, str]
    planned_requests: dict[str, int]

    def markdown(self) -> list[str]:
        off, on, learned, ledger = (self.requests[m] for m in MODES)
        return [
            f"## Quota cost of sharding past the {DAILY_ROW_CAP:,}-row cap",
            "",
            f"One property with ~{self.rows_per_day:,} page x query rows a day, {self.days} "
            "day(s) of page_query in one step, sharding off (`shard: off`) and on (`auto`: "
            "device, country, then page prefixes), each day starting with its whole-day request "
            "(`shard_start: whole`) or at the splits its neighbours needed (`learned`, the "
            "default: the step's first day scouts, the others start at its splits):",
            "",
            "| | requests | per day | rows served | rows stored | per day | quota minutes a day*"
            " | seconds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {label} | {self.requests[mode]:,} | "
                f"{self.requests[mode] / self.days:.1f} | {self.served[mode]:,} | "
                f"{self.rows[mode]:,} | {self.rows[mode] / self.days:,.0f} | "
                f"{self.requests[mode] / self.days / GOOGLE_QPM_QUOTA:.3f} | {self.seconds[mode]} |"
                for mode, label in MODES.items()
            ),
            "",
            f"Sharding cost {on - off:,} extra requests ({on / off:.1f}x) for "
            f"{self.rows['whole'] - self.rows['off']:,} more rows when every day starts whole; "
            f"starting at the learned splits it costs {learned - off:,} ({learned / off:.1f}x): "
            f"{on - learned:,} requests and {self.served['whole'] - self.served['learned']:,} "
            f"served rows fewer for the same rows; a step whose days' neighbours are in the "
            f"ledger (every daily run after the first backfill) sends {on - ledger:,} requests "
            f"({(on - ledger) / on:.0%}) and {self.served['whole'] - self.served['ledger']:,} "
            f"served rows fewer than whole. {self.shards} shards stored, "
            f"{self.capped_shards} still capped. *Share of one minute of Google's "
            f"{GOOGLE_QPM_QUOTA:,} queries/min per-site quota. Before fetching, the next "
            f"step's log said: \"{self.planned['ledger']}\"; it sent {ledger - 1:,} "
            f"(+1 probe) against {self.planned_requests['ledger']:,} planned.",
            "",
        ]


def shard_cost(days: int = 6) -> ShardCost:
    """Fetch `days` capped days per mode, each in one step; requests and served rows counted
    by the client."""
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
    served: dict[str, int] = {}
    planned: dict[str, str] = {}
    planned_requests: dict[str, int] = {}
    shards = capped = 0
    with running_emulator(config) as gsc, tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            report = dataclasses.replace(
                PAGE_QUERY,
                shard=() if mode == "off" else PAGE_QUERY.shard,
                shard_start="whole" if mode == "whole" else "learned",
            )
            # The next step fetches the same days again into the learned step's warehouse.
            stem = "learned" if mode == "ledger" else mode
            warehouse = open_warehouse(str(Path(tmp) / f"{stem}.duckdb"))
            client = GscClient(gsc.base_url, qpm_budget=1e6, timeout=60)
            gsc.reset_stats()
            started = time.perf_counter()
            results = sync_days(client, warehouse, BIG, report, day_list, run_id=mode,
                                on_plan=lambda line, mode=mode: planned.setdefault(mode, line))
            seconds[mode] = round(time.perf_counter() - started, 1)
            # +1: the finality probe `sync_days` sends first, whatever the mode.
            requests[mode] = sum(r.api_calls for r in results) + 1
            rows[mode] = sum(r.rows for r in results)
            planned_requests[mode] = sum(r.planned_requests or 0 for r in results)
            served[mode] = int(gsc.stats()["rows_served"])
            if mode == "ledger":
                shards = sum(r.shards for r in results)
                capped = sum(r.capped_shards for r in results)
    return ShardCost(days, BIG_ROWS, requests, rows, shards, capped, seconds, served, planned,
                     planned_requests)  # fmt: skip
