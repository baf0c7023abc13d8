"""`url_lifetime_stats`, maintained incrementally from the days that changed.

Per (property, search type, page): first and last day seen, clicks, impressions, ctr,
impression-weighted average position, active days (from the `page` report, which still counts
anonymized queries), and the top query by lifetime clicks (from `page_query`; ties go to the
alphabetically first query, and a page without any clicked query has none).

The fetch ledger is the change log: each (site, report, day) has a fingerprint (run id, last
fetch time, page count) and `lifetime_applied` remembers the fingerprint folded in. A refresh
takes only the days whose fingerprint moved, reads their new rows and the snapshot of what was
applied for them before, and applies the difference: sums and active days by delta, the top
query from the old top plus the queries that changed, first/last day by min/max. Only when a
revision removes a page's first/last day or lowers its top query does that page get rescanned,
from the compact per-day rollups, never from the report tables. So a refresh after a few
changed days reads and writes in proportion to those days.

Each chunk of days is read in one short transaction, computed with no lock held, and written in
another short transaction (on DuckDB the file's write lock is free in between, so fetch runs get
their turn); a version per site makes a write notice a refresh that slipped in and start over.
Only the lifetime tables are written; on Postgres ingestion never waits on them (a separate
advisory lock serialises refreshes among themselves).

Every search type the property's `page` and `page_query` reports fetch is covered (a column);
tables written before that column existed are derived state and are rebuilt from the report
tables on the next refresh.

`python -m gsc_pipeline.lifetime --measure` prints the incremental-vs-full cost at a chosen size.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from gsc_pipeline.reports import PAGE, PAGE_QUERY
from gsc_pipeline.warehouse import LEDGER_TABLE, Connection, Warehouse

STATS_TABLE = "url_lifetime_stats"
APPLIED_TABLE = "lifetime_applied"
PAGE_DAY_TABLE = "lifetime_page_day"
QUERY_DAY_TABLE = "lifetime_query_day"
QUERY_TOTAL_TABLE = "lifetime_page_query"
VERSION_TABLE = "lifetime_site_version"
SOURCE_REPORTS = (PAGE.name, PAGE_QUERY.name)
# Days per transaction: short enough that an ingestion write waits at most a moment for DuckDB.
DAYS_PER_CHUNK = 7
# Distinct from the warehouse's partition locks: refreshes take turns, ingestion never waits.
_REFRESH_LOCK = 7_470_101

_SCHEMAS: dict[str, pa.Schema] = {
    APPLIED_TABLE: pa.schema(
        [("site_url", pa.string()), ("report", pa.string()), ("date", pa.date32()),
         ("fingerprint", pa.string())]
    ),
    PAGE_DAY_TABLE: pa.schema(
        [("site_url", pa.string()), ("search_type", pa.string()), ("page", pa.string()),
         ("date", pa.date32()),
         ("clicks", pa.float64()), ("impressions", pa.float64()),
         ("position_impressions", pa.float64())]
    ),
    QUERY_DAY_TABLE: pa.schema(
        [("site_url", pa.string()), ("search_type", pa.string()), ("page", pa.string()),
         ("query", pa.string()), ("date", pa.date32()), ("clicks", pa.float64())]
    ),
    QUERY_TOTAL_TABLE: pa.schema(
        [("site_url", pa.string()), ("search_type", pa.string()), ("page", pa.string()),
         ("query", pa.string()), ("clicks", pa.float64())]
    ),
    VERSION_TABLE: pa.schema([("site_url", pa.string()), ("version", pa.int32())]),
    STATS_TABLE: pa.schema(
        [("site_url", pa.string()), ("search_type", pa.string()), ("page", pa.string()),
         ("first_date", pa.date32()),
         ("last_date", pa.date32()), ("clicks", pa.float64()), ("impressions", pa.float64()),
         ("ctr", pa.float64()), ("avg_position", pa.float64()), ("active_days", pa.int32()),
         ("top_query", pa.string()), ("top_query_clicks", pa.float64()),
         ("position_impressions", pa.float64())]
    ),
}  # fmt: skip
_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.date32(): "DATE",
    pa.float64(): "DOUBLE PRECISION",
    pa.int32(): "INTEGER",
}
STATS_COLUMNS = [
    "site_url", "search_type", "page", "first_date", "last_date", "clicks", "impressions", "ctr",
    "avg_position", "active_days", "top_query", "top_query_clicks",
]  # fmt: skip


@dataclass
class RefreshStats:
    """What a refresh touched: the measure of its cost (rows, not seconds, are the contract)."""

    days_refreshed: int = 0
    pages_touched: int = 0
    pages_rescanned: int = 0
    source_rows_read: int = 0
    state_rows_read: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    changed: list[tuple[str, dt.date]] = field(default_factory=list)

    def add(self, other: RefreshStats) -> None:
        for name in ("days_refreshed", "pages_touched", "pages_rescanned", "source_rows_read",
                     "state_rows_read", "rows_written"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.changed.extend(other.changed)

    def metadata(self) -> dict[str, int | float]:
        return {
            "days_refreshed": self.days_refreshed,
            "pages_touched": self.pages_touched,
            "pages_rescanned": self.pages_rescanned,
            "source_rows_read": self.source_rows_read,
            "state_rows_read": self.state_rows_read,
            "rows_written": self.rows_written,
            "refresh_seconds": round(self.seconds, 3),
        }


# A page of one search type: the key of every per-page frame below.
PAGE_KEY = ["search_type", "page"]
QUERY_KEY = [*PAGE_KEY, "query"]


def ensure_schema(warehouse: Warehouse) -> None:
    with warehouse.transaction() as conn:
        if not _has_search_type(conn):
            # Written before search types were a column: derived state, rebuilt from scratch.
            for table in _SCHEMAS:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        for table, schema in _SCHEMAS.items():
            columns = ", ".join(f"{f.name} {_SQL_TYPES[f.type]}" for f in schema)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")


def _has_search_type(conn: Connection) -> bool:
    """False only when url_lifetime_stats exists without its search_type column."""
    columns = conn.read_sql(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = current_schema()",
        [STATS_TABLE],
    )["column_name"]
    return columns.empty or "search_type" in set(columns)


def changed_days(warehouse: Warehouse, site_urls: Sequence[str]) -> list[tuple[str, dt.date]]:
    """(site, day)s whose page or page_query partition differs from what was folded in.

    Reads the ledger grouped per partition: a few rows per day, not the report rows.
    """
    if not site_urls:
        return []
    marks = ", ".join("?" for _ in site_urls)
    reports = ", ".join("?" for _ in SOURCE_REPORTS)
    ledger = warehouse.read_sql(
        f"""
        SELECT site_url, report, date, MAX(run_id) AS run_id, MAX(fetched_at) AS fetched_at,
               COUNT(*) AS pages
        FROM {LEDGER_TABLE}
        WHERE site_url IN ({marks}) AND report IN ({reports})
        GROUP BY site_url, report, date
        """,
        [*site_urls, *SOURCE_REPORTS],
    )
    applied = warehouse.read_sql(
        f"SELECT site_url, report, date, fingerprint FROM {APPLIED_TABLE} "
        f"WHERE site_url IN ({marks})",
        list(site_urls),
    )
    current = {
        (r.site_url, r.report, _date(r.date)): _fingerprint(r.run_id, r.fetched_at, r.pages)
        for r in ledger.itertuples(index=False)
    }
    before = {
        (r.site_url, r.report, _date(r.date)): r.fingerprint
        for r in applied.itertuples(index=False)
    }
    moved = {key for key in current.keys() | before.keys() if current.get(key) != before.get(key)}
    return sorted({(site, day) for site, _, day in moved})


def _fingerprint(run_id: object, fetched_at: object, pages: object) -> str:
    return f"{run_id}|{pd.Timestamp(fetched_at).isoformat()}|{int(pages)}"  # type: ignore[arg-type]


def _date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()  # type: ignore[arg-type]


def refresh(
    warehouse: Warehouse, site_urls: Sequence[str], *, days_per_chunk: int = DAYS_PER_CHUNK
) -> RefreshStats:
    """Fold every changed (site, day) into url_lifetime_stats; returns what it read and wrote."""
    started = time.perf_counter()
    ensure_schema(warehouse)
    total = RefreshStats()
    by_site: dict[str, list[dt.date]] = {}
    for site, day in changed_days(warehouse, site_urls):
        by_site.setdefault(site, []).append(day)
    for site, days in by_site.items():
        for i in range(0, len(days), days_per_chunk):
            total.add(_apply_days(warehouse, site, days[i : i + days_per_chunk]))
    total.seconds = time.perf_counter() - started
    return total


def full_recompute(warehouse: Warehouse, site_urls: Sequence[str]) -> RefreshStats:
    """Forget the lifetime state of these sites and fold in their whole history again."""
    ensure_schema(warehouse)
    marks = ", ".join("?" for _ in site_urls)
    with warehouse.transaction() as conn:
        for table in _SCHEMAS:
            conn.execute(f"DELETE FROM {table} WHERE site_url IN ({marks})", list(site_urls))
    return refresh(warehouse, site_urls)


def _in_days(days: Sequence[dt.date]) -> tuple[str, list[dt.date]]:
    return f"date IN ({', '.join('?' for _ in days)})", list(days)


@dataclass
class _Chunk:
    """What one chunk of days reads (in a short read transaction) before anything is computed."""

    version: int
    fingerprints: pd.DataFrame
    new_page: pd.DataFrame
    new_query: pd.DataFrame
    page_delta: pd.DataFrame
    query_delta: pd.DataFrame
    touched: pd.DataFrame  # PAGE_KEY columns
    current: pd.DataFrame
    totals: pd.DataFrame


def _apply_days(warehouse: Warehouse, site: str, days: Sequence[dt.date]) -> RefreshStats:
    """Replace the snapshot of `days` for `site` and apply the difference.

    Read, compute, write: the two transactions are short and the pandas work between them holds
    no lock, so fetch runs writing to the same DuckDB file get in between. A version number per
    site makes the write step notice another refresh that slipped in, and start over.
    """
    for _ in range(3):
        stats = RefreshStats(days_refreshed=len(days), changed=[(site, d) for d in days])
        with warehouse.transaction() as conn:
            chunk = _read_chunk(conn, site, days, stats)
        # Lifetime clicks per (page, query) for every query that changed.
        new_totals = chunk.query_delta.merge(
            chunk.totals, on=QUERY_KEY, how="left", suffixes=("", "_old")
        )
        new_totals["clicks"] = new_totals["clicks"] + new_totals["clicks_old"].fillna(0.0)
        new_totals = new_totals[[*QUERY_KEY, "clicks"]]
        page_rows, rescan = _new_page_stats(
            chunk.current, chunk.page_delta, new_totals, chunk.touched
        )
        with warehouse.transaction() as conn:
            if _write_chunk(conn, site, days, chunk, new_totals, page_rows, rescan, stats):
                return stats
    raise RuntimeError(f"url_lifetime_stats for {site}: other refreshes kept interleaving")


def _site_version(conn: Connection, site: str) -> int:
    row = conn.execute(f"SELECT version FROM {VERSION_TABLE} WHERE site_url = ?", [site]).fetchone()
    return int(row[0]) if row else 0


def _read_chunk(
    conn: Connection, site: str, days: Sequence[dt.date], stats: RefreshStats
) -> _Chunk:
    version = _site_version(conn, site)
    in_days, day_params = _in_days(days)
    fingerprints = conn.read_sql(
        f"""
        SELECT report, date, MAX(run_id) AS run_id, MAX(fetched_at) AS fetched_at,
               COUNT(*) AS pages
        FROM {LEDGER_TABLE}
        WHERE site_url = ? AND report IN (?, ?) AND {in_days}
        GROUP BY report, date
        """,
        [site, *SOURCE_REPORTS, *day_params],
    )
    # Fingerprints are read before the rows: a partition rewritten in between is seen as
    # changed again next time, never skipped.
    new_page = conn.read_sql(
        f"""
        SELECT search_type, page, date, SUM(clicks) AS clicks,
               SUM(impressions) AS impressions, SUM(position * impressions) AS position_impressions
        FROM {PAGE.table}
        WHERE site_url = ? AND {in_days}
        GROUP BY search_type, page, date
        """,
        [site, *day_params],
    )
    new_query = conn.read_sql(
        f"""
        SELECT search_type, page, query, date, SUM(clicks) AS clicks
        FROM {PAGE_QUERY.table}
        WHERE site_url = ? AND clicks > 0 AND {in_days}
        GROUP BY search_type, page, query, date
        """,
        [site, *day_params],
    )
    old_page = conn.read_sql(
        "SELECT search_type, page, date, clicks, impressions, position_impressions "
        f"FROM {PAGE_DAY_TABLE} "
        f"WHERE site_url = ? AND {in_days}",
        [site, *day_params],
    )
    old_query = conn.read_sql(
        f"SELECT search_type, page, query, date, clicks FROM {QUERY_DAY_TABLE} "
        f"WHERE site_url = ? AND {in_days}",
        [site, *day_params],
    )
    stats.source_rows_read += len(fingerprints) + len(new_page) + len(new_query)
    stats.state_rows_read += len(old_page) + len(old_query)
    for frame in (new_page, new_query, old_page, old_query):
        frame["date"] = frame["date"].map(_date)

    page_delta = _page_delta(old_page, new_page)
    query_delta = (
        pd.concat([new_query.assign(sign=1.0), old_query.assign(sign=-1.0)])
        .assign(clicks=lambda f: f["clicks"] * f["sign"])
        .groupby(QUERY_KEY, as_index=False)["clicks"]
        .sum()
    )
    query_delta = query_delta[query_delta["clicks"] != 0]
    touched = (
        pd.concat([page_delta[PAGE_KEY], query_delta[PAGE_KEY]])
        .drop_duplicates()
        .sort_values(PAGE_KEY)
        .reset_index(drop=True)
    )
    stats.pages_touched = len(touched)

    _stage(conn, "lifetime_stage_pages", touched, site)
    _stage(conn, "lifetime_stage_queries", query_delta[QUERY_KEY], site)
    current = conn.read_sql(
        f"SELECT s.* FROM {STATS_TABLE} s JOIN lifetime_stage_pages t "
        "ON s.site_url = t.site_url AND s.search_type = t.search_type AND s.page = t.page"
    )
    totals = conn.read_sql(
        f"SELECT q.search_type, q.page, q.query, q.clicks FROM {QUERY_TOTAL_TABLE} q "
        "JOIN lifetime_stage_queries t ON q.site_url = t.site_url "
        "AND q.search_type = t.search_type AND q.page = t.page AND q.query = t.query"
    )
    stats.state_rows_read += len(current) + len(totals)
    return _Chunk(version, fingerprints, new_page, new_query, page_delta, query_delta, touched,
                  current, totals)  # fmt: skip


def _write_chunk(
    conn: Connection,
    site: str,
    days: Sequence[dt.date],
    chunk: _Chunk,
    new_totals: pd.DataFrame,
    page_rows: pd.DataFrame,
    rescan: pd.DataFrame,
    stats: RefreshStats,
) -> bool:
    """Write the chunk unless another refresh of `site` wrote since it was read (False)."""
    if conn.dialect == "postgres":
        conn.execute("SELECT pg_advisory_xact_lock(?, 0)", (_REFRESH_LOCK,))
    if _site_version(conn, site) != chunk.version:
        return False
    in_days, day_params = _in_days(days)
    _stage(conn, "lifetime_stage_pages", chunk.touched, site)
    _stage(conn, "lifetime_stage_queries", chunk.query_delta[QUERY_KEY], site)
    # Replace the per-day snapshots and the changed query totals.
    conn.execute(
        f"DELETE FROM {PAGE_DAY_TABLE} WHERE site_url = ? AND {in_days}", [site, *day_params]
    )
    conn.execute(
        f"DELETE FROM {QUERY_DAY_TABLE} WHERE site_url = ? AND {in_days}", [site, *day_params]
    )
    conn.execute(
        f"DELETE FROM {QUERY_TOTAL_TABLE} WHERE (site_url, search_type, page, query) IN "
        "(SELECT site_url, search_type, page, query FROM lifetime_stage_queries)"
    )
    stats.rows_written += _insert(conn, PAGE_DAY_TABLE, chunk.new_page, site)
    stats.rows_written += _insert(conn, QUERY_DAY_TABLE, chunk.new_query, site)
    stats.rows_written += _insert(
        conn, QUERY_TOTAL_TABLE, new_totals[new_totals["clicks"] > 0], site
    )
    if len(rescan):
        # Rare (a revision removed a page's first/last day or lowered its top query): read the
        # rollups just written, for those pages only.
        stats.pages_rescanned = len(rescan)
        page_rows, read = _rescan(conn, site, page_rows, rescan)
        stats.state_rows_read += read
    conn.execute(
        f"DELETE FROM {STATS_TABLE} WHERE (site_url, search_type, page) IN "
        "(SELECT site_url, search_type, page FROM lifetime_stage_pages)"
    )
    stats.rows_written += _insert(conn, STATS_TABLE, page_rows[page_rows["active_days"] > 0], site)
    _record_applied(conn, site, days, chunk.fingerprints)
    conn.execute(f"DELETE FROM {VERSION_TABLE} WHERE site_url = ?", [site])
    conn.execute(
        f"INSERT INTO {VERSION_TABLE} (site_url, version) VALUES (?, ?)", [site, chunk.version + 1]
    )
    return True


def _page_delta(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Per page: metric deltas, active-day delta, the first/last of its new days, and whether
    one of its old days disappeared (which may move its first/last day)."""
    metrics = ["clicks", "impressions", "position_impressions"]
    both = pd.concat([new.assign(sign=1), old.assign(sign=-1)], ignore_index=True)
    for column in metrics:
        both[column] = both[column] * both["sign"]
    delta = both.groupby(PAGE_KEY, as_index=False).agg(
        clicks=("clicks", "sum"),
        impressions=("impressions", "sum"),
        position_impressions=("position_impressions", "sum"),
        day_delta=("sign", "sum"),
    )
    new_span = new.groupby(PAGE_KEY).agg(new_first=("date", "min"), new_last=("date", "max"))
    gone = old.merge(new[[*PAGE_KEY, "date"]], on=[*PAGE_KEY, "date"], how="left", indicator=True)
    gone = (
        gone[gone["_merge"] == "left_only"]
        .groupby(PAGE_KEY)
        .agg(gone_first=("date", "min"), gone_last=("date", "max"))
    )
    return delta.join(new_span, on=PAGE_KEY).join(gone, on=PAGE_KEY)


def _new_page_stats(
    current: pd.DataFrame, delta: pd.DataFrame, new_totals: pd.DataFrame, touched: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the deltas to the touched pages' stats; the pages that need a rescan."""
    base = touched.merge(current.drop(columns=["site_url"]), on=PAGE_KEY, how="left")
    rows = base.merge(delta, on=PAGE_KEY, how="left", suffixes=("", "_delta"))
    for column in ("clicks", "impressions", "position_impressions"):
        rows[column] = rows[column].fillna(0.0) + rows[f"{column}_delta"].fillna(0.0)
    rows["active_days"] = rows["active_days"].fillna(0) + rows["day_delta"].fillna(0)
    first = rows["first_date"].where(rows["first_date"].notna(), None)
    last = rows["last_date"].where(rows["last_date"].notna(), None)
    rows["first_date"] = [
        min(d for d in (a, b) if d is not None and not pd.isna(d)) if not _none(a, b) else None
        for a, b in zip(first.map(_maybe_date), rows["new_first"].map(_maybe_date), strict=True)
    ]
    rows["last_date"] = [
        max(d for d in (a, b) if d is not None and not pd.isna(d)) if not _none(a, b) else None
        for a, b in zip(last.map(_maybe_date), rows["new_last"].map(_maybe_date), strict=True)
    ]
    rescan = [
        rows.loc[
            (rows["gone_first"].map(_maybe_date) == rows["first_date"])
            | (rows["gone_last"].map(_maybe_date) == rows["last_date"]),
            PAGE_KEY,
        ]
    ]

    # Top query: the old top (with its new total) against every query whose total changed.
    changed = new_totals[new_totals["clicks"] > 0]
    old_top = rows.loc[rows["top_query"].notna(), [*PAGE_KEY, "top_query", "top_query_clicks"]]
    old_top = old_top.rename(columns={"top_query": "query", "top_query_clicks": "clicks"})
    lowered = old_top.merge(new_totals, on=QUERY_KEY, suffixes=("", "_new"))
    lowered = lowered[lowered["clicks_new"] < lowered["clicks"]]
    rescan.append(lowered[PAGE_KEY])
    unchanged_top = old_top.merge(new_totals[QUERY_KEY], on=QUERY_KEY, how="left",
                                  indicator=True)  # fmt: skip
    unchanged_top = unchanged_top[unchanged_top["_merge"] == "left_only"][[*QUERY_KEY, "clicks"]]
    top = _top_queries(pd.concat([unchanged_top, changed], ignore_index=True))
    rows = rows.drop(columns=["top_query", "top_query_clicks"]).merge(top, on=PAGE_KEY, how="left")
    pages = pd.concat(rescan).drop_duplicates().sort_values(PAGE_KEY).reset_index(drop=True)
    return _finish(rows), pages


def _none(a: object, b: object) -> bool:
    return (a is None or pd.isna(a)) and (b is None or pd.isna(b))


def _maybe_date(value: object) -> dt.date | None:
    if value is None or (not isinstance(value, dt.date) and pd.isna(value)):
        return None
    return _date(value)


def _top_queries(candidates: pd.DataFrame) -> pd.DataFrame:
    """Per page the query with the most clicks; ties go to the alphabetically first.

    Also for no candidates: the empty result keeps the key columns' types (an empty frame built
    from lists is float64 in pandas 3, and merging it on text keys raised).
    """
    best = candidates.sort_values([*PAGE_KEY, "clicks", "query"],
                                  ascending=[True, True, False, True])  # fmt: skip
    best = best.drop_duplicates(PAGE_KEY)
    return best.rename(columns={"query": "top_query", "clicks": "top_query_clicks"})[
        [*PAGE_KEY, "top_query", "top_query_clicks"]
    ]


def _finish(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    rows["ctr"] = (rows["clicks"] / rows["impressions"]).where(rows["impressions"] > 0)
    rows["avg_position"] = (rows["position_impressions"] / rows["impressions"]).where(
        rows["impressions"] > 0
    )
    rows["active_days"] = rows["active_days"].astype("int64")
    return rows[[*STATS_COLUMNS[1:], "position_impressions"]]


def _rescan(
    conn: Connection, site: str, rows: pd.DataFrame, pages: pd.DataFrame
) -> tuple[pd.DataFrame, int]:
    """Recompute first/last day and top query of `pages` from the rollups (already updated)."""
    _stage(conn, "lifetime_stage_rescan", pages, site)
    joined = "d.site_url = r.site_url AND d.search_type = r.search_type AND d.page = r.page"
    span = conn.read_sql(
        "SELECT d.search_type, d.page, MIN(d.date) AS first_date, MAX(d.date) AS last_date "
        f"FROM {PAGE_DAY_TABLE} d JOIN lifetime_stage_rescan r ON {joined} "
        "GROUP BY d.search_type, d.page"
    )
    queries = conn.read_sql(
        f"SELECT d.search_type, d.page, d.query, d.clicks FROM {QUERY_TOTAL_TABLE} d "
        f"JOIN lifetime_stage_rescan r ON {joined}"
    )
    rows = rows.set_index(PAGE_KEY)
    span = span.set_index(PAGE_KEY)
    rows.loc[span.index, "first_date"] = span["first_date"].map(_date)
    rows.loc[span.index, "last_date"] = span["last_date"].map(_date)
    top = _top_queries(queries).set_index(PAGE_KEY)
    rows.loc[pd.MultiIndex.from_frame(pages), ["top_query", "top_query_clicks"]] = None
    rows.loc[top.index, ["top_query", "top_query_clicks"]] = top[["top_query", "top_query_clicks"]]
    return rows.reset_index(), len(span) + len(queries)


def _stage(conn: Connection, table: str, frame: pd.DataFrame, site: str) -> None:
    """A temporary key list to join against (both backends drop it when the connection closes)."""
    columns = list(frame.columns)
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    defs = ", ".join(f"{c} VARCHAR" for c in ["site_url", *columns])
    conn.execute(f"CREATE TEMP TABLE {table} ({defs})")
    if len(frame):
        data = {
            "site_url": [site] * len(frame),
            **{c: frame[c].astype(str).tolist() for c in columns},
        }
        conn.insert_arrow(table, pa.Table.from_pydict(data))


def _insert(conn: Connection, table: str, frame: pd.DataFrame, site: str) -> int:
    if frame.empty:
        return 0
    schema = _SCHEMAS[table]
    data = frame.assign(site_url=site)
    arrays = []
    for f in schema:
        values = data[f.name].tolist()
        values = [None if v is not None and not isinstance(v, str) and pd.isna(v) else v
                  for v in values]  # fmt: skip
        arrays.append(pa.array(values, type=f.type))
    conn.insert_arrow(table, pa.Table.from_arrays(arrays, schema=schema))
    return len(frame)


def _record_applied(
    conn: Connection, site: str, days: Sequence[dt.date], fingerprints: pd.DataFrame
) -> None:
    in_days, day_params = _in_days(days)
    conn.execute(
        f"DELETE FROM {APPLIED_TABLE} WHERE site_url = ? AND {in_days}", [site, *day_params]
    )
    if fingerprints.empty:
        return
    frame = pd.DataFrame(
        {
            "report": fingerprints["report"],
            "date": fingerprints["date"].map(_date),
            "fingerprint": [
                _fingerprint(r.run_id, r.fetched_at, r.pages)
                for r in fingerprints.itertuples(index=False)
            ],
        }
    )
    _insert(conn, APPLIED_TABLE, frame, site)
