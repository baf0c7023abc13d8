"""Cross-report proofs: one report's rows against another's totals of the same days.

Judged over the whole history only: in a run, one report's step often finished before the
other's wrote the same days. (`reconcile.capped_remainder` is the other one, beside its view.)
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
from gsc_pipeline.reports import SITE, Report
from gsc_pipeline.warehouse import Warehouse, as_day

ANONYMIZED_SHARE = "anonymized_share"
# Ahrefs measured ~46% of clicks hidden on average across 146k sites; above half is unusual
# enough that a user should look (brand-poor long-tail sites can legitimately exceed it).
ANONYMIZED_SHARE_WARN = 0.5


def anonymized_share(
    warehouse: Warehouse,
    site_url: str,
    page_query: Report,
    days: Sequence[dt.date] | None = None,
    *,
    threshold: float = ANONYMIZED_SHARE_WARN,
) -> CheckOutcome:
    """Share of the property's clicks (web) missing from page x query rows, per day.

    Google drops rare (anonymized) queries from query-grouped rows but counts them in property
    totals; the share is 1 - sum(page x query clicks) / property clicks. Days above `threshold`
    are flagged; days missing either report are not measured (and counted as such).
    """
    tables = [SITE.table, page_query.table]
    if absent := warehouse.missing_tables(tables):
        return not_evaluated(ANONYMIZED_SHARE, f"{', '.join(absent)}: {NOTHING_FETCHED}")
    where, params = DaySpan.of(days).where()
    totals = warehouse.read_sql(
        f"""
        SELECT date, SUM(clicks) AS property_clicks, SUM(impressions) AS property_impressions
        FROM {SITE.table} WHERE site_url = ? AND search_type = 'web'{where} GROUP BY date
        """,
        [site_url, *params],
    )
    detail = warehouse.read_sql(
        f"""
        SELECT date, SUM(clicks) AS query_clicks, SUM(impressions) AS query_impressions
        FROM {page_query.table} WHERE site_url = ? AND search_type = 'web'{where} GROUP BY date
        """,
        [site_url, *params],
    )
    totals["date"] = totals["date"].map(as_day)
    detail["date"] = detail["date"].map(as_day)
    both = totals.merge(detail, on="date", how="inner")
    both = both[both["property_clicks"] > 0]
    share = 1.0 - both["query_clicks"] / both["property_clicks"]
    property_clicks = float(both["property_clicks"].sum())
    overall = 1.0 - float(both["query_clicks"].sum()) / property_clicks if property_clicks else 0.0
    impressions = float(both["property_impressions"].sum())
    overall_impressions = (
        1.0 - float(both["query_impressions"].sum()) / impressions if impressions else 0.0
    )
    missing = sorted(set(days or ()) - set(both["date"]))
    return judged(
        ANONYMIZED_SHARE,
        both.loc[share > threshold, "date"],
        checked=both["date"],
        problem=f"more than {threshold:.0%} of clicks in no page x query row",
        unmeasured=(
            f"no day has both {SITE.table} totals and {page_query.table} rows yet; "
            "evaluated once both reports hold the same days"
        ),
        # Days of the range that could not be measured (one of the two reports not stored).
        unmeasured_days=len(missing),
        anonymized_click_share=round(overall, 4),
        anonymized_impression_share=round(overall_impressions, 4),
        max_daily_click_share=round(float(share.max()), 4) if len(share) else 0.0,
        threshold=threshold,
    )
