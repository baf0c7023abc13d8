"""Hourly proofs: hours in their (Pacific) day, stored once, replaced once Google completes them.

These read DataFrames: pandas is imported by the functions, not with the module (only processes
that judge an hourly report load it; `gsc_pipeline.pandas_on_demand`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gsc_pipeline.proof.outcome import (
    CheckOutcome,
    DaySpan,
    judged,
    not_evaluated,
    problems,
)
from gsc_pipeline.reports import GOOGLE_TIMEZONE, Report
from gsc_pipeline.warehouse import LEDGER_TABLE, Warehouse, as_day

if TYPE_CHECKING:
    import pandas as pd

HOURS_OF_DAY = "hours_of_day"
INCOMPLETE_HOURS_REPLACED = "incomplete_hours_replaced"


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
    ledger["date"] = ledger["date"].map(as_day)
    ledger["complete"] = [
        int(r.unknown_pages) == 0 and as_day(r.first_incomplete) > r.date
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
    import pandas as pd

    ledger = _hourly_days(warehouse, site_url, report, days)
    where, params = DaySpan.of(days).where()
    hours = warehouse.read_sql(
        f"SELECT search_type, date, hour, COUNT(*) AS copies FROM {report.table} "
        f"WHERE site_url = ?{where} GROUP BY search_type, date, hour",
        [site_url, *params],
    )
    hours["date"] = hours["date"].map(as_day)
    complete_days = set(ledger.loc[ledger["complete"], "date"])
    hours = hours[hours["date"].isin(complete_days)]
    pacific = hours["hour"].map(lambda h: pd.Timestamp(h).tz_convert(GOOGLE_TIMEZONE).date())
    outside = hours[pacific != hours["date"]]
    hour_alone = not report.dimensions
    doubled = hours[hours["copies"] > 1] if hour_alone else hours.iloc[0:0]
    stored_hours = len(hours.drop_duplicates(["search_type", "date", "hour"]))
    expected_hours = sum(_hours_in_day(d) for d in complete_days) * len(report.search_types)
    return judged(
        HOURS_OF_DAY,
        set(outside["date"]) | set(doubled["date"]),
        checked=complete_days,
        problem=problems(
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
    import pandas as pd

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
    import pandas as pd

    ledger = _hourly_days(warehouse, site_url, report, days)
    known = warehouse.read_sql(
        f"SELECT MAX(first_incomplete_date) AS latest FROM {LEDGER_TABLE} WHERE site_url = ?",
        [site_url],
    )["latest"].iloc[0]
    latest = None if known is None or pd.isna(known) else as_day(known)
    incomplete = ledger[~ledger["complete"]]
    stale = [d for d in incomplete["date"] if latest is not None and latest > d]
    return judged(
        INCOMPLETE_HOURS_REPLACED,
        stale,
        checked=ledger["date"],
        problem="still hold incomplete hours Google now reports complete: fetch them again",
        incomplete_days=len(incomplete),
        latest_first_incomplete_date=latest.isoformat() if latest else None,
    )
