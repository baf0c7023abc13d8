"""The warehouse interface and the schema every backend shares, derived from the report table.

Parameters in SQL given to `read_rows` / `read_sql` / `execute` use the qmark style (`?`,
positional) on both backends; Postgres gets them rewritten to `%s` (and literal `%` doubled)
outside quoted text.
"""

from __future__ import annotations

import abc
import datetime as dt
import functools
import logging
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import pyarrow as pa
import tenacity

from gsc_pipeline.reports import Report, column_name

if TYPE_CHECKING:
    import pandas as pd

LEDGER_TABLE = "gsc_fetch_ledger"
# What each (site, report) table holds: the report's identity when its rows were first written.
DEFINITIONS_TABLE = "gsc_report_definitions"
# An instant (TIMESTAMPTZ): the hour of hourly rows (keys carry the Pacific offset), sitemap times.
INSTANT_TYPE = pa.timestamp("us", tz="UTC")

T = TypeVar("T")
_LOG = logging.getLogger(__name__)

METRIC_COLUMNS = ("clicks", "impressions", "ctr", "position")

LEDGER_SCHEMA = pa.schema(
    [
        ("site_url", pa.string()),
        ("report", pa.string()),
        ("search_type", pa.string()),
        ("date", pa.date32()),
        ("start_row", pa.int32()),
        ("row_limit", pa.int32()),
        ("rows_returned", pa.int32()),
        ("clicks", pa.float64()),
        ("impressions", pa.float64()),
        ("data_state", pa.string()),
        ("first_incomplete_date", pa.date32()),
        ("fetched_at", pa.timestamp("us")),
        ("run_id", pa.string()),
        # Which shard of a day over Google's row cap the page belongs to ('' for the whole day;
        # `gsc_pipeline.sync.shards`): part of the batch key with search type and start row.
        ("shard", pa.string()),
        # The rows a sharded search-type day merged into at the report's grain (on each of its
        # pages); NULL when the day was one request, whose rows are stored as returned.
        ("merged_rows", pa.int32()),
    ]
)
# Ledger columns added after the first release, with the value rows written before them mean.
_LATER_LEDGER_COLUMNS = {"shard": "''", "merged_rows": "NULL"}

DEFINITIONS_SCHEMA = pa.schema(
    [("site_url", pa.string()), ("report", pa.string()), ("definition", pa.string())]
)


@dataclass(frozen=True)
class TableDescription:
    """A table as the warehouse itself reports it: where it lives and its columns."""

    # `database.schema.table` (a DuckDB file's database is the file's stem, e.g. `warehouse`).
    qualified_name: str
    # (name, SQL type as the backend names it), in the table's column order.
    columns: tuple[tuple[str, str], ...]


class WarehouseUrlError(ValueError):
    """The warehouse URL is no registered backend's (`warehouse.registry`); nothing was opened."""


class ReportDefinitionChanged(ValueError):
    """A report's table holds rows fetched under another definition (dimensions, filters...)."""


def report_schema(report: Report) -> pa.Schema:
    """Arrow schema of `report.table`: site, search type, date (the partition), the hour for
    hourly reports, dimensions, metrics."""
    return pa.schema(
        [
            ("site_url", pa.string()),
            ("search_type", pa.string()),
            ("date", pa.date32()),
            *([("hour", INSTANT_TYPE)] if report.hourly else []),
            *[(column_name(d), pa.string()) for d in report.dimensions],
            *[(m, pa.float64()) for m in METRIC_COLUMNS],
        ]
    )


# The columns every row of one request shares: its site, search type and day.
REQUEST_COLUMNS = ("site_url", "search_type", "date")


def batch_schema(report: Report) -> pa.Schema:
    """`report_schema` as fetched rows hold it until they are written: the request's columns
    dictionary-encoded, one byte a row instead of the site URL (or the day) on every row. A
    quarter of a page x query row's bytes (docs/bench/README.md, stop 25); both backends write
    them as the plain column. Also a page URL repeated per query (`repeated_columns`)."""
    schema = report_schema(report)
    for name in REQUEST_COLUMNS:
        field = schema.field(name)
        schema = schema.set(
            schema.get_field_index(name), pa.field(name, pa.dictionary(pa.int8(), field.type))
        )
    for name in repeated_columns(report):
        schema = schema.set(
            schema.get_field_index(name), pa.field(name, pa.dictionary(pa.int32(), pa.string()))
        )
    return schema


def repeated_columns(report: Report) -> tuple[str, ...]:
    """Dimension columns whose values repeat within a day's rows, dictionary-encoded as fetched
    (`batch_schema`): the page URL of page x ... rows, once per query (or country, device...).
    A 25,000-row page x query response of the standard bench: 1.18 MB of page text in 2.5 MB,
    0.37 MB encoded, 0.6 ms to encode (docs/bench/README.md, issue 14 stop 27). The page
    report itself has one row per page URL: not encoded."""
    if "page" in report.dimensions and len(report.dimensions) > 1:
        return (column_name("page"),)
    return ()


@dataclass(frozen=True)
class PartitionBatch:
    """Everything fetched for one partition (site_url, report, day): all its search types.

    `rows` follows `batch_schema(report)` (as fetched) or `report_schema(report)`, `ledger`
    follows `LEDGER_SCHEMA` (one row per page).
    """

    site_url: str
    report: Report
    day: dt.date
    rows: pa.Table
    ledger: pa.Table

    def __post_init__(self) -> None:
        expected = report_schema(self.report)
        if not (
            self.rows.schema.equals(expected) or self.rows.schema.equals(batch_schema(self.report))
        ):
            raise ValueError(
                f"{self.report.table} rows have schema {self.rows.schema}, expected {expected}"
            )
        if not self.ledger.schema.equals(LEDGER_SCHEMA):
            raise ValueError(f"ledger rows have schema {self.ledger.schema}")


def as_day(value: Any) -> dt.date:
    """A day as a backend or a DataFrame returns it (date, timestamp, text, numpy.datetime64)
    as a date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


class Cursor(Protocol):
    # DB-API: one sequence per result column, its name first.
    description: Sequence[Sequence[Any]] | None

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...


class Connection(abc.ABC):
    """A connection inside one transaction, the same on both backends (for proof, lifetime)."""

    dialect: str
    # Appended to a text expression in ORDER BY so that it sorts by code point, as Python does.
    # A Postgres database's collation may not (en_US puts "B" between "a" and "c").
    code_point_order: ClassVar[str] = ""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        """Run one statement with `?` parameters; the result has fetchall()/fetchone()."""

    def read_rows(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        """A query's result as named tuples (`row.date`), the columns named as the query names
        them. No pandas: what a fetch run reads (`gsc_pipeline.pandas_on_demand`)."""
        cur = self.execute(sql, params)
        row = _row_type(tuple(d[0] for d in cur.description or ()))
        return [row._make(values) for values in cur.fetchall()]

    @abc.abstractmethod
    def read_sql(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """A query's result as a DataFrame (imports pandas)."""

    @abc.abstractmethod
    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Bulk-append an Arrow table whose column names match `table`'s (DuckDB: Arrow scan;
        Postgres: COPY)."""


@functools.lru_cache(maxsize=512)
def _row_type(columns: tuple[str, ...]) -> type:
    """The named tuple of a query's columns, made once per column list: building the class
    (`namedtuple` compiles its methods) took ~1% of a fetch run's samples when every read
    built one (py-spy, docs/bench/README.md, issue 14 stop 32)."""
    return namedtuple("Row", columns)  # type: ignore[misc]  # noqa: PYI024  named by the query


class Warehouse(abc.ABC):
    """Report tables plus the fetch ledger. A backend (DuckDB, PostgreSQL...) is a subclass
    that owns everything that differs between databases: its URL form, its SQL types, its locks,
    its indexes, its connections; `warehouse.registry` lists the backends. Nothing outside this
    package asks which backend it has."""

    # The backend's name: the registry's key, and the assets' kind (`duckdb`, `postgres`).
    dialect: ClassVar[str]
    # How a URL of this backend is written (for the error that lists every backend's form).
    url_form: ClassVar[str]
    # Arrow type -> the backend's SQL type, for every column type the tables use.
    sql_types: ClassVar[Mapping[pa.DataType, str]]
    # What to check when connecting and writing fails (the doctor's advice).
    unwritable_hint: ClassVar[str]
    # Every transaction resolves unqualified table names in this schema (None: the default).
    schema: str | None = None
    # How long a whole transaction is retried on a lost connection (a server restart takes
    # seconds; a failover tens of them), and the first wait (doubling, jittered, <= 8 s).
    reconnect_for_seconds: float = 120.0
    reconnect_first_wait: float = 0.5
    # Rows a group commit is worth waiting for while more days are being fetched (0: write
    # whatever is ready). DuckDB sets it: a commit smaller than a row group pays a WAL write
    # and a checkpoint that compresses the table's partial last row group again.
    group_commit_rows: ClassVar[int] = 0

    @classmethod
    @abc.abstractmethod
    def url_target(cls, url: str) -> str | None:
        """What to open for `url` (a file path, a connection string), or None when `url` is
        not this backend's; a URL of this backend's that cannot work raises ValueError saying
        why (the registry adds the variable's name and every form)."""

    @classmethod
    def open(cls, target: str, schema: str | None = None) -> Warehouse:
        """The warehouse at `target` (what `url_target` returned)."""
        return cls(target, schema=schema)  # type: ignore[call-arg]

    def local_files(self) -> list[Path]:
        """The files on this machine the warehouse stores in (none for a server)."""
        return []

    def create_table_sql(self, table: str, schema: pa.Schema) -> str:
        """`CREATE TABLE IF NOT EXISTS` for an Arrow schema, in this backend's SQL types."""
        columns = ", ".join(f"{f.name} {self.sql_types[f.type]}" for f in schema)
        return f"CREATE TABLE IF NOT EXISTS {table} ({columns})"

    def ensure_schema(self, reports: Iterable[Report]) -> None:
        """Create the report tables and the ledger if missing (safe to run concurrently).

        Once per table for this object: a fetch step asks for its property's tables and then
        each report's sync for its own, and each time cost a transaction of catalog queries
        (DuckDB: ~10 ms, 6% of the bench's path; docs/bench/README.md, issue 14 stop 35).
        """
        wanted = [report for report in reports if report.table not in self._tables_ensured]
        if not wanted and LEDGER_TABLE in self._tables_ensured:
            return

        def create(conn: Connection) -> None:
            self._lock_schema(conn)
            for report in wanted:
                conn.execute(self.create_table_sql(report.table, report_schema(report)))
                self.index(conn, report.table, ("site_url", "date"))
            conn.execute(self.create_table_sql(LEDGER_TABLE, LEDGER_SCHEMA))
            self._add_later_ledger_columns(conn)
            self.index(conn, LEDGER_TABLE, ("site_url", "report", "date"))
            conn.execute(self.create_table_sql(DEFINITIONS_TABLE, DEFINITIONS_SCHEMA))

        self.run_transaction(create, "creating the tables")
        self._tables_ensured.update([LEDGER_TABLE, *(report.table for report in wanted)])

    @functools.cached_property
    def _tables_ensured(self) -> set[str]:
        """The tables `ensure_schema` has made sure of, for this object."""
        return set()

    def _add_later_ledger_columns(self, conn: Connection) -> None:
        """A ledger created by an older release gains the newer columns (checked first: an
        ALTER on Postgres locks the table out even when the column exists)."""
        present = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ?",
                (LEDGER_TABLE,),
            ).fetchall()
        }
        for name, default in _LATER_LEDGER_COLUMNS.items():
            if name not in present:
                sql_type = self.sql_types[LEDGER_SCHEMA.field(name).type]
                conn.execute(
                    f"ALTER TABLE {LEDGER_TABLE} ADD COLUMN {name} {sql_type} DEFAULT {default}"
                )

    def claim_report(self, site_url: str, report: Report) -> None:
        """Record what `report`'s rows for `site_url` mean, or refuse a changed definition.

        Filters, dimensions and aggregation are part of a report's identity: rows fetched under
        another definition must not share a table (and its checks) with the new ones. A
        definition no partition was written under (say its first fetch failed) is replaced.
        """

        def claim(conn: Connection) -> None:
            self.lock(conn, DEFINITIONS_TABLE, site_url)
            row = conn.execute(
                f"SELECT definition FROM {DEFINITIONS_TABLE} WHERE site_url = ? AND report = ?",
                (site_url, report.name),
            ).fetchone()
            if row is not None and row[0] == report.identity:
                return
            written = conn.execute(
                f"SELECT 1 FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ? LIMIT 1",
                (site_url, report.name),
            ).fetchone()
            if row is not None and written is not None:
                raise ReportDefinitionChanged(
                    f"{site_url} report {report.name!r}: {report.table} holds rows fetched as "
                    f"{row[0]}, but the config now declares {report.identity}. Dimensions, "
                    "filters and aggregation are part of a report's identity: give the changed "
                    "report a new name (a new table), or delete this site's rows from "
                    f"{report.table}, {LEDGER_TABLE} (report = {report.name!r}) and "
                    f"{DEFINITIONS_TABLE} to re-fetch it under the new definition"
                )
            conn.execute(
                f"DELETE FROM {DEFINITIONS_TABLE} WHERE site_url = ? AND report = ?",
                (site_url, report.name),
            )
            conn.execute(
                f"INSERT INTO {DEFINITIONS_TABLE} (site_url, report, definition) VALUES (?, ?, ?)",
                (site_url, report.name, report.identity),
            )

        self.run_transaction(claim, f"recording the definition of {report.name}")

    def run_transaction(self, work: Callable[[Connection], T], what: str) -> T:
        """`work` in one transaction; if the connection is lost, all of it again on a new one.

        Only for idempotent work (a replace, DDL, a read): a transaction cut by a lost
        connection is rolled back by the server, and one cut during COMMIT may have committed,
        so the retry must leave the same result either way. Never half a transaction: each
        attempt is a fresh connection and a fresh transaction running all of `work`.
        """

        def log(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _LOG.warning(
                f"{self!r}: connection lost while {what} ({type(exc).__name__}: {first_line}); "
                f"retrying the whole transaction on a new connection in "
                f"{state.upcoming_sleep:.1f} s (attempt {state.attempt_number}, for up to "
                f"{self.reconnect_for_seconds:.0f} s)"
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self._is_connection_error),
            wait=tenacity.wait_exponential_jitter(initial=self.reconnect_first_wait, max=8.0),
            stop=tenacity.stop_after_delay(self.reconnect_for_seconds),
            before_sleep=log,
            reraise=True,
        )
        for attempt in retrying:
            with attempt, self.transaction() as conn:
                return work(conn)
        raise AssertionError("unreachable: tenacity returns or reraises")

    def _is_connection_error(self, exc: BaseException) -> bool:
        """Whether `exc` means the connection itself failed (not the SQL): worth a new one."""
        return False

    def helper_cpu_seconds(self) -> float:
        """CPU seconds so far of the process on this machine that runs this warehouse's
        database for the pipeline's processes (DuckDB's writer), or 0.0 if there is none (yet):
        a measurement of the pipeline's CPU adds it. Never starts one. A database server
        (PostgreSQL) is not the pipeline's."""
        return 0.0

    def release(self) -> None:
        """Let other programs open the warehouse now and finish its deferred work: DuckDB's
        writer keeps a file attached a moment after a transaction, for the next one (its
        checkpoint comes when it detaches). Nothing to do on a database server."""
        return None

    def write_partitions(self, batches: Sequence[PartitionBatch]) -> None:
        """Replace several partitions in ONE transaction (group commit): all or none of them.

        Per partition it is the same delete + insert as a single write, so a partition is never
        partly written; batching only pays the connection, commit and (DuckDB) checkpoint once.
        """
        if not batches:
            return

        # A partition given twice is written as its last batch, as one write after another.
        latest = {(b.report.table, b.report.name, b.site_url, b.day): b for b in batches}

        def replace(conn: Connection) -> None:
            # One lock per partition: writers of other days of the same table and site (the
            # other runs of a backfill) go on at once. Sorted: two writers locking overlapping
            # sets cannot deadlock.
            for table, site_url, day in sorted({(t, s, d) for t, _, s, d in latest}):
                self.lock(conn, table, f"{site_url} {day.isoformat()}")
            # One delete per table, site (and report) for all its days: a statement's fixed
            # cost is paid once per group too.
            days: dict[tuple[str, str, str], list[dt.date]] = {}
            for table, report_name, site_url, day in latest:
                days.setdefault((table, report_name, site_url), []).append(day)
            for (table, report_name, site_url), group in days.items():
                marks = ", ".join("?" * len(group))
                conn.execute(
                    f"DELETE FROM {table} WHERE site_url = ? AND date IN ({marks})",
                    (site_url, *group),
                )
                conn.execute(
                    f"DELETE FROM {LEDGER_TABLE} WHERE site_url = ? AND report = ? "
                    f"AND date IN ({marks})",
                    (site_url, report_name, *group),
                )
            # One insert per table (and column layout) for the whole group, not one per
            # partition: a COPY's or an INSERT's fixed cost is paid once (docs/bench, issue 14
            # stop 31). The tables are chained, not copied.
            inserts: dict[tuple[str, pa.Schema], list[pa.Table]] = {}
            for batch in latest.values():
                if batch.rows.num_rows:
                    inserts.setdefault((batch.report.table, batch.rows.schema), []).append(
                        batch.rows
                    )
                if batch.ledger.num_rows:
                    inserts.setdefault((LEDGER_TABLE, LEDGER_SCHEMA), []).append(batch.ledger)
            for (table, _), tables in inserts.items():
                conn.insert_arrow(table, pa.concat_tables(tables))

        self.run_transaction(replace, f"writing {len(batches)} partition(s)")

    def replace_site_rows(
        self, table: str, schema: pa.Schema, site_url: str, rows: pa.Table
    ) -> None:
        """Replace one site's rows of a small unpartitioned table (a snapshot) in one
        transaction, creating the table if missing."""

        def replace(conn: Connection) -> None:
            self._lock_schema(conn)
            conn.execute(self.create_table_sql(table, schema))
            self.lock(conn, table, site_url)
            conn.execute(f"DELETE FROM {table} WHERE site_url = ?", (site_url,))
            if rows.num_rows:
                conn.insert_arrow(table, rows)

        self.run_transaction(replace, f"replacing {table} rows of {site_url}")

    def create_view(self, name: str, select_sql: str) -> None:
        """Create or replace the view `name` as `select_sql` (serialised with other DDL)."""

        def create(conn: Connection) -> None:
            self._lock_schema(conn)
            conn.execute(f"CREATE OR REPLACE VIEW {name} AS {select_sql}")

        self.run_transaction(create, f"creating the view {name}")

    def append_rows(self, table: str, schema: pa.Schema, rows: pa.Table) -> None:
        """Append rows to a small unpartitioned table (a log, e.g. restatements) in one
        transaction, creating the table if missing. A retry after a commit lost in flight can
        append the rows twice: readers of such a log take distinct rows."""

        def append(conn: Connection) -> None:
            self._lock_schema(conn)
            conn.execute(self.create_table_sql(table, schema))
            if rows.num_rows:
                conn.insert_arrow(table, rows)

        self.run_transaction(append, f"appending {rows.num_rows} row(s) to {table}")

    def read_rows(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        """Run a query with `?` parameters; its rows as named tuples (no pandas)."""
        return self.run_transaction(lambda conn: conn.read_rows(sql, params), "reading")

    def read_sql(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a query with `?` parameters and return its result as a DataFrame."""
        return self.run_transaction(lambda conn: conn.read_sql(sql, params), "reading")

    def missing_tables(self, tables: Iterable[str]) -> list[str]:
        """Which of `tables` do not exist yet (nothing fetched for that report or warehouse)."""
        wanted = list(dict.fromkeys(tables))
        present = self.read_rows(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()"
        )
        existing = {row.table_name for row in present}
        return [table for table in wanted if table not in existing]

    def describe_table(self, table: str) -> TableDescription:
        """`table`'s fully qualified name and columns, read from the warehouse's catalog (what
        is stored, not what the code meant to create); a missing table raises ValueError."""

        def read(conn: Connection) -> TableDescription:
            # current_database(): the DuckDB file's catalog or the Postgres database; the
            # schema is the one every transaction resolves unqualified names in.
            ((database, schema),) = conn.execute(
                "SELECT current_database(), current_schema()"
            ).fetchall()
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ? "
                "ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            qualified = f"{database}.{schema}.{table}"
            if not columns:
                raise ValueError(f"{qualified} does not exist (nothing was fetched into it yet)")
            return TableDescription(qualified, tuple((name, kind) for name, kind in columns))

        return self.run_transaction(read, f"describing {table}")

    @abc.abstractmethod
    def row_hash_sql(self, columns: Sequence[str]) -> str:
        """An SQL expression hashing `columns` (of any type) to 64 bits: rows equal on them
        hash equal. A screen only: rows it groups together are compared column by column."""

    def refresh_statistics(self, tables: Iterable[str]) -> None:
        """Bring the query planner's statistics of `tables` up to date where writes since the
        last analysis made them stale (before proofs read them); nothing where the backend
        needs no statistics (DuckDB keeps its own as it writes)."""
        return None

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection in a transaction: committed on normal exit, rolled back on error."""

    @abc.abstractmethod
    def _lock_schema(self, conn: Connection) -> None:
        """Serialise concurrent DDL inside `conn`'s transaction."""

    @abc.abstractmethod
    def lock(self, conn: Connection, name: str, key: str) -> None:
        """Until `conn`'s transaction ends, every other transaction locking the same (name,
        key) waits: writers of one partition (table, "site day"), refreshes of a derived table."""

    @abc.abstractmethod
    def index(self, conn: Connection, table: str, columns: tuple[str, ...]) -> None:
        """Index the partition-delete columns where the backend needs it."""
