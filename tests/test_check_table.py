"""The table of checks is the only place a check is declared: every check the UI lists comes
from a row, and a new row reaches the specs, the history, the scheduled runs and repair_sensor
without another edit."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from gsc_pipeline.config import BUNDLED_DEMO_CONFIG, load_config, parse_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs import check_table
from gsc_pipeline.defs.check_table import CHECKS, CheckDef, Scope, checks_of
from gsc_pipeline.defs.checks import history_asset_key
from gsc_pipeline.defs.keys import fetch_asset_key
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import HOURLY_REFRESH_SCHEDULE, RANGE_END_TAG, RANGE_START_TAG
from gsc_pipeline.defs.sensors import REPAIR_SENSOR
from gsc_pipeline.proof.outcome import judged

BAD_DAY = dt.date(2026, 3, 2)


def test_every_check_in_the_definitions_comes_from_the_table():
    """The bundled demo (hourly reports, site beside page_query, Google's-changes checks): the
    check keys are exactly the table's rows per asset, with the table's descriptions."""
    config = load_config(BUNDLED_DEMO_CONFIG)
    graph = build_definitions(config).resolve_asset_graph()
    expected: dict[dg.AssetCheckKey, str] = {}
    for prop in config.properties:
        for report in prop.report_objects():
            key = fetch_asset_key(config, prop, report)
            for c in checks_of(prop, report):
                if c.scope is Scope.IN_RUN:
                    expected[dg.AssetCheckKey(key, c.name)] = c.description
                expected[dg.AssetCheckKey(history_asset_key(key), c.history_name)] = (
                    c.history_description
                )
    assert set(graph.asset_check_keys) == set(expected)
    assert {k: graph.get_check_spec(k).description for k in expected} == expected
    # Every row is in use: the demo carries each check somewhere.
    assert {check_table.check_def(k.name).name for k in expected} == {c.name for c in CHECKS}


def _toy_check(subject: check_table.Subject) -> object:
    return judged("toy_check", [BAD_DAY], checked=[BAD_DAY], problem="toy problem")


@pytest.fixture
def toy_definitions(monkeypatch, tmp_path) -> tuple[dg.Definitions, dg.AssetKey, dg.AssetKey]:
    toy = CheckDef(
        "toy_check", "A toy check.", dg.AssetCheckSeverity.ERROR, Scope.IN_RUN, _toy_check,
        repairs=True, hourly=True,
    )  # fmt: skip
    monkeypatch.setattr(check_table, "CHECKS", (*CHECKS, toy))
    monkeypatch.setenv(API_ENDPOINT_ENV, "http://127.0.0.1:9")  # never called
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    config = parse_config({
        "start_date": "2026-01-01",
        "properties": [{"site_url": "sc-domain:a.com", "reports": ["site", "hourly_site"]}],
    })  # fmt: skip
    (prop,) = config.properties
    site, hourly = (fetch_asset_key(config, prop, r) for r in prop.report_objects())
    return build_definitions(config), site, hourly


def test_a_new_row_reaches_specs_history_schedules_and_repair(toy_definitions):
    defs, site, hourly = toy_definitions
    keys = set(defs.resolve_asset_graph().asset_check_keys)
    # Hourly only: on the hourly asset and its history, not on the daily one.
    assert dg.AssetCheckKey(hourly, "toy_check") in keys
    assert dg.AssetCheckKey(history_asset_key(hourly), "toy_check_all_days") in keys
    daily = (site, history_asset_key(site))
    assert not any(k.name.startswith("toy_check") for k in keys if k.asset_key in daily)

    # The hourly refresh runs it in-run.
    schedule = next(s for s in defs.schedules if s.name.endswith(HOURLY_REFRESH_SCHEDULE))
    when = dt.datetime(2026, 3, 20, 9, 20, tzinfo=ZoneInfo("America/Los_Angeles"))
    (request,) = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=when)
    ).run_requests
    assert dg.AssetCheckKey(hourly, "toy_check") in request.asset_check_keys

    # Its whole-history twin fails a day, and repair_sensor asks for exactly that day.
    job = dg.define_asset_job(
        "history", selection=dg.AssetSelection.checks_for_assets(history_asset_key(hourly))
    )
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    with dg.instance_for_test() as instance:
        result = merged.resolve_job_def("history").execute_in_process(instance=instance)
        (toy,) = [e for e in result.get_asset_check_evaluations() if e.check_name.startswith("toy")]
        assert not toy.passed and toy.metadata["bad_days"].value == BAD_DAY.isoformat()
        assert toy.description.startswith("1 day: toy problem") and "repair requested" in (
            toy.description
        )
        sensor = next(s for s in defs.sensors if s.name.endswith(REPAIR_SENSOR))
        data = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
        )
        assert [
            (r.asset_selection, r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG])
            for r in data.run_requests
        ] == [([hourly], BAD_DAY.isoformat(), BAD_DAY.isoformat())]
