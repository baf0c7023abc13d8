"""A real Dagster instance and daemon: backfills launched as the UI launches them, the pool as
the worker pool, and Terminate. The daemon's backfill loop ticks every 2 s here instead of 30."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import psutil
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

from gsc_pipeline.config import CONFIG_ENV
from gsc_pipeline.defs.keys import fetch_asset_keys
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import RANGE_END_TAG, RANGE_START_TAG
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.instance import init_instance
from gsc_pipeline.tools.demo import dagster_daemon
from gsc_pipeline.tools.launch import (
    BACKFILL_TAG,
    launch_backfill,
    launch_backfills,
    wait_for_backfill,
)
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import EMULATOR_CONFIG, MEDIUM, SMALL, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("daemon")]

CONFIG_YAML = """
start_date: 2026-01-01
backfill_days_per_run: 2
credentials:
  default: {pool_limit: 1, step_concurrency: 1}
properties:
  - site_url: "sc-domain:small.example"
  - site_url: "https://www.medium.example/"
"""
DAYS = [(dt.date(2026, 3, 1) + dt.timedelta(days=i)).isoformat() for i in range(6)]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Emulator (with latency, so overlap would show) + instance + daemon, as in production."""
    root = tmp_path_factory.mktemp("deploy")
    config_file = root / "gsc.yaml"
    config_file.write_text(CONFIG_YAML)
    emulator_config = {
        **EMULATOR_CONFIG,
        "latency": {"base_ms": 200, "per_row_us": 2, "jitter_sigma": 0},
    }
    mp = pytest.MonkeyPatch()
    with running_emulator(emulator_config) as emulator:
        home = root / "home"
        env = {
            "DAGSTER_HOME": str(home),
            API_ENDPOINT_ENV: emulator.base_url,
            WAREHOUSE_URL_ENV: f"duckdb:///{root / 'wh.duckdb'}",
            CONFIG_ENV: str(config_file),
        }
        for key, value in env.items():
            mp.setenv(key, value)
        from gsc_pipeline.config import load_config

        config = load_config(config_file)
        limits = init_instance(home, config)
        assert limits == {"gsc_api": 1}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            keys = fetch_asset_keys(config)
            with dagster_daemon(home, root / "daemon.log", backfill_tick_seconds=2):
                # Launched while the daemon starts, as `make demo` does: two backfills through
                # one load of the code location.
                backfill_ids = launch_backfills(
                    instance,
                    home / "workspace.yaml",
                    [(keys, DAYS[:4], "first four days"), (keys, DAYS[4:], "last two days")],
                )
                yield {
                    "instance": instance,
                    "emulator": emulator,
                    "home": home,
                    "keys": keys,
                    "backfill_ids": backfill_ids,
                    "warehouse": env[WAREHOUSE_URL_ENV],
                }
    mp.undo()


def test_backfill_launched_like_the_ui_completes_inside_the_pool(deployment):
    instance = deployment["instance"]
    first, last = deployment["backfill_ids"]
    assert first != last
    assert instance.get_backfill(first).title == "first four days"
    assert instance.get_backfill(last).title == "last two days"
    # 6 days at 2 days per run: 3 runs, each holding every asset of the range.
    progresses = [wait_for_backfill(instance, b, timeout=240) for b in (first, last)]
    assert all(progress.succeeded for progress in progresses), progresses
    assert [progress.runs_total for progress in progresses] == [2, 1]
    for key in deployment["keys"]:
        assert instance.get_materialized_partitions(key) == set(DAYS), key
    # Pool limit 1 and one request in flight per step: three runs ran side by side, yet the
    # API never saw two requests at once.
    stats = deployment["emulator"].stats()
    assert stats["requests_total"] >= 2 * 3 * 6
    assert stats["peak_concurrent_requests"] == 1
    ledger = open_warehouse(deployment["warehouse"]).read_sql(
        "SELECT count(DISTINCT date) AS days, count(DISTINCT site_url) AS sites "
        "FROM gsc_fetch_ledger"
    )
    assert ledger.iloc[0].tolist() == [6, 2]


def test_terminate_stops_api_traffic_and_leaves_no_partial_day(deployment):
    instance, emulator = deployment["instance"], deployment["emulator"]
    for backfill_id in deployment["backfill_ids"]:
        wait_for_backfill(instance, backfill_id, timeout=240)
    # A long range on a slow API: the run is mid-fetch when it is terminated.
    days = [(dt.date(2026, 2, 1) + dt.timedelta(days=i)).isoformat() for i in range(20)]
    medium = [k for k in deployment["keys"] if k.path[1] == "www_medium_example"]
    backfill_id = launch_backfill(instance, deployment["home"] / "workspace.yaml", medium, days)
    run = wait_for(lambda: _started_run(instance, backfill_id, emulator), timeout=120)
    # The run is a fork of the code server's warm fork server (gsc_pipeline.instance.run_start),
    # not a fresh interpreter; terminating it below goes the same way as a spawned run's.
    fork_server = " ".join(_run_process(instance, run).parent().cmdline())
    assert "gsc_pipeline.instance.warm_run" in fork_server
    terminated_at = time.time()
    assert instance.run_launcher.terminate(run.run_id)
    final = wait_for(
        lambda: (r := instance.get_run_by_id(run.run_id)).is_finished and r, timeout=60
    )
    assert final.status == DagsterRunStatus.CANCELED
    started = [second for second, count, _ in emulator.stats()["per_second"] if count]
    assert max(started) <= terminated_at + 2
    # Every day in the warehouse is whole: its pages end short and its rows match the ledger.
    wh = open_warehouse(deployment["warehouse"])
    check = wh.read_sql(
        "SELECT l.date, l.report, sum(l.rows_returned) AS ledger_rows, min(l.rows_returned) AS "
        "last_page FROM gsc_fetch_ledger l WHERE l.site_url = ? AND l.date BETWEEN ? AND ? "
        "GROUP BY l.date, l.report",
        [MEDIUM, dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1])],
    )
    for row in check.itertuples():
        table = {"page_query": "gsc_page_query", "page": "gsc_page", "site": "gsc_site"}[row.report]
        n = wh.read_sql(
            f"SELECT count(*) AS n FROM {table} WHERE site_url = ? AND date = ?", [MEDIUM, row.date]
        )["n"][0]
        assert n == row.ledger_rows
        assert row.last_page < 25_000
    assert SMALL  # the other property's data is untouched by the cancelled run
    assert len(check) < 3 * len(days)
    # Dagster agrees with the warehouse on the cancelled run's days: every day it committed is
    # materialized, none other (other runs of the backfill hold other days).
    first, last = final.tags[RANGE_START_TAG], final.tags[RANGE_END_TAG]
    for key in medium:
        stored = {
            str(row.date)[:10] for row in check.itertuples()
            if row.report == key.path[-1] and first <= str(row.date)[:10] <= last
        }  # fmt: skip
        materialized = {
            day for day in instance.get_materialized_partitions(key) if first <= day <= last
        }
        assert materialized == stored, key


def _run_process(instance, run) -> psutil.Process:
    (start,) = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START).records
    return psutil.Process(start.event_log_entry.dagster_event.pid)


def _started_run(instance, backfill_id, emulator):
    """The backfill's run that is fetching: its step started and has not ended. Other runs of
    the backfill may be started too, their steps waiting for the pool's one slot."""
    runs = instance.get_runs(
        filters=RunsFilter(tags={BACKFILL_TAG: backfill_id}, statuses=[DagsterRunStatus.STARTED])
    )
    for run in runs:
        records = instance.get_records_for_run(
            run.run_id,
            of_type={
                DagsterEventType.STEP_START,
                DagsterEventType.STEP_SUCCESS,
                DagsterEventType.STEP_FAILURE,
            },
        ).records
        kinds = [r.event_log_entry.dagster_event.event_type for r in records]
        if DagsterEventType.STEP_START in kinds and len(kinds) == 1:
            return run if emulator.stats()["in_flight"] else None
    return None
