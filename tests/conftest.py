"""Shared fixtures: the emulator over real HTTP, DuckDB files and isolated Postgres schemas.

Postgres-backed tests run against GSC_TEST_POSTGRES_URL (default: the local `test` database).
In CI (`GSC_REQUIRE_POSTGRES=1`, set by .ci/run) a missing Postgres fails the run; on a user's
machine without Postgres those tests skip with a message saying how to enable them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

pytest_plugins = ["gsc_pipeline.emulator.pytest_plugin"]

# Search Console's date for the whole suite: the day these tests were last calibrated.
SUITE_TODAY = "2026-12-01"


def pytest_configure(config: pytest.Config) -> None:
    """Pin Search Console's date (`GSC_TODAY`) for the pipeline and the emulator, and let what
    the tests start stop on SIGTERM.

    Fixed-date tests (start_date 2026-01-01; the bundled declaration's 2026-09-01) would
    otherwise fall out of Google's 16-month window as the real calendar moves on. The variable
    reaches every emulator, Dagster daemon, code server and run worker the tests start.
    """
    from gsc_pipeline.constants import TODAY_ENV
    from gsc_pipeline.tools.daemon_host import stoppable_by_sigterm

    os.environ.setdefault(TODAY_ENV, SUITE_TODAY)
    # The code servers, daemons and UIs the tests start and stop must stop on SIGTERM even when
    # the suite itself was started with SIGINT ignored (in the background of a script, nohup).
    stoppable_by_sigterm()


POSTGRES_URL = os.environ.get(
    "GSC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_unavailable_reason() -> str | None:
    import psycopg2

    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        return f"PostgreSQL is not reachable at {POSTGRES_URL} ({str(exc).strip()})"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The server URL, or a skip (a failure in CI) when no PostgreSQL answers."""
    reason = _postgres_unavailable_reason()
    if reason:
        if os.environ.get("GSC_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}; CI requires it (start it, or unset GSC_REQUIRE_POSTGRES)")
        pytest.skip(f"{reason}; set GSC_TEST_POSTGRES_URL to run the Postgres tests")
    return POSTGRES_URL


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A Postgres URL whose search_path is a fresh schema, dropped after the test."""
    import psycopg2

    schema = f"gsc_test_{uuid.uuid4().hex[:12]}"
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options={quote(f'-csearch_path={schema}')}"
    conn = psycopg2.connect(postgres_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


@pytest.fixture
def duckdb_path(tmp_path) -> str:
    return str(tmp_path / "warehouse.duckdb")


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request):
    """An empty warehouse on each backend: a DuckDB file, then a fresh Postgres schema."""
    from gsc_pipeline.warehouse import open_warehouse

    backend = "duckdb_path" if request.param == "duckdb" else "postgres_schema_url"
    return open_warehouse(request.getfixturevalue(backend))


@pytest.fixture(autouse=True)
def _fresh_defs_state_storage() -> Iterator[None]:
    """Each test starts without a current Dagster defs-state storage.

    A Dagster instance entered by one test (or a module fixture) sets a context variable that
    can outlive it; a later test resolving definitions outside its own instance would then
    open that instance's deleted storage ("unable to open database file"). Internal API, tests
    only.
    """
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
