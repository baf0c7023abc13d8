"""Daily partitions on Google's day: Search Console dates are Pacific Time."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from gsc_pipeline.config import PipelineConfig
from gsc_pipeline.constants import GOOGLE_TIMEZONE


def daily_partitions(config: PipelineConfig) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date=config.start_date.isoformat(), timezone=GOOGLE_TIMEZONE
    )


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days a (possibly ranged) run covers."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]
