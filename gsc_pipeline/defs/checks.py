"""Asset checks on the fetching assets: zero missing and zero duplicate batches, proven.

Two layers, because partitioned asset checks do not map onto ranged runs in Dagster 1.13:
- check specs on each fetching asset, evaluated in the asset body over the run's whole range
  (`in_run_check_results`), so every materialization says whether its own days are complete;
- one unpartitioned `@dg.multi_asset_check` per fetching asset over the whole history
  (`*_all_days`), listing the exact bad partitions in its metadata for the repair sensor.
  They target the fetching asset's `history` (an unpartitioned, non-materializable asset: the
  stored days as a whole), not the asset: Dagster adds every check of an asset to each run
  that materializes it, so on the asset itself every materialization from the UI showed them
  "Skipped" and hid their last real result.
The SQL lives in `gsc_pipeline.proof`; this module only maps outcomes to Dagster results.
"""

import datetime as dt
import logging
from collections.abc import Iterable, Sequence

import dagster as dg

from gsc_pipeline import proof, reconcile
from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.defs.keys import fetch_asset_key
from gsc_pipeline.defs.partitions import GSC_TIMEZONE
from gsc_pipeline.defs.resources import warehouse_resource_key
from gsc_pipeline.reports import PAGE_QUERY, SITE, Report
from gsc_pipeline.warehouse import Warehouse

# The whole-history twin of each in-run check carries this suffix (same asset, distinct name).
ALL_DAYS_SUFFIX = "_all_days"
HISTORY = "history"
# Whole-history checks run once a day after the refresh schedule (by the automation sensor),
# not inside fetch runs: each is a full scan, and it would re-flag days a repair is fixing.
ALL_DAYS_CRON = "30 8 * * *"
# Data problems (re-fetching fixes them) fail as errors; Google's own limits only warn.
_SEVERITY = {
    proof.NO_MISSING_BATCHES: dg.AssetCheckSeverity.ERROR,
    proof.NO_DUPLICATE_BATCHES: dg.AssetCheckSeverity.ERROR,
    proof.ROWS_MATCH_LEDGER: dg.AssetCheckSeverity.ERROR,
    proof.TRUNCATED_DAYS: dg.AssetCheckSeverity.WARN,
    proof.ANONYMIZED_SHARE: dg.AssetCheckSeverity.WARN,
    # Rows the cap cut are lost data (sharding or a larger shard_budget recovers them).
    reconcile.CAPPED_REMAINDER: dg.AssetCheckSeverity.ERROR,
    proof.HOURS_OF_DAY: dg.AssetCheckSeverity.ERROR,
    proof.INCOMPLETE_HOURS_REPLACED: dg.AssetCheckSeverity.ERROR,
}
_DESCRIPTIONS = {
    proof.NO_MISSING_BATCHES: "Every day's pages run 0, L, 2L, ... and end on a short page; "
    "every materialized day has ledger entries for every search type.",
    proof.NO_DUPLICATE_BATCHES: "No page fetched twice, no natural key stored twice.",
    proof.ROWS_MATCH_LEDGER: "Row counts and click/impression sums per day equal the ledger.",
    proof.TRUNCATED_DAYS: "Days that hit Google's 50,000 rows/day cap (rows beyond are lost).",
    proof.ANONYMIZED_SHARE: "Share of property clicks missing from page x query rows.",
    reconcile.CAPPED_REMAINDER: "No day's page x query rows miss rows Google's daily cap cut "
    "(every shard under the cap); the per-day and per-page remainder is in view gsc_remainder.",
    proof.HOURS_OF_DAY: "Every stored hour of a complete day lies in that day (Pacific) and is "
    "stored once.",
    proof.INCOMPLETE_HOURS_REPLACED: "No day still holds incomplete hours once Google reports "
    "it complete.",
}
# Checks only hourly reports carry: the per-hour counterparts of the daily ones.
_HOURLY_CHECKS = {
    proof.HOURS_OF_DAY: proof.hours_of_day,
    proof.INCOMPLETE_HOURS_REPLACED: proof.incomplete_hours_replaced,
}


def check_names(prop: PropertyConfig, report: Report) -> list[str]:
    names = [proof.NO_MISSING_BATCHES, proof.NO_DUPLICATE_BATCHES, proof.ROWS_MATCH_LEDGER,
             proof.TRUNCATED_DAYS]  # fmt: skip
    # On the site asset, not page_query: it compares page x query rows with the site totals,
    # and a run writes a property's reports in key order (page, page_query, site), so only the
    # site step finds both reports' days stored (on page_query it measured nothing, ever).
    if report.name == SITE.name and PAGE_QUERY.name in prop.reports:
        names += [proof.ANONYMIZED_SHARE, reconcile.CAPPED_REMAINDER]
    if report.hourly:
        names += list(_HOURLY_CHECKS)
    return names


def in_run_check_keys(
    config: PipelineConfig, asset_keys: Iterable[dg.AssetKey]
) -> list[dg.AssetCheckKey]:
    """The in-run checks of these fetching assets: what a fetch run must evaluate.

    Run requests name them explicitly: left unset, Dagster would add every check targeting the
    assets, the whole-history ones included.
    """
    wanted = set(asset_keys)
    return [
        dg.AssetCheckKey(key, name)
        for prop in config.properties
        for report in prop.report_objects()
        if (key := fetch_asset_key(config, prop, report)) in wanted
        for name in check_names(prop, report)
    ]


def history_asset_key(asset_key: dg.AssetKey) -> dg.AssetKey:
    """`<fetching asset>/history`: what the whole-history checks judge."""
    return dg.AssetKey([*asset_key.path, HISTORY])


def fetch_check_specs(
    asset_key: dg.AssetKey, prop: PropertyConfig, report: Report
) -> list[dg.AssetCheckSpec]:
    """The in-run checks of one fetching asset (not blocking: they describe, repair acts)."""
    return [
        dg.AssetCheckSpec(name, asset=asset_key, description=_DESCRIPTIONS[name])
        for name in check_names(prop, report)
    ]


def _outcomes(
    warehouse: Warehouse,
    prop: PropertyConfig,
    report: Report,
    days: Sequence[dt.date] | None,
    expected_days: Iterable[dt.date] | None = None,
) -> list[proof.CheckOutcome]:
    outcomes = proof.report_checks(
        warehouse, prop.site_url, report, days, expected_days=expected_days
    )
    if proof.ANONYMIZED_SHARE in check_names(prop, report):
        outcomes.append(proof.anonymized_share(warehouse, prop.site_url, PAGE_QUERY, days))
        outcomes.append(reconcile.capped_remainder(warehouse, prop.site_url, days))
    if report.hourly:
        outcomes += [
            check(warehouse, prop.site_url, report, days) for check in _HOURLY_CHECKS.values()
        ]
    return outcomes


def _results(
    outcomes: Iterable[proof.CheckOutcome],
    asset_key: dg.AssetKey,
    log: logging.Logger | dg.DagsterLogManager,
    suffix: str = "",
) -> list[dg.AssetCheckResult]:
    """A result per evaluated outcome. One that measured nothing yields no result, so Dagster
    shows the check skipped (never passed), and the log says why."""
    results = []
    for outcome in outcomes:
        if not outcome.evaluated:
            log.info(
                f"{asset_key.to_user_string()} {outcome.name}{suffix} not evaluated: "
                f"{outcome.metadata['not_evaluated']}"
            )
            continue
        results.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=outcome.name + suffix,
                passed=outcome.passed,
                severity=_SEVERITY[outcome.name],
                metadata=outcome.metadata,
            )
        )
    return results


def in_run_check_results(
    warehouse: Warehouse,
    asset_key: dg.AssetKey,
    prop: PropertyConfig,
    report: Report,
    days: Sequence[dt.date],
    log: logging.Logger | dg.DagsterLogManager,
) -> list[dg.AssetCheckResult]:
    """The checks over exactly the days this run wrote (called from the asset body)."""
    return _results(_outcomes(warehouse, prop, report, days), asset_key, log)


def all_days_condition() -> dg.AutomationCondition:
    return dg.AutomationCondition.cron_tick_passed(
        ALL_DAYS_CRON, GSC_TIMEZONE
    ) & ~dg.AutomationCondition.in_progress()


def build_history_asset(
    asset_key: dg.AssetKey, group_name: str, tags: dict[str, str]
) -> dg.AssetSpec:
    return dg.AssetSpec(
        history_asset_key(asset_key),
        deps=[asset_key],
        group_name=group_name,
        tags=tags,
        description=(
            f"Every day of {asset_key.to_user_string()} stored in the warehouse, as a whole: "
            "the target of its whole-history checks (run daily, or Execute them here)."
        ),
        kinds={"python"},
    )


def unwritten_partitions(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> set[str]:
    """Partitions whose latest planned materialization belongs to a run that ended FAILURE or
    CANCELED, with no materialization since: what a Terminate (or a crash) left missing."""
    storage = instance.event_log_storage
    attempts = storage.get_latest_asset_partition_materialization_attempts_without_materializations(
        asset_key
    )
    run_ids = sorted({run_id for run_id, _ in attempts.values()})
    ended = {
        run.run_id
        for run in instance.get_runs(
            filters=dg.RunsFilter(
                run_ids=run_ids,
                statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
            )
        )
    } if run_ids else set()
    return {partition for partition, (run_id, _) in attempts.items() if run_id in ended}


def build_all_days_check(
    asset_key: dg.AssetKey, prop: PropertyConfig, report: Report, warehouse_key: str
) -> dg.AssetChecksDefinition:
    names = check_names(prop, report)

    @dg.multi_asset_check(
        name=f"{'_'.join(asset_key.path)}_all_days",
        specs=[
            dg.AssetCheckSpec(
                name + ALL_DAYS_SUFFIX,
                asset=history_asset_key(asset_key),
                description=_DESCRIPTIONS[name] + " Whole history.",
                automation_condition=all_days_condition(),
            )
            for name in names
        ],
        required_resource_keys={warehouse_key},
        can_subset=True,
    )
    def all_days(context: dg.AssetCheckExecutionContext) -> Iterable[dg.AssetCheckResult]:
        # Partitions Dagster believes are materialized must all be backed by ledger entries, and
        # the days a failed or terminated run left unwritten are missing until fetched again.
        wanted = context.instance.get_materialized_partitions(asset_key)
        wanted |= unwritten_partitions(context.instance, asset_key)
        expected = [dt.date.fromisoformat(key) for key in wanted]
        warehouse = getattr(context.resources, warehouse_key).open()
        outcomes = _outcomes(warehouse, prop, report, None, expected)
        yield from _results(outcomes, history_asset_key(asset_key), context.log, ALL_DAYS_SUFFIX)

    return all_days


def build_all_days_checks(config: PipelineConfig) -> list[dg.AssetChecksDefinition]:
    return [
        build_all_days_check(
            fetch_asset_key(config, prop, report), prop, report, warehouse_resource_key(config)
        )
        for prop in config.properties
        for report in prop.report_objects()
    ]
