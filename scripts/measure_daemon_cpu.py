"""The daemon's and code server's CPU over a bench backfill, and each run's start.

    .venv/bin/python scripts/measure_daemon_cpu.py [--size standard] [--label B] [--json out.jsonl]

The bench's backfill alone (no sequential slice, floor, lifetime or 1-day backfill): the
scenario's emulator, a fresh instance (`init_instance`), the backfill launched as the UI does,
the real `dagster-daemon run`, and the bench's `TreeSampler` following its process tree. Prints:

- CPU seconds by process role (daemon, code server, run workers, compute-log capture);
- the daemon's CPU by thread (its daemons are threads named `dagster-daemon-<TYPE>`; names come
  from `py-spy dump` when py-spy is installed, the profile extra), sampled from /proc;
- per backfill run: created, RUN_STARTING, RUN_START and first STEP_START, seconds after the
  first run was created, and the run process's CPU seconds up to its RUN_START (spawn, imports,
  loading the definitions, the run's start), interpolated from the sampler's 0.5 s samples;
- the 1-minute load average before and after.

Run it with main's venv for A and the branch's for B, alternating, in one session.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psutil
from dagster._core.events import DagsterEventType as E

from gsc_pipeline.config import CONFIG_ENV
from gsc_pipeline.gsc.client import API_ENDPOINT_ENV
from gsc_pipeline.instance import init_instance
from gsc_pipeline.tools.bench.run import _wait_idle
from gsc_pipeline.tools.bench.sampler import TreeSampler
from gsc_pipeline.tools.bench.scenario import SCENARIOS, environ_set, write_scenario
from gsc_pipeline.tools.demo import dagster_daemon, emulator_process
from gsc_pipeline.tools.launch import BACKFILL_TAG, launch_backfill, wait_for_backfill
from gsc_pipeline.warehouse import WAREHOUSE_URL_ENV

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class SeriesSampler(TreeSampler):
    """The bench's sampler, also keeping each process's CPU over time and the daemon's threads."""

    series: dict[int, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    threads: dict[int, float] = field(default_factory=dict)

    def sample(self) -> None:
        super().sample()
        for sample in self.processes.values():
            points = self.series[sample.pid]
            if not points or points[-1][0] != sample.last_seen:
                points.append((sample.last_seen, sample.cpu_seconds))
        for task in Path(f"/proc/{self.root_pid}/task").glob("*"):
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / _TICK
            self.threads[int(task.name)] = max(self.threads.get(int(task.name), 0.0), cpu)

    def cpu_at(self, pid: int, when: float) -> float | None:
        points = self.series.get(pid)
        if not points:
            return None
        before = [p for p in points if p[0] <= when]
        after = [p for p in points if p[0] > when]
        if not before:
            return after[0][1] if after else None
        if not after:
            return before[-1][1]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0)


def _thread_names(pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name, from `py-spy dump` (empty without py-spy)."""
    spy = shutil.which("py-spy") or str(Path(os.sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    out = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True).stdout
    return {int(tid, 0): name for tid, name in re.findall(r'Thread (\S+) \(\w+\): "([^"]*)"', out)}


def measure(size: str) -> dict:
    scenario = SCENARIOS[size]
    with tempfile.TemporaryDirectory(prefix="gsc-daemon-cpu-") as tmp:
        workdir = Path(tmp)
        files = write_scenario(scenario, workdir)
        config, home = files.config, files.home
        url = f"duckdb:///{workdir / 'warehouse.duckdb'}"
        with (
            environ_set({CONFIG_ENV: str(files.config_file)}),
            emulator_process("--config", str(files.emulator_file), log=workdir / "emu.log") as emu,
        ):
            env = {"DAGSTER_HOME": str(home), API_ENDPOINT_ENV: emu.base_url,
                   WAREHOUSE_URL_ENV: url}  # fmt: skip
            with environ_set(env):
                init_instance(home, config)
                from gsc_pipeline.defs.keys import fetch_asset_keys

                keys = fetch_asset_keys(config)
                days = [d.isoformat() for d in scenario.day_list]
                with dg.DagsterInstance.from_config(str(home)) as instance:
                    backfill_id = launch_backfill(instance, home / "workspace.yaml", keys, days,
                                                  title=f"daemon cpu {size}")  # fmt: skip
                    load_before = os.getloadavg()[0]
                    with dagster_daemon(home, workdir / "daemon.log",
                                        scenario.daemon_tick_seconds) as daemon:  # fmt: skip
                        started = time.time()
                        with SeriesSampler(daemon.pid) as sampler:
                            progress = wait_for_backfill(instance, backfill_id, timeout=3600)
                            _wait_idle(instance, timeout=180)
                            wall = time.time() - started
                            sampler.sample()
                            names = _thread_names(daemon.pid)
                            load_after = os.getloadavg()[0]
                    runs = _runs(instance, backfill_id, sampler)
        # A run's process seen between its fork and exec carries the code server's command
        # line, so the sampler can file it as "code server": its pid (the steps') says otherwise.
        run_pids = {run["pid"] for run in runs if run["pid"]}
        for process in sampler.processes.values():
            if process.pid in run_pids:
                process.role = "run worker"
        by_role = sampler.cpu_by_role()
        threads: dict[str, float] = defaultdict(float)
        for tid, cpu in sampler.threads.items():
            name = names.get(tid, "other threads")
            threads[re.sub(r"^ThreadPoolExecutor-\d+", "ThreadPoolExecutor", name)] += cpu
        return {
            "size": size, "succeeded": progress.succeeded, "wall": round(wall, 1),
            "load": [round(load_before, 2), round(load_after, 2)],
            "cpu_by_role": {k: round(v, 1) for k, v in sorted(by_role.items())},
            "processes_by_role": _count_roles(sampler),
            "daemon_threads": {k: round(v, 1) for k, v in sorted(threads.items(),
                                                                  key=lambda kv: -kv[1])},
            "runs": runs,
        }  # fmt: skip


def _count_roles(sampler: SeriesSampler) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for process in sampler.processes.values():
        counts[process.role] += 1
    return dict(sorted(counts.items()))


def _runs(instance: dg.DagsterInstance, backfill_id: str, sampler: SeriesSampler) -> list[dict]:
    out = []
    records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
    t0 = records[0].create_timestamp.timestamp()
    for record in records:
        run = record.dagster_run
        first: dict[E, tuple[float, int | None]] = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event and event.event_type not in first:
                first[event.event_type] = (entry.timestamp, event.pid)
        start = first.get(E.RUN_START)
        # RUN_START carries no pid; the steps run in the run's process (in_process executor).
        pid = first[E.STEP_START][1] if E.STEP_START in first else None
        proc = next((p for p in sampler.processes.values() if p.pid == pid), None)
        start_cpu = sampler.cpu_at(pid, start[0]) if start and pid else None

        def rel(kind: E, first: dict = first) -> float | None:
            return round(first[kind][0] - t0, 1) if kind in first else None

        out.append({
            "run": run.run_id[:8], "backfill": run.tags.get(BACKFILL_TAG) == backfill_id,
            "status": run.status.value,
            "created": round(record.create_timestamp.timestamp() - t0, 1),
            "launching": rel(E.RUN_STARTING), "start": rel(E.RUN_START),
            "step": rel(E.STEP_START),
            "start_cpu": round(start_cpu, 2) if start_cpu is not None else None, "pid": pid,
            "cpu": round(proc.cpu_seconds, 1) if proc else None,
        })  # fmt: skip
    return out


def _print(result: dict, label: str) -> None:
    print(f"[{label}] {result['size']}: succeeded={result['succeeded']} wall {result['wall']} s "
          f"load {result['load'][0]} -> {result['load'][1]}")  # fmt: skip
    roles = result["cpu_by_role"].items()
    print("  CPU s by role: " + ", ".join(f"{k} {v}" for k, v in roles))
    counts = result.get("processes_by_role", {}).items()
    print("  processes by role: " + ", ".join(f"{k} {v}" for k, v in counts))
    threads = [f"{k} {v}" for k, v in result["daemon_threads"].items() if v >= 0.1]
    print("  daemon threads: " + ", ".join(threads))
    print(f"  {'run':8} {'created':>7} {'launch':>7} {'start':>7} {'step':>7} {'startCPU':>8} "
          f"{'CPU':>6}  kind")  # fmt: skip
    for run in result["runs"]:
        print(f"  {run['run']:8} {run['created']!s:>7} {run['launching']!s:>7} "
              f"{run['start']!s:>7} {run['step']!s:>7} {run['start_cpu']!s:>8} {run['cpu']!s:>6}"
              f"  {'backfill' if run['backfill'] else 'other'} {run['status']}")  # fmt: skip
    starts = [r["start_cpu"] for r in result["runs"] if r["start_cpu"] is not None]
    if starts:
        print(f"  run start CPU: median {statistics.median(starts):.2f} s (n={len(starts)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="standard", choices=sorted(SCENARIOS))
    parser.add_argument("--label", default="")
    parser.add_argument("--json", type=Path, help="append the result as one JSON line")
    args = parser.parse_args()
    result = measure(args.size)
    result["label"] = args.label
    _print(result, args.label)
    if args.json:
        with args.json.open("a") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    psutil.cpu_percent()
    main()
