"""The refresh loop: changed days in chunks, each read, computed and written in turn."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence

from gsc_pipeline.lifetime import compute, sql
from gsc_pipeline.lifetime.cost import RefreshStats
from gsc_pipeline.lifetime.tables import QUERY_KEY, SCHEMAS, ensure_schema
from gsc_pipeline.warehouse import Warehouse

# Days per transaction: short enough that an ingestion write waits at most a moment for DuckDB.
DAYS_PER_CHUNK = 7


def refresh(
    warehouse: Warehouse, site_urls: Sequence[str], *, days_per_chunk: int = DAYS_PER_CHUNK
) -> RefreshStats:
    """Fold every changed (site, day) into url_lifetime_stats; returns what it read and wrote."""
    started = time.perf_counter()
    ensure_schema(warehouse)
    total = RefreshStats()
    by_site: dict[str, list[dt.date]] = {}
    for site, day in sql.changed_days(warehouse, site_urls):
        by_site.setdefault(site, []).append(day)
    for site, days in by_site.items():
        for i in range(0, len(days), days_per_chunk):
            total.add(_apply_days(warehouse, site, days[i : i + days_per_chunk]))
    total.seconds = time.perf_counter() - started
    return total


def full_recompute(warehouse: Warehouse, site_urls: Sequence[str]) -> RefreshStats:
    """Forget the lifetime state of these sites and fold in their whole history again."""
    ensure_schema(warehouse)
    marks = ", ".join("?" for _ in site_urls)
    with warehouse.transaction() as conn:
        for table in SCHEMAS:
            conn.execute(f"DELETE FROM {table} WHERE site_url IN ({marks})", list(site_urls))
    return refresh(warehouse, site_urls)


def _apply_days(warehouse: Warehouse, site: str, days: Sequence[dt.date]) -> RefreshStats:
    """Replace the snapshot of `days` for `site` and apply the difference.

    Read, compute, write: the two transactions are short and the pandas work between them holds
    no lock, so fetch runs writing to the same DuckDB file get in between. A version number per
    site makes the write step notice another refresh that slipped in, and start over.
    """
    for _ in range(3):
        stats = RefreshStats(days_refreshed=len(days), changed=[(site, d) for d in days])
        with warehouse.transaction() as conn:
            chunk = sql.read_chunk(conn, site, days, stats)
        # Lifetime clicks per (page, query) for every query that changed.
        new_totals = chunk.query_delta.merge(
            chunk.totals, on=QUERY_KEY, how="left", suffixes=("", "_old")
        )
        new_totals["clicks"] = new_totals["clicks"] + new_totals["clicks_old"].fillna(0.0)
        new_totals = new_totals[[*QUERY_KEY, "clicks"]]
        page_rows, rescan = compute.new_page_stats(
            chunk.current, chunk.page_delta, new_totals, chunk.touched
        )
        with warehouse.transaction() as conn:
            if sql.write_chunk(
                warehouse, conn, site, days, chunk, new_totals, page_rows, rescan, stats
            ):
                return stats
    raise RuntimeError(f"url_lifetime_stats for {site}: other refreshes kept interleaving")
