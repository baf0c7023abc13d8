"""A Terminate that lands at the moment a day commits: Dagster's materialized partitions still
equal the days the warehouse holds (real instance, emulator over HTTP, DuckDB and Postgres).

Dagster's Terminate raises `DagsterExecutionInterruptedError` in the step's thread wherever it
is; to land it exactly between a day's commit and the step hearing of it, the group writer's
hand-over raises it there (the one injected piece: timing a real signal into that window is
luck, not a test)."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.errors import DagsterExecutionInterruptedError

from gsc_pipeline.config import parse_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import FETCH_JOB, RANGE_END_TAG, RANGE_START_TAG
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.sync.writer import GroupWriter
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import EMULATOR_CONFIG, SMALL

SMALL_PQ = dg.AssetKey(["gsc", "small_example", "page_query"])


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'wh.duckdb'}"
    return request.getfixturevalue("postgres_schema_url")


def test_terminated_as_a_day_commits_dagster_agrees_with_the_warehouse(
    monkeypatch, warehouse_url
) -> None:
    collect = GroupWriter.collect
    commits_seen: list[int] = []

    def terminate_as_the_commit_lands(self: GroupWriter, done: set) -> None:
        writing = self._writing  # the group commit running, if any
        if writing is not None and writing in done and writing.exception() is None:
            commits_seen.append(len(writing.result()))
            raise DagsterExecutionInterruptedError("Terminate (at the moment a day commits)")
        collect(self, done)

    monkeypatch.setattr(GroupWriter, "collect", terminate_as_the_commit_lands)
    with running_emulator(EMULATOR_CONFIG) as emulator:
        monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
        monkeypatch.setenv(WAREHOUSE_URL_ENV, warehouse_url)
        defs = build_definitions(parse_config({
            "start_date": "2026-01-01",
            "credentials": {"default": {"step_concurrency": 1}},
            "properties": [{"site_url": SMALL, "reports": ["page_query"]}],
        }))  # fmt: skip
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def(FETCH_JOB).execute_in_process(
                instance=instance,
                tags={RANGE_START_TAG: "2026-03-01", RANGE_END_TAG: "2026-03-06"},
                raise_on_error=False,
            )
            materialized = instance.get_materialized_partitions(SMALL_PQ)
    assert not result.success
    assert commits_seen == [1]  # interrupted once, right after the first commit
    ledger = open_warehouse(warehouse_url).read_sql("SELECT DISTINCT date FROM gsc_fetch_ledger")
    written = {str(day)[:10] for day in ledger["date"]}
    assert written == {"2026-03-01"}
    assert materialized == written
