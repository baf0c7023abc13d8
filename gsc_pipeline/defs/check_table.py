"""Every asset check, one row each: what it is called, says, weighs, and who fixes a failure.

The check specs on the fetching assets, the in-run results, the whole-history checks on each
asset's `history`, the repair sensor's watch list and the checks a scheduled (daily or hourly)
fetch run evaluates are all read from `CHECKS`: adding a check is adding a row
(docs/howto/add-a-check.md). The measuring itself is plain Python in `gsc_pipeline.proof`
(and `audit`, `reconcile`); a row's `evaluate` only adapts it to `Subject`.
"""

import datetime as dt
import enum
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dagster as dg

from gsc_pipeline import audit, proof, reconcile
from gsc_pipeline.config import PropertyConfig

# The whole-history twin of an in-run check carries ALL_DAYS_SUFFIX (same asset, distinct name).
from gsc_pipeline.defs.names import ALL_DAYS_SUFFIX
from gsc_pipeline.reports import PAGE_QUERY, SITE, Report
from gsc_pipeline.warehouse import Warehouse


class Scope(enum.Enum):
    # In every fetch run over the days it wrote (on the fetching asset), and daily over the
    # whole history (its `_all_days` twin on the asset's history).
    IN_RUN = "in-run"
    # Daily over the whole history only: it compares reports (or Google with the stored days),
    # and in a run one report's step often finished before the other's wrote the same days.
    WHOLE_HISTORY = "whole-history"


@dataclass(frozen=True)
class Subject:
    """What a check judges: one fetching asset's stored days, a run's (`days`) or every day
    (None), with the partitions Dagster calls materialized (whole history only)."""

    warehouse: Warehouse
    prop: PropertyConfig
    report: Report
    days: Sequence[dt.date] | None = None
    expected_days: Iterable[dt.date] | None = None

    @functools.cached_property
    def unfetched(self) -> list[str]:
        """The ledger and the report's table, those not created yet: asked once for all the
        subject's checks (each ask is a catalog query, ~35 ms of CPU on DuckDB)."""
        return proof.unfetched_tables(self.warehouse, self.report)


def _every_report(prop: PropertyConfig, report: Report) -> bool:
    return True


def _site_with_page_query(prop: PropertyConfig, report: Report) -> bool:
    """The site asset of a property that also stores page x query rows: what they compare."""
    return report.name == SITE.name and PAGE_QUERY.name in prop.reports


# What a failed check's `bad_days_fix` says when repair_sensor does not re-fetch its days.
GOOGLES_DATA = (
    "Google's data, not a fetch error: fetching these days again does not change it "
    "(see the check's description)."
)


@dataclass(frozen=True)
class CheckDef:
    name: str
    description: str
    # ERROR: the stored data is wrong (re-fetching fixes it); WARN: Google's own limits.
    severity: dg.AssetCheckSeverity
    scope: Scope
    evaluate: Callable[[Subject], proof.CheckOutcome]
    # repair_sensor re-fetches the days it fails.
    repairs: bool = False
    # Only hourly reports carry it.
    hourly: bool = False
    # It reads the ledger and the report's table: before the report's first fetch it has nothing
    # to judge (`proof.before_first_fetch`), and `evaluate` is not called.
    reads_report: bool = False
    # Which other fetching assets carry it (besides `hourly`).
    applies: Callable[[PropertyConfig, Report], bool] = _every_report
    # `bad_days_fix` when repair_sensor does not act (`repairs` False).
    fix: str = GOOGLES_DATA
    # Its name on the history. restated_days and fresh_days_finalized never had an in-run twin
    # and keep their first names: renaming a check orphans its evaluations in the UI.
    history_suffix: str = ALL_DAYS_SUFFIX

    @property
    def history_name(self) -> str:
        return self.name + self.history_suffix

    @property
    def history_description(self) -> str:
        # A twin says which of the two it is; the others exist on the history alone.
        return self.description + (" Whole history." if self.history_suffix else "")

    def carried_by(self, prop: PropertyConfig, report: Report) -> bool:
        return (report.hourly or not self.hourly) and self.applies(prop, report)

    def judge(self, subject: Subject) -> proof.CheckOutcome:
        if self.reads_report and (absent := subject.unfetched):
            return proof.before_first_fetch(self.name, absent, subject.expected_days)
        return self.evaluate(subject)


CHECKS: tuple[CheckDef, ...] = (
    CheckDef(
        proof.NO_MISSING_BATCHES,
        "Every day's pages run 0, L, 2L, ... and end on a short page; every materialized day "
        "has ledger entries for every search type.",
        dg.AssetCheckSeverity.ERROR,
        Scope.IN_RUN,
        lambda s: proof.no_missing_batches(
            s.warehouse, s.prop.site_url, s.report, s.days, expected_days=s.expected_days
        ),
        repairs=True,
        reads_report=True,
    ),
    CheckDef(
        proof.NO_DUPLICATE_BATCHES,
        "No page fetched twice, no natural key stored twice.",
        dg.AssetCheckSeverity.ERROR,
        Scope.IN_RUN,
        lambda s: proof.no_duplicate_batches(s.warehouse, s.prop.site_url, s.report, s.days),
        repairs=True,
        reads_report=True,
    ),
    CheckDef(
        proof.ROWS_MATCH_LEDGER,
        "Row counts and click/impression sums per day equal the ledger.",
        dg.AssetCheckSeverity.ERROR,
        Scope.IN_RUN,
        lambda s: proof.rows_match_ledger(s.warehouse, s.prop.site_url, s.report, s.days),
        repairs=True,
        reads_report=True,
    ),
    CheckDef(
        proof.TRUNCATED_DAYS,
        "Days that hit Google's 50,000 rows/day cap (rows beyond are lost).",
        dg.AssetCheckSeverity.WARN,
        Scope.IN_RUN,
        lambda s: proof.truncated_days(s.warehouse, s.prop.site_url, s.report, s.days),
        reads_report=True,
    ),
    CheckDef(
        proof.ANONYMIZED_SHARE,
        "Share of property clicks missing from page x query rows.",
        dg.AssetCheckSeverity.WARN,
        Scope.WHOLE_HISTORY,
        lambda s: proof.anonymized_share(s.warehouse, s.prop.site_url, PAGE_QUERY, s.days),
        applies=_site_with_page_query,
    ),
    CheckDef(
        reconcile.CAPPED_REMAINDER,
        "No day's page x query rows miss rows Google's daily cap cut (every shard under the "
        "cap); the per-day and per-page remainder is in view gsc_remainder.",
        # Rows the cap cut are lost data (sharding or a larger shard_budget recovers them).
        dg.AssetCheckSeverity.ERROR,
        Scope.WHOLE_HISTORY,
        lambda s: reconcile.capped_remainder(s.warehouse, s.prop.site_url, s.days),
        applies=_site_with_page_query,
        fix="Google's daily cap cut these rows: set `shard_budget` higher (or `shard:` finer) "
        "for page_query, then Materialize these partitions of it.",
    ),
    CheckDef(
        proof.HOURS_OF_DAY,
        "Every stored hour of a complete day lies in that day (Pacific) and is stored once.",
        dg.AssetCheckSeverity.ERROR,
        Scope.IN_RUN,
        lambda s: proof.hours_of_day(s.warehouse, s.prop.site_url, s.report, s.days),
        repairs=True,
        hourly=True,
    ),
    CheckDef(
        proof.INCOMPLETE_HOURS_REPLACED,
        "No day still holds incomplete hours once Google reports it complete.",
        dg.AssetCheckSeverity.ERROR,
        Scope.IN_RUN,
        lambda s: proof.incomplete_hours_replaced(s.warehouse, s.prop.site_url, s.report, s.days),
        repairs=True,
        hourly=True,
    ),
    CheckDef(
        audit.RESTATED_DAYS,
        "Final days whose totals Google changed after they were stored (daily audit), and "
        "those not re-fetched since.",
        dg.AssetCheckSeverity.WARN,
        Scope.WHOLE_HISTORY,
        lambda s: audit.restated_days(s.warehouse, s.prop.site_url, s.report),
        fix="restatement_sensor re-fetches these days within a few minutes (Runs: tagged "
        "gsc/restated=true); or Materialize these partitions yourself.",
        history_suffix="",
    ),
    CheckDef(
        audit.FRESH_DAYS_FINALIZED,
        f"No day stays fresh (dataState=all) more than {audit.FINALIZE_GRACE_DAYS} day(s) "
        "after Google calls it final.",
        dg.AssetCheckSeverity.ERROR,
        Scope.WHOLE_HISTORY,
        lambda s: audit.fresh_days_finalized(s.warehouse, s.prop.site_url, s.report),
        fix="finalization_sensor should have replaced these days with final data: see its "
        "ticks (Automation) for why not; or Materialize these partitions yourself.",
        history_suffix="",
    ),
)


def check_def(name: str) -> CheckDef:
    """The row of a check by its (in-run or history) name."""
    return next(c for c in CHECKS if name in (c.name, c.history_name))


def checks_of(prop: PropertyConfig, report: Report, scope: Scope | None = None) -> list[CheckDef]:
    """The checks one fetching asset carries (of one scope, or all)."""
    return [
        c for c in CHECKS if c.carried_by(prop, report) and (scope is None or c.scope is scope)
    ]


def check_names(prop: PropertyConfig, report: Report) -> list[str]:
    """The in-run checks of one fetching asset (each also has a whole-history twin)."""
    return [c.name for c in checks_of(prop, report, Scope.IN_RUN)]
