"""PostgreSQL warehouse: production.

Bulk loads go through COPY FROM STDIN in PostgreSQL's binary format, encoded from the Arrow
columns by pgpq (Rust): values exactly as typed (NULL and '' distinct, doubles bit for bit) and
no text to parse. Against CSV (Arrow's C++ writer) it took a 300,000-row load from 0.9-1.1 to
0.4-0.45 µs/row of the client's CPU and from 3.6-5.5 to 2.1-3.6 of the server's
(`scripts/measure_copy_format.py`).
Writers of the same partition (table, site, day) serialise on `pg_advisory_xact_lock` at the
start of their transaction, so two runs of one partition leave exactly one copy; writers of other
days do not wait for each other.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pgpq
import psycopg2
import pyarrow as pa

from gsc_pipeline.warehouse.base import INSTANT_TYPE, Connection, Cursor, Warehouse

if TYPE_CHECKING:
    import pandas as pd

# COPY's input is encoded this many rows at a time (~1 MB); pgpq hands its output out in pieces
# of ~1 MB, which reads of up to 8 MB pass on whole.
_COPY_SLICE_ROWS = 8192
_COPY_READ_BYTES = 8 << 20
# Two-key advisory lock namespaces (the first key); the second is a hash of the names.
_SCHEMA_LOCK = 7_470_001
# Session settings of the pipeline's connections (the URL's own `options` follow and win).
# The proofs group a step's rows by their natural key (1.8 M rows for 30 days of a 60,000-row
# property): with the default 4 MB the planner sorts them in parallel, spilling to disk, for
# 12.75-12.99 s of server CPU; with 32 MB it hashes them in one process for 3.84-3.98 s
# (scripts/measure_pg_proof_query.py). Parallel workers stay off so a proof never takes every
# core of the server from the writers.
SESSION_OPTIONS = "-c work_mem=32MB -c max_parallel_workers_per_gather=0"
# Connections kept between transactions, per warehouse object (a step's threads share it). A new
# one per transaction was a backend forked and initialized on the server each time: ~300 a
# 30-day run, 13 now (`scripts/profile_run_worker.py --warehouse postgres`; docs/bench, issue
# 14 stop 30). At most this many wait idle; one idle longer than `_IDLE_SECONDS` is closed
# instead of used (a server or pooler may have dropped it). Not psycopg2.pool: its pools raise
# when every connection is taken, where a busy step should open one more.
_MAX_IDLE = 8
_IDLE_SECONDS = 60.0
# SQLSTATEs of a connection the server ended: admin_shutdown (restart, pg_terminate_backend),
# crash_shutdown, cannot_connect_now (starting up); class 08 is "connection exception".
_SERVER_ENDED = ("57P01", "57P02", "57P03")
# Connection failures without a SQLSTATE that another attempt cannot fix.
_PERMANENT_CONNECT = ("authentication failed", "does not exist", "no password supplied")


def qmark_to_pyformat(sql: str) -> str:
    """`?` placeholders -> `%s`, literal `%` -> `%%`; `?` inside quotes stays as written."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append("%%" if ch == "%" else ch)
    return "".join(out)


class PostgresConnection(Connection):
    dialect = "postgres"
    code_point_order = ' COLLATE "C"'

    def __init__(self, con: Any) -> None:
        self._con = con

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        cur = self._con.cursor()
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(qmark_to_pyformat(sql), tuple(params))
        return cur

    def read_sql(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        import pandas as pd

        cur = self.execute(sql, params)
        columns = [d.name for d in cur.description]
        return pd.DataFrame.from_records(cur.fetchall(), columns=columns)

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        columns = ", ".join(data.column_names)
        with self._con.cursor() as cur:
            cur.copy_expert(
                f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT binary)",
                _CopyStream(data),
                size=_COPY_READ_BYTES,
            )


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with dictionary-encoded columns as their values' type (what COPY stores)."""
    return pa.schema(
        field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field
        for field in schema
    )


class _CopyStream:
    """`data` in COPY's binary format, encoded a slice of rows at a time as COPY reads it: the
    whole group's input (~100 bytes a row: ~6 MB per day of the standard bench's large property)
    is never held at once. psycopg2's `copy_expert` calls `read(size)` until it returns b"".

    What the encoder hands out (~1 MB) is returned as pgpq made it when it fits in `size`, without
    a copy. Gathered in a bytearray and cut to 1 MB reads, each megabyte was copied three more
    times into fresh pages (docs/bench/README.md, issue 14 stop 34).
    """

    def __init__(self, data: pa.Table, rows_per_slice: int = _COPY_SLICE_ROWS) -> None:
        self._schema = _plain_schema(data.schema)
        try:
            self._encoder = pgpq.ArrowToPostgresBinaryEncoder(self._schema)
        except ValueError as exc:
            raise TypeError(f"columns PostgreSQL's binary COPY cannot take: {exc}") from exc
        self._batches = iter(data.to_batches(max_chunksize=rows_per_slice))
        self._pending: bytes = self._encoder.write_header()  # what is left of the last encoding
        self._finished = False

    def _next_encoding(self) -> bytes:
        """What the encoder hands out next (it holds slices back until it has ~1 MB), what it
        held with the trailer after the last slice, then b""."""
        while not self._finished:
            if (batch := next(self._batches, None)) is None:
                self._finished = True
                return self._encoder.finish()
            if batch.num_rows and (encoded := self._encoder.write_batch(batch.cast(self._schema))):
                return encoded
        return b""

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            rest = [self._pending, *iter(self._next_encoding, b"")]
            self._pending = b""
            return b"".join(rest)
        if not self._pending:
            self._pending = self._next_encoding()
        if len(self._pending) <= size:
            chunk, self._pending = self._pending, b""
        else:
            chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk


class PostgresWarehouse(Warehouse):
    dialect = "postgres"
    url_form = "postgresql://user:password@host:5432/database"
    sql_types = {
        pa.string(): "VARCHAR",
        pa.date32(): "DATE",
        pa.float64(): "DOUBLE PRECISION",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.bool_(): "BOOLEAN",
        pa.timestamp("us"): "TIMESTAMP",
        INSTANT_TYPE: "TIMESTAMPTZ",
    }
    unwritable_hint = "check the server is up, the database exists and the user may CREATE TABLE"

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema
        url_options = psycopg2.extensions.parse_dsn(url).get("options", "")
        self._session_options = {"options": f"{SESSION_OPTIONS} {url_options}".strip()}
        self._idle: list[tuple[float, Any]] = []  # (returned at, connection), newest last
        self._idle_lock = threading.Lock()
        self._idle_pid = os.getpid()

    @contextmanager
    def transaction(self) -> Iterator[PostgresConnection]:
        """One transaction on a kept connection (or a new one): committed, or rolled back.

        Only a connection that ended its transaction cleanly is kept. The transaction's
        settings are `SET LOCAL`; temporary tables outlive it on a kept connection, so their
        users drop them before creating them (lifetime stats do).
        """
        con = self._take()
        try:
            conn = PostgresConnection(con)
            if self.schema:
                conn.execute(f"SET LOCAL search_path TO {self.schema}")
            yield conn
            con.commit()
        except BaseException as exc:
            # A connection the server ended cannot roll back (the server already did): trying
            # would replace the real error with "connection already closed".
            if not con.closed:
                con.rollback()
            if self._is_connection_error(exc):
                con.close()
                self._close_idle()  # a restarted server ended the kept ones too
            else:
                self._give_back(con)  # rolled back: as good as new
            raise
        self._give_back(con)

    def _take(self) -> Any:
        now = time.monotonic()
        with self._idle_lock:
            if self._idle_pid != os.getpid():
                # A forked child forgets its parent's connections, never closing one: that
                # would end the parent's session on their shared socket (tests/test_warehouse.py).
                self._idle, self._idle_pid = [], os.getpid()
            while self._idle:
                returned, con = self._idle.pop()
                if now - returned <= _IDLE_SECONDS and not con.closed:
                    return con
                con.close()
        return psycopg2.connect(self.url, **self._session_options)

    def _give_back(self, con: Any) -> None:
        # Closed first: asking a closed connection its status raises, hiding the caller's error.
        idle = (
            not con.closed
            and con.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        )
        with self._idle_lock:
            if idle and len(self._idle) < _MAX_IDLE:
                self._idle.append((time.monotonic(), con))
                return
        con.close()

    def _close_idle(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for _, con in idle:
            con.close()

    @classmethod
    def url_target(cls, url: str) -> str | None:
        return url if url.startswith(("postgresql://", "postgres://")) else None

    def _is_connection_error(self, exc: BaseException) -> bool:
        # Not constraint, syntax or other SQL errors (ProgrammingError, IntegrityError...), and
        # not OperationalErrors about the SQL (deadlock, canceled statement, disk full).
        if isinstance(exc, psycopg2.InterfaceError):  # the connection was already closed
            return True
        if not isinstance(exc, psycopg2.OperationalError):
            return False
        if exc.pgcode is None:  # libpq's own: refused, reset, server closed the connection
            return not any(text in str(exc) for text in _PERMANENT_CONNECT)
        return exc.pgcode.startswith("08") or exc.pgcode in _SERVER_ENDED

    def _lock_schema(self, conn: Connection) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in pg_type; take turns.
        conn.execute("SELECT pg_advisory_xact_lock(?, 0)", (_SCHEMA_LOCK,))
        if self.schema:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")

    def lock(self, conn: Connection, name: str, key: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(?), hashtext(?))", (name, key))

    def row_hash_sql(self, columns: Sequence[str]) -> str:
        # Each column hashed with its own seed and the hashes XORed, so no text is built per
        # row. A NULL hashes as its seed; collisions are the caller's exact comparison's.
        return " # ".join(
            f"coalesce(hashtextextended(CAST({c} AS TEXT), {seed}), {seed})"
            for seed, c in enumerate(columns)
        )

    def index(self, conn: Connection, table: str, columns: tuple[str, ...]) -> None:
        name = f"{table}_{'_'.join(columns)}_idx"
        # Looked up first: CREATE INDEX IF NOT EXISTS takes SHARE on the table before it sees
        # the index, so it waits behind every open write, and every later write queues behind
        # it. Every sync starts with ensure_schema, so on a busy warehouse that stalled all the
        # writers of a backfill for seconds at a time (docs/bench, issue 14 stop 23).
        if conn.execute("SELECT to_regclass(?)", (name,)).fetchone()[0] is None:
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(columns)})")

    def refresh_statistics(self, tables: Iterable[str]) -> None:
        """ANALYZE the tables never analyzed or with over a tenth of their rows written since.

        Autovacuum analyzes a table minutes after a bulk load, if at all while it goes on, so a
        backfill's proofs were planned on a freshly loaded table as if it held a few dozen rows:
        a sort of 1.8 M rows by their text key, 12.4 s, instead of the 3.7-s hash a 0.3-s
        ANALYZE lets the planner choose (docs/bench, issue 14 stop 23).
        """
        names = list(dict.fromkeys(tables))

        def analyze(conn: Connection) -> None:
            stale = conn.execute(
                "SELECT relname FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname = ANY(?) "
                "AND (COALESCE(last_analyze, last_autoanalyze) IS NULL "
                "OR n_mod_since_analyze > 0.1 * GREATEST(n_live_tup, 1))",
                (names,),
            ).fetchall()
            for (table,) in stale:
                conn.execute(f"ANALYZE {table}")

        self.run_transaction(analyze, f"analyzing {', '.join(names)}")

    def __repr__(self) -> str:
        return f"PostgresWarehouse({self.url.split('@')[-1]!r})"
