"""DuckDB's writer process: DuckDB itself runs in one process per Dagster instance and
installation, and every process that uses a DuckDB warehouse sends it its transactions.

Why a process of its own: DuckDB lets one process at a time open a file for writing anyway, so
the runs of a backfill already took turns on the file; but each of them also loaded DuckDB's
library (~40 MB of its code pages), built an in-memory host database and catalog, and kept
DuckDB's working memory: ~90 MB more per run process than a PostgreSQL run (docs/bench/README.md,
issue 14 stops 36-38). In the writer process that is paid once, whatever the number of runs.

What stays the same: every transaction is `DuckDBWarehouse`'s own inline transaction, and one
whose client dies (a terminated run) is rolled back. The writer keeps a file attached after a
transaction for the next one and detaches it (checkpoints and releases it) once none came for
`duckdb.LINGER_SECONDS` (1), or at a transaction's end once held `HOLD_SECONDS` (5): other
programs open the file between bursts; `Warehouse.release()` detaches it at once. The
statements are the warehouse's own (`Connection`): the client sends SQL and parameters and gets
the rows back; it writes an Arrow table as an Arrow IPC stream into an anonymous shared-memory
file (memfd) whose descriptor it passes, and the writer inserts the columns where they are
mapped (measured: 0.15 µs/row more than inline, where copies through the socket cost 0.7).

Lifecycle: the first client to find no writer starts one (under a file lock, so two never
start), in a session of its own so that it outlives the run that started it. Clients keep their
connections open between transactions; the writer exits once no client has been connected for
`GSC_DUCKDB_WRITER_IDLE_SECONDS` (10). The socket is in a directory only this user can open
(`$XDG_RUNTIME_DIR` or the temporary directory), named after the Dagster instance
(`$DAGSTER_HOME`), the Python and the installation: a deployment's processes share one writer
that ends after them (a stopped `gsc-pipeline ui` leaves nothing running), and two checkouts or
instances never share one (two writers of one file take turns on its lock, as processes did).

`GSC_DUCKDB_WRITER=inline` keeps DuckDB in the calling process (what the writer itself does,
and the default off Linux: memfd is Linux's).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import select
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from multiprocessing import connection as mpc
from multiprocessing import reduction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from gsc_pipeline.warehouse.base import Connection

if TYPE_CHECKING:
    import pandas as pd

    from gsc_pipeline.warehouse.duckdb import DuckDBWarehouse

# What the writer process runs (`python -m`).
SERVER_MODULE = "gsc_pipeline.warehouse.duckdb_server"
IDLE_ENV = "GSC_DUCKDB_WRITER_IDLE_SECONDS"
DEFAULT_IDLE_SECONDS = 10.0
# How long a client waits for a writer it started to listen.
START_TIMEOUT_SECONDS = 60.0
# Files whose in-memory host database the writer keeps between transactions (each holds
# DuckDB's catalog, ~20-30 MB); the least recently used beyond these are closed.
MAX_HOSTS = 4
# The longest Unix socket path Linux takes (sun_path is 108 bytes with its terminating NUL).
_MAX_SOCKET_PATH = 107
# Idle connections a client process keeps for its next transactions.
MAX_IDLE_CONNECTIONS = 8


class DuckDBWriterError(RuntimeError):
    """A statement failed in DuckDB's writer process. What is raised is a subclass named as
    DuckDB's own exception was (`IOException`, `CatalogException`...), with its message."""

    kind = "Error"


@functools.cache
def _error_class(kind: str) -> type[DuckDBWriterError]:
    """DuckDB's exception class `kind`, as a DuckDBWriterError (DuckDB is not loaded here)."""
    return type(kind, (DuckDBWriterError,), {"kind": kind, "__module__": __name__})


class WriterLost(ConnectionError):
    """The connection to DuckDB's writer process broke: the writer rolled back whatever this
    transaction had done (`Warehouse.run_transaction` retries it on a new writer)."""


def runtime_dir() -> Path:
    """This user's directory for the writer's socket, readable by nobody else."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = Path(base) / f"gsc_pipeline-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077 or path.is_symlink():
        raise PermissionError(
            f"{path} is not a private directory of this user (owner {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):o}): remove it, or set XDG_RUNTIME_DIR to a directory "
            "only you can open"
        )
    return path


def socket_path() -> Path:
    """The writer's socket for this Dagster instance ($DAGSTER_HOME), this Python and this
    installation of gsc_pipeline: a deployment's processes (webserver, daemon, code servers,
    runs) share one writer, which ends with them."""
    package = Path(__file__).resolve().parents[1]
    home = os.environ.get("DAGSTER_HOME")
    home = os.path.abspath(home) if home else ""
    key = hashlib.sha256(f"{sys.executable}\0{package}\0{home}".encode()).hexdigest()[:16]
    path = runtime_dir() / f"duckdb-writer-{key}.sock"
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise OSError(
            f"the DuckDB writer's socket path {path} is longer than a Unix socket allows "
            f"({_MAX_SOCKET_PATH} bytes): set XDG_RUNTIME_DIR to a shorter directory"
        )
    return path


@contextlib.contextmanager
def start_lock(sock: Path) -> Iterator[None]:
    """Held while a writer starts or stops: never two writers on one socket."""
    with open(sock.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Pool:
    """This process's idle connections to the writer (none are inherited by a fork)."""

    def __init__(self) -> None:
        self.idle: list[mpc.Connection] = []
        self.lock = threading.Lock()

    def take(self, start: bool = True) -> tuple[mpc.Connection, bool]:
        """A connection, and whether it was idle in the pool (its writer may have gone).
        Without `start`, FileNotFoundError or ConnectionRefusedError if no writer runs."""
        with self.lock:
            if self.idle:
                return self.idle.pop(), True
        return _connect(start), False

    def give_back(self, conn: mpc.Connection) -> None:
        with self.lock:
            if len(self.idle) < MAX_IDLE_CONNECTIONS:
                self.idle.append(conn)
                return
        conn.close()


_pool = _Pool()


def _forget_pool() -> None:
    # A forked child must not talk on its parent's sockets; the parent keeps them open.
    global _pool
    _pool = _Pool()


os.register_at_fork(after_in_child=_forget_pool)


def _connect(start: bool = True) -> mpc.Connection:
    """A new connection to the writer, started first if none runs and `start` is true."""
    sock = socket_path()
    try:
        return mpc.Client(str(sock), family="AF_UNIX")
    except (FileNotFoundError, ConnectionRefusedError):
        if not start:
            raise
    with start_lock(sock):
        with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
            return mpc.Client(str(sock), family="AF_UNIX")
        _start_writer(sock)
        return mpc.Client(str(sock), family="AF_UNIX")


def _start_writer(sock: Path) -> None:
    """Start a writer on `sock` and wait until it listens (the caller holds the start lock)."""
    sock.unlink(missing_ok=True)  # a writer that died without removing it
    log = sock.with_suffix(".log")
    ready_read, ready_write = os.pipe()
    try:
        with open(log, "ab") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", SERVER_MODULE, str(sock), str(ready_write)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                pass_fds=(ready_write,), start_new_session=True, close_fds=True,
            )  # fmt: skip
        os.close(ready_write)
        ready_write = -1
        readable, _, _ = select.select([ready_read], [], [], START_TIMEOUT_SECONDS)
        if readable and os.read(ready_read, 1) == b"1":
            return
    finally:
        os.close(ready_read)
        if ready_write >= 0:
            os.close(ready_write)
    proc.kill()
    tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
    raise RuntimeError(
        f"DuckDB's writer process did not start within {START_TIMEOUT_SECONDS:.0f} s "
        f"(exit code {proc.poll()}); its log {log} ends: {' | '.join(tail) or '(empty)'}. "
        "Set GSC_DUCKDB_WRITER=inline to use DuckDB in this process instead"
    )


def _call(conn: mpc.Connection, message: tuple[Any, ...], fd: int | None = None) -> Any:
    """Send one request (and a file descriptor); the writer's answer, or its error raised."""
    try:
        conn.send(message)
        if fd is not None:
            reduction.send_handle(conn, fd, None)
        status, *answer = conn.recv()
    except (OSError, EOFError) as exc:
        conn.close()
        raise WriterLost(
            f"the connection to DuckDB's writer process broke ({type(exc).__name__}: {exc}); "
            "it rolled back this transaction"
        ) from exc
    if status == "error":
        kind, message = answer
        raise _error_class(kind)(message)
    return answer[0] if answer else None


class _Result:
    """A statement's rows, fetched by the writer (DB-API's fetchall/fetchone and column names)."""

    def __init__(self, names: list[str] | None, rows: list[tuple[Any, ...]]) -> None:
        self.description = None if names is None else [(n, *(None,) * 6) for n in names]
        self._rows = rows
        self._next = 0

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._next = self._rows[self._next :], len(self._rows)
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]


class WriterConnection(Connection):
    """One transaction in the writer process."""

    dialect = "duckdb"

    def __init__(self, conn: mpc.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Result:
        names, rows = _call(self._conn, ("execute", sql, None if params is None else list(params)))
        return _Result(names, rows)

    def read_sql(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        # The answer is a pickled DataFrame: unpickling it imports pandas.
        return _call(self._conn, ("read_sql", sql, None if params is None else list(params)))

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        """The rows go as one Arrow IPC stream in an anonymous shared-memory file, whose
        descriptor the writer receives and maps: no copy through the socket, none in this
        process's memory (its pages are the file's), the writer reads the columns in place."""
        fd = os.memfd_create("gsc-arrow-rows", os.MFD_CLOEXEC)
        try:
            with (
                pa.OSFile(f"/proc/self/fd/{fd}", "wb") as sink,
                pa.ipc.new_stream(sink, data.schema) as stream,
            ):
                stream.write_table(data)
            _call(self._conn, ("insert", table), fd=fd)
        finally:
            os.close(fd)


def _first_call(
    message: tuple[Any, ...], start: bool = True, fresh_tries: int = 2
) -> tuple[mpc.Connection, Any]:
    """A connection and the answer to `message`, its first request. A connection that breaks
    before answering it (nothing was done on it) is replaced: an idle one whose writer has
    since gone (with the other idle ones), or a new one that a writer ending as it connected
    dropped (once more). Without `start`, FileNotFoundError or ConnectionRefusedError if no
    writer runs."""
    conn, pooled = _pool.take(start)
    try:
        return conn, _call(conn, message)
    except WriterLost:
        if not pooled:
            fresh_tries -= 1
            if fresh_tries <= 0:
                raise
    except DuckDBWriterError:
        _pool.give_back(conn)
        raise
    close_idle_connections()  # they led to the same writer
    return _first_call(message, start, fresh_tries)


@contextlib.contextmanager
def transaction(warehouse: DuckDBWarehouse) -> Iterator[WriterConnection]:
    """One transaction on `warehouse`'s file in the writer (started if none is running)."""
    conn, retries = _first_call(
        ("begin", warehouse.path, warehouse.schema, warehouse.lock_wait_seconds)
    )
    warehouse.lock_retries += retries
    try:
        yield WriterConnection(conn)
    except BaseException:
        with contextlib.suppress(WriterLost):  # a broken connection rolls back by itself
            _call(conn, ("rollback",))
            _pool.give_back(conn)
        raise
    try:
        _call(conn, ("commit",))
    finally:
        if not conn.closed:  # committed, or the commit failed and the writer rolled back
            _pool.give_back(conn)


def _request(message: tuple[Any, ...], start: bool) -> tuple[bool, Any]:
    """One request outside a transaction: (True, the answer), or (False, None) if no writer
    runs and `start` is false."""
    try:
        conn, answer = _first_call(message, start)
    except (FileNotFoundError, ConnectionRefusedError):
        return False, None
    _pool.give_back(conn)
    return True, answer


def _stats(start: bool) -> tuple[int, float] | None:
    """The writer's pid and CPU seconds; None if none is running and `start` is false."""
    _, stats = _request(("stats",), start)
    return stats


def release(path: str) -> None:
    """Have the writer detach the file at `path` now if it keeps it attached after its last
    transaction (`duckdb.LINGER_SECONDS`); nothing if no writer runs."""
    _request(("release", path), start=False)


def writer_cpu_seconds(start: bool = True) -> float:
    """The writer's CPU seconds so far (all its threads); 0.0 if none is running and `start`
    is false, else it is started."""
    stats = _stats(start)
    return stats[1] if stats else 0.0


def writer_pid(start: bool = True) -> int | None:
    """The writer's process id; None if none is running and `start` is false."""
    stats = _stats(start)
    return stats[0] if stats else None


def close_idle_connections() -> None:
    """Let go of this process's idle connections (the writer ends once nobody holds one)."""
    with _pool.lock:
        idle, _pool.idle = _pool.idle, []
    for conn in idle:
        conn.close()
