"""DuckDB file warehouse: the embedded default.

DuckDB itself runs in one writer process per Dagster instance (`warehouse.duckdb_writer`), which
every process using the warehouse sends its transactions to; `GSC_DUCKDB_WRITER=inline` runs it
in the calling process, as the writer does. What follows is how the writer (or an inline process)
uses the file.

DuckDB lets one process at a time open a file for writing, so every operation attaches the file,
does its work in one transaction and detaches it again (which checkpoints and releases the
file's lock): another process waits for the lock with backoff instead of failing. The writer
process keeps the file attached from one transaction to the next while they keep coming
(`LINGER_SECONDS`, `HOLD_SECONDS`). Inside one process the threads share a lock per file, so
concurrent partition writes never meet as conflicting DuckDB transactions.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import tenacity

from gsc_pipeline.warehouse import duckdb_writer
from gsc_pipeline.warehouse.base import INSTANT_TYPE, Connection, Cursor, Warehouse

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

# `duckdb` is imported on first use, not with this module: every process registers this backend
# (the registry), and one writing to PostgreSQL would carry DuckDB's ~16 MB for nothing.

# Where DuckDB runs: "process" (its writer process, the default) or "inline" (this process).
WRITER_ENV = "GSC_DUCKDB_WRITER"
WRITER_MODES = ("process", "inline")
# The writer passes rows in memfd files, which only Linux has.
_DEFAULT_WRITER = "process" if sys.platform == "linux" else "inline"

# Waiting for another process's write: fine-grained at first, up to this long in total.
LOCK_WAIT_SECONDS = 300.0

# duckdb.connect(config=...) of the in-memory host database. One thread: DuckDB hands every
# statement to its worker pool, and the pipeline's transactions are many short statements;
# waking the other worker for each cost more than it added: the writer's CPU over a 30-day run
# -19% (4 pairs), a small sync's -15%, a full lifetime recompute the same wall on 2 cores
# (docs/bench/README.md, issue 14 stops 41-42). checkpoint_threshold 1GB: no checkpoint inside
# a COMMIT once the write-ahead log passes DuckDB's 16 MB; the writer process checkpoints when
# it detaches the file (idle for LINGER_SECONDS or held HOLD_SECONDS), so the log holds at most
# a few seconds of writes. Each checkpoint compresses the tables' partial last row groups again,
# and a backfill's small commits (the small properties' days, the ledger) kept triggering them:
# a standard backfill's writer work replayed (scripts/measure_duckdb_writer.py) ~5% less CPU,
# within the machine's noise (interleaved, median 10.45 -> 9.88 CPU s; docs/bench/README.md,
# stop 46). memory_limit 64-128MB and preserve_insertion_order=false changed neither CPU nor
# peak RSS beyond noise; group commit (Warehouse.write_partitions) is what cut the write cost
# (5.8 -> ~2 µs/row).
CONNECT_CONFIG: dict[str, Any] = {"threads": 1, "checkpoint_threshold": "1GB"}

# The host database's own name (the file is attached beside it under the file's stem).
_HOST = "gsc_pipeline_host"
# What a file being created is attached as (`DuckDBWarehouse._create_file`).
_NEW = "gsc_pipeline_new_file"
# Names DuckDB keeps for itself; a file of that stem is named `<stem>_db`, as duckdb.connect does.
_RESERVED = ("main", "system", "temp")

# DuckDB's writer process keeps a file attached after a transaction for the next one, until
# none came for LINGER_SECONDS. An attach and a detach (its checkpoint, ~2.5 ms per table the
# transaction changed) per transaction were a third of the writer's CPU on a bench slice of
# small syncs (docs/bench/README.md, stop 39). After HOLD_SECONDS attached it detaches at the
# end of the transaction then running, so that other programs get a turn on the file.
LINGER_SECONDS = 1.0
HOLD_SECONDS = 5.0
# Options of the file's ATTACH, none: scripts/measure_duckdb_writer.py sets e.g.
# " (ROW_GROUP_SIZE 32768)" for a replay's variant.
_ATTACH_OPTIONS = ""

_files: dict[str, _File] = {}
_files_guard = threading.Lock()
_arrow_names = itertools.count()


class _File:
    """One DuckDB file in this process: the lock its transactions take turns on, and the
    warehouse object that still has it attached after its last transaction (`linger`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holder: DuckDBWarehouse | None = None
        self.held_since = 0.0
        self.idle_since = 0.0
        self._lingering = threading.Event()
        self._detacher: threading.Thread | None = None

    def linger(self, warehouse: DuckDBWarehouse) -> None:
        """`warehouse` keeps the file attached (called under `lock`, at a transaction's end);
        a thread detaches it once no transaction has come for its `linger_seconds`."""
        self.holder, self.idle_since = warehouse, time.monotonic()
        if self._detacher is None:
            self._detacher = threading.Thread(
                target=self._detach_when_idle, name="duckdb-detach", daemon=True
            )
            self._detacher.start()
        self._lingering.set()

    def _detach_when_idle(self) -> None:
        while True:
            self._lingering.wait()
            self._lingering.clear()
            while True:
                with self.lock:
                    holder = self.holder
                    if holder is None:
                        break
                    wait = self.idle_since + holder.linger_seconds - time.monotonic()
                    if wait <= 0:
                        with contextlib.suppress(Exception):  # _detach closed the host
                            holder.let_go(self)
                        break
                time.sleep(wait)


def _file(path: str) -> _File:
    with _files_guard:
        return _files.setdefault(path, _File())


def release_file(path: str) -> None:
    """Detach the file at `path` now if an object of this process keeps it attached after its
    last transaction (whichever schema it serves)."""
    file = _file(path)
    with file.lock:
        if file.holder is not None:
            file.holder.let_go(file)


def _is_lock_conflict(exc: BaseException) -> bool:
    import duckdb

    return isinstance(exc, duckdb.IOException) and "Could not set lock" in str(exc)


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBConnection(Connection):
    dialect = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        return self._con.execute(sql, params)

    def read_sql(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        return self._con.execute(sql, params).df()

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        view = f"_arrow_batch_{next(_arrow_names)}"
        columns = ", ".join(data.column_names)
        self._con.register(view, data)
        try:
            self._con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {view}")
        finally:
            self._con.unregister(view)


class DuckDBWarehouse(Warehouse):
    dialect = "duckdb"
    url_form = (
        "duckdb:///absolute/path/warehouse.duckdb (a DuckDB file; a bare absolute path ending "
        "in .duckdb works too)"
    )
    sql_types = {
        pa.string(): "VARCHAR",
        pa.date32(): "DATE",
        pa.float64(): "DOUBLE",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.bool_(): "BOOLEAN",
        pa.timestamp("us"): "TIMESTAMP",
        INSTANT_TYPE: "TIMESTAMPTZ",
    }
    unwritable_hint = (
        "check the directory exists and is writable and no other program holds the file"
    )
    # Two of DuckDB's row groups (122,880 rows each). A commit smaller than a row group goes
    # through the WAL, and the detach's checkpoint compresses the table's partial last row
    # group again, every commit. The large property's 60,000-row days (30, time scale 1): the
    # checkpoints cost 0.67-1.41 CPU s committing whatever was ready, 0.03-0.11 waiting for two
    # row groups (4 days, `linger_days`) (scripts/measure_group_commit.py; docs/bench/README.md,
    # stop 22).
    group_commit_rows = 2 * 122_880

    def __init__(
        self,
        path: str | pathlib.Path,
        *,
        schema: str | None = None,
        lock_wait_seconds: float = LOCK_WAIT_SECONDS,
        writer: str | None = None,
        linger_seconds: float = 0.0,
    ):
        self.writer = writer or os.environ.get(WRITER_ENV) or _DEFAULT_WRITER
        if self.writer not in WRITER_MODES:
            raise ValueError(
                f"{WRITER_ENV}={self.writer!r} is not a DuckDB writer mode: set it to 'process' "
                "(DuckDB in one writer process, the default) or 'inline' (in this process)"
            )
        self.path = str(pathlib.Path(path).resolve())
        self.schema = schema
        self.lock_wait_seconds = lock_wait_seconds
        # 0: detach after every transaction. The writer process lingers (LINGER_SECONDS); an
        # inline process does not, as a process forked meanwhile would share the attached file.
        self.linger_seconds = linger_seconds
        self.lock_retries = 0
        stem = pathlib.Path(self.path).stem
        # The file's catalog name, as duckdb.connect(path) names it (describe_table shows it).
        self._catalog = f"{stem}_db" if stem in _RESERVED else stem
        self._host: duckdb.DuckDBPyConnection | None = None
        # The file's connection while it stays attached between transactions (_File.holder).
        self._held: duckdb.DuckDBPyConnection | None = None

    def _host_database(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB that the file is attached to, one transaction at a time.

        A new DuckDB database instance registers DuckDB's whole function catalog: ~20 ms of CPU,
        which a connect per transaction paid every time (~3 µs per row stored over a bench
        slice). ATTACH/DETACH costs ~1 ms and locks, checkpoints and releases the file exactly
        as connect/close did. The default `memory` database is dropped so that any file stem
        can be attached under its own name.
        """
        if self._host is None:
            import duckdb

            host = duckdb.connect(":memory:", config=dict(CONNECT_CONFIG))
            host.execute(f"ATTACH ':memory:' AS {_HOST}")
            host.execute(f"USE {_HOST}")
            host.execute("DETACH memory")
            self._host = host
        return self._host

    def _attach(self) -> duckdb.DuckDBPyConnection:
        """A connection with the file attached and in use (waiting out another process's lock)."""

        def count(_: tenacity.RetryCallState) -> None:
            self.lock_retries += 1

        def attach() -> duckdb.DuckDBPyConnection:
            con = self._host_database().cursor()
            try:
                self._create_file(con)
                con.execute(
                    f"ATTACH {_literal(self.path)} AS {_quoted(self._catalog)}{_ATTACH_OPTIONS}"
                )
            except BaseException:
                con.close()
                raise
            return con

        connect = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_lock_conflict),
            wait=tenacity.wait_random_exponential(multiplier=0.02, max=1.0),
            stop=tenacity.stop_after_delay(self.lock_wait_seconds),
            before_sleep=count,
            reraise=True,
        )
        con = connect(attach)
        try:
            con.execute(f"USE {_quoted(self._catalog)}")
        except BaseException:
            self._detach(con)
            raise
        return con

    def _create_file(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the file, if missing, as a whole DuckDB database: never half of one.

        DuckDB creates a missing file on ATTACH in three moves: open (creating it), lock, write
        the header. A second process attaching it in between finds the file, locks it first,
        reads no header and fails ("exists, but it is not a valid DuckDB database file"); the
        creator then fails to lock it, and the file stays empty: every later ATTACH fails too
        (`scripts/measure_file_creation.py`: 1 pair of processes in 300 with DuckDB on one
        thread). So an empty database is made under a name of this process's own and linked
        into place, which fails, harmlessly, if another process's got there first.
        """
        path = pathlib.Path(self.path)
        if path.exists():
            if path.stat().st_size == 0:
                raise OSError(
                    f"{path} is empty (0 bytes), not a DuckDB database: a creation that was cut "
                    "off. It holds no data: delete it and run again"
                )
            return
        new = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.new")
        try:
            con.execute(f"ATTACH {_literal(str(new))} AS {_NEW}")
            con.execute(f"DETACH {_NEW}")
            # FileExistsError: another process's is in place. Any other OSError: no hard links
            # on this file system, and DuckDB creates the file on ATTACH, as it always did.
            with contextlib.suppress(OSError):
                os.link(new, path)
        finally:
            new.unlink(missing_ok=True)
            pathlib.Path(f"{new}.wal").unlink(missing_ok=True)

    def _detach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Detach the file (checkpoint, release its lock); if that fails, drop the host."""
        try:
            con.execute(f"USE {_HOST}")
            con.execute(f"DETACH {_quoted(self._catalog)}")
            con.close()
        except BaseException:
            # Closing the whole in-memory database releases the file whatever state it is in.
            self._close_host()
            raise

    def close(self) -> None:
        """Close the in-memory host database, detaching the file if it is still attached."""
        file = _file(self.path)
        with file.lock:
            if file.holder is self:
                file.holder = None
            self._held = None
            self._close_host()

    def release(self) -> None:
        """Detach the file now if it is kept attached after the last transaction (the writer's
        LINGER_SECONDS): other programs can open it, and its checkpoint is done."""
        if self.writer == "process":
            duckdb_writer.release(self.path)
        else:
            release_file(self.path)

    def _close_host(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            host.close()

    def let_go(self, file: _File) -> None:
        """Detach the file this object kept attached after its last transaction (called under
        the file's lock: no transaction of this object is open)."""
        con, self._held = self._held, None
        file.holder = None
        if con is not None:
            self._detach(con)

    def transaction(self) -> AbstractContextManager[Connection]:
        if self.writer == "process":
            return duckdb_writer.transaction(self)
        return self._inline_transaction()

    def _is_connection_error(self, exc: BaseException) -> bool:
        """The writer process went away: it rolled back, and a new one takes the retry."""
        return isinstance(exc, duckdb_writer.WriterLost)

    def helper_cpu_seconds(self) -> float:
        """The writer process's CPU so far (0.0 inline, or while none is running)."""
        if self.writer != "process":
            return 0.0
        return duckdb_writer.writer_cpu_seconds(start=False)

    @contextmanager
    def _inline_transaction(self) -> Iterator[DuckDBConnection]:
        """The file attached (or still attached after this object's last transaction), one
        transaction, then detached, or kept attached for the next one (`linger_seconds`)."""
        file = _file(self.path)
        with file.lock:
            if file.holder is not None and file.holder is not self:
                file.holder.let_go(file)  # another object of this file (another schema)
            con, self._held = self._held, None
            file.holder = None
            if con is None:
                con = self._attach()
                file.held_since = time.monotonic()
            kept = False
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    if self.schema:
                        # DuckDB refuses to switch to a schema that does not exist yet.
                        con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                        con.execute(f"SET schema = '{self.schema}'")
                    yield DuckDBConnection(con)
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
                kept = self.linger_seconds > 0 and (
                    time.monotonic() - file.held_since < HOLD_SECONDS
                )
            finally:
                if kept:
                    self._held = con
                    file.linger(self)
                else:
                    self._detach(con)

    @classmethod
    def url_target(cls, url: str) -> str | None:
        """The file's absolute path. Only absolute: a relative path (or a typo) would silently
        become a DuckDB file of that name in whatever the working directory is."""
        if url.startswith("duckdb://"):
            path = url.removeprefix("duckdb://")
            if not path.strip("/"):
                raise ValueError("it names no DuckDB file")
            if not path.startswith("/"):
                raise ValueError("the DuckDB path must be absolute (three slashes: duckdb:///...)")
            return path
        if url.startswith("/") and url.endswith(".duckdb"):
            return url
        return None

    def local_files(self) -> list[pathlib.Path]:
        """The database file and its write-ahead log."""
        return [pathlib.Path(self.path), pathlib.Path(f"{self.path}.wal")]

    def _lock_schema(self, conn: Connection) -> None:
        """Nothing to do: the file lock already makes a DuckDB writer exclusive."""

    def lock(self, conn: Connection, name: str, key: str) -> None:
        """Nothing to do: the file lock already makes a DuckDB writer exclusive."""

    def row_hash_sql(self, columns: Sequence[str]) -> str:
        return f"hash({', '.join(columns)})"

    def index(self, conn: Connection, table: str, columns: tuple[str, ...]) -> None:
        """None: zone maps on `date` prune the delete, and an ART index slows bulk inserts."""

    def __repr__(self) -> str:
        return f"DuckDBWarehouse({self.path!r})"
