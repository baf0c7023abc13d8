"""Restatements: the emulator's switch, the audit against the emulator over HTTP on DuckDB and
PostgreSQL, the restated_days and fresh_days_finalized checks, and search appearance values
Google stops sending."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from gsc_pipeline import audit
from gsc_pipeline.emulator.cli import _restatement
from gsc_pipeline.emulator.config import EmulatorConfigError
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient, RetryPolicy
from gsc_pipeline.proof import report_checks
from gsc_pipeline.reports import PAGE_QUERY, SEARCH_APPEARANCE, SITE
from gsc_pipeline.sync import sync_days
from tests.pipeline_env import EMULATOR_CONFIG, SMALL, TODAY, direct_fetch, warehouse_rows

DAYS = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(8)]
RESTATED = [dt.date(2026, 3, 3), dt.date(2026, 3, 4)]


@pytest.fixture
def emulator():
    with running_emulator(EMULATOR_CONFIG) as handle:
        yield handle


def _client(emulator) -> GscClient:
    return GscClient(emulator.base_url, None, qpm_budget=100_000, retry_policy=RetryPolicy())


def _totals(emulator, first: dt.date, last: dt.date) -> pd.DataFrame:
    return audit.google_daily_totals(_client(emulator), SMALL, "web", first, last).totals


def test_restate_switch_changes_the_totals_of_exactly_the_restated_final_days(emulator):
    before = _totals(emulator, DAYS[0], DAYS[-1]).set_index("date")
    emulator.restate(RESTATED[0], RESTATED[-1], factor=0.5, site_url=SMALL)
    after = _totals(emulator, DAYS[0], DAYS[-1]).set_index("date")
    changed = sorted(after.index[after["impressions"] != before["impressions"]])
    assert changed == RESTATED
    ratio = after.loc[RESTATED, "impressions"] / before.loc[RESTATED, "impressions"]
    assert ratio.between(0.45, 0.55).all()
    assert (after["clicks"] <= after["impressions"]).all()
    assert emulator.config["switches"]["restated"][0]["factor"] == 0.5


def test_restate_cli_flag_says_how_to_write_it():
    assert _restatement("2026-03-03:2026-03-04:0.7").factor == 0.7
    assert _restatement("2026-03-03:2026-03-04").factor == 0.8
    with pytest.raises(EmulatorConfigError, match="START:END:FACTOR"):
        _restatement("2026-03-03")
    with pytest.raises(EmulatorConfigError, match="--restate"):
        _restatement("2026-03-03:yesterday")


@pytest.mark.parametrize("reports", [(SITE, PAGE_QUERY), (PAGE_QUERY,)], ids=["site", "no_site"])
def test_audit_detects_restated_final_days_and_refetching_them_stores_the_new_truth(
    emulator, warehouse, reports
):
    """With a `site` report the audit compares Google with the stored ledger totals; without
    one, with the totals its previous run saw."""
    client = _client(emulator)
    for report in reports:
        sync_days(client, warehouse, SMALL, report, DAYS, run_id="first")
    assert audit.restated_days(warehouse, SMALL, PAGE_QUERY).metadata == {
        "not_evaluated": "no audit has run yet (gsc_audit/<property>)"
    }
    first = audit.audit_property(client, warehouse, SMALL, ("web",), list(reports), TODAY)
    assert first.restated_days == []
    # 16 months of days up to Google's first incomplete day (today 03-20, 3 days' lag).
    assert first.final_before == dt.date(2026, 3, 18)
    assert first.audited_days > 100

    emulator.restate(RESTATED[0], RESTATED[-1], factor=0.8, site_url=SMALL)
    second = audit.audit_property(client, warehouse, SMALL, ("web",), list(reports), TODAY)
    assert second.restated_days == RESTATED
    logged = warehouse.read_sql(
        f"SELECT date, impressions_before, impressions_after FROM {audit.RESTATEMENTS_TABLE} "
        "ORDER BY date"
    )
    assert [str(d)[:10] for d in logged["date"]] == ["2026-03-03", "2026-03-04"]
    assert (logged["impressions_after"] < logged["impressions_before"]).all()
    for report in reports:
        check = audit.restated_days(warehouse, SMALL, report)
        assert not check.passed and check.bad_partitions == ["2026-03-03", "2026-03-04"]
        assert check.metadata["restated_day_count"] == 2
        # Text first, over the days the audit compared: "2 days: restated by Google since this
        # report stored them (...) (2024-11-..2026-03-17 (N days) checked)".
        assert check.summary().startswith("2 days: restated by Google since this report")
        assert check.summary().endswith(f"({first.audited_days} days) checked)")
        assert check.metadata["restated_days"][0].startswith("2026-03-03: ")

    # Re-fetched through the normal path: the stored rows are Google's new answer.
    for report in reports:
        sync_days(client, warehouse, SMALL, report, RESTATED, run_id="refetch")
        assert audit.restated_days(warehouse, SMALL, report).passed
        assert all(o.passed for o in report_checks(warehouse, SMALL, report, DAYS)[:3])
        for day in RESTATED:
            pd.testing.assert_frame_equal(
                warehouse_rows(warehouse, SMALL, report, day),
                direct_fetch(emulator.base_url, SMALL, report, day),
            )
    assert (
        audit.audit_property(client, warehouse, SMALL, ("web",), list(reports), TODAY).restated_days
        == []
    )


def test_fresh_days_finalized_flags_fresh_days_google_called_final_beyond_the_grace(
    emulator, warehouse
):
    client = _client(emulator)
    fresh = [dt.date(2026, 3, 18), dt.date(2026, 3, 19)]
    sync_days(client, warehouse, SMALL, PAGE_QUERY, fresh, run_id="fresh", data_state="all")
    check = audit.fresh_days_finalized(warehouse, SMALL, PAGE_QUERY)
    assert check.passed and check.metadata["fresh_days"] == 2
    # Google's clock moves on: 03-18 is final once its first incomplete day is 03-19, and has
    # been final for a day once that is 03-20.
    audit.record_final_before(warehouse, SMALL, dt.date(2026, 3, 19))
    assert audit.fresh_days_finalized(warehouse, SMALL, PAGE_QUERY).passed  # within the grace
    audit.record_final_before(warehouse, SMALL, dt.date(2026, 3, 20))
    late = audit.fresh_days_finalized(warehouse, SMALL, PAGE_QUERY)
    assert not late.passed and late.bad_partitions == ["2026-03-18"]
    assert late.summary() == (
        "1 day: still fresh (dataState=all) more than 1 day(s) after Google called them final "
        "(2026-03-18..2026-03-19 (2 days) checked)"
    )
    assert late.metadata["grace_days"] == audit.FINALIZE_GRACE_DAYS
    # Replaced as final: nothing left to flag.
    emulator.set_today(TODAY + dt.timedelta(days=4))
    sync_days(client, warehouse, SMALL, PAGE_QUERY, fresh, run_id="final")
    assert audit.fresh_days_finalized(warehouse, SMALL, PAGE_QUERY).passed


def test_a_search_appearance_google_stops_sending_breaks_nothing(emulator, warehouse):
    """The pipeline hard-codes no appearance value: one that disappears is simply absent."""
    client = _client(emulator)
    day = DAYS[0]
    sync_days(client, warehouse, SMALL, SEARCH_APPEARANCE, [day], run_id="before")
    before = set(warehouse_rows(warehouse, SMALL, SEARCH_APPEARANCE, day)["search_appearance"])
    assert "FAQ_RICH_RESULT" in before
    emulator.set_switch("dropped_appearances", ["FAQ_RICH_RESULT"])
    sync_days(client, warehouse, SMALL, SEARCH_APPEARANCE, [day], run_id="after")
    stored = warehouse_rows(warehouse, SMALL, SEARCH_APPEARANCE, day)
    assert set(stored["search_appearance"]) == before - {"FAQ_RICH_RESULT"}
    pd.testing.assert_frame_equal(
        stored, direct_fetch(emulator.base_url, SMALL, SEARCH_APPEARANCE, day)
    )
    assert all(o.passed for o in report_checks(warehouse, SMALL, SEARCH_APPEARANCE, [day])[:3])
