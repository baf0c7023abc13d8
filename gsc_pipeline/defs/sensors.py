"""Sensors that keep the warehouse right without a human: repair and finalization.

- `repair_sensor` re-requests exactly the partitions a check found missing/duplicated/mismatched
  or whose run failed: one single-partition run each, run key per attempt, at most
  `MAX_REPAIR_ATTEMPTS` attempts; then it stops and says so (an error log and an
  AssetObservation `repair_gave_up` on the partition, visible in the asset's history).
- `finalization_sensor` re-fetches, as final data, exactly the partitions stored from fresh
  (dataState=all) data once Google reports them final, so the warehouse ends with final data.

Both target the fetch job, whose assets sit in their credential's pool: the runs they start
queue for the pool like any other, so no sensor can overrun the quota budget. Cursors are JSON
and stored by Dagster, so they survive daemon restarts.
"""

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from gsc_pipeline import proof
from gsc_pipeline.config import PipelineConfig
from gsc_pipeline.defs.assets import fetch_asset_key
from gsc_pipeline.defs.checks import ALL_DAYS_SUFFIX, check_names, in_run_check_keys
from gsc_pipeline.defs.resources import warehouse_resource_key
from gsc_pipeline.defs.schedules import FetchJob

REPAIR_SENSOR = "repair_sensor"
FINALIZATION_SENSOR = "finalization_sensor"
MAX_REPAIR_ATTEMPTS = 3
REPAIR_ATTEMPT_TAG = "gsc/repair_attempt"
FINALIZE_TAG = "gsc/finalize"
# Check evaluations read per check per tick; older failures were handled on earlier ticks.
_HISTORY_LIMIT = 100
# Failed runs remembered (by id) so one failure is never re-requested twice.
_SEEN_RUNS_KEPT = 500


@dataclass
class RepairCursor:
    check_ids: dict[str, int] = field(default_factory=dict)
    runs_after: float = 0.0
    seen_runs: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    gave_up: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, text: str | None) -> "RepairCursor":
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _partition_id(asset_key: dg.AssetKey, day: str) -> str:
    return f"{asset_key.to_user_string()}|{day}"


def _failed_check_partitions(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], cursor: RepairCursor
) -> dict[str, str]:
    """Partition id -> reason, for check failures newer than the cursor."""
    wanted: dict[str, str] = {}
    for check_key in check_keys:
        name = check_key.to_user_string()
        after = cursor.check_ids.get(name, 0)
        records = instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=_HISTORY_LIMIT
        )
        for record in records:
            if record.id <= after:
                continue
            cursor.check_ids[name] = max(cursor.check_ids.get(name, 0), record.id)
            if record.status != AssetCheckExecutionRecordStatus.FAILED or record.event is None:
                continue
            evaluation = record.event.asset_check_evaluation
            listed = evaluation.metadata.get("bad_partitions") if evaluation else None
            for day in str(listed.value if listed else "").split(", "):
                if day:
                    wanted[_partition_id(check_key.asset_key, day)] = check_key.name
    return wanted


def _planned_partitions(
    instance: dg.DagsterInstance, run_id: str, fetch_keys: set[dg.AssetKey]
) -> dict[dg.AssetKey, list[str]]:
    """The fetching asset partitions a run planned to materialize (ranged runs included)."""
    planned: dict[dg.AssetKey, list[str]] = {}
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data if event else None
        if data is None or data.asset_key not in fetch_keys:
            continue
        if data.partition:
            days = [data.partition]
        elif data.partitions_subset is not None:
            days = list(data.partitions_subset.get_partition_keys())
        else:
            days = []
        planned.setdefault(data.asset_key, []).extend(days)
    return planned


def _failed_run_partitions(
    instance: dg.DagsterInstance, fetch_keys: set[dg.AssetKey], cursor: RepairCursor
) -> dict[str, str]:
    """Partition id -> reason, for each fetching asset x day of runs failed since the cursor."""
    wanted: dict[str, str] = {}
    after = dt.datetime.fromtimestamp(cursor.runs_after, dt.UTC) if cursor.runs_after else None
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=after),
        order_by="update_timestamp",
        ascending=True,
    )
    seen = set(cursor.seen_runs)
    for record in records:
        run_id = record.dagster_run.run_id
        cursor.runs_after = max(cursor.runs_after, record.update_timestamp.timestamp())
        if run_id in seen:
            continue
        cursor.seen_runs.append(run_id)
        for key, days in _planned_partitions(instance, run_id, fetch_keys).items():
            for day in days:
                wanted[_partition_id(key, day)] = f"run {run_id} failed"
    cursor.seen_runs = cursor.seen_runs[-_SEEN_RUNS_KEPT:]
    return wanted


def build_repair_sensor(
    config: PipelineConfig, job: FetchJob
) -> dg.SensorDefinition:
    fetch_keys = {
        fetch_asset_key(config, prop, report): (prop, report)
        for prop in config.properties
        for report in prop.report_objects()
    }
    check_keys = [
        dg.AssetCheckKey(key, name + suffix)
        for key, (prop, report) in fetch_keys.items()
        for name in check_names(prop, report)
        if name in proof.BLOCKING_CHECKS
        for suffix in ("", ALL_DAYS_SUFFIX)
    ]
    @dg.sensor(
        name=config.namespaced(REPAIR_SENSOR),
        job=job,
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Re-fetch exactly the partitions a check found missing, duplicated or not matching "
            f"the ledger, or whose run failed; at most {MAX_REPAIR_ATTEMPTS} attempts each."
        ),
    )
    def repair_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = RepairCursor.load(context.cursor)
        wanted = _failed_check_partitions(context.instance, check_keys, cursor)
        wanted.update(_failed_run_partitions(context.instance, set(fetch_keys), cursor))
        requests: list[dg.RunRequest] = []
        gave_up: list[dg.AssetObservation] = []
        for pid, reason in sorted(wanted.items()):
            asset_text, day = pid.rsplit("|", 1)
            asset_key = dg.AssetKey.from_user_string(asset_text)
            attempt = cursor.attempts.get(pid, 0) + 1
            if attempt > MAX_REPAIR_ATTEMPTS:
                if pid not in cursor.gave_up:
                    cursor.gave_up.append(pid)
                    context.log.error(
                        f"{asset_text} {day} still broken after {MAX_REPAIR_ATTEMPTS} repair "
                        f"attempts ({reason}); not retrying. Inspect the run logs and the ledger."
                    )
                    gave_up.append(
                        dg.AssetObservation(
                            asset_key=asset_key,
                            partition=day,
                            metadata={
                                "repair_gave_up": True,
                                "repair_attempts": MAX_REPAIR_ATTEMPTS,
                                "last_failure": reason,
                            },
                        )
                    )
                continue
            cursor.attempts[pid] = attempt
            requests.append(
                dg.RunRequest(
                    run_key=f"{REPAIR_SENSOR}:{pid}:{attempt}",
                    asset_selection=[asset_key],
                    asset_check_keys=in_run_check_keys(config, [asset_key]),
                    partition_key=day,
                    tags={REPAIR_ATTEMPT_TAG: str(attempt)},
                )
            )
        return dg.SensorResult(run_requests=requests, asset_events=gave_up, cursor=cursor.dump())

    return repair_sensor


def build_finalization_sensor(
    config: PipelineConfig, job: FetchJob
) -> dg.SensorDefinition:
    asset_of: Mapping[tuple[str, str], dg.AssetKey] = {
        (prop.site_url, report.name): fetch_asset_key(config, prop, report)
        for prop in config.properties
        for report in prop.report_objects()
    }
    warehouse_key = warehouse_resource_key(config)

    @dg.sensor(
        name=config.namespaced(FINALIZATION_SENSOR),
        job=job,
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={warehouse_key},
        description=(
            "Re-fetch as final data exactly the partitions stored from fresh (dataState=all) "
            "data, once Google reports them final (firstIncompleteDate moved past them)."
        ),
    )
    def finalization_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        requested: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
        pending = proof.fresh_partitions(getattr(context.resources, warehouse_key).open())
        still_fresh: dict[str, Any] = {}
        requests: list[dg.RunRequest] = []
        for row in pending.itertuples(index=False):
            asset_key = asset_of.get((row.site_url, row.report))
            if asset_key is None or not row.ready:
                continue
            # The fresh version's fetch time is part of the key: a newer fresh fetch of the same
            # day is a new version to finalize, the same one is never requested twice.
            run_key = (
                f"{FINALIZATION_SENSOR}:{asset_key.to_user_string()}:{row.date.isoformat()}:"
                f"{row.fetched_at}"
            )
            still_fresh[run_key] = True
            if run_key in requested:
                continue
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    asset_selection=[asset_key],
                    asset_check_keys=in_run_check_keys(config, [asset_key]),
                    partition_key=row.date.isoformat(),
                    tags={FINALIZE_TAG: "true"},
                )
            )
        # Keep only keys whose partition is still fresh: the cursor stays small.
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(still_fresh))

    return finalization_sensor
