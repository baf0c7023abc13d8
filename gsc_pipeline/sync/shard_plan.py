"""Where a day starts: with its whole-day request, or directly at the splits its neighbours
needed (`ShardPlanner`), and what the planned days will cost in requests before any is sent.

A day over Google's 50,000-row cap used to be fetched whole first (its capped pages then
discarded) and split after. Days of one (site, report, search type) are alike from one day to
the next, so the planner starts a day at the splits every one of its nearest days needed
(`RECENT_DAYS` of them in the ledger, or fetched earlier in the same step), their shards'
filters rebuilt from the ledger's labels (`tree_from_labels`): the same shards, covering the
day exactly once, with the same labels for `proof.no_missing_batches`. A shard still capped is
split further as before; a day whose shards merge to well under the cap (`SHRINK_SHARE`) makes
the days after it go back to one whole-day request. A day with nothing known of it asks for the
row at the cap first (`fetch._split_day`): present, it starts split without the cap's pages
fetched and discarded. `shard_start: whole` keeps the old way.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from gsc_pipeline.reports import DAILY_ROW_CAP, Report
from gsc_pipeline.sync.shards import (
    RECENT_DAYS,
    RECENT_WINDOW_DAYS,
    SHRINK_SHARE,
    SplitDay,
    SplitTree,
    tree_from_labels,
)
from gsc_pipeline.warehouse.base import LEDGER_TABLE, Warehouse, as_day


@dataclass(frozen=True)
class DayShape:
    """How one search-type day was fetched: its splits (`{}`: one request), its stored shards'
    pages, the rows it merged to, and whether it was at the cap's scale (`big`)."""

    tree: SplitTree
    pages: int
    rows: int
    big: bool
    # Only its whole-day request is known (capped): its splits are still being made.
    provisional: bool = False
    # Fetched in this step (any distance counts: what the first days learn applies to the
    # later ones), not read from the ledger (only days within RECENT_WINDOW_DAYS count).
    in_step: bool = False


def _big(rows: int, sharded: bool) -> bool:
    return rows >= (SHRINK_SHARE * DAILY_ROW_CAP if sharded else DAILY_ROW_CAP)


class ShardPlanner:
    """Per search type, the shape of the days seen (ledger, then this step) and the splits a
    day starts at. Thread-safe: the days of a step are fetched concurrently."""

    def __init__(self, report: Report, shapes: dict[str, dict[dt.date, DayShape]]) -> None:
        self.report = report
        self.enabled = bool(report.shard) and report.shard_start != "whole"
        self._shapes = shapes
        self._lock = threading.Lock()
        self._planned: dict[tuple[str, dt.date], int] = {}
        # Per search type, the step's first day without a known neighbour (the scout), what
        # the others without one (`_blind`) wait on: its whole-day request's answer.
        self._scouts: dict[str, tuple[dt.date, threading.Event]] = {}
        self._blind: dict[str, set[dt.date]] = {}

    @classmethod
    def from_ledger(
        cls, warehouse: Warehouse, site_url: str, report: Report, days: list[dt.date]
    ) -> ShardPlanner:
        """The planner seeded with the ledger's days around `days` (and `days` themselves)."""
        shapes: dict[str, dict[dt.date, DayShape]] = {t: {} for t in report.search_types}
        if days and report.shard:
            window = dt.timedelta(days=RECENT_WINDOW_DAYS)
            ledger = warehouse.read_rows(
                f"""
                SELECT search_type, date, shard, COUNT(*) AS pages,
                       SUM(rows_returned) AS rows_returned, MAX(merged_rows) AS merged_rows
                FROM {LEDGER_TABLE}
                WHERE site_url = ? AND report = ? AND date BETWEEN ? AND ?
                GROUP BY search_type, date, shard
                """,
                [site_url, report.name, min(days) - window, max(days) + window],
            )
            groups: dict[tuple[str, dt.date], list[Any]] = {}
            for row in ledger:
                groups.setdefault((row.search_type, as_day(row.date)), []).append(row)
            for (search_type, day), group in groups.items():
                if search_type not in shapes:
                    continue
                labels = [r.shard for r in group]
                pages = sum(int(r.pages) for r in group)
                if labels == [""]:
                    rows = sum(int(r.rows_returned) for r in group)
                    tree: SplitTree | None = {"": None} if _big(rows, False) else {}
                    big = _big(rows, False)
                else:
                    merged = [int(r.merged_rows) for r in group if r.merged_rows is not None]
                    rows = max(merged, default=sum(int(r.rows_returned) for r in group))
                    tree, big = tree_from_labels(labels, report), _big(rows, True)
                if tree is not None:
                    shapes[search_type][day] = DayShape(tree, pages, rows, big)
        planner = cls(report, shapes)
        planner._planned = {
            (t, d): planner._estimate(t, d) for t in report.search_types for d in days
        }
        if planner.enabled:
            for search_type in report.search_types:
                blind = [d for d in days if not planner._nearest(search_type, d)]
                planner._blind[search_type] = set(blind)
                if len(blind) > 1:
                    planner._scouts[search_type] = (blind[0], threading.Event())
                if blind:  # the first asks for the row at the cap first (`fetch._split_day`)
                    planner._planned[(search_type, blind[0])] += 1
        return planner

    def _nearest(self, search_type: str, day: dt.date) -> list[DayShape]:
        seen = self._shapes.get(search_type, {})
        near = sorted(
            (abs((d - day).days), d)
            for d, shape in seen.items()
            if shape.in_step or abs((d - day).days) <= RECENT_WINDOW_DAYS
        )
        return [seen[d] for _, d in near[:RECENT_DAYS]]

    def plan(self, search_type: str, day: dt.date) -> SplitTree:
        """The splits `day` starts at: those every one of its nearest big days made, with the
        nearest's shards; `{}` (the whole-day request) when the nearest day fit one request."""
        if not self.enabled:
            return {}
        with self._lock:
            near = self._nearest(search_type, day)
        if not near or not near[0].big:
            return {}
        # The nearest day whose splits are all known sets them, so far as every known big
        # neighbour made them too; a day only known capped (its split still running) says
        # only that the day splits at its first level.
        big = [shape for shape in near if shape.big and not shape.provisional]
        if not big:
            return dict(near[0].tree)
        return {
            label: children
            for label, children in big[0].tree.items()
            if all(label in shape.tree for shape in big)
        }

    def blind(self, search_type: str, day: dt.date) -> bool:
        """Whether nothing is known of `day`'s size yet (no neighbour in the ledger or fetched
        in this step) while days may start split: the scout, or a day alone."""
        if not self.enabled:
            return False
        with self._lock:
            return not self._nearest(search_type, day)

    def await_scout(self, search_type: str, day: dt.date) -> None:
        """With no known neighbour, the step's first such day (the scout) goes alone: the
        others wait for its whole-day answer (capped or not) instead of each sending a
        whole-day request of their own. Returns at once for the scout and for a day that had a
        neighbour. The scout is submitted before every day waiting on it (days start in
        order) and always releases them (`scouted`, `release`), so a wait always ends."""
        scout = self._scouts.get(search_type)
        if scout is not None and scout[0] != day and day in self._blind[search_type]:
            scout[1].wait()

    def scouted(self, search_type: str, day: dt.date) -> None:
        """`day`'s whole-day request is answered (or failed): the days waiting on it go on."""
        scout = self._scouts.get(search_type)
        if scout is not None and scout[0] == day:
            scout[1].set()

    def release(self, day: dt.date) -> None:
        """`day` is done (or failed): no day waits on it for any search type."""
        for search_type in self._scouts:
            self.scouted(search_type, day)

    def learn_capped(self, search_type: str, day: dt.date) -> None:
        """`day`'s whole-day request came back capped: days not started yet start split."""
        if self.enabled:
            with self._lock:
                capped = DayShape({"": None}, 0, 0, big=True, provisional=True, in_step=True)
                self._shapes[search_type].setdefault(day, capped)

    def learn(self, search_type: str, day: dt.date, split: SplitDay, rows: int) -> None:
        """What fetching `day` showed: its splits and the rows they merged to."""
        pages = sum(len(leaf.pages) for leaf in split.leaves)
        sharded = len(split.leaves) > 1
        big = _big(rows, sharded) or split.capped_shards > 0
        shape = DayShape(split.tree, pages, rows, big, in_step=True)
        with self._lock:
            self._shapes.setdefault(search_type, {})[day] = shape

    def planned_requests(self, day: dt.date) -> int:
        """What `day` was planned to cost (all search types), before the step's first fetch."""
        return sum(self._planned.get((t, day), 1) for t in self.report.search_types)

    def _estimate(self, search_type: str, day: dt.date) -> int:
        """Requests `day` should take: its nearest day's shards' pages, plus what the splits
        not planned cost (the split shard's capped pages, a country request); 1 if unknown."""
        near = self._nearest(search_type, day)
        if not near:
            return 1
        shape, plan = near[0], self.plan(search_type, day)
        if not shape.big and shape.tree:  # shrunk: one whole-day request next
            return shape.rows // self.report.row_limit + 1
        capped_pages = DAILY_ROW_CAP // self.report.row_limit + 1
        cost = shape.pages
        for label, children in shape.tree.items():
            if label in plan:
                continue
            cost += capped_pages
            if children and children[0].steps[-1].startswith("country="):
                cost += 1
        return max(cost, 1)

    def describe(self, site_url: str, days: list[dt.date]) -> str:
        """One line for the step's log: the planned days' request cost, before any is sent."""
        keys = [(t, d) for d in days for t in self.report.search_types]
        started = sum(bool(self.plan(t, d)) for t, d in keys)
        unknown = sum(not self._nearest(t, d) for t, d in keys)
        total = sum(self._planned.get(key, 1) for key in keys)
        return (
            f"{site_url} {self.report.name}: {len(days)} day(s) planned at ~{total:,} request(s) "
            f"(+1 probe); {started} day x search type(s) start at their neighbours' shard splits"
            f", {unknown} without a known neighbour (counted at 1 request each, the first of"
            " them 1 more: its probe of the cap)"
            + ("" if self.enabled else "; shard_start: whole (no day starts split)")
        )
