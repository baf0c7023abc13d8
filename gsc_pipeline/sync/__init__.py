"""Fetch one (site, report) over a list of days and write each day as one partition.

No Dagster here: the assets, the bench and the tests all call `sync_days`. Days are fetched
concurrently (pages within a day in order) and each day is written as soon as all its pages are
in, by one writer thread that groups the days ready together into one transaction, without
holding any warehouse lock while fetching. By role:

- `days`: `sync_days`, the orchestration (days in flight, first error or stop ends the sync);
- `fetch`: `plan_days` (which days are final; Google's 16-month window) and `fetch_day`;
- `pages`: API rows -> Arrow columns (`page_from_rows`), the one place that maps the API's
  shape to the warehouse's;
- `tie_order`: re-fetching a day until rows tied across page boundaries are each in once;
- `writer`: the group writer; `result`: `PartitionResult`, one day's outcome.
"""

from gsc_pipeline.sync.days import SyncCancelled, sync_days
from gsc_pipeline.sync.fetch import OutsideRetentionWindow, aggregation_rejected
from gsc_pipeline.sync.pages import BadApiData
from gsc_pipeline.sync.result import PartitionResult

__all__ = [
    "BadApiData",
    "OutsideRetentionWindow",
    "PartitionResult",
    "SyncCancelled",
    "aggregation_rejected",
    "sync_days",
]
