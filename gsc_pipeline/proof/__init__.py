"""Check queries that prove a sync complete and exact, from the fetch ledger and report tables.

No Dagster here: `defs/check_table.py` holds the table of checks (name, severity, what fixes a
failure), `defs/checks.py` turns each `CheckOutcome` into an asset check result; tests call
these functions on crafted warehouses. By role:

- `outcome`: what a check found (`CheckOutcome`) and the sentence a user reads first;
- `ledger`: the ledger's pages complete, once, under the cap; fresh days to finalize;
- `rows`: the stored rows equal what the ledger recorded; the four per-report checks together;
- `cross_report`: one report's rows against another's totals (anonymized share);
- `hourly`: hourly reports' hours.
"""

from gsc_pipeline.proof.cross_report import (
    ANONYMIZED_SHARE,
    ANONYMIZED_SHARE_WARN,
    anonymized_share,
)
from gsc_pipeline.proof.hourly import (
    HOURS_OF_DAY,
    INCOMPLETE_HOURS_REPLACED,
    hours_of_day,
    incomplete_hours_replaced,
)
from gsc_pipeline.proof.ledger import (
    NO_DUPLICATE_BATCHES,
    NO_MISSING_BATCHES,
    TRUNCATED_DAYS,
    before_first_fetch,
    fresh_partitions,
    no_duplicate_batches,
    no_missing_batches,
    truncated_days,
    unfetched_tables,
)
from gsc_pipeline.proof.outcome import NOTHING_FETCHED, CheckOutcome, DaySpan, not_evaluated
from gsc_pipeline.proof.rows import ROWS_MATCH_LEDGER, report_checks, rows_match_ledger

__all__ = [
    "ANONYMIZED_SHARE",
    "ANONYMIZED_SHARE_WARN",
    "HOURS_OF_DAY",
    "INCOMPLETE_HOURS_REPLACED",
    "NOTHING_FETCHED",
    "NO_DUPLICATE_BATCHES",
    "NO_MISSING_BATCHES",
    "ROWS_MATCH_LEDGER",
    "TRUNCATED_DAYS",
    "CheckOutcome",
    "DaySpan",
    "anonymized_share",
    "before_first_fetch",
    "fresh_partitions",
    "hours_of_day",
    "incomplete_hours_replaced",
    "no_duplicate_batches",
    "no_missing_batches",
    "not_evaluated",
    "report_checks",
    "rows_match_ledger",
    "truncated_days",
    "unfetched_tables",
]
