"""Nothing empty, partial or unmeasured is called complete (issue 8), on the real paths:
the emulator over HTTP, DuckDB files, PostgreSQL schemas and Dagster instances."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from gsc_pipeline import proof
from gsc_pipeline.config import parse_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import FETCH_JOB, RANGE_END_TAG, RANGE_START_TAG
from gsc_pipeline.defs.sensors import FINALIZATION_SENSOR, REPAIR_SENSOR, RESTATEMENT_SENSOR
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient, RetryPolicy
from gsc_pipeline.reports import PAGE, PAGE_QUERY, SITE
from gsc_pipeline.search_calendar import oldest_available_day, pacific_today
from gsc_pipeline.sync import OutsideRetentionWindow, sync_days
from gsc_pipeline.warehouse import LEDGER_TABLE, PartitionBatch, open_warehouse
from tests.pipeline_env import EMULATOR_CONFIG, SMALL, TODAY

SMALL_PQ = dg.AssetKey(["gsc", "small_example", "page_query"])


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(EMULATOR_CONFIG) as handle:
        yield handle


@pytest.fixture
def client(emulator) -> GscClient:
    return GscClient(
        emulator.base_url, qpm_budget=1e6, retry_policy=RetryPolicy(base_wait=0.01, max_wait=0.05)
    )


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request) -> str:
    if request.param == "duckdb":
        return request.getfixturevalue("duckdb_path")
    return request.getfixturevalue("postgres_schema_url")


def ledger_by_day(url: str):
    return open_warehouse(url).read_sql(
        f"SELECT date, MIN(data_state) AS state, MIN(first_incomplete_date) AS incomplete, "
        f"SUM(rows_returned) AS rows FROM {LEDGER_TABLE} GROUP BY date ORDER BY date"
    )


# --- Days that are not final yet -----------------------------------------------------------


def test_days_google_has_not_finalized_are_stored_as_fresh_not_as_empty_final(
    client, warehouse_url
) -> None:
    # Emulated today 2026-03-20, final data lags 3 days: 03-18 is Google's first incomplete day.
    days = [TODAY - dt.timedelta(days=n) for n in range(5, 0, -1)]  # 03-15 .. 03-19
    results = sync_days(client, open_warehouse(warehouse_url), SMALL, PAGE_QUERY, days,
                        run_id="r1")  # fmt: skip
    states = {r.day.isoformat(): r.data_state for r in results}
    assert states == {"2026-03-15": "final", "2026-03-16": "final", "2026-03-17": "final",
                      "2026-03-18": "all", "2026-03-19": "all"}  # fmt: skip
    ledger = ledger_by_day(warehouse_url)
    assert (ledger["rows"] > 0).all(), "no day stored empty"
    # Each final day carries Google's word that it was final (firstIncompleteDate after it).
    assert {str(d)[:10] for d in ledger["incomplete"]} == {"2026-03-18"}
    outcome = proof.no_missing_batches(open_warehouse(warehouse_url), SMALL, PAGE_QUERY, days)
    assert outcome.passed and outcome.metadata["fresh_data_days"] == 2
    fresh = proof.fresh_partitions(open_warehouse(warehouse_url))
    assert [d.isoformat() for d in fresh["date"]] == ["2026-03-18", "2026-03-19"]


def test_an_empty_final_day_is_complete_only_with_googles_word(warehouse_url) -> None:
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE])
    day = dt.date(2026, 3, 10)

    def write_empty(first_incomplete: dt.date | None) -> None:
        import pyarrow as pa

        from gsc_pipeline.warehouse import LEDGER_SCHEMA
        from gsc_pipeline.warehouse.base import report_schema

        ledger = {name: [None] for name in LEDGER_SCHEMA.names} | {
            "site_url": [SMALL], "report": [PAGE.name], "search_type": ["web"], "date": [day],
            "start_row": [0], "row_limit": [PAGE.row_limit], "rows_returned": [0],
            "clicks": [0.0], "impressions": [0.0], "data_state": ["final"],
            "first_incomplete_date": [first_incomplete], "fetched_at": [dt.datetime(2026, 3, 20)],
            "run_id": ["r1"],
        }  # fmt: skip
        wh.write_partitions([PartitionBatch(
            SMALL, PAGE, day, report_schema(PAGE).empty_table(),
            pa.Table.from_pydict(ledger, schema=LEDGER_SCHEMA),
        )])  # fmt: skip

    # A short (empty) first page and nothing else: not proof of a complete day.
    write_empty(None)
    unproven = proof.no_missing_batches(wh, SMALL, PAGE, [day])
    assert not unproven.passed and unproven.bad_partitions == ["2026-03-10"]
    assert unproven.metadata["empty_unproven_days"] == 1
    # Google said the day was final (first incomplete day after it): no traffic, complete.
    write_empty(dt.date(2026, 3, 18))
    proven = proof.no_missing_batches(wh, SMALL, PAGE, [day])
    assert proven.passed and proven.metadata["no_traffic_days"] == 1


# --- Days outside Google's 16-month window -------------------------------------------------


def test_a_day_outside_the_retention_window_is_an_error_that_writes_nothing(
    client, warehouse_url
) -> None:
    oldest = oldest_available_day(dt.date(2026, 12, 1))
    assert oldest == dt.date(2025, 8, 1)
    assert oldest_available_day(dt.date(2026, 3, 31)) == dt.date(2024, 11, 30)
    # The emulator clamps old days to an empty 200, as Google may. A range of old days shows
    # no incomplete day, so the window follows the Pacific clock (Google's own day).
    days = [dt.date(2024, 10, 1), dt.date(2024, 10, 2)]
    wh = open_warehouse(warehouse_url)
    oldest = oldest_available_day(pacific_today()).isoformat()
    with pytest.raises(OutsideRetentionWindow, match=rf"2024-10-01 is older than Google's 16-month"
                       rf" window \(the oldest day it keeps is {oldest}\)"):  # fmt: skip
        sync_days(client, wh, SMALL, PAGE, days, run_id="r1")
    # Refused before any table is created, so nothing at all is written.
    assert wh.missing_tables([LEDGER_TABLE, PAGE.table]) == [LEDGER_TABLE, PAGE.table]


# --- Checks that cannot measure say so -----------------------------------------------------


def test_every_check_says_not_evaluated_when_nothing_is_stored(warehouse_url) -> None:
    wh = open_warehouse(warehouse_url)
    days = [dt.date(2026, 3, 1)]
    # No table at all yet (a report or property added since the last fetch): no crash.
    before = [*proof.report_checks(wh, SMALL, PAGE_QUERY, None),
              proof.anonymized_share(wh, SMALL, PAGE_QUERY, None)]  # fmt: skip
    assert [o.evaluated for o in before] == [False] * 5
    assert all(not o.passed for o in before)
    assert "does not exist yet" in before[0].metadata["not_evaluated"]
    # Partitions Dagster calls materialized while the table is gone: missing, not unmeasured.
    lost = proof.report_checks(wh, SMALL, PAGE_QUERY, None, expected_days=days)[0]
    assert lost.evaluated and not lost.passed and lost.bad_partitions == ["2026-03-01"]
    # Tables exist, still no fetched day: nothing measured, nothing passed.
    wh.ensure_schema([PAGE_QUERY, SITE])
    empty = [*proof.report_checks(wh, SMALL, PAGE_QUERY, None),
             proof.anonymized_share(wh, SMALL, PAGE_QUERY, days)]  # fmt: skip
    assert [(o.name, o.evaluated) for o in empty] == [
        (proof.NO_MISSING_BATCHES, False), (proof.NO_DUPLICATE_BATCHES, False),
        (proof.ROWS_MATCH_LEDGER, False), (proof.TRUNCATED_DAYS, False),
        (proof.ANONYMIZED_SHARE, False),
    ]  # fmt: skip


def test_anonymized_share_without_site_totals_is_not_evaluated(client, duckdb_path) -> None:
    wh = open_warehouse(duckdb_path)
    days = [dt.date(2026, 3, 2), dt.date(2026, 3, 3)]
    sync_days(client, wh, SMALL, PAGE_QUERY, days, run_id="r1")
    wh.ensure_schema([SITE])
    alone = proof.anonymized_share(wh, SMALL, PAGE_QUERY, days)
    assert not alone.evaluated and "gsc_site" in alone.metadata["not_evaluated"]
    sync_days(client, wh, SMALL, SITE, days[:1], run_id="r2")
    half = proof.anonymized_share(wh, SMALL, PAGE_QUERY, days)
    assert half.evaluated and half.metadata["checked_partitions"] == 1
    assert half.metadata["unmeasured_days"] == 1


# --- Dagster: sensors and whole-history checks on a new or damaged warehouse ---------------


@pytest.fixture
def defs(monkeypatch, emulator, tmp_path) -> dg.Definitions:
    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    return build_definitions(parse_config({
        "start_date": "2026-01-01", "backfill_days_per_run": 10,
        "properties": [{"site_url": SMALL, "reports": ["page_query"]}],
    }))  # fmt: skip


def history_checks(defs: dg.Definitions, instance) -> dg.ExecuteInProcessResult:
    keys = [k for k in defs.resolve_asset_graph().asset_check_keys if k.name.endswith("_all_days")]
    job = dg.define_asset_job("history", selection=dg.AssetSelection.checks(*keys))
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    return merged.resolve_job_def("history").execute_in_process(instance=instance)


def tick(defs: dg.Definitions, instance, name: str, cursor: str | None = None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    )
    return defs.resolve_sensor_def(name).evaluate_tick(context)


def test_sensors_and_history_checks_on_a_new_warehouse(defs) -> None:
    with dg.instance_for_test() as instance:
        # No table exists yet: every sensor tick and the whole-history checks succeed.
        assert tick(defs, instance, FINALIZATION_SENSOR).run_requests == []
        # No audit has run: nothing restated to re-fetch.
        assert tick(defs, instance, RESTATEMENT_SENSOR).run_requests == []
        result = history_checks(defs, instance)
        assert result.success
        # Nothing measured: no evaluation at all (Dagster shows them skipped), none passed.
        assert result.get_asset_check_evaluations() == []
        # ...and the repair sensor does not take "nothing fetched yet" for damage.
        assert tick(defs, instance, REPAIR_SENSOR).run_requests == []


def test_a_terminated_run_leaves_its_days_listed_missing_then_repaired(defs) -> None:
    days = ["2026-03-02", "2026-03-03", "2026-03-04"]
    with dg.instance_for_test() as instance:
        job = defs.resolve_job_def(FETCH_JOB)
        # A backfill run of three days, terminated from the UI before it wrote anything.
        run = instance.create_run_for_job(
            job, asset_selection=frozenset([SMALL_PQ]),
            tags={RANGE_START_TAG: days[0], RANGE_END_TAG: days[-1]},
        )  # fmt: skip
        instance.report_run_canceling(run)
        instance.report_run_canceled(run)
        # Terminate is deliberate: the repair sensor does not undo it at once.
        first = tick(defs, instance, REPAIR_SENSOR)
        assert first.run_requests == []
        # The whole-history check lists the days as missing.
        evaluations = {e.check_name: e for e in history_checks(defs, instance)
                       .get_asset_check_evaluations()}  # fmt: skip
        missing = evaluations["no_missing_batches_all_days"]
        assert not missing.passed
        assert missing.metadata["bad_days"].value == ", ".join(days)
        # The repair follows from it: one ranged run for exactly those days.
        repair = tick(defs, instance, REPAIR_SENSOR, first.cursor)
        assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in repair.run_requests] == [
            ("2026-03-02", "2026-03-04")
        ]


def test_a_report_alone_skips_the_check_it_cannot_measure(monkeypatch, emulator, tmp_path):
    """site materialized alone (page_query never fetched): the step succeeds with its four
    checks passed, and anonymized_share (whole history only) yields no evaluation: skipped,
    never passed."""
    from gsc_pipeline.defs.checks import in_run_check_keys

    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    config = parse_config({
        "start_date": "2026-01-01",
        "properties": [{"site_url": SMALL, "reports": ["page_query", "site"]}],
    })  # fmt: skip
    defs = build_definitions(config)
    site = dg.AssetKey(["gsc", "small_example", "site"])
    with dg.instance_for_test() as instance:
        job = defs.resolve_job_def(FETCH_JOB).get_subset(
            asset_selection={site}, asset_check_selection=set(in_run_check_keys(config, [site]))
        )
        result = job.execute_in_process(instance=instance, partition_key="2026-03-02")
        history = history_checks(defs, instance)
    assert result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {proof.NO_MISSING_BATCHES: True, proof.NO_DUPLICATE_BATCHES: True,
                           proof.ROWS_MATCH_LEDGER: True, proof.TRUNCATED_DAYS: True}  # fmt: skip
    site_history = {e.check_name: e.passed for e in history.get_asset_check_evaluations()
                    if e.asset_key.path[-2] == "site"}  # fmt: skip
    assert site_history == {f"{name}_all_days": True for name in evaluations}
