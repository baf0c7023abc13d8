"""url_lifetime_stats: equal to an independent pandas computation, refreshed incrementally.

Data comes from the emulator over HTTP through `sync_days` (the same path the assets take) into
real DuckDB files and Postgres schemas.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest

from gsc_pipeline import lifetime
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.lifetime import sql as lifetime_sql
from gsc_pipeline.reports import PAGE, PAGE_QUERY
from gsc_pipeline.sync import sync_days
from gsc_pipeline.warehouse import Warehouse, open_warehouse

TODAY = dt.date(2026, 3, 20)
ALPHA = "sc-domain:alpha.example"
BETA = "https://beta.example/"
GAMMA = "sc-domain:gamma.example"
EMULATOR = {
    "seed": 5,
    "today": TODAY.isoformat(),
    "latency": {"base_ms": 0, "per_row_us": 0, "jitter_sigma": 0},
    "switches": {"final_lag_days": 3},
    "properties": [
        {"site_url": ALPHA, "page_query_rows_per_day": 300, "pages": 40},
        # Two search types: url_lifetime_stats keeps one row per (page, search type).
        {"site_url": BETA, "page_query_rows_per_day": 120, "pages": 25,
         "search_types": ["web", "image"]},
        {"site_url": GAMMA, "page_query_rows_per_day": 80, "pages": 15},
    ],
}
# Ten days ending today: the last three are still incomplete (dataState=all changes them).
DAYS = [TODAY - dt.timedelta(days=i) for i in range(9, -1, -1)]


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(EMULATOR) as emu:
        yield emu


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, duckdb_path: str) -> Warehouse:
    url = (
        duckdb_path if request.param == "duckdb" else request.getfixturevalue("postgres_schema_url")
    )
    wh = open_warehouse(url)
    wh.ensure_schema([PAGE, PAGE_QUERY])
    return wh


def sync(emulator, wh: Warehouse, site: str, days: list[dt.date], state: str, run: str) -> None:
    client = GscClient(emulator.base_url, None, qpm_budget=100_000)
    types = ("web", "image") if site == BETA else ("web",)
    for report in (PAGE, PAGE_QUERY):
        report = dataclasses.replace(report, search_types=types)
        sync_days(client, wh, site, report, days, run_id=run, data_state=state)


def reference(wh: Warehouse, sites: list[str]) -> pd.DataFrame:
    """url_lifetime_stats recomputed from scratch with pandas, straight from the report tables."""
    page = wh.read_sql("SELECT * FROM gsc_page")
    page = page[page["site_url"].isin(sites)]
    page["date"] = pd.to_datetime(page["date"]).dt.date
    page["pi"] = page["position"] * page["impressions"]
    stats = page.groupby(["site_url", "search_type", "page"], as_index=False).agg(
        first_date=("date", "min"), last_date=("date", "max"), clicks=("clicks", "sum"),
        impressions=("impressions", "sum"), pi=("pi", "sum"), active_days=("date", "nunique"),
    )  # fmt: skip
    stats["ctr"] = stats["clicks"] / stats["impressions"]
    stats["avg_position"] = stats["pi"] / stats["impressions"]
    pq = wh.read_sql("SELECT * FROM gsc_page_query")
    pq = pq[pq["site_url"].isin(sites)]
    key = ["site_url", "search_type", "page"]
    totals = pq.groupby([*key, "query"], as_index=False)["clicks"].sum()
    totals = totals[totals["clicks"] > 0].sort_values(
        [*key, "clicks", "query"], ascending=[True, True, True, False, True]
    )
    top = totals.drop_duplicates(key).rename(
        columns={"query": "top_query", "clicks": "top_query_clicks"}
    )
    stats = stats.merge(top, on=key, how="left")
    return normalise(stats[lifetime.STATS_COLUMNS])


def read_stats(warehouse: Warehouse, sites: list[str] | None = None) -> pd.DataFrame:
    """The url_lifetime_stats rows (all sites, or these), sorted by site and page."""
    where = f" WHERE site_url IN ({', '.join('?' for _ in sites)})" if sites else ""
    columns = ", ".join(lifetime.STATS_COLUMNS)
    df = warehouse.read_sql(f"SELECT {columns} FROM {lifetime.STATS_TABLE}{where}", sites or [])
    return df.sort_values(["site_url", "search_type", "page"]).reset_index(drop=True)


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for column in ("first_date", "last_date"):
        df[column] = pd.to_datetime(df[column]).dt.date
    df["active_days"] = df["active_days"].astype("int64")
    df["top_query"] = df["top_query"].astype(object).where(df["top_query"].notna(), None)
    for column in ("clicks", "impressions", "ctr", "avg_position", "top_query_clicks"):
        df[column] = df[column].astype(float)
    return df.sort_values(["site_url", "search_type", "page"]).reset_index(drop=True)


def assert_equals_reference(wh: Warehouse, sites: list[str]) -> None:
    got = normalise(read_stats(wh))
    want = reference(wh, sites)
    assert len(want) > 0
    if BETA in sites:
        assert set(got.loc[got["site_url"] == BETA, "search_type"]) == {"web", "image"}
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)


def test_backfill_then_revised_days_then_new_property(emulator, warehouse: Warehouse) -> None:
    # Backfill two properties; the last three days arrive as fresh (incomplete) data.
    for site in (ALPHA, BETA):
        sync(emulator, warehouse, site, DAYS[:7], "final", "backfill")
        sync(emulator, warehouse, site, DAYS[7:], "all", "fresh")
    first = lifetime.refresh(warehouse, [ALPHA, BETA])
    assert first.days_refreshed == 20
    assert_equals_reference(warehouse, [ALPHA, BETA])

    # Nothing changed: nothing read from the report tables, nothing written.
    idle = lifetime.refresh(warehouse, [ALPHA, BETA])
    assert (idle.days_refreshed, idle.rows_written) == (0, 0)

    # Three days later Google has finished those days: re-running them changes their data.
    emulator.set_today(TODAY + dt.timedelta(days=3))
    try:
        sync(emulator, warehouse, ALPHA, DAYS[7:], "final", "finalize")
    finally:
        emulator.set_today(TODAY)
    revised = lifetime.refresh(warehouse, [ALPHA, BETA])
    assert sorted(revised.changed) == [(ALPHA, d) for d in DAYS[7:]]
    # Only the revised days were read from the report tables: their rows and ledger entries.
    revised_rows = warehouse.read_sql(
        "SELECT (SELECT count(*) FROM gsc_page WHERE site_url = ? AND date >= ?) "
        "+ (SELECT count(*) FROM gsc_page_query WHERE site_url = ? AND date >= ? AND clicks > 0) "
        "AS n",
        [ALPHA, DAYS[7], ALPHA, DAYS[7]],
    )["n"].iloc[0]
    assert revised.source_rows_read == revised_rows + 2 * 3  # + one ledger group per day
    assert_equals_reference(warehouse, [ALPHA, BETA])

    # A new property: only its days are folded in, the others are untouched.
    sync(emulator, warehouse, GAMMA, DAYS[:7], "final", "gamma")
    added = lifetime.refresh(warehouse, [ALPHA, BETA, GAMMA])
    assert {site for site, _ in added.changed} == {GAMMA}
    assert added.days_refreshed == 7
    assert_equals_reference(warehouse, [ALPHA, BETA, GAMMA])


def test_a_day_without_any_rows_is_folded_in(emulator, warehouse: Warehouse) -> None:
    # A day with no traffic (here: after the emulator's today, so it serves no rows) touches no
    # page. Folding it in raised a pandas merge error (empty frame typed float64 vs text keys).
    sync(emulator, warehouse, ALPHA, DAYS[:3], "final", "backfill")
    lifetime.refresh(warehouse, [ALPHA])
    empty_day = TODAY + dt.timedelta(days=2)
    sync(emulator, warehouse, ALPHA, [empty_day], "all", "empty")
    assert warehouse.read_sql(
        "SELECT COUNT(*) AS n FROM gsc_page WHERE date = ?", [empty_day]
    )["n"].iloc[0] == 0
    folded = lifetime.refresh(warehouse, [ALPHA])
    assert folded.changed == [(ALPHA, empty_day)]
    assert folded.pages_touched == 0
    assert_equals_reference(warehouse, [ALPHA])


def test_incremental_cost_follows_changed_days(emulator, warehouse: Warehouse) -> None:
    sync(emulator, warehouse, ALPHA, DAYS[:7], "final", "backfill")
    full = lifetime.refresh(warehouse, [ALPHA])
    # Re-running one day with the same data still re-folds it (its fingerprint moved) ...
    sync(emulator, warehouse, ALPHA, [DAYS[3]], "final", "rerun")
    one = lifetime.refresh(warehouse, [ALPHA])
    assert one.changed == [(ALPHA, DAYS[3])]
    # ... and reads and writes about a seventh of what the seven-day refresh did.
    assert one.source_rows_read * 5 < full.source_rows_read
    assert one.rows_written * 3 < full.rows_written
    assert one.pages_rescanned == 0
    assert_equals_reference(warehouse, [ALPHA])


@pytest.mark.parametrize(
    "tables",
    [
        pytest.param(("gsc_page",), id="its-last-day"),
        pytest.param(("gsc_page_query",), id="its-top-query-clicks"),
        pytest.param(("gsc_page", "gsc_page_query"), id="both"),
    ],
)
def test_page_losing_its_last_day_or_top_query_clicks_is_rescanned(
    emulator, warehouse: Warehouse, tables: tuple[str, ...]
) -> None:
    sync(emulator, warehouse, BETA, DAYS[:5], "final", "backfill")
    lifetime.refresh(warehouse, [BETA])
    # A revision removes a page from the last day (gsc_page: its last day moves back) or its
    # queries' clicks on that day (gsc_page_query: its top query's total drops).
    stats = read_stats(warehouse, [BETA])
    victim = stats.sort_values("clicks", ascending=False)["page"].iloc[0]
    with warehouse.transaction() as conn:
        for table in tables:
            conn.execute(f"DELETE FROM {table} WHERE page = ? AND date = ?", (victim, DAYS[4]))
        conn.execute("UPDATE gsc_fetch_ledger SET run_id = 'revised' WHERE date = ?", (DAYS[4],))
    result = lifetime.refresh(warehouse, [BETA])
    assert result.changed == [(BETA, DAYS[4])]
    assert result.pages_rescanned >= 1
    assert_equals_reference(warehouse, [BETA])


def test_refresh_interleaved_with_another_refresh_stays_exact(
    emulator, warehouse: Warehouse, monkeypatch
) -> None:
    sync(emulator, warehouse, BETA, DAYS[:4], "final", "backfill")
    lifetime.refresh(warehouse, [BETA])
    sync(emulator, warehouse, BETA, [DAYS[1]], "final", "rerun")
    changed_days = lifetime_sql.changed_days
    interleaved = []

    def then_another_refresh(*args, **kwargs):
        # After this refresh listed its changed days, another refresh folds them in, and a new
        # day too: this one then folds in days already applied, which must change nothing.
        days = changed_days(*args, **kwargs)
        if not interleaved:
            interleaved.append("the other refresh")
            sync(emulator, warehouse, BETA, [DAYS[4]], "final", "other")
            lifetime.refresh(warehouse, [BETA])
            interleaved.append(read_stats(warehouse, [BETA]))
        return days

    monkeypatch.setattr(lifetime_sql, "changed_days", then_another_refresh)
    result = lifetime.refresh(warehouse, [BETA])
    assert result.changed == [(BETA, DAYS[1])]
    assert result.pages_touched > 0
    _, after_the_other = interleaved
    pd.testing.assert_frame_equal(read_stats(warehouse, [BETA]), after_the_other)
    assert_equals_reference(warehouse, [BETA])


def test_tables_from_before_the_search_type_column_are_rebuilt(emulator, warehouse) -> None:
    with warehouse.transaction() as conn:
        conn.execute(f"CREATE TABLE {lifetime.STATS_TABLE} (site_url VARCHAR, page VARCHAR)")
        conn.execute(
            f"CREATE TABLE {lifetime.APPLIED_TABLE} (site_url VARCHAR, report VARCHAR, "
            "date DATE, fingerprint VARCHAR)"
        )
        conn.execute(
            f"INSERT INTO {lifetime.APPLIED_TABLE} VALUES (?, 'page', ?, 'stale')",
            (BETA, DAYS[0]),
        )
    sync(emulator, warehouse, BETA, DAYS[:2], "final", "backfill")
    result = lifetime.refresh(warehouse, [BETA])
    assert result.days_refreshed == 2
    assert_equals_reference(warehouse, [BETA])
