"""The daily restatement audit, one asset per property: `gsc_audit/<property>`.

An asset, not a sensor's side call, so its requests go through the credential's pool like
every other API caller; the automation sensor materializes it each morning after the refresh.
What it finds (`gsc_restatements`) is re-fetched by `restatement_sensor`.
"""

import dagster as dg

from gsc_pipeline import audit
from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.constants import GOOGLE_TIMEZONE
from gsc_pipeline.defs.keys import audit_asset_key
from gsc_pipeline.defs.names import AUDIT_CRON
from gsc_pipeline.defs.resources import gsc_resource_key, warehouse_resource_key
from gsc_pipeline.search_calendar import pacific_today


def build_audit_asset(
    config: PipelineConfig, prop: PropertyConfig, tags: dict[str, str]
) -> dg.AssetsDefinition:
    gsc_key = gsc_resource_key(config, prop.credential)
    warehouse_key = warehouse_resource_key(config)
    reports = prop.report_objects()
    search_types = tuple(sorted({t for report in reports for t in report.search_types}))

    @dg.asset(
        key=audit_asset_key(config, prop),
        group_name=config.namespaced(prop.key),
        description=(
            f"Daily restatement audit of {prop.site_url}: per search type one request grouped "
            "by date over the 16-month window, compared with the stored daily totals; days "
            f"Google changed after calling them final go to {audit.RESTATEMENTS_TABLE} "
            "(before/after) and restatement_sensor re-fetches them."
        ),
        pool=config.pools[prop.credential],
        required_resource_keys={gsc_key, warehouse_key},
        kinds={"googlesearchconsole", "python"},
        tags=tags,
        automation_condition=dg.AutomationCondition.on_cron(AUDIT_CRON, GOOGLE_TIMEZONE),
        metadata={"site_url": prop.site_url, "table": audit.RESTATEMENTS_TABLE},
    )
    def restatement_audit(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        client = getattr(context.resources, gsc_key).client(log=context.log.warning)
        warehouse = getattr(context.resources, warehouse_key).open()
        result = audit.audit_property(
            client, warehouse, prop.site_url, search_types, reports, pacific_today()
        )
        days = [day.isoformat() for day in result.restated_days]
        if days:
            context.log.warning(
                f"{prop.site_url}: Google restated {len(days)} final day(s) ({days[0]} to "
                f"{days[-1]}); restatement_sensor re-fetches them"
            )
        return dg.MaterializeResult(
            metadata={
                "restated_day_count": len(days),
                "restated_days": days,
                "audited_days": result.audited_days,
                "google_final_before": result.final_before.isoformat(),
                "requests": len(search_types),
            }
        )

    return restatement_audit


def build_audit_assets(config: PipelineConfig, tags: dict[str, str]) -> list[dg.AssetsDefinition]:
    return [build_audit_asset(config, prop, tags) for prop in config.properties]
