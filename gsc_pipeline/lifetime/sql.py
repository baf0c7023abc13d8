"""Every read and write of a refresh: the ledger's fingerprints, the changed days' rows, the
state tables. Plain SQL that runs on every backend; what differs (types, locks) the warehouse
supplies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from gsc_pipeline.lifetime import compute
from gsc_pipeline.lifetime.compute import date_of
from gsc_pipeline.lifetime.cost import RefreshStats
from gsc_pipeline.lifetime.tables import (
    APPLIED_TABLE,
    PAGE_DAY_TABLE,
    PAGE_KEY,
    QUERY_DAY_TABLE,
    QUERY_KEY,
    QUERY_TOTAL_TABLE,
    SCHEMAS,
    SOURCE_REPORTS,
    STATS_TABLE,
    VERSION_TABLE,
)
from gsc_pipeline.reports import PAGE, PAGE_QUERY
from gsc_pipeline.warehouse import LEDGER_TABLE, Connection, Warehouse


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
        (r.site_url, r.report, date_of(r.date)): _fingerprint(r.run_id, r.fetched_at, r.pages)
        for r in ledger.itertuples(index=False)
    }
    before = {
        (r.site_url, r.report, date_of(r.date)): r.fingerprint
        for r in applied.itertuples(index=False)
    }
    moved = {key for key in current.keys() | before.keys() if current.get(key) != before.get(key)}
    return sorted({(site, day) for site, _, day in moved})


def _fingerprint(run_id: object, fetched_at: object, pages: object) -> str:
    return f"{run_id}|{pd.Timestamp(fetched_at).isoformat()}|{int(pages)}"  # type: ignore[arg-type]


def _in_days(days: Sequence[dt.date]) -> tuple[str, list[dt.date]]:
    return f"date IN ({', '.join('?' for _ in days)})", list(days)


@dataclass
class Chunk:
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


def _site_version(conn: Connection, site: str) -> int:
    row = conn.execute(f"SELECT version FROM {VERSION_TABLE} WHERE site_url = ?", [site]).fetchone()
    return int(row[0]) if row else 0


def read_chunk(conn: Connection, site: str, days: Sequence[dt.date], stats: RefreshStats) -> Chunk:
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
        frame["date"] = frame["date"].map(date_of)

    page_delta = compute.page_delta(old_page, new_page)
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
    return Chunk(version, fingerprints, new_page, new_query, page_delta, query_delta, touched,
                  current, totals)  # fmt: skip


def write_chunk(
    warehouse: Warehouse,
    conn: Connection,
    site: str,
    days: Sequence[dt.date],
    chunk: Chunk,
    new_totals: pd.DataFrame,
    page_rows: pd.DataFrame,
    rescan: pd.DataFrame,
    stats: RefreshStats,
) -> bool:
    """Write the chunk unless another refresh of `site` wrote since it was read (False)."""
    # Refreshes take turns here; ingestion never takes this lock, so it never waits on them.
    warehouse.lock(conn, STATS_TABLE, "refresh")
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
    rows.loc[span.index, "first_date"] = span["first_date"].map(date_of)
    rows.loc[span.index, "last_date"] = span["last_date"].map(date_of)
    top = compute.top_queries(queries).set_index(PAGE_KEY)
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
    schema = SCHEMAS[table]
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
            "date": fingerprints["date"].map(date_of),
            "fingerprint": [
                _fingerprint(r.run_id, r.fetched_at, r.pages)
                for r in fingerprints.itertuples(index=False)
            ],
        }
    )
    _insert(conn, APPLIED_TABLE, frame, site)
