"""The fetching assets: one per (property, report), generated from the config and report table.

Every fetching asset sits in its credential's pool, so Dagster's pool is the worker pool: at most
`pool_limit` steps fetch at once, all drawing from the credential's one quota budget. Backfills
batch `backfill_days_per_run` days per run, because a run costs seconds of CPU to start.
"""

import threading
from collections.abc import Iterator

import dagster as dg

from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.defs.checks import fetch_check_specs, in_run_check_results
from gsc_pipeline.defs.keys import fetch_asset_key, sitemaps_asset_key
from gsc_pipeline.defs.partitions import GSC_TIMEZONE, daily_partitions, partition_days
from gsc_pipeline.defs.resources import gsc_resource_key, warehouse_resource_key
from gsc_pipeline.reports import Report
from gsc_pipeline.sitemaps import SITEMAPS_TABLE, snapshot_sitemaps
from gsc_pipeline.sync import PartitionResult, aggregation_rejected, sync_days

# Run tag choosing the dataState to fetch: the daily schedule sets "all" when fresh_data is on.
DATA_STATE_TAG = "gsc/data_state"


# Sitemaps change rarely: one snapshot each morning (Pacific), after the daily refresh starts.
SITEMAPS_CRON = "15 6 * * *"


def build_fetch_asset(
    prop: PropertyConfig, report: Report, config: PipelineConfig
) -> dg.AssetsDefinition:
    gsc_key = gsc_resource_key(config, prop.credential)
    warehouse_key = warehouse_resource_key(config)
    pool = config.pools[prop.credential]
    asset_key = fetch_asset_key(config, prop, report)
    dims = ", ".join(report.api_dimensions) or "nothing"
    filters = "".join(
        f", where {f.dimension} {f.operator} {f.expression!r}" for f in report.filters
    )

    # A multi_asset of one asset, for `can_subset`: its check outputs are then optional, so a
    # check that measured nothing yields no result (Dagster shows it skipped). A plain @asset
    # fails the step when any selected check yields none.
    @dg.multi_asset(
        name="__".join(asset_key.path),
        specs=[
            dg.AssetSpec(
                asset_key,
                group_name=config.namespaced(prop.key),
                description=(
                    f"Search Console rows for {prop.site_url} grouped by {dims} "
                    f"({report.aggregation_type}; {', '.join(report.search_types)}){filters}, "
                    f"table {report.table}."
                ),
                kinds={"googlesearchconsole", "python"},
                metadata={
                    "site_url": prop.site_url,
                    "table": report.table,
                    "dimensions": dims,
                    "search_types": ", ".join(report.search_types),
                    "filters": filters.removeprefix(", ") or "none",
                },
            )
        ],
        partitions_def=daily_partitions(config),
        backfill_policy=dg.BackfillPolicy.multi_run(config.backfill_days_per_run),
        pool=pool,
        required_resource_keys={gsc_key, warehouse_key},
        check_specs=fetch_check_specs(asset_key, prop, report),
        can_subset=True,
    )
    def fetch(
        context: dg.AssetExecutionContext,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        days = partition_days(context)
        gsc = getattr(context.resources, gsc_key)
        warehouse = getattr(context.resources, warehouse_key).open()
        # Every table of the property: in-run checks compare reports (site totals vs page x query).
        warehouse.ensure_schema(prop.report_objects())
        stop_event = threading.Event()
        # Retry waits (quota, transient faults) show in the run's log, saying what they wait for.
        client = gsc.client(stop_event, log=context.log.warning)
        written: dict[str, dict[str, object]] = {}
        progress_every = max(1, len(days) // 10)

        def on_partition(result: PartitionResult) -> None:
            metadata = {
                **result.metadata(),
                "dagster/row_count": result.rows,
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
            )
        except BaseException as exc:
            # Dagster records no materialization for a step that fails (or is terminated), yet
            # the days written before it are complete: record them, so the repair sensor and
            # the UI see exactly which days are still missing.
            for day, metadata in written.items():
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
        # Prove this run's days complete and exact before calling it done.
        yield dg.MaterializeResult(asset_key=asset_key)
        yield from in_run_check_results(
            warehouse, context.asset_key, prop, report, days, context.log
        )

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
        kinds={"googlesearchconsole", "python"},
        tags=tags,
        automation_condition=dg.AutomationCondition.on_cron(SITEMAPS_CRON, GSC_TIMEZONE),
        metadata={"site_url": prop.site_url, "table": SITEMAPS_TABLE},
    )
    def sitemaps(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        client = getattr(context.resources, gsc_key).client()
        warehouse = getattr(context.resources, warehouse_key).open()
        rows = snapshot_sitemaps(client, warehouse, prop.site_url)
        pending = sum(rows.column("is_pending").to_pylist())
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows.num_rows,
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


def build_fetch_assets(config: PipelineConfig) -> list[dg.AssetsDefinition]:
    return [
        build_fetch_asset(prop, report, config)
        for prop in config.properties
        for report in prop.report_objects()
    ]
