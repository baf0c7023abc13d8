"""Dagster's PostgreSQL event-log storage with a pool slot claim that cannot be double-granted.

Dagster 1.13's `_claim_concurrency_slot` selects a free slot row `FOR UPDATE SKIP LOCKED`, then
updates it by id. On PostgreSQL `index_connection()` is in autocommit mode, so the row lock ends
with the SELECT: two steps claiming at once (on separate hosts, the round trips widen the window)
can select the same free row and both "claim" it, and a pool of limit 2 runs 3 steps.
tests/test_instance_storage.py replays that interleaving; Dagster's own review of the same
autocommit pitfall (in pending-step assignment): dagster-io/dagster#34092.

Here the select and the update run in one transaction, and the update only takes a row that is
still free, so a slot row is held by at most one step whatever the timing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._core.storage.sqlalchemy_compat import db_select
from dagster._serdes import ConfigurableClassData
from dagster._utils.concurrency import ConcurrencySlotStatus
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


class PoolSafePostgresEventLogStorage(PostgresEventLogStorage):
    """`PostgresEventLogStorage` whose pool slots are a true semaphore (see the module doc)."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PoolSafePostgresEventLogStorage:
        # The parent builds a `PostgresEventLogStorage` by name, not `cls`.
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

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
