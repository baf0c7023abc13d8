"""`gsc_pipeline.GscComponent`: Search Console in a dg project, declared in one defs.yaml.

The component's attributes are the pipeline config (`gsc_pipeline.config.PipelineConfig`), so a
defs.yaml is validated by the same model, with the same messages, as a config file, and
`gsc-pipeline doctor --config <defs.yaml>` reads the very file `dg` loads.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from pydantic import BaseModel, PrivateAttr, ValidationError, model_validator

from gsc_pipeline.config import (
    COMPONENT_TYPE,
    PipelineConfig,
    find_declarations,
    key_path,
    read_yaml,
    validation_problems,
)
from gsc_pipeline.defs.assets import (
    FetchExecute,
    FetchResult,
    build_fetch_assets,
    build_sitemaps_assets,
    fetch_partitions,
)
from gsc_pipeline.defs.audit import build_audit_assets
from gsc_pipeline.defs.checks import build_all_days_checks, build_history_asset
from gsc_pipeline.defs.errors import INPUT_ERRORS, UserFacingError
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
from gsc_pipeline.defs.translator import GscAssetProps, fetch_asset_spec

# BackfillPolicy is "beta" in 1.13 yet it is what batches days per run; say so once, not per asset.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

# What `dg scaffold defs gsc_pipeline.GscComponent <path>` writes: a declaration that loads as is
# (one property, no credential), with comments saying where the key, the emulator and the
# warehouse go, since a first-time user reads this file before any documentation.
STARTER_DEFS_YAML = f"""\
# Google Search Console -> your warehouse. Every attribute: README's option table, or
# `dg utils inspect-component {COMPONENT_TYPE}`.
#
# Environment (read when the definitions load and at run time; never written in this file):
#   GSC_WAREHOUSE_URL  where rows are stored: duckdb:///path/to/gsc.duckdb, or
#                      postgresql://user@host/db (unset: gsc_warehouse.duckdb in $DAGSTER_HOME)
#   GSC_API_ENDPOINT   unset: Google. To try this without a Google account, run the bundled
#                      emulator (`gsc-pipeline emulator --port 8765`, it serves this example
#                      property) and export GSC_API_ENDPOINT=http://127.0.0.1:8765/
type: {COMPONENT_TYPE}

attributes:
  start_date: earliest   # first day to fetch (YYYY-MM-DD), or `earliest`: Google's 16 months
  credentials:
    default:
      kind: none         # the emulator needs no key. For Google: `kind: service_account` and
                         # `key_env: GSC_SA_KEY`, the environment variable holding the key JSON
                         # (raw or base64; never the key itself), or `key_file: /path/key.json`
      pool_limit: 4      # fetching steps at once; `gsc-pipeline init-instance` sets the pool
  properties:
    - site_url: sc-domain:example.com   # or a URL-prefix property: https://www.example.com/
  # prefix: second       # required on a second {COMPONENT_TYPE} in this project
"""


class DeclarationError(UserFacingError):
    """A bad declaration: `dg check defs`, `dg dev`, `dagster dev` and the UI show its message
    (file, line, key, fix) alone, without a Python stack trace."""


class DeclaredConfig(PipelineConfig):
    """The pipeline config as dg validates a defs.yaml: same fields and schema, but a bad
    declaration is kept (with its problems) instead of raised, so `GscComponent.load` reports
    it with file, line, key and fix rather than as a pydantic error inside a stack trace."""

    _problems: ValidationError | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_problems(cls, data: Any, handler: Any) -> DeclaredConfig:
        try:
            return handler(data)
        except ValidationError as exc:
            invalid = cls.model_construct()
            invalid._problems = exc
            return invalid


def build_definitions(
    config: PipelineConfig, execute: FetchExecute = fetch_partitions
) -> dg.Definitions:
    """Every definition of one declaration: assets, checks, job, schedule, sensors, resources.

    `execute` runs each fetching asset (`GscComponent.execute`, overridable in a subclass).
    """
    resources: dict[str, object] = {
        gsc_resource_key(config, name): gsc_resource(cred)
        for name, cred in config.credentials.items()
    }
    resources[warehouse_resource_key(config)] = warehouse_resource(schema=config.prefix)
    fetch_job = build_fetch_job(config)
    stats = build_stats_asset(config)
    fetch_specs = [
        fetch_asset_spec(config, prop, report)
        for prop in config.properties
        for report in prop.report_objects()
    ]
    # Beside its fetching asset, in the group (and with the owners) its translation chose.
    histories = [
        build_history_asset(spec.key, spec.group_name, automation_tags(config)).replace_attributes(
            owners=spec.owners
        )
        for spec in fetch_specs
    ]
    hourly = build_hourly_refresh_schedule(config, fetch_job)
    return dg.Definitions(
        assets=[
            *build_fetch_assets(config, execute),
            *build_sitemaps_assets(config, automation_tags(config)),
            *build_audit_assets(config, automation_tags(config)),
            *histories,
            *([stats] if stats else []),
        ],
        asset_checks=build_all_days_checks(config),
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
        # executor would pay a process start per step. A step is a property, whose reports
        # are fetched at once inside it (defs/assets.py); more parallelism comes from runs.
        executor=dg.in_process_executor,
    )


class GscScaffolder(dg.Scaffolder):
    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        if request.scaffold_format != "yaml" or request.append:
            scaffold_component(request, {})
            return
        (request.target_path / "defs.yaml").write_text(STARTER_DEFS_YAML)


@dg.scaffold_with(GscScaffolder)
class GscComponent(dg.Component):
    """A verified copy of Google Search Console search analytics in DuckDB or PostgreSQL.

    One daily-partitioned asset per (property, report), a property's reports fetched together
    in one step, inside each credential's quota through a Dagster pool, with checks proving
    zero missing and zero duplicate pages, a daily refresh schedule, repair and finalization
    sensors, and per-URL lifetime stats.

    Attributes (see `dg utils inspect-component gsc_pipeline.GscComponent --defs-yaml-schema`):

    - `start_date` (required): first partition, e.g. 2025-08-01 (Google keeps 16 months).
    - `properties` (required): list of `{site_url, name?, credential?, reports?, search_types?}`;
      site_url is `sc-domain:example.com` or `https://www.example.org/` (trailing slash).
    - `credentials`: name -> `{kind: none|service_account|oauth, key_env | key_file,
      pool_limit, budget_fraction, step_concurrency, step_memory_mb}`. Secrets are never
      written here: `key_env` names the environment variable holding the key, read when a step
      starts (never in the UI).
    - `backfill_days_per_run`, `refresh_days`, `fresh_data`: batching and refresh knobs.
    - `prefix`: namespace for a second declaration in the same code location (asset keys,
      job, schedule, sensors, pools, resources, and a warehouse schema for its tables).
    - `owners`: owners of every asset (`team:seo`, an email).
    - `translation`: Dagster asset attributes applied to each fetching asset (key, key_prefix,
      group_name, owners, tags, description, ...), as in dagster-sling and dagster-dlt;
      templates see `prop` (`prop.key`, `prop.site_url`), `report` (`report.name`) and `spec`.

    Subclass and override `execute` to change what a fetching asset runs (say, around the
    default `super().execute(...)`).

    Environment: `GSC_WAREHOUSE_URL` (duckdb:///path or postgresql://...), `GSC_API_ENDPOINT`
    (unset: Google). Before the first backfill: `gsc-pipeline init-instance $DAGSTER_HOME
    --config <this defs.yaml>` sets the pool limits, `gsc-pipeline doctor --config ...` checks
    credentials and permissions.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return DeclaredConfig

    @classmethod
    def get_spec(cls) -> dg.ComponentTypeSpec:
        return dg.ComponentTypeSpec(
            owners=[],
            tags=["google-search-console", "ingestion"],
            produces=["asset", "asset_check", "job", "schedule", "sensor", "resource"],
        )

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> GscComponent:
        defs_yaml = context.path / "defs.yaml"
        if not isinstance(attributes, DeclaredConfig):
            raise DeclarationError(
                f"{defs_yaml}: {COMPONENT_TYPE} needs `attributes:` with at least start_date "
                "and properties (README's option table describes every attribute)"
            )
        if attributes._problems is not None:
            raise DeclarationError(_describe_problems(attributes._problems, defs_yaml, context))
        _refuse_shared_namespace(attributes, defs_yaml, context.defs_module_path)
        # The validated values as the plain config, equal to the same file read by load_config.
        return cls(PipelineConfig.model_construct(attributes.model_fields_set, **dict(attributes)))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        try:
            return build_definitions(self.config, execute=self.execute)
        except INPUT_ERRORS as exc:
            # A bad GSC_WAREHOUSE_URL, say: its message names the variable and the fix.
            raise DeclarationError(f"{context.path / 'defs.yaml'}: {exc}") from None

    def execute(
        self, context: dg.AssetExecutionContext, props: GscAssetProps
    ) -> Iterator[FetchResult]:
        """Run one fetching asset: fetch the run's days of `props.report` for `props.prop`,
        store them, yield the materialization and the in-run checks.

        A run fetches a property's selected reports in one step, calling this once per report,
        each in its own thread at the same time (they share `props.step`: the API client and
        the days in flight); what it yields is passed on to Dagster as it comes.

        Override in a subclass to wrap or replace it, e.g. to log around the default:

            class MyGsc(GscComponent):
                def execute(self, context, props):
                    context.log.info(f"fetching {props.report.name}")
                    yield from super().execute(context, props)
        """
        yield from fetch_partitions(context, props)


def _describe_problems(
    problems: ValidationError, defs_yaml: Path, context: dg.ComponentLoadContext
) -> str:
    """One line per problem: `file:line: attributes.<key>: <what is wrong and the fix>`."""
    tree = context.resolution_context.source_position_tree
    lines = []
    for loc, message in validation_problems(problems):
        where = f"{tree.lookup_closest_and_path(['attributes', *loc], None)[0]}" if tree else ""
        key = "attributes" + (f".{key_path(loc)}" if loc else "")
        lines.append(f"{where or defs_yaml}: {COMPONENT_TYPE} {key}: {message}")
    return "\n".join(lines)


def _refuse_shared_namespace(config: PipelineConfig, defs_yaml: Path, defs_dir: Path) -> None:
    """Two declarations with the same prefix (or none) would define the same asset keys, jobs,
    pools and resources: say which files and what to set, before Dagster reports a clash of
    resource keys that names neither."""
    if not defs_yaml.is_file():
        return  # built from Python (`from_attributes_dict`), not declared in a defs folder
    for other in find_declarations(defs_dir):
        if other.resolve() == defs_yaml.resolve():
            continue
        declared = read_yaml(other)
        attributes = (declared.get("attributes") if isinstance(declared, dict) else None) or {}
        if attributes.get("prefix") == config.prefix:
            same = f"the same prefix {config.prefix!r}" if config.prefix else "no `prefix:`"
            raise DeclarationError(
                f"{defs_yaml} and {other} both declare {COMPONENT_TYPE} with {same}, so their "
                "asset keys, jobs, pools and resources would collide; set a distinct `prefix:` "
                "(lowercase letters, digits, underscores) in all but one of them, e.g. "
                "`prefix: second`"
            )
