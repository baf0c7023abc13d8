"""Fresh days become final by themselves: a real instance and daemon, the emulator over HTTP,
DuckDB and PostgreSQL, and nothing fetched after the fresh days. The finalization sensor ticks
every 10 s here (`finalization_interval_seconds`) instead of 600."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.run_request import InstigatorType

from gsc_pipeline.config import CONFIG_ENV, load_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.assets import DATA_STATE_TAG
from gsc_pipeline.defs.keys import fetch_asset_keys
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import FETCH_JOB, RANGE_END_TAG, RANGE_START_TAG
from gsc_pipeline.defs.sensors import FINALIZATION_SENSOR, FINALIZE_TAG
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.instance import init_instance
from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.tools.demo import dagster_daemon
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import (
    EMULATOR_CONFIG,
    SMALL,
    TODAY,
    direct_fetch,
    wait_for,
    warehouse_rows,
)

# A daemon, a run start and the waits below: more than the suite's 300 s on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("daemon"), pytest.mark.timeout(900)]

INTERVAL = 10
CONFIG_YAML = f"""
start_date: 2026-01-01
finalization_interval_seconds: {INTERVAL}
properties:
  - site_url: "{SMALL}"
    reports: [page_query]
"""
FRESH = ["2026-03-18", "2026-03-19"]  # today 03-20, 3 days' lag: not final yet


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'wh.duckdb'}"
    return request.getfixturevalue("postgres_schema_url")


def _sensor_ticks(instance: dg.DagsterInstance) -> list:
    states = [
        s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if s.instigator_name == FINALIZATION_SENSOR
    ]  # fmt: skip
    if not states:
        return []
    (state,) = states
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
    return sorted(ticks, key=lambda t: t.timestamp)


def _states(wh) -> dict[str, str]:
    frame = wh.read_sql("SELECT date, MIN(data_state) AS state FROM gsc_fetch_ledger GROUP BY date")
    return {str(d)[:10]: s for d, s in zip(frame["date"], frame["state"], strict=True)}


def test_fresh_days_become_final_within_one_sensor_interval_with_nothing_else_fetched(
    monkeypatch, tmp_path, warehouse_url
) -> None:
    config_file = tmp_path / "gsc.yaml"
    config_file.write_text(CONFIG_YAML)
    home = tmp_path / "home"
    with running_emulator(EMULATOR_CONFIG) as emulator:
        for key, value in {
            "DAGSTER_HOME": str(home),
            API_ENDPOINT_ENV: emulator.base_url,
            WAREHOUSE_URL_ENV: warehouse_url,
            CONFIG_ENV: str(config_file),
        }.items():
            monkeypatch.setenv(key, value)
        config = load_config(config_file)
        (key,) = fetch_asset_keys(config)
        init_instance(home, config)
        wh = open_warehouse(warehouse_url)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            fresh = (
                build_definitions(config)
                .resolve_job_def(FETCH_JOB)
                .execute_in_process(
                    instance=instance,
                    tags={
                        RANGE_START_TAG: FRESH[0],
                        RANGE_END_TAG: FRESH[-1],
                        DATA_STATE_TAG: "all",
                    },
                )
            )
            assert fresh.success
            assert _states(wh) == {day: "all" for day in FRESH}
            with dagster_daemon(home, tmp_path / "daemon.log"):
                # The sensor runs and, Google still calling the days incomplete, asks for nothing.
                wait_for(lambda: _sensor_ticks(instance), timeout=180)
                assert not any(t.run_ids for t in _sensor_ticks(instance))
                # Google's clock moves past the days; nothing else is fetched.
                emulator.set_today(TODAY + dt.timedelta(days=4))
                moved_at = time.time()  # a tick that starts from now on sees the new clock
                wait_for(lambda: set(_states(wh).values()) == {"final"}, timeout=300)
                runs = instance.get_runs(filters=dg.RunsFilter(tags={FINALIZE_TAG: "true"}))
                run = wait_for(
                    lambda: (r := instance.get_run_by_id(runs[0].run_id)).is_finished and r,
                    timeout=120,
                )
                ticks = _sensor_ticks(instance)
        # The tick in flight when the clock moved, or else the first one after it, requested
        # the replacement: no tick that started after the move passed it by. Final within one
        # interval, in one run.
        summary = [(t.timestamp - moved_at, t.status.value, t.run_ids) for t in ticks]
        (requesting,) = [t for t in ticks if t.run_ids]
        assert requesting.run_ids == [run.run_id], summary
        assert not [t for t in ticks if moved_at < t.timestamp < requesting.timestamp], summary
        assert len(runs) == 1 and run.status == dg.DagsterRunStatus.SUCCESS
        assert (run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG]) == (FRESH[0], FRESH[-1])
        assert instance.get_materialized_partitions(key) >= set(FRESH)
        for day in map(dt.date.fromisoformat, FRESH):
            pd.testing.assert_frame_equal(
                warehouse_rows(wh, SMALL, PAGE_QUERY, day),
                direct_fetch(emulator.base_url, SMALL, PAGE_QUERY, day),
            )
