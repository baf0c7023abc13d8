"""The arithmetic of a refresh, in pandas: deltas, first/last days, top queries. No I/O."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from gsc_pipeline.lifetime.tables import PAGE_KEY, QUERY_KEY, STATS_COLUMNS


def date_of(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()  # type: ignore[arg-type]


def page_delta(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
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


def new_page_stats(
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
    top = top_queries(pd.concat([unchanged_top, changed], ignore_index=True))
    rows = rows.drop(columns=["top_query", "top_query_clicks"]).merge(top, on=PAGE_KEY, how="left")
    pages = pd.concat(rescan).drop_duplicates().sort_values(PAGE_KEY).reset_index(drop=True)
    return _finish(rows), pages


def _none(a: object, b: object) -> bool:
    return (a is None or pd.isna(a)) and (b is None or pd.isna(b))


def _maybe_date(value: object) -> dt.date | None:
    if value is None or (not isinstance(value, dt.date) and pd.isna(value)):
        return None
    return date_of(value)


def top_queries(candidates: pd.DataFrame) -> pd.DataFrame:
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
