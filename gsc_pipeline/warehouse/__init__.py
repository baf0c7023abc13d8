"""Storing partitions and the fetch ledger: DuckDB (embedded default), PostgreSQL, or any
backend registered in `warehouse.registry`."""

from __future__ import annotations

import os
from pathlib import Path

from gsc_pipeline.constants import WAREHOUSE_URL_ENV
from gsc_pipeline.warehouse.base import (
    LEDGER_SCHEMA,
    LEDGER_TABLE,
    Connection,
    PartitionBatch,
    ReportDefinitionChanged,
    TableDescription,
    Warehouse,
    WarehouseUrlError,
    as_day,
    column_name,
    report_schema,
)
from gsc_pipeline.warehouse.registry import (
    BACKENDS,
    backend_for_url,
    open_warehouse,
    parse_warehouse_url,
    redact_url,
    register_backend,
)


def default_warehouse_url() -> str:
    """The embedded default: a DuckDB file in $DAGSTER_HOME (else the working directory)."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd())
    return f"duckdb:///{(home / 'gsc_warehouse.duckdb').resolve()}"


def warehouse_url() -> str:
    """$GSC_WAREHOUSE_URL, checked (a typo must not become a DuckDB file of that name), else the
    DuckDB file in $DAGSTER_HOME."""
    url = os.environ.get(WAREHOUSE_URL_ENV)
    if url:
        backend_for_url(url)
    return url or default_warehouse_url()


__all__ = [
    "BACKENDS",
    "LEDGER_SCHEMA",
    "LEDGER_TABLE",
    "WAREHOUSE_URL_ENV",
    "Connection",
    "PartitionBatch",
    "ReportDefinitionChanged",
    "TableDescription",
    "Warehouse",
    "WarehouseUrlError",
    "as_day",
    "backend_for_url",
    "column_name",
    "default_warehouse_url",
    "open_warehouse",
    "parse_warehouse_url",
    "redact_url",
    "register_backend",
    "report_schema",
    "warehouse_url",
]
