"""The refresh loop: changed days in chunks, each folded in by one transaction in turn."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gsc_pipeline.lifetime import sql
from gsc_pipeline.lifetime.cost import RefreshStats
from gsc_pipeline.lifetime.tables import SCHEMAS, ensure_schema
from gsc_pipeline.warehouse import Warehouse

# (site, day)s per transaction, of any sites: short enough that an ingestion write waits at most
# a moment for DuckDB. Each chunk costs ~25 statements whatever its size: 7 days of one site
# spent two thirds of a first build in them.
DAYS_PER_CHUNK = 30


def refresh(
    warehouse: Warehouse, site_urls: Sequence[str], *, days_per_chunk: int = DAYS_PER_CHUNK
) -> RefreshStats:
    """Fold every changed (site, day) into url_lifetime_stats; returns what it read and wrote."""
    started = time.perf_counter()
    ensure_schema(warehouse)
    total = RefreshStats()
    changed = sql.changed_days(warehouse, site_urls)
    for i in range(0, len(changed), days_per_chunk):
        with warehouse.transaction() as conn:
            total.add(sql.apply_chunk(warehouse, conn, changed[i : i + days_per_chunk]))
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
