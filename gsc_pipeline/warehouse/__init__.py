"""Storing partitions and the fetch ledger: DuckDB (embedded default) or PostgreSQL."""

from __future__ import annotations

import re

from gsc_pipeline.warehouse.base import (
    LEDGER_SCHEMA,
    LEDGER_TABLE,
    Connection,
    PartitionBatch,
    Warehouse,
    column_name,
    report_schema,
)


def open_warehouse(url: str, schema: str | None = None) -> Warehouse:
    """`postgresql://...` (or `postgres://`) -> Postgres; `duckdb:///path` or a path -> DuckDB.

    `schema`: the database schema holding the tables (created on first use), so several
    declarations can share one database without sharing tables; None: the default schema.
    """
    if schema is not None and not re.fullmatch(r"[a-z][a-z0-9_]*", schema):
        raise ValueError(f"warehouse schema {schema!r}: use lowercase letters, digits, underscores")
    if url.startswith(("postgresql://", "postgres://")):
        from gsc_pipeline.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(url, schema)
    from gsc_pipeline.warehouse.duckdb import DuckDBWarehouse

    path = url.removeprefix("duckdb://") if url.startswith("duckdb://") else url
    if not path or path == "/":
        raise ValueError(f"warehouse URL {url!r} names no DuckDB file; use duckdb:///path/file")
    return DuckDBWarehouse(path, schema=schema)


__all__ = [
    "LEDGER_SCHEMA",
    "LEDGER_TABLE",
    "Connection",
    "PartitionBatch",
    "Warehouse",
    "column_name",
    "open_warehouse",
    "report_schema",
]
