"""Settling tie order: a day's pages with every row exactly once, though Google returns rows
tied on clicks in arbitrary order (naive paging duplicates some and drops others)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from gsc_pipeline.pandas_on_demand import group_by
from gsc_pipeline.reports import Report
from gsc_pipeline.sync.pages import BadApiData
from gsc_pipeline.warehouse.base import REQUEST_COLUMNS

# Re-fetch passes allowed when a day's pages disagree (ties in arbitrary order); the emulator
# needs ~5 at 30,000 rows a day and ~7 at 50,000.
MAX_TIE_PASSES = 12


def _distinct_rows(table: pa.Table, keys: list[str]) -> pa.Table:
    """Each natural key once (its first occurrence)."""
    # One dictionary per column (`repeated_columns`): Acero groups by no differing ones.
    table = table.unify_dictionaries()
    indexed = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    first = group_by(indexed, keys, [("_row", "min")])
    return table.take(first.column("_row_min"))


def settle_tie_order(
    refetch: Callable[[int], pa.Table], pages: list[pa.Table], report: Report, where: str
) -> tuple[list[pa.Table], int]:
    """The pages with every row exactly once, and how many re-fetch passes that took.

    Google orders rows by clicks and returns ties in arbitrary order, so a row tied across a page
    boundary can come back on both pages or on neither. The page sizes still say how many rows
    the day holds: fetch every page again and keep each natural key once until the union holds
    them all, then cut it into pages again in the API's order (clicks, then impressions).
    """
    expected = sum(page.num_rows for page in pages)
    keys = [c for c in report.key_columns if c not in REQUEST_COLUMNS]
    settled = _distinct_rows(pa.concat_tables(pages), keys)
    passes = 0
    while settled.num_rows < expected:
        if passes == MAX_TIE_PASSES:
            raise BadApiData(
                f"{where}: pages still miss {expected - settled.num_rows} of {expected} rows "
                f"after {passes} re-fetches (rows tied on clicks in arbitrary order); not written"
            )
        passes += 1
        again = [refetch(i * report.row_limit) for i in range(len(pages))]
        settled = _distinct_rows(pa.concat_tables([settled, *again]), keys)
    if not passes:
        return pages, 0
    ordered = settled.sort_by([("clicks", "descending"), ("impressions", "descending")])
    cuts = [i * report.row_limit for i in range(len(pages))] + [ordered.num_rows]
    return [ordered.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False)], passes
