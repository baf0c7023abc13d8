"""Instance storages: PostgreSQL's pool slot claim made atomic, SQLite's connections kept.

**PostgreSQL** (`PoolSafePostgresEventLogStorage`): a pool slot claim that cannot be
double-granted.

Dagster 1.13's `_claim_concurrency_slot` selects a free slot row `FOR UPDATE SKIP LOCKED`, then
updates it by id. On PostgreSQL `index_connection()` is in autocommit mode, so the row lock ends
with the SELECT: two steps claiming at once (on separate hosts, the round trips widen the window)
can select the same free row and both "claim" it, and a pool of limit 2 runs 3 steps.
tests/test_instance_storage.py replays that interleaving; Dagster's own review of the same
autocommit pitfall (in pending-step assignment): dagster-io/dagster#34092.

Here the select and the update run in one transaction, and the update only takes a row that is
still free, so a slot row is held by at most one step whatever the timing.

**SQLite** (`GscInstance`, the local instance of the demo, the bench and `gsc-pipeline ui`):
Dagster's SQLite storages create a SQLAlchemy engine for every connection, open the database
file, and close and dispose of both after the query. Per event a run stores (two databases for
an asset event: the run's and the index) that cost 16 ms of CPU; a backfill run writes ~1,800
events, the daemon writes ~300 planned events to create each run (one after another: the next
run is created after), and polls the run database every second. Here each database keeps one
engine with a small connection pool: 4.7 ms per asset event (`scripts/measure_daemon_cpu.py`,
docs/bench/ab-p20p20daemon.md). SQLite still locks per transaction across processes; an idle
pooled connection holds no lock. Commits do not fsync (`synchronous=NORMAL`, the WAL
setting SQLite recommends; see `_commit_without_fsync`).

**Both**: Dagster's storages ask about their own schema (a table, a column, a built index)
before many writes and queries, with a catalog query each time; here a yes is remembered
(`_SchemaFactsStay`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, nullcontext
from typing import Any

import dagster as dg
import sqlalchemy as db
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.events import (
    ASSET_EVENTS,
    BATCH_WRITABLE_EVENTS,
    DagsterEventBatchMetadata,
    DagsterEventType,
    generate_event_batch_id,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    ConcurrencySlotsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
)
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sqlalchemy_compat import db_select
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster._utils.concurrency import ConcurrencySlotStatus
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool


class _SchemaFactsStay:
    """Dagster asks its storages about their own schema before many reads and writes, each time
    with a catalog query (on SQLite on a new engine and connection): `has_table` before every
    check evaluation and planned check stored, the asset keys table's columns before every
    asset event, the runs table's columns before every run status event and every runs query
    (the daemon's run queue asks every second). A fetch run stores ~1,100 check events: the
    `has_table` asks alone cost ~3% of its CPU (py-spy, docs/bench/README.md, issue 14 stop 28).
    Migrations add tables, columns and built indexes and never take them away, so a yes is
    remembered for the storage's life; a no is asked again (a migration may add it)."""

    def _known_yes(self, fact: object, ask: Callable[[], bool]) -> bool:
        known = self.__dict__.setdefault("_schema_facts", set())
        if fact in known:
            return True
        if ask():
            known.add(fact)
            return True
        return False

    def _forget_schema_facts(self) -> None:
        self.__dict__.pop("_schema_facts", None)


class _EventLogSchemaFactsStay(_SchemaFactsStay):
    def has_table(self, table_name: str) -> bool:
        ask = super().has_table  # type: ignore[misc]
        return self._known_yes(("table", table_name), lambda: ask(table_name))

    def has_secondary_index(self, name: str) -> bool:
        ask = super().has_secondary_index  # type: ignore[misc]
        return self._known_yes(("index", name), lambda: ask(name))

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        ask = super()._has_asset_key_col_on_connection  # type: ignore[misc]
        return self._known_yes(("asset_keys", column_name), lambda: ask(conn, column_name))


class _RunSchemaFactsStay(_SchemaFactsStay):
    def has_built_index(self, migration_name: str) -> bool:
        ask = super().has_built_index  # type: ignore[misc]
        return self._known_yes(("index", migration_name), lambda: ask(migration_name))

    def has_run_stats_index_cols(self) -> bool:
        return self._known_yes("run_stats_cols", super().has_run_stats_index_cols)  # type: ignore[misc]

    def has_bulk_actions_selector_cols(self) -> bool:
        return self._known_yes("selector_cols", super().has_bulk_actions_selector_cols)  # type: ignore[misc]

    def has_backfill_id_column(self) -> bool:
        return self._known_yes("backfill_id", super().has_backfill_id_column)  # type: ignore[misc]

    def has_bulk_action_job_name_column(self) -> bool:
        return self._known_yes("job_name", super().has_bulk_action_job_name_column)  # type: ignore[misc]

    def has_backfill_tags_table(self) -> bool:
        return self._known_yes("backfill_tags", super().has_backfill_tags_table)  # type: ignore[misc]


# What Dagster logs in one batch when a run is created (`_log_asset_planned_events`): a planned
# event per asset and partition of the run, and one per check with the run's partitions.
_PLANNED = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
    }
)


def _is_check_evaluation(event: EventLogEntry) -> bool:
    return (
        event.is_dagster_event
        and event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    )


_CHECK_EVALUATIONS = frozenset({DagsterEventType.ASSET_CHECK_EVALUATION})

# Dagster flushes a batch at its last event (a run's planned events, a ranged step's
# materializations of one asset, the check evaluations `GscInstance` holds) or at this many. A
# batch is one transaction: on SQLite the index database's write lock is held for it.
EVENT_BATCH_SIZE = 500


class _LeanerEventWrites:
    """A run's planned events in one transaction, each check record's event serialized once.

    Creating a run (the backfill daemon, a sensor, the UI) logs one planned event per asset and
    partition and one per check; a 30-day run of 9 assets with 4 checks each logs 306. Dagster
    stores them one by one: on SQLite three transactions on two databases per event, and for a
    planned check a multi-row INSERT compiled anew with the whole event serialized once per
    partition (30 times). py-spy of the daemon over the standard bench: creating the 4 runs was
    6.0-7.4 of its 11-15 CPU s (docs/bench/README.md, issue 14 stop 29).

    Here a batch of planned events (`GscInstance` turns Dagster's event batching on) is stored
    in one transaction per database, with the same rows Dagster writes for each event; and a
    planned check's rows share one serialization and one statement (`executemany`). On SQLite
    a ranged step's materializations (one batch per asset, an event per day) go the same way;
    on PostgreSQL Dagster's own batch insert takes them. A check evaluation (1,080 in a 30-day
    run) writes the index on one connection (`store_event`), and updates its check's record
    with the serialization of its own row, not a second one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._serialized = threading.local()
        # The index connection a check evaluation's writes share (`store_event`), per thread.
        self._held = threading.local()
        super().__init__(*args, **kwargs)

    def _index_for_one_event(self) -> ContextManager[Connection]:
        raise NotImplementedError

    def _held_index(self) -> Connection | None:
        return getattr(self._held, "index", None)

    def store_event(self, event: EventLogEntry) -> None:
        """A check evaluation's writes to the index on one connection: the parent takes one
        for each (mirroring the event, then its check's record), which on SQLite is a commit
        each and on PostgreSQL a connection taken from the pool and pinged each."""
        if not _is_check_evaluation(event) or self._held_index() is not None:
            super().store_event(event)  # type: ignore[misc]
            return
        with self._on_one_index_connection(self._index_for_one_event()):
            super().store_event(event)  # type: ignore[misc]

    @contextmanager
    def _on_one_index_connection(self, connection: ContextManager[Connection]) -> Iterator[None]:
        """Inside, this thread's index writes go to `connection` (entered here)."""
        with connection as conn:
            self._held.index = conn
            try:
                yield
            finally:
                self._held.index = None

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            self._insert_check_plan(conn, event, event_id)

    def _insert_check_plan(
        self, conn: Connection, event: EventLogEntry, event_id: int | None
    ) -> None:
        planned = event.get_dagster_event().asset_check_planned_data
        subset = planned.partitions_subset
        common = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),  # type: ignore[attr-defined]
            "evaluation_event_storage_id": event_id,
        }
        partitions = subset.get_partition_keys() if subset else [None]
        conn.execute(
            AssetCheckExecutionsTable.insert(), [{**common, "partition": p} for p in partitions]
        )

    def _event_to_row(self, event: EventLogEntry) -> dict[str, Any]:
        row = super()._event_to_row(event)  # type: ignore[misc]
        self._serialized.last = (event, row["event"])
        return row

    def _update_asset_check_evaluation(self, event: EventLogEntry, event_id: int | None) -> None:
        """Dagster's (its check's record: the planned one updated, or a new one), with the
        event serialized once: store_event serialized it for its own row a moment before and
        Dagster serializes it again here (a quarter of a check evaluation's storing CPU)."""
        last = getattr(self._serialized, "last", None)
        serialized = last[1] if last is not None and last[0] is event else serialize_value(event)
        evaluation = event.get_dagster_event().asset_check_evaluation_data
        status = (
            AssetCheckExecutionRecordStatus.SUCCEEDED.value
            if evaluation.passed
            else AssetCheckExecutionRecordStatus.FAILED.value
        )
        target = evaluation.target_materialization_data
        values = {
            "execution_status": status,
            "evaluation_event": serialized,
            "evaluation_event_timestamp": self._event_insert_timestamp(event),  # type: ignore[attr-defined]
            "evaluation_event_storage_id": event_id,
            "materialization_event_storage_id": target.storage_id if target else None,
            "partition": evaluation.partition,
        }
        t = AssetCheckExecutionsTable.c
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            updated = conn.execute(
                AssetCheckExecutionsTable.update()
                .where(
                    db.and_(
                        t.asset_key == evaluation.asset_key.to_string(),
                        t.check_name == evaluation.check_name,
                        t.run_id == event.run_id,
                        self._get_asset_check_partition_filter_clause(  # type: ignore[attr-defined]
                            PartitionKeyFilter(key=evaluation.partition)
                        ),
                    )
                )
                .values(**values)
            ).rowcount
            if updated == 0:
                conn.execute(
                    AssetCheckExecutionsTable.insert().values(
                        asset_key=evaluation.asset_key.to_string(),
                        check_name=evaluation.check_name,
                        run_id=event.run_id,
                        **values,
                    )
                )

    def _of_one_run(self, events: Sequence[EventLogEntry], kinds: frozenset | set) -> bool:
        """Whether `events` are all of one run and of `kinds` (and checks can be stored)."""
        return (
            len({e.run_id for e in events}) == 1
            and all(e.is_dagster_event and e.dagster_event_type in kinds for e in events)
            and self.supports_asset_checks  # type: ignore[attr-defined]
        )


class _KeepsAPostgresConnection:
    """A dagster-postgres storage built from its config as this class (the parents build
    themselves by name), keeping one connection open between queries.

    Dagster's PostgreSQL storages connect anew for every query (NullPool: no connection held
    per instance). A run stores ~1,800 events, each a new connection and a new server process:
    per check evaluation stored 15-23 ms of wall and 5-7 ms of the run's CPU, of which opening
    the connection ~40% (py-spy; `scripts/measure_event_storage.py --storage pooled-postgres`,
    docs/bench/README.md, issue 14 stop 28). One kept connection per storage and process (more
    only while threads query at once, closed after), checked before use (a server restart
    drops it) and renewed hourly (IAM tokens expire). The event log and the run storage keep
    one each: a run worker or the daemon holds 2 idle connections, not 0; count them against
    PostgreSQL's `max_connections` (the webserver already keeps its own, as Dagster does)."""

    postgres_url: str
    _token_provider: Any
    _engine: Engine

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stateless, self._engine = self._engine, create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=16,
            pool_pre_ping=True,
            pool_recycle=3600,
        )
        stateless.dispose()

    def optimize_for_webserver(self, *args: Any, **kwargs: Any) -> None:
        # Dagster's webserver swaps in an engine of its own; the kept connection is closed.
        kept = self._engine
        super().optimize_for_webserver(*args, **kwargs)  # type: ignore[misc]
        kept.dispose()

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> Any:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


class PoolSafePostgresEventLogStorage(
    _KeepsAPostgresConnection,
    _LeanerEventWrites,
    _EventLogSchemaFactsStay,
    PostgresEventLogStorage,
):
    """`PostgresEventLogStorage` whose pool slots are a true semaphore (see the module doc)."""

    def _connect(self) -> ContextManager[Connection]:
        held = self._held_index()
        return nullcontext(held) if held is not None else super()._connect()

    def _index_for_one_event(self) -> ContextManager[Connection]:
        return super()._connect()  # autocommit, as the parent's writes

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if any(e.get_dagster_event().is_asset_failed_to_materialize for e in events):
            # The parent's batch drops these; stored one by one they reach the index as
            # they do without batching.
            for event in events:
                self.store_event(event)
            return
        if not (self._of_one_run(events, _PLANNED) or self._of_one_run(events, _CHECK_EVALUATIONS)):
            super().store_event_batch(events)
            return
        # The parent's store_event for each (one database here), all in one transaction.
        with self._on_one_index_connection(self.index_transaction()):
            for event in events:
                self.store_event(event)

    def _claim_concurrency_slot(
        self, concurrency_key: str, run_id: str, step_key: str
    ) -> ConcurrencySlotStatus:
        slots = ConcurrencySlotsTable.c
        with self.index_transaction() as conn:
            row = conn.execute(
                db_select([slots.id])
                .where(
                    db.and_(
                        slots.concurrency_key == concurrency_key,
                        slots.step_key == None,  # noqa: E711 - SQL IS NULL
                        slots.deleted == False,  # noqa: E712 - SQL = false
                    )
                )
                .with_for_update(skip_locked=True)
                .limit(1)
            ).fetchone()
            if row is None:
                return ConcurrencySlotStatus.BLOCKED
            claimed = conn.execute(
                ConcurrencySlotsTable.update()
                .values(run_id=run_id, step_key=step_key)
                .where(db.and_(slots.id == row[0], slots.step_key == None))  # noqa: E711
            ).rowcount
        return ConcurrencySlotStatus.CLAIMED if claimed else ConcurrencySlotStatus.BLOCKED


class GscPostgresRunStorage(_KeepsAPostgresConnection, _RunSchemaFactsStay, PostgresRunStorage):
    """`PostgresRunStorage` keeping a connection and asking about its own schema once."""


def _commit_without_fsync(dbapi_connection: Any, _record: object) -> None:
    """Every Dagster SQLite database is in WAL mode (set when Dagster creates it); SQLite's
    recommended `synchronous` there is NORMAL: a commit appends to the WAL without an fsync,
    which happens at checkpoints instead. An application crash loses nothing; a power cut may
    lose the last commits, never corrupt the file. Per check evaluation stored, paired runs of
    `scripts/measure_event_storage.py --storage pooled --days 120`: CPU 2.9-3.2 -> 2.6-2.8 ms,
    wall 3.4-3.7 -> 2.8-3.2 ms."""
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class _Engines:
    """One engine per SQLite database file (an LRU of `size`: the daemon reads many runs'
    databases), each keeping up to `pool_size` connections open between queries."""

    def __init__(self, size: int = 16, pool_size: int = 2) -> None:
        self._size, self._pool_size = size, pool_size
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str, **connect_args: Any) -> Engine:
        with self._lock:
            engine = self._engines.pop(url, None)
            if engine is None:
                engine = db.create_engine(
                    url,
                    poolclass=QueuePool,
                    pool_size=self._pool_size,
                    max_overflow=8,
                    connect_args=connect_args,
                )
                db.event.listen(engine, "connect", _commit_without_fsync)
            self._engines[url] = engine
            while len(self._engines) > self._size:
                self._engines.popitem(last=False)[1].dispose()
            return engine

    def dispose(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


class PooledSqliteEventLogStorage(
    _LeanerEventWrites, _EventLogSchemaFactsStay, SqliteEventLogStorage
):
    """`SqliteEventLogStorage` (a database per run, and an index) keeping its connections."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines = _Engines()
        super().__init__(base_dir, inst_data)
        # store_event writes the run's database inside the index's transaction (one thread).
        self._db_lock = threading.RLock()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        held = self._held_index()
        if held is not None and shard == INDEX_SHARD_NAME:
            yield held
            return
        # As the parent: one transaction per connection, under the storage's lock.
        with self._db_lock:
            engine = self._engines.get(
                self.conn_string_for_shard(shard), timeout=SQLITE_BUSY_TIMEOUT_SECONDS
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _index_for_one_event(self) -> ContextManager[Connection]:
        return self.index_transaction()  # the run's database is written inside it

    def _store_in_index(self, conn: Connection, event: EventLogEntry, event_id: int) -> None:
        """What `store_event` writes to the index for one asset, planned check or check
        evaluation event, on `conn`, the index connection held (the event itself is already
        there, as `event_id`)."""
        if event.dagster_event_type in ASSET_EVENTS:
            self._store_asset_event_tags(conn, [event], [event_id])
            self._store_asset_event(conn, event, event_id)
        elif _is_check_evaluation(event):
            self._update_asset_check_evaluation(event, event_id)
        else:
            self._insert_check_plan(conn, event, event_id)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not (
            self._of_one_run(events, BATCH_WRITABLE_EVENTS)
            or self._of_one_run(events, _CHECK_EVALUATIONS)
        ):
            super().store_event_batch(events)
            return
        # As the parent's store_event for each: the run's database, then the index (these are
        # asset, planned check and check evaluation events: each mirrored there, and its id
        # indexed or its check's record updated).
        rows = [self._event_to_row(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self._on_one_index_connection(self.index_transaction()):
            conn = self._held_index()
            for event, row in zip(events, rows, strict=True):
                inserted = conn.execute(SqlEventLogStorageTable.insert(), row)
                self._serialized.last = (event, row["event"])
                self._store_in_index(conn, event, inserted.inserted_primary_key[0])

    def wipe(self) -> None:
        # The parent deletes the databases' files: no connection may stay open on them.
        self._engines.dispose()
        self._forget_schema_facts()
        super().wipe()

    def delete_events(self, run_id: str) -> None:
        self._engines.dispose()
        super().delete_events(run_id)

    def dispose(self) -> None:
        super().dispose()
        self._engines.dispose()


class _KeepsConnections:
    """For a storage of one SQLite database (`_conn_string`): its one engine keeps connections."""

    _conn_string: str

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines = _Engines(size=1)
        super().__init__(conn_string, inst_data)  # type: ignore[call-arg]

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self._engines.get(self._conn_string).connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engines.dispose()


class PooledSqliteRunStorage(_RunSchemaFactsStay, _KeepsConnections, SqliteRunStorage):
    """`SqliteRunStorage` keeping its connections (the daemon queries it every second)."""


class PooledSqliteScheduleStorage(_KeepsConnections, SqliteScheduleStorage):
    """`SqliteScheduleStorage` (sensor and schedule ticks, cursors) keeping its connections."""


class PooledSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage (same files, same layout) with the pooled storages."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # Not the parent's __init__: it would open the stock storages first.
        self.base_dir = base_dir
        self._run_storage = PooledSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = PooledSqliteScheduleStorage.from_local(
            _schedule_directory(base_dir)
        )
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


class GscInstance(dg.DagsterInstance):
    """The local instance (`instance_class` in gsc_pipeline/instance/dagster.yaml): Dagster's
    defaults, with `PooledSqliteStorage` as the default storage under the instance's directory.
    A `storage:` (or `run_storage:` ...) section in dagster.yaml still replaces it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A run's check evaluations not stored yet (`handle_new_event`).
        self._held_checks: list[EventLogEntry] = []
        self._held_lock = threading.Lock()

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {}

    def _get_event_batch_size(self) -> int:
        # Dagster batches events only when DAGSTER_EVENT_BATCH_SIZE is set (Dagster+ sets it);
        # here by default, for the planned events of a run created (`_LeanerEventWrites`).
        return int(os.environ.get("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE))

    def handle_new_event(
        self, event: EventLogEntry, *, batch_metadata: DagsterEventBatchMetadata | None = None
    ) -> None:
        """Check evaluations of a run are held and stored as one batch (one transaction)
        before the next other event, or at `EVENT_BATCH_SIZE`.

        A fetch step yields its 4 in-run checks' evaluations per day together (1,080 in a
        30-day run of 9 assets), and Dagster stores each on its own: on SQLite two commits, on
        PostgreSQL a transaction each. The step's next event (its outputs, success or failure)
        comes right after them, so the evaluations are stored before it, in the order they
        came, with the same rows (tests/test_instance_storage.py). Runless evaluations (a
        sensor's, the UI's report) and Dagster's own batches pass through. A process killed
        before its next event loses the ones it held: their checks then read as planned, never
        run, not as passed (the whole-history checks run daily regardless).
        """
        hold = (
            batch_metadata is None
            and bool(event.run_id)
            and _is_check_evaluation(event)
            and self._is_batch_writing_enabled()
        )
        with self._held_lock:
            if hold:
                self._held_checks.append(event)
                if len(self._held_checks) < self._get_event_batch_size():
                    return
            held, self._held_checks = self._held_checks, []
        self._store_held(held)
        if not hold:
            super().handle_new_event(event, batch_metadata=batch_metadata)

    def _store_held(self, events: list[EventLogEntry]) -> None:
        """The events as one Dagster batch: stored together, then announced each."""
        batch = generate_event_batch_id()
        for i, event in enumerate(events):
            super().handle_new_event(
                event, batch_metadata=DagsterEventBatchMetadata(batch, i == len(events) - 1)
            )

    def dispose(self) -> None:
        with self._held_lock:
            held, self._held_checks = self._held_checks, []
        self._store_held(held)
        super().dispose()

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        defaults = dict(InstanceRef.config_defaults(base_dir))
        storage = defaults["storage"]
        assert storage is not None and storage.class_name == "DagsterSqliteStorage", storage
        # The unified storage is what the instance uses; the separate entries beside it (the
        # same files) only describe it to older readers, as in Dagster's defaults.
        defaults["storage"] = ConfigurableClassData(
            __name__, PooledSqliteStorage.__name__, storage.config_yaml
        )
        return defaults
