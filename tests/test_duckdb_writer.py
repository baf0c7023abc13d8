"""DuckDB's writer process (`gsc_pipeline.warehouse.duckdb_writer`): processes share one writer,
a client that dies or a writer that dies leaves no partial transaction, and an idle writer ends.

Each test has a writer of its own (`XDG_RUNTIME_DIR` in its temporary directory holds the
socket), started by the test's first transaction, a real process on a real socket.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
from pathlib import Path

import psutil
import pyarrow as pa
import pytest

from gsc_pipeline.tools.bench.sampler import duckdb_writers
from gsc_pipeline.warehouse import duckdb_writer, open_warehouse
from gsc_pipeline.warehouse.duckdb import WRITER_ENV


@pytest.fixture
def writer_env(monkeypatch):
    """A private writer for this test; whatever is still running of it is killed afterwards."""
    # Short: a Unix socket's path has at most 107 bytes, and pytest's directories are long.
    runtime = Path(tempfile.mkdtemp(prefix="gsc-w-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv(WRITER_ENV, "process")
    duckdb_writer._forget_pool()
    yield runtime
    duckdb_writer._forget_pool()
    for proc in _writers(runtime):
        proc.kill()
    shutil.rmtree(runtime, ignore_errors=True)


def _writers(runtime) -> list[psutil.Process]:
    """The writer processes serving sockets under `runtime`."""
    return [p for p in duckdb_writers() if any(str(runtime) in a for a in p.info["cmdline"])]


def _table(start: int, n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                     "name": pa.array([f"row {i}" for i in range(start, start + n)])})  # fmt: skip


def _count(wh) -> int:
    with wh.transaction() as conn:
        return conn.execute("SELECT count(*) FROM t").fetchone()[0]


def _create(url: str) -> None:
    with open_warehouse(url).transaction() as conn:
        conn.execute("CREATE TABLE t (id BIGINT, name VARCHAR)")


def _append(url: str, start: int, n: int) -> int:
    """In another process: append rows; the pid of the writer that took them."""
    wh = open_warehouse(url)
    with wh.transaction() as conn:
        conn.insert_arrow("t", _table(start, n))
    return duckdb_writer.writer_pid()


def test_processes_share_one_writer_and_never_load_duckdb(writer_env, tmp_path):
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    _create(url)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        pids = pool.starmap(_append, [(url, i * 100_000, 70_000) for i in range(6)])
        loaded = pool.apply(_duckdb_loaded)
    assert len(set(pids)) == 1 and set(pids) == {p.pid for p in _writers(writer_env)}
    assert loaded is False
    wh = open_warehouse(url)
    with wh.transaction() as conn:
        count, distinct = conn.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone()
        frame = conn.read_sql("SELECT id, name FROM t WHERE id < 3 ORDER BY id")
    assert count == distinct == 6 * 70_000
    assert frame.to_dict("list") == {"id": [0, 1, 2], "name": ["row 0", "row 1", "row 2"]}


def _duckdb_loaded() -> bool:
    import sys

    return "duckdb" in sys.modules


def _insert_then_wait(url: str, inserted, release) -> None:
    wh = open_warehouse(url)
    with wh.transaction() as conn:
        conn.insert_arrow("t", _table(0, 1000))
        inserted.set()
        release.wait(120)


def test_the_writer_runs_duckdb_on_one_thread(writer_env, tmp_path):
    """`duckdb.CONNECT_CONFIG`: the writer's host database has no worker pool to wake for each
    of the pipeline's short statements."""
    with open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}").transaction() as conn:
        assert conn.execute("SELECT current_setting('threads')").fetchone() == (1,)
        # ... and checkpoints when it detaches the file, not inside a COMMIT past 16 MB of log.
        threshold = conn.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0]
        assert threshold.replace(" ", "") in ("1GB", "1.0GB", "953.6MiB"), threshold
    assert _writers(writer_env), "the transaction did not run in a writer process"


def test_a_client_killed_mid_transaction_leaves_nothing(writer_env, tmp_path):
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    _create(url)
    ctx = multiprocessing.get_context("spawn")
    inserted, release = ctx.Event(), ctx.Event()
    client = ctx.Process(target=_insert_then_wait, args=(url, inserted, release))
    client.start()
    assert inserted.wait(120), "the client never inserted"
    os.kill(client.pid, signal.SIGKILL)  # as a terminated run's process ends
    client.join(60)
    # The writer rolled the client's rows back and detached the file: it is writable again.
    wh = open_warehouse(url)
    assert _count(wh) == 0
    with wh.transaction() as conn:
        conn.insert_arrow("t", _table(0, 5))
    assert _count(wh) == 5


def test_an_error_rolls_back_and_names_duckdbs_exception(writer_env, tmp_path):
    wh = open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    _create(wh.path)
    with (
        pytest.raises(duckdb_writer.DuckDBWriterError, match="Table with name missing") as error,
        wh.transaction() as conn,
    ):
        conn.insert_arrow("t", _table(0, 10))
        conn.execute("SELECT * FROM missing")
    assert error.type.__name__ == "CatalogException"  # DuckDB's own name for it
    assert _count(wh) == 0


def test_a_writer_that_dies_mid_transaction_is_replaced_and_the_work_redone(
    writer_env, tmp_path, monkeypatch
):
    wh = open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    _create(wh.path)
    first = duckdb_writer.writer_pid()
    real_insert = duckdb_writer.WriterConnection.insert_arrow
    killed: list[int] = []

    def insert_after_the_writer_dies(self, table, data):
        if not killed:
            killed.append(first)
            psutil.Process(first).kill()
            psutil.Process(first).wait(30)
        return real_insert(self, table, data)

    def work(conn):
        conn.execute("INSERT INTO t VALUES (-1, 'before the insert')")
        conn.insert_arrow("t", _table(0, 100))

    monkeypatch.setattr(
        duckdb_writer.WriterConnection, "insert_arrow", insert_after_the_writer_dies
    )
    wh.run_transaction(work, "a test's insert")
    assert killed == [first]
    assert duckdb_writer.writer_pid() != first
    assert _count(wh) == 101  # the whole transaction once, nothing of the lost attempt


def test_an_idle_writer_ends_and_the_next_transaction_starts_another(
    writer_env, tmp_path, monkeypatch
):
    monkeypatch.setenv(duckdb_writer.IDLE_ENV, "0.5")
    wh = open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    _create(wh.path)
    first = psutil.Process(duckdb_writer.writer_pid())
    # While this process keeps a connection, the writer stays; once it lets go, it ends.
    duckdb_writer.close_idle_connections()
    first.wait(60)
    assert not duckdb_writer.socket_path().exists()
    assert _count(wh) == 0
    assert duckdb_writer.writer_pid() != first.pid


def _transact_in_fork(url: str) -> int:
    return _count(open_warehouse(url))


def test_a_fork_does_not_talk_on_its_parents_connections(writer_env, tmp_path):
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    _create(url)
    wh = open_warehouse(url)
    with wh.transaction() as conn:
        conn.insert_arrow("t", _table(0, 7))
    assert duckdb_writer._pool.idle, "the parent keeps its connection for the next transaction"
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_transact_in_fork, (url,)) == 7
    assert _count(wh) == 7  # the parent's connection was not disturbed


def test_a_bad_writer_mode_names_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(WRITER_ENV, "threads")
    with pytest.raises(ValueError, match="GSC_DUCKDB_WRITER='threads'.*'process'.*'inline'"):
        open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")


def test_a_socket_path_too_long_names_the_fix(monkeypatch, tmp_path):
    runtime = tmp_path / ("x" * 60)
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with pytest.raises(OSError, match="longer than a Unix socket allows.*XDG_RUNTIME_DIR"):
        duckdb_writer.socket_path()


def test_the_bench_counts_the_writers_cpu_from_when_it_began_sampling(writer_env, tmp_path):
    """The writer is outside the sampled tree (it serves a whole Dagster instance): the bench's
    sampler still follows it, and counts only what it spends once sampling began."""
    import subprocess
    import sys

    from gsc_pipeline.tools.bench.sampler import TreeSampler

    wh = open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    _create(wh.path)
    writer = psutil.Process(duckdb_writer.writer_pid())
    spent_before = sum(writer.cpu_times()[:2])
    # A tree the writer is not part of: one idle child process.
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        sampler = TreeSampler(child.pid)
        sampler.sample()
        with wh.transaction() as conn:
            conn.insert_arrow("t", _table(0, 300_000))
        sampler.sample()
    finally:
        child.communicate(b"")
    (seen,) = [p for p in sampler.processes.values() if p.pid == writer.pid]
    assert seen.role == "DuckDB writer"
    assert seen.cpu_before >= spent_before
    assert 0 < seen.cpu_seconds <= sum(writer.cpu_times()[:2]) - spent_before


def test_each_dagster_instance_has_its_own_writer(writer_env, monkeypatch, tmp_path):
    """A deployment's processes share one writer, which ends with them (a stopped UI leaves
    nothing: tests/test_ui_signals.py); another instance's never keeps it alive."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "a"))
    first = duckdb_writer.socket_path()
    assert duckdb_writer.socket_path() == first
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "b"))
    assert duckdb_writer.socket_path() != first
    assert duckdb_writer.socket_path().parent == first.parent
    # Without an instance, one writer wherever the process runs.
    monkeypatch.delenv("DAGSTER_HOME")
    unset = duckdb_writer.socket_path()
    monkeypatch.chdir(tmp_path)
    assert duckdb_writer.socket_path() == unset


def _open_directly(path: str) -> bool:
    """Whether the file can be opened directly now: no process (another one: DuckDB's file
    lock; this one: its database instance) has it attached."""
    import duckdb

    try:
        duckdb.connect(path, read_only=True).close()
    except (duckdb.IOException, duckdb.ResourceInUseException) as exc:
        assert "Could not set lock" in str(exc) or "already attached" in str(exc), exc
        return False
    return True


def _until(condition, what: str, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.05)


def test_the_writer_lets_other_programs_open_the_file_once_it_is_idle(writer_env, tmp_path):
    """The writer keeps a file attached between transactions (LINGER_SECONDS), then lets go."""
    wh = open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    _create(wh.path)
    with wh.transaction() as conn:
        conn.insert_arrow("t", _table(0, 10))
    _until(lambda: _open_directly(wh.path), "the writer released the file")
    assert _count(wh) == 10  # and the writer attaches it again for the next transaction


def test_release_has_the_writer_let_go_of_the_file_at_once(writer_env, tmp_path):
    wh = open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    other_schema = open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}", schema="other")
    _create(wh.path)
    with other_schema.transaction() as conn:
        conn.execute("CREATE TABLE u (id BIGINT)")
    wh.release()  # whichever schema's transaction left the file attached
    assert _open_directly(wh.path)
    wh.release()  # nothing attached: nothing to do
    assert _count(wh) == 0


@pytest.fixture
def lingering(tmp_path, monkeypatch):
    """Inline warehouses that linger as the writer's do, counting their attaches."""
    from gsc_pipeline.warehouse import duckdb as gsc_duckdb

    attaches = []
    attach = gsc_duckdb.DuckDBWarehouse._attach

    def counted(self):
        attaches.append(self.schema)
        return attach(self)

    monkeypatch.setattr(gsc_duckdb.DuckDBWarehouse, "_attach", counted)
    path = str(tmp_path / "w.duckdb")

    def make(schema=None, linger=60.0):
        return gsc_duckdb.DuckDBWarehouse(
            path, schema=schema, writer="inline", linger_seconds=linger
        )

    yield gsc_duckdb, path, make, attaches
    gsc_duckdb._file(path).holder = None  # the test's warehouses are closed by then


def test_a_lingering_file_serves_the_next_transaction_without_attaching_again(lingering):
    gsc_duckdb, path, make, attaches = lingering
    wh = make()
    try:
        with wh.transaction() as conn:
            conn.execute("CREATE TABLE t (id BIGINT, name VARCHAR)")
        with wh.transaction() as conn:
            conn.insert_arrow("t", _table(0, 5))
        assert attaches == [None]
        assert gsc_duckdb._file(path).holder is wh
        assert not _open_directly(path)  # still attached: other programs wait
        # Another object of the same file (another schema) takes it over.
        other = make(schema="other")
        with other.transaction() as conn:
            conn.execute("CREATE TABLE u (id BIGINT)")
        assert attaches == [None, "other"]
        assert gsc_duckdb._file(path).holder is other
        assert wh._held is None
        other.close()
        assert _open_directly(path)  # close() detached it
        with wh.transaction() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (5,)
    finally:
        wh.close()
    assert _open_directly(path)


def test_a_lingering_file_is_detached_once_idle_or_held_too_long(lingering, monkeypatch):
    gsc_duckdb, path, make, attaches = lingering
    wh = make(linger=0.05)
    try:
        with wh.transaction() as conn:
            conn.execute("CREATE TABLE t (id BIGINT, name VARCHAR)")
        _until(lambda: _open_directly(path), "the idle file was detached")
        assert gsc_duckdb._file(path).holder is None
        # Held longer than HOLD_SECONDS: detached at the end of the transaction.
        monkeypatch.setattr(gsc_duckdb, "HOLD_SECONDS", 0.0)
        wh.linger_seconds = 60.0
        with wh.transaction() as conn:
            conn.insert_arrow("t", _table(0, 3))
        assert gsc_duckdb._file(path).holder is None and _open_directly(path)
        assert len(attaches) == 2
    finally:
        wh.close()


def test_an_inline_warehouse_detaches_after_every_transaction(tmp_path, monkeypatch):
    """Inline (a run process's, which may fork): no file stays attached after a transaction."""
    monkeypatch.setenv(WRITER_ENV, "inline")
    wh = open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert wh.linger_seconds == 0
    with wh.transaction() as conn:
        conn.execute("CREATE TABLE t (id BIGINT, name VARCHAR)")
    assert _open_directly(wh.path)


def test_a_recording_writer_keeps_what_it_ran_and_the_rows(writer_env, monkeypatch, tmp_path):
    """`GSC_DUCKDB_WRITER_RECORD`: each transaction's statements, inserts (their rows kept) and
    end, and the detach, in order, with their CPU (`scripts/measure_duckdb_writer.py`)."""
    import pickle

    from gsc_pipeline.warehouse.duckdb_server import RECORD_ENV

    recording = tmp_path / "recording"
    monkeypatch.setenv(RECORD_ENV, str(recording))
    wh = open_warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    _create(wh.path)
    with wh.transaction() as conn:
        conn.insert_arrow("t", _table(0, 10))
    wh.release()
    events = []
    with open(recording / "events.pickle", "rb") as source:
        while not events or events[-1][1] != "detach" or len(events) < 6:
            events.append(pickle.load(source))
    # The file may also be detached between the two (idle for LINGER_SECONDS on a slow machine).
    work = [e for e in events if e[1] != "detach"]
    assert [e[1] for e in work] == ["begin", "execute", "commit", "begin", "insert", "commit"]
    assert events[-1][1] == "detach"  # the release's
    assert work[1][2][0] == "CREATE TABLE t (id BIGINT, name VARCHAR)"
    table, rows_file = work[4][2]
    with pa.memory_map(rows_file) as rows:
        assert table == "t" and pa.ipc.open_stream(rows).read_all().equals(_table(0, 10))
    assert all(e[3] >= 0 for e in events)
