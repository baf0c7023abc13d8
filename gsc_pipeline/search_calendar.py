"""Search Console's calendar: its day is Pacific Time, "today" can be pinned for replays, and
Google keeps 16 months. Dates, the current day and the retention window all follow it."""

from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo

from gsc_pipeline.constants import GOOGLE_TIMEZONE, RETENTION_MONTHS, TODAY_ENV

PACIFIC = ZoneInfo(GOOGLE_TIMEZONE)


def pacific_today() -> dt.date:
    """Today on Search Console's clock: the Pacific date, or the one `GSC_TODAY` pins."""
    pinned = os.environ.get(TODAY_ENV, "").strip()
    if not pinned:
        return dt.datetime.now(PACIFIC).date()
    try:
        return dt.date.fromisoformat(pinned)
    except ValueError:
        raise ValueError(
            f"{TODAY_ENV}={pinned!r} is not a date; write YYYY-MM-DD (Search Console's date, "
            f"Pacific Time), or unset {TODAY_ENV} to use today's"
        ) from None


def oldest_available_day(today: dt.date) -> dt.date:
    """The oldest day Google still serves on `today` (a Pacific date): 16 months back.

    The same day of the month 16 months earlier, or that month's last day when it is shorter.
    """
    year, month = divmod(today.year * 12 + today.month - 1 - RETENTION_MONTHS, 12)
    month += 1
    for day in (today.day, 30, 29, 28):
        try:
            return dt.date(year, month, day)
        except ValueError:
            continue
    raise AssertionError("unreachable: day 28 exists in every month")
