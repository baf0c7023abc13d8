"""The fetch job and the daily refresh schedule.

GSC keeps revising the last 2-3 days, so every morning (Pacific, Google's day) each property's
last `refresh_days` days are fetched again as ONE ranged run per property: one run start, every
report of the property, the days fetched concurrently inside the step. The runs materialize the
fetching assets, which sit in their credential's pool, so the schedule (like every sensor) can
never exceed the quota budget however many runs it starts.
"""

import datetime as dt
import os
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import dagster as dg

# What define_asset_job returns; dagster does not export the type at the top level.
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition as FetchJob,
)

from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.constants import GOOGLE_TIMEZONE, TODAY_ENV
from gsc_pipeline.defs.checks import in_run_check_keys
from gsc_pipeline.defs.keys import fetch_asset_key
from gsc_pipeline.defs.names import (
    DAILY_REFRESH_CRON,
    DAILY_REFRESH_SCHEDULE,
    DATA_STATE_TAG,
    FETCH_JOB,
    HOURLY_REFRESH_CRON,
    HOURLY_REFRESH_SCHEDULE,
    PROPERTY_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
)
from gsc_pipeline.defs.partitions import daily_partitions
from gsc_pipeline.search_calendar import pacific_today

# The days whose hours Google is still completing (its first incomplete hour trails by ~2 days).
HOURLY_REFRESH_DAYS = 3


def gsc_today(scheduled: dt.datetime) -> dt.date:
    """Search Console's date at a tick: the one `GSC_TODAY` pins (replays, an emulator whose
    clock is fixed), else the tick's Pacific date."""
    if os.environ.get(TODAY_ENV, "").strip():
        return pacific_today()
    return scheduled.astimezone(ZoneInfo(GOOGLE_TIMEZONE)).date()


def property_asset_keys(config: PipelineConfig, prop: PropertyConfig) -> list[dg.AssetKey]:
    return [fetch_asset_key(config, prop, report) for report in prop.report_objects()]


def build_fetch_job(config: PipelineConfig) -> FetchJob:
    """Every fetching asset, daily-partitioned: the target of the schedule and the sensors."""
    keys = [key for prop in config.properties for key in property_asset_keys(config, prop)]
    return dg.define_asset_job(
        config.namespaced(FETCH_JOB),
        selection=dg.AssetSelection.keys(*keys),
        partitions_def=daily_partitions(config),
        description=(
            "Fetch Search Console days into the warehouse: every (property, report) asset, "
            "daily partitions (Pacific), in its credential's pool; each run checks the days it "
            "wrote. Run by the daily refresh schedule and the repair and finalization sensors."
        ),
    )


def refresh_window(config: PipelineConfig, today: dt.date) -> tuple[dt.date, dt.date]:
    """The last `refresh_days` complete days before `today` (a Pacific date)."""
    last = today - dt.timedelta(days=1)
    first = max(config.start_date, last - dt.timedelta(days=config.refresh_days - 1))
    return first, last


def build_daily_refresh_schedule(
    config: PipelineConfig, job: FetchJob
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=config.namespaced(DAILY_REFRESH_SCHEDULE),
        cron_schedule=DAILY_REFRESH_CRON,
        execution_timezone=GOOGLE_TIMEZONE,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Re-fetch the last {config.refresh_days} days of every property, one ranged run "
            "per property" + (" (fresh data: dataState=all)" if config.fresh_data else "")
        ),
    )
    def daily_refresh_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        today = gsc_today(context.scheduled_execution_time)
        first, last = refresh_window(config, today)
        if last < first:
            return
        for prop in config.properties:
            yield dg.RunRequest(
                # One run per property per day, however often the tick is evaluated.
                run_key=f"{DAILY_REFRESH_SCHEDULE}:{prop.key}:{today.isoformat()}",
                asset_selection=property_asset_keys(config, prop),
                asset_check_keys=in_run_check_keys(config, property_asset_keys(config, prop)),
                tags={
                    RANGE_START_TAG: first.isoformat(),
                    RANGE_END_TAG: last.isoformat(),
                    PROPERTY_TAG: prop.key,
                    DATA_STATE_TAG: "all" if config.fresh_data else "final",
                },
            )

    return daily_refresh_schedule


def hourly_asset_keys(config: PipelineConfig, prop: PropertyConfig) -> list[dg.AssetKey]:
    return [
        fetch_asset_key(config, prop, report) for report in prop.report_objects() if report.hourly
    ]


def build_hourly_refresh_schedule(
    config: PipelineConfig, job: FetchJob
) -> dg.ScheduleDefinition | None:
    """Keeps hourly reports fresh: the last `HOURLY_REFRESH_DAYS` days every hour.

    Hourly reports use the same daily partitions as every report (one request covers a day's
    24 hours), so the latest partition is yesterday's; re-fetching it and the two days before
    every hour replaces incomplete hours as Google completes them.
    """
    props = [p for p in config.properties if hourly_asset_keys(config, p)]
    if not props:
        return None

    @dg.schedule(
        name=config.namespaced(HOURLY_REFRESH_SCHEDULE),
        cron_schedule=HOURLY_REFRESH_CRON,
        execution_timezone=GOOGLE_TIMEZONE,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Re-fetch the last {HOURLY_REFRESH_DAYS} days of every hourly report each hour, "
            "one ranged run per property"
        ),
    )
    def hourly_refresh_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        scheduled = context.scheduled_execution_time.astimezone(ZoneInfo(GOOGLE_TIMEZONE))
        last = gsc_today(scheduled) - dt.timedelta(days=1)
        first = max(config.start_date, last - dt.timedelta(days=HOURLY_REFRESH_DAYS - 1))
        if last < first:
            return
        for prop in props:
            keys = hourly_asset_keys(config, prop)
            yield dg.RunRequest(
                run_key=f"{HOURLY_REFRESH_SCHEDULE}:{prop.key}:{scheduled.isoformat()}",
                asset_selection=keys,
                asset_check_keys=in_run_check_keys(config, keys),
                tags={
                    RANGE_START_TAG: first.isoformat(),
                    RANGE_END_TAG: last.isoformat(),
                    PROPERTY_TAG: prop.key,
                },
            )

    return hourly_refresh_schedule
