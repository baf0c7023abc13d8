"""The instance storages: on PostgreSQL a pool slot row is never granted to two steps; on both
PostgreSQL and SQLite (the local instance) the databases' connections are kept, not opened per
event or query, and a storage looks its own schema up once, not before every event."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as db
from dagster._utils.concurrency import ConcurrencySlotStatus
from dagster_postgres.event_log import PostgresEventLogStorage
from sqlalchemy.engine import Engine

from gsc_pipeline.instance import write_instance_config
from gsc_pipeline.instance.storage import GscPostgresRunStorage, PoolSafePostgresEventLogStorage


def _claim_while_another_claims(storage_class, url: str) -> list[ConcurrencySlotStatus]:
    """Step A selects the only free slot; before A updates it, step B claims. Both outcomes.

    Deterministic stand-in for two hosts claiming at once: B's whole claim runs between A's
    SELECT .. FOR UPDATE and A's UPDATE (the window a network round trip opens).
    """
    a, b = storage_class(url), storage_class(url)
    a.set_concurrency_slots("gsc_api", 1)
    outcomes: list[ConcurrencySlotStatus] = []

    def between(conn, cursor, statement, params, context, executemany) -> None:
        if "FOR UPDATE SKIP LOCKED" in statement and not outcomes:
            outcomes.append(b._claim_concurrency_slot("gsc_api", "run-b", "step_b"))

    db.event.listen(a._engine, "after_cursor_execute", between)
    try:
        outcomes.insert(0, a._claim_concurrency_slot("gsc_api", "run-a", "step_a"))
    finally:
        db.event.remove(a._engine, "after_cursor_execute", between)
        a.dispose()
        b.dispose()
    return outcomes


def test_stock_postgres_storage_grants_one_slot_twice(postgres_schema_url):
    # The cause of the multi-host flake: Dagster's claim, in autocommit, double-grants the slot.
    outcomes = _claim_while_another_claims(PostgresEventLogStorage, postgres_schema_url)
    assert outcomes == [ConcurrencySlotStatus.CLAIMED, ConcurrencySlotStatus.CLAIMED]


def test_pool_safe_storage_grants_a_slot_once(postgres_schema_url):
    outcomes = _claim_while_another_claims(PoolSafePostgresEventLogStorage, postgres_schema_url)
    assert outcomes == [ConcurrencySlotStatus.CLAIMED, ConcurrencySlotStatus.BLOCKED]


def test_pool_safe_storage_claims_and_frees_through_the_queue(postgres_schema_url):
    storage = PoolSafePostgresEventLogStorage(postgres_schema_url)
    try:
        storage.set_concurrency_slots("gsc_api", 1)
        assert storage.claim_concurrency_slot("gsc_api", "run-a", "step").is_claimed
        assert not storage.claim_concurrency_slot("gsc_api", "run-b", "step").is_claimed
        storage.free_concurrency_slot_for_step("run-a", "step")
        assert storage.claim_concurrency_slot("gsc_api", "run-b", "step").is_claimed
        assert storage.get_concurrency_info("gsc_api").active_slot_count == 1
    finally:
        storage.dispose()


def test_postgres_instance_uses_the_pool_safe_storage(postgres_schema_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_schema_url)
    write_instance_config(tmp_path, postgres=True)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.event_log_storage) is PoolSafePostgresEventLogStorage


def _connections_opened(home, events: int) -> tuple[int, int]:
    """(Database connections opened, events read back) for `events` asset events stored and as
    many run queries, on the instance of `home`."""
    opened = []

    def count(dbapi_connection, connection_record) -> None:
        opened.append(1)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        db.event.listen(Engine, "connect", count)
        try:
            for day in range(events):
                instance.report_runless_asset_event(
                    dg.AssetMaterialization("gsc/example/page", partition=f"2026-10-{day + 1:02d}")
                )
                instance.get_runs(limit=1)
        finally:
            db.event.remove(Engine, "connect", count)
        stored = instance.fetch_materializations(dg.AssetKey(["gsc", "example", "page"]), 100)
        return len(opened), len(stored.records)


def test_local_instance_keeps_its_sqlite_connections(tmp_path):
    """Dagster's SQLite storages open a new engine and connection per query (two per asset
    event: the run's database and the index); the local instance keeps them open."""
    write_instance_config(tmp_path, workspace=False)
    opened, stored = _connections_opened(tmp_path, events=20)
    assert stored == 20
    # Stock storage: 60 (20 x (run database + index + runs)); kept: a few per database.
    assert opened <= 6, opened


def test_postgres_instance_keeps_a_connection(postgres_schema_url, tmp_path, monkeypatch):
    """Dagster's PostgreSQL storages connect anew for every query (a new server process each):
    the event log and the run storage keep one connection each."""
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_schema_url)
    write_instance_config(tmp_path, postgres=True)
    opened, stored = _connections_opened(tmp_path, events=20)
    assert stored == 20
    # Stock storages: 40 or more (20 x (event log + runs)); kept: one per storage.
    assert opened <= 3, opened
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.get_runs(limit=1)
        kept = instance.run_storage._engine.pool
        assert kept.checkedin() == 1
    assert kept.checkedin() == 0  # closed with the instance


def test_local_instance_commits_without_an_fsync_each(tmp_path):
    """Dagster's databases are in WAL mode; the kept connections commit with SQLite's WAL
    setting (synchronous NORMAL = 1) instead of the default FULL (2), whose fsync per commit
    every event of a run paid."""
    write_instance_config(tmp_path, workspace=False)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        instance.get_runs(limit=1)
        storages = {
            "runs": instance.run_storage,
            "index": instance.event_log_storage,
            "schedules": instance.schedule_storage,
        }
        settings = {}
        for name, storage in storages.items():
            connect = storage.index_connection if name == "index" else storage.connect
            with connect() as conn:
                journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                settings[name] = (journal, conn.exec_driver_sql("PRAGMA synchronous").scalar())
    assert settings == {name: ("wal", 1) for name in storages}, settings


def test_a_users_own_storage_section_replaces_the_pooled_storage(tmp_path):
    write_instance_config(tmp_path, workspace=False)
    with (tmp_path / "dagster.yaml").open("a") as out:
        out.write(f"storage:\n  sqlite:\n    base_dir: {tmp_path / 'theirs'}\n")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert (tmp_path / "theirs").is_dir()


_SCHEMA_QUERIES = ("table_info", "table_xinfo", "pg_class", "secondary_indexes")


@contextmanager
def _schema_lookups() -> Iterator[list[str]]:
    """The storages' questions about their own schema inside the block: SQLAlchemy's has_table
    and get_columns (PRAGMA table_info on SQLite, pg_class / pg_attribute on PostgreSQL) and
    Dagster's built-index lookups (its secondary_indexes table)."""
    asked: list[str] = []

    def count(conn, cursor, statement, params, context, executemany) -> None:
        if any(s in statement for s in _SCHEMA_QUERIES):
            asked.append(statement)

    db.event.listen(Engine, "before_cursor_execute", count)
    try:
        yield asked
    finally:
        db.event.remove(Engine, "before_cursor_execute", count)


def _lookups_storing_events(instance: dg.DagsterInstance, days: int) -> int:
    """Schema lookups while a check evaluation and a materialization per day are stored and the
    runs queried as the daemon's run queue does, after a first day (which creates the databases
    and their tables, looking each table up)."""
    asset_key = dg.AssetKey(["gsc", "example", "page"])
    check = dg.AssetCheckKey(asset_key, "no_missing_batches")

    def store(day: int) -> None:
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=asset_key, check_name=check.name, passed=True, metadata={"day": day}
            )
        )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key, partition=f"2026-10-{day + 1:02d}")
        )
        instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]), limit=5)

    store(0)
    with _schema_lookups() as asked:
        for day in range(1, days + 1):
            store(day)
    stored = instance.event_log_storage.get_asset_check_execution_history(check, limit=100)
    assert len(stored) == days + 1
    assert len(instance.fetch_materializations(asset_key, 100).records) == days + 1
    return len(asked)


def test_local_instance_looks_its_schema_up_once(tmp_path):
    """Dagster's storages ask about their own schema before every check evaluation (has_table),
    every asset event (the asset keys table's columns) and every runs query (the runs table's
    columns), and on SQLite each has_table opens a new engine. Stock storages (9056179): 60
    lookups for these 20 days, 40 on PostgreSQL. A yes stays known; a no (a migration may add
    the table later) is asked again."""
    write_instance_config(tmp_path, workspace=False)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert _lookups_storing_events(instance, days=20) == 0
        for _ in range(2):
            with _schema_lookups() as asked:
                assert not instance.event_log_storage.has_table("gsc_no_such_table")
            assert asked


def test_postgres_instance_looks_its_schema_up_once(postgres_schema_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_schema_url)
    write_instance_config(tmp_path, postgres=True)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage) is GscPostgresRunStorage
        assert _lookups_storing_events(instance, days=20) == 0


_DAYS = ("2026-01-01", "2026-01-30")
_RUN_A = "0b9c1f8e-5d1a-4c0e-9a57-3f1f7f0e2a11"
_RUN_B = "6f2d4c3b-8a9e-4f1d-b2c7-1e5a9d0c3b44"
_CHECK_PLANNED = dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
_PLANNED_TYPES = {
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
}


def _ranged_job() -> dg.JobDefinition:
    """3 daily-partitioned assets with 2 checks each, as a fetch step carries them."""
    specs = [dg.AssetSpec(f"report_{i}", partitions_def=dg.DailyPartitionsDefinition("2026-01-01"))
             for i in range(3)]  # fmt: skip
    checks = [dg.AssetCheckSpec(name, asset=s.key) for s in specs for name in ("rows", "batches")]

    @dg.multi_asset(specs=specs, check_specs=checks)
    def fetch():
        yield from ()

    return dg.Definitions(assets=[fetch]).resolve_implicit_global_asset_job_def()


@contextmanager
def _transactions() -> Iterator[dict[str, int]]:
    """Commits (SQLite) and connections taken from a pool (each a round trip on PostgreSQL:
    pre-ping) inside the block."""
    counted = {"commits": 0, "checkouts": 0}

    def commit(conn) -> None:
        counted["commits"] += 1

    def checkout(dbapi_connection, record, proxy) -> None:
        counted["checkouts"] += 1

    db.event.listen(Engine, "commit", commit)
    db.event.listen(db.pool.Pool, "checkout", checkout)
    try:
        yield counted
    finally:
        db.event.remove(Engine, "commit", commit)
        db.event.remove(db.pool.Pool, "checkout", checkout)


def _create_ranged_run(instance: dg.DagsterInstance, run_id: str) -> tuple[dict, list[tuple]]:
    """Creates a 30-day run of `_ranged_job` as the backfill daemon does (its planned events
    logged by Dagster's create_run); (`_transactions` of it, the run's planned check rows)."""
    tags = {"dagster/asset_partition_range_start": _DAYS[0],
            "dagster/asset_partition_range_end": _DAYS[1]}  # fmt: skip
    with _transactions() as counted:
        instance.create_run_for_job(_ranged_job(), run_id=run_id, tags=tags)
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable as T

    with instance.event_log_storage.index_connection() as conn:
        rows = conn.execute(
            db.select(T.c.asset_key, T.c.check_name, T.c.partition, T.c.run_id,
                      T.c.execution_status, T.c.evaluation_event_storage_id)
            .where(T.c.run_id == run_id)
            .order_by(T.c.asset_key, T.c.check_name, T.c.partition)
        ).fetchall()  # fmt: skip
    return counted, [tuple(r) for r in rows]


def _batching(monkeypatch, batch_size: str | None) -> None:
    """Dagster's event batching as DAGSTER_EVENT_BATCH_SIZE sets it ("0": off, each event
    stored on its own), or (None) the project's instance default (on)."""
    if batch_size is None:
        monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    else:
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch_size)


def _batching_off_then_on(tmp_path, monkeypatch) -> Iterator[tuple[str, Path]]:
    """(mode, a fresh local instance's home) with batching off, then on."""
    for mode, batch_size in (("one by one", "0"), ("batched", None)):
        _batching(monkeypatch, batch_size)
        home = tmp_path / mode.replace(" ", "_")
        write_instance_config(home, workspace=False)
        yield mode, home


def _planned_events(instance: dg.DagsterInstance, run_id: str) -> list[tuple]:
    records = instance.get_records_for_run(run_id, of_type=_PLANNED_TYPES).records
    return [(r.storage_id, r.event_log_entry.dagster_event_type,
             r.event_log_entry.dagster_event.asset_key, r.event_log_entry.dagster_event.partition)
            for r in records]  # fmt: skip


def test_local_instance_stores_a_runs_plans_in_one_transaction(tmp_path, monkeypatch):
    """Creating a 30-day run of 3 assets with 2 checks each logs 96 planned events; Dagster
    stores each on its own (three transactions on two databases) and a planned check's rows
    with the event serialized per day. The local instance stores the batch in one transaction
    per database, and the same rows: the events, their index ids, the checks' planned rows."""
    stored = {}
    for mode, home in _batching_off_then_on(tmp_path, monkeypatch):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            counted, check_rows = _create_ranged_run(instance, _RUN_A)
            events = _planned_events(instance, _RUN_A)
            keys = instance.get_asset_keys()
            planned = instance.event_log_storage.get_latest_planned_materialization_info(
                dg.AssetKey("report_1"), "2026-01-17"
            )
        stored[mode] = (counted["commits"], check_rows, events, sorted(keys), planned.run_id)
    (commits_each, *each), (commits_batched, *batched) = stored.values()
    assert each == batched
    check_rows, events, *_ = batched
    assert len(events) == 3 * 30 + 6
    assert len(check_rows) == 6 * 30
    assert {r[2] for r in check_rows} == {f"2026-01-{d:02d}" for d in range(1, 31)}
    assert {r[4] for r in check_rows} == {"PLANNED"}
    # Measured: 12 in all batched (the run's row, snapshots and new database, then 2 for the
    # events), 208 one by one (5b5c641 too).
    assert commits_each >= 2 * len(events), commits_each
    assert commits_batched <= 15, (commits_batched, commits_each)


def test_postgres_instance_stores_a_runs_plans_in_one_transaction(
    postgres_schema_url, tmp_path, monkeypatch
):
    """As on SQLite: the same rows, and the batch on one connection taken from the pool once
    (each taking is a round trip: the kept connection is pinged before use)."""
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_schema_url)
    write_instance_config(tmp_path, postgres=True)
    stored = {}
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        for run_id, batch_size in ((_RUN_B, "0"), (_RUN_A, None)):
            _batching(monkeypatch, batch_size)
            counted, check_rows = _create_ranged_run(instance, run_id)
            events = _planned_events(instance, run_id)
            checks = {e[0] for e in events if e[1] == _CHECK_PLANNED}
            assert {r[5] for r in check_rows} == checks  # each row points at its planned event
            stored[run_id] = (counted["checkouts"], [r[:3] + r[4:5] for r in check_rows],
                              [e[1:] for e in events])  # fmt: skip
    (checkouts_each, *each), (checkouts_batched, *batched) = stored[_RUN_B], stored[_RUN_A]
    assert each == batched
    check_rows, events = batched
    assert len(events) == 3 * 30 + 6
    assert len(check_rows) == 6 * 30
    # Measured: 6 in all batched, 202 one by one (197 on 5b5c641, batching off).
    assert checkouts_each >= 2 * len(events), checkouts_each
    assert checkouts_batched <= 15, (checkouts_batched, checkouts_each)


def test_local_instance_stores_a_ranged_steps_materializations_together(tmp_path, monkeypatch):
    """A step run over 30 days reports each asset's materializations as one batch (one event
    per day); the local instance stores it in a transaction per database, with the same rows."""
    daily = dg.DailyPartitionsDefinition("2026-01-01")
    specs = [dg.AssetSpec(f"report_{i}", partitions_def=daily) for i in range(3)]

    @dg.multi_asset(specs=specs)
    def fetch():
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key, metadata={"rows": 1})

    job = dg.Definitions(assets=[fetch]).resolve_implicit_global_asset_job_def()
    tags = {"dagster/asset_partition_range_start": _DAYS[0],
            "dagster/asset_partition_range_end": _DAYS[1]}  # fmt: skip
    stored = {}
    for mode, home in _batching_off_then_on(tmp_path, monkeypatch):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            with _transactions() as counted:
                assert job.execute_in_process(instance=instance, tags=tags).success
            records = instance.fetch_materializations(dg.AssetKey("report_2"), 100).records
            days = instance.get_materialized_partitions(dg.AssetKey("report_0"))
            latest = instance.get_latest_materialization_event(dg.AssetKey("report_1"))
            stored[mode] = (counted["commits"], sorted(r.partition_key for r in records),
                            sorted(days), latest.dagster_event.partition)  # fmt: skip
    (commits_each, *each), (commits_batched, *batched) = stored.values()
    assert each == batched
    assert len(batched[0]) == 30 and len(batched[1]) == 30
    # The run's planned events, its steps' events and the materializations. Measured: 38
    # commits in all batched, 390 one by one (5b5c641 too).
    assert commits_batched * 4 < commits_each, (commits_batched, commits_each)


def _check_records(instance: dg.DagsterInstance) -> list[tuple]:
    """The check records a run left, as the UI reads them: status, day, the evaluation's
    verdict and metadata, and whether its stored event is the event log's row of it."""
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable as T
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable as E

    with instance.event_log_storage.index_connection() as conn:
        rows = conn.execute(
            db.select(T.c.check_name, T.c.partition, T.c.execution_status, T.c.evaluation_event,
                      E.c.event)
            .select_from(T.outerjoin(E, E.c.id == T.c.evaluation_event_storage_id))
            .order_by(T.c.check_name, T.c.partition)
        ).fetchall()  # fmt: skip
    out = []
    for name, day, status, stored, logged in rows:
        data = dg.deserialize_value(stored).dagster_event.event_specific_data
        verdict = getattr(data, "passed", None)
        out.append((name, day, status, verdict, dict(getattr(data, "metadata", {})),
                    stored == logged))  # fmt: skip
    return out


def test_check_records_are_dagsters(tmp_path):
    """A ranged run's per-day check evaluations leave the same check records on the local
    instance as on Dagster's own SQLite storage, each holding the event its log row holds
    (serialized once, not twice)."""
    daily = dg.DailyPartitionsDefinition("2026-01-01")
    spec = dg.AssetSpec("report", partitions_def=daily)

    @dg.multi_asset(specs=[spec], check_specs=[dg.AssetCheckSpec("rows", asset="report")],
                    can_subset=True)
    def fetch(context):  # noqa: ANN001, ANN202
        yield dg.MaterializeResult(asset_key=spec.key)
        for day in context.partition_keys:
            yield dg.AssetCheckEvaluation(asset_key=spec.key, check_name="rows",
                                          passed=day != "2026-01-02", metadata={"day": day},
                                          partition=day)  # fmt: skip

    job = dg.Definitions(assets=[fetch]).resolve_implicit_global_asset_job_def()
    tags = {"dagster/asset_partition_range_start": _DAYS[0],
            "dagster/asset_partition_range_end": "2026-01-05"}  # fmt: skip
    records, commits = [], []
    for home in (tmp_path / "stock", tmp_path / "local"):
        home.mkdir()
        if home.name == "local":
            write_instance_config(home, workspace=False)
            instance_cm = dg.DagsterInstance.from_config(str(home))
        else:
            instance_cm = dg.instance_for_test(temp_dir=str(home))
        with instance_cm as instance:
            assert type(instance).__name__ == ("GscInstance" if home.name == "local"
                                               else "DagsterInstance")  # fmt: skip
            with _transactions() as counted:
                assert job.execute_in_process(instance=instance, tags=tags).success
            records.append(_check_records(instance))
            commits.append(counted["commits"])
    stock, local = records
    # Commits for the whole run: Dagster's storage 72; the local instance 48 before a check
    # evaluation's two index writes shared a transaction (5 evaluations: 5 fewer), now 43.
    assert commits[1] <= 43, commits
    assert local == stock
    assert [r[:4] for r in local][:2] == [("rows", "2026-01-01", "SUCCEEDED", True),
                                          ("rows", "2026-01-02", "FAILED", False)]  # fmt: skip
    assert len(local) == 5 and all(r[5] for r in local)


def _checked_job() -> dg.JobDefinition:
    """One daily asset with 2 checks, evaluated per day as a fetch step does (2026-01-02's
    `rows` fails), a log line between the two checks' evaluations."""
    daily = dg.DailyPartitionsDefinition("2026-01-01")
    spec = dg.AssetSpec("report", partitions_def=daily)
    checks = [dg.AssetCheckSpec(name, asset="report") for name in ("rows", "batches")]

    @dg.multi_asset(specs=[spec], check_specs=checks, can_subset=True)
    def fetch(context):  # noqa: ANN001, ANN202
        yield dg.MaterializeResult(asset_key=spec.key)
        for name in ("rows", "batches"):
            for day in context.partition_keys:
                yield dg.AssetCheckEvaluation(
                    asset_key=spec.key, check_name=name, partition=day, metadata={"day": day},
                    passed=(name, day) != ("rows", "2026-01-02"),
                )  # fmt: skip
            context.log.info(f"{name} evaluated")

    return dg.Definitions(assets=[fetch]).resolve_implicit_global_asset_job_def()


def _stored_evaluations(instance: dg.DagsterInstance, run_id: str) -> tuple[list, list]:
    """(The run's events in storage order as (kind, check, day, log message), its check
    records as `_check_records` reads them)."""
    events = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        kind = event.event_type_value if event else "log"
        data = event.event_specific_data if event else None
        check = (data.check_name, data.partition) if kind == "ASSET_CHECK_EVALUATION" else ()
        events.append((kind, *check, "" if event else entry.user_message))
    return events, _check_records(instance)


def _run_checked_job(instance: dg.DagsterInstance) -> tuple[dict, str]:
    tags = {"dagster/asset_partition_range_start": _DAYS[0],
            "dagster/asset_partition_range_end": _DAYS[1]}  # fmt: skip
    with _transactions() as counted:
        result = _checked_job().execute_in_process(instance=instance, tags=tags)
    assert result.success
    return counted, result.run_id


def _assert_evaluations_stored_as_emitted(events: list[tuple]) -> None:
    kinds = [e[0] for e in events]
    evaluations = [e[1:3] for e in events if e[0] == "ASSET_CHECK_EVALUATION"]
    days = [f"2026-01-{d:02d}" for d in range(1, 31)]
    assert evaluations == [(n, d) for n in ("rows", "batches") for d in days]
    # Each check's evaluations come before the log line after them, all before the step ends.
    rows_logged = next(i for i, e in enumerate(events) if e[-1] == "rows evaluated")
    assert kinds[rows_logged - 30 : rows_logged] == ["ASSET_CHECK_EVALUATION"] * 30
    assert kinds.index("STEP_SUCCESS") > max(
        i for i, kind in enumerate(kinds) if kind == "ASSET_CHECK_EVALUATION"
    )


def test_local_instance_stores_a_steps_check_evaluations_together(tmp_path, monkeypatch):
    """A ranged step's 60 per-day check evaluations: Dagster stores each on its own (two
    commits each); the local instance holds them until the step's next event and stores them
    in one transaction per database, in the order they came, with the same records."""
    stored = {}
    for mode, home in _batching_off_then_on(tmp_path, monkeypatch):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            counted, run_id = _run_checked_job(instance)
            stored[mode] = (counted["commits"], *_stored_evaluations(instance, run_id))
    (commits_each, *each), (commits_batched, *batched) = stored.values()
    assert each == batched
    events, records = batched
    _assert_evaluations_stored_as_emitted(events)
    assert len(records) == 60 and all(r[5] for r in records)
    assert [r[:4] for r in records if not r[3]] == [("rows", "2026-01-02", "FAILED", False)]
    # Stored one by one, each of the 60 evaluations takes a commit at least. Measured for the
    # whole run: 213 commits with no batching, 92 with only Dagster's batches (23c6a99), 34
    # with the evaluations held.
    assert commits_batched < 60, (commits_batched, commits_each)


def test_postgres_instance_stores_a_steps_check_evaluations_together(
    postgres_schema_url, tmp_path, monkeypatch
):
    """As on SQLite: the same events in the same order and the same check records, the held
    evaluations on one connection taken from the pool (a round trip each: pre-ping)."""
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_schema_url)
    write_instance_config(tmp_path, postgres=True)
    stored = []
    for batch_size in ("0", None):
        _batching(monkeypatch, batch_size)
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            instance.wipe()
            counted, run_id = _run_checked_job(instance)
            stored.append((counted["checkouts"], *_stored_evaluations(instance, run_id)))
    (checkouts_each, *each), (checkouts_batched, *batched) = stored
    assert each == batched
    events, records = batched
    _assert_evaluations_stored_as_emitted(events)
    assert len(records) == 60 and all(r[5] for r in records)
    # Measured for the whole run: 278 checkouts with no batching, 156 with only Dagster's
    # batches (23c6a99), 40 with the evaluations held.
    assert checkouts_batched < 60, (checkouts_batched, checkouts_each)
