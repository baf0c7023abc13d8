"""The Definitions object, built from the config file ($GSC_PIPELINE_CONFIG or the demo's)."""

from __future__ import annotations

import warnings

import dagster as dg

from gsc_pipeline.config import PipelineConfig, load_config
from gsc_pipeline.defs.assets import build_fetch_assets, build_sitemaps_assets
from gsc_pipeline.defs.checks import build_all_days_checks
from gsc_pipeline.defs.resources import gsc_resource, gsc_resource_key, warehouse_resource
from gsc_pipeline.defs.schedules import (
    build_daily_refresh_schedule,
    build_fetch_job,
    build_hourly_refresh_schedule,
)
from gsc_pipeline.defs.sensors import build_finalization_sensor, build_repair_sensor
from gsc_pipeline.defs.stats import build_stats_asset, build_stats_automation_sensor

# BackfillPolicy is "beta" in 1.13 yet it is what batches days per run; say so once, not per asset.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(config: PipelineConfig) -> dg.Definitions:
    resources: dict[str, object] = {
        gsc_resource_key(name): gsc_resource(cred) for name, cred in config.credentials.items()
    }
    resources["warehouse"] = warehouse_resource()
    fetch_job = build_fetch_job(config)
    stats = build_stats_asset(config)
    hourly = build_hourly_refresh_schedule(config, fetch_job)
    return dg.Definitions(
        assets=[
            *build_fetch_assets(config),
            *build_sitemaps_assets(config),
            *([stats] if stats else []),
        ],
        asset_checks=build_all_days_checks(config),
        jobs=[fetch_job],
        schedules=[
            build_daily_refresh_schedule(config, fetch_job),
            *([hourly] if hourly else []),
        ],
        sensors=[
            build_repair_sensor(config, fetch_job),
            build_finalization_sensor(config, fetch_job),
            build_stats_automation_sensor(config, with_stats=stats is not None),
        ],
        resources=resources,
        # Steps of one run execute one after another in the run's process: a multiprocess
        # executor would pay a process start per step, and parallelism comes from runs anyway.
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_config())
