"""`url_lifetime_stats`: downstream of the fetching assets, refreshed in its own runs.

Declarative automation, not the fetch runs, materializes it: an automation sensor declared
RUNNING evaluates a condition that fires when any upstream partition was newly updated. Unlike
`AutomationCondition.eager()` it ignores missing and in-progress upstream partitions, so a long
backfill (most partitions still missing) refreshes the stats as batches land instead of stalling
until the end. It is unpartitioned and outside the `gsc_api` pools: it makes no API calls, and a
refresh costs in proportion to the days that changed (see `gsc_pipeline.lifetime`).
"""

import dagster as dg

from gsc_pipeline import lifetime
from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.defs.keys import declaration_key, fetch_asset_key
from gsc_pipeline.defs.names import AUTOMATED_BY_TAG, STATS_AUTOMATION_SENSOR, STATS_GROUP
from gsc_pipeline.defs.resources import warehouse_resource_key
from gsc_pipeline.defs.translator import table_metadata, warehouse_kind
from gsc_pipeline.reports import PAGE, PAGE_QUERY

URL_LIFETIME_STATS = dg.AssetKey("url_lifetime_stats")


def automation_tags(config: PipelineConfig) -> dict[str, str]:
    return {AUTOMATED_BY_TAG: config.namespaced(STATS_AUTOMATION_SENSOR)}


def stats_asset_key(config: PipelineConfig) -> dg.AssetKey:
    return declaration_key(config, *URL_LIFETIME_STATS.path)


def lifetime_properties(config: PipelineConfig) -> list[PropertyConfig]:
    """Properties with both source reports (page for totals, page_query for the top query)."""
    return [p for p in config.properties if {PAGE.name, PAGE_QUERY.name} <= set(p.reports)]


def stats_condition() -> dg.AutomationCondition:
    """Run when an upstream partition was updated since this asset was last requested/updated,
    unless a refresh is already running or fetch runs are still writing upstream days.

    Missing upstream partitions never hold it back. In-progress ones do: on DuckDB a refresh
    holds the file's single write lock, and the benchmark showed refreshes started mid-backfill
    stalling every fetch step's write (and so the API) for tens of seconds. Waiting for the
    fetch runs to finish keeps the stats off the ingestion's critical path; they catch up in
    one incremental refresh afterwards.
    """
    return (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.in_progress()
        & ~dg.AutomationCondition.any_deps_in_progress()
    ).with_label("upstream_days_landed_and_fetches_idle")


def build_stats_asset(config: PipelineConfig) -> dg.AssetsDefinition | None:
    props = lifetime_properties(config)
    if not props:
        return None
    sites = [p.site_url for p in props]
    warehouse_key = warehouse_resource_key(config)

    @dg.asset(
        key=stats_asset_key(config),
        group_name=config.namespaced(STATS_GROUP),
        description=(
            "Per (property, search type, page), every search type the page reports fetch: "
            "first/last day seen, clicks, impressions, ctr, "
            "impression-weighted average position, active days, top query by clicks. "
            f"Table {lifetime.STATS_TABLE}, refreshed incrementally from the days that changed."
        ),
        deps=[fetch_asset_key(config, p, r) for p in props for r in (PAGE, PAGE_QUERY)],
        automation_condition=stats_condition(),
        tags=automation_tags(config),
        required_resource_keys={warehouse_key},
        kinds={"python", warehouse_kind()},
        owners=list(config.owners),
    )
    def url_lifetime_stats(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        warehouse = getattr(context.resources, warehouse_key).open()
        warehouse.ensure_schema([PAGE, PAGE_QUERY])
        result = lifetime.refresh(warehouse, sites)
        rows = warehouse.read_sql(f"SELECT COUNT(*) AS n FROM {lifetime.STATS_TABLE}")["n"]
        context.log.info(
            f"url_lifetime_stats: folded in {result.days_refreshed} changed day(s), "
            f"{result.source_rows_read:,} source rows read, {result.rows_written:,} rows written"
        )
        table = warehouse.describe_table(lifetime.STATS_TABLE)
        return dg.MaterializeResult(
            metadata={**result.metadata(), **table_metadata(table, int(rows.iloc[0]))}
        )

    return url_lifetime_stats


def build_stats_automation_sensor(config: PipelineConfig) -> dg.AutomationConditionSensorDefinition:
    """Materializes url_lifetime_stats and the sitemaps snapshots, and runs the daily
    whole-history checks: the assets tagged with `automation_tags` (the stats asset, the
    sitemaps snapshots, each fetching asset's history) and their checks.

    Declared RUNNING: an automation sensor starts STOPPED otherwise, and the stats would silently
    never refresh on a fresh deployment.
    """
    ((tag, name),) = automation_tags(config).items()
    return dg.AutomationConditionSensorDefinition(
        name,
        target=dg.AssetSelection.tag(tag, name, include_sources=True),
        description=(
            "Refreshes url_lifetime_stats after fetch runs land new days, snapshots sitemaps "
            "daily, and runs each report's whole-history checks daily."
        ),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
