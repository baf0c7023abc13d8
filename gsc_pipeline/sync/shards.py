"""Past Google's 50,000-row cap: a capped day re-fetched as filtered shards, merged back.

Google returns at most 50,000 rows per day and search type for one request shape, but every
filtered request gets its own 50,000. So a day whose whole-day request came back capped is split
into shards that together cover it exactly once (disjoint filters, a catch-all shard for values
not named), and every shard still capped is split again, by the report's `shard` levels in
order: device (its three values), country (the largest countries by impressions, one request
grouped by country tells which, then the rest), then page-URL prefixes (one path segment deeper
each time, read off the capped shard's own rows, then the rest). Splitting stops when no shard
is capped or when a split would pass the report's `shard_budget` (requests per day and search
type); the shards left capped are recorded as such and the day stays flagged.

Shards are merged back to the report's grain (clicks and impressions summed, position weighted
by impressions), so a sharded day's table rows look exactly like one uncapped request's. The
ledger records each shard's pages under its label (`device=MOBILE (2/3) > country=usa (1/4)`):
the `k/n` of every step lets `proof.no_missing_batches` prove the shards cover the day.

A capped day's whole-day request is wasted (its rows are discarded once the cap shows), so a
day need not start with it when its neighbours were capped: `ShardPlanner` reads the ledger's
recent days of the same (site, report, search type) and starts a day directly at the splits
every one of them needed (`split_planned_day`), the rows of a split's own parent never fetched;
what a ranged step's first days learn applies to the later ones; a day with no known neighbour
asks for the one row at the cap (`startRow` 49,999, `rowLimit` 1) before its whole-day request,
and starts split when it is there. A day whose shards merge to well under the cap
(`SHRINK_SHARE`) sends the next days back to one whole-day request. The planner also says what
the planned days will cost in requests before any is sent.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
import re2

from gsc_pipeline.pandas_on_demand import group_by
from gsc_pipeline.reports import DAILY_ROW_CAP, MAX_FILTER_EXPRESSION, Filter, Report
from gsc_pipeline.warehouse.base import REQUEST_COLUMNS

# Google's three device values (its documented enum: nothing else to catch).
DEVICES = ("DESKTOP", "MOBILE", "TABLET")
# Countries split off one by one, largest first, until they hold this share of the shard's
# impressions (the rest share one shard).
COUNTRY_SHARE = 0.9
MAX_COUNTRY_SHARDS = 12
# How many path segments deeper than its parent a page-prefix split may look for a difference.
MAX_PAGE_DEPTH = 6
# A shard label's steps, and the position `k/n` each step carries.
STEP_SEPARATOR = " > "
_POSITION = re.compile(r"\((\d+)/(\d+)\)$")
_URL_PATH = re.compile(r"^([a-z][a-z0-9+.-]*://[^/]+/)(.*)$", re.IGNORECASE)
# A day whose shards merge to fewer rows than this share of the cap would fit one request:
# the days after it go back to the whole-day fetch (a site that shrank stops paying shards).
SHRINK_SHARE = 0.8
# The ledger's days a day's starting split is read from: the nearest RECENT_DAYS days of the
# same (site, report, search type), at most RECENT_WINDOW_DAYS away.
RECENT_DAYS = 3
RECENT_WINDOW_DAYS = 7


@dataclass(frozen=True)
class Shard:
    """One filtered request shape of a day: its filters (ANDed to the report's) and label.

    `level` indexes the report's shard levels: the one this shard is split by next.
    `page_depth` is how many path segments its page prefix holds (page level only).
    """

    filters: tuple[Filter, ...] = ()
    steps: tuple[str, ...] = ()
    level: int = 0
    page_depth: int = 0

    @property
    def label(self) -> str:
        """'' for the whole day's request, else its steps (`device=MOBILE (2/3) > ...`)."""
        return STEP_SEPARATOR.join(self.steps)

    def child(self, step: str, new: Filter, *, level: int, page_depth: int = 0) -> Shard:
        return Shard((*self.filters, new), (*self.steps, step), level, page_depth)


@dataclass
class ShardFetch:
    """A shard's pages as fetched (tie order settled) and the requests they took."""

    shard: Shard
    pages: list[pa.Table]
    returned: list[int]
    first_incomplete: list[dt.date | None]
    requests: int
    tie_passes: int = 0
    # False: stopped at the cap (to be split), without the empty last page or tie settling.
    complete: bool = True

    @property
    def rows(self) -> int:
        return sum(self.returned)

    @property
    def capped(self) -> bool:
        return self.rows >= DAILY_ROW_CAP


# The splits of one search-type day: each split shard's label -> the shards it was split into
# (None: split at its next level, the children asked then, as after a capped whole day).
SplitTree = dict[str, tuple[Shard, ...] | None]


class RequestSlots(Protocol):
    """The step's requests in flight (`sync.days.InFlight`): a day holds one; a day fetching
    sibling shards at once takes one more per extra request, only while one is free."""

    def try_take(self) -> bool: ...

    def release(self) -> None: ...


class ShardRequests(Protocol):
    """What splitting a day needs from the API: a shard's pages (stopping at the cap),
    the rest of a capped shard's pages when it is kept, and its countries by impressions.
    `fetch_many` fetches sibling shards (concurrently where it can), results in their order."""

    def fetch(self, shard: Shard) -> ShardFetch: ...

    def fetch_many(self, shards: Sequence[Shard]) -> list[ShardFetch]: ...

    def finish(self, node: ShardFetch) -> ShardFetch: ...

    def country_impressions(self, shard: Shard) -> list[tuple[str, float]]: ...


@dataclass
class SplitDay:
    """A search-type day's shards whose rows are stored, and what splitting it cost.

    `tree` holds every split made (planned ones included); `planned` how many of them were
    made without fetching the split shard first (`split_planned_day`).
    """

    leaves: list[ShardFetch]
    requests: int
    tree: SplitTree = field(default_factory=dict)
    planned: int = 0

    @property
    def capped_shards(self) -> int:
        return sum(leaf.capped for leaf in self.leaves)


def split_capped_day(capped: deque[ShardFetch], report: Report, api: ShardRequests) -> SplitDay:
    """Split the day's capped whole-day request (alone in `capped`, taken out of it so its
    pages go once split) until no shard is capped or the budget ends.

    `api.fetch` fetches a shard's pages; `api.country_impressions` asks Google for a shard's
    countries by impressions (one request). A split is made only when one request per new
    shard (plus the country request) fits in what is left of `report.shard_budget`, so a day
    never spends far past it; a shard that cannot be split stays a capped leaf.
    """
    day = SplitDay([], sum(node.requests for node in capped))
    return _grow(day, capped, report, api)


def split_planned_day(
    plan: SplitTree, report: Report, api: ShardRequests, spent: int = 0
) -> SplitDay:
    """Fetch a day starting at the splits of `plan` (from its neighbours, or `{"": None}`
    once a probe showed the whole day capped): a split shard is not fetched, its children are
    (children None: its next level's, asked now). A shard that still comes back capped is
    split further as in `split_capped_day`, within the budget. `spent`: requests already sent for
    the day (a probe), counted against the budget."""
    day = SplitDay([], spent)
    todo: deque[ShardFetch] = deque()
    pending: list[Shard] = []  # leaves to fetch, together (siblings at once)

    def flush() -> None:
        for fetched in api.fetch_many(pending):
            day.requests += fetched.requests
            todo.append(fetched)
        pending.clear()

    shards = deque([Shard()])
    while shards:
        shard = shards.popleft()
        children = plan.get(shard.label, ()) if shard.label in plan else None
        if shard.label in plan and children is None:
            # Its split is read off the budget left: the requests before it are counted first,
            # so the day decides exactly as if its shards were fetched one after another.
            flush()
            unfetched = ShardFetch(shard, [], [], [], 0)
            children = tuple(_children(unfetched, report, day, api.country_impressions) or ())
        if children:
            day.tree[shard.label] = children
            day.planned += 1
            shards.extend(children)
            continue
        pending.append(shard)
    flush()
    return _grow(day, todo, report, api)


def _grow(day: SplitDay, todo: deque[ShardFetch], report: Report, api: ShardRequests) -> SplitDay:
    """Split every capped shard of `todo` until none is or the budget ends; `day` grown. A
    capped shard kept (no split within the budget) gets the pages it stopped before."""
    while todo:
        node = todo.popleft()
        if not node.capped:
            day.leaves.append(node)
            continue
        children = _children(node, report, day, api.country_impressions)
        if children is None:
            kept = api.finish(node)
            day.requests += kept.requests - node.requests
            day.leaves.append(kept)
            continue
        day.tree[node.shard.label] = tuple(children)
        del node  # its pages are discarded: not held while its children are fetched
        # Siblings at once (their requests counted against the step's in flight by `api`);
        # the budget is read before and after them only, so the splits are the same as one by one.
        for fetched in api.fetch_many(children):
            day.requests += fetched.requests
            todo.append(fetched)
    return day


def _children(
    node: ShardFetch,
    report: Report,
    day: SplitDay,
    country_impressions: Callable[[Shard], list[tuple[str, float]]],
) -> list[Shard] | None:
    """The shards `node` splits into at its next usable level; None when it cannot split."""
    shard = node.shard
    levels = report.shard
    while shard.level < len(levels):
        level = levels[shard.level]
        left = report.shard_budget - day.requests
        if level == "device":
            children = _device_children(shard)
        elif level == "country":
            if left < 2 + 1:  # the country request and at least two shards
                return None
            day.requests += 1
            children = _country_children(shard, country_impressions(shard))
        else:
            children = _page_children(node)
        if children is not None and len(children) > left:
            return None
        if children is not None:
            return children
        # This level cannot split the shard (one country, one prefix): try the next one.
        shard = Shard(shard.filters, shard.steps, shard.level + 1)
    return None


def _device_children(shard: Shard) -> list[Shard] | None:
    if any(f.dimension == "device" for f in shard.filters):
        return None
    n = len(DEVICES)
    return [
        shard.child(f"device={d} ({k}/{n})", Filter("device", d), level=shard.level + 1)
        for k, d in enumerate(DEVICES, 1)
    ]


def _country_children(shard: Shard, countries: list[tuple[str, float]]) -> list[Shard] | None:
    """The largest countries one by one (until COUNTRY_SHARE of impressions), then the rest."""
    if len(countries) < 2:
        return None
    total = sum(impressions for _, impressions in countries) or 1.0
    named: list[str] = []
    covered = 0.0
    for country, impressions in sorted(countries, key=lambda c: (-c[1], c[0])):
        if covered / total >= COUNTRY_SHARE or len(named) == MAX_COUNTRY_SHARDS:
            break
        named.append(country.lower())
        covered += impressions
    return _named_country_children(shard, named, rest=len(named) < len(countries))


def _named_country_children(shard: Shard, named: list[str], *, rest: bool) -> list[Shard]:
    n = len(named) + rest
    level = shard.level + 1
    children = [
        shard.child(f"country={c} ({k}/{n})", Filter("country", c), level=level)
        for k, c in enumerate(named, 1)
    ]
    if rest:
        # Countries Google did not list too (the catch-all): the shards cover the day exactly.
        others = Filter("country", f"(?i)^({'|'.join(named)})$", "excludingRegex")
        children.append(shard.child(f"country=other ({n}/{n})", others, level=level))
    return children


def _page_children(node: ShardFetch) -> list[Shard] | None:
    """Page-prefix shards deeper than `node`'s, from its own rows, and one for the rest.

    The prefixes are read off the capped shard's rows (its top rows by clicks) at the first
    depth where they differ: each becomes a shard, largest first, as many as fit Google's
    4,096-character filter expression in the catch-all shard that excludes them all.
    """
    shard = node.shard
    urls = [url for page in node.pages for url in page.column("page").to_pylist()]
    for depth in range(shard.page_depth + 1, shard.page_depth + 1 + MAX_PAGE_DEPTH):
        counts = Counter(p for p in (_prefix(url, depth) for url in urls) if p is not None)
        if not counts:
            return None  # no page this deep: nothing left to split by
        if len(counts) > 1 or sum(counts.values()) < len(urls):
            return _prefix_shards(shard, counts, depth)
    return None


def _prefix_shards(shard: Shard, counts: Counter[str], depth: int) -> list[Shard] | None:
    prefixes: list[str] = []
    length = len("^()")
    for prefix, _ in sorted(counts.items(), key=lambda c: (-c[1], c[0])):
        pattern = re2.escape(prefix)
        if length + len(pattern) + 1 > MAX_FILTER_EXPRESSION:
            break
        prefixes.append(prefix)
        length += len(pattern) + 1
    if not prefixes:
        return None  # not even one prefix fits a filter expression: "^()" would exclude all
    return _named_prefix_children(shard, prefixes, depth)


def _named_prefix_children(shard: Shard, prefixes: list[str], depth: int) -> list[Shard]:
    n = len(prefixes) + 1
    children = [
        shard.child(
            f"page^={prefix} ({k}/{n})",
            Filter("page", f"^{re2.escape(prefix)}", "includingRegex"),
            level=shard.level,
            page_depth=depth,
        )
        for k, prefix in enumerate(prefixes, 1)
    ]
    others = Filter("page", f"^({'|'.join(re2.escape(p) for p in prefixes)})", "excludingRegex")
    # The rest stays at its parent's depth: its own rows may show other prefixes there.
    children.append(
        shard.child(f"page=other ({n}/{n})", others, level=shard.level,
                    page_depth=shard.page_depth)  # fmt: skip
    )
    return children


def _prefix(url: str, depth: int) -> str | None:
    """`url` up to and including the slash after its `depth`-th path segment, if it has one."""
    match = _URL_PATH.match(url)
    if match is None:
        return None
    segments = match.group(2).split("/")
    if len(segments) <= depth:
        return None
    return match.group(1) + "".join(s + "/" for s in segments[:depth])


def merge_shards(tables: list[pa.Table], report: Report) -> pa.Table:
    """One search-type day's shard rows at the report's grain: clicks and impressions summed,
    position weighted by impressions, ctr recomputed; the schema and column order of one
    request's rows. Grouped by the columns that vary only: the day's own (`REQUEST_COLUMNS`) are
    the same on every row; not hashing them cut the merge's CPU by 35-50%
    (scripts/measure_shard_merge.py)."""
    # One dictionary per column (`repeated_columns`): Acero groups by no differing ones.
    rows = pa.concat_tables(tables).unify_dictionaries()
    schema = rows.schema
    measures = ("clicks", "impressions", "ctr", "position")
    same = [name for name in schema.names if name in REQUEST_COLUMNS]
    keys = [name for name in schema.names if name not in measures and name not in same]
    weighted = pc.multiply(rows.column("position"), rows.column("impressions"))
    grouped = group_by(
        pa.table(
            {**{name: rows.column(name) for name in keys}, "clicks": rows.column("clicks"),
             "impressions": rows.column("impressions"), "weighted": weighted}
        ),
        keys,
        [("clicks", "sum"), ("impressions", "sum"), ("weighted", "sum")],
    )  # fmt: skip
    n = grouped.num_rows
    clicks = grouped.column("clicks_sum")
    impressions = grouped.column("impressions_sum")
    merged = {
        **{name: pa.repeat(rows.column(name)[0], n) if n else rows.column(name) for name in same},
        **{name: grouped.column(name) for name in keys},
        "clicks": clicks,
        "impressions": impressions,
        "ctr": pc.divide(clicks, impressions),
        "position": pc.divide(grouped.column("weighted_sum"), impressions),
    }
    return pa.Table.from_pydict(merged, schema=schema)


def shard_positions(label: str) -> list[tuple[str, int, int]]:
    """A ledger label's steps as (the path up to and excluding the step, k, n)."""
    if not label:
        return []
    steps = label.split(STEP_SEPARATOR)
    out = []
    for i, step in enumerate(steps):
        match = _POSITION.search(step)
        if match is None:
            raise ValueError(f"shard label {label!r}: step {step!r} has no (k/n) position")
        out.append((STEP_SEPARATOR.join(steps[:i]), int(match.group(1)), int(match.group(2))))
    return out


def uncovered_shards(labels: set[str]) -> list[str]:
    """Where the shards of one search-type day fail to cover it: the missing siblings.

    The whole day ('') alone covers it; otherwise every split's positions 1..n must all be
    present among the labels' steps (each split's shards are disjoint and cover their parent).
    """
    if labels == {""}:
        return []
    if "" in labels:
        return ["'' beside shards: the whole day and its shards both stored"]
    seen: dict[str, tuple[int, set[int]]] = {}
    for label in labels:
        for parent, k, n in shard_positions(label):
            count, positions = seen.setdefault(parent, (n, set()))
            if count != n:
                return [f"{parent or 'the day'}: split into {count} and into {n}"]
            positions.add(k)
    return [
        f"{parent or 'the day'}: shard(s) {sorted(set(range(1, n + 1)) - positions)} of {n}"
        for parent, (n, positions) in sorted(seen.items())
        if positions != set(range(1, n + 1))
    ]


def tree_from_labels(labels: Iterable[str], report: Report) -> SplitTree | None:
    """The splits a day's stored shard labels show, rebuilt as the shards `report` makes (the
    same filters and labels); None when they are not splits it can make (its levels changed).

    Countries and page prefixes are the ones named in the labels; the catch-all shard again
    excludes exactly its named siblings, so the rebuilt shards cover a day exactly once.
    """
    steps: dict[str, dict[int, str]] = {}
    for label in labels:
        for parent, k, _ in shard_positions(label):
            depth = len(parent.split(STEP_SEPARATOR)) if parent else 0
            steps.setdefault(parent, {})[k] = label.split(STEP_SEPARATOR)[depth]
    tree: SplitTree = {}
    todo = deque([Shard()])
    while todo:
        shard = todo.popleft()
        named = steps.get(shard.label)
        if not named:
            continue
        wanted = [named[k] for k in sorted(named)]
        children = _children_named(shard, [_POSITION.sub("", s).rstrip() for s in wanted], report)
        if children is None or [c.steps[-1] for c in children] != wanted:
            return None
        tree[shard.label] = tuple(children)
        todo.extend(children)
    return tree


def _children_named(shard: Shard, steps: list[str], report: Report) -> list[Shard] | None:
    """`shard`'s children from their steps' names (`country=usa`, `page^=https://x/a/`, ...)."""
    kinds = {step.split("=", 1)[0] for step in steps}
    values = [step.split("=", 1)[1] for step in steps]
    if kinds == {"device"} and "device" in report.shard:
        return _device_children(Shard(shard.filters, shard.steps, report.shard.index("device")))
    if kinds == {"country"} and "country" in report.shard:
        level = report.shard.index("country")
        named = [v for v in values if v != "other"]
        parent = Shard(shard.filters, shard.steps, level)
        return _named_country_children(parent, named, rest=len(named) < len(values))
    if kinds == {"page^", "page"} and "page" in report.shard and values[-1] == "other":
        prefixes = values[:-1]
        depths = set()
        for prefix in prefixes:
            match = _URL_PATH.match(prefix)
            depths.add(match.group(2).count("/") if match else -1)
        if len(depths) != 1 or min(depths) < 1:
            return None
        parent = Shard(shard.filters, shard.steps, report.shard.index("page"), shard.page_depth)
        return _named_prefix_children(parent, prefixes, depths.pop())
    return None
