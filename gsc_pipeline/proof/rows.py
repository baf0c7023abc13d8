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
from gsc_pipeline.proof.outcome import CheckOutcome, DaySpan, judged, problems
from gsc_pipeline.reports import Report
from gsc_pipeline.warehouse import LEDGER_TABLE, Warehouse, as_day

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
    table = warehouse.read_rows(
        f"""
        SELECT date, COUNT(*) AS rows_stored, SUM(clicks) AS clicks, SUM(impressions) AS impressions
        FROM {report.table} WHERE site_url = ?{where} GROUP BY date
        """,
        [site_url, *params],
    )
    ledger = warehouse.read_rows(
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
    # Per day: (rows, clicks, impressions) stored, then as the ledger recorded; a day only one
    # side has counts zero on the other.
    zero = (0, 0.0, 0.0)
    stored = {
        as_day(r.date): (int(r.rows_stored), _num(r.clicks), _num(r.impressions)) for r in table
    }
    fetched = {
        as_day(r.date): (int(r.rows_fetched), _num(r.clicks), _num(r.impressions)) for r in ledger
    }
    both = {day: (stored.get(day, zero), fetched.get(day, zero)) for day in stored | fetched}
    bad = sorted(
        day
        for day, ((rows, clicks, impressions), (rows_f, clicks_f, impressions_f)) in both.items()
        if rows != rows_f or not _close(clicks, clicks_f) or not _close(impressions, impressions_f)
    )
    missing = sum(max(both[d][1][0] - both[d][0][0], 0) for d in bad)
    extra = sum(max(both[d][0][0] - both[d][1][0], 0) for d in bad)
    rows_stored = sum(s[0] for s, _ in both.values())
    rows_fetched = sum(f[0] for _, f in both.values())
    return judged(
        ROWS_MATCH_LEDGER,
        bad,
        checked=both,
        problem=problems(
            (missing, "row missing", "rows missing"),
            (extra, "row more than fetched", "rows more than fetched"),
        )
        or "clicks or impressions differ from the ledger",
        rows_stored=rows_stored,
        rows_fetched=rows_fetched,
        row_difference=sum(abs(s[0] - f[0]) for s, f in both.values()),
    )


def _num(value: object) -> float:
    """A SUM as read: a number, or None (NULL) for a day without any."""
    return 0.0 if value is None else float(value)  # type: ignore[arg-type]


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
