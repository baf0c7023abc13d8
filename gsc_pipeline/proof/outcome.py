"""What a check found, as data and as the sentence a user reads first.

Every proof returns a `CheckOutcome`: passed or not, the bad days (what a repair re-fetches),
the days measured, and a `problem` ("199 rows missing") that `summary()` turns into the check's
assessment. A check that had nothing to measure says so (`not_evaluated`): it never passes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gsc_pipeline.warehouse import as_day

# Why a check measured nothing: it says so (Dagster shows it skipped), it never passes.
NOTHING_FETCHED = "nothing fetched for these days yet"


@dataclass(frozen=True)
class CheckOutcome:
    """One check over a set of days: passed, the bad days, and what was measured.

    `evaluated` is False when the check had nothing to measure (no table yet, no fetched day in
    its range, no site totals to compare with): such an outcome is neither passed nor failed,
    and `metadata["not_evaluated"]` says why.
    """

    name: str
    passed: bool
    bad_days: tuple[dt.date, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    evaluated: bool = True
    # The days measured (a day neither here nor bad was not judged), and what is wrong with
    # the bad ones ("199 rows missing"): per-day results and the sentence a user reads first.
    checked_days: tuple[dt.date, ...] = ()
    problem: str = ""

    @property
    def bad_partitions(self) -> list[str]:
        return [d.isoformat() for d in self.bad_days]

    def summary(self) -> str:
        """The line a user reads first (of an evaluated outcome): "1 day: 199 rows missing
        (2026-11-01..2026-11-30 (30 days) checked)", or "passed: ... checked"."""
        checked = f"{span_text(self.checked_days)} checked"
        if self.passed:
            return f"passed: {checked}"
        count = len(self.bad_days)
        return f"{count} day{'s' if count > 1 else ''}: {self.problem} ({checked})"


def span_text(days: Sequence[dt.date]) -> str:
    """"2026-11-14 (1 day)", "2026-11-01..2026-11-30 (30 days)"."""
    if not days:
        return "no day"
    first, last = days[0].isoformat(), days[-1].isoformat()
    count = f"{len(days)} day{'s' if len(days) > 1 else ''}"
    return f"{first} ({count})" if first == last else f"{first}..{last} ({count})"


def not_evaluated(name: str, reason: str) -> CheckOutcome:
    return CheckOutcome(name, passed=False, metadata={"not_evaluated": reason}, evaluated=False)


@dataclass(frozen=True)
class DaySpan:
    """The days a check covers: a run's range, or None for the whole history."""

    first: dt.date | None = None
    last: dt.date | None = None

    @classmethod
    def of(cls, days: Iterable[dt.date] | None) -> DaySpan:
        days = sorted(days or ())
        return cls(days[0], days[-1]) if days else cls()

    def where(self, column: str = "date") -> tuple[str, list[Any]]:
        if self.first is None or self.last is None:
            return "", []
        return f" AND {column} >= ? AND {column} <= ?", [self.first, self.last]


def judged(
    name: str,
    bad: Iterable[dt.date],
    checked: Iterable[Any],
    *,
    problem: str = "failed",
    unmeasured: str = NOTHING_FETCHED,
    **extra: Any,
) -> CheckOutcome:
    """The outcome over the `checked` days; none checked and none bad is `unmeasured`, not a
    pass. `problem` says what is wrong with the bad days, for the sentence a user reads first."""
    bad_days = tuple(sorted(set(bad)))
    checked_days = tuple(sorted({as_day(d) for d in checked}))
    if not checked_days and not bad_days:
        return not_evaluated(name, unmeasured)
    return CheckOutcome(
        name=name,
        passed=not bad_days,
        bad_days=bad_days,
        checked_days=checked_days,
        problem=problem if bad_days else "",
        metadata={"checked_partitions": len(checked_days), **extra},
    )


def problems(*counts: tuple[int, str, str]) -> str:
    """"199 rows missing; 2 pages fetched twice": the non-zero counts, singular or plural."""
    return "; ".join(
        f"{count:,} {one if count == 1 else many}" for count, one, many in counts if count
    )
