"""The days a run committed, as the ledger records them: what a step interrupted between a
commit and its callback still wrote (plain SQL, no Dagster)."""

from __future__ import annotations

from gsc_pipeline.reports import Report
from gsc_pipeline.warehouse.base import LEDGER_TABLE, Warehouse, as_day


def committed_days(
    warehouse: Warehouse, site_url: str, report: Report, run_id: str
) -> dict[str, dict[str, object]]:
    """Day (ISO) -> what its ledger says (rows, clicks, impressions, data state), for every day
    of (site, report) whose stored version this run wrote."""
    rows = warehouse.read_rows(
        f"""
        SELECT date, SUM(rows_returned) AS rows_returned, SUM(clicks) AS clicks,
               SUM(impressions) AS impressions, MIN(data_state) AS data_state
        FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ? AND run_id = ?
        GROUP BY date
        """,
        [site_url, report.name, run_id],
    )
    return {
        as_day(row.date).isoformat(): {
            "dagster/row_count": int(row.rows_returned),
            "clicks": float(row.clicks),
            "impressions": float(row.impressions),
            "data_state": str(row.data_state),
        }
        for row in rows
    }
