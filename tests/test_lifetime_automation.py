"""url_lifetime_stats under declarative automation: it refreshes in its own runs as upstream days
land, even while most upstream partitions are still missing (a backfill in progress)."""

from __future__ import annotations

import dagster as dg

from gsc_pipeline.config import parse_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import FETCH_JOB, RANGE_END_TAG, RANGE_START_TAG
from gsc_pipeline.defs.stats import STATS_AUTOMATION_SENSOR, URL_LIFETIME_STATS
from gsc_pipeline.emulator.testing import running_emulator
from tests.pipeline_env import EMULATOR_CONFIG, SMALL


def test_stats_refresh_after_upstream_days_land_despite_missing_partitions(
    monkeypatch, tmp_path
) -> None:
    with running_emulator(EMULATOR_CONFIG) as emulator:
        monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
        monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
        defs = build_definitions(
            parse_config({"start_date": "2026-01-01", "properties": [{"site_url": SMALL}]})
        )
        sensor = defs.resolve_sensor_def(STATS_AUTOMATION_SENSOR)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        fetch = defs.resolve_job_def(FETCH_JOB)
        assert URL_LIFETIME_STATS not in fetch.asset_layer.asset_graph.executable_asset_keys
        stats_job = dg.Definitions.merge(
            defs, dg.Definitions(jobs=[dg.define_asset_job("stats", [URL_LIFETIME_STATS])])
        ).resolve_job_def("stats")

        with dg.instance_for_test() as instance:
            selection = dg.AssetSelection.keys(URL_LIFETIME_STATS)
            first = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection)
            assert first.get_num_requested(URL_LIFETIME_STATS) == 0

            # Two of ~300 partitions land, as in the first run of a long backfill.
            tags = {RANGE_START_TAG: "2026-03-01", RANGE_END_TAG: "2026-03-02"}
            assert fetch.execute_in_process(instance=instance, tags=tags).success
            second = dg.evaluate_automation_conditions(
                defs, instance, asset_selection=selection, cursor=first.cursor
            )
            assert second.get_num_requested(URL_LIFETIME_STATS) == 1

            result = stats_job.execute_in_process(instance=instance)
            assert result.success
            (materialization,) = result.asset_materializations_for_node("url_lifetime_stats")
            assert materialization.metadata["days_refreshed"].value == 2
            assert materialization.metadata["dagster/row_count"].value > 0

            # Handled: no new request until another upstream day lands.
            third = dg.evaluate_automation_conditions(
                defs, instance, asset_selection=selection, cursor=second.cursor
            )
            assert third.get_num_requested(URL_LIFETIME_STATS) == 0
            assert fetch.execute_in_process(instance=instance, partition_key="2026-03-05").success
            fourth = dg.evaluate_automation_conditions(
                defs, instance, asset_selection=selection, cursor=third.cursor
            )
            assert fourth.get_num_requested(URL_LIFETIME_STATS) == 1
