"""Sensors that keep the warehouse right without a human: repair and finalization.

- `repair_sensor` re-requests exactly the partitions a check found missing/duplicated/mismatched
  or that a failed run did not write, grouped into ranged runs (consecutive days of one
  property), run key per attempt, at most `MAX_REPAIR_ATTEMPTS` attempts; then it stops and
  says so (an error log and an AssetObservation `repair_gave_up` on the partition, visible in
  the asset's history). A terminated run is not undone at once: the whole-history checks list
  the days it left missing, and the repair follows from that daily evaluation.
- `finalization_sensor` re-fetches, as final data, exactly the partitions stored from fresh
  (dataState=all) data once Google reports them final, so the warehouse ends with final data.
  Each tick asks Google itself (one date-grouped request per property holding fresh days), so
  a fresh day is replaced within one interval of Google calling it final, whatever else runs.
- `restatement_sensor` re-fetches the final days whose totals Google changed after they were
  stored, as the daily audit (`gsc_audit/<property>`, `gsc_pipeline.audit`) found them.

All three target the fetch job, whose assets sit in their credential's pool: the runs they start
queue for the pool like any other, so no sensor can overrun the quota budget. Cursors are JSON
and stored by Dagster, so they survive daemon restarts.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from gsc_pipeline import audit, proof
from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.defs.checks import BAD_DAYS, in_run_check_keys, repair_check_keys
from gsc_pipeline.defs.keys import fetch_asset_key
from gsc_pipeline.defs.names import (
    FINALIZATION_SENSOR,
    FINALIZE_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REPAIR_ATTEMPT_TAG,
    REPAIR_SENSOR,
    RESTATED_TAG,
    RESTATEMENT_SENSOR,
)
from gsc_pipeline.defs.resources import gsc_resource_key, warehouse_resource_key
from gsc_pipeline.defs.schedules import FetchJob
from gsc_pipeline.gsc.errors import GscError
from gsc_pipeline.reports import Report
from gsc_pipeline.sync.fetch import plan_days
from gsc_pipeline.warehouse import Warehouse

MAX_REPAIR_ATTEMPTS = 3
# Check evaluations read per page; a tick pages back to the newest one it handled before (a
# backfill evaluates each in-run check once per day, so hundreds can land between two ticks).
_HISTORY_PAGE = 100


@dataclass
class RepairCursor:
    """What the repair sensor has handled: small, whatever the history's length.

    `checks_after` is the check execution id up to which every record is handled (ids grow
    across all checks, and every tick reads every check); `checks_seen` the ids above it
    handled already. A record is created when its run is planned and evaluated later, in
    place: one still pending holds `checks_after` below it, or its failure would be passed
    over (a tick between a history check's start and its result missed the failure).
    `runs_after` is the update time of the last failed run handled, `runs_at` the ids of the
    runs handled at exactly that time.
    `attempts` counts repairs per partition; `gave_up` lists those given up on.
    """

    checks_after: int = 0
    checks_seen: list[int] = field(default_factory=list)
    runs_after: float = 0.0
    runs_at: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    gave_up: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, text: str | None) -> "RepairCursor":
        if not text:
            return cls()
        data = json.loads(text)
        if "check_ids" in data:  # the cursor of earlier versions
            data["checks_after"] = max(data.pop("check_ids").values(), default=0)
            data.pop("seen_runs", None)
        return cls(**data)

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


def _partition_id(asset_key: dg.AssetKey, day: str) -> str:
    return f"{asset_key.to_user_string()}|{day}"


def _listed_days(metadata: Mapping[str, Any]) -> list[str]:
    """The check's `bad_days` metadata, ", "-joined text (`bad_partitions`, a list or text, in
    evaluations stored by earlier versions)."""
    entry = metadata.get(BAD_DAYS) or metadata.get("bad_partitions")
    value = entry.value if entry is not None else None
    if isinstance(value, list):
        return [str(day) for day in value]
    return [day for day in str(value or "").split(", ") if day]


def _failed_check_partitions(
    instance: dg.DagsterInstance,
    check_keys: Mapping[dg.AssetCheckKey, dg.AssetKey],
    cursor: RepairCursor,
) -> dict[str, str]:
    """Partition id -> reason, for check failures newer than the cursor.

    Only failed evaluations list days: a check that measured nothing (a report not fetched
    yet) yields no evaluation, so a new report is never mistaken for damage.
    """
    wanted: dict[str, str] = {}
    after, seen = cursor.checks_after, set(cursor.checks_seen)
    newest, pending = after, []
    # Run id -> still running, looked up once a tick: a ranged run in flight has a planned
    # record per check and day (1,080 for 30 days of 9 reports), and each lookup reads and
    # deserializes the run (the sensor's tick was most of the code server's CPU in a bench).
    running: dict[str, bool] = {}
    for check_key, asset_key in check_keys.items():
        for record in _records_after(instance, check_key, after):
            if record.status == AssetCheckExecutionRecordStatus.PLANNED:
                if record.run_id not in running:
                    run = instance.get_run_by_id(record.run_id)
                    running[record.run_id] = run is not None and not run.is_finished
                if running[record.run_id]:
                    pending.append(record.id)
                    continue
            newest = max(newest, record.id)
            if record.id in seen:
                continue
            seen.add(record.id)
            if record.status != AssetCheckExecutionRecordStatus.FAILED or record.event is None:
                continue
            evaluation = record.event.asset_check_evaluation
            for day in _listed_days(evaluation.metadata if evaluation else {}):
                wanted[_partition_id(asset_key, day)] = check_key.name
    cursor.checks_after = min([newest, *(record_id - 1 for record_id in pending)])
    cursor.checks_seen = sorted(record_id for record_id in seen if record_id > cursor.checks_after)
    return wanted


def _records_after(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, after: int
) -> list[AssetCheckExecutionRecord]:
    """The check's execution records newer than `after`, newest first, paging back."""
    records: list[AssetCheckExecutionRecord] = []
    page_cursor = None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=_HISTORY_PAGE, cursor=page_cursor
        )
        records += [record for record in page if record.id > after]
        if len(page) < _HISTORY_PAGE or page[-1].id <= after:
            return records
        page_cursor = page[-1].id


def _run_partitions(
    instance: dg.DagsterInstance,
    run_id: str,
    fetch_keys: set[dg.AssetKey],
    event_type: dg.DagsterEventType,
) -> set[tuple[dg.AssetKey, str]]:
    """(asset, day) pairs of the fetching assets a run planned (or materialized)."""
    pairs: set[tuple[dg.AssetKey, str]] = set()
    for record in instance.get_records_for_run(run_id, of_type=event_type).records:
        event = record.event_log_entry.dagster_event
        if event is None or event.asset_key not in fetch_keys:
            continue
        # A ranged run plans its days as one subset; everything else names one partition.
        planned = getattr(event.event_specific_data, "partitions_subset", None)
        if event.partition:
            days = [event.partition]
        elif planned is not None:
            days = list(planned.get_partition_keys())
        else:
            days = []
        pairs |= {(event.asset_key, day) for day in days}
    return pairs


def _failed_run_partitions(
    instance: dg.DagsterInstance, fetch_keys: set[dg.AssetKey], cursor: RepairCursor
) -> dict[str, str]:
    """Partition id -> reason: what runs failed since the cursor planned and did not write.

    A fetch step that fails still records the days it wrote completely (see the fetching
    asset), so a run that failed on 3 of 30 days asks for those 3, not 30.
    Cancelled runs are not here: a Terminate is deliberate (the whole-history checks list the
    days it left missing, and the repair follows from them).
    """
    wanted: dict[str, str] = {}
    after = dt.datetime.fromtimestamp(cursor.runs_after, dt.UTC) if cursor.runs_after else None
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=after),
        order_by="update_timestamp",
        ascending=True,
    )
    for record in records:
        run_id = record.dagster_run.run_id
        updated = record.update_timestamp.timestamp()
        if updated < cursor.runs_after or (
            updated == cursor.runs_after and run_id in cursor.runs_at
        ):
            continue
        if updated > cursor.runs_after:
            cursor.runs_after, cursor.runs_at = updated, []
        cursor.runs_at.append(run_id)
        planned = _run_partitions(
            instance, run_id, fetch_keys, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        )
        written = _run_partitions(
            instance, run_id, fetch_keys, dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        for key, day in planned - written:
            wanted[_partition_id(key, day)] = f"run {run_id} failed"
    return wanted


@dataclass(frozen=True)
class RepairRun:
    """One ranged repair run: some assets of one property over consecutive days."""

    asset_keys: tuple[dg.AssetKey, ...]
    first: str
    last: str
    attempt: int

    def days(self) -> list[str]:
        first, last = dt.date.fromisoformat(self.first), dt.date.fromisoformat(self.last)
        return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def group_repairs(
    wanted: dict[str, int], property_of: Mapping[dg.AssetKey, str], max_days: int
) -> list[RepairRun]:
    """Partition id -> attempt, as few ranged runs as cover exactly those partitions.

    Per asset, consecutive days form ranges of at most `max_days` (a backfill run's size);
    assets of one property with the same range and attempt share a run.
    """
    days_of: dict[dg.AssetKey, list[tuple[dt.date, int]]] = {}
    for pid, attempt in wanted.items():
        asset_text, day = pid.rsplit("|", 1)
        key = dg.AssetKey.from_user_string(asset_text)
        days_of.setdefault(key, []).append((dt.date.fromisoformat(day), attempt))
    runs: dict[tuple[str, str, str, int], list[dg.AssetKey]] = {}
    for key, days in days_of.items():
        days.sort()
        start = 0
        for i in range(1, len(days) + 1):
            ends = (
                i == len(days)
                or days[i][0] - days[i - 1][0] != dt.timedelta(days=1)
                or days[i][1] != days[start][1]
                or i - start == max_days
            )
            if ends:
                group = (property_of[key], days[start][0].isoformat(),
                         days[i - 1][0].isoformat(), days[start][1])  # fmt: skip
                runs.setdefault(group, []).append(key)
                start = i
    return [
        RepairRun(tuple(sorted(keys, key=lambda k: k.to_user_string())), first, last, attempt)
        for (_, first, last, attempt), keys in sorted(runs.items())
    ]


def _fetching_assets(config: PipelineConfig) -> dict[dg.AssetKey, tuple[PropertyConfig, Report]]:
    return {
        fetch_asset_key(config, prop, report): (prop, report)
        for prop in config.properties
        for report in prop.report_objects()
    }


def build_repair_sensor(config: PipelineConfig, job: FetchJob) -> dg.SensorDefinition:
    fetch_keys = _fetching_assets(config)
    property_of = {key: prop.key for key, (prop, _) in fetch_keys.items()}
    # Blocking check -> the fetching asset whose days it judges (whole-history checks sit on
    # the asset's history).
    check_keys = {
        check_key: key
        for key, (prop, report) in fetch_keys.items()
        for check_key in repair_check_keys(key, prop, report)
    }

    @dg.sensor(
        name=config.namespaced(REPAIR_SENSOR),
        job=job,
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Re-fetch exactly the partitions a check found missing, duplicated or not matching "
            "the ledger, or that a failed run did not write, as ranged runs; at most "
            f"{MAX_REPAIR_ATTEMPTS} attempts each."
        ),
    )
    def repair_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = RepairCursor.load(context.cursor)
        wanted = _failed_check_partitions(context.instance, check_keys, cursor)
        wanted.update(_failed_run_partitions(context.instance, set(fetch_keys), cursor))
        attempts: dict[str, int] = {}
        gave_up: list[dg.AssetObservation] = []
        for pid, reason in sorted(wanted.items()):
            asset_text, day = pid.rsplit("|", 1)
            attempt = cursor.attempts.get(pid, 0) + 1
            if attempt <= MAX_REPAIR_ATTEMPTS:
                cursor.attempts[pid] = attempts[pid] = attempt
            elif pid not in cursor.gave_up:
                cursor.gave_up.append(pid)
                context.log.error(
                    f"{asset_text} {day} still broken after {MAX_REPAIR_ATTEMPTS} repair "
                    f"attempts ({reason}); not retrying. Inspect the run logs and the ledger."
                )
                gave_up.append(
                    dg.AssetObservation(
                        asset_key=dg.AssetKey.from_user_string(asset_text),
                        partition=day,
                        metadata={
                            "repair_gave_up": True,
                            "repair_attempts": MAX_REPAIR_ATTEMPTS,
                            "last_failure": reason,
                        },
                    )
                )
        requests = [
            _ranged_request(
                config,
                run,
                f"{REPAIR_SENSOR}:{_run_name(run)}:{run.attempt}",
                {REPAIR_ATTEMPT_TAG: str(run.attempt)},
            )
            for run in group_repairs(attempts, property_of, config.backfill_days_per_run)
        ]
        return dg.SensorResult(run_requests=requests, asset_events=gave_up, cursor=cursor.dump())

    return repair_sensor


def _ranged_request(
    config: PipelineConfig, run: RepairRun, run_key: str, tags: Mapping[str, str]
) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=list(run.asset_keys),
        asset_check_keys=in_run_check_keys(config, run.asset_keys),
        tags={**tags, RANGE_START_TAG: run.first, RANGE_END_TAG: run.last},
    )


def _run_name(run: RepairRun) -> str:
    return f"{','.join(k.to_user_string() for k in run.asset_keys)}:{run.first}:{run.last}"


def _google_final_before(
    context: dg.SensorEvaluationContext,
    config: PipelineConfig,
    warehouse: Warehouse,
    waiting: Mapping[str, list[dt.date]],
) -> dict[str, dt.date]:
    """Site -> the first day Google does not call final yet, asked of Google now: one
    date-grouped request per site with fresh days still waiting (the sync's finality probe).

    A site whose probe fails is left out (the ledger's knowledge still applies) and says so.
    """
    final_before: dict[str, dt.date] = {}
    props = {prop.site_url: prop for prop in config.properties}
    for site_url, days in sorted(waiting.items()):
        prop = props[site_url]
        client = getattr(context.resources, gsc_resource_key(config, prop.credential)).client()
        try:
            plan = plan_days(client, site_url, prop.report_objects()[0], days)
        except GscError as exc:
            context.log.warning(f"{site_url}: cannot ask Google which days are final ({exc})")
            continue
        final_before[site_url] = plan.final_before
        audit.record_final_before(warehouse, site_url, plan.final_before)
    return final_before


def build_finalization_sensor(config: PipelineConfig, job: FetchJob) -> dg.SensorDefinition:
    fetch_keys = _fetching_assets(config)
    asset_of = {(prop.site_url, report.name): key for key, (prop, report) in fetch_keys.items()}
    property_of = {key: prop.key for key, (prop, _) in fetch_keys.items()}
    warehouse_key = warehouse_resource_key(config)

    @dg.sensor(
        name=config.namespaced(FINALIZATION_SENSOR),
        job=job,
        minimum_interval_seconds=config.finalization_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={
            warehouse_key,
            *(gsc_resource_key(config, prop.credential) for prop in config.properties),
        },
        description=(
            "Re-fetch as final data exactly the partitions stored from fresh (dataState=all) "
            "data, once Google reports them final (firstIncompleteDate moved past them, asked "
            "of Google each tick), as ranged runs."
        ),
    )
    def finalization_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        # Partition id -> the fetch time of the fresh version already requested: a newer fresh
        # fetch of the same day is a new version to finalize, the same one is never asked twice.
        requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        warehouse = getattr(context.resources, warehouse_key).open()
        pending = [
            row
            for row in proof.fresh_partitions(warehouse).itertuples(index=False)
            if (row.site_url, row.report) in asset_of
        ]
        waiting: dict[str, list[dt.date]] = {}
        for row in pending:
            if not row.ready:
                waiting.setdefault(row.site_url, []).append(row.date)
        final_before = _google_final_before(context, config, warehouse, waiting)
        still_fresh: dict[str, str] = {}
        wanted: dict[str, int] = {}
        for row in pending:
            pid = _partition_id(asset_of[(row.site_url, row.report)], row.date.isoformat())
            still_fresh[pid] = str(row.fetched_at)
            ready = row.ready or row.date < final_before.get(row.site_url, row.date)
            if ready and requested.get(pid) != still_fresh[pid]:
                wanted[pid] = 1
        requests = []
        for run in group_repairs(wanted, property_of, config.backfill_days_per_run):
            # The fresh versions' fetch times are part of the key: finalizing a newer fresh
            # version of the same days is a new run, the same one is never requested twice.
            versions = [
                still_fresh[_partition_id(key, day)]
                for key in run.asset_keys
                for day in run.days()
                if _partition_id(key, day) in wanted
            ]
            digest = hashlib.sha1("|".join(versions).encode()).hexdigest()[:12]
            requests.append(
                _ranged_request(
                    config,
                    run,
                    f"{FINALIZATION_SENSOR}:{_run_name(run)}:{digest}",
                    {FINALIZE_TAG: "true"},
                )
            )
        # Keep only partitions still fresh and requested (the version requested): the cursor
        # stays small, and a newer fresh version not final yet is still asked for later.
        kept = {pid: requested[pid] for pid in still_fresh if pid in requested}
        kept |= {pid: still_fresh[pid] for pid in wanted}
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(kept))

    return finalization_sensor


def build_restatement_sensor(config: PipelineConfig, job: FetchJob) -> dg.SensorDefinition:
    fetch_keys = _fetching_assets(config)
    property_of = {key: prop.key for key, (prop, _) in fetch_keys.items()}
    warehouse_key = warehouse_resource_key(config)

    @dg.sensor(
        name=config.namespaced(RESTATEMENT_SENSOR),
        job=job,
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={warehouse_key},
        description=(
            "Re-fetch, as ranged runs, the final days the daily audit (gsc_audit/<property>) "
            "found restated by Google and each report has not re-fetched since."
        ),
    )
    def restatement_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        warehouse = getattr(context.resources, warehouse_key).open()
        # Partition id -> when its restatement was detected: part of the run key, so each
        # detection is requested once (a failed re-fetch is the repair sensor's).
        detected: dict[str, str] = {}
        for key, (prop, report) in fetch_keys.items():
            # Hourly data reaches back ~10 days only: an older day would come back empty.
            if report.hourly:
                continue
            for day, when in audit.pending_restatements(warehouse, prop.site_url, report).items():
                if day >= config.start_date:
                    detected[_partition_id(key, day.isoformat())] = when
        requests = []
        wanted = dict.fromkeys(detected, 1)
        for run in group_repairs(wanted, property_of, config.backfill_days_per_run):
            stamps = sorted(
                detected[pid]
                for key in run.asset_keys
                for day in run.days()
                if (pid := _partition_id(key, day)) in detected
            )
            digest = hashlib.sha1("|".join(stamps).encode()).hexdigest()[:12]
            requests.append(
                _ranged_request(
                    config, run, f"{RESTATEMENT_SENSOR}:{_run_name(run)}:{digest}",
                    {RESTATED_TAG: "true"},
                )
            )  # fmt: skip
        return dg.SensorResult(run_requests=requests)

    return restatement_sensor
