"""Fetch one (site, report) over a list of days and write each day as one partition."""

from gsc_pipeline.sync.fetch import (
    BadApiData,
    OutsideRetentionWindow,
    PartitionResult,
    SyncCancelled,
    aggregation_rejected,
    page_from_rows,
    sync_days,
)

__all__ = [
    "BadApiData",
    "OutsideRetentionWindow",
    "PartitionResult",
    "SyncCancelled",
    "aggregation_rejected",
    "page_from_rows",
    "sync_days",
]
