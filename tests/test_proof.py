"""Each check passes on a good warehouse and fails, naming the exact day, on a crafted bad one.

Runs on DuckDB and Postgres: the check SQL must mean the same on both.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from gsc_pipeline import proof
from gsc_pipeline.reports import DAILY_ROW_CAP, SITE, Report
from gsc_pipeline.warehouse import LEDGER_SCHEMA, PartitionBatch, Warehouse, open_warehouse
from gsc_pipeline.warehouse.base import report_schema

SITE_URL = "sc-domain:proof.example"
# A small page size so a day spans several pages without big data.
PQ = Report("page_query", ("page", "query"), row_limit=10)
DAY1, DAY2, DAY3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)
DAYS = [DAY1, DAY2, DAY3]


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, duckdb_path: str) -> Warehouse:
    url = duckdb_path if request.param == "duckdb" else request.getfixturevalue(
        "postgres_schema_url"
    )
    wh = open_warehouse(url)
    wh.ensure_schema([PQ, SITE])
    return wh


def rows_for(day: dt.date, n: int, clicks_each: float = 2.0) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "site_url": [SITE_URL] * n,
            "search_type": ["web"] * n,
            "date": [day] * n,
            "page": [f"https://proof.example/p{i % 7}" for i in range(n)],
            "query": [f"q{i}" for i in range(n)],
            "clicks": [clicks_each] * n,
            "impressions": [10.0] * n,
            "ctr": [clicks_each / 10] * n,
            "position": [3.0] * n,
        },
        schema=report_schema(PQ),
    )


def ledger_for(day: dt.date, rows: pa.Table, pages: list[tuple[int, int]]) -> pa.Table:
    """Ledger entries (start_row, rows_returned) whose click sums follow `rows` in order."""
    clicks = rows.column("clicks").to_pylist()
    impressions = rows.column("impressions").to_pylist()
    data: dict[str, list] = {name: [] for name in LEDGER_SCHEMA.names}
    for start, n in pages:
        for name, value in (
            ("site_url", SITE_URL), ("report", PQ.name), ("search_type", "web"), ("date", day),
            ("start_row", start), ("row_limit", PQ.row_limit), ("rows_returned", n),
            ("clicks", float(sum(clicks[start:start + n]))),
            ("impressions", float(sum(impressions[start:start + n]))),
            ("data_state", "final"), ("first_incomplete_date", None),
            ("fetched_at", dt.datetime(2026, 3, 5)), ("run_id", "r1"), ("shard", ""),
            ("merged_rows", None),
        ):  # fmt: skip
            data[name].append(value)
    return pa.Table.from_pydict(data, schema=LEDGER_SCHEMA)


def write_good_day(wh: Warehouse, day: dt.date, n: int = 25) -> None:
    rows = rows_for(day, n)
    pages = [(s, min(PQ.row_limit, n - s)) for s in range(0, n + 1, PQ.row_limit)]
    wh.write_partitions([PartitionBatch(SITE_URL, PQ, day, rows, ledger_for(day, rows, pages))])


@pytest.fixture
def good(warehouse: Warehouse) -> Warehouse:
    for day in DAYS:
        write_good_day(warehouse, day)
    return warehouse


def test_all_checks_pass_on_a_good_sync(good: Warehouse) -> None:
    for outcome in proof.report_checks(good, SITE_URL, PQ, DAYS):
        assert outcome.passed, (outcome.name, outcome.metadata)
        assert outcome.metadata["checked_partitions"] == 3


def test_missing_page_in_the_middle_is_caught(good: Warehouse) -> None:
    rows = rows_for(DAY2, 25)
    # Page at start_row 10 lost: 0, 20 only.
    ledger = ledger_for(DAY2, rows, [(0, 10), (20, 5)])
    good.write_partitions([PartitionBatch(SITE_URL, PQ, DAY2, rows, ledger)])
    outcome = proof.no_missing_batches(good, SITE_URL, PQ, DAYS)
    assert not outcome.passed
    assert outcome.bad_partitions == ["2026-03-02"]
    assert outcome.metadata["broken_sequences"] == 1


def test_sequence_that_never_ends_short_is_caught(good: Warehouse) -> None:
    rows = rows_for(DAY3, 20)
    # Two full pages and no final short/empty page: the day may have more rows.
    good.write_partitions([
        PartitionBatch(SITE_URL, PQ, DAY3, rows, ledger_for(DAY3, rows, [(0, 10), (10, 10)]))
    ])
    assert proof.no_missing_batches(good, SITE_URL, PQ, DAYS).bad_partitions == ["2026-03-03"]


def test_materialized_partition_without_ledger_is_caught(good: Warehouse) -> None:
    outcome = proof.no_missing_batches(
        good, SITE_URL, PQ, None, expected_days=[*DAYS, dt.date(2026, 3, 4)]
    )
    assert outcome.bad_partitions == ["2026-03-04"]
    assert outcome.metadata["unfetched_search_type_days"] == 1
    in_run = proof.no_missing_batches(good, SITE_URL, PQ, [DAY1, dt.date(2026, 3, 4)])
    assert in_run.bad_partitions == ["2026-03-04"]


def test_duplicate_batch_and_duplicate_key_are_caught(good: Warehouse) -> None:
    with good.transaction() as conn:
        # The same page recorded twice for DAY1, and one row stored twice on DAY3.
        conn.execute(
            "INSERT INTO gsc_fetch_ledger SELECT * FROM gsc_fetch_ledger "
            "WHERE date = ? AND start_row = 10",
            (DAY1,),
        )
        conn.execute(
            "INSERT INTO gsc_page_query SELECT * FROM gsc_page_query "
            "WHERE date = ? AND query = 'q3'",
            (DAY3,),
        )
    outcome = proof.no_duplicate_batches(good, SITE_URL, PQ, DAYS)
    assert not outcome.passed
    assert outcome.bad_partitions == ["2026-03-01", "2026-03-03"]
    assert outcome.metadata["duplicate_batches"] == 1
    assert outcome.metadata["duplicate_rows"] == 1
    # A range that excludes both bad days passes.
    assert proof.no_duplicate_batches(good, SITE_URL, PQ, [DAY2]).passed


def exact_comparisons(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The duplicate-rows proof's exact comparisons by key on `wh`, as they are made."""
    compared: list[str] = []
    read_rows = wh.read_rows

    def watched(sql: str, params=None):
        if "copies" in sql and "FROM gsc_page_query" in sql:
            compared.append(sql)
        return read_rows(sql, params)

    monkeypatch.setattr(wh, "read_rows", watched)
    return compared


def test_a_row_stored_twice_is_caught_where_a_key_column_is_null(
    good: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The screen hashes each key column on its own (PostgreSQL) or together (DuckDB): a NULL in
    # the key must neither hide a duplicate nor send a day of distinct rows to the exact
    # comparison (COUNT(DISTINCT) skips a NULL hash).
    compared = exact_comparisons(good, monkeypatch)
    with good.transaction() as conn:
        conn.execute("UPDATE gsc_page_query SET page = NULL WHERE date = ?", (DAY2,))
    assert proof.no_duplicate_batches(good, SITE_URL, PQ, [DAY2]).passed
    assert not compared
    with good.transaction() as conn:
        conn.execute(
            "INSERT INTO gsc_page_query SELECT * FROM gsc_page_query "
            "WHERE date = ? AND query = 'q3'",
            (DAY2,),
        )
    outcome = proof.no_duplicate_batches(good, SITE_URL, PQ, DAYS)
    assert outcome.bad_partitions == ["2026-03-02"]
    assert outcome.metadata["duplicate_rows"] == 1


def test_rows_sharing_a_key_hash_are_told_apart_by_their_key(
    good: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The duplicate-rows proof screens by a hash of each row's key; a collision (here every
    # row hashes alike) sends the day to the exact comparison, which finds no duplicate.
    monkeypatch.setattr(good, "row_hash_sql", lambda columns: "42")
    compared = exact_comparisons(good, monkeypatch)
    outcome = proof.no_duplicate_batches(good, SITE_URL, PQ, DAYS)
    assert outcome.passed, outcome.summary()
    assert outcome.metadata["duplicate_rows"] == 0
    assert compared


def test_rows_not_matching_the_ledger_are_caught(good: Warehouse) -> None:
    with good.transaction() as conn:
        conn.execute("DELETE FROM gsc_page_query WHERE date = ? AND query = 'q0'", (DAY1,))
        conn.execute(
            "UPDATE gsc_page_query SET clicks = clicks + 1 WHERE date = ? AND query = 'q1'",
            (DAY2,),
        )
    outcome = proof.rows_match_ledger(good, SITE_URL, PQ, DAYS)
    assert outcome.bad_partitions == ["2026-03-01", "2026-03-02"]
    assert outcome.metadata["row_difference"] == 1


def test_days_at_the_daily_cap_warn(warehouse: Warehouse) -> None:
    capped = Report("page_query", ("page", "query"), row_limit=25_000)
    rows = rows_for(DAY1, 0)
    data = ledger_for(DAY1, rows, [(0, 0)]).to_pydict()
    data["row_limit"] = [25_000]
    data["rows_returned"] = [DAILY_ROW_CAP]
    warehouse.write_partitions([
        PartitionBatch(SITE_URL, capped, DAY1, rows, pa.Table.from_pydict(data, LEDGER_SCHEMA))
    ])
    write_good_day(warehouse, DAY2)
    outcome = proof.truncated_days(warehouse, SITE_URL, PQ, DAYS)
    assert not outcome.passed
    assert outcome.bad_partitions == ["2026-03-01"]
    assert outcome.metadata["max_rows_per_day"] == DAILY_ROW_CAP
    assert proof.truncated_days(warehouse, SITE_URL, PQ, [DAY2]).passed


def _site_total(wh: Warehouse, day: dt.date, clicks: float) -> None:
    rows = pa.Table.from_pydict(
        {"site_url": [SITE_URL], "search_type": ["web"], "date": [day], "clicks": [clicks],
         "impressions": [1000.0], "ctr": [clicks / 1000], "position": [5.0]},
        schema=report_schema(SITE),
    )  # fmt: skip
    ledger = ledger_for(day, rows_for(day, 1, clicks), [(0, 1)]).to_pydict()
    ledger["report"] = ["site"]
    wh.write_partitions([
        PartitionBatch(SITE_URL, SITE, day, rows, pa.Table.from_pydict(ledger, LEDGER_SCHEMA))
    ])


def test_anonymized_share_measures_and_warns(good: Warehouse) -> None:
    # page x query rows hold 25 * 2 = 50 clicks a day.
    _site_total(good, DAY1, 62.5)  # 20% anonymized
    _site_total(good, DAY2, 250.0)  # 80% anonymized: warn
    outcome = proof.anonymized_share(good, SITE_URL, PQ, DAYS)
    assert outcome.bad_partitions == ["2026-03-02"]
    assert outcome.metadata["checked_partitions"] == 2  # DAY3 has no property total
    assert outcome.metadata["max_daily_click_share"] == pytest.approx(0.8)
    assert outcome.metadata["anonymized_click_share"] == pytest.approx(1 - 100 / 312.5, abs=1e-4)
    assert proof.anonymized_share(good, SITE_URL, PQ, [DAY1]).passed
