"""Where a backfill's wall time goes: each run's events, in seconds after the first run was created.

    .venv/bin/python scripts/run_timeline.py <dagster_home> [--backfill ID] [--steps]

For every run (of one backfill, or all): created, RUN_STARTING (launched), RUN_START (the run's
process is up and has loaded the code), the first STEP_START, the last STEP_SUCCESS/FAILURE,
the run's end; with --steps every step's start and end. The gaps are the costs: created ->
launching is the run queue, launching -> start the run process's start and code load, start ->
step the plan, step end -> run end the run's teardown.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType as E
from dagster._core.storage.dagster_run import RunsFilter

_STEP_END = {E.STEP_SUCCESS, E.STEP_FAILURE}
_RUN_END = {E.RUN_SUCCESS, E.RUN_FAILURE, E.RUN_CANCELED}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("home", type=Path)
    parser.add_argument("--backfill")
    parser.add_argument("--steps", action="store_true")
    args = parser.parse_args()
    with dg.DagsterInstance.from_config(str(args.home.resolve())) as instance:
        filters = RunsFilter(tags={"dagster/backfill": args.backfill}) if args.backfill else None
        records = sorted(
            instance.get_run_records(filters=filters), key=lambda r: r.create_timestamp
        )
        if not records:
            print("no runs")
            return
        t0 = records[0].create_timestamp.timestamp()
        print(f"{'run':8} {'created':>7} {'launch':>7} {'start':>7} {'step0':>7} "
              f"{'stepN':>7} {'end':>7}  steps  status")  # fmt: skip
        gaps: dict[str, list[float]] = {"queue": [], "process": [], "plan": [], "steps": [],
                                        "teardown": []}  # fmt: skip
        for record in records:
            run = record.dagster_run
            events = [e for e in instance.all_logs(run.run_id) if e.dagster_event]
            first: dict[E, float] = {}
            last: dict[E, float] = {}
            for e in events:
                first.setdefault(e.dagster_event.event_type, e.timestamp)
                last[e.dagster_event.event_type] = e.timestamp
            created = record.create_timestamp.timestamp()
            launch = first.get(E.RUN_STARTING)
            start = first.get(E.RUN_START)
            step0 = first.get(E.STEP_START)
            step_n = max((last[t] for t in _STEP_END if t in last), default=None)
            end = min((first[t] for t in _RUN_END if t in first), default=None)
            steps = sum(e.dagster_event.event_type == E.STEP_START for e in events)

            def rel(ts: float | None) -> str:
                return f"{ts - t0:7.1f}" if ts is not None else "      -"

            print(f"{run.run_id[:8]} {rel(created)} {rel(launch)} {rel(start)} {rel(step0)} "
                  f"{rel(step_n)} {rel(end)}  {steps:5}  {run.status.value}")  # fmt: skip
            for name, a, b in (("queue", created, launch), ("process", launch, start),
                               ("plan", start, step0), ("steps", step0, step_n),
                               ("teardown", step_n, end)):  # fmt: skip
                if a is not None and b is not None:
                    gaps[name].append(b - a)
            if args.steps:
                for e in events:
                    kind = e.dagster_event.event_type
                    if kind == E.STEP_START or kind in _STEP_END:
                        print(f"    {e.timestamp - t0:7.1f} {kind.value:14} {e.step_key}")
        ends = [r.end_time for r in records if r.end_time]
        print(f"first created -> last ended: {max(ends) - t0:.1f} s" if ends else "")
        for name, values in gaps.items():
            if values:
                print(f"  {name:9} median {statistics.median(values):5.1f} s  "
                      f"max {max(values):5.1f} s  (n={len(values)})")  # fmt: skip


if __name__ == "__main__":
    main()
