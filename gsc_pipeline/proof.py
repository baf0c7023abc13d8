"""Check queries that prove a sync complete and exact, from the fetch ledger and report tables.

No Dagster here: `defs/checks.py` turns each `CheckOutcome` into an asset check result, and tests
call these functions on crafted warehouses. Every query is plain SQL that runs the same on DuckDB
and Postgres (`?` parameters, no backend-specific functions), and every outcome names the exact
bad partitions (days) so a repair can re-fetch exactly those.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gsc_pipeline.reports import DAILY_ROW_CAP, GOOGLE_TIMEZONE, SITE, Report
from gsc_pipeline.sync.shards import uncovered_shards
from gsc_pipeline.warehouse import LEDGER_TABLE, Warehouse

NO_MISSING_BATCHES = "no_missing_batches"
NO_DUPLICATE_BATCHES = "no_duplicate_batches"
ROWS_MATCH_LEDGER = "rows_match_ledger"
TRUNCATED_DAYS = "truncated_days"
ANONYMIZED_SHARE = "anonymized_share"
# Hourly reports only.
HOURS_OF_DAY = "hours_of_day"
INCOMPLETE_HOURS_REPLACED = "incomplete_hours_replaced"
# Checks whose failure means the partition's data is wrong (and worth re-fetching); the others
# describe Google's data (cap, anonymization) and only warn.
BLOCKING_CHECKS = (NO_MISSING_BATCHES, NO_DUPLICATE_BATCHES, ROWS_MATCH_LEDGER)
# Hourly reports' checks: a failure is also fixed by re-fetching the day.
HOURLY_CHECKS = (HOURS_OF_DAY, INCOMPLETE_HOURS_REPLACED)

# Ahrefs measured ~46% of clicks hidden on average across 146k sites; above half is unusual
# enough that a user should look (brand-poor long-tail sites can legitimately exceed it).
ANONYMIZED_SHARE_WARN = 0.5
# Why a check measured nothing: it says so (Dagster shows it skipped), it never passes.
NOTHING_FETCHED = "nothing fetched for these days yet"


@dataclass(frozen=True)
class CheckOutcome:
    """One check over a set of days: passed, the bad days, and what was measured.

    `evaluated` is False when the check had nothing to measure (no table yet, no fetched day in
    its range, no site totals to compare with): such an outcome is neither passed nor failed,
    and `metadata["not_evaluated"]` says why.
    """

    name: str
    passed: bool
    bad_days: tuple[dt.date, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    evaluated: bool = True
    # The days measured (a day neither here nor bad was not judged), and what is wrong with
    # the bad ones ("199 rows missing"): per-day results and the sentence a user reads first.
    checked_days: tuple[dt.date, ...] = ()
    problem: str = ""

    @property
    def bad_partitions(self) -> list[str]:
        return [d.isoformat() for d in self.bad_days]

    def summary(self) -> str:
        """The line a user reads first (of an evaluated outcome): "1 day: 199 rows missing
        (2026-11-01..2026-11-30 (30 days) checked)", or "passed: ... checked"."""
        checked = f"{_span_text(self.checked_days)} checked"
        if self.passed:
            return f"passed: {checked}"
        count = len(self.bad_days)
        return f"{count} day{'s' if count > 1 else ''}: {self.problem} ({checked})"


def _span_text(days: Sequence[dt.date]) -> str:
    """"2026-11-14 (1 day)", "2026-11-01..2026-11-30 (30 days)"."""
    if not days:
        return "no day"
    first, last = days[0].isoformat(), days[-1].isoformat()
    count = f"{len(days)} day{'s' if len(days) > 1 else ''}"
    return f"{first} ({count})" if first == last else f"{first}..{last} ({count})"


def not_evaluated(name: str, reason: str) -> CheckOutcome:
    return CheckOutcome(name, passed=False, metadata={"not_evaluated": reason}, evaluated=False)


@dataclass(frozen=True)
class DaySpan:
    """The days a check covers: a run's range, or None for the whole history."""

    first: dt.date | None = None
    last: dt.date | None = None

    @classmethod
    def of(cls, days: Iterable[dt.date] | None) -> DaySpan:
        days = sorted(days or ())
        return cls(days[0], days[-1]) if days else cls()

    def where(self, column: str = "date") -> tuple[str, list[Any]]:
        if self.first is None or self.last is None:
            return "", []
        return f" AND {column} >= ? AND {column} <= ?", [self.first, self.last]


def _day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


def _outcome(
    name: str,
    bad: Iterable[dt.date],
    checked: Iterable[Any],
    *,
    problem: str = "failed",
    unmeasured: str = NOTHING_FETCHED,
    **extra: Any,
) -> CheckOutcome:
    """The outcome over the `checked` days; none checked and none bad is `unmeasured`, not a
    pass. `problem` says what is wrong with the bad days, for the sentence a user reads first."""
    bad_days = tuple(sorted(set(bad)))
    checked_days = tuple(sorted({_day(d) for d in checked}))
    if not checked_days and not bad_days:
        return not_evaluated(name, unmeasured)
    return CheckOutcome(
        name=name,
        passed=not bad_days,
        bad_days=bad_days,
        checked_days=checked_days,
        problem=problem if bad_days else "",
        metadata={"checked_partitions": len(checked_days), **extra},
    )


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
    ledger = warehouse.read_sql(
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
    empty = ledger[ledger["rows_total"] == 0]
    unproven = empty[empty["unproven_final_pages"] > 0]
    bad |= {_day(d) for d in unproven["date"]}
    # Per request shape (the whole day, or each shard of a day over the cap) the pages run
    # 0, L, 2L, ... and end on a short page.
    for row in ledger.itertuples(index=False):
        limit = int(row.max_limit)
        contiguous = (
            int(row.min_start) == 0
            and int(row.min_limit) == limit
            and int(row.off_grid) == 0
            and int(row.max_start) == (int(row.distinct_starts) - 1) * limit
        )
        ends_short = int(row.short_pages) == 1 and not pd.isna(row.short_start) and int(
            row.short_start
        ) == int(row.max_start)
        if not (contiguous and ends_short):
            bad.add(_day(row.date))
            gaps += 1
    # A sharded day's shards must cover it: every split's shards 1..n all present.
    uncovered = {
        _day(day)
        for (_, day), shards in ledger.groupby(["search_type", "date"])["shard"]
        if uncovered_shards(set(shards))
    }
    bad |= uncovered
    present = {(r.search_type, _day(r.date)) for r in ledger.itertuples(index=False)}
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
    unproven_days = int(unproven["date"].nunique())
    return _outcome(
        NO_MISSING_BATCHES,
        bad,
        checked=wanted | {d for _, d in present},
        problem=_problems(
            (len(unfetched), "day x search type not fetched", "days x search types not fetched"),
            (gaps, "broken page sequence", "broken page sequences"),
            (unproven_days, "empty day Google did not call final",
             "empty days Google did not call final"),
            (len(uncovered), "sharded day whose shards do not cover it",
             "sharded days whose shards do not cover them"),
        ),  # fmt: skip
        broken_sequences=gaps,
        unfetched_search_type_days=len(unfetched),
        uncovered_sharded_days=len(uncovered),
        empty_unproven_days=unproven_days,
        # Days Google called final and returned no rows for: the property had no traffic.
        no_traffic_days=int(empty.loc[empty["unproven_final_pages"] == 0, "date"].nunique()),
        # Days still holding fresh (dataState=all) data: the finalization sensor replaces them.
        fresh_data_days=int(ledger.loc[ledger["fresh_pages"] > 0, "date"].nunique()),
    )


def no_duplicate_batches(
    warehouse: Warehouse, site_url: str, report: Report, days: Sequence[dt.date] | None = None
) -> CheckOutcome:
    """No batch key twice in the ledger and no natural key twice in the report table."""
    where, params = DaySpan.of(days).where()
    batches = warehouse.read_sql(
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
    keys = ", ".join(report.key_columns)
    rows = warehouse.read_sql(
        f"""
        SELECT date, SUM(copies - 1) AS extra
        FROM (SELECT {keys}, COUNT(*) AS copies
              FROM {report.table}
              WHERE site_url = ?{where}
              GROUP BY {keys}
              HAVING COUNT(*) > 1) dup
        GROUP BY date
        """,
        [site_url, *params],
    )
    checked = warehouse.read_sql(
        f"SELECT DISTINCT date FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ?{where}",
        [site_url, report.name, *params],
    )
    bad = [_day(d) for d in batches["date"]] + [_day(d) for d in rows["date"]]
    duplicate_batches = int(batches["extra"].sum()) if len(batches) else 0
    duplicate_rows = int(rows["extra"].sum()) if len(rows) else 0
    return _outcome(
        NO_DUPLICATE_BATCHES,
        bad,
        checked=checked["date"],
        problem=_problems(
            (duplicate_batches, "page fetched twice", "pages fetched twice"),
            (duplicate_rows, "row stored twice", "rows stored twice"),
        ),
        duplicate_batches=duplicate_batches,
        duplicate_rows=duplicate_rows,
    )


def _problems(*counts: tuple[int, str, str]) -> str:
    """"199 rows missing; 2 pages fetched twice": the non-zero counts, singular or plural."""
    return "; ".join(
        f"{count:,} {one if count == 1 else many}" for count, one, many in counts if count
    )


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
    table["date"] = table["date"].map(_day)
    ledger["date"] = ledger["date"].map(_day)
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
    return _outcome(
        ROWS_MATCH_LEDGER,
        bad,
        checked=both["date"],
        problem=_problems(
            (missing, "row missing", "rows missing"),
            (extra, "row more than fetched", "rows more than fetched"),
        )
        or "clicks or impressions differ from the ledger",
        rows_stored=int(both["rows_stored"].sum()),
        rows_fetched=int(both["rows_fetched"].sum()),
        row_difference=int((both["rows_stored"] - both["rows_fetched"]).abs().sum()),
    )


def truncated_days(
    warehouse: Warehouse, site_url: str, report: Report, days: Sequence[dt.date] | None = None
) -> CheckOutcome:
    """Days with a request that hit Google's 50,000-row cap: rows beyond it are lost.

    The cap is per request shape: a day split into shards none of which is capped is complete
    (passes); a shard still capped (the shard budget ran out) fails its day.
    """
    where, params = DaySpan.of(days).where()
    per_shard = warehouse.read_sql(
        f"""
        SELECT search_type, date, shard, SUM(rows_returned) AS rows_fetched
        FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ?{where}
        GROUP BY search_type, date, shard
        """,
        [site_url, report.name, *params],
    )
    capped = per_shard[per_shard["rows_fetched"] >= DAILY_ROW_CAP]
    sharded = per_shard[per_shard["shard"] != ""]
    return _outcome(
        TRUNCATED_DAYS,
        (_day(d) for d in capped["date"]),
        checked=per_shard["date"],
        problem=f"hit Google's {DAILY_ROW_CAP:,} rows/day cap (rows beyond it are not served)",
        truncated_search_type_days=len(capped.drop_duplicates(["search_type", "date"])),
        capped_shards=len(capped),
        sharded_days=sharded["date"].nunique(),
        daily_row_cap=DAILY_ROW_CAP,
        max_rows_per_day=int(per_shard["rows_fetched"].max()) if len(per_shard) else 0,
    )


def anonymized_share(
    warehouse: Warehouse,
    site_url: str,
    page_query: Report,
    days: Sequence[dt.date] | None = None,
    *,
    threshold: float = ANONYMIZED_SHARE_WARN,
) -> CheckOutcome:
    """Share of the property's clicks (web) missing from page x query rows, per day.

    Google drops rare (anonymized) queries from query-grouped rows but counts them in property
    totals; the share is 1 - sum(page x query clicks) / property clicks. Days above `threshold`
    are flagged; days missing either report are not measured (and counted as such).
    """
    tables = [SITE.table, page_query.table]
    if absent := warehouse.missing_tables(tables):
        return not_evaluated(ANONYMIZED_SHARE, f"{', '.join(absent)}: {NOTHING_FETCHED}")
    where, params = DaySpan.of(days).where()
    totals = warehouse.read_sql(
        f"""
        SELECT date, SUM(clicks) AS property_clicks, SUM(impressions) AS property_impressions
        FROM {SITE.table} WHERE site_url = ? AND search_type = 'web'{where} GROUP BY date
        """,
        [site_url, *params],
    )
    detail = warehouse.read_sql(
        f"""
        SELECT date, SUM(clicks) AS query_clicks, SUM(impressions) AS query_impressions
        FROM {page_query.table} WHERE site_url = ? AND search_type = 'web'{where} GROUP BY date
        """,
        [site_url, *params],
    )
    totals["date"] = totals["date"].map(_day)
    detail["date"] = detail["date"].map(_day)
    both = totals.merge(detail, on="date", how="inner")
    both = both[both["property_clicks"] > 0]
    share = 1.0 - both["query_clicks"] / both["property_clicks"]
    property_clicks = float(both["property_clicks"].sum())
    overall = 1.0 - float(both["query_clicks"].sum()) / property_clicks if property_clicks else 0.0
    impressions = float(both["property_impressions"].sum())
    overall_impressions = (
        1.0 - float(both["query_impressions"].sum()) / impressions if impressions else 0.0
    )
    missing = sorted(set(days or ()) - set(both["date"]))
    return _outcome(
        ANONYMIZED_SHARE,
        both.loc[share > threshold, "date"],
        checked=both["date"],
        problem=f"more than {threshold:.0%} of clicks in no page x query row",
        unmeasured=(
            f"no day has both {SITE.table} totals and {page_query.table} rows yet; "
            "evaluated once both reports hold the same days"
        ),
        # Days of the range that could not be measured (one of the two reports not stored).
        unmeasured_days=len(missing),
        anonymized_click_share=round(overall, 4),
        anonymized_impression_share=round(overall_impressions, 4),
        max_daily_click_share=round(float(share.max()), 4) if len(share) else 0.0,
        threshold=threshold,
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
    if absent := warehouse.missing_tables([LEDGER_TABLE, report.table]):
        reason = f"{', '.join(absent)} does not exist yet: {NOTHING_FETCHED}"
        names = (NO_MISSING_BATCHES, NO_DUPLICATE_BATCHES, ROWS_MATCH_LEDGER, TRUNCATED_DAYS)
        outcomes = [not_evaluated(name, reason) for name in names]
        if lost := set(expected_days or ()):
            outcomes[0] = _outcome(
                NO_MISSING_BATCHES,
                lost,
                checked=lost,
                problem=f"materialized in Dagster, but {', '.join(absent)} missing",
                missing_tables=", ".join(absent),
            )
        return outcomes
    return [
        no_missing_batches(warehouse, site_url, report, days, expected_days=expected_days),
        no_duplicate_batches(warehouse, site_url, report, days),
        rows_match_ledger(warehouse, site_url, report, days),
        truncated_days(warehouse, site_url, report, days),
    ]


def fresh_partitions(warehouse: Warehouse) -> pd.DataFrame:
    """Partitions stored from incomplete (dataState=all) data, and whether GSC now calls them final.

    A partition fetched with dataState=all is incomplete when the response's firstIncompleteDate
    was on or before its day. It is ready to re-fetch as final once a later response for the same
    site reports a firstIncompleteDate after that day. Columns: site_url, report, date,
    fetched_at, ready.
    """
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
    frame["date"] = frame["date"].map(_day)
    frame["ready"] = frame["ready"].astype(bool)
    return frame


def _hourly_days(
    warehouse: Warehouse, site_url: str, report: Report, days: Sequence[dt.date] | None
) -> pd.DataFrame:
    """Per stored day of an hourly report: rows, Google's finality evidence, the last fetch.

    `complete`: every page of the day carried a first incomplete date (hour) after the day.
    """
    where, params = DaySpan.of(days).where()
    ledger = warehouse.read_sql(
        f"""
        SELECT date, SUM(rows_returned) AS rows_fetched, MAX(fetched_at) AS fetched_at,
               MIN(first_incomplete_date) AS first_incomplete,
               SUM(CASE WHEN first_incomplete_date IS NULL THEN 1 ELSE 0 END) AS unknown_pages
        FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ?{where} GROUP BY date
        """,
        [site_url, report.name, *params],
    )
    ledger["date"] = ledger["date"].map(_day)
    ledger["complete"] = [
        int(r.unknown_pages) == 0 and _day(r.first_incomplete) > r.date
        for r in ledger.itertuples(index=False)
    ]
    return ledger


def hours_of_day(
    warehouse: Warehouse, site_url: str, report: Report, days: Sequence[dt.date] | None = None
) -> CheckOutcome:
    """Every stored hour of a complete day lies in that day (Pacific) and is stored once.

    For a report grouped by hour alone, "once" means one row per hour and search type; hours
    Google served no row for (no impressions in that hour, or a day outside its ~10-day hourly
    window) are counted in the metadata, not failed: Google omits rows without impressions.
    With more dimensions, duplicates are `no_duplicate_batches`' business.
    """
    if absent := warehouse.missing_tables([LEDGER_TABLE, report.table]):
        return not_evaluated(HOURS_OF_DAY, f"{', '.join(absent)} does not exist yet")
    ledger = _hourly_days(warehouse, site_url, report, days)
    where, params = DaySpan.of(days).where()
    hours = warehouse.read_sql(
        f"SELECT search_type, date, hour, COUNT(*) AS copies FROM {report.table} "
        f"WHERE site_url = ?{where} GROUP BY search_type, date, hour",
        [site_url, *params],
    )
    hours["date"] = hours["date"].map(_day)
    complete_days = set(ledger.loc[ledger["complete"], "date"])
    hours = hours[hours["date"].isin(complete_days)]
    pacific = hours["hour"].map(lambda h: pd.Timestamp(h).tz_convert(GOOGLE_TIMEZONE).date())
    outside = hours[pacific != hours["date"]]
    hour_alone = not report.dimensions
    doubled = hours[hours["copies"] > 1] if hour_alone else hours.iloc[0:0]
    stored_hours = len(hours.drop_duplicates(["search_type", "date", "hour"]))
    expected_hours = sum(_hours_in_day(d) for d in complete_days) * len(report.search_types)
    return _outcome(
        HOURS_OF_DAY,
        set(outside["date"]) | set(doubled["date"]),
        checked=complete_days,
        problem=_problems(
            (len(outside), "hour outside its day", "hours outside their day"),
            (len(doubled), "hour stored twice", "hours stored twice"),
        ),
        unmeasured="no complete day stored yet: Google still reports every stored day's hours "
        "as incomplete",
        hours_outside_their_day=len(outside),
        doubled_hours=len(doubled),
        hours_without_rows=expected_hours - stored_hours,
        incomplete_days=int((~ledger["complete"]).sum()),
        # Google served no hourly rows: a day outside its ~10-day hourly window (or no traffic).
        empty_days=int((ledger["rows_fetched"] == 0).sum()),
    )


def _hours_in_day(day: dt.date) -> int:
    start = pd.Timestamp(day).tz_localize(GOOGLE_TIMEZONE)
    end = pd.Timestamp(day + dt.timedelta(days=1)).tz_localize(GOOGLE_TIMEZONE)
    return int((end - start) / pd.Timedelta(hours=1))


def incomplete_hours_replaced(
    warehouse: Warehouse, site_url: str, report: Report, days: Sequence[dt.date] | None = None
) -> CheckOutcome:
    """No day still holds incomplete hours once Google reports it complete.

    A day fetched while Google's first incomplete hour fell on or before it holds partial
    hours. Once any later response for the site puts the first incomplete date after that
    day, the stored hours are out of date: the day must be fetched again (the hourly refresh
    schedule and the finalization sensor do), and this check names it until it is.
    """
    if absent := warehouse.missing_tables([LEDGER_TABLE]):
        return not_evaluated(INCOMPLETE_HOURS_REPLACED, f"{absent[0]} does not exist yet")
    ledger = _hourly_days(warehouse, site_url, report, days)
    known = warehouse.read_sql(
        f"SELECT MAX(first_incomplete_date) AS latest FROM {LEDGER_TABLE} WHERE site_url = ?",
        [site_url],
    )["latest"].iloc[0]
    latest = None if known is None or pd.isna(known) else _day(known)
    incomplete = ledger[~ledger["complete"]]
    stale = [d for d in incomplete["date"] if latest is not None and latest > d]
    return _outcome(
        INCOMPLETE_HOURS_REPLACED,
        stale,
        checked=ledger["date"],
        problem="still hold incomplete hours Google now reports complete: fetch them again",
        incomplete_days=len(incomplete),
        latest_first_incomplete_date=latest.isoformat() if latest else None,
    )
