"""One step per property: its reports fetched at once, each still its own asset, and one budget
of days in flight for the step (real Dagster runs, emulator over HTTP, DuckDB and PostgreSQL)."""

from __future__ import annotations

import threading

import dagster as dg
import pytest

from gsc_pipeline import GscComponent
from gsc_pipeline.defs import resources
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import FETCH_JOB, RANGE_END_TAG, RANGE_START_TAG
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc.errors import Cancelled
from gsc_pipeline.sync.shared import SharedInFlight
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import EMULATOR_CONFIG, SMALL

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
RANGE = {RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[-1]}
REPORTS = ("page_query", "page", "site")
ATTRIBUTES = {
    "start_date": "2026-01-01",
    # One day in flight for the whole step: the reports share it (each still progresses).
    "credentials": {"default": {"step_concurrency": 1}},
    "properties": [{"site_url": SMALL, "reports": list(REPORTS)}],
}


def _key(report: str) -> dg.AssetKey:
    return dg.AssetKey(["gsc", "small_example", report])


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'wh.duckdb'}"
    return request.getfixturevalue("postgres_schema_url")


class _AllAtOnce(GscComponent):
    """Each report's execute waits until every report's has started: only reports fetched at
    the same time get past it (one after another, the first waits alone and times out)."""

    barrier = threading.Barrier(len(REPORTS), timeout=30)

    def execute(self, context, props):
        self.barrier.wait()
        yield from super().execute(context, props)


def _steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        e.step_key
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    ]


def test_a_property_is_one_step_fetching_every_report_at_once(monkeypatch, warehouse_url):
    _AllAtOnce.barrier.reset()
    opened = []

    def counted_open(*args, **kwargs):
        opened.append(open_warehouse(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(resources, "open_warehouse", counted_open)
    with running_emulator(EMULATOR_CONFIG) as emulator:
        monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
        monkeypatch.setenv(WAREHOUSE_URL_ENV, warehouse_url)
        defs = dg.build_defs_for_component(_AllAtOnce.from_attributes_dict(attributes=ATTRIBUTES))
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def(FETCH_JOB).execute_in_process(
                instance=instance, tags=RANGE, raise_on_error=False
            )
            assert result.success
            assert _steps(instance, result.run_id) == ["gsc__small_example"]
            # The reports' threads and their checks share the run's one warehouse object (its
            # connections; on DuckDB its host database and the tables it made sure of).
            assert len(opened) == 1, opened
            for report in REPORTS:
                # Each report keeps its own asset, per-day materializations and checks.
                assert instance.get_materialized_partitions(_key(report)) == set(DAYS), report
                checks = [
                    e.event_specific_data
                    for e in result.all_events
                    if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
                    and e.event_specific_data.asset_key == _key(report)
                    and e.event_specific_data.check_name == "no_missing_batches"
                ]
                assert sorted(c.partition for c in checks) == DAYS, report
                assert all(c.passed for c in checks), report
    ledger = open_warehouse(warehouse_url).read_sql(
        "SELECT report, count(DISTINCT date) AS days FROM gsc_fetch_ledger GROUP BY report"
    )
    assert dict(zip(ledger["report"], ledger["days"], strict=True)) == dict.fromkeys(REPORTS, 3)


def test_a_failing_report_fails_the_step_but_keeps_every_committed_day(
    monkeypatch, warehouse_url
):
    """page_query is refused on its last day: the other reports land whole, page_query's
    first days are recorded, and the step fails naming page_query."""
    with running_emulator(EMULATOR_CONFIG) as emulator:
        monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
        monkeypatch.setenv(WAREHOUSE_URL_ENV, warehouse_url)
        emulator.script_fault(SMALL, date=DAYS[-1], status=400, report="date,page,query")
        defs = dg.build_defs_for_component(GscComponent.from_attributes_dict(attributes=ATTRIBUTES))
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def(FETCH_JOB).execute_in_process(
                instance=instance, tags=RANGE, raise_on_error=False
            )
            assert not result.success
            assert _steps(instance, result.run_id) == ["gsc__small_example"]
            failure = next(e for e in result.all_events if e.is_step_failure)
            assert f"{SMALL} page_query: " in failure.step_failure_data.error.message
            for report in ("page", "site"):
                assert instance.get_materialized_partitions(_key(report)) == set(DAYS), report
            materialized = instance.get_materialized_partitions(_key("page_query"))
    ledger = open_warehouse(warehouse_url).read_sql(
        "SELECT DISTINCT CAST(date AS VARCHAR) AS day FROM gsc_fetch_ledger "
        "WHERE report = 'page_query'"
    )
    # One day in flight (step_concurrency 1): the days before the refused one are committed.
    assert materialized == set(ledger["day"]) == set(DAYS[:-1])


def test_a_report_logs_at_most_four_progress_lines_a_run(monkeypatch, tmp_path):
    """Each progress line is an event-log write: 9 days log at days 3, 6, 9 (the last always)."""
    days = [f"2026-03-{day:02d}" for day in range(1, 10)]
    with running_emulator(EMULATOR_CONFIG) as emulator:
        monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
        monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
        attributes = {**ATTRIBUTES, "properties": [{"site_url": SMALL, "reports": ["site"]}]}
        defs = dg.build_defs_for_component(GscComponent.from_attributes_dict(attributes=attributes))
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def(FETCH_JOB).execute_in_process(
                instance=instance, tags={RANGE_START_TAG: days[0], RANGE_END_TAG: days[-1]}
            )
            assert result.success
            progress = [
                e.user_message
                for e in instance.all_logs(result.run_id)
                if "days written" in e.user_message
            ]
    assert [line.split(": ")[1].split(" ")[0] for line in progress] == ["3/9", "6/9", "9/9"]


def test_the_step_keeps_one_littles_law_shared_by_its_reports():
    """Three reports at once keep the step's days in flight, not three times them; a report
    that ends hands its share to the others."""
    shared = SharedInFlight(qpm=960, cap=16)
    shared.observe(750)  # 16/s x 0.75 s + 1 = 13 days in flight for the step
    assert shared.limit == 13
    with shared.share() as a, shared.share() as b:
        with shared.share() as c:
            assert a.limit + b.limit + c.limit <= shared.limit
            assert min(a.limit, b.limit, c.limit) == 4
            c.observe(1500)  # every report's latency moves the step's one estimate
            assert shared.limit == 16
        assert a.limit == b.limit == 8
        assert a.cap == b.cap == 16


def test_a_step_never_has_more_reports_running_than_days_it_may_keep_in_flight():
    """step_concurrency 1: the second report's turn comes when the first ends."""
    shared = SharedInFlight(qpm=960, cap=1)
    stop = threading.Event()
    order: list[str] = []
    with shared.share(stop):
        waiting = threading.Thread(target=lambda: _take_turn(shared, stop, order))
        waiting.start()
        order.append("first ends")
    waiting.join(timeout=30)
    assert order == ["first ends", "second runs"]
    with shared.share(stop):
        stop.set()
        # A Terminate reaches a report waiting for its turn.
        with pytest.raises(Cancelled), shared.share(stop):
            pass


def _take_turn(shared: SharedInFlight, stop: threading.Event, order: list[str]) -> None:
    with shared.share(stop):
        order.append("second runs")
