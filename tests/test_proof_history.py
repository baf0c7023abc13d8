"""The whole-history checks run once a day on their own (automation), never in fetch runs."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from gsc_pipeline.config import parse_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.names import ALL_DAYS_SUFFIX
from gsc_pipeline.defs.schedules import FETCH_JOB
from gsc_pipeline.defs.stats import STATS_AUTOMATION_SENSOR

LA = ZoneInfo("America/Los_Angeles")


def test_whole_history_checks_run_daily_by_automation_not_in_fetch_runs() -> None:
    config = parse_config(
        {"start_date": "2026-01-01", "properties": [{"site_url": "sc-domain:small.example"}]}
    )
    defs = build_definitions(config)
    check_keys = defs.resolve_asset_graph().asset_check_keys
    keys = [k for k in check_keys if k.name.endswith(ALL_DAYS_SUFFIX)]
    # Three reports: 4 checks each, plus anonymized_share and capped_remainder on site; on each
    # report's history.
    assert len(keys) == 14
    assert {k.asset_key.path[-1] for k in keys} == {"history"}
    fetch_checks = defs.resolve_job_def(FETCH_JOB).asset_layer.asset_graph.asset_check_keys
    assert not set(keys) & set(fetch_checks)
    # The in-run twins; anonymized_share and capped_remainder compare two reports' days:
    # whole history only.
    assert len(fetch_checks) == 12
    sensor = defs.resolve_sensor_def(STATS_AUTOMATION_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    selection = dg.AssetSelection.checks(*keys)
    before = dt.datetime(2026, 3, 20, 8, 0, tzinfo=LA)
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(
            defs, instance, asset_selection=selection, evaluation_time=before
        )
        assert first.total_requested == 0
        after = dg.evaluate_automation_conditions(
            defs, instance, asset_selection=selection, cursor=first.cursor,
            evaluation_time=before + dt.timedelta(hours=1),
        )  # fmt: skip
        assert after.total_requested == 14
        later = dg.evaluate_automation_conditions(
            defs, instance, asset_selection=selection, cursor=after.cursor,
            evaluation_time=before + dt.timedelta(hours=2),
        )  # fmt: skip
        assert later.total_requested == 0


def test_backfill_style_runs_skip_the_whole_history_scan(monkeypatch, tmp_path) -> None:
    """A run selecting the assets with all their checks (as backfills do) does not scan history."""
    from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
    from gsc_pipeline.emulator.testing import running_emulator
    from tests.pipeline_env import EMULATOR_CONFIG, SMALL

    with running_emulator(EMULATOR_CONFIG) as emulator:
        monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
        monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
        defs = build_definitions(
            parse_config({"start_date": "2026-01-01",
                          "properties": [{"site_url": SMALL, "reports": ["page"]}]})
        )  # fmt: skip
        job = dg.define_asset_job("everything", selection=dg.AssetSelection.groups("small_example"))
        resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(
            "everything"
        )
        with dg.instance_for_test() as instance:
            result = resolved.execute_in_process(instance=instance, partition_key="2026-03-01")
    assert result.success
    names = {e.check_name for e in result.get_asset_check_evaluations()}
    assert names == {"no_missing_batches", "no_duplicate_batches", "rows_match_ledger",
                     "truncated_days"}  # fmt: skip
