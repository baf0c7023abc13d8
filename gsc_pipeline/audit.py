"""Google's word on the stored days: restatements of final days, and which fresh days are final.

Google changes final data after the fact (impressions over-reported from May 2025 were corrected
in April 2026), and it calls fresh days final on its own schedule. Both are learned cheaply:

- the audit (`audit_property`): per property and search type ONE request grouped by date over
  the whole 16-month window (~490 rows, one page), whose final days are compared with the
  stored daily totals: the ledger of a date-only report (e.g. `site`) when the property stores
  one, else the totals the previous audit saw (`gsc_audit_totals`). Days whose totals changed
  beyond rounding are logged before/after in `gsc_restatements`; the caller re-fetches them.
- Google's clock (`record_final_before`, `gsc_google_clock`): the first day Google does not
  call final yet, as the last probe saw it, so a check can flag a fresh day left behind.

Plain Python (no Dagster): the sensors in `defs/sensors.py` call it, and so can a script.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from gsc_pipeline.gsc.client import GscClient
from gsc_pipeline.proof.outcome import CheckOutcome, judged, not_evaluated
from gsc_pipeline.reports import MAX_ROW_LIMIT, Report
from gsc_pipeline.search_calendar import oldest_available_day
from gsc_pipeline.warehouse.base import LEDGER_TABLE, Warehouse, as_day

if TYPE_CHECKING:
    import pandas as pd

AUDIT_TOTALS_TABLE = "gsc_audit_totals"
RESTATEMENTS_TABLE = "gsc_restatements"
GOOGLE_CLOCK_TABLE = "gsc_google_clock"
AUDIT_TOTALS_SCHEMA = pa.schema(
    [
        ("site_url", pa.string()),
        ("search_type", pa.string()),
        ("date", pa.date32()),
        ("clicks", pa.float64()),
        ("impressions", pa.float64()),
        ("audited_at", pa.timestamp("us")),
    ]
)
RESTATEMENTS_SCHEMA = pa.schema(
    [
        ("site_url", pa.string()),
        ("search_type", pa.string()),
        ("date", pa.date32()),
        ("clicks_before", pa.float64()),
        ("impressions_before", pa.float64()),
        ("clicks_after", pa.float64()),
        ("impressions_after", pa.float64()),
        ("detected_at", pa.timestamp("us")),
    ]
)
GOOGLE_CLOCK_SCHEMA = pa.schema(
    [
        ("site_url", pa.string()),
        # Every day before it is final (Google's firstIncompleteDate, or a later lower bound
        # when the probed range held no incomplete day).
        ("final_before", pa.date32()),
        ("checked_at", pa.timestamp("us")),
    ]
)
# Google answers whole clicks and impressions; stored totals are sums of the same numbers as
# doubles. Anything beyond half a click or impression is a change, not rounding.
TOTALS_TOLERANCE = 0.5
# A fresh day may stay fresh this many days after Google calls it final (the finalization
# sensor replaces it within one interval; a day behind means it is stuck) before the check fails.
FINALIZE_GRACE_DAYS = 1
RESTATED_DAYS = "restated_days"
FRESH_DAYS_FINALIZED = "fresh_days_finalized"
# Days listed in a check's metadata (the table holds all of them).
_LISTED = 100


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class GoogleTotals:
    """One date-grouped answer: per day clicks and impressions, and Google's first incomplete
    day in the range (None: every day of the range is final)."""

    first_incomplete: dt.date | None
    totals: pd.DataFrame  # date, clicks, impressions


def google_daily_totals(
    client: GscClient,
    site_url: str,
    search_type: str,
    first: dt.date,
    last: dt.date,
    *,
    stop_event: threading.Event | None = None,
) -> GoogleTotals:
    """One request grouped by date (dataState=all, so metadata says which days are not final)."""
    import pandas as pd

    body = {
        "startDate": first.isoformat(),
        "endDate": last.isoformat(),
        "dimensions": ["date"],
        "type": search_type,
        "dataState": "all",
        "rowLimit": MAX_ROW_LIMIT,
    }
    page = client.query_page(site_url, body, stop_event=stop_event)
    rows = page.rows
    totals = pd.DataFrame(
        {
            "date": [as_day(keys[0]) for keys in rows.field("keys").to_pylist()],
            "clicks": rows.field("clicks").to_pylist(),
            "impressions": rows.field("impressions").to_pylist(),
        }
    )
    incomplete = page.first_incomplete_date
    return GoogleTotals(dt.date.fromisoformat(incomplete[:10]) if incomplete else None, totals)


@dataclass(frozen=True)
class AuditResult:
    site_url: str
    final_before: dt.date
    restated: pd.DataFrame  # RESTATEMENTS_SCHEMA columns
    audited_days: int

    @property
    def restated_days(self) -> list[dt.date]:
        return sorted(set(self.restated["date"]))


def _stored_totals(
    warehouse: Warehouse, site_url: str, search_type: str, reports: list[Report]
) -> pd.DataFrame:
    """The stored daily totals to compare with: a date-only report's final ledger totals where
    one is stored, else what the last audit saw. Columns date, clicks, impressions."""
    import pandas as pd

    frames = []
    totals_report = next(
        (r.name for r in reports if r.api_dimensions == ["date"] and not r.filters), None
    )
    if totals_report and not warehouse.missing_tables([LEDGER_TABLE]):
        frames.append(
            warehouse.read_sql(
                f"""
                SELECT date, SUM(clicks) AS clicks, SUM(impressions) AS impressions
                FROM {LEDGER_TABLE}
                WHERE site_url = ? AND report = ? AND search_type = ? AND data_state = 'final'
                GROUP BY date
                """,
                [site_url, totals_report, search_type],
            )
        )
    if not warehouse.missing_tables([AUDIT_TOTALS_TABLE]):
        frames.append(
            warehouse.read_sql(
                f"SELECT date, clicks, impressions FROM {AUDIT_TOTALS_TABLE} "
                "WHERE site_url = ? AND search_type = ?",
                [site_url, search_type],
            )
        )
    if not frames:
        return pd.DataFrame({"date": [], "clicks": [], "impressions": []})
    stored = pd.concat(frames, ignore_index=True)
    stored["date"] = stored["date"].map(as_day)
    # The ledger first: it is what the warehouse holds.
    return stored.drop_duplicates("date", keep="first")


def audit_property(
    client: GscClient,
    warehouse: Warehouse,
    site_url: str,
    search_types: tuple[str, ...],
    reports: list[Report],
    today: dt.date,
    *,
    stop_event: threading.Event | None = None,
) -> AuditResult:
    """Compare Google's daily totals of every final day in the window with the stored ones.

    One request per search type. Days whose clicks or impressions moved beyond rounding are
    appended to `gsc_restatements` (before/after) and returned; Google's totals then become
    the audit's baseline, and its first incomplete day is recorded as Google's clock.
    """
    import pandas as pd

    now = _now()
    first = oldest_available_day(today)
    final_before = today + dt.timedelta(days=1)
    seen: list[pd.DataFrame] = []
    restated: list[pd.DataFrame] = []
    for search_type in search_types:
        google = google_daily_totals(
            client, site_url, search_type, first, today, stop_event=stop_event
        )
        if google.first_incomplete is not None:
            final_before = min(final_before, google.first_incomplete)
        final = google.totals[google.totals["date"] < (google.first_incomplete or final_before)]
        stored = _stored_totals(warehouse, site_url, search_type, reports)
        both = final.merge(stored, on="date", suffixes=("_after", "_before"))
        changed = both[
            ((both["clicks_after"] - both["clicks_before"]).abs() > TOTALS_TOLERANCE)
            | ((both["impressions_after"] - both["impressions_before"]).abs() > TOTALS_TOLERANCE)
        ]
        restated.append(changed.assign(site_url=site_url, search_type=search_type))
        seen.append(final.assign(site_url=site_url, search_type=search_type))
    found = pd.concat(restated, ignore_index=True).assign(detected_at=now)
    found = found[RESTATEMENTS_SCHEMA.names]
    audited = pd.concat(seen, ignore_index=True).assign(audited_at=now)
    # The log first: if the baseline were replaced first, a crash in between would lose the
    # restatement (the next audit would compare Google with itself).
    warehouse.append_rows(
        RESTATEMENTS_TABLE,
        RESTATEMENTS_SCHEMA,
        pa.Table.from_pandas(found, schema=RESTATEMENTS_SCHEMA, preserve_index=False),
    )
    warehouse.replace_site_rows(
        AUDIT_TOTALS_TABLE,
        AUDIT_TOTALS_SCHEMA,
        site_url,
        pa.Table.from_pandas(
            audited[AUDIT_TOTALS_SCHEMA.names], schema=AUDIT_TOTALS_SCHEMA, preserve_index=False
        ),
    )
    record_final_before(warehouse, site_url, final_before)
    return AuditResult(site_url, final_before, found, len(audited))


def record_final_before(warehouse: Warehouse, site_url: str, final_before: dt.date) -> None:
    """Google's clock for the site as last probed: every day before `final_before` is final."""
    warehouse.replace_site_rows(
        GOOGLE_CLOCK_TABLE,
        GOOGLE_CLOCK_SCHEMA,
        site_url,
        pa.Table.from_pylist(
            [{"site_url": site_url, "final_before": final_before, "checked_at": _now()}],
            schema=GOOGLE_CLOCK_SCHEMA,
        ),
    )


def _restatements(warehouse: Warehouse, site_url: str, report: Report) -> pd.DataFrame | None:
    """Per restated day of the report's search types: the change, when it was detected, and
    whether this report still holds the version from before (fetched before the detection).
    None before the first audit."""
    if warehouse.missing_tables([AUDIT_TOTALS_TABLE, RESTATEMENTS_TABLE, LEDGER_TABLE]):
        return None
    types = ", ".join("?" for _ in report.search_types)
    frame = warehouse.read_sql(
        f"""
        WITH restated AS (
            SELECT date, MAX(detected_at) AS detected_at,
                   SUM(impressions_after - impressions_before) AS impressions_change,
                   SUM(clicks_after - clicks_before) AS clicks_change
            FROM (SELECT DISTINCT * FROM {RESTATEMENTS_TABLE}
                  WHERE site_url = ? AND search_type IN ({types})) r
            GROUP BY date
        ), fetched AS (
            SELECT date, MAX(fetched_at) AS fetched_at FROM {LEDGER_TABLE}
            WHERE site_url = ? AND report = ? GROUP BY date
        )
        SELECT r.date, r.detected_at, r.impressions_change, r.clicks_change,
               CASE WHEN f.fetched_at IS NOT NULL AND f.fetched_at < r.detected_at
                    THEN 1 ELSE 0 END AS pending
        FROM restated r LEFT JOIN fetched f ON r.date = f.date
        ORDER BY r.date
        """,
        [site_url, *report.search_types, site_url, report.name],
    )
    frame["date"] = frame["date"].map(as_day)
    frame["pending"] = frame["pending"].astype(bool)
    return frame


def pending_restatements(warehouse: Warehouse, site_url: str, report: Report) -> dict[dt.date, str]:
    """Restated day -> when the restatement was detected, for the days this report stored
    before Google restated them and has not re-fetched since: what to re-fetch."""
    frame = _restatements(warehouse, site_url, report)
    if frame is None:
        return {}
    pending = frame[frame["pending"]]
    return dict(zip(pending["date"], pending["detected_at"].astype(str), strict=True))


def _audited_days(warehouse: Warehouse, site_url: str, report: Report) -> list[dt.date]:
    """The final days the last audit compared with Google, for the report's search types."""
    types = ", ".join("?" for _ in report.search_types)
    frame = warehouse.read_sql(
        f"SELECT DISTINCT date FROM {AUDIT_TOTALS_TABLE} "
        f"WHERE site_url = ? AND search_type IN ({types})",
        [site_url, *report.search_types],
    )
    return [as_day(d) for d in frame["date"]]


def restated_days(warehouse: Warehouse, site_url: str, report: Report) -> CheckOutcome:
    """The days Google restated after they were final, and those of them this report has not
    re-fetched since (bad: the stored rows still hold the old totals), over the days the last
    audit compared."""
    frame = _restatements(warehouse, site_url, report)
    if frame is None:
        return not_evaluated(RESTATED_DAYS, "no audit has run yet (gsc_audit/<property>)")
    recent = frame.tail(_LISTED)
    return judged(
        RESTATED_DAYS,
        frame.loc[frame["pending"], "date"],
        checked=_audited_days(warehouse, site_url, report),
        problem="restated by Google since this report stored them (it holds the old totals)",
        unmeasured="the last audit compared no final day",
        restated_day_count=len(frame),
        # Text, one line per day (the newest `_LISTED`): the table holds all of them.
        restated_days=[
            f"{r.date.isoformat()}: {float(r.clicks_change):+,.0f} clicks and "
            f"{float(r.impressions_change):+,.0f} impressions"
            for r in recent.itertuples(index=False)
        ],
    )


def fresh_days_finalized(warehouse: Warehouse, site_url: str, report: Report) -> CheckOutcome:
    """Fresh (dataState=all) days of this report that Google has called final for more than
    `FINALIZE_GRACE_DAYS` days: the finalization sensor should have replaced them."""
    import pandas as pd

    if warehouse.missing_tables([LEDGER_TABLE]):
        return not_evaluated(FRESH_DAYS_FINALIZED, "nothing fetched yet")
    known = warehouse.read_sql(
        f"SELECT MAX(first_incomplete_date) AS d FROM {LEDGER_TABLE} WHERE site_url = ?",
        [site_url],
    )["d"].tolist()
    if not warehouse.missing_tables([GOOGLE_CLOCK_TABLE]):
        known += warehouse.read_sql(
            f"SELECT final_before AS d FROM {GOOGLE_CLOCK_TABLE} WHERE site_url = ?", [site_url]
        )["d"].tolist()
    known = [as_day(d) for d in known if not pd.isna(d)]
    if not known:
        return not_evaluated(FRESH_DAYS_FINALIZED, "Google's first incomplete day is not known yet")
    # Hourly reports store 'hourly_all' (never final): only dataState=all days are fresh.
    stored = warehouse.read_sql(
        f"SELECT date, MAX(CASE WHEN data_state = 'all' THEN 1 ELSE 0 END) AS fresh "
        f"FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ? GROUP BY date",
        [site_url, report.name],
    )
    fresh = sorted(as_day(d) for d in stored.loc[stored["fresh"] == 1, "date"])
    final_before = max(known)
    late = [d for d in fresh if d < final_before - dt.timedelta(days=FINALIZE_GRACE_DAYS)]
    return judged(
        FRESH_DAYS_FINALIZED,
        late,
        checked=stored["date"],
        problem=f"still fresh (dataState=all) more than {FINALIZE_GRACE_DAYS} day(s) after "
        "Google called them final",
        fresh_days=len(fresh),
        google_final_before=final_before.isoformat(),
        grace_days=FINALIZE_GRACE_DAYS,
    )
