"""Asset checks on the fetching assets: zero missing and zero duplicate batches, proven.

Two layers, because partitioned asset checks do not map onto ranged runs in Dagster 1.13:
- check specs on each fetching asset, evaluated in the asset body over the run's whole range
  (`in_run_check_results`), so every materialization says whether its own days are complete;
- one unpartitioned `@dg.multi_asset_check` per fetching asset over the whole history
  (`*_all_days`), every check the asset carries (the in-run ones' twins, the cross-report ones
  and those of Google's changes), naming the exact bad days for the repair sensor.
  They target the fetching asset's `history` (an unpartitioned, non-materializable asset: the
  stored days as a whole), not the asset: Dagster adds every check of an asset to each run
  that materializes it, so on the asset itself every materialization from the UI showed them
  "Skipped" and hid their last real result.
Which checks there are, and what each weighs, is the table in `defs/check_table.py`; the SQL
lives in `gsc_pipeline.proof`. This module only maps outcomes to Dagster specs and results, as
text a user reads on the check's page: a sentence first ("1 day: 199 rows missing ..."), the bad
days, what to do next (numbers as text too: one evaluation per run or day plots as single points).
"""

import datetime as dt
import logging
from collections.abc import Iterable, Sequence

import dagster as dg

from gsc_pipeline import proof
from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.constants import GOOGLE_TIMEZONE
from gsc_pipeline.defs.check_table import (
    Scope,
    Subject,
    check_def,
    check_names,
    checks_of,
)
from gsc_pipeline.defs.keys import fetch_asset_key
from gsc_pipeline.defs.names import ALL_DAYS_CRON, HISTORY
from gsc_pipeline.defs.resources import warehouse_resource_key
from gsc_pipeline.reports import Report
from gsc_pipeline.warehouse import LEDGER_TABLE, Warehouse


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
        dg.AssetCheckSpec(c.name, asset=asset_key, description=c.description)
        for c in checks_of(prop, report, Scope.IN_RUN)
    ]


def repair_check_keys(
    asset_key: dg.AssetKey, prop: PropertyConfig, report: Report
) -> list[dg.AssetCheckKey]:
    """The checks of one fetching asset whose failures repair_sensor re-fetches (in-run ones on
    the asset, whole-history ones on its history)."""
    return [
        check_key
        for c in checks_of(prop, report)
        if c.repairs
        for check_key in (
            *([dg.AssetCheckKey(asset_key, c.name)] if c.scope is Scope.IN_RUN else []),
            dg.AssetCheckKey(history_asset_key(asset_key), c.history_name),
        )
    ]


def _outcomes(
    subject: Subject, checks: Iterable[str] | None = None
) -> list[proof.CheckOutcome]:
    """The outcomes of the subject's checks: in-run ones over a run's days, every one (or those
    named `checks`, by history name) over the whole history (`days` None)."""
    scope = Scope.IN_RUN if subject.days is not None else None
    wanted = None if checks is None else set(checks)
    subject.warehouse.refresh_statistics([subject.report.table, LEDGER_TABLE])
    return [
        c.judge(subject)
        for c in checks_of(subject.prop, subject.report, scope)
        if wanted is None or c.history_name in wanted
    ]


def _text(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "none"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def _next_step(outcome: proof.CheckOutcome, fetching_key: dg.AssetKey) -> str:
    if not (check := check_def(outcome.name)).repairs:
        return check.fix
    return (
        "repair_sensor re-fetches exactly these days within a few minutes (Runs: a run launched "
        f"by repair_sensor); or Materialize these partitions of {fetching_key.to_user_string()} "
        f"yourself. Then run the whole-history checks to confirm: "
        f"{history_asset_key(fetching_key).to_user_string()}, Checks tab, Execute all."
    )


# The check's page lists metadata sorted by key: these names put the sentence, the bad days and
# what to do about them before the measurements.
ASSESSMENT = "assessment"
BAD_DAYS = "bad_days"
BAD_DAYS_FIX = "bad_days_fix"


def check_metadata(outcome: proof.CheckOutcome, fetching_key: dg.AssetKey) -> dict[str, str]:
    """What the check's page shows, all as text: the sentence, the bad days, what to do next,
    then the measurements. The repair sensor reads `bad_days` back as data."""
    assessment = outcome.summary()
    if not outcome.passed:
        assessment += "; repair requested" if check_def(outcome.name).repairs else ""
    metadata = {ASSESSMENT: assessment}
    if outcome.bad_days:
        metadata[BAD_DAYS] = ", ".join(outcome.bad_partitions)
        metadata[BAD_DAYS_FIX] = _next_step(outcome, fetching_key)
    return metadata | {key: _text(value) for key, value in outcome.metadata.items()}


def _results(
    outcomes: Iterable[proof.CheckOutcome],
    asset_key: dg.AssetKey,
    fetching_key: dg.AssetKey,
    log: logging.Logger | dg.DagsterLogManager,
    history: bool = False,
) -> list[dg.AssetCheckResult]:
    """A result per evaluated outcome. One that measured nothing yields no result, so Dagster
    shows the check skipped (never passed), and the log says why."""
    results = []
    for outcome in outcomes:
        check = check_def(outcome.name)
        name = check.history_name if history else check.name
        if not outcome.evaluated:
            log.info(
                f"{asset_key.to_user_string()} {name} not evaluated: "
                f"{outcome.metadata['not_evaluated']}"
            )
            continue
        metadata = check_metadata(outcome, fetching_key)
        results.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=name,
                passed=outcome.passed,
                severity=check.severity,
                metadata=metadata,
                # The execution history's Description column: each row says what it found.
                description=metadata[ASSESSMENT],
            )
        )
    return results


def planned_check_days(run: dg.DagsterRun) -> list[str] | None:
    """The days Dagster planned each in-run check evaluation of `run` for, or None for one.

    A backfill run carries its partitions subset, and Dagster then plans every check of its
    assets once per day of it (check specs here have no partitions of their own); a day that
    gets no result reads "Skipped" once the run ends. Other runs plan each check once. This is
    Dagster's own computation at planning time (RunDomain._log_asset_planned_events).
    """
    subset = run.get_resolved_partitions_subset_for_events(None)
    return sorted(subset.get_partition_keys()) if subset is not None else None


def _day_evaluations(
    outcome: proof.CheckOutcome, asset_key: dg.AssetKey, days: Sequence[str]
) -> list[dg.AssetCheckEvaluation]:
    """One evaluation per planned day the outcome measured, failed days last (the check's
    latest status is then a failure if any day failed). A day it did not measure gets none."""
    checked = set(outcome.bad_partitions) | {d.isoformat() for d in outcome.checked_days}
    run_metadata = check_metadata(outcome, asset_key)
    run_assessment = run_metadata.pop(ASSESSMENT)
    run_metadata.pop(BAD_DAYS, None)
    evaluations = []
    for day in sorted((d for d in days if d in checked), key=outcome.bad_partitions.__contains__):
        bad = day in outcome.bad_partitions
        # The day's verdict first, then the run's (whose measurements the rest are).
        metadata = {
            ASSESSMENT: f"{day}: {'failed' if bad else 'passed'}",
            f"{ASSESSMENT}_of_run": run_assessment,
        }
        evaluations.append(
            dg.AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=outcome.name,
                passed=not bad,
                severity=check_def(outcome.name).severity,
                metadata=metadata | ({BAD_DAYS: day} if bad else {}) | run_metadata,
                description=metadata[ASSESSMENT],
                partition=day,
            )
        )
    return evaluations


def in_run_check_results(
    warehouse: Warehouse,
    asset_key: dg.AssetKey,
    prop: PropertyConfig,
    report: Report,
    days: Sequence[dt.date],
    planned_days: Sequence[str] | None,
    log: logging.Logger | dg.DagsterLogManager,
) -> list[dg.AssetCheckResult | dg.AssetCheckEvaluation]:
    """The checks over exactly the days this run wrote (called from the asset body): one result
    each, or one per day where Dagster planned them per day (`planned_check_days`)."""
    outcomes = _outcomes(Subject(warehouse, prop, report, days))
    if planned_days is None:
        return list(_results(outcomes, asset_key, asset_key, log))
    evaluations: list[dg.AssetCheckResult | dg.AssetCheckEvaluation] = []
    for outcome in outcomes:
        measured = _day_evaluations(outcome, asset_key, planned_days) if outcome.evaluated else []
        if len(measured) < len(planned_days):
            reason = outcome.metadata.get("not_evaluated", "no data for them")
            log.info(
                f"{asset_key.to_user_string()} {outcome.name} not evaluated for "
                f"{len(planned_days) - len(measured)} of {len(planned_days)} days: {reason}"
            )
        evaluations += measured
    return evaluations


def all_days_condition() -> dg.AutomationCondition:
    return dg.AutomationCondition.cron_tick_passed(
        ALL_DAYS_CRON, GOOGLE_TIMEZONE
    ) & ~dg.AutomationCondition.in_progress()


def build_history_asset(
    asset_key: dg.AssetKey, group_name: str | None, tags: dict[str, str]
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
    """The whole-history checks of one fetching asset, on its history: every check it carries
    (the in-run ones as `<name>_all_days`), run daily or with Execute in the UI."""
    history = history_asset_key(asset_key)

    @dg.multi_asset_check(
        name=f"{'_'.join(asset_key.path)}_all_days",
        specs=[
            dg.AssetCheckSpec(
                c.history_name,
                asset=history,
                description=c.history_description,
                automation_condition=all_days_condition(),
            )
            for c in checks_of(prop, report)
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
        selected = [k.name for k in context.selected_asset_check_keys]
        outcomes = _outcomes(Subject(warehouse, prop, report, None, expected), selected)
        yield from _results(outcomes, history, asset_key, context.log, history=True)

    return all_days


def build_all_days_checks(config: PipelineConfig) -> list[dg.AssetChecksDefinition]:
    return [
        build_all_days_check(
            fetch_asset_key(config, prop, report), prop, report, warehouse_resource_key(config)
        )
        for prop in config.properties
        for report in prop.report_objects()
    ]
