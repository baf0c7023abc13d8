"""The fetching assets: one per (property, report), generated from the config and report table.

Every fetching asset sits in its credential's pool, so Dagster's pool is the worker pool: at most
`pool_limit` steps fetch at once, all drawing from the credential's one quota budget. Backfills
batch `backfill_days_per_run` days per run, because a run costs seconds of CPU to start.
"""

import functools
import threading
from collections.abc import Callable, Iterator

import dagster as dg

from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.constants import GOOGLE_TIMEZONE
from gsc_pipeline.defs.checks import fetch_check_specs, in_run_check_results, planned_check_days
from gsc_pipeline.defs.errors import input_errors_without_trace
from gsc_pipeline.defs.keys import sitemaps_asset_key
from gsc_pipeline.defs.names import DATA_STATE_TAG, SITEMAPS_CRON
from gsc_pipeline.defs.partitions import daily_partitions, partition_days
from gsc_pipeline.defs.resources import gsc_resource_key, warehouse_resource_key
from gsc_pipeline.defs.translator import (
    GSC_KINDS,
    GscAssetProps,
    fetch_asset_spec,
    table_metadata,
    warehouse_kind,
)
from gsc_pipeline.reports import Report
from gsc_pipeline.sitemaps import SITEMAPS_TABLE, snapshot_sitemaps
from gsc_pipeline.sync import PartitionResult, aggregation_rejected, sync_days
from gsc_pipeline.sync.committed import committed_days
from gsc_pipeline.warehouse import Warehouse


def _committed(
    context: dg.AssetExecutionContext, warehouse: Warehouse, site_url: str, report: Report
) -> dict[str, dict[str, object]]:
    """The days this run committed, by the ledger; none when it cannot be read (the step's own
    error, raised next, says more)."""
    try:
        return committed_days(warehouse, site_url, report, context.run_id)
    except Exception as exc:  # noqa: BLE001 - the step's own error is the one to raise
        context.log.warning(f"cannot read the days this run committed ({exc})")
        return {}


# What a fetching asset runs: (context, what the asset is) -> its materialization and checks.
# `GscComponent.execute` is one; a subclass of the component overrides it instead of a fork.
FetchResult = dg.MaterializeResult | dg.AssetCheckResult | dg.AssetCheckEvaluation
FetchExecute = Callable[[dg.AssetExecutionContext, GscAssetProps], Iterator[FetchResult]]


def fetch_partitions(
    context: dg.AssetExecutionContext, props: GscAssetProps
) -> Iterator[FetchResult]:
    """Fetch the run's days of one (property, report) into the warehouse, then prove them.

    Each day's materialization carries Dagster's table metadata: its row count, the table's
    fully qualified name and its column schema as the warehouse stores it.
    """
    config, prop, report = props.config, props.prop, props.report
    gsc_key = gsc_resource_key(config, prop.credential)
    days = partition_days(context)
    gsc = getattr(context.resources, gsc_key)
    stop_event = threading.Event()
    # Retry waits (quota, transient faults) show in the run's log, saying what they wait for.
    # Before the warehouse: a bad key or endpoint fails here, leaving the warehouse as it was.
    client = gsc.client(stop_event, log=context.log.warning)
    warehouse = getattr(context.resources, warehouse_resource_key(config)).open()
    # The report's table exists once its first day is written: read its description then, once.
    table = functools.cache(lambda: warehouse.describe_table(report.table))
    written: dict[str, dict[str, object]] = {}
    progress_every = max(1, len(days) // 10)

    def on_partition(result: PartitionResult) -> None:
        metadata = {
            **result.metadata(),
            **table_metadata(table(), result.rows),
        }
        written[result.day.isoformat()] = metadata
        context.add_asset_metadata(metadata, partition_key=result.day.isoformat())
        done = len(written)
        # About ten progress lines per step: every line is an event-log write, and the
        # per-day numbers are in the materialization metadata anyway.
        if done % progress_every == 0 or done == len(days):
            context.log.info(
                f"{prop.site_url} {report.name}: {done}/{len(days)} days written "
                f"(last {result.day}: {result.rows:,} rows in {result.pages} page(s))"
            )

    try:
        sync_days(
            client,
            warehouse,
            prop.site_url,
            report,
            days,
            run_id=context.run_id,
            data_state=context.run.tags.get(DATA_STATE_TAG, "final"),
            concurrency=gsc.step_concurrency,
            stop_event=stop_event,
            on_partition=on_partition,
            on_plan=context.log.info,
        )
    except BaseException as exc:
        # Dagster records no materialization for a step that fails (or is terminated), yet
        # the days written before it are complete: record them, so the repair sensor and
        # the UI see exactly which days are still missing. The ledger says which: a day
        # committed at the moment of a Terminate (before its callback ran) is there too.
        committed = _committed(context, warehouse, prop.site_url, report)
        for day, metadata in sorted((committed | written).items()):
            context.log_event(
                dg.AssetMaterialization(context.asset_key, partition=day, metadata=metadata)
            )
        restated = aggregation_rejected(exc, prop.site_url, report)
        if restated is not exc:
            raise restated from exc
        raise
    finally:
        # A terminated run raises here from the wait; no new API call may start after it.
        stop_event.set()
    # Every table of the property: in-run checks compare reports (site totals vs page x query).
    warehouse.ensure_schema(prop.report_objects())
    # Prove this run's days complete and exact before calling it done.
    yield dg.MaterializeResult(asset_key=context.asset_key)
    yield from in_run_check_results(
        warehouse, context.asset_key, prop, report, days, planned_check_days(context.run),
        context.log,
    )


def build_fetch_asset(
    prop: PropertyConfig,
    report: Report,
    config: PipelineConfig,
    execute: FetchExecute = fetch_partitions,
) -> dg.AssetsDefinition:
    props = GscAssetProps(config, prop, report)
    spec = fetch_asset_spec(config, prop, report)

    # A multi_asset of one asset, for `can_subset`: its check outputs are then optional, so a
    # check that measured nothing yields no result (Dagster shows it skipped). A plain @asset
    # fails the step when any selected check yields none.
    @dg.multi_asset(
        name="__".join(spec.key.path),
        specs=[spec],
        partitions_def=daily_partitions(config),
        backfill_policy=dg.BackfillPolicy.multi_run(config.backfill_days_per_run),
        pool=config.pools[prop.credential],
        required_resource_keys={
            gsc_resource_key(config, prop.credential),
            warehouse_resource_key(config),
        },
        check_specs=fetch_check_specs(spec.key, prop, report),
        can_subset=True,
    )
    @input_errors_without_trace(f"{prop.site_url} {report.name}")
    def fetch(context: dg.AssetExecutionContext) -> Iterator[FetchResult]:
        yield from execute(context, props)

    return fetch


def build_sitemaps_asset(
    config: PipelineConfig, prop: PropertyConfig, tags: dict[str, str]
) -> dg.AssetsDefinition:
    """The property's submitted sitemaps, snapshotted daily: indexing context beside traffic.

    Unpartitioned (sitemaps.list has no dates) and in the credential's pool like every API
    caller; the automation sensor (which targets `tags`) materializes it each morning.
    """
    gsc_key = gsc_resource_key(config, prop.credential)
    warehouse_key = warehouse_resource_key(config)

    @dg.asset(
        key=sitemaps_asset_key(config, prop),
        group_name=config.namespaced(prop.key),
        description=(
            f"Sitemaps submitted for {prop.site_url} (sitemaps.list): path, type, last "
            f"submitted/downloaded, pending, warnings, errors, contents. Table {SITEMAPS_TABLE}."
        ),
        pool=config.pools[prop.credential],
        required_resource_keys={gsc_key, warehouse_key},
        kinds={*GSC_KINDS, warehouse_kind()},
        owners=list(config.owners),
        tags=tags,
        automation_condition=dg.AutomationCondition.on_cron(SITEMAPS_CRON, GOOGLE_TIMEZONE),
        metadata={"site_url": prop.site_url, "table": SITEMAPS_TABLE},
    )
    def sitemaps(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        client = getattr(context.resources, gsc_key).client()
        warehouse = getattr(context.resources, warehouse_key).open()
        rows = snapshot_sitemaps(client, warehouse, prop.site_url)
        pending = sum(rows.column("is_pending").to_pylist())
        return dg.MaterializeResult(
            metadata={
                **table_metadata(warehouse.describe_table(SITEMAPS_TABLE), rows.num_rows),
                "pending_sitemaps": pending,
                "errors": sum(rows.column("errors").to_pylist()),
                "warnings": sum(rows.column("warnings").to_pylist()),
                "urls_submitted": sum(rows.column("urls_submitted").to_pylist()),
            }
        )

    return sitemaps


def build_sitemaps_assets(
    config: PipelineConfig, tags: dict[str, str]
) -> list[dg.AssetsDefinition]:
    return [build_sitemaps_asset(config, prop, tags) for prop in config.properties if prop.sitemaps]


def build_fetch_assets(
    config: PipelineConfig, execute: FetchExecute = fetch_partitions
) -> list[dg.AssetsDefinition]:
    return [
        build_fetch_asset(prop, report, config, execute)
        for prop in config.properties
        for report in prop.report_objects()
    ]
