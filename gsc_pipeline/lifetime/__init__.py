"""`url_lifetime_stats`, maintained incrementally from the days that changed.

Per (property, search type, page): first and last day seen, clicks, impressions, ctr,
impression-weighted average position, active days (from the `page` report, which still counts
anonymized queries), and the top query by lifetime clicks (from `page_query`; ties go to the
query first in code-point order, as Python sorts text; a page without any clicked query has none).

The fetch ledger is the change log: each (site, report, day) has a fingerprint (run id, last
fetch time, page count) and `lifetime_applied` remembers the fingerprint folded in. A refresh
takes only the days whose fingerprint moved, reads their new rows and the snapshot of what was
applied for them before, and applies the difference: sums and active days by delta, the top
query from the old top plus the queries that changed, first/last day by min/max. Only when a
revision removes a page's first/last day or lowers its top query does that page get rescanned,
from the compact per-day rollups, never from the report tables. So a refresh after a few
changed days reads and writes in proportion to those days.

Each chunk of days (30) is one short transaction of set-based SQL: the days' new rollups, the
deltas against their old snapshot and the new stats are temporary tables the statements join,
so no report row passes through Python. On DuckDB the file's write lock is free between chunks,
so fetch runs get their turn; on Postgres ingestion never waits on a refresh (an advisory lock
serialises refreshes among themselves, and each reads the state after taking it, so a refresh
that ran meanwhile is seen, not undone).

Every search type the property's `page` and `page_query` reports fetch is covered (a column);
tables written before that column existed are derived state and are rebuilt from the report
tables on the next refresh.

`scripts/measure_lifetime.py` prints the incremental-vs-full cost at a chosen size.

The package by role: `tables` (the state tables and their schemas), `sql` (every read, delta
and write, through the warehouse's own SQL types, locks and text order), `incremental` (refresh
and full_recompute: the loop over chunks of changed days), `cost` (what a refresh touched).
"""

from gsc_pipeline.lifetime.cost import RefreshStats
from gsc_pipeline.lifetime.incremental import full_recompute, refresh
from gsc_pipeline.lifetime.sql import changed_days
from gsc_pipeline.lifetime.tables import (
    APPLIED_TABLE,
    PAGE_DAY_TABLE,
    QUERY_DAY_TABLE,
    QUERY_TOTAL_TABLE,
    SOURCE_REPORTS,
    STATS_COLUMNS,
    STATS_TABLE,
    ensure_schema,
)

__all__ = [
    "APPLIED_TABLE",
    "PAGE_DAY_TABLE",
    "QUERY_DAY_TABLE",
    "QUERY_TOTAL_TABLE",
    "SOURCE_REPORTS",
    "STATS_COLUMNS",
    "STATS_TABLE",
    "RefreshStats",
    "changed_days",
    "ensure_schema",
    "full_recompute",
    "refresh",
]
