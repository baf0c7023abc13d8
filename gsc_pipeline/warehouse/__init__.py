"""Storing partitions and the fetch ledger: DuckDB (embedded default) or PostgreSQL."""

from __future__ import annotations

from gsc_pipeline.warehouse.base import (
    LEDGER_SCHEMA,
    LEDGER_TABLE,
    Connection,
    PartitionBatch,
    ReportDefinitionChanged,
    Warehouse,
    column_name,
    report_schema,
)


def open_warehouse(url: str) -> Warehouse:
    """`postgresql://...` (or `postgres://`) -> Postgres; `duckdb:///path` or a path -> DuckDB."""
    if url.startswith(("postgresql://", "postgres://")):
        from gsc_pipeline.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(url)
    from gsc_pipeline.warehouse.duckdb import DuckDBWarehouse

    path = url.removeprefix("duckdb://") if url.startswith("duckdb://") else url
    if not path or path == "/":
        raise ValueError(f"warehouse URL {url!r} names no DuckDB file; use duckdb:///path/file")
    return DuckDBWarehouse(path)


__all__ = [
    "LEDGER_SCHEMA",
    "LEDGER_TABLE",
    "Connection",
    "PartitionBatch",
    "ReportDefinitionChanged",
    "Warehouse",
    "column_name",
    "open_warehouse",
    "report_schema",
]
