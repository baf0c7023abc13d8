"""The daily refresh schedule: one ranged run per property over the last N Pacific days, through
the pool, and those runs land the days and prove them with the in-run checks."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from gsc_pipeline.config import parse_config
from gsc_pipeline.constants import TODAY_ENV
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.assets import DATA_STATE_TAG
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import (
    DAILY_REFRESH_SCHEDULE,
    FETCH_JOB,
    HOURLY_REFRESH_SCHEDULE,
    RANGE_END_TAG,
    RANGE_START_TAG,
)
from gsc_pipeline.defs.stats import STATS_AUTOMATION_SENSOR, URL_LIFETIME_STATS
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import EMULATOR_CONFIG, SMALL

LA = ZoneInfo("America/Los_Angeles")


def config(**extra):
    return parse_config(
        {
            "start_date": "2026-01-01",
            "credentials": {"default": {}, "agency": {"pool_limit": 2}},
            "properties": [
                {"site_url": SMALL},
                {"site_url": "https://www.other.example/", "credential": "agency",
                 "reports": ["page"]},
            ],
            **extra,
        }
    )  # fmt: skip


@pytest.fixture
def tick_clock(monkeypatch):
    """Search Console's date from the tick's time: the suite's pinned GSC_TODAY unset."""
    monkeypatch.delenv(TODAY_ENV)


def evaluate(defs: dg.Definitions, instance, when: dt.datetime) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def(DAILY_REFRESH_SCHEDULE)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    return list(schedule.evaluate_tick(context).run_requests or [])


def test_one_ranged_run_per_property_over_the_last_pacific_days(tick_clock) -> None:
    defs = build_definitions(config(refresh_days=4))
    schedule = defs.resolve_schedule_def(DAILY_REFRESH_SCHEDULE)
    assert schedule.execution_timezone == "America/Los_Angeles"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        # 05:30 UTC on the 20th is still the evening of the 19th in Mountain View.
        requests = evaluate(defs, instance, dt.datetime(2026, 3, 20, 5, 30, tzinfo=dt.UTC))
        again = evaluate(defs, instance, dt.datetime(2026, 3, 20, 5, 30, tzinfo=dt.UTC))
    assert len(requests) == 2
    by_property = {r.tags["gsc/property"]: r for r in requests}
    small = by_property["small_example"]
    assert (small.tags[RANGE_START_TAG], small.tags[RANGE_END_TAG]) == ("2026-03-15", "2026-03-18")
    assert small.tags[DATA_STATE_TAG] == "final"
    assert sorted(k.to_user_string() for k in small.asset_selection) == [
        "gsc/small_example/page", "gsc/small_example/page_query", "gsc/small_example/site",
    ]  # fmt: skip
    assert [k.to_user_string() for k in by_property["www_other_example"].asset_selection] == [
        "gsc/www_other_example/page"
    ]
    # A re-evaluated tick asks for the same runs (same run keys): Dagster launches them once.
    assert [r.run_key for r in again] == [r.run_key for r in requests]
    assert len({r.run_key for r in requests}) == 2


def test_window_respects_refresh_days_start_date_and_fresh_data(tick_clock) -> None:
    defs = build_definitions(config(refresh_days=7, fresh_data=True, start_date="2026-03-14"))
    with dg.instance_for_test() as instance:
        requests = evaluate(defs, instance, dt.datetime(2026, 3, 20, 6, 0, tzinfo=LA))
    tags = requests[0].tags
    assert (tags[RANGE_START_TAG], tags[RANGE_END_TAG]) == ("2026-03-14", "2026-03-19")
    assert tags[DATA_STATE_TAG] == "all"


def test_schedules_follow_the_pinned_gsc_today(monkeypatch) -> None:
    """GSC_TODAY (replays, an emulator with a fixed clock) is Search Console's date for the
    schedules too, whatever the tick's time."""
    monkeypatch.setenv(TODAY_ENV, "2026-03-20")
    defs = build_definitions(config(refresh_days=4))
    with dg.instance_for_test() as instance:
        requests = evaluate(defs, instance, dt.datetime(2026, 11, 2, 14, 0, tzinfo=dt.UTC))
    assert {(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests} == {
        ("2026-03-16", "2026-03-19")
    }


def test_every_schedule_and_sensor_goes_through_the_quota_pools() -> None:
    cfg = config()
    defs = build_definitions(cfg)
    job = defs.resolve_job_def(FETCH_JOB)
    pools = set(cfg.pools.values())
    graph = job.asset_layer.asset_graph
    fetch_keys = list(graph.executable_asset_keys)
    assert len(fetch_keys) == 4
    for key in fetch_keys:
        assert graph.get(key).assets_def.node_def.pools <= pools
        assert graph.get(key).assets_def.node_def.pools, key
    # Lifetime stats never run inside the fetch runs.
    assert URL_LIFETIME_STATS not in fetch_keys
    for schedule in defs.schedules:
        assert schedule.job_name == FETCH_JOB
    for sensor in defs.sensors:
        if sensor.name == STATS_AUTOMATION_SENSOR:
            # Launches only url_lifetime_stats, which makes no API call and has no pool.
            stats = defs.resolve_assets_def(URL_LIFETIME_STATS)
            assert not stats.node_def.pools
            assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        else:
            assert sensor.job_name == FETCH_JOB, sensor.name


@pytest.fixture
def emulator():
    with running_emulator(EMULATOR_CONFIG) as emu:
        yield emu


def test_scheduled_run_lands_the_window_and_its_checks_pass(
    monkeypatch, emulator, tmp_path, tick_clock
):
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, url)
    cfg = parse_config({"start_date": "2026-01-01", "refresh_days": 3,
                        "properties": [{"site_url": SMALL}]})  # fmt: skip
    defs = build_definitions(cfg)
    with dg.instance_for_test() as instance:
        (request,) = evaluate(defs, instance, dt.datetime(2026, 3, 18, 6, 0, tzinfo=LA))
        result = defs.resolve_job_def(FETCH_JOB).execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection
        )
    assert result.success
    ledger = open_warehouse(url).read_sql(
        "SELECT report, COUNT(DISTINCT date) AS days, MIN(date) AS first, MAX(date) AS last "
        "FROM gsc_fetch_ledger GROUP BY report ORDER BY report"
    )
    assert ledger["days"].tolist() == [3, 3, 3]
    assert {str(d)[:10] for d in ledger["first"]} == {"2026-03-15"}
    assert {str(d)[:10] for d in ledger["last"]} == {"2026-03-17"}
    # The in-run checks covered the run's whole range, and passed.
    evaluations = result.get_asset_check_evaluations()
    names = {(e.asset_key.path[-1], e.check_name) for e in evaluations}
    assert ("page_query", "no_missing_batches") in names
    assert all(e.passed for e in evaluations), [e for e in evaluations if not e.passed]
    # One evaluation per day of the range (Dagster plans them per day), each measured.
    missing = [e for e in evaluations
               if (e.asset_key.path[-1], e.check_name) == ("page_query", "no_missing_batches")]
    assert sorted(e.partition for e in missing) == ["2026-03-15", "2026-03-16", "2026-03-17"]
    assert {e.metadata["assessment_of_run"].value for e in missing} == {
        "passed: 2026-03-15..2026-03-17 (3 days) checked"
    }


def test_hourly_schedule_refreshes_the_last_days_of_hourly_reports_and_its_runs_pass(
    monkeypatch, emulator, tmp_path, tick_clock
):
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, url)
    cfg = parse_config({"start_date": "2026-01-01", "properties": [
        {"site_url": SMALL, "reports": ["page", "hourly_site", "hourly_page"]},
        {"site_url": "https://www.other.example/", "reports": ["page"]},
    ]})  # fmt: skip
    defs = build_definitions(cfg)
    schedule = defs.resolve_schedule_def(HOURLY_REFRESH_SCHEDULE)
    assert schedule.cron_schedule == "20 * * * *"
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2026, 3, 20, 10, 20, tzinfo=LA)
        )
        (request,) = schedule.evaluate_tick(context).run_requests
        assert sorted(k.path[-1] for k in request.asset_selection) == ["hourly_page", "hourly_site"]
        assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
            "2026-03-17", "2026-03-19"
        )  # fmt: skip
        result = defs.resolve_job_def(FETCH_JOB).execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection
        )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    names = {(e.asset_key.path[-1], e.check_name) for e in evaluations}
    assert {("hourly_site", "hours_of_day"), ("hourly_page", "incomplete_hours_replaced")} <= names
    assert all(e.passed for e in evaluations), [e for e in evaluations if not e.passed]
    hours = open_warehouse(url).read_sql(
        "SELECT date, COUNT(*) AS n FROM gsc_hourly_site GROUP BY date ORDER BY date"
    )
    assert [str(d)[:10] for d in hours["date"]] == ["2026-03-17", "2026-03-18", "2026-03-19"]
    # Without hourly reports there is no hourly schedule at all.
    assert HOURLY_REFRESH_SCHEDULE not in {s.name for s in build_definitions(config()).schedules}
