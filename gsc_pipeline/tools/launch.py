"""Launching backfills the way the UI does, and waiting for them.

Dagster has no public Python API that launches a backfill, so this sends the UI's GraphQL
mutation (`launchPartitionBackfill`) in-process; the daemon then submits the runs, through the
run queue and the pools, exactly as for a backfill started from the UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from gsc_pipeline.defs.names import BACKFILL_TAG

_TERMINAL = {
    BulkActionStatus.COMPLETED,
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
}


class BackfillError(RuntimeError):
    pass


def launch_backfill(
    instance: dg.DagsterInstance,
    workspace_file: Path,
    asset_keys: Sequence[dg.AssetKey],
    partition_keys: Sequence[str],
    title: str = "gsc_pipeline backfill",
) -> str:
    """Send launchPartitionBackfill and return the backfill id."""
    return launch_backfills(instance, workspace_file, [(asset_keys, partition_keys, title)])[0]


def launch_backfills(
    instance: dg.DagsterInstance,
    workspace_file: Path,
    backfills: Sequence[tuple[Sequence[dg.AssetKey], Sequence[str], str]],
) -> list[str]:
    """launchPartitionBackfill for each (asset keys, partition keys, title), in order, through
    one load of the code location (a load is a code server's start, ~3 s); their ids."""
    target = WorkspaceFileTarget(paths=[str(workspace_file)])
    with WorkspaceProcessContext(
        instance, target, code_server_log_level="WARNING"
    ) as process_context:
        request_context = process_context.create_request_context()
        errors = [
            f"{name}: {entry.load_error.message}"
            for name, entry in request_context.get_code_location_entries().items()
            if entry.load_error
        ]
        if errors:
            raise BackfillError(f"the code location failed to load: {'; '.join(errors)}")
        return [
            _launch(request_context, asset_keys, partition_keys, title)
            for asset_keys, partition_keys, title in backfills
        ]


def _launch(
    request_context: WorkspaceRequestContext,
    asset_keys: Sequence[dg.AssetKey],
    partition_keys: Sequence[str],
    title: str,
) -> str:
    result = execute_dagster_graphql(
        request_context,
        LAUNCH_PARTITION_BACKFILL_MUTATION,
        {
            "backfillParams": {
                "partitionNames": list(partition_keys),
                "assetSelection": [{"path": key.path} for key in asset_keys],
                "title": title,
            }
        },
    )
    payload = (result.data or {}).get("launchPartitionBackfill") or {}
    if payload.get("__typename") != "LaunchBackfillSuccess":
        raise BackfillError(f"launchPartitionBackfill failed: {result.errors or payload}")
    return payload["backfillId"]


@dataclass(frozen=True)
class BackfillProgress:
    status: str
    runs_total: int
    runs_done: int
    runs_failed: int

    @property
    def finished(self) -> bool:
        return self.status in {s.value for s in _TERMINAL}

    @property
    def succeeded(self) -> bool:
        return self.status in ("COMPLETED", "COMPLETED_SUCCESS") and not self.runs_failed


def backfill_progress(instance: dg.DagsterInstance, backfill_id: str) -> BackfillProgress:
    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        raise BackfillError(f"backfill {backfill_id} not found")
    runs = instance.get_runs(filters=RunsFilter(tags={BACKFILL_TAG: backfill_id}))
    done = [
        r
        for r in runs
        if r.status
        in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
    ]
    failed = [r for r in done if r.status != DagsterRunStatus.SUCCESS]
    return BackfillProgress(backfill.status.value, len(runs), len(done), len(failed))


def wait_for_backfill(
    instance: dg.DagsterInstance,
    backfill_id: str,
    timeout: float,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    poll_seconds: float = 1.0,
) -> BackfillProgress:
    """Poll the instance until the daemon marks the backfill finished (or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        progress = backfill_progress(instance, backfill_id)
        if on_progress and progress != last:
            on_progress(progress)
        last = progress
        if progress.finished:
            return progress
        if time.monotonic() > deadline:
            raise BackfillError(
                f"backfill {backfill_id} not finished after {timeout:.0f}s ({progress})"
            )
        time.sleep(poll_seconds)
