"""searchAnalytics.query request bodies: validated into a QuerySpec with Google's messages."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import re2

from gsc_pipeline.emulator.errors import ApiError, bad_request

DIMENSIONS = ("date", "hour", "query", "page", "country", "device", "searchAppearance")
FILTER_DIMENSIONS = ("country", "device", "page", "query", "searchAppearance")
OPERATORS = ("equals", "notEquals", "contains", "notContains", "includingRegex", "excludingRegex")
SEARCH_TYPES = ("web", "image", "video", "news", "discover", "googleNews")
AGGREGATIONS = ("auto", "byPage", "byProperty", "byNewsShowcasePanel")
DATA_STATES = ("final", "all", "hourly_all")
MAX_ROW_LIMIT = 25_000
MAX_EXPRESSION = 4096
_FIELDS = frozenset({
    "startDate", "endDate", "dimensions", "type", "searchType", "dimensionFilterGroups",
    "aggregationType", "rowLimit", "startRow", "dataState",
})  # fmt: skip
# Google's enum names in upper snake case, for messages ('BY_PROPERTY', 'GOOGLE_NEWS').
_UPPER = {"byProperty": "BY_PROPERTY", "byPage": "BY_PAGE", "auto": "AUTO",
          "byNewsShowcasePanel": "BY_NEWS_SHOWCASE_PANEL", "discover": "DISCOVER",
          "googleNews": "GOOGLE_NEWS"}  # fmt: skip


def _enum_lookup(values: tuple[str, ...]) -> dict[str, str]:
    # Both spellings are accepted: camelCase and UPPER_SNAKE, in any case.
    return {v.lower().replace("_", ""): v for v in values}


_DIMENSION_OF = _enum_lookup(DIMENSIONS)
_OPERATOR_OF = _enum_lookup(OPERATORS)
_TYPE_OF = _enum_lookup(SEARCH_TYPES)
_AGGREGATION_OF = _enum_lookup(AGGREGATIONS)
_STATE_OF = _enum_lookup(DATA_STATES)


@dataclass(frozen=True)
class Filter:
    dimension: str
    operator: str
    expression: str


@dataclass(frozen=True)
class QuerySpec:
    start: dt.date
    end: dt.date
    dimensions: tuple[str, ...]
    search_type: str
    filters: tuple[Filter, ...]
    aggregation: str
    data_state: str
    row_limit: int
    start_row: int

    @property
    def report(self) -> str:
        """The stats label of this request's dimension set, e.g. 'date,page,query'."""
        return ",".join(self.dimensions) or "none"

    def response_aggregation(self) -> str:
        if self.aggregation != "auto":
            return self.aggregation
        if self.search_type in ("discover", "googleNews") or self.touches_page:
            return "byPage"
        return "byProperty"

    @property
    def touches_page(self) -> bool:
        return "page" in self.dimensions or any(f.dimension == "page" for f in self.filters)


def _invalid_value(field: str, value: Any) -> ApiError:
    return bad_request(f"Invalid value at '{field}', \"{value}\"", reason="invalid")


def _enum(value: Any, lookup: dict[str, str], field: str) -> str:
    if not isinstance(value, str) or value.lower().replace("_", "") not in lookup:
        raise _invalid_value(field, value)
    return lookup[value.lower().replace("_", "")]


def _date(body: dict[str, Any], key: str) -> dt.date:
    value = body.get(key)
    if value in (None, ""):
        raise bad_request(f"{key} field is required.")
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise _invalid_value(key, value) from None


def _int(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    # The client sends integers; JSON strings of digits are accepted like Google's int32 fields.
    if isinstance(value, bool):
        raise _invalid_value(key, value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _invalid_value(key, value) from None


def _filters(groups: Any) -> tuple[Filter, ...]:
    if not isinstance(groups, list):
        raise _invalid_value("dimensionFilterGroups", groups)
    filters: list[Filter] = []
    for g, group in enumerate(groups):
        if not isinstance(group, dict):
            raise _invalid_value(f"dimensionFilterGroups[{g}]", group)
        group_type = group.get("groupType", "and")
        if not isinstance(group_type, str) or group_type.lower() != "and":
            raise bad_request(f"Invalid value at 'dimension_filter_groups[{g}].group_type', "
                              f"\"{group_type}\": only 'and' is supported.", reason="invalid")
        for f, raw in enumerate(group.get("filters", [])):
            where = f"dimensionFilterGroups[{g}].filters[{f}]"
            if not isinstance(raw, dict):
                raise _invalid_value(where, raw)
            dimension = raw.get("dimension")
            if (
                not isinstance(dimension, str)
                or _DIMENSION_OF.get(dimension.lower()) not in FILTER_DIMENSIONS
            ):
                raise bad_request(
                    f"Invalid value at '{where}.dimension', \"{dimension}\": cannot filter by "
                    "this dimension.", reason="invalid")
            operator = _enum(raw.get("operator", "equals"), _OPERATOR_OF, f"{where}.operator")
            expression = raw.get("expression")
            if not isinstance(expression, str):
                raise bad_request(f"{where}.expression field is required.")
            if len(expression) > MAX_EXPRESSION:
                raise bad_request(
                    f"Filter expression is longer than {MAX_EXPRESSION} characters.",
                    reason="invalid")
            if operator.endswith("Regex"):
                try:
                    re2.compile(expression)
                except re2.error:
                    raise bad_request(
                        f"Invalid regular expression: {expression}", reason="invalid"
                    ) from None
            filters.append(Filter(_DIMENSION_OF[dimension.lower()], operator, expression))
    return tuple(filters)


def not_valid_aggregation(aggregation: str) -> ApiError:
    return bad_request(
        f"'{_UPPER[aggregation]}' is not a valid aggregation type in the context of the request.",
        reason="invalidParameter",
        location="aggregation_type",
    )


def parse_query(body: Any) -> QuerySpec:
    """Validate a request body in the order Google reports problems; raise ApiError(400)."""
    if not isinstance(body, dict):
        raise bad_request("Invalid JSON payload received.", reason="parseError")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise bad_request(f"Invalid JSON payload received. Unknown name \"{unknown[0]}\": "
                          "Cannot find field.", reason="invalid")
    start = _date(body, "startDate")
    end = _date(body, "endDate")
    if start > end:
        raise bad_request("startDate must be earlier than or equal to endDate.", reason="invalid")

    raw_dimensions = body.get("dimensions", [])
    if not isinstance(raw_dimensions, list):
        raise _invalid_value("dimensions", raw_dimensions)
    dimensions = tuple(
        _enum(d, _DIMENSION_OF, f"dimensions[{i}]") for i, d in enumerate(raw_dimensions)
    )
    if len(set(dimensions)) != len(dimensions):
        raise bad_request("Duplicate dimensions are not allowed.")
    if "searchAppearance" in dimensions and len(dimensions) > 1:
        raise bad_request(
            "Cannot group by search appearance dimension together with another dimension."
        )
    if "date" in dimensions and "hour" in dimensions:
        raise bad_request("Request cannot be grouped by both date and hour")

    raw_type = body.get("type", body.get("searchType", "web"))
    search_type = _enum(raw_type, _TYPE_OF, "type")
    data_state = _enum(body.get("dataState", "final"), _STATE_OF, "dataState")
    if "hour" in dimensions and data_state != "hourly_all":
        raise bad_request("Grouping by HOUR requires setting dataState=HOURLY_ALL")
    if search_type in ("discover", "googleNews") and "query" in dimensions:
        raise bad_request(f"Request for {_UPPER[search_type]} cannot be grouped by query")
    if search_type == "discover" and "device" in dimensions:
        raise bad_request("Requests for Discover cannot be grouped by device")

    filters = _filters(body.get("dimensionFilterGroups", []))
    aggregation = _enum(body.get("aggregationType", "auto"), _AGGREGATION_OF, "aggregationType")
    touches_page = "page" in dimensions or any(f.dimension == "page" for f in filters)
    if aggregation == "byProperty" and (touches_page or search_type in ("discover", "googleNews")):
        raise not_valid_aggregation(aggregation)
    if aggregation == "byNewsShowcasePanel" and (
        touches_page or search_type not in ("news", "googleNews")
    ):
        raise not_valid_aggregation(aggregation)

    row_limit = _int(body, "rowLimit", 1000)
    if not 1 <= row_limit <= MAX_ROW_LIMIT:
        raise bad_request(
            f"Invalid value at 'row_limit' ({row_limit}): must be between 1 and {MAX_ROW_LIMIT}.",
            reason="invalid")
    start_row = _int(body, "startRow", 0)
    if start_row < 0:
        raise bad_request(
            f"Invalid value at 'start_row' ({start_row}): must be 0 or more.", reason="invalid"
        )
    return QuerySpec(
        start=start,
        end=end,
        dimensions=dimensions,
        search_type=search_type,
        filters=filters,
        aggregation=aggregation,
        data_state=data_state,
        row_limit=row_limit,
        start_row=start_row,
    )
