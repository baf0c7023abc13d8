"""Storing partitions and the fetch ledger: DuckDB (embedded default) or PostgreSQL."""

from __future__ import annotations

import os
import re
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
    column_name,
    report_schema,
)

_FORMS = (
    "use duckdb:///absolute/path/warehouse.duckdb (a DuckDB file; a bare absolute path ending "
    "in .duckdb works too) or postgresql://user:password@host:5432/database"
)


class WarehouseUrlError(ValueError):
    """The warehouse URL is neither a DuckDB file nor a PostgreSQL URL; nothing was opened."""


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def parse_warehouse_url(url: str) -> tuple[str, str]:
    """(dialect, target): ('postgres', url) or ('duckdb', absolute file path).

    Only these two forms: anything else (a relative path, `mysql://`, a typo) would otherwise
    silently become a DuckDB file of that name in the working directory.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return "postgres", url
    if url.startswith("duckdb://"):
        path = url.removeprefix("duckdb://")
        if not path.strip("/"):
            problem = "it names no DuckDB file"
        elif not path.startswith("/"):
            problem = "the DuckDB path must be absolute (three slashes: duckdb:///...)"
        else:
            return "duckdb", path
    elif url.startswith("/") and url.endswith(".duckdb"):
        return "duckdb", url
    elif match := re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url):
        problem = f"{match.group(1)!r} is not a supported warehouse"
    else:
        problem = "it is neither a URL nor an absolute path ending in .duckdb"
    raise WarehouseUrlError(f"{WAREHOUSE_URL_ENV}={redact_url(url)!r}: {problem}; {_FORMS}")


def default_warehouse_url() -> str:
    """The embedded default: a DuckDB file in $DAGSTER_HOME (else the working directory)."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd())
    return f"duckdb:///{(home / 'gsc_warehouse.duckdb').resolve()}"


def warehouse_url() -> str:
    """$GSC_WAREHOUSE_URL, checked (a typo must not become a DuckDB file of that name), else the
    DuckDB file in $DAGSTER_HOME."""
    url = os.environ.get(WAREHOUSE_URL_ENV)
    if url:
        parse_warehouse_url(url)
    return url or default_warehouse_url()


def open_warehouse(url: str, schema: str | None = None) -> Warehouse:
    """The warehouse at `url` (see `parse_warehouse_url`); a bad URL raises `WarehouseUrlError`.

    `schema`: the database schema holding the tables (created on first use), so several
    declarations can share one database without sharing tables; None: the default schema.
    """
    if schema is not None and not re.fullmatch(r"[a-z][a-z0-9_]*", schema):
        raise ValueError(f"warehouse schema {schema!r}: use lowercase letters, digits, underscores")
    dialect, target = parse_warehouse_url(url)
    if dialect == "postgres":
        from gsc_pipeline.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(target, schema)
    from gsc_pipeline.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse(target, schema=schema)


__all__ = [
    "LEDGER_SCHEMA",
    "LEDGER_TABLE",
    "WAREHOUSE_URL_ENV",
    "Connection",
    "PartitionBatch",
    "ReportDefinitionChanged",
    "TableDescription",
    "Warehouse",
    "WarehouseUrlError",
    "column_name",
    "default_warehouse_url",
    "open_warehouse",
    "parse_warehouse_url",
    "redact_url",
    "report_schema",
    "warehouse_url",
]
