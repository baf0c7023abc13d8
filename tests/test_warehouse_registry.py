"""The backend registry: a third backend is one class, registered; nothing else changes.

The toy backend below is a DuckDB file under its own URL scheme that stores every float as a
4-byte REAL and records the locks it is asked for. Registered, it is opened by URL, its SQL
types shape every table (the report tables, the ledger, the lifetime state) and its lock is the
one the lifetime refresh takes; the doctor checks it without knowing its name.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

import pyarrow as pa
import pytest

from gsc_pipeline import lifetime
from gsc_pipeline.doctor import check_warehouse
from gsc_pipeline.reports import PAGE, PAGE_QUERY
from gsc_pipeline.warehouse import (
    BACKENDS,
    LEDGER_SCHEMA,
    WAREHOUSE_URL_ENV,
    Connection,
    PartitionBatch,
    WarehouseUrlError,
    open_warehouse,
    register_backend,
    report_schema,
)
from gsc_pipeline.warehouse.duckdb import DuckDBWarehouse

SITE_URL = "sc-domain:example.com"
DAYS = (dt.date(2026, 3, 1), dt.date(2026, 3, 2))


class ToyWarehouse(DuckDBWarehouse):
    dialect = "toy"
    url_form = "toy:///absolute/path/warehouse.toy"
    sql_types = {**DuckDBWarehouse.sql_types, pa.float64(): "REAL"}
    unwritable_hint = "check the toy file's directory"
    locks: ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def url_target(cls, url: str) -> str | None:
        return url.removeprefix("toy://") if url.startswith("toy:///") else None

    def lock(self, conn: Connection, name: str, key: str) -> None:
        self.locks.append((name, key))


@pytest.fixture
def toy_backend():
    register_backend(ToyWarehouse)
    ToyWarehouse.locks.clear()
    try:
        yield ToyWarehouse
    finally:
        BACKENDS.pop(ToyWarehouse.dialect)


def _batch(report, day: dt.date) -> PartitionBatch:
    pages = [f"https://example.com/{i}" for i in range(3)]
    dims = {"page": pages, **({"query": [f"q{i}" for i in range(3)]} if "query" in
                              report.dimensions else {})}  # fmt: skip
    rows = pa.Table.from_pydict(
        {"site_url": [SITE_URL] * 3, "search_type": ["web"] * 3, "date": [day] * 3, **dims,
         "clicks": [1.0, 2.0, 3.0], "impressions": [10.0, 20.0, 30.0],
         "ctr": [0.1, 0.1, 0.1], "position": [1.0, 2.0, 3.0]},
        schema=report_schema(report),
    )  # fmt: skip
    ledger = pa.Table.from_pylist(
        [{"site_url": SITE_URL, "report": report.name, "search_type": "web", "date": day,
          "start_row": 0, "row_limit": 25_000, "rows_returned": 3, "clicks": 6.0,
          "impressions": 60.0, "data_state": "final", "first_incomplete_date": None,
          "fetched_at": dt.datetime(2026, 3, 5), "run_id": "run-1", "shard": "",
          "merged_rows": None}],
        schema=LEDGER_SCHEMA,
    )  # fmt: skip
    return PartitionBatch(SITE_URL, report, day, rows, ledger)


def _column_types(warehouse, table: str) -> dict[str, str]:
    return dict(warehouse.describe_table(table).columns)


def test_a_registered_backend_is_opened_by_url_and_owns_its_types_and_locks(
    toy_backend, tmp_path, monkeypatch
):
    url = f"toy://{tmp_path}/w.toy"
    warehouse = open_warehouse(url)
    assert type(warehouse) is toy_backend

    warehouse.ensure_schema([PAGE, PAGE_QUERY])
    warehouse.write_partitions([_batch(r, d) for r in (PAGE, PAGE_QUERY) for d in DAYS])
    assert _column_types(warehouse, PAGE.table)["clicks"] == "FLOAT"
    # One lock per partition written (table, "site day").
    assert {(PAGE.table, f"{SITE_URL} {d.isoformat()}") for d in DAYS} <= set(toy_backend.locks)

    result = lifetime.refresh(warehouse, [SITE_URL])
    assert result.days_refreshed == len(DAYS)
    stats = warehouse.read_sql(f"SELECT page, clicks FROM {lifetime.STATS_TABLE} ORDER BY page")
    assert stats["clicks"].tolist() == [2.0, 4.0, 6.0]
    # The lifetime tables use the backend's types and its lock, not ones of their own.
    assert _column_types(warehouse, lifetime.STATS_TABLE)["clicks"] == "FLOAT"
    assert any(name == lifetime.STATS_TABLE for name, _ in toy_backend.locks)

    # The doctor checks it by asking the backend (its files, its advice), not by its name.
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"toy://{tmp_path}/doctor.toy")
    finding = check_warehouse()
    assert finding.ok, finding.what
    assert not (tmp_path / "doctor.toy").exists()


def test_a_url_no_backend_claims_lists_every_registered_form(toy_backend):
    with pytest.raises(WarehouseUrlError) as err:
        open_warehouse("mysql://db/gsc")
    message = str(err.value)
    assert "'mysql' is not a supported warehouse" in message
    for backend in BACKENDS.values():
        assert backend.url_form in message
