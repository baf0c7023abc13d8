"""The reports gsc_pipeline fetches, declared once as data.

Built-in reports live in `REPORTS`; the config's top-level `reports:` declares more (`declare`),
with any dimensions, search types and filters. Assets, warehouse tables and checks are all
generated from these `Report`s. A combination Google would reject (dimension x search type x
aggregation x filter) is refused here, when the config loads, rather than by the API in the
middle of a backfill; the emulator enforces the same rules on the wire.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import re2

from gsc_pipeline.constants import (  # noqa: F401 - re-exported: reports are Google facts
    DAILY_ROW_CAP,
    GOOGLE_TIMEZONE,
    IDENTIFIER_PATTERN,
    MAX_ROW_LIMIT,
    RETENTION_MONTHS,
    TODAY_ENV,
)

DIMENSIONS = ("date", "hour", "query", "page", "country", "device", "searchAppearance")
SEARCH_TYPES = ("web", "image", "video", "news", "discover", "googleNews")
# Discover and Google News have no queries (and discover no device breakdown).
QUERYLESS_SEARCH_TYPES = ("discover", "googleNews")
AGGREGATION_TYPES = ("auto", "byPage", "byProperty")
FILTER_DIMENSIONS = ("country", "device", "page", "query", "searchAppearance")
FILTER_OPERATORS = ("equals", "notEquals", "contains", "notContains", "includingRegex",
                    "excludingRegex")  # fmt: skip
MAX_FILTER_EXPRESSION = 4096
# How a day over Google's daily row cap is split (`Report.shard`), in order: every filtered
# request gets its own cap. Device and country split by filter values, page by URL prefixes.
SHARD_LEVELS = ("device", "country", "page")
# Requests one day and search type may spend on shards before it is left honestly capped.
DEFAULT_SHARD_BUDGET = 60
# Where a day starts (`Report.shard_start`): at the splits its neighbours needed, or whole.
SHARD_STARTS = ("learned", "whole")
# Validation compiles users' patterns; a bad one is reported in the error, not logged by RE2.
_QUIET_RE2 = re2.Options()
_QUIET_RE2.log_errors = False

def column_name(dimension: str) -> str:
    """The warehouse column of an API dimension (snake_case)."""
    return "search_appearance" if dimension == "searchAppearance" else dimension


class ReportDefinitionError(ValueError):
    """A report declaration that Google's API would reject: which report, which key, the fix."""

    def __init__(self, report: str, key: str, problem: str) -> None:
        super().__init__(f"report {report!r}: {key}: {problem}")
        self.report = report
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Filter:
    """One dimension filter of a report; a report's filters are ANDed (Google's only group)."""

    dimension: str
    expression: str
    operator: str = "equals"

    def api(self) -> dict[str, str]:
        return {"dimension": self.dimension, "operator": self.operator,
                "expression": self.expression}  # fmt: skip


@dataclass(frozen=True)
class Report:
    """One GSC report: a set of dimensions fetched per day, site and search type.

    `dimensions` never holds the time key. `time_dimension` says how a day is asked for:
    "date" (grouped by date, keys[0] is the day), "hour" (grouped by hour with dataState
    HOURLY_ALL, keys[0] an hour of the day), or None (no time key: Google cannot group
    searchAppearance with any other dimension, so the request covers exactly one day). Every
    report is stored in daily partitions either way.
    """

    name: str
    dimensions: tuple[str, ...]
    aggregation_type: str = "auto"
    search_types: tuple[str, ...] = ("web",)
    row_limit: int = MAX_ROW_LIMIT
    filters: tuple[Filter, ...] = ()
    time_dimension: str | None = "date"
    # Levels a capped day is split by (`SHARD_LEVELS` order); () fetches it as one request.
    # Not part of `identity`: shards are merged back to the report's grain.
    shard: tuple[str, ...] = ()
    shard_budget: int = DEFAULT_SHARD_BUDGET
    # "learned": a day whose neighbours were capped starts at the splits they needed;
    # "whole": every day starts with its whole-day request (split only once it comes back capped).
    shard_start: str = "learned"

    @property
    def api_dimensions(self) -> list[str]:
        """The `dimensions` field of the request: the time key first, so keys[0] is it."""
        return (
            [self.time_dimension, *self.dimensions] if self.time_dimension else [*self.dimensions]
        )

    @property
    def hourly(self) -> bool:
        return self.time_dimension == "hour"

    def data_state(self, requested: str) -> str:
        """The request's dataState: hourly rows exist only as HOURLY_ALL (possibly partial)."""
        return "hourly_all" if self.hourly else requested

    def request_body(
        self,
        day: dt.date,
        search_type: str,
        data_state: str,
        extra_filters: tuple[Filter, ...] = (),
    ) -> dict[str, Any]:
        """The searchAnalytics.query body of one day's first page (startRow set per page);
        `extra_filters` (a shard's) are ANDed to the report's own."""
        body: dict[str, Any] = {
            "startDate": day.isoformat(),
            "endDate": day.isoformat(),
            "dimensions": self.api_dimensions,
            "type": search_type,
            "aggregationType": self.aggregation_type,
            "rowLimit": self.row_limit,
            "dataState": self.data_state(data_state),
        }
        if filters := (*self.filters, *extra_filters):
            body["dimensionFilterGroups"] = [
                {"groupType": "and", "filters": [f.api() for f in filters]}
            ]
        return body

    @property
    def table(self) -> str:
        return f"gsc_{self.name}"

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The natural key of one row in the report's table."""
        return ("site_url", "search_type", "date", *(("hour",) if self.hourly else ()),
                *map(column_name, self.dimensions))  # fmt: skip

    @property
    def identity(self) -> str:
        """What the stored rows mean: dimensions, filters and aggregation. A report whose
        identity changed under the same name would mix two meanings in one table."""
        return json.dumps(
            {"time": self.time_dimension, "dimensions": list(self.dimensions),
             "aggregation_type": self.aggregation_type,
             "filters": [f.api() for f in self.filters]},
            sort_keys=True,
        )  # fmt: skip

    def validate(self) -> None:
        """Google's rules for this request shape (the ones the emulator enforces too)."""
        if not re.fullmatch(IDENTIFIER_PATTERN, self.name):
            raise ReportDefinitionError(
                self.name,
                "name",
                "must be lowercase letters, digits and underscores (it names the table gsc_<name>)",
            )
        self._validate_dimensions()
        if self.aggregation_type not in AGGREGATION_TYPES:
            raise ReportDefinitionError(
                self.name,
                "aggregation_type",
                f"{self.aggregation_type!r} is not one of {list(AGGREGATION_TYPES)}",
            )
        if not 1 <= self.row_limit <= MAX_ROW_LIMIT:
            raise ReportDefinitionError(
                self.name, "row_limit", f"{self.row_limit} must be within 1..{MAX_ROW_LIMIT}"
            )
        for i, f in enumerate(self.filters):
            _validate_filter(self.name, f"filters[{i}]", f)
        self._validate_search_types()
        self._validate_shard()

    def _validate_shard(self) -> None:
        unknown = [level for level in self.shard if level not in SHARD_LEVELS]
        if unknown or len(set(self.shard)) != len(self.shard):
            raise ReportDefinitionError(
                self.name,
                "shard",
                f"{list(self.shard)}: list each of {list(SHARD_LEVELS)} at most once, or write "
                "auto or off",
            )
        if "page" in self.shard and self.aggregation_type == "byProperty":
            raise ReportDefinitionError(
                self.name,
                "shard",
                "page shards filter on page, which Google refuses with aggregation_type "
                "byProperty; drop 'page' from shard",
            )
        if self.shard_start not in SHARD_STARTS:
            raise ReportDefinitionError(
                self.name, "shard_start", f"{self.shard_start!r}: write one of {list(SHARD_STARTS)}"
            )
        if self.shard_budget < 1:
            raise ReportDefinitionError(
                self.name, "shard_budget", f"{self.shard_budget} must be 1 or more requests"
            )

    def _validate_dimensions(self) -> None:
        dims = self.dimensions
        unknown = [d for d in dims if d not in DIMENSIONS]
        if unknown:
            raise ReportDefinitionError(
                self.name, "dimensions", f"unknown {unknown}; choose from {list(DIMENSIONS)}"
            )
        if len(set(dims)) != len(dims):
            raise ReportDefinitionError(
                self.name, "dimensions", "Duplicate dimensions are not allowed; list each once"
            )
        if {"date", "hour"} & set(dims):
            raise ReportDefinitionError(
                self.name,
                "dimensions",
                "leave 'date' and 'hour' to time_dimension (every report is fetched per day)",
            )
        if self.time_dimension not in ("date", "hour", None):
            raise ReportDefinitionError(
                self.name, "time_dimension", "must be 'date', 'hour' or None"
            )
        if "searchAppearance" in dims and (len(dims) > 1 or self.time_dimension):
            raise ReportDefinitionError(
                self.name,
                "dimensions",
                "Google cannot group by searchAppearance together with "
                "another dimension (date and hour included); declare [searchAppearance] alone, "
                "and filter on searchAppearance to break one appearance down by page or query",
            )
        if self.time_dimension is None and dims != ("searchAppearance",):
            raise ReportDefinitionError(
                self.name, "dimensions", "only [searchAppearance] goes without a date or hour key"
            )

    def _validate_search_types(self) -> None:
        if not self.search_types:
            raise ReportDefinitionError(self.name, "search_types", "give at least one search type")
        touches_page = "page" in self.dimensions or any(f.dimension == "page" for f in self.filters)
        for search_type in self.search_types:
            if search_type not in SEARCH_TYPES:
                raise ReportDefinitionError(
                    self.name,
                    "search_types",
                    f"unknown search type {search_type!r}; choose from {list(SEARCH_TYPES)}",
                )
            news_like = search_type in QUERYLESS_SEARCH_TYPES
            if news_like and "query" in self.dimensions:
                raise ReportDefinitionError(
                    self.name,
                    "search_types",
                    f"Google rejects {search_type} grouped by query; drop 'query' or declare a "
                    "separate report for that search type",
                )
            if news_like and _filters_on(self, "query"):
                # Not a 400 from Google: its rows have no query, so the report would stay empty.
                raise ReportDefinitionError(
                    self.name,
                    "search_types",
                    f"{search_type} has no queries, so a query filter would match nothing; drop "
                    "the filter or declare a separate report for that search type",
                )
            if search_type == "discover" and "device" in self.dimensions:
                raise ReportDefinitionError(
                    self.name,
                    "search_types",
                    "Google rejects discover grouped by device; drop "
                    "'device' or declare a separate report for discover",
                )
            if self.aggregation_type == "byProperty" and (touches_page or news_like):
                raise ReportDefinitionError(
                    self.name,
                    "aggregation_type",
                    f"'BY_PROPERTY' is not valid with page grouping, "
                    f"a page filter or {search_type}; use 'auto' or 'byPage'",
                )


def _filters_on(report: Report, dimension: str) -> bool:
    return any(f.dimension == dimension for f in report.filters)


def _validate_filter(report: str, where: str, f: Filter) -> None:
    if f.dimension not in FILTER_DIMENSIONS:
        raise ReportDefinitionError(
            report,
            f"{where}.dimension",
            f"Google cannot filter on {f.dimension!r}; choose from {list(FILTER_DIMENSIONS)}",
        )
    if f.operator not in FILTER_OPERATORS:
        raise ReportDefinitionError(
            report,
            f"{where}.operator",
            f"{f.operator!r} is not one of Google's operators {list(FILTER_OPERATORS)}",
        )
    if not f.expression:
        raise ReportDefinitionError(
            report, f"{where}.expression", "give the value to compare against"
        )
    if len(f.expression) > MAX_FILTER_EXPRESSION:
        raise ReportDefinitionError(
            report,
            f"{where}.expression",
            f"{len(f.expression)} characters; Google allows at most {MAX_FILTER_EXPRESSION}",
        )
    if f.operator.endswith("Regex"):
        try:
            re2.compile(f.expression, _QUIET_RE2)
        except re2.error as exc:
            raise ReportDefinitionError(
                report,
                f"{where}.expression",
                f"{f.expression!r} is not an RE2 regular expression "
                f"({exc.args[0].decode() if exc.args else exc}); Google uses RE2 syntax "
                "(no lookaround or backreferences)",
            ) from None


def declare(
    name: str,
    dimensions: tuple[str, ...],
    *,
    search_types: tuple[str, ...] = ("web",),
    aggregation_type: str = "auto",
    filters: tuple[Filter, ...] = (),
    row_limit: int = MAX_ROW_LIMIT,
    shard: str | tuple[str, ...] = "auto",
    shard_budget: int = DEFAULT_SHARD_BUDGET,
    shard_start: str = "learned",
) -> Report:
    """A report as users declare it (the config's `reports:`), validated.

    Users list dimensions the way Google does: `hour` makes an hourly report, `date` may be
    given or left out (daily is the default), `[searchAppearance]` alone is fetched per day
    without a time key. `shard` is auto (on for page x query reports, the ones that reach
    Google's daily cap), off, or the levels to split a capped day by.
    """
    dims = tuple(dimensions)
    if "date" in dims and "hour" in dims:
        raise ReportDefinitionError(
            name,
            "dimensions",
            "Request cannot be grouped by both date and hour; keep one (hour for hourly data)",
        )
    time_dimension: str | None = "hour" if "hour" in dims else "date"
    dims = tuple(d for d in dims if d not in ("date", "hour"))
    if dims == ("searchAppearance",) and "date" not in dimensions and "hour" not in dimensions:
        time_dimension = None
    report = Report(name, dims, aggregation_type, tuple(search_types), row_limit,
                    tuple(filters), time_dimension, shard_levels(name, shard, dims),
                    shard_budget, shard_start)  # fmt: skip
    report.validate()
    return report


def shard_levels(
    report: str, shard: str | tuple[str, ...], dimensions: tuple[str, ...]
) -> tuple[str, ...]:
    """The config's `shard:` (auto, off or a list of levels) as a report's levels."""
    if shard == "auto":
        return SHARD_LEVELS if {"page", "query"} <= set(dimensions) else ()
    if shard == "off":
        return ()
    if isinstance(shard, str):
        raise ReportDefinitionError(
            report, "shard", f"{shard!r}: write auto, off or a list of {list(SHARD_LEVELS)}"
        )
    return tuple(shard)


PAGE_QUERY = Report("page_query", ("page", "query"), shard=SHARD_LEVELS)
PAGE = Report("page", ("page",), aggregation_type="byPage")
SITE = Report("site", (), aggregation_type="byProperty")
PAGE_QUERY_COUNTRY_DEVICE = Report(
    "page_query_country_device", ("page", "query", "country", "device"), shard=SHARD_LEVELS
)
# Per day and search type, one request grouped by searchAppearance alone.
SEARCH_APPEARANCE = Report("search_appearance", ("searchAppearance",), time_dimension=None)
# Google's hourly data (last ~10 days only), stored in the same daily partitions.
HOURLY_PAGE = Report("hourly_page", ("page",), time_dimension="hour")
HOURLY_SITE = Report("hourly_site", (), aggregation_type="byProperty", time_dimension="hour")

# Reports fetched when a property's config does not name its own.
DEFAULT_REPORTS: tuple[Report, ...] = (PAGE_QUERY, PAGE, SITE)
# The built-in reports a property may name; the config's `reports:` declares more.
REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        PAGE_QUERY,
        PAGE,
        SITE,
        PAGE_QUERY_COUNTRY_DEVICE,
        SEARCH_APPEARANCE,
        HOURLY_PAGE,
        HOURLY_SITE,
    )  # fmt: skip
}
for _report in REPORTS.values():
    _report.validate()
