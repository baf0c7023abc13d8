"""One API page -> the report table's columns: the one place that maps the API's shape to the
warehouse's, in Arrow compute only (no Python object per row)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gsc_pipeline.gsc.errors import GscError
from gsc_pipeline.reports import Report
from gsc_pipeline.search_calendar import PACIFIC
from gsc_pipeline.warehouse.base import (
    INSTANT_TYPE,
    batch_schema,
    column_name,
    repeated_columns,
)


class BadApiData(GscError):
    """The API answered with rows that cannot be right; nothing of that day is written."""


def page_from_rows(
    report: Report, site_url: str, search_type: str, day: dt.date, rows: pa.StructArray
) -> pa.Table:
    """API rows (Arrow structs, `SEARCH_ROW_TYPE`) -> the report table's columns (`batch_schema`:
    the site, search type and day dictionary-encoded, and a page repeated per query).

    Raises BadApiData on rows that cannot be right: keys of the wrong length, another day, no
    clicks or impressions, more clicks than impressions. Arrow compute only, no per-row Python.
    """
    where = f"{site_url} {report.name} {search_type} {day}"
    n = len(rows)
    width = len(report.api_dimensions)
    keys, clicks, impressions, ctr, position = rows.flatten()  # offset-aware, unlike .field()
    if rows.null_count or (width and keys.null_count):
        raise BadApiData(f"{where}: a row without keys")
    if n and width:
        lengths = pc.min_max(pc.list_value_length(keys)).as_py()
        if lengths != {"min": width, "max": width}:
            raise BadApiData(
                f"{where}: rows carry keys of the wrong length (expected {width}: "
                f"{report.api_dimensions}); the report definition and the API disagree"
            )
    # Every row holds `width` keys (checked above), so key i of row r is flat[r * width + i]:
    # one strided take per key, 2.4x faster than pc.list_element (1.11 -> 0.46 ms per key of a
    # 25,000-row page; docs/bench/README.md, issue 14 stop 32). Typed arrays throughout:
    # pyarrow imports pandas to infer the type of a Python value (`gsc_pipeline.pandas_on_demand`;
    # tests/test_pandas_on_demand.py).
    flat = keys.flatten()  # offset-aware: a sliced page's own keys
    columns = [flat.take(pa.array(np.arange(i, n * width, width))) for i in range(width)]
    time_columns: dict[str, Any] = {}
    if report.time_dimension == "date":
        _check_same_day(where, columns[0], day)
    elif report.hourly:
        time_columns["hour"] = _hours_of_day(where, columns[0], day)
    dimension_columns = columns[1:] if report.time_dimension else columns
    if clicks.null_count or impressions.null_count:
        raise BadApiData(f"{where}: a row has no clicks or no impressions")
    if n and pc.any(pc.greater(clicks, impressions)).as_py():
        raise BadApiData(f"{where}: a row has more clicks than impressions")
    schema = batch_schema(report)
    # The request's own columns: one value each, dictionary-encoded (`batch_schema`).
    everywhere = pa.array(np.zeros(n, np.int8))
    data: dict[str, Any] = {
        "site_url": pa.DictionaryArray.from_arrays(everywhere, pa.array([site_url], pa.string())),
        "search_type": pa.DictionaryArray.from_arrays(
            everywhere, pa.array([search_type], pa.string())
        ),
        "date": pa.DictionaryArray.from_arrays(everywhere, pa.array([day], pa.date32())),
        **time_columns,
        **{column_name(d): c for d, c in zip(report.dimensions, dimension_columns, strict=True)},
        "clicks": clicks,
        "impressions": impressions,
        "ctr": ctr,
        # discover/googleNews rows may have no position at all: null.
        "position": position,
    }
    for name in repeated_columns(report):
        data[name] = pc.dictionary_encode(data[name])
    return pa.Table.from_pydict(data, schema=schema)


def _check_same_day(where: str, dates: pa.Array, day: dt.date) -> None:
    same_day = pc.equal(dates, pa.scalar(day.isoformat(), pa.string()))
    if (pc.sum(same_day).as_py() or 0) != len(dates):  # a null date counts as wrong too
        wrong = dates[pc.index(pc.fill_null(same_day, _false()), _false()).as_py()]
        raise BadApiData(f"{where}: a row is dated {wrong.as_py()}, not the requested day")


def _hours_of_day(where: str, keys: pa.Array, day: dt.date) -> pa.Array:
    """Google's hour keys (`2025-04-07T00:00:00-07:00`) as instants, all within `day` (Pacific)."""
    hours = pc.strptime(keys, format="%Y-%m-%dT%H:%M:%S%z", unit="us", error_is_null=True)
    hours = hours.cast(INSTANT_TYPE)
    start = dt.datetime.combine(day, dt.time(), PACIFIC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), PACIFIC)
    inside = pc.and_(
        pc.greater_equal(hours, pa.scalar(start, INSTANT_TYPE)),
        pc.less(hours, pa.scalar(end, INSTANT_TYPE)),
    )
    if (pc.sum(inside).as_py() or 0) != len(keys):  # an unparsable hour counts as wrong too
        wrong = keys[pc.index(pc.fill_null(inside, _false()), _false()).as_py()]
        raise BadApiData(f"{where}: a row is for hour {wrong.as_py()}, not an hour of the day")
    return hours


def _false() -> pa.Scalar:
    return pa.scalar(False, pa.bool_())  # typed: see page_from_rows
