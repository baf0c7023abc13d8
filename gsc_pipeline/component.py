"""`gsc_pipeline.GscComponent`: Search Console in a dg project, declared in one defs.yaml.

The component's attributes are the pipeline config (`gsc_pipeline.config.PipelineConfig`), so a
defs.yaml is validated by the same model, with the same messages, as a config file, and
`gsc-pipeline doctor --config <defs.yaml>` reads the very file `dg` loads.
"""

from __future__ import annotations

import warnings

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from pydantic import BaseModel

from gsc_pipeline.config import ConfigError, PipelineConfig
from gsc_pipeline.defs.assets import build_fetch_assets, build_sitemaps_assets
from gsc_pipeline.defs.audit import build_audit_assets
from gsc_pipeline.defs.checks import build_all_days_checks, build_history_asset
from gsc_pipeline.defs.google_checks import build_google_checks
from gsc_pipeline.defs.keys import fetch_asset_key
from gsc_pipeline.defs.resources import (
    gsc_resource,
    gsc_resource_key,
    warehouse_resource,
    warehouse_resource_key,
)
from gsc_pipeline.defs.schedules import (
    build_daily_refresh_schedule,
    build_fetch_job,
    build_hourly_refresh_schedule,
)
from gsc_pipeline.defs.sensors import (
    build_finalization_sensor,
    build_repair_sensor,
    build_restatement_sensor,
)
from gsc_pipeline.defs.stats import (
    automation_tags,
    build_stats_asset,
    build_stats_automation_sensor,
)

# BackfillPolicy is "beta" in 1.13 yet it is what batches days per run; say so once, not per asset.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

# What `dg scaffold defs gsc_pipeline.GscComponent <path>` writes: a declaration that loads as is
# (one property, no credential: point GSC_API_ENDPOINT at `gsc-pipeline emulator` to try it).
STARTER_ATTRIBUTES = {
    "start_date": "earliest",
    "credentials": {"default": {"kind": "none", "pool_limit": 4}},
    "properties": [{"site_url": "sc-domain:example.com"}],
}


def build_definitions(config: PipelineConfig) -> dg.Definitions:
    """Every definition of one declaration: assets, checks, job, schedule, sensors, resources."""
    resources: dict[str, object] = {
        gsc_resource_key(config, name): gsc_resource(cred)
        for name, cred in config.credentials.items()
    }
    resources[warehouse_resource_key(config)] = warehouse_resource(schema=config.prefix)
    fetch_job = build_fetch_job(config)
    stats = build_stats_asset(config)
    histories = [
        build_history_asset(
            fetch_asset_key(config, prop, report),
            config.namespaced(prop.key),
            automation_tags(config),
        )
        for prop in config.properties
        for report in prop.report_objects()
    ]
    hourly = build_hourly_refresh_schedule(config, fetch_job)
    return dg.Definitions(
        assets=[
            *build_fetch_assets(config),
            *build_sitemaps_assets(config, automation_tags(config)),
            *build_audit_assets(config, automation_tags(config)),
            *histories,
            *([stats] if stats else []),
        ],
        asset_checks=[*build_all_days_checks(config), *build_google_checks(config)],
        jobs=[fetch_job],
        schedules=[build_daily_refresh_schedule(config, fetch_job), *([hourly] if hourly else [])],
        sensors=[
            build_repair_sensor(config, fetch_job),
            build_finalization_sensor(config, fetch_job),
            build_restatement_sensor(config, fetch_job),
            build_stats_automation_sensor(config),
        ],
        resources=resources,
        # Steps of one run execute one after another in the run's process: a multiprocess
        # executor would pay a process start per step, and parallelism comes from runs anyway.
        executor=dg.in_process_executor,
    )


class GscScaffolder(dg.Scaffolder):
    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        scaffold_component(request, STARTER_ATTRIBUTES)


@dg.scaffold_with(GscScaffolder)
class GscComponent(dg.Component):
    """A verified copy of Google Search Console search analytics in DuckDB or PostgreSQL.

    One daily-partitioned asset per (property, report), fetched inside each credential's quota
    through a Dagster pool, with checks proving zero missing and zero duplicate pages, a daily
    refresh schedule, repair and finalization sensors, and per-URL lifetime stats.

    Attributes (see `dg utils inspect-component gsc_pipeline.GscComponent --defs-yaml-schema`):

    - `start_date` (required): first partition, e.g. 2025-08-01 (Google keeps 16 months).
    - `properties` (required): list of `{site_url, name?, credential?, reports?, search_types?}`;
      site_url is `sc-domain:example.com` or `https://www.example.org/` (trailing slash).
    - `credentials`: name -> `{kind: none|service_account|oauth, key_env | key_file,
      pool_limit, budget_fraction, step_concurrency}`. Secrets are never written here: `key_env`
      names the environment variable holding the key, read at run time as `dg.EnvVar`.
    - `backfill_days_per_run`, `refresh_days`, `fresh_data`: batching and refresh knobs.
    - `prefix`: namespace for a second declaration in the same code location (asset keys,
      job, schedule, sensors, pools, resources, and a warehouse schema for its tables).

    Environment: `GSC_WAREHOUSE_URL` (duckdb:///path or postgresql://...), `GSC_API_ENDPOINT`
    (unset: Google). Before the first backfill: `gsc-pipeline init-instance $DAGSTER_HOME
    --config <this defs.yaml>` sets the pool limits, `gsc-pipeline doctor --config ...` checks
    credentials and permissions.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return PipelineConfig

    @classmethod
    def get_spec(cls) -> dg.ComponentTypeSpec:
        return dg.ComponentTypeSpec(
            owners=[],
            tags=["google-search-console", "ingestion"],
            produces=["asset", "asset_check", "job", "schedule", "sensor", "resource"],
        )

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> GscComponent:
        if not isinstance(attributes, PipelineConfig):
            raise ConfigError(
                f"{context.path}/defs.yaml: GscComponent needs `attributes:` with at least "
                "start_date and properties (`dg docs` describes them)"
            )
        return cls(attributes)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_definitions(self.config)
