"""Warehouse: schema, partition replace, bulk path, concurrent writers, DuckDB lock waits."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import threading
import uuid
from pathlib import Path
from urllib.parse import quote

import duckdb
import pyarrow as pa
import pytest

from gsc_pipeline.defs.resources import warehouse_resource
from gsc_pipeline.reports import PAGE_QUERY, SITE, Report
from gsc_pipeline.warehouse import (
    LEDGER_SCHEMA,
    LEDGER_TABLE,
    WAREHOUSE_URL_ENV,
    PartitionBatch,
    WarehouseUrlError,
    open_warehouse,
    report_schema,
)
from gsc_pipeline.warehouse import duckdb as gsc_duckdb
from gsc_pipeline.warehouse.duckdb_writer import DuckDBWriterError
from gsc_pipeline.warehouse.postgres import PostgresConnection, _CopyStream, qmark_to_pyformat

DAY = dt.date(2026, 3, 1)
SITE_URL = "sc-domain:example.com"


@pytest.fixture(
    params=["duckdb", "duckdb-inline", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def warehouse_url(request, monkeypatch) -> str:
    """Each backend; DuckDB both in its writer process (the default) and in this process."""
    if request.param == "duckdb-inline":
        monkeypatch.setenv(gsc_duckdb.WRITER_ENV, "inline")
    if request.param.startswith("duckdb"):
        return request.getfixturevalue("duckdb_path")
    return request.getfixturevalue("postgres_schema_url")


def connection_class(wh) -> type:
    """The class of `wh`'s connections in this process (what a test patches)."""
    with wh.transaction() as conn:
        return type(conn)


def make_batch(
    report: Report = PAGE_QUERY,
    day: dt.date = DAY,
    n: int = 3,
    *,
    site_url: str = SITE_URL,
    salt: str = "a",
    run_id: str = "run-1",
) -> PartitionBatch:
    dims = {d: [f"{d}-{salt}-{i}" for i in range(n)] for d in report.dimensions}
    rows = pa.Table.from_pydict(
        {
            "site_url": [site_url] * n,
            "search_type": ["web"] * n,
            "date": [day] * n,
            **dims,
            "clicks": [float(i % 7) for i in range(n)],
            "impressions": [float(10 + i) for i in range(n)],
            "ctr": [(i % 7) / (10 + i) for i in range(n)],
            "position": [1.0 + i / 3 for i in range(n)],
        },
        schema=report_schema(report),
    )
    ledger = pa.Table.from_pydict(
        {
            "site_url": [site_url],
            "report": [report.name],
            "search_type": ["web"],
            "date": [day],
            "start_row": [0],
            "row_limit": [report.row_limit],
            "rows_returned": [n],
            "clicks": [sum(rows.column("clicks").to_pylist())],
            "impressions": [sum(rows.column("impressions").to_pylist())],
            "data_state": ["final"],
            "first_incomplete_date": [None],
            "fetched_at": [dt.datetime(2026, 3, 4, 12, 0, 0, 123456)],
            "run_id": [run_id],
            "shard": [""],
            "merged_rows": [None],
        },
        schema=LEDGER_SCHEMA,
    )
    return PartitionBatch(site_url, report, day, rows, ledger)


def table_rows(wh, table: str) -> list[tuple]:
    with wh.transaction() as conn:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def page_query_columns(wh) -> list[tuple[str, str]]:
    """gsc_page_query's columns and their types as the backend's catalog names them."""
    double = "DOUBLE" if wh.dialect == "duckdb" else "double precision"
    varchar = "VARCHAR" if wh.dialect == "duckdb" else "character varying"
    date = "DATE" if wh.dialect == "duckdb" else "date"
    return [
        ("site_url", varchar),
        ("search_type", varchar),
        ("date", date),
        ("page", varchar),
        ("query", varchar),
        ("clicks", double),
        ("impressions", double),
        ("ctr", double),
        ("position", double),
    ]


def test_schema_matches_report(warehouse_url):
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE_QUERY, SITE])
    wh.ensure_schema([PAGE_QUERY, SITE])  # idempotent
    columns = wh.read_sql(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        # Only this test's schema: concurrent test runs have their own gsc_page_query tables.
        "AND table_schema = current_schema() ORDER BY ordinal_position",
        ["gsc_page_query"],
    )
    assert list(columns.itertuples(index=False, name=None)) == page_query_columns(wh)
    ledger_cols = wh.read_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = current_schema() ORDER BY ordinal_position",
        [LEDGER_TABLE],
    )
    assert list(ledger_cols["column_name"]) == LEDGER_SCHEMA.names
    site_cols = wh.read_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = current_schema()",
        ["gsc_site"],
    )
    assert set(site_cols["column_name"]) == set(report_schema(SITE).names)


def test_ensure_schema_asks_the_catalog_once_per_table(warehouse_url, monkeypatch):
    """A step ensures its property's tables, then each report's sync its own: only a table this
    object has not made sure of yet costs a transaction."""
    wh = open_warehouse(warehouse_url)
    transactions = []
    real = wh.transaction

    def counted():
        transactions.append(1)
        return real()

    monkeypatch.setattr(wh, "transaction", counted)
    wh.ensure_schema([PAGE_QUERY])
    assert len(transactions) == 1
    wh.ensure_schema([PAGE_QUERY])
    wh.ensure_schema([])
    assert len(transactions) == 1
    wh.ensure_schema([PAGE_QUERY, SITE])  # a table it has not seen: created
    assert len(transactions) == 2
    assert wh.missing_tables([PAGE_QUERY.table, SITE.table, LEDGER_TABLE]) == []
    # Another object (another process, a later run) asks again, and finds them.
    other = open_warehouse(warehouse_url)
    other.ensure_schema([SITE])
    assert other.missing_tables([SITE.table]) == []


def test_describe_table_reads_the_qualified_name_and_columns_from_the_catalog(warehouse_url):
    wh = open_warehouse(warehouse_url)
    with pytest.raises(ValueError, match=r"gsc_page_query does not exist"):
        wh.describe_table("gsc_page_query")
    wh.ensure_schema([PAGE_QUERY])
    described = wh.describe_table("gsc_page_query")
    database, schema = wh.read_sql("SELECT current_database() AS d, current_schema() AS s").iloc[0]
    if wh.dialect == "duckdb":
        # The catalog of a DuckDB file is the file's stem; tables sit in its `main` schema.
        assert (database, schema) == ("warehouse", "main")
    else:
        assert (database, schema[:9]) == ("test", "gsc_test_")
    assert described.qualified_name == f"{database}.{schema}.gsc_page_query"
    assert described.columns == tuple(page_query_columns(wh))
    # A declaration's prefix is a schema of its own (unique: Postgres schemas are shared).
    prefix = f"agency_{uuid.uuid4().hex[:8]}"
    prefixed = open_warehouse(warehouse_url, schema=prefix)
    try:
        prefixed.ensure_schema([PAGE_QUERY])
        assert prefixed.describe_table("gsc_page_query").qualified_name == (
            f"{database}.{prefix}.gsc_page_query"
        )
    finally:
        with wh.transaction() as conn:
            conn.execute(f"DROP SCHEMA {prefix} CASCADE")


def test_write_is_a_replace_and_idempotent(warehouse_url):
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE_QUERY])
    other_day = make_batch(day=DAY + dt.timedelta(days=1), n=2, salt="other")
    wh.write_partitions([other_day])
    first = make_batch(n=5, salt="a")
    wh.write_partitions([first])
    once = table_rows(wh, PAGE_QUERY.table)
    wh.write_partitions([first])
    assert table_rows(wh, PAGE_QUERY.table) == once
    assert len(once) == 7

    replacement = make_batch(n=3, salt="b", run_id="run-2")
    wh.write_partitions([replacement])
    day_rows = wh.read_sql(
        f"SELECT page, query, clicks, impressions, ctr, position FROM {PAGE_QUERY.table} "
        "WHERE date = ? ORDER BY page",
        [DAY],
    )
    assert list(day_rows["page"]) == ["page-b-0", "page-b-1", "page-b-2"]
    # Doubles survive the bulk path bit for bit (binary COPY on Postgres).
    assert list(day_rows["ctr"]) == replacement.rows.column("ctr").to_pylist()
    assert list(day_rows["position"]) == replacement.rows.column("position").to_pylist()
    ledger = wh.read_sql(f"SELECT date, run_id, rows_returned FROM {LEDGER_TABLE} ORDER BY date")
    assert list(ledger["run_id"]) == ["run-2", "run-1"]
    assert list(ledger["rows_returned"]) == [3, 2]


def test_write_partitions_is_one_transaction_per_group(warehouse_url, monkeypatch):
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE_QUERY])
    days = [DAY + dt.timedelta(days=i) for i in range(3)]
    wh.write_partitions([make_batch(day=days[0], n=2, salt="old")])

    cls = connection_class(wh)
    real_insert = cls.insert_arrow
    inserted: list[tuple[str, int]] = []
    fail_on: set[str] = set()

    def watched_insert(self, table, data):
        inserted.append((table, data.num_rows))
        if table in fail_on:
            raise RuntimeError("disk full")
        return real_insert(self, table, data)

    monkeypatch.setattr(cls, "insert_arrow", watched_insert)
    wh.write_partitions([make_batch(day=d, n=4, salt="new") for d in days])
    # One insert per table for the whole group, not one per partition.
    assert inserted == [(PAGE_QUERY.table, 12), (LEDGER_TABLE, 3)]
    counts = wh.read_sql(
        f"SELECT date, count(*) AS n FROM {PAGE_QUERY.table} GROUP BY date ORDER BY date"
    )
    assert list(counts["n"]) == [4, 4, 4]  # the old copy of days[0] was replaced
    assert len(table_rows(wh, LEDGER_TABLE)) == 3
    before = table_rows(wh, PAGE_QUERY.table)
    before_ledger = table_rows(wh, LEDGER_TABLE)

    # A failure on the ledger's insert, after the group's rows went in, rolls back the whole
    # group: no day is half-written, none lost its old copy.
    fail_on.add(LEDGER_TABLE)
    with pytest.raises(RuntimeError, match="disk full"):
        wh.write_partitions([make_batch(day=d, n=6, salt="bad") for d in days])
    monkeypatch.undo()
    assert table_rows(wh, PAGE_QUERY.table) == before
    assert table_rows(wh, LEDGER_TABLE) == before_ledger
    wh.write_partitions([])  # nothing to do, no transaction needed


def test_a_partition_given_twice_in_a_group_is_written_once_as_its_last_batch(warehouse_url):
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE_QUERY])
    first, last = make_batch(n=3, salt="first"), make_batch(n=2, salt="last", run_id="run-2")
    wh.write_partitions([first, make_batch(day=DAY + dt.timedelta(days=1), n=1), last])
    day_rows = wh.read_sql(
        f"SELECT page FROM {PAGE_QUERY.table} WHERE date = ? ORDER BY page", [DAY]
    )
    assert list(day_rows["page"]) == ["page-last-0", "page-last-1"]
    ledger = wh.read_sql(f"SELECT run_id FROM {LEDGER_TABLE} WHERE date = ?", [DAY])
    assert list(ledger["run_id"]) == ["run-2"]


def test_null_and_empty_strings_stay_distinct(warehouse_url):
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE_QUERY])
    batch = make_batch(n=2)
    rows = batch.rows.set_column(
        4, "query", pa.array(["", None], pa.string())
    ).set_column(8, "position", pa.array([None, 2.5]))
    wh.write_partitions([PartitionBatch(SITE_URL, PAGE_QUERY, DAY, rows, batch.ledger)])
    with wh.transaction() as conn:
        got = conn.execute(
            f"SELECT query, position FROM {PAGE_QUERY.table} ORDER BY page"
        ).fetchall()
        fetched_at = conn.execute(f"SELECT fetched_at FROM {LEDGER_TABLE}").fetchone()[0]
    assert got == [("", None), (None, 2.5)]
    assert fetched_at == dt.datetime(2026, 3, 4, 12, 0, 0, 123456)


def test_large_partition_goes_through_the_bulk_path(warehouse_url, monkeypatch):
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE_QUERY])
    statements: list[str] = []
    bulk: list[tuple[str, int]] = []
    cls = connection_class(wh)
    real_execute, real_insert = cls.execute, cls.insert_arrow

    def execute(self, sql, params=None):
        statements.append(sql)
        return real_execute(self, sql, params)

    def insert_arrow(self, table, data):
        bulk.append((table, data.num_rows))
        return real_insert(self, table, data)

    monkeypatch.setattr(cls, "execute", execute)
    monkeypatch.setattr(cls, "insert_arrow", insert_arrow)
    wh.write_partitions([make_batch(n=50_000)])
    assert bulk == [(PAGE_QUERY.table, 50_000), (LEDGER_TABLE, 1)]
    # Two deletes (+ the advisory lock on Postgres); never one statement per row.
    assert len(statements) <= 3, statements
    if wh.dialect == "duckdb":
        assert all("INSERT" not in s for s in statements)
    count = wh.read_sql(f"SELECT count(*) AS n FROM {PAGE_QUERY.table}")
    assert int(count["n"].iloc[0]) == 50_000


def test_a_day_whose_first_chunk_is_empty_is_stored_exactly(warehouse_url):
    """A day's rows are its pages and search types concatenated; the first may hold no row (a
    search type without traffic)."""
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE_QUERY])
    batch = make_batch(n=6)
    rows = pa.concat_tables([batch.rows.slice(0, 0), batch.rows])
    wh.write_partitions([PartitionBatch(SITE_URL, PAGE_QUERY, DAY, rows, batch.ledger)])
    assert len(table_rows(wh, PAGE_QUERY.table)) == 6


@pytest.mark.parametrize("read_size", [1, 7, 1 << 20, -1])
def test_copy_input_is_the_whole_table_encoded_a_slice_at_a_time(read_size):
    """COPY's input (PostgreSQL) is encoded a slice of rows at a time as it is read; read to
    the end it is the whole table's binary COPY input, empty chunks included (a 0-row slice
    ends nothing), dictionary-encoded columns as their values."""
    import pgpq

    plain = make_batch(n=8).rows
    page = plain.schema.get_field_index("page")
    rows = plain.set_column(page, "page", plain["page"].dictionary_encode())  # as a day holds it
    table = pa.concat_tables([rows.slice(0, 0), rows.slice(0, 5), rows.slice(5, 0), rows.slice(5)])
    encoder = pgpq.ArrowToPostgresBinaryEncoder(plain.schema)
    whole = encoder.write_header()
    for batch in plain.to_batches():
        whole += encoder.write_batch(batch)
    whole += encoder.finish()
    stream = _CopyStream(table, rows_per_slice=2)
    chunks = []
    while chunk := stream.read(read_size):
        assert read_size < 0 or len(chunk) <= read_size
        chunks.append(chunk)
    assert b"".join(chunks) == bytes(whole)


def test_transaction_execute_and_params_on_both_backends(warehouse_url):
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE_QUERY])
    wh.write_partitions([make_batch(n=4)])
    with wh.transaction() as conn:
        assert conn.dialect == wh.dialect
        conn.execute(
            f"UPDATE {PAGE_QUERY.table} SET query = ? WHERE page = ?", ["50% off?", "page-a-1"]
        )
        row = conn.execute(
            f"SELECT count(*) FROM {PAGE_QUERY.table} WHERE query LIKE '%off?' AND clicks >= ?",
            [1.0],
        ).fetchone()
    assert row == (1,)
    with pytest.raises(RuntimeError), wh.transaction() as conn:
        conn.execute(f"DELETE FROM {PAGE_QUERY.table}")
        raise RuntimeError("roll back")
    assert len(table_rows(wh, PAGE_QUERY.table)) == 4


def test_qmark_conversion_leaves_quoted_text_alone():
    assert qmark_to_pyformat("SELECT '?' , x FROM t WHERE a = ? AND b LIKE '5%'") == (
        "SELECT '?' , x FROM t WHERE a = %s AND b LIKE '5%%'"
    )


def test_open_warehouse_urls(tmp_path):
    assert open_warehouse(f"duckdb:///{tmp_path}/w.duckdb").path == f"{tmp_path}/w.duckdb"
    assert open_warehouse(str(tmp_path / "x.duckdb")).dialect == "duckdb"
    assert open_warehouse("postgresql://u@h/db").dialect == "postgres"
    assert open_warehouse("postgres://u@h/db").dialect == "postgres"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("nonsense", "neither a URL nor an absolute path ending in .duckdb"),
        ("mysql://root:***@db/gsc", "'mysql' is not a supported warehouse"),
        ("warehouse.duckdb", "neither a URL nor an absolute path"),
        ("duckdb://warehouse.duckdb", "the DuckDB path must be absolute"),
        ("duckdb://", "names no DuckDB file"),
    ],
)
def test_a_bad_warehouse_url_names_the_variable_and_both_forms_and_creates_nothing(
    url, problem, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    given = url.replace("***", "secret")
    with pytest.raises(WarehouseUrlError) as err:
        open_warehouse(given)
    message = str(err.value)
    assert message.startswith(f"GSC_WAREHOUSE_URL={url!r}: ") and problem in message
    assert "duckdb:///absolute/path/warehouse.duckdb" in message
    assert "postgresql://user:password@host:5432/database" in message
    assert "secret" not in message
    # The definitions refuse it when they load, before any run could create a file.
    monkeypatch.setenv(WAREHOUSE_URL_ENV, given)
    with pytest.raises(WarehouseUrlError, match="GSC_WAREHOUSE_URL="):
        warehouse_resource()
    assert list(tmp_path.iterdir()) == []


def _write_many(url: str, barrier, salt: str, same_partition: bool, times: int) -> None:
    wh = open_warehouse(url)
    barrier.wait()
    for i in range(times):
        # Different partitions: p1 writes days +10.., p2 days +20..
        day = DAY if same_partition else DAY + dt.timedelta(days=10 * int(salt[1:]) + i)
        wh.write_partitions([make_batch(day=day, n=2000, salt=salt, run_id=salt)])


@pytest.mark.parametrize("same_partition", [True, False], ids=["same", "different"])
def test_two_processes_writing_at_once_leave_exactly_one_copy(warehouse_url, same_partition):
    wh = open_warehouse(warehouse_url)
    wh.ensure_schema([PAGE_QUERY])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [
        ctx.Process(target=_write_many, args=(warehouse_url, barrier, salt, same_partition, 8))
        for salt in ("p1", "p2")
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    per_day = wh.read_sql(
        f"SELECT date, count(*) AS n, count(DISTINCT search_type || page || query) AS keys, "
        f"min(query) AS q FROM {PAGE_QUERY.table} GROUP BY date ORDER BY date"
    )
    ledger = wh.read_sql(f"SELECT date, count(*) AS n FROM {LEDGER_TABLE} GROUP BY date")
    expected_days = 1 if same_partition else 16
    assert len(per_day) == expected_days
    assert set(per_day["n"]) == {2000}
    assert set(per_day["keys"]) == {2000}
    assert set(ledger["n"]) == {1} and len(ledger) == expected_days


def _finishes_while_a_write_is_held_open(url: str, monkeypatch, work) -> bool:
    """Run `work()` in a thread while another thread's write of DAY to PAGE_QUERY has inserted
    its rows and holds its transaction open; whether `work` finished before the write ended."""
    wh = open_warehouse(url)
    wh.ensure_schema([PAGE_QUERY])
    inside, release = threading.Event(), threading.Event()
    real_insert = PostgresConnection.insert_arrow

    def held_insert(self, table, data):
        real_insert(self, table, data)
        if table == PAGE_QUERY.table and data.column("date")[0].as_py() == DAY:
            inside.set()
            release.wait(60)

    monkeypatch.setattr(PostgresConnection, "insert_arrow", held_insert)
    holder = threading.Thread(target=wh.write_partitions, args=([make_batch(day=DAY)],))
    holder.start()
    try:
        assert inside.wait(30)
        other = threading.Thread(target=work)
        other.start()
        other.join(30)
        finished = not other.is_alive()
        assert holder.is_alive()  # the write's transaction was open all along
    finally:
        release.set()
        holder.join(30)
    return finished


@pytest.mark.postgres
def test_postgres_writers_of_other_days_of_a_table_do_not_wait_for_each_other(
    postgres_schema_url, monkeypatch
):
    """A group commit of one day, held open, does not hold back another writer's day of the
    same table and site (the other runs of a backfill). The same day still waits:
    test_two_processes_writing_at_once_leave_exactly_one_copy[same]."""
    other_day = make_batch(day=DAY + dt.timedelta(days=1), salt="b")
    assert _finishes_while_a_write_is_held_open(
        postgres_schema_url, monkeypatch,
        lambda: open_warehouse(postgres_schema_url).write_partitions([other_day]),
    )  # fmt: skip
    per_day = open_warehouse(postgres_schema_url).read_sql(
        f"SELECT date, min(query) AS q, count(*) AS n FROM {PAGE_QUERY.table} GROUP BY date"
    )
    assert sorted(zip(per_day["date"], per_day["q"], per_day["n"], strict=True)) == [
        (DAY, "query-a-0", 3), (DAY + dt.timedelta(days=1), "query-b-0", 3)
    ]


@pytest.mark.postgres
def test_postgres_ensure_schema_does_not_queue_behind_a_writer_of_an_existing_table(
    postgres_schema_url, monkeypatch
):
    """Every sync starts with ensure_schema. On tables and indexes that exist it must take no
    table lock: a CREATE INDEX IF NOT EXISTS waits for SHARE on the table, behind every open
    write, and every later writer then queues behind it (the standard bench's stalls)."""
    assert _finishes_while_a_write_is_held_open(
        postgres_schema_url, monkeypatch,
        lambda: open_warehouse(postgres_schema_url).ensure_schema([PAGE_QUERY]),
    )  # fmt: skip
    indexes = open_warehouse(postgres_schema_url).read_sql(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ?",
        [PAGE_QUERY.table],
    )
    assert list(indexes["indexname"]) == [f"{PAGE_QUERY.table}_site_url_date_idx"]


@pytest.mark.postgres
def test_postgres_sessions_hash_proofs_in_memory_unless_the_url_says_otherwise(
    postgres_schema_url,
):
    """The pipeline's session settings (`SESSION_OPTIONS`: a proof's GROUP BY hashed in one
    process instead of a parallel sort spilled to disk); settings in the URL's `options` win."""

    def settings(url: str) -> tuple[str, str, str]:
        with open_warehouse(url).transaction() as conn:
            return tuple(
                conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("work_mem", "max_parallel_workers_per_gather", "search_path")
            )

    work_mem, workers, search_path = settings(postgres_schema_url)
    assert (work_mem, workers) == ("32MB", "0")
    assert search_path.startswith("gsc_test_")  # the fixture's options still apply
    overridden = postgres_schema_url.replace("options=", f"options={quote('-cwork_mem=8MB ')}")
    assert settings(overridden)[:2] == ("8MB", "0")


@pytest.mark.postgres
def test_postgres_proofs_are_planned_on_the_rows_just_written(postgres_schema_url):
    """A freshly bulk-loaded table has no statistics until autovacuum gets to it, and the
    planner then sorts a step's rows by their text key as if it held a few dozen:
    `refresh_statistics` analyzes the stale tables (only those), so the duplicate-rows proof
    hashes them instead."""
    wh = open_warehouse(postgres_schema_url)
    wh.ensure_schema([PAGE_QUERY])
    wh.write_partitions([make_batch(day=DAY + dt.timedelta(days=i), n=2000) for i in range(5)])
    proof_sql = (
        f"EXPLAIN SELECT site_url, search_type, date, page, query, COUNT(*) FROM "
        f"{PAGE_QUERY.table} WHERE site_url = ? GROUP BY site_url, search_type, date, page, query"
    )

    def plan() -> str:
        return "\n".join(wh.read_sql(proof_sql, [SITE_URL])["QUERY PLAN"])

    def analyzed() -> dict[str, object]:
        stats = wh.read_sql(
            "SELECT relname, last_analyze FROM pg_stat_user_tables "
            "WHERE schemaname = current_schema()"
        )
        return dict(zip(stats["relname"], stats["last_analyze"], strict=True))

    assert analyzed()[PAGE_QUERY.table] is None
    wh.refresh_statistics([PAGE_QUERY.table, LEDGER_TABLE])
    first = analyzed()
    assert first[PAGE_QUERY.table] is not None and first[LEDGER_TABLE] is not None
    assert "HashAggregate" in plan()
    # Nothing written since: not analyzed again.
    wh.refresh_statistics([PAGE_QUERY.table, LEDGER_TABLE])
    assert analyzed() == first


def _hold_duckdb_lock(path: str, locked, release) -> None:
    con = duckdb.connect(path)
    locked.set()
    release.wait(60)
    con.close()


def test_duckdb_write_waits_for_another_process_lock(duckdb_path, monkeypatch):
    # Inline: how the writer process (or an inline process) waits, observed in this process.
    monkeypatch.setenv(gsc_duckdb.WRITER_ENV, "inline")
    wh = open_warehouse(duckdb_path)
    wh.ensure_schema([PAGE_QUERY])
    ctx = multiprocessing.get_context("spawn")
    locked, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_duckdb_lock, args=(duckdb_path, locked, release))
    holder.start()
    assert locked.wait(30)

    refused = threading.Event()
    is_lock_conflict = gsc_duckdb._is_lock_conflict

    def lock_conflict(exc: BaseException) -> bool:
        if is_lock_conflict(exc):
            refused.set()
            return True
        return False

    monkeypatch.setattr(gsc_duckdb, "_is_lock_conflict", lock_conflict)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            wh.write_partitions([make_batch(n=10)])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert refused.wait(30), "the writer never met the other process's lock"
    release.set()
    writer.join(60)
    holder.join(30)
    assert errors == []
    assert wh.lock_retries >= 1
    assert len(table_rows(wh, PAGE_QUERY.table)) == 10


@pytest.mark.parametrize(
    ("writer", "error"), [("process", DuckDBWriterError), ("inline", duckdb.IOException)]
)
def test_duckdb_gives_up_after_the_lock_wait(duckdb_path, writer, error):
    ctx = multiprocessing.get_context("spawn")
    locked, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_duckdb_lock, args=(duckdb_path, locked, release))
    holder.start()
    try:
        assert locked.wait(30)
        wh = gsc_duckdb.DuckDBWarehouse(duckdb_path, lock_wait_seconds=0.3, writer=writer)
        with pytest.raises(error, match="Could not set lock"):
            wh.ensure_schema([PAGE_QUERY])
    finally:
        release.set()
        holder.join(30)


def test_a_new_duckdb_file_appears_whole(duckdb_path, monkeypatch):
    """DuckDB creates a missing file in three moves (create, lock, header), and a process
    attaching it in between leaves it empty for good: the file is made whole under a name of
    its own and linked into place (`DuckDBWarehouse._create_file`)."""
    monkeypatch.setenv(gsc_duckdb.WRITER_ENV, "inline")
    real_link = gsc_duckdb.os.link
    linked: list[tuple[int, list]] = []

    def link(source, target):
        assert not os.path.exists(target)
        # What appears under the warehouse's name: a database DuckDB opens, no table yet.
        con = duckdb.connect(str(source), read_only=True)
        linked.append((os.path.getsize(source), con.execute("SHOW TABLES").fetchall()))
        con.close()
        real_link(source, target)

    monkeypatch.setattr(gsc_duckdb.os, "link", link)
    wh = open_warehouse(duckdb_path)
    wh.ensure_schema([PAGE_QUERY])
    wh.write_partitions([make_batch(n=10)])
    assert [tables for _, tables in linked] == [[]]
    assert linked[0][0] > 0
    assert len(table_rows(wh, PAGE_QUERY.table)) == 10
    # Linked once: later transactions find the file; nothing of the creation is left beside it.
    wh.write_partitions([make_batch(n=4, salt="b")])
    wh.release()
    assert len(linked) == 1
    assert sorted(p.name for p in Path(duckdb_path).parent.iterdir()) == [Path(duckdb_path).name]


@pytest.mark.parametrize(("writer", "error"), [("process", DuckDBWriterError), ("inline", OSError)])
def test_an_empty_duckdb_file_is_refused_with_the_fix(duckdb_path, writer, error):
    Path(duckdb_path).touch()
    wh = gsc_duckdb.DuckDBWarehouse(duckdb_path, writer=writer)
    with pytest.raises(error, match=r"empty \(0 bytes\).*delete it and run again"):
        wh.ensure_schema([PAGE_QUERY])
    assert Path(duckdb_path).stat().st_size == 0


def _create_and_write(paths: list[str], salt: str, barrier) -> None:
    for path in paths:
        barrier.wait(60)
        wh = gsc_duckdb.DuckDBWarehouse(path, writer="inline")
        wh.ensure_schema([PAGE_QUERY])
        wh.write_partitions([make_batch(n=5, salt=salt, site_url=f"sc-domain:{salt}.example")])
        wh.close()


def test_processes_creating_one_new_duckdb_file_at_once_all_write_it(tmp_path):
    """Four processes meet at each of five new files and write it at once: every one's rows
    land, none meets a half-created file."""
    paths = [str(tmp_path / f"new{i}.duckdb") for i in range(5)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    salts = ["a", "b", "c", "d"]
    procs = [ctx.Process(target=_create_and_write, args=(paths, s, barrier)) for s in salts]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    for path in paths:
        wh = gsc_duckdb.DuckDBWarehouse(path, writer="inline")
        sites = {row[0] for row in table_rows(wh, PAGE_QUERY.table)}
        assert sites == {f"sc-domain:{s}.example" for s in salts}, path
        wh.close()


def _lose_the_first_writers_connection(postgres_url: str, monkeypatch) -> list[int]:
    """The server ends the writer's connection half-way: after the first day's rows are in and
    before its ledger entry (what a restart or failover does to a backfill mid-write). Returns
    the backends that wrote, in order."""
    import psycopg2

    from gsc_pipeline.warehouse.postgres import PostgresConnection

    real_insert = PostgresConnection.insert_arrow
    backends: list[int] = []

    def insert_then_lose_the_connection(self, table, data):
        real_insert(self, table, data)
        pid = self.execute("SELECT pg_backend_pid()").fetchone()[0]
        if pid not in backends:
            backends.append(pid)
        if len(backends) == 1:
            killer = psycopg2.connect(postgres_url)
            killer.autocommit = True
            with killer.cursor() as cur:  # waits (up to 5 s) until the backend has exited
                cur.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
                assert cur.fetchone() == (True,)
            killer.close()

    monkeypatch.setattr(PostgresConnection, "insert_arrow", insert_then_lose_the_connection)
    return backends


@pytest.mark.postgres
def test_a_lost_postgres_connection_retries_the_whole_transaction(
    postgres_url, postgres_schema_url, monkeypatch, caplog
):
    wh = open_warehouse(postgres_schema_url)
    wh.ensure_schema([PAGE_QUERY])
    days = [DAY, DAY + dt.timedelta(days=1)]
    wh.write_partitions([make_batch(day=d, n=2, salt="old", run_id="old") for d in days])
    new = [make_batch(day=d, n=5, salt="new", run_id="new") for d in days]

    backends = _lose_the_first_writers_connection(postgres_url, monkeypatch)
    with caplog.at_level("WARNING", logger="gsc_pipeline.warehouse.base"):
        wh.write_partitions(new)
    monkeypatch.undo()

    assert len(backends) == 2  # the retry ran on a new connection, from the first statement
    expected = [r for b in new for r in b.rows.to_pylist()]
    got = wh.read_sql(f"SELECT * FROM {PAGE_QUERY.table}").to_dict("records")
    assert sorted(got, key=str) == sorted(expected, key=str)  # complete, no duplicate, no old
    ledger = wh.read_sql(f"SELECT date, run_id, rows_returned FROM {LEDGER_TABLE} ORDER BY date")
    assert ledger.values.tolist() == [[d, "new", 5] for d in days]
    (message,) = [r.getMessage() for r in caplog.records]
    assert "connection lost while writing 2 partition(s) (OperationalError: " in message
    assert "retrying the whole transaction on a new connection in " in message


@pytest.mark.postgres
def test_a_lost_connection_shows_in_the_runs_log(
    postgres_url, postgres_schema_url, monkeypatch, tmp_path
):
    """With the shipped instance config, the warehouse's retry warning is in the run's log (the
    UI), not only on the run worker's stderr. (The PostgreSQL instance config and the Helm
    values carry the same `python_logs`: tests/test_deploy.py.)"""
    import dagster as dg

    from gsc_pipeline.instance import write_instance_config

    write_instance_config(tmp_path)
    wh = open_warehouse(postgres_schema_url)
    wh.ensure_schema([PAGE_QUERY])

    @dg.asset
    def writes() -> None:
        wh.write_partitions([make_batch(day=DAY, n=3, salt="x", run_id="x")])

    backends = _lose_the_first_writers_connection(postgres_url, monkeypatch)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        result = dg.materialize([writes], instance=instance)
        messages = [record.user_message for record in instance.all_logs(result.run_id)]
    assert result.success and len(backends) == 2
    assert [m for m in messages if "connection lost while writing 1 partition(s)" in m], messages


def _backend_pid(wh) -> int:
    with wh.transaction() as conn:
        return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


@pytest.mark.postgres
def test_postgres_transactions_keep_their_connection(postgres_schema_url):
    """A transaction takes a kept connection: the server forks no backend per write (~300 a
    30-day run before). A transaction that failed on its SQL leaves it reusable too."""
    import psycopg2

    wh = open_warehouse(postgres_schema_url)
    wh.ensure_schema([PAGE_QUERY])
    first = _backend_pid(wh)
    for i in range(5):
        wh.write_partitions([make_batch(day=DAY + dt.timedelta(days=i), n=3)])
    with pytest.raises(psycopg2.errors.UndefinedTable):
        wh.write_partitions([make_batch(report=SITE)])
    assert _backend_pid(wh) == first
    assert wh.read_sql(f"SELECT count(*) AS n FROM {PAGE_QUERY.table}")["n"].iloc[0] == 15


def _write_in_forked_child(wh) -> None:
    wh.write_partitions([make_batch(day=DAY + dt.timedelta(days=9), n=2, salt="child")])


@pytest.mark.postgres
def test_a_forked_child_leaves_its_parents_kept_connection_alone(postgres_schema_url):
    """A child forked with the warehouse writes on a connection of its own, and exiting does not
    end the parent's kept one (their socket is shared: closing it in the child would)."""
    wh = open_warehouse(postgres_schema_url)
    wh.ensure_schema([PAGE_QUERY])
    kept = _backend_pid(wh)
    child = multiprocessing.get_context("fork").Process(target=_write_in_forked_child, args=(wh,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert _backend_pid(wh) == kept
    assert wh.read_sql(f"SELECT count(*) AS n FROM {PAGE_QUERY.table}")["n"].iloc[0] == 2


@pytest.mark.postgres
def test_a_kept_connection_the_server_ended_is_replaced(postgres_url, postgres_schema_url, caplog):
    """The server ends the idle kept connection (a restart, an idle timeout): the next write
    retries on a new connection, whole, and the data is complete."""
    import psycopg2

    wh = open_warehouse(postgres_schema_url)
    wh.ensure_schema([PAGE_QUERY])
    kept = _backend_pid(wh)
    killer = psycopg2.connect(postgres_url)
    killer.autocommit = True
    with killer.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s, 5000)", (kept,))
        assert cur.fetchone() == (True,)
    killer.close()
    with caplog.at_level("WARNING", logger="gsc_pipeline.warehouse.base"):
        wh.write_partitions([make_batch(day=DAY, n=4, salt="new", run_id="new")])
    assert _backend_pid(wh) != kept
    assert wh.read_sql(f"SELECT count(*) AS n FROM {PAGE_QUERY.table}")["n"].iloc[0] == 4
    assert [r for r in caplog.records if "connection lost while writing 1 partition" in r.message]


@pytest.mark.postgres
def test_sql_errors_are_not_retried_as_connection_errors(postgres_schema_url):
    wh = open_warehouse(postgres_schema_url)
    wh.ensure_schema([PAGE_QUERY])  # the site report's table does not exist
    real_transaction = wh.transaction
    transactions = []

    def counted():
        transactions.append(1)
        return real_transaction()

    wh.transaction = counted
    import psycopg2

    with pytest.raises(psycopg2.errors.UndefinedTable):
        wh.write_partitions([make_batch(report=SITE)])
    assert len(transactions) == 1
