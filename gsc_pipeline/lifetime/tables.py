"""The lifetime state tables: names, Arrow schemas, creating them."""

from __future__ import annotations

import pyarrow as pa

from gsc_pipeline.reports import PAGE, PAGE_QUERY
from gsc_pipeline.warehouse import Connection, Warehouse

STATS_TABLE = "url_lifetime_stats"
APPLIED_TABLE = "lifetime_applied"
PAGE_DAY_TABLE = "lifetime_page_day"
QUERY_DAY_TABLE = "lifetime_query_day"
QUERY_TOTAL_TABLE = "lifetime_page_query"
SOURCE_REPORTS = (PAGE.name, PAGE_QUERY.name)

SCHEMAS: dict[str, pa.Schema] = {
    APPLIED_TABLE: pa.schema(
        [("site_url", pa.string()), ("report", pa.string()), ("date", pa.date32()),
         ("fingerprint", pa.string())]
    ),
    PAGE_DAY_TABLE: pa.schema(
        [("site_url", pa.string()), ("search_type", pa.string()), ("page", pa.string()),
         ("date", pa.date32()),
         ("clicks", pa.float64()), ("impressions", pa.float64()),
         ("position_impressions", pa.float64())]
    ),
    QUERY_DAY_TABLE: pa.schema(
        [("site_url", pa.string()), ("search_type", pa.string()), ("page", pa.string()),
         ("query", pa.string()), ("date", pa.date32()), ("clicks", pa.float64())]
    ),
    QUERY_TOTAL_TABLE: pa.schema(
        [("site_url", pa.string()), ("search_type", pa.string()), ("page", pa.string()),
         ("query", pa.string()), ("clicks", pa.float64())]
    ),
    STATS_TABLE: pa.schema(
        [("site_url", pa.string()), ("search_type", pa.string()), ("page", pa.string()),
         ("first_date", pa.date32()),
         ("last_date", pa.date32()), ("clicks", pa.float64()), ("impressions", pa.float64()),
         ("ctr", pa.float64()), ("avg_position", pa.float64()), ("active_days", pa.int32()),
         ("top_query", pa.string()), ("top_query_clicks", pa.float64()),
         ("position_impressions", pa.float64())]
    ),
}  # fmt: skip
STATS_COLUMNS = [
    "site_url", "search_type", "page", "first_date", "last_date", "clicks", "impressions", "ctr",
    "avg_position", "active_days", "top_query", "top_query_clicks",
]  # fmt: skip

# A per-site version that refreshes kept while they read and wrote in separate transactions.
_RETIRED_TABLES = ("lifetime_site_version",)


def ensure_schema(warehouse: Warehouse) -> None:
    with warehouse.transaction() as conn:
        if not _has_search_type(conn):
            # Written before search types were a column: derived state, rebuilt from scratch.
            for table in SCHEMAS:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        for table, schema in SCHEMAS.items():
            conn.execute(warehouse.create_table_sql(table, schema))
        # Each chunk reads and then replaces its (site, day)s' snapshots: without these indexes
        # Postgres scans the whole rollup tables, every property's history, for every chunk.
        for table in (PAGE_DAY_TABLE, QUERY_DAY_TABLE, APPLIED_TABLE):
            warehouse.index(conn, table, ("site_url", "date"))
        for table in _RETIRED_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def _has_search_type(conn: Connection) -> bool:
    """False only when url_lifetime_stats exists without its search_type column."""
    columns = conn.read_sql(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = current_schema()",
        [STATS_TABLE],
    )["column_name"]
    return columns.empty or "search_type" in set(columns)
