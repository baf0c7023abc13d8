"""Row proofs: the stored rows hold exactly what the ledger recorded fetching.

Also `report_checks`, the four per-report checks (ledger and rows) together, as each in-run
evaluation and the whole-history one run them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence

from gsc_pipeline.proof.ledger import (
    NO_DUPLICATE_BATCHES,
    NO_MISSING_BATCHES,
    TRUNCATED_DAYS,
    before_first_fetch,
    no_duplicate_batches,
    no_missing_batches,
    truncated_days,
    unfetched_tables,
)
from gsc_pipeline.proof.outcome import CheckOutcome, DaySpan, as_day, judged, problems
from gsc_pipeline.reports import Report
from gsc_pipeline.warehouse import LEDGER_TABLE, Warehouse

ROWS_MATCH_LEDGER = "rows_match_ledger"


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def rows_match_ledger(
    warehouse: Warehouse, site_url: str, report: Report, days: Sequence[dt.date] | None = None
) -> CheckOutcome:
    """Per day, the table's row count and click/impression sums equal what the ledger recorded.

    A search-type day fetched as shards is stored merged to the report's grain: its rows are
    the `merged_rows` the ledger recorded, its clicks and impressions the shards' sums.
    """
    where, params = DaySpan.of(days).where()
    table = warehouse.read_sql(
        f"""
        SELECT date, COUNT(*) AS rows_stored, SUM(clicks) AS clicks, SUM(impressions) AS impressions
        FROM {report.table} WHERE site_url = ?{where} GROUP BY date
        """,
        [site_url, *params],
    )
    ledger = warehouse.read_sql(
        f"""
        SELECT date, SUM(rows_fetched) AS rows_fetched, SUM(clicks) AS clicks,
               SUM(impressions) AS impressions
        FROM (SELECT date, search_type,
                     COALESCE(MAX(merged_rows), SUM(rows_returned)) AS rows_fetched,
                     SUM(clicks) AS clicks, SUM(impressions) AS impressions
              FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ?{where}
              GROUP BY date, search_type) per_type
        GROUP BY date
        """,
        [site_url, report.name, *params],
    )
    table["date"] = table["date"].map(as_day)
    ledger["date"] = ledger["date"].map(as_day)
    both = table.merge(ledger, on="date", how="outer", suffixes=("_table", "_ledger")).fillna(0)
    bad = [
        r.date
        for r in both.itertuples(index=False)
        if int(r.rows_stored) != int(r.rows_fetched)
        or not _close(float(r.clicks_table), float(r.clicks_ledger))
        or not _close(float(r.impressions_table), float(r.impressions_ledger))
    ]
    bad_rows = both[both["date"].isin(bad)]
    missing = int((bad_rows["rows_fetched"] - bad_rows["rows_stored"]).clip(lower=0).sum())
    extra = int((bad_rows["rows_stored"] - bad_rows["rows_fetched"]).clip(lower=0).sum())
    return judged(
        ROWS_MATCH_LEDGER,
        bad,
        checked=both["date"],
        problem=problems(
            (missing, "row missing", "rows missing"),
            (extra, "row more than fetched", "rows more than fetched"),
        )
        or "clicks or impressions differ from the ledger",
        rows_stored=int(both["rows_stored"].sum()),
        rows_fetched=int(both["rows_fetched"].sum()),
        row_difference=int((both["rows_stored"] - both["rows_fetched"]).abs().sum()),
    )


def report_checks(
    warehouse: Warehouse,
    site_url: str,
    report: Report,
    days: Sequence[dt.date] | None = None,
    *,
    expected_days: Iterable[dt.date] | None = None,
) -> list[CheckOutcome]:
    """The four per-report checks, over a run's days or (days=None) the whole history.

    Before a report's first fetch its table (or the ledger) does not exist: nothing to judge,
    except partitions Dagster believes materialized (`expected_days`), which are missing.
    """
    if absent := unfetched_tables(warehouse, report):
        names = (NO_MISSING_BATCHES, NO_DUPLICATE_BATCHES, ROWS_MATCH_LEDGER, TRUNCATED_DAYS)
        return [before_first_fetch(name, absent, expected_days) for name in names]
    return [
        no_missing_batches(warehouse, site_url, report, days, expected_days=expected_days),
        no_duplicate_batches(warehouse, site_url, report, days),
        rows_match_ledger(warehouse, site_url, report, days),
        truncated_days(warehouse, site_url, report, days),
    ]
