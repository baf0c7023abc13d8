"""DuckDB's writer process (`python -m gsc_pipeline.warehouse.duckdb_server SOCKET READY_FD`):
what `gsc_pipeline.warehouse.duckdb_writer` starts and talks to.

A thread per connected client; each of the client's transactions is `DuckDBWarehouse`'s own
inline transaction (the file attached, or still attached from the last one, the work, COMMIT or
ROLLBACK; the file detached once idle, `duckdb.LINGER_SECONDS`), its statements run as the
client sends them. A client that goes away mid-transaction is rolled back. The process ends once
no client has been connected for `GSC_DUCKDB_WRITER_IDLE_SECONDS`.

With `GSC_DUCKDB_WRITER_RECORD=DIR` it also records what it runs (`_Recording`), for
`scripts/measure_duckdb_writer.py`.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing import connection as mpc
from multiprocessing import reduction
from pathlib import Path
from typing import Any

import pyarrow as pa

from gsc_pipeline.warehouse.base import Connection
from gsc_pipeline.warehouse.duckdb import LINGER_SECONDS, DuckDBWarehouse, release_file
from gsc_pipeline.warehouse.duckdb_writer import (
    DEFAULT_IDLE_SECONDS,
    IDLE_ENV,
    MAX_HOSTS,
    start_lock,
)

RECORD_ENV = "GSC_DUCKDB_WRITER_RECORD"


class _Recording:
    """Every transaction's start, statement, insert and end, and every detach, in the order this
    writer ran them, with the thread CPU each took; each insert's rows kept as an Arrow file.

    A diagnostic (`GSC_DUCKDB_WRITER_RECORD=DIR`): it writes every row a second time.
    `scripts/measure_duckdb_writer.py DIR` sums the CPU by kind of work and replays the same
    work in one process. Events go to `DIR/events.pickle` as (thread id, kind, args, CPU s).
    """

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._tables = 0

    def event(self, kind: str, args: tuple = (), seconds: float = 0.0) -> None:
        with self._lock, open(self.directory / "events.pickle", "ab") as out:
            pickle.dump((threading.get_ident(), kind, args, seconds), out)

    def rows(self, rows: pa.Table) -> str:
        with self._lock:
            self._tables += 1
            path = str(self.directory / f"rows-{os.getpid()}-{self._tables}.arrow")
        # A stream: a table's chunks may carry different dictionaries (page URLs).
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, rows.schema) as out:
            out.write_table(rows)
        return path

    def watch_detaches(self, warehouse: DuckDBWarehouse) -> None:
        detach = warehouse._detach

        def recorded(con: Any) -> None:
            started = time.thread_time()
            try:
                detach(con)
            finally:
                self.event("detach", (), time.thread_time() - started)

        warehouse._detach = recorded  # type: ignore[method-assign]


_recording = _Recording(os.environ[RECORD_ENV]) if os.environ.get(RECORD_ENV) else None


class _Writer:
    def __init__(self, sock: Path, idle_seconds: float) -> None:
        self.sock = sock
        self.idle_seconds = idle_seconds
        self.lock = threading.Lock()
        self.clients = 0
        self.idle_since = time.monotonic()
        # (path, schema) -> [warehouse, transactions open on it], least recently used first.
        self.hosts: dict[tuple[str, str | None], list[Any]] = {}

    def serve(self, ready_fd: int) -> None:
        listener = mpc.Listener(str(self.sock), family="AF_UNIX", backlog=64)
        os.chmod(self.sock, 0o600)
        os.write(ready_fd, b"1")
        os.close(ready_fd)
        threading.Thread(target=self._exit_when_idle, name="idle", daemon=True).start()
        while True:
            conn = listener.accept()
            with self.lock:
                self.clients += 1
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _exit_when_idle(self) -> None:
        while True:
            with self.lock:
                wait = self.idle_since + self.idle_seconds - time.monotonic()
                idle = self.clients == 0
            if idle and wait <= 0:
                with start_lock(self.sock), self.lock:
                    if self.clients == 0:
                        self.sock.unlink(missing_ok=True)
                        for warehouse, _ in self.hosts.values():
                            warehouse.close()  # no transaction is open: detach every file
                        os._exit(0)
            time.sleep(max(0.1, min(wait, self.idle_seconds)) if idle else self.idle_seconds)

    def _client(self, conn: mpc.Connection) -> None:
        try:
            while True:
                message = conn.recv()
                if message[0] == "begin":
                    self._transaction(conn, *message[1:])
                elif message[0] == "stats":
                    conn.send(("ok", (os.getpid(), time.process_time())))
                elif message[0] == "release":
                    release_file(message[1])
                    conn.send(("ok", None))
                else:
                    conn.send(("error", "ProtocolError", f"{message[0]!r} outside a transaction"))
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
            with self.lock:
                self.clients -= 1
                if self.clients == 0:
                    self.idle_since = time.monotonic()

    def _warehouse(self, path: str, schema: str | None, lock_wait: float) -> DuckDBWarehouse:
        with self.lock:
            entry = self.hosts.pop((path, schema), None)
            if entry is None:
                entry = [
                    DuckDBWarehouse(
                        path, schema=schema, writer="inline", linger_seconds=LINGER_SECONDS
                    ),
                    0,
                ]
                if _recording is not None:
                    _recording.watch_detaches(entry[0])
            self.hosts[(path, schema)] = entry  # now the most recently used
            entry[0].lock_wait_seconds = lock_wait
            entry[1] += 1
            return entry[0]

    def _done_with(self, path: str, schema: str | None) -> None:
        with self.lock:
            self.hosts[(path, schema)][1] -= 1
            unused = [key for key, (_, open_) in self.hosts.items() if not open_]
            for key in unused[: max(0, len(self.hosts) - MAX_HOSTS)]:
                self.hosts.pop(key)[0].close()

    def _transaction(
        self, conn: mpc.Connection, path: str, schema: str | None, lock_wait: float
    ) -> None:
        warehouse = self._warehouse(path, schema, lock_wait)
        if _recording is not None:
            _recording.event("begin", (path, schema))
        try:
            retries = warehouse.lock_retries
            tx = warehouse.transaction()
            try:
                db = tx.__enter__()
            except Exception as exc:  # noqa: BLE001 - the client raises it
                conn.send(("error", type(exc).__name__, str(exc)))
                return
            conn.send(("ok", warehouse.lock_retries - retries))
            try:
                ended = self._statements(conn, db)
            except BaseException as exc:
                tx.__exit__(type(exc), exc, exc.__traceback__)
                raise
            started = time.thread_time() if _recording is not None else 0.0
            if ended == "commit":
                try:
                    tx.__exit__(None, None, None)
                except Exception as exc:  # noqa: BLE001 - the client raises it
                    conn.send(("error", type(exc).__name__, str(exc)))
                    return
            else:
                rollback = _Rollback()
                tx.__exit__(_Rollback, rollback, None)
            if _recording is not None:
                _recording.event(ended, (), time.thread_time() - started)
            conn.send(("ok", None))
        finally:
            self._done_with(path, schema)

    def _statements(self, conn: mpc.Connection, db: Connection) -> str:
        """Run the client's statements until it commits or rolls back; which one it was."""
        while True:
            op, *args = conn.recv()
            if op in ("commit", "rollback"):
                return op
            # Timed only when recording (CLOCK_THREAD_CPUTIME_ID is a system call).
            started, spent = (time.thread_time() if _recording is not None else 0.0), None
            try:
                if op == "execute":
                    cur = db.execute(*args)
                    names = None if cur.description is None else [d[0] for d in cur.description]
                    answer: Any = (names, cur.fetchall() if names is not None else [])
                elif op == "read_sql":
                    answer = db.read_sql(*args)
                elif op == "insert":
                    (table,) = args
                    # The rows' file: an Arrow IPC stream, read where it is mapped.
                    fd = reduction.recv_handle(conn)
                    try:
                        with pa.memory_map(f"/proc/self/fd/{fd}") as rows:
                            data = pa.ipc.open_stream(rows).read_all()
                            db.insert_arrow(table, data)
                            if _recording is not None:  # the copy's CPU not in `spent`
                                spent = time.thread_time() - started
                                args = [table, _recording.rows(data)]
                    finally:
                        os.close(fd)
                    answer = None
                else:
                    raise ValueError(f"unknown request {op!r}")
            except Exception as exc:  # noqa: BLE001 - the client raises it
                conn.send(("error", type(exc).__name__, str(exc)))
                continue
            if _recording is not None:
                seconds = time.thread_time() - started if spent is None else spent
                _recording.event(op, tuple(args), seconds)
            conn.send(("ok", answer))


class _Rollback(Exception):
    """The client rolled back (or went away): the transaction's context rolls back on it."""


def main(argv: Sequence[str]) -> None:
    sock, ready_fd = Path(argv[0]), int(argv[1])
    idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_SECONDS)
    _Writer(sock, idle).serve(ready_fd)


if __name__ == "__main__":
    main(sys.argv[1:])
