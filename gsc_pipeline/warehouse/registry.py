"""The warehouse backends, and opening one by URL.

A backend is one `Warehouse` subclass in its own module (its URL form, SQL types, locks,
connections); adding one is that module plus its line in `BUILT_IN`. `open_warehouse` asks each
registered backend in turn whether the URL is its own.
"""

from __future__ import annotations

import re

from gsc_pipeline.constants import IDENTIFIER_PATTERN, WAREHOUSE_URL_ENV
from gsc_pipeline.warehouse.base import Warehouse, WarehouseUrlError
from gsc_pipeline.warehouse.duckdb import DuckDBWarehouse
from gsc_pipeline.warehouse.postgres import PostgresWarehouse

BUILT_IN: tuple[type[Warehouse], ...] = (DuckDBWarehouse, PostgresWarehouse)
# By `dialect`, in registration order (the order URLs are tried and forms are listed in).
BACKENDS: dict[str, type[Warehouse]] = {}


def register_backend(backend: type[Warehouse]) -> type[Warehouse]:
    """Make `open_warehouse` open `backend`'s URLs (usable as a class decorator)."""
    BACKENDS[backend.dialect] = backend
    return backend


for _backend in BUILT_IN:
    register_backend(_backend)


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for messages and logs."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def backend_for_url(url: str) -> tuple[type[Warehouse], str]:
    """(backend, target) for `url`, or WarehouseUrlError naming the variable and every form.

    Only the registered forms: anything else (a relative path, `mysql://`, a typo) would
    otherwise silently become a DuckDB file of that name in the working directory.
    """
    problem = None
    for backend in BACKENDS.values():
        try:
            target = backend.url_target(url)
        except ValueError as exc:
            problem = str(exc)
            break
        if target is not None:
            return backend, target
    if problem is None:
        if match := re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url):
            problem = f"{match.group(1)!r} is not a supported warehouse"
        else:
            problem = "it is neither a URL nor an absolute path ending in .duckdb"
    forms = " or ".join(backend.url_form for backend in BACKENDS.values())
    raise WarehouseUrlError(f"{WAREHOUSE_URL_ENV}={redact_url(url)!r}: {problem}; use {forms}")


def parse_warehouse_url(url: str) -> tuple[str, str]:
    """(backend name, target), e.g. ('postgres', url) or ('duckdb', absolute file path)."""
    backend, target = backend_for_url(url)
    return backend.dialect, target


def open_warehouse(url: str, schema: str | None = None) -> Warehouse:
    """The warehouse at `url` (see `backend_for_url`); a bad URL raises `WarehouseUrlError`.

    `schema`: the database schema holding the tables (created on first use), so several
    declarations can share one database without sharing tables; None: the default schema.
    """
    if schema is not None and not re.fullmatch(IDENTIFIER_PATTERN, schema):
        raise ValueError(f"warehouse schema {schema!r}: use lowercase letters, digits, underscores")
    backend, target = backend_for_url(url)
    return backend.open(target, schema)
