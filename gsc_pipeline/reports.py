"""The reports gsc_pipeline fetches, declared once as data.

Assets, warehouse tables and checks are all generated from `REPORTS`. A combination Google
would reject (dimension x search type x aggregation) is refused here, when the table is loaded,
rather than by the API in the middle of a backfill.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DIMENSIONS = ("date", "hour", "query", "page", "country", "device", "searchAppearance")
SEARCH_TYPES = ("web", "image", "video", "news", "discover", "googleNews")
AGGREGATION_TYPES = ("auto", "byPage", "byProperty")
MAX_ROW_LIMIT = 25_000
# Google returns at most this many rows per day per search type (top rows by clicks).
DAILY_ROW_CAP = 50_000
# Search Console's day is Pacific Time: dates, "today" and the retention window follow it.
GOOGLE_TIMEZONE = "America/Los_Angeles"
# Google keeps 16 months of Search Analytics data; older days come back empty (or 400).
RETENTION_MONTHS = 16


def pacific_today() -> dt.date:
    """Today on Search Console's clock."""
    return dt.datetime.now(ZoneInfo(GOOGLE_TIMEZONE)).date()


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


class ReportDefinitionError(ValueError):
    """A report declaration that Google's API would reject."""


@dataclass(frozen=True)
class Report:
    """One GSC report: a set of dimensions fetched per day, site and search type.

    `dimensions` never includes "date": every report is fetched one day at a time and grouped by
    date, so the date is always the first key Google returns and the partition column here.
    """

    name: str
    dimensions: tuple[str, ...]
    aggregation_type: str = "auto"
    search_types: tuple[str, ...] = ("web",)
    row_limit: int = MAX_ROW_LIMIT

    @property
    def api_dimensions(self) -> list[str]:
        """The `dimensions` field of the request: date first, so keys[0] is the date."""
        return ["date", *self.dimensions]

    @property
    def table(self) -> str:
        return f"gsc_{self.name}"

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The natural key of one row in the report's table."""
        return ("site_url", "search_type", "date", *self.dimensions)

    def validate(self) -> None:
        where = f"report {self.name!r}"
        if not self.name.isidentifier():
            raise ReportDefinitionError(f"{where}: name must be a lowercase identifier")
        unknown = [d for d in self.dimensions if d not in DIMENSIONS]
        if unknown:
            raise ReportDefinitionError(
                f"{where}: unknown dimension(s) {unknown}; choose from {list(DIMENSIONS)}"
            )
        if "date" in self.dimensions:
            raise ReportDefinitionError(
                f"{where}: leave 'date' out of dimensions; every report is grouped by date"
            )
        if "hour" in self.dimensions:
            raise ReportDefinitionError(
                f"{where}: Google cannot group by both date and hour; hourly reports are not "
                "supported by the daily partitions"
            )
        if len(set(self.dimensions)) != len(self.dimensions):
            raise ReportDefinitionError(f"{where}: Duplicate dimensions are not allowed.")
        if "searchAppearance" in self.dimensions:
            raise ReportDefinitionError(
                f"{where}: Google cannot group by searchAppearance together with another "
                "dimension (and every report here is grouped by date)"
            )
        if self.aggregation_type not in AGGREGATION_TYPES:
            raise ReportDefinitionError(
                f"{where}: aggregation_type {self.aggregation_type!r} is not one of "
                f"{list(AGGREGATION_TYPES)}"
            )
        if not 1 <= self.row_limit <= MAX_ROW_LIMIT:
            raise ReportDefinitionError(f"{where}: row_limit must be within 1..{MAX_ROW_LIMIT}")
        if not self.search_types:
            raise ReportDefinitionError(f"{where}: give at least one search type")
        for search_type in self.search_types:
            if search_type not in SEARCH_TYPES:
                raise ReportDefinitionError(
                    f"{where}: unknown search type {search_type!r}; choose from "
                    f"{list(SEARCH_TYPES)}"
                )
            news_like = search_type in ("discover", "googleNews")
            if news_like and "query" in self.dimensions:
                raise ReportDefinitionError(
                    f"{where}: Google rejects {search_type} grouped by query; drop 'query' or "
                    "the search type"
                )
            if search_type == "discover" and "device" in self.dimensions:
                raise ReportDefinitionError(f"{where}: Google rejects discover grouped by device")
            if self.aggregation_type == "byProperty" and ("page" in self.dimensions or news_like):
                raise ReportDefinitionError(
                    f"{where}: 'BY_PROPERTY' is not a valid aggregation type with page grouping "
                    f"or {search_type}; use 'auto' or 'byPage'"
                )


PAGE_QUERY = Report("page_query", ("page", "query"))
PAGE = Report("page", ("page",), aggregation_type="byPage")
SITE = Report("site", (), aggregation_type="byProperty")
PAGE_QUERY_COUNTRY_DEVICE = Report(
    "page_query_country_device", ("page", "query", "country", "device")
)

# Reports fetched when a property's config does not name its own.
DEFAULT_REPORTS: tuple[Report, ...] = (PAGE_QUERY, PAGE, SITE)
# Every report a property may name in its config.
REPORTS: dict[str, Report] = {
    r.name: r for r in (PAGE_QUERY, PAGE, SITE, PAGE_QUERY_COUNTRY_DEVICE)
}
for _report in REPORTS.values():
    _report.validate()
