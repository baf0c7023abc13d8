"""Ledger proofs: the fetch ledger shows every page of a day fetched, once, and under the cap.

Every query is plain SQL that runs the same on DuckDB and Postgres (`?` parameters, no
backend-specific functions), and every outcome names the exact bad days so a repair can
re-fetch exactly those. Results are read as rows, not DataFrames: a fetch run evaluates these
checks without importing pandas (`gsc_pipeline.pandas_on_demand`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from gsc_pipeline.proof.outcome import (
    NOTHING_FETCHED,
    CheckOutcome,
    DaySpan,
    judged,
    not_evaluated,
    problems,
)
from gsc_pipeline.reports import DAILY_ROW_CAP, Report
from gsc_pipeline.sync.shards import uncovered_shards
from gsc_pipeline.warehouse import LEDGER_TABLE, Warehouse, as_day

if TYPE_CHECKING:
    import pandas as pd

NO_MISSING_BATCHES = "no_missing_batches"
NO_DUPLICATE_BATCHES = "no_duplicate_batches"
TRUNCATED_DAYS = "truncated_days"


def unfetched_tables(warehouse: Warehouse, report: Report) -> list[str]:
    """The ledger and the report's table, those not created yet: before a report's first
    fetch there is nothing to judge."""
    return warehouse.missing_tables([LEDGER_TABLE, report.table])


def before_first_fetch(
    name: str, absent: Sequence[str], expected_days: Iterable[dt.date] | None = None
) -> CheckOutcome:
    """A per-report check's outcome while `absent` (`unfetched_tables`) is not empty: nothing to
    judge, except partitions Dagster believes materialized (`expected_days`), which are missing.
    Callers ask once for all their checks (each ask is a catalog query)."""
    if name == NO_MISSING_BATCHES and (lost := set(expected_days or ())):
        return judged(
            name,
            lost,
            checked=lost,
            problem=f"materialized in Dagster, but {', '.join(absent)} missing",
            missing_tables=", ".join(absent),
        )
    return not_evaluated(name, f"{', '.join(absent)} does not exist yet: {NOTHING_FETCHED}")


def no_missing_batches(
    warehouse: Warehouse,
    site_url: str,
    report: Report,
    days: Sequence[dt.date] | None = None,
    *,
    expected_days: Iterable[dt.date] | None = None,
) -> CheckOutcome:
    """Per (search type, day), the ledger's start rows run 0, L, 2L, ... and end on a short page.

    `days` limits the check to a run's range and every day in it must have ledger entries for
    every search type; `expected_days` (the partitions Dagster says are materialized) must too.
    """
    span = DaySpan.of(days)
    where, params = span.where()
    ledger = warehouse.read_rows(
        f"""
        SELECT search_type, date, shard,
               COUNT(*) AS pages,
               COUNT(DISTINCT start_row) AS distinct_starts,
               MIN(start_row) AS min_start,
               MAX(start_row) AS max_start,
               MIN(row_limit) AS min_limit,
               MAX(row_limit) AS max_limit,
               SUM(CASE WHEN MOD(start_row, row_limit) <> 0 THEN 1 ELSE 0 END) AS off_grid,
               SUM(CASE WHEN rows_returned < row_limit THEN 1 ELSE 0 END) AS short_pages,
               MAX(CASE WHEN rows_returned < row_limit THEN start_row END) AS short_start,
               SUM(CASE WHEN data_state <> 'final' THEN 1 ELSE 0 END) AS fresh_pages,
               SUM(rows_returned) AS rows_total,
               SUM(CASE WHEN data_state = 'final' AND (first_incomplete_date IS NULL
                                                       OR first_incomplete_date <= date)
                        THEN 1 ELSE 0 END) AS unproven_final_pages
        FROM {LEDGER_TABLE}
        WHERE site_url = ? AND report = ?{where}
        GROUP BY search_type, date, shard
        """,
        [site_url, report.name, *params],
    )
    bad: set[dt.date] = set()
    gaps = 0
    # An empty final day is complete only with Google's word that the day was final when it
    # was fetched (firstIncompleteDate after it): a short first page alone proves nothing.
    empty = [r for r in ledger if int(r.rows_total) == 0]
    unproven = {as_day(r.date) for r in empty if int(r.unproven_final_pages) > 0}
    bad |= unproven
    # Per request shape (the whole day, or each shard of a day over the cap) the pages run
    # 0, L, 2L, ... and end on a short page.
    for row in ledger:
        limit = int(row.max_limit)
        contiguous = (
            int(row.min_start) == 0
            and int(row.min_limit) == limit
            and int(row.off_grid) == 0
            and int(row.max_start) == (int(row.distinct_starts) - 1) * limit
        )
        ends_short = (
            int(row.short_pages) == 1
            and row.short_start is not None
            and int(row.short_start) == int(row.max_start)
        )
        if not (contiguous and ends_short):
            bad.add(as_day(row.date))
            gaps += 1
    # A sharded day's shards must cover it: every split's shards 1..n all present.
    shards: dict[tuple[str, dt.date], set[str]] = {}
    for r in ledger:
        shards.setdefault((r.search_type, as_day(r.date)), set()).add(r.shard)
    uncovered = {day for (_, day), labels in shards.items() if uncovered_shards(labels)}
    bad |= uncovered
    present = set(shards)
    wanted = set(days or ()) | set(expected_days or ())
    if days is None and expected_days is None:
        wanted = {d for _, d in present}
    unfetched = {
        (search_type, day)
        for day in wanted
        for search_type in report.search_types
        if (search_type, day) not in present
    }
    bad |= {day for _, day in unfetched}
    unproven_days = len(unproven)
    return judged(
        NO_MISSING_BATCHES,
        bad,
        checked=wanted | {d for _, d in present},
        problem=problems(
            (len(unfetched), "day x search type not fetched", "days x search types not fetched"),
            (gaps, "broken page sequence", "broken page sequences"),
            (
                unproven_days,
                "empty day Google did not call final",
                "empty days Google did not call final",
            ),
            (
                len(uncovered),
                "sharded day whose shards do not cover it",
                "sharded days whose shards do not cover them",
            ),
        ),  # fmt: skip
        broken_sequences=gaps,
        unfetched_search_type_days=len(unfetched),
        uncovered_sharded_days=len(uncovered),
        empty_unproven_days=unproven_days,
        # Days Google called final and returned no rows for: the property had no traffic.
        no_traffic_days=len({as_day(r.date) for r in empty if int(r.unproven_final_pages) == 0}),
        # Days still holding fresh (dataState=all) data: the finalization sensor replaces them.
        fresh_data_days=len({as_day(r.date) for r in ledger if int(r.fresh_pages) > 0}),
    )


def no_duplicate_batches(
    warehouse: Warehouse, site_url: str, report: Report, days: Sequence[dt.date] | None = None
) -> CheckOutcome:
    """No batch key twice in the ledger and no natural key twice in the report table."""
    where, params = DaySpan.of(days).where()
    batches = warehouse.read_rows(
        f"""
        SELECT date, SUM(copies - 1) AS extra
        FROM (SELECT date, search_type, shard, start_row, COUNT(*) AS copies
              FROM {LEDGER_TABLE}
              WHERE site_url = ? AND report = ?{where}
              GROUP BY date, search_type, shard, start_row
              HAVING COUNT(*) > 1) dup
        GROUP BY date
        """,
        [site_url, report.name, *params],
    )
    rows = _duplicate_rows(warehouse, site_url, report, where, params)
    checked = warehouse.read_rows(
        f"SELECT DISTINCT date FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ?{where}",
        [site_url, report.name, *params],
    )
    bad = [as_day(r.date) for r in (*batches, *rows)]
    duplicate_batches = sum(int(r.extra) for r in batches)
    duplicate_rows = sum(int(r.extra) for r in rows)
    return judged(
        NO_DUPLICATE_BATCHES,
        bad,
        checked=[r.date for r in checked],
        problem=problems(
            (duplicate_batches, "page fetched twice", "pages fetched twice"),
            (duplicate_rows, "row stored twice", "rows stored twice"),
        ),
        duplicate_batches=duplicate_batches,
        duplicate_rows=duplicate_rows,
    )


def _duplicate_rows(
    warehouse: Warehouse, site_url: str, report: Report, where: str, params: list[object]
) -> list[Any]:
    """Per day with a natural key stored twice, the extra rows (rows of `date`, `extra`).

    First a screen counts each day's distinct 64-bit hashes of the rest of their key; only the
    days where two rows share a hash are grouped by the key itself, which is exact. On
    PostgreSQL, grouping a 30-day step of the standard bench's large property (1.7 M rows) by
    its text key sorted them on disk: 4.2-6.0 s against 1.7-1.9 s with the screen (issue 14
    stop 24). The screen counts per day (the days come in order from the (site_url, date)
    index, each day's hashes sorted on their own) instead of grouping every (day, hash) pair
    in one hash table: the whole proof of 1.8 M rows took 2.14-2.30 s of PostgreSQL's CPU
    before, 0.72-0.73 after (scripts/measure_pg_proof_query.py; docs/bench/README.md, issue 14
    stop 31).
    """
    rest = [c for c in report.key_columns if c not in ("site_url", "date")]
    suspects = warehouse.read_rows(
        f"""
        SELECT date
        FROM {report.table}
        WHERE site_url = ?{where}
        GROUP BY date
        HAVING COUNT(*) <> COUNT(DISTINCT {warehouse.row_hash_sql(rest)})
        """,
        [site_url, *params],
    )
    days = [as_day(r.date) for r in suspects]
    if not days:
        return []
    keys = ", ".join(report.key_columns)
    return warehouse.read_rows(
        f"""
        SELECT date, SUM(copies - 1) AS extra
        FROM (SELECT {keys}, COUNT(*) AS copies
              FROM {report.table}
              WHERE site_url = ? AND date IN ({", ".join("?" for _ in days)})
              GROUP BY {keys}
              HAVING COUNT(*) > 1) dup
        GROUP BY date
        """,
        [site_url, *days],
    )


def truncated_days(
    warehouse: Warehouse, site_url: str, report: Report, days: Sequence[dt.date] | None = None
) -> CheckOutcome:
    """Days with a request that hit Google's 50,000-row cap: rows beyond it are lost.

    The cap is per request shape: a day split into shards none of which is capped is complete
    (passes); a shard still capped (the shard budget ran out) fails its day.
    """
    where, params = DaySpan.of(days).where()
    per_shard = warehouse.read_rows(
        f"""
        SELECT search_type, date, shard, SUM(rows_returned) AS rows_fetched
        FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ?{where}
        GROUP BY search_type, date, shard
        """,
        [site_url, report.name, *params],
    )
    capped = [r for r in per_shard if int(r.rows_fetched) >= DAILY_ROW_CAP]
    return judged(
        TRUNCATED_DAYS,
        (as_day(r.date) for r in capped),
        checked=[r.date for r in per_shard],
        problem=f"hit Google's {DAILY_ROW_CAP:,} rows/day cap (rows beyond it are not served)",
        truncated_search_type_days=len({(r.search_type, as_day(r.date)) for r in capped}),
        capped_shards=len(capped),
        sharded_days=len({as_day(r.date) for r in per_shard if r.shard != ""}),
        daily_row_cap=DAILY_ROW_CAP,
        max_rows_per_day=max((int(r.rows_fetched) for r in per_shard), default=0),
    )


def fresh_partitions(warehouse: Warehouse) -> pd.DataFrame:
    """Partitions stored from incomplete (dataState=all) data, and whether GSC now calls them final.

    A partition fetched with dataState=all is incomplete when the response's firstIncompleteDate
    was on or before its day. It is ready to re-fetch as final once a later response for the same
    site reports a firstIncompleteDate after that day. Columns: site_url, report, date,
    fetched_at, ready.
    """
    import pandas as pd

    if warehouse.missing_tables([LEDGER_TABLE]):
        # A new warehouse: nothing fetched, so nothing fresh (a sensor tick must not fail on it).
        return pd.DataFrame(
            {"site_url": [], "report": [], "date": [], "fetched_at": [], "ready": []}
        ).astype({"ready": bool})
    frame = warehouse.read_sql(
        f"""
        WITH parts AS (
            SELECT site_url, report, date, MAX(fetched_at) AS fetched_at,
                   SUM(CASE WHEN data_state <> 'final' THEN 1 ELSE 0 END) AS fresh_pages,
                   MIN(first_incomplete_date) AS first_incomplete
            FROM {LEDGER_TABLE}
            GROUP BY site_url, report, date
        ), known AS (
            SELECT site_url, MAX(first_incomplete_date) AS latest_incomplete
            FROM {LEDGER_TABLE}
            GROUP BY site_url
        )
        SELECT p.site_url, p.report, p.date, p.fetched_at,
               CASE WHEN p.date < k.latest_incomplete THEN 1 ELSE 0 END AS ready
        FROM parts p JOIN known k ON p.site_url = k.site_url
        WHERE p.fresh_pages > 0 AND p.first_incomplete IS NOT NULL
          AND p.date >= p.first_incomplete
        ORDER BY p.site_url, p.report, p.date
        """
    )
    frame["date"] = frame["date"].map(as_day)
    frame["ready"] = frame["ready"].astype(bool)
    return frame
