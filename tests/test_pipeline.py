"""The fetching assets end to end: Dagster runs against the emulator over HTTP into DuckDB and
PostgreSQL, compared row for row with what the API serves."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket

import dagster as dg
import pandas as pd
import pytest

from gsc_pipeline.config import parse_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.reports import REPORTS
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import (
    EMULATOR_CONFIG,
    FORBIDDEN,
    MEDIUM,
    SMALL,
    direct_fetch,
    pipeline_config,
    warehouse_rows,
)

DAYS = [dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)]
RANGE_TAGS = {
    "dagster/asset_partition_range_start": DAYS[0].isoformat(),
    "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
}


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(EMULATOR_CONFIG) as emu:
        yield emu


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path):
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'wh.duckdb'}"
    return request.getfixturevalue("postgres_schema_url")


def _definitions(monkeypatch, emulator, warehouse_url, *sites, **kwargs) -> dg.Definitions:
    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, warehouse_url)
    return build_definitions(pipeline_config(*sites, **kwargs))


def _materialize(
    defs: dg.Definitions, instance, prop: str, tags=None, partition_key=None, raise_on_error=True
):
    selection = dg.AssetSelection.groups(prop)
    job = dg.define_asset_job("t", selection=selection)
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("t")
    return resolved.execute_in_process(
        instance=instance, tags=tags, partition_key=partition_key, raise_on_error=raise_on_error
    )


def _snapshot(warehouse_url: str) -> dict[str, pd.DataFrame]:
    wh = open_warehouse(warehouse_url)
    out = {}
    for report in ("page_query", "page", "site"):
        df = wh.read_sql(f"SELECT * FROM {REPORTS[report].table}")
        out[report] = df.sort_values(list(df.columns[:-4])).reset_index(drop=True)
    ledger = wh.read_sql("SELECT * FROM gsc_fetch_ledger")
    out["ledger"] = (
        ledger.drop(columns=["fetched_at", "run_id"])
        .sort_values(["report", "date", "start_row"])
        .reset_index(drop=True)
    )
    return out


def test_ranged_run_lands_exactly_what_the_api_serves(monkeypatch, emulator, warehouse_url):
    defs = _definitions(monkeypatch, emulator, warehouse_url, SMALL, MEDIUM)
    with dg.instance_for_test() as instance:
        result = _materialize(defs, instance, "www_medium_example", tags=RANGE_TAGS)
        assert result.success
        wh = open_warehouse(warehouse_url)
        for name in ("page_query", "page", "site"):
            report = REPORTS[name]
            for day in DAYS:
                expected = direct_fetch(emulator.base_url, MEDIUM, report, day)
                assert len(expected) > 0
                pd.testing.assert_frame_equal(warehouse_rows(wh, MEDIUM, report, day), expected)
        # Multi-page days: 27,000 page x query rows take two pages, both in the ledger.
        pages = wh.read_sql(
            "SELECT date, count(*) AS pages, sum(rows_returned) AS n FROM gsc_fetch_ledger "
            "WHERE report = 'page_query' GROUP BY date ORDER BY date"
        )
        assert pages["pages"].tolist() == [2, 2, 2]
        # Per-partition metadata in a ranged run, including Dagster's row count.
        key = dg.AssetKey(["gsc", "www_medium_example", "page_query"])
        events = instance.fetch_materializations(key, limit=10).records
        by_day = {e.partition_key: e.asset_materialization.metadata for e in events}
        assert sorted(by_day) == [d.isoformat() for d in DAYS]
        for day, meta in by_day.items():
            assert meta["dagster/row_count"].value == int(
                pages.loc[pages["date"].astype(str) == day, "n"].iloc[0]
            )
            assert meta["pages"].value == 2
            assert {"api_calls", "latency_p95_ms", "achieved_qpm", "fetch_seconds"} <= set(meta)


def test_rematerializing_changes_nothing(monkeypatch, emulator, warehouse_url):
    defs = _definitions(monkeypatch, emulator, warehouse_url, SMALL)
    with dg.instance_for_test() as instance:
        assert _materialize(defs, instance, "small_example", tags=RANGE_TAGS).success
        first = _snapshot(warehouse_url)
        assert _materialize(
            defs, instance, "small_example", partition_key=DAYS[1].isoformat()
        ).success
        assert _materialize(defs, instance, "small_example", tags=RANGE_TAGS).success
        second = _snapshot(warehouse_url)
    for name, frame in first.items():
        pd.testing.assert_frame_equal(second[name], frame, obj=name)


def test_permission_denied_fails_with_the_fix_and_writes_nothing(monkeypatch, emulator, tmp_path):
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    defs = _definitions(monkeypatch, emulator, url, FORBIDDEN)
    with dg.instance_for_test() as instance:
        result = _materialize(
            defs, instance, "not_yours_example", tags=RANGE_TAGS, raise_on_error=False
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert "sc-domain:not-yours.example" in message
    assert "add it as a user" in message or "permission" in message.lower()
    # Refused at the first API call, before any table was created.
    tables = open_warehouse(url).read_sql("SELECT table_name FROM information_schema.tables")
    assert tables.empty, tables


def test_retry_waits_are_said_in_the_run_log(monkeypatch, emulator, tmp_path):
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    defs = _definitions(monkeypatch, emulator, url, SMALL)
    emulator.script_fault(SMALL, date=DAYS[0].isoformat(), kind="status", status=503, times=1)
    with dg.instance_for_test() as instance:
        result = _materialize(defs, instance, "small_example", tags=RANGE_TAGS)
        assert result.success
        warnings = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if e.level == logging.WARNING and "transient failure for" in e.user_message
        ]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"transient failure for {SMALL}; retrying in ")
    assert "(attempt 1 of 8): " in warnings[0] and "HTTP 503" in warnings[0]


def test_an_unreachable_endpoint_fails_the_step_at_once_naming_the_variable(
    monkeypatch, emulator, tmp_path
):
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    defs = _definitions(monkeypatch, emulator, url, SMALL)
    with socket.socket() as taken:  # bound, never listening: connections are refused
        taken.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{taken.getsockname()[1]}/"
        monkeypatch.setenv(API_ENDPOINT_ENV, endpoint)
        with dg.instance_for_test() as instance:
            result = _materialize(
                defs, instance, "small_example", tags=RANGE_TAGS, raise_on_error=False
            )
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert f"check GSC_API_ENDPOINT={endpoint!r}: is the server running" in message
    assert "gave up" not in message  # not retried


def _tables(warehouse_url: str) -> list[str]:
    wh = open_warehouse(warehouse_url)
    found = wh.read_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    return sorted(found["table_name"])


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        (API_ENDPOINT_ENV, "not a url", "GSC_API_ENDPOINT='not a url' is not an http(s) URL"),
        ("GSC_SA_KEY", "garbage!", "environment variable GSC_SA_KEY: neither JSON nor base64"),
        ("GSC_SA_KEY", None, "environment variable GSC_SA_KEY is unset or empty: export"),
    ],
    ids=["endpoint", "key", "unset-key"],
)
def test_a_bad_endpoint_or_key_fails_at_once_by_name_before_any_table(
    monkeypatch, emulator, warehouse_url, env, value, named
):
    config = parse_config(
        {
            "start_date": "2026-01-01",
            "credentials": {"default": {"kind": "service_account", "key_env": "GSC_SA_KEY"}},
            "properties": [{"site_url": SMALL}],
        }
    )
    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, warehouse_url)
    # A key that loads (the emulator's own service account), unless the bad one is under test.
    monkeypatch.setenv("GSC_SA_KEY", json.dumps(emulator.service_account_info()))
    if value is None:
        monkeypatch.delenv(env)
    else:
        monkeypatch.setenv(env, value)
    requests_before = emulator.stats()["requests_total"]
    with dg.instance_for_test() as instance:
        result = _materialize(
            build_definitions(config), instance, "small_example", tags=RANGE_TAGS,
            raise_on_error=False,
        )  # fmt: skip
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    assert named in error.message, error.message
    # The message a person reads, alone: no Python frames, no "caused by" chain.
    assert "Stack Trace" not in str(error) and "Traceback" not in str(error), str(error)
    assert emulator.stats()["requests_total"] == requests_before  # refused before any request
    assert _tables(warehouse_url) == []
