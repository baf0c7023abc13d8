"""Whole-history checks of what Google changed after a day was stored (`gsc_pipeline.audit`):

- `restated_days` (WARN): the final days Google restated, before/after, and those this report
  has not re-fetched since (`restatement_sensor` requests them);
- `fresh_days_finalized` (ERROR): fresh days Google has called final for more than
  `audit.FINALIZE_GRACE_DAYS` day(s) (the finalization sensor should have replaced them).

Like the `*_all_days` checks they judge each fetching asset's `history`, daily after the
refresh, or on demand from the UI.
"""

from collections.abc import Iterable

import dagster as dg

from gsc_pipeline import audit
from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.defs.checks import all_days_condition, history_asset_key
from gsc_pipeline.defs.keys import fetch_asset_key
from gsc_pipeline.defs.resources import warehouse_resource_key
from gsc_pipeline.reports import Report

_CHECKS = {
    audit.RESTATED_DAYS: (
        audit.restated_days,
        dg.AssetCheckSeverity.WARN,
        "Final days whose totals Google changed after they were stored (daily audit), and "
        "those not re-fetched since.",
    ),
    audit.FRESH_DAYS_FINALIZED: (
        audit.fresh_days_finalized,
        dg.AssetCheckSeverity.ERROR,
        f"No day stays fresh (dataState=all) more than {audit.FINALIZE_GRACE_DAYS} day(s) "
        "after Google calls it final.",
    ),
}


def build_google_check(
    asset_key: dg.AssetKey, prop: PropertyConfig, report: Report, warehouse_key: str
) -> dg.AssetChecksDefinition:
    history = history_asset_key(asset_key)

    @dg.multi_asset_check(
        name=f"{'_'.join(asset_key.path)}_google_changes",
        specs=[
            dg.AssetCheckSpec(
                name, asset=history, description=text, automation_condition=all_days_condition()
            )
            for name, (_, _, text) in _CHECKS.items()
        ],
        required_resource_keys={warehouse_key},
        can_subset=True,
    )
    def google_changes(context: dg.AssetCheckExecutionContext) -> Iterable[dg.AssetCheckResult]:
        warehouse = getattr(context.resources, warehouse_key).open()
        for name, (check, severity, _) in _CHECKS.items():
            if dg.AssetCheckKey(history, name) not in context.selected_asset_check_keys:
                continue
            outcome = check(warehouse, prop.site_url, report)
            if not outcome.evaluated:
                context.log.info(f"{history.to_user_string()} {name} not evaluated: "
                                 f"{outcome.metadata['not_evaluated']}")  # fmt: skip
                continue
            yield dg.AssetCheckResult(
                asset_key=history,
                check_name=name,
                passed=outcome.passed,
                severity=severity,
                metadata=outcome.metadata,
            )

    return google_changes


def build_google_checks(config: PipelineConfig) -> list[dg.AssetChecksDefinition]:
    return [
        build_google_check(
            fetch_asset_key(config, prop, report), prop, report, warehouse_resource_key(config)
        )
        for prop in config.properties
        for report in prop.report_objects()
    ]
