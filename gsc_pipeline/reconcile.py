"""Reconciliation: what page x query rows do not hold, per day (and per page), and why.

Google's property totals (the `site` report) count every click; page x query rows leave out
anonymized (rare) queries, which is Google's documented reason, and whatever the daily row cap
cut. The view `gsc_remainder` gives, per site, search type and day (level 'day', against the
`site` totals) and per page (level 'page', against the `page` report's byPage totals), the
totals, what `page_query` stores, the remainder, and its reason: 'anonymized' when every request
of that day was under the cap (sharding included: nothing was cut), 'capped' when a shard was
still capped (the remainder then holds the cut rows and the anonymized ones, which no request
can tell apart: the capped figure is an upper bound). The `capped_remainder` check fails while
any day has a capped remainder, with the numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from gsc_pipeline.proof.outcome import (
    NOTHING_FETCHED,
    CheckOutcome,
    DaySpan,
    judged,
    not_evaluated,
)
from gsc_pipeline.reports import DAILY_ROW_CAP, PAGE, PAGE_QUERY, SITE
from gsc_pipeline.warehouse import LEDGER_TABLE, Warehouse, as_day

REMAINDER_VIEW = "gsc_remainder"
CAPPED_REMAINDER = "capped_remainder"

_LEDGER = f"""
    SELECT site_url, search_type, date,
           SUM(CASE WHEN rows_fetched >= {DAILY_ROW_CAP} THEN 1 ELSE 0 END) AS capped_shards
    FROM (SELECT site_url, search_type, date, shard, SUM(rows_returned) AS rows_fetched
          FROM {LEDGER_TABLE} WHERE report = '{PAGE_QUERY.name}'
          GROUP BY site_url, search_type, date, shard) per_shard
    GROUP BY site_url, search_type, date
"""


def _level_sql(level: str, totals: str, page: str) -> str:
    """One level of the view: `totals` (a report table) against page x query sums.

    One aggregate over both tables stacked (UNION ALL), not a join of two aggregates: on
    fresh tables without statistics Postgres planned that join as a nested loop (minutes for
    20,000 pages).
    """
    by_page = ", page" if page == "page" else ""
    return f"""
    SELECT '{level}' AS level, s.site_url, s.search_type, s.date, {page} AS page,
           s.total_clicks, s.total_impressions, s.stored_clicks, s.stored_impressions,
           s.total_clicks - s.stored_clicks AS remainder_clicks,
           s.total_impressions - s.stored_impressions AS remainder_impressions,
           l.capped_shards,
           CASE WHEN l.capped_shards > 0 THEN 'capped' ELSE 'anonymized' END AS reason
    FROM (SELECT site_url, search_type, date{by_page},
                 SUM(total_clicks) AS total_clicks, SUM(total_impressions) AS total_impressions,
                 SUM(stored_clicks) AS stored_clicks,
                 SUM(stored_impressions) AS stored_impressions, SUM(totals) AS totals
          FROM (SELECT site_url, search_type, date{by_page}, clicks AS total_clicks,
                       impressions AS total_impressions, 0 AS stored_clicks,
                       0 AS stored_impressions, 1 AS totals
                FROM {totals}
                UNION ALL
                SELECT site_url, search_type, date{by_page}, 0, 0, clicks, impressions, 0
                FROM {PAGE_QUERY.table}) stacked
          GROUP BY site_url, search_type, date{by_page}) s
    JOIN ledger l
      ON l.site_url = s.site_url AND l.search_type = s.search_type AND l.date = s.date
    WHERE s.totals > 0
    """


def ensure_remainder_view(warehouse: Warehouse) -> bool:
    """(Re)create `gsc_remainder` from the tables there are; False when it cannot exist yet
    (no `site` or `page_query` rows stored). The page level appears once `page` is stored."""
    if warehouse.missing_tables([LEDGER_TABLE, SITE.table, PAGE_QUERY.table]):
        return False
    levels = [_level_sql("day", SITE.table, "CAST(NULL AS VARCHAR)")]
    if not warehouse.missing_tables([PAGE.table]):
        levels.append(_level_sql("page", PAGE.table, "page"))
    union = "\n    UNION ALL\n".join(levels)
    warehouse.create_view(REMAINDER_VIEW, f"WITH ledger AS ({_LEDGER})\n{union}")
    return True


def capped_remainder(
    warehouse: Warehouse, site_url: str, days: Sequence[dt.date] | None = None
) -> CheckOutcome:
    """Days whose page x query rows still miss rows the daily cap cut (a shard left capped).

    Fails naming those days, with the clicks and impressions not stored on them; the days
    reconciled in full (every remainder anonymized) pass, their anonymized share in metadata.
    """
    if not ensure_remainder_view(warehouse):
        return not_evaluated(
            CAPPED_REMAINDER, f"{SITE.table} and {PAGE_QUERY.table}: {NOTHING_FETCHED}"
        )
    where, params = DaySpan.of(days).where()
    frame = warehouse.read_sql(
        f"SELECT search_type, date, total_clicks, total_impressions, stored_clicks, "
        f"remainder_clicks, remainder_impressions, capped_shards, reason "
        f"FROM {REMAINDER_VIEW} WHERE level = 'day' AND site_url = ?{where}",
        [site_url, *params],
    )
    frame["date"] = frame["date"].map(as_day)
    capped = frame[frame["reason"] == "capped"]
    anonymized = frame[frame["reason"] == "anonymized"]
    total = float(anonymized["total_clicks"].sum())
    return judged(
        CAPPED_REMAINDER,
        capped["date"],
        checked=frame["date"],
        problem="page x query rows miss rows Google's daily cap cut (a shard still capped)",
        unmeasured=f"no day has both {SITE.table} totals and {PAGE_QUERY.table} rows yet",
        capped_shards=int(capped["capped_shards"].sum()),
        capped_remainder_clicks=float(capped["remainder_clicks"].sum()),
        capped_remainder_impressions=float(capped["remainder_impressions"].sum()),
        # Per capped day: what the totals say and what page x query rows hold.
        capped_days=[
            f"{r.date.isoformat()} {r.search_type}: {int(r.capped_shards)} capped shard(s), "
            f"{r.stored_clicks:.0f} of {r.total_clicks:.0f} clicks stored "
            f"({r.remainder_clicks:.0f} not: cut by the cap or anonymized)"
            for r in capped.itertuples(index=False)
        ],
        anonymized_clicks=float(anonymized["remainder_clicks"].sum()),
        anonymized_click_share=round(float(anonymized["remainder_clicks"].sum()) / total, 4)
        if total
        else 0.0,
        view=REMAINDER_VIEW,
    )
