"""Repair and finalization sensors on a real instance: exactly the right partitions, once each,
cursors that survive a restart, a cap on attempts with a clear signal."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from gsc_pipeline import audit, proof
from gsc_pipeline.config import parse_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.assets import DATA_STATE_TAG
from gsc_pipeline.defs.checks import history_asset_key
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import FETCH_JOB, RANGE_END_TAG, RANGE_START_TAG
from gsc_pipeline.defs.sensors import (
    FINALIZATION_SENSOR,
    MAX_REPAIR_ATTEMPTS,
    REPAIR_SENSOR,
    RESTATED_TAG,
    RESTATEMENT_SENSOR,
)
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import (
    EMULATOR_CONFIG,
    FORBIDDEN,
    SMALL,
    TODAY,
    direct_fetch,
    warehouse_rows,
)

SMALL_PQ = dg.AssetKey(["gsc", "small_example", "page_query"])
FORBIDDEN_SITE = dg.AssetKey(["gsc", "not_yours_example", "site"])


@pytest.fixture
def emulator():
    with running_emulator(EMULATOR_CONFIG) as emu:
        yield emu


@pytest.fixture
def defs(monkeypatch, emulator, tmp_path) -> dg.Definitions:
    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    return build_definitions(
        parse_config(
            {
                "start_date": "2026-01-01",
                "properties": [
                    {"site_url": SMALL, "reports": ["page_query"]},
                    {"site_url": FORBIDDEN, "reports": ["site"]},
                ],
            }
        )
    )


def run(defs: dg.Definitions, instance, keys, *, days=None, partition=None, tags=None,
        checks=None):
    """Execute the fetch job as the daemon would launch it (only the in-run checks)."""
    tags = dict(tags or {})
    if days:
        tags |= {RANGE_START_TAG: days[0], RANGE_END_TAG: days[-1]}
    checks = checks if checks is not None else [
        k for k in defs.resolve_job_def(FETCH_JOB).asset_layer.asset_graph.asset_check_keys
        if k.asset_key in keys
    ]
    job = defs.resolve_job_def(FETCH_JOB).get_subset(
        asset_selection=set(keys), asset_check_selection=set(checks)
    )
    return job.execute_in_process(instance=instance, partition_key=partition, tags=tags,
                                  raise_on_error=False)  # fmt: skip


def run_request(defs: dg.Definitions, instance, request: dg.RunRequest):
    assert request.asset_check_keys, "requests name their checks, whole-history ones excluded"
    assert not any(k.name.endswith("_all_days") for k in request.asset_check_keys)
    return run(defs, instance, request.asset_selection, partition=request.partition_key,
               tags=request.tags, checks=request.asset_check_keys)  # fmt: skip


def tick(defs: dg.Definitions, instance, name: str, cursor: str | None):
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    )
    return sensor.evaluate_tick(context)


def requested(data) -> list[tuple[str, str, str]]:
    """(asset, first day, last day) per ranged run request."""
    return sorted(
        (",".join(k.to_user_string() for k in r.asset_selection), r.tags[RANGE_START_TAG],
         r.tags[RANGE_END_TAG])
        for r in data.run_requests
    )  # fmt: skip


def run_history_checks(defs: dg.Definitions, instance, asset_key: dg.AssetKey):
    selection = dg.AssetSelection.checks_for_assets(history_asset_key(asset_key))
    job = dg.define_asset_job("history", selection=selection)
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    return merged.resolve_job_def("history").execute_in_process(instance=instance)


def test_repair_sensor_requests_exactly_the_bad_partitions_once(defs, tmp_path) -> None:
    days = ["2026-03-01", "2026-03-02", "2026-03-03"]
    with dg.instance_for_test() as instance:
        assert run(defs, instance, [SMALL_PQ], days=days).success
        first = tick(defs, instance, REPAIR_SENSOR, None)
        assert first.run_requests == []

        # A page of 2026-03-02 vanishes from the ledger and a row of 2026-03-03 is stored twice.
        wh = open_warehouse(str(tmp_path / "wh.duckdb"))
        with wh.transaction() as conn:
            conn.execute("DELETE FROM gsc_fetch_ledger WHERE date = ?", (dt.date(2026, 3, 2),))
            conn.execute(
                "INSERT INTO gsc_page_query SELECT * FROM gsc_page_query WHERE date = ? LIMIT 1",
                (dt.date(2026, 3, 3),),
            )
        history = run_history_checks(defs, instance, SMALL_PQ)
        failed = {e.check_name: e for e in history.get_asset_check_evaluations() if not e.passed}
        bad = {name: e.metadata["bad_days"].value for name, e in failed.items()}
        assert bad["no_missing_batches_all_days"] == "2026-03-02"
        assert bad["no_duplicate_batches_all_days"] == "2026-03-03"

        second = tick(defs, instance, REPAIR_SENSOR, first.cursor)
        # Both bad days, consecutive: one ranged run, not one run per partition.
        assert requested(second) == [("gsc/small_example/page_query", "2026-03-02", "2026-03-03")]
        # Same cursor after a daemon restart, and the next tick: nothing asked twice.
        assert tick(defs, instance, REPAIR_SENSOR, second.cursor).run_requests == []
        assert len(second.cursor) < 400, second.cursor

        for request in second.run_requests:
            assert run_request(defs, instance, request).success
        assert run_history_checks(defs, instance, SMALL_PQ).success
        evaluations = run_history_checks(defs, instance, SMALL_PQ).get_asset_check_evaluations()
        assert all(e.passed for e in evaluations)
        assert tick(defs, instance, REPAIR_SENSOR, second.cursor).run_requests == []


def test_a_failure_evaluated_after_a_tick_saw_its_check_start_is_repaired(defs) -> None:
    """A check's execution record exists from its run's start and gets its result later: a
    tick in between must not pass over it (the browser test's repair never came)."""
    from dagster._core.events import DagsterEvent, DagsterEventType

    days = ["2026-03-01", "2026-03-02"]
    with dg.instance_for_test() as instance:
        assert run(defs, instance, [SMALL_PQ], days=days).success
        first = tick(defs, instance, REPAIR_SENSOR, None)
        # The whole-history checks' run is created (their records planned), not finished.
        selection = dg.AssetSelection.checks_for_assets(history_asset_key(SMALL_PQ))
        merged = dg.Definitions.merge(
            defs, dg.Definitions(jobs=[dg.define_asset_job("history", selection=selection)])
        )
        started = instance.create_run_for_job(merged.resolve_job_def("history"))
        second = tick(defs, instance, REPAIR_SENSOR, first.cursor)
        assert second.run_requests == []
        # Its failure lands in the planned record, as the check step reports it.
        evaluation = dg.AssetCheckEvaluation(
            asset_key=history_asset_key(SMALL_PQ), check_name="no_missing_batches_all_days",
            passed=False, metadata={"bad_days": "2026-03-02"},
        )  # fmt: skip
        instance.report_dagster_event(
            DagsterEvent(DagsterEventType.ASSET_CHECK_EVALUATION.value, "history",
                         event_specific_data=evaluation),
            run_id=started.run_id,
        )  # fmt: skip
        third = tick(defs, instance, REPAIR_SENSOR, second.cursor)
        assert requested(third) == [("gsc/small_example/page_query", "2026-03-02", "2026-03-02")]
        # Handled once: the next tick asks nothing again.
        assert tick(defs, instance, REPAIR_SENSOR, third.cursor).run_requests == []


def test_failed_runs_are_retried_up_to_the_cap_then_flagged(defs) -> None:
    forbidden = ("gsc/not_yours_example/site", "2026-03-05", "2026-03-06")
    with dg.instance_for_test() as instance:
        # The credential cannot read this property: every run of it fails.
        assert not run(defs, instance, [FORBIDDEN_SITE], days=["2026-03-05", "2026-03-06"]).success
        data = tick(defs, instance, REPAIR_SENSOR, None)
        assert requested(data) == [forbidden]
        cursor = data.cursor
        for attempt in range(1, MAX_REPAIR_ATTEMPTS + 1):
            (request,) = data.run_requests
            assert request.tags["gsc/repair_attempt"] == str(attempt)
            assert not run_request(defs, instance, request).success
            data = tick(defs, instance, REPAIR_SENSOR, cursor)
            cursor = data.cursor
            if attempt < MAX_REPAIR_ATTEMPTS:
                assert requested(data) == [forbidden]
        assert data.run_requests == []
        signals = sorted(data.asset_events, key=lambda e: e.partition)
        assert [(e.asset_key, e.partition) for e in signals] == [
            (FORBIDDEN_SITE, "2026-03-05"), (FORBIDDEN_SITE, "2026-03-06")
        ]  # fmt: skip
        assert signals[0].metadata["repair_gave_up"].value is True
        assert tick(defs, instance, REPAIR_SENSOR, cursor).asset_events == []


def test_a_failed_run_is_repaired_for_exactly_the_days_it_did_not_write(
    defs, emulator
) -> None:
    """A run of 6 days fails on one: the repair asks for that day alone, not all 6."""
    days = [f"2026-03-{d:02d}" for d in range(10, 16)]
    with dg.instance_for_test() as instance:
        # Every request for 2026-03-13 is refused (a permanent 400): that day fails the run.
        emulator.script_fault(SMALL, kind="status", status=400, times=1000, date="2026-03-13")
        result = run(defs, instance, [SMALL_PQ], days=days)
        assert not result.success
        written = instance.get_materialized_partitions(SMALL_PQ)
        assert "2026-03-13" not in written and written <= set(days)
        assert written, "the days fetched before the failure were recorded as materialized"
        data = tick(defs, instance, REPAIR_SENSOR, None)
        missing = sorted(set(days) - written)
        assert requested(data) == [
            ("gsc/small_example/page_query", first, last) for first, last in _ranges(missing)
        ]


def _ranges(days: list[str]) -> list[tuple[str, str]]:
    out: list[list[str]] = []
    for day in days:
        prev = out[-1][1] if out else None
        if prev and dt.date.fromisoformat(day) - dt.date.fromisoformat(prev) == dt.timedelta(1):
            out[-1][1] = day
        else:
            out.append([day, day])
    return [(a, b) for a, b in out]


def test_finalization_sensor_refetches_fresh_days_once_google_calls_them_final(
    defs, emulator, tmp_path
) -> None:
    fresh = {DATA_STATE_TAG: "all"}
    # Emulated today is 2026-03-20 with a 3-day lag: days from 03-18 are still incomplete.
    days = ["2026-03-16", "2026-03-17", "2026-03-18", "2026-03-19"]
    wh = open_warehouse(str(tmp_path / "wh.duckdb"))
    with dg.instance_for_test() as instance:
        fetched = run(defs, instance, [SMALL_PQ], days=days, tags=fresh)
        assert fetched.success
        # The run says how many of its days hold fresh data: states are never mixed silently.
        # (One evaluation per day: Dagster plans the checks of a ranged run per day.)
        missing = [e for e in fetched.get_asset_check_evaluations()
                   if e.check_name == "no_missing_batches"]  # fmt: skip
        assert sorted(e.partition for e in missing) == days
        assert {e.metadata["fresh_data_days"].value for e in missing} == {"4"}
        pending = proof.fresh_partitions(wh)
        assert [d.isoformat() for d in pending["date"]] == ["2026-03-18", "2026-03-19"]
        assert not pending["ready"].any()
        first = tick(defs, instance, FINALIZATION_SENSOR, None)
        assert first.run_requests == []

        # Two days later a fresh fetch of a newer day reports 03-20 as the first incomplete day.
        emulator.set_today(TODAY + dt.timedelta(days=2))
        assert run(defs, instance, [SMALL_PQ], partition="2026-03-21", tags=fresh).success
        second = tick(defs, instance, FINALIZATION_SENSOR, first.cursor)
        assert requested(second) == [("gsc/small_example/page_query", "2026-03-18", "2026-03-19")]
        assert tick(defs, instance, FINALIZATION_SENSOR, second.cursor).run_requests == []

        for request in second.run_requests:
            assert DATA_STATE_TAG not in request.tags  # final is the default
            assert run_request(defs, instance, request).success
        states = wh.read_sql(
            "SELECT date, MIN(data_state) AS state FROM gsc_fetch_ledger "
            "GROUP BY date ORDER BY date"
        )
        by_day = {str(d)[:10]: s for d, s in zip(states["date"], states["state"], strict=True)}
        assert by_day["2026-03-18"] == by_day["2026-03-19"] == "final"
        assert by_day["2026-03-21"] == "all"  # still incomplete: left for a later tick
        final = direct_fetch(emulator.base_url, SMALL, PAGE_QUERY, dt.date(2026, 3, 19))
        stored = wh.read_sql("SELECT COUNT(*) AS n FROM gsc_page_query WHERE date = ?",
                             [dt.date(2026, 3, 19)])  # fmt: skip
        assert stored["n"].iloc[0] == len(final)
        assert tick(defs, instance, FINALIZATION_SENSOR, second.cursor).run_requests == []


def test_finalization_sensor_asks_google_itself_with_nothing_else_fetched(
    defs, emulator, tmp_path
) -> None:
    """No later day is fetched: the sensor's own probe sees Google's clock move past the fresh
    days, and the first tick after it requests them."""
    days = ["2026-03-18", "2026-03-19"]
    wh = open_warehouse(str(tmp_path / "wh.duckdb"))
    with dg.instance_for_test() as instance:
        assert run(defs, instance, [SMALL_PQ], days=days, tags={DATA_STATE_TAG: "all"}).success
        first = tick(defs, instance, FINALIZATION_SENSOR, None)
        assert first.run_requests == []
        requests_before = emulator.stats()["requests_total"]
        emulator.set_today(TODAY + dt.timedelta(days=4))
        second = tick(defs, instance, FINALIZATION_SENSOR, first.cursor)
        assert requested(second) == [("gsc/small_example/page_query", "2026-03-18", "2026-03-19")]
        # One cheap request for the property (the forbidden one holds no fresh day).
        assert emulator.stats()["requests_total"] - requests_before == 1
        # The probe recorded Google's clock: final since 03-22, both days are overdue.
        late = audit.fresh_days_finalized(wh, SMALL, PAGE_QUERY)
        assert late.bad_partitions == days
        assert late.metadata["google_final_before"] == "2026-03-22"
        for request in second.run_requests:
            assert run_request(defs, instance, request).success
        assert tick(defs, instance, FINALIZATION_SENSOR, second.cursor).run_requests == []
    assert proof.fresh_partitions(wh).empty
    assert audit.fresh_days_finalized(wh, SMALL, PAGE_QUERY).passed
    for day in days:
        pd.testing.assert_frame_equal(
            warehouse_rows(wh, SMALL, PAGE_QUERY, dt.date.fromisoformat(day)),
            direct_fetch(emulator.base_url, SMALL, PAGE_QUERY, dt.date.fromisoformat(day)),
        )


def run_audit(defs: dg.Definitions, instance) -> dict:
    """Materialize the small property's daily audit asset; its metadata."""
    key = dg.AssetKey(["gsc_audit", "small_example"])
    job = dg.define_asset_job("audit", selection=dg.AssetSelection.keys(key))
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    result = merged.resolve_job_def("audit").execute_in_process(instance=instance)
    (materialization,) = result.asset_materializations_for_node("gsc_audit__small_example")
    return {k: v.value for k, v in materialization.metadata.items()}


def test_restated_days_found_by_the_daily_audit_are_refetched_without_a_person(
    monkeypatch, emulator, tmp_path
) -> None:
    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    defs = build_definitions(parse_config({
        "start_date": "2026-01-01",
        "properties": [
            {"site_url": SMALL, "reports": ["page_query", "site"]},
            {"site_url": FORBIDDEN, "reports": ["site"]},
        ],
    }))  # fmt: skip
    keys = [SMALL_PQ, dg.AssetKey(["gsc", "small_example", "site"])]
    days = [f"2026-03-0{i}" for i in range(1, 9)]
    wh = open_warehouse(str(tmp_path / "wh.duckdb"))
    with dg.instance_for_test() as instance:
        assert run(defs, instance, keys, days=days).success
        assert run_audit(defs, instance)["restated_day_count"] == 0
        assert tick(defs, instance, RESTATEMENT_SENSOR, None).run_requests == []
        emulator.restate("2026-03-03", "2026-03-04", factor=0.7, site_url=SMALL)
        audited = run_audit(defs, instance)
        assert audited["restated_days"] == ["2026-03-03", "2026-03-04"]
        assert audited["requests"] == 1  # one search type: one date-grouped request
        data = tick(defs, instance, RESTATEMENT_SENSOR, None)
        assert requested(data) == [(
            "gsc/small_example/page_query,gsc/small_example/site", "2026-03-03", "2026-03-04"
        )]  # fmt: skip
        assert all(r.tags[RESTATED_TAG] == "true" for r in data.run_requests)
        # Same detection, same run key: Dagster starts it once however often the sensor ticks.
        again = tick(defs, instance, RESTATEMENT_SENSOR, None)
        assert [r.run_key for r in again.run_requests] == [r.run_key for r in data.run_requests]
        history = run_history_checks(defs, instance, SMALL_PQ)
        (restated,) = [e for e in history.get_asset_check_evaluations()
                       if e.check_name == audit.RESTATED_DAYS]  # fmt: skip
        assert not restated.passed
        assert restated.metadata["bad_days"].value == "2026-03-03, 2026-03-04"
        assert restated.description.startswith("2 days: restated by Google")
        for request in data.run_requests:
            assert run_request(defs, instance, request).success
        assert tick(defs, instance, RESTATEMENT_SENSOR, None).run_requests == []
        assert run_audit(defs, instance)["restated_day_count"] == 0
        history = run_history_checks(defs, instance, SMALL_PQ)
        checks = {e.check_name: e for e in history.get_asset_check_evaluations()}
        assert checks[audit.RESTATED_DAYS].passed
        assert checks[audit.RESTATED_DAYS].metadata["restated_day_count"].value == "2"
    for day in ("2026-03-03", "2026-03-04"):
        pd.testing.assert_frame_equal(
            warehouse_rows(wh, SMALL, PAGE_QUERY, dt.date.fromisoformat(day)),
            direct_fetch(emulator.base_url, SMALL, PAGE_QUERY, dt.date.fromisoformat(day)),
        )


def test_a_ranged_run_in_flight_is_looked_up_once_a_tick(defs, monkeypatch) -> None:
    """A 30-day run not finished yet has a planned record per check and day: the repair tick
    reads that run once, not once per record (90 reads on 5b5c641), and repairs nothing."""
    days = ["2026-03-01", "2026-03-30"]
    with dg.instance_for_test() as instance:
        first = tick(defs, instance, REPAIR_SENSOR, None)
        checks = [k for k in defs.resolve_job_def(FETCH_JOB).asset_layer.asset_graph
                  .asset_check_keys if k.asset_key == SMALL_PQ]  # fmt: skip
        job = defs.resolve_job_def(FETCH_JOB).get_subset(
            asset_selection={SMALL_PQ}, asset_check_selection=set(checks)
        )
        started = instance.create_run_for_job(
            job, tags={RANGE_START_TAG: days[0], RANGE_END_TAG: days[-1]}
        )
        reads: list[str] = []
        read = instance.get_run_by_id
        monkeypatch.setattr(
            instance, "get_run_by_id", lambda run_id: reads.append(run_id) or read(run_id)
        )
        second = tick(defs, instance, REPAIR_SENSOR, first.cursor)
        assert second.run_requests == []
        assert reads == [started.run_id], len(reads)
