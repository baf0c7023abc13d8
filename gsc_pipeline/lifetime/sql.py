"""Every read and write of a refresh, set-based: the ledger's fingerprints, the changed days'
rollups, the deltas, the state tables. Plain SQL that runs on both backends; what differs (text
order, locks, indexes) the warehouse supplies.

A chunk of (site, day)s is one transaction under the refresh lock. Its working sets are
temporary tables (`lt_*`, dropped with the connection) that the statements join; no report row
passes through Python. The pandas version this replaced spent a first build's time converting
rows: 18-20 s against 2.6 s on DuckDB, 29-35 s against 10-11 s on PostgreSQL
(`scripts/measure_lifetime.py`; docs/bench/README.md, issue 14 stop 24).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from gsc_pipeline.lifetime.cost import RefreshStats
from gsc_pipeline.lifetime.tables import (
    APPLIED_TABLE,
    PAGE_DAY_TABLE,
    QUERY_DAY_TABLE,
    QUERY_TOTAL_TABLE,
    SCHEMAS,
    SOURCE_REPORTS,
    STATS_COLUMNS,
    STATS_TABLE,
)
from gsc_pipeline.reports import PAGE, PAGE_QUERY
from gsc_pipeline.warehouse import LEDGER_TABLE, Connection, Warehouse, as_day

if TYPE_CHECKING:
    import pandas as pd

# Join conditions on the page key (site, search type, page) and the query key, between aliases.
_PAGE_ON = (
    "{a}.site_url = {b}.site_url AND {a}.search_type = {b}.search_type AND {a}.page = {b}.page"
)
_QUERY_ON = _PAGE_ON + " AND {a}.query = {b}.query"
_PAGE_KEY = "site_url, search_type, page"


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
        (r.site_url, r.report, as_day(r.date)): _fingerprint(r.run_id, r.fetched_at, r.pages)
        for r in ledger.itertuples(index=False)
    }
    before = {
        (r.site_url, r.report, as_day(r.date)): r.fingerprint
        for r in applied.itertuples(index=False)
    }
    moved = {key for key in current.keys() | before.keys() if current.get(key) != before.get(key)}
    return sorted({(site, day) for site, _, day in moved})


def _fingerprint(run_id: object, fetched_at: object, pages: object) -> str:
    import pandas as pd

    return f"{run_id}|{pd.Timestamp(fetched_at).isoformat()}|{int(pages)}"  # type: ignore[arg-type]


def apply_chunk(
    warehouse: Warehouse, conn: Connection, changed: Sequence[tuple[str, dt.date]]
) -> RefreshStats:
    """Replace the snapshot of the `changed` (site, day)s and apply the difference, in `conn`'s
    transaction: sums and active days by delta, first/last day by min/max, the top query from
    the old top and the queries whose totals changed. Pages whose first/last day was removed or
    whose top query lost clicks are recomputed from the rollups (for those pages only)."""
    # Refreshes take turns here; ingestion never takes this lock, so it never waits on them.
    # Everything below is read after it, so a refresh that ran meanwhile is seen, not undone.
    warehouse.lock(conn, STATS_TABLE, "refresh")
    stats = RefreshStats(days_refreshed=len(changed), changed=list(changed))
    work = _Chunk(conn, changed)
    # Fingerprints are read before the rows: a partition rewritten in between is seen as
    # changed again next time, never skipped.
    fingerprints = conn.read_sql(
        f"""
        SELECT r.site_url, r.report, r.date, MAX(r.run_id) AS run_id,
               MAX(r.fetched_at) AS fetched_at, COUNT(*) AS pages
        FROM {work.rows(LEDGER_TABLE)} AND r.report IN (?, ?)
        GROUP BY r.site_url, r.report, r.date
        """,
        [*work.params, *SOURCE_REPORTS],
    )
    new_pages = work.temp(
        "lt_new_page",
        f"""
        SELECT r.site_url, r.search_type, r.page, r.date, SUM(r.clicks) AS clicks,
               SUM(r.impressions) AS impressions,
               SUM(r.position * r.impressions) AS position_impressions
        FROM {work.rows(PAGE.table)}
        GROUP BY r.site_url, r.search_type, r.page, r.date
        """,
        work.params,
    )
    new_queries = work.temp(
        "lt_new_query",
        f"""
        SELECT r.site_url, r.search_type, r.page, r.query, r.date, SUM(r.clicks) AS clicks
        FROM {work.rows(PAGE_QUERY.table)} AND r.clicks > 0
        GROUP BY r.site_url, r.search_type, r.page, r.query, r.date
        """,
        work.params,
    )
    stats.source_rows_read = len(fingerprints) + new_pages + new_queries
    # The snapshot of what these days contributed before.
    stats.state_rows_read += work.temp(
        "lt_old_page",
        f"SELECT r.site_url, r.search_type, r.page, r.date, r.clicks, r.impressions, "
        f"r.position_impressions FROM {work.rows(PAGE_DAY_TABLE)}",
        work.params,
    )
    stats.state_rows_read += work.temp(
        "lt_old_query",
        f"SELECT r.site_url, r.search_type, r.page, r.query, r.date, r.clicks "
        f"FROM {work.rows(QUERY_DAY_TABLE)}",
        work.params,
    )

    # Per page: metric and active-day deltas, the first/last of its new days, and the first/
    # last of its old days that are gone (which may move its first/last day).
    work.temp(
        "lt_page_delta",
        f"""
        SELECT {_PAGE_KEY},
               SUM(sign * clicks) AS clicks, SUM(sign * impressions) AS impressions,
               SUM(sign * position_impressions) AS position_impressions, SUM(sign) AS day_delta,
               MIN(CASE WHEN sign = 1 THEN date END) AS new_first,
               MAX(CASE WHEN sign = 1 THEN date END) AS new_last
        FROM (
            SELECT {_PAGE_KEY}, date, clicks, impressions, position_impressions, 1 AS sign
            FROM lt_new_page
            UNION ALL
            SELECT {_PAGE_KEY}, date, clicks, impressions, position_impressions, -1 AS sign
            FROM lt_old_page
        ) AS both_days
        GROUP BY {_PAGE_KEY}
        """,
    )
    work.temp(
        "lt_gone",
        f"""
        SELECT o.site_url, o.search_type, o.page, MIN(o.date) AS gone_first,
               MAX(o.date) AS gone_last
        FROM lt_old_page o
        LEFT JOIN lt_new_page n ON {_PAGE_ON.format(a="n", b="o")} AND n.date = o.date
        WHERE n.page IS NULL
        GROUP BY o.site_url, o.search_type, o.page
        """,
    )
    # Per (page, query) whose clicks changed: the delta, then the new lifetime total.
    work.temp(
        "lt_query_delta",
        f"""
        SELECT {_PAGE_KEY}, query, SUM(sign * clicks) AS clicks
        FROM (
            SELECT {_PAGE_KEY}, query, clicks, 1 AS sign FROM lt_new_query
            UNION ALL
            SELECT {_PAGE_KEY}, query, clicks, -1 AS sign FROM lt_old_query
        ) AS both_days
        GROUP BY {_PAGE_KEY}, query
        HAVING SUM(sign * clicks) <> 0
        """,
    )
    work.temp(
        "lt_new_totals",
        f"""
        SELECT d.site_url, d.search_type, d.page, d.query,
               COALESCE(t.clicks, 0) + d.clicks AS clicks, t.clicks AS old_clicks
        FROM lt_query_delta d
        LEFT JOIN {QUERY_TOTAL_TABLE} t ON {_QUERY_ON.format(a="t", b="d")}
        """,
    )
    stats.state_rows_read += work.count("lt_new_totals WHERE old_clicks IS NOT NULL")
    stats.pages_touched = work.temp(
        "lt_touched",
        f"SELECT {_PAGE_KEY} FROM lt_page_delta UNION SELECT {_PAGE_KEY} FROM lt_query_delta",
    )
    _new_page_stats(work)
    stats.state_rows_read += work.count("lt_stats WHERE in_stats")
    stats.pages_rescanned = work.temp(
        "lt_rescan",
        f"""
        SELECT {_PAGE_KEY} FROM lt_stats
        WHERE gone_first = first_date OR gone_last = last_date
        UNION
        SELECT s.site_url, s.search_type, s.page FROM {STATS_TABLE} s
        JOIN lt_new_totals n ON {_PAGE_ON.format(a="n", b="s")} AND n.query = s.top_query
        WHERE n.clicks < s.top_query_clicks
        """,
    )

    # Replace the per-day snapshots and the changed query totals.
    work.delete_days(PAGE_DAY_TABLE)
    work.delete_days(QUERY_DAY_TABLE)
    conn.execute(
        f"DELETE FROM {QUERY_TOTAL_TABLE} WHERE ({_PAGE_KEY}, query) IN "
        f"(SELECT {_PAGE_KEY}, query FROM lt_query_delta)"
    )
    page_day = f"{_PAGE_KEY}, date, clicks, impressions, position_impressions"
    conn.execute(f"INSERT INTO {PAGE_DAY_TABLE} ({page_day}) SELECT {page_day} FROM lt_new_page")
    query_day = f"{_PAGE_KEY}, query, date, clicks"
    conn.execute(
        f"INSERT INTO {QUERY_DAY_TABLE} ({query_day}) SELECT {query_day} FROM lt_new_query"
    )
    totals = work.count("lt_new_totals WHERE clicks > 0")
    conn.execute(
        f"INSERT INTO {QUERY_TOTAL_TABLE} ({_PAGE_KEY}, query, clicks) "
        f"SELECT {_PAGE_KEY}, query, clicks FROM lt_new_totals WHERE clicks > 0"
    )
    if stats.pages_rescanned:
        # Rare (a revision removed a page's first/last day or lowered its top query): read the
        # rollups just written, for those pages only.
        stats.state_rows_read += _rescan(work)

    conn.execute(
        f"DELETE FROM {STATS_TABLE} WHERE ({_PAGE_KEY}) IN (SELECT {_PAGE_KEY} FROM lt_touched)"
    )
    written = work.count("lt_stats WHERE active_days > 0")
    conn.execute(
        f"""
        INSERT INTO {STATS_TABLE} ({", ".join(STATS_COLUMNS)}, position_impressions)
        SELECT s.site_url, s.search_type, s.page, s.first_date, s.last_date, s.clicks,
               s.impressions, CASE WHEN s.impressions > 0 THEN s.clicks / s.impressions END,
               CASE WHEN s.impressions > 0 THEN s.position_impressions / s.impressions END,
               s.active_days, t.top_query, t.top_query_clicks, s.position_impressions
        FROM lt_stats s LEFT JOIN lt_top t ON {_PAGE_ON.format(a="t", b="s")}
        WHERE s.active_days > 0
        """
    )
    stats.rows_written = new_pages + new_queries + totals + written
    work.delete_days(APPLIED_TABLE)
    _insert(conn, APPLIED_TABLE, _applied(fingerprints))
    return stats


class _Chunk:
    """The (site, day)s of one chunk, staged in `lt_days`, and the temporary tables built for
    it."""

    def __init__(self, conn: Connection, changed: Sequence[tuple[str, dt.date]]) -> None:
        self.conn = conn
        sites = sorted({site for site, _ in changed})
        days = sorted({day for _, day in changed})
        # Site and day lists first: they let both backends prune (index, zone maps) before
        # the join on lt_days keeps exactly the chunk's pairs.
        self._prune = (
            f"r.site_url IN ({', '.join('?' for _ in sites)}) "
            f"AND r.date IN ({', '.join('?' for _ in days)})"
        )
        self.params: list[object] = [*sites, *days]
        conn.execute("DROP TABLE IF EXISTS lt_days")
        conn.execute("CREATE TEMP TABLE lt_days (site_url VARCHAR, date DATE)")
        conn.insert_arrow(
            "lt_days",
            pa.table(
                {"site_url": [site for site, _ in changed], "date": [day for _, day in changed]},
                schema=pa.schema([("site_url", pa.string()), ("date", pa.date32())]),
            ),
        )

    def rows(self, table: str) -> str:
        """`table` as `r`, restricted to the chunk's (site, day)s: a FROM clause ending in a
        WHERE that more conditions can follow (`AND ...`); takes `params`."""
        return (
            f"{table} r JOIN lt_days k ON k.site_url = r.site_url AND k.date = r.date "
            f"WHERE {self._prune}"
        )

    def delete_days(self, table: str) -> None:
        self.conn.execute(
            f"DELETE FROM {table} r WHERE {self._prune} "
            "AND (r.site_url, r.date) IN (SELECT site_url, date FROM lt_days)",
            self.params,
        )

    def temp(self, table: str, select: str, params: Sequence[object] = ()) -> int:
        """(Re)create temporary `table` as `select`; returns its row count."""
        self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        self.conn.execute(f"CREATE TEMP TABLE {table} AS {select}", list(params))
        return self.count(table)

    def count(self, from_where: str, params: Sequence[object] = ()) -> int:
        row = self.conn.execute(f"SELECT COUNT(*) FROM {from_where}", list(params)).fetchone()
        return int(row[0])  # type: ignore[index]


def _new_page_stats(work: _Chunk) -> None:
    """`lt_stats` (the touched pages' stats with the deltas applied) and `lt_top` (their top
    queries: the old top, unless its total changed, against every query whose total changed).
    """
    work.temp(
        "lt_stats",
        f"""
        SELECT t.site_url, t.search_type, t.page,
               COALESCE(s.clicks, 0) + COALESCE(p.clicks, 0) AS clicks,
               COALESCE(s.impressions, 0) + COALESCE(p.impressions, 0) AS impressions,
               COALESCE(s.position_impressions, 0) + COALESCE(p.position_impressions, 0)
                   AS position_impressions,
               COALESCE(s.active_days, 0) + COALESCE(p.day_delta, 0) AS active_days,
               LEAST(s.first_date, p.new_first) AS first_date,
               GREATEST(s.last_date, p.new_last) AS last_date,
               g.gone_first, g.gone_last, s.page IS NOT NULL AS in_stats
        FROM lt_touched t
        LEFT JOIN {STATS_TABLE} s ON {_PAGE_ON.format(a="s", b="t")}
        LEFT JOIN lt_page_delta p ON {_PAGE_ON.format(a="p", b="t")}
        LEFT JOIN lt_gone g ON {_PAGE_ON.format(a="g", b="t")}
        """,
    )
    work.temp(
        "lt_top",
        _top_query_sql(
            work.conn,
            f"""
            SELECT {_PAGE_KEY}, query, clicks FROM lt_new_totals WHERE clicks > 0
            UNION ALL
            SELECT s.site_url, s.search_type, s.page, s.top_query AS query,
                   s.top_query_clicks AS clicks
            FROM {STATS_TABLE} s
            JOIN lt_touched t ON {_PAGE_ON.format(a="s", b="t")}
            LEFT JOIN lt_query_delta d ON {_PAGE_ON.format(a="d", b="s")}
                 AND d.query = s.top_query
            WHERE s.top_query IS NOT NULL AND d.query IS NULL
            """,
        ),
    )


def _top_query_sql(conn: Connection, candidates: str) -> str:
    """Per page the candidate query with the most clicks; ties go to the first by code point."""
    return f"""
        SELECT {_PAGE_KEY}, query AS top_query, clicks AS top_query_clicks
        FROM (
            SELECT {_PAGE_KEY}, query, clicks, ROW_NUMBER() OVER (
                PARTITION BY {_PAGE_KEY}
                ORDER BY clicks DESC, query{conn.code_point_order} ASC
            ) AS place
            FROM ({candidates}) AS candidates
        ) AS ranked
        WHERE place = 1
    """


def _rescan(work: _Chunk) -> int:
    """Recompute the stats and top query of the pages in `lt_rescan` from the rollups (already
    updated); returns the rollup rows read."""
    conn = work.conn
    rescanned = f"({_PAGE_KEY}) IN (SELECT {_PAGE_KEY} FROM lt_rescan)"
    conn.execute(f"DELETE FROM lt_stats WHERE {rescanned}")
    conn.execute(f"DELETE FROM lt_top WHERE {rescanned}")
    read = work.count(f"{PAGE_DAY_TABLE} WHERE {rescanned}")
    read += work.count(f"{QUERY_TOTAL_TABLE} WHERE {rescanned}")
    conn.execute(
        f"""
        INSERT INTO lt_stats ({_PAGE_KEY}, clicks, impressions, position_impressions,
                              active_days, first_date, last_date)
        SELECT {_PAGE_KEY}, SUM(clicks), SUM(impressions), SUM(position_impressions),
               COUNT(*), MIN(date), MAX(date)
        FROM {PAGE_DAY_TABLE} WHERE {rescanned}
        GROUP BY {_PAGE_KEY}
        """
    )
    conn.execute(
        f"INSERT INTO lt_top ({_PAGE_KEY}, top_query, top_query_clicks) "
        + _top_query_sql(
            conn, f"SELECT {_PAGE_KEY}, query, clicks FROM {QUERY_TOTAL_TABLE} WHERE {rescanned}"
        )
    )
    return read


def _applied(fingerprints: pd.DataFrame) -> pd.DataFrame:
    """The `lifetime_applied` rows for the ledger's fingerprints of the chunk's partitions."""
    import pandas as pd

    return pd.DataFrame(
        {
            "site_url": fingerprints["site_url"],
            "report": fingerprints["report"],
            "date": fingerprints["date"].map(as_day),
            "fingerprint": [
                _fingerprint(r.run_id, r.fetched_at, r.pages)
                for r in fingerprints.itertuples(index=False)
            ],
        }
    )


def _insert(conn: Connection, table: str, frame: pd.DataFrame) -> None:
    if len(frame):
        data = pa.Table.from_pandas(frame, schema=SCHEMAS[table], preserve_index=False)
        conn.insert_arrow(table, data)
