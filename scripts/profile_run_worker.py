"""The run worker's CPU per row stored, for one backfill run of the standard scenario.

    .venv/bin/python scripts/profile_run_worker.py [--days 30] [--time-scale 10]
        [--warehouse duckdb|postgres] [--profile OUT.txt] [--rounds 1]
        [--site sc-domain:large.example] [--report page_query] [--maps]

The standard scenario's 3 properties x 3 reports for the last `--days` of its days (30: one
run, `backfill_days_per_run`), against the emulator at `--time-scale` (latency and quota
windows that much faster: CPU, not wall, is what this measures), launched as the UI does and
run by the real daemon. Prints the run worker's CPU s (psutil, sampled every 0.5 s), the rows
stored, µs/row, the peak RSS and private memory (RSS less shared library and file pages), its
kernel CPU and minor page faults (a fresh page's first touch) and the run's events by type;
`--site` and `--report` narrow the backfill to one property or report. With `--warehouse
postgres` it also prints the PostgreSQL server's CPU over the backfill (every backend, ended
ones included: the postmaster's reaped children; the server must run on this machine) and the
sessions the warehouse database saw. With `--profile`, py-spy
(the `profile` extra) samples the run worker from its start and the file gets the functions by
own and total samples. With `--maps`, the largest run worker's RSS by mapping (anonymous
memory, heap, each package's libraries) as it was at its peak, and the run's events around
that moment. Each round is a fresh Dagster home and warehouse.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from gsc_pipeline.config import CONFIG_ENV
from gsc_pipeline.gsc.client import API_ENDPOINT_ENV
from gsc_pipeline.instance import init_instance
from gsc_pipeline.tools.bench.command import _warehouse_url
from gsc_pipeline.tools.bench.run import _rows_written, _run_infos, _wait_idle
from gsc_pipeline.tools.bench.sampler import TreeSampler, postgres_server_cpu
from gsc_pipeline.tools.bench.scenario import SCENARIOS, environ_set, write_scenario
from gsc_pipeline.tools.demo import dagster_daemon, emulator_process
from gsc_pipeline.tools.launch import launch_backfill, wait_for_backfill
from gsc_pipeline.warehouse import WAREHOUSE_URL_ENV


def _spy_on_run_worker(sampler: TreeSampler, out: Path, stop: float) -> subprocess.Popen | None:
    """py-spy on the first run worker the sampler sees (polled until `stop`)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    while time.monotonic() < stop:
        sampler.sample()
        for sample in sampler.processes.values():
            if sample.role == "run worker":
                return subprocess.Popen(
                    [spy, "record", "-p", str(sample.pid), "-r", "50", "--format", "raw",
                     "-o", str(out), "--threads", "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
        time.sleep(0.05)
    return None


def _summarise_profile(raw: Path, out: Path, top: int = 60) -> None:
    """Own and total samples by function from py-spy's collapsed stacks (thread frames dropped)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("thread (")]
        samples += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{samples} samples (py-spy, 50/s, idle threads excluded)", "", "own:"]
    lines += [f"{n / samples:6.1%} {f}" for f, n in own.most_common(top)]
    lines += ["", "total:"]
    lines += [f"{n / samples:6.1%} {f}" for f, n in total.most_common(top)]
    out.write_text("\n".join(lines) + "\n")


def _maps_by_package(maps: dict[str, int]) -> collections.Counter[str]:
    """Mapped RSS keyed by site-packages package (or the path outside site-packages)."""
    out: collections.Counter[str] = collections.Counter()
    for name, size in maps.items():
        if "site-packages/" in name:
            name = "site-packages/" + name.split("site-packages/", 1)[1].split("/", 1)[0]
        out[name] += size
    return out


def _sessions(url: str) -> int | None:
    import psycopg2

    name = url.rsplit("/", 1)[1]
    with contextlib.closing(psycopg2.connect(url)) as con, con.cursor() as cur:
        cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (name,))
        return cur.fetchone()[0]


def one_round(
    days: int, time_scale: float, warehouse: str, profile: Path | None,
    site: str | None = None, report: str | None = None, maps: bool = False,
) -> None:  # fmt: skip
    base = SCENARIOS["standard"]
    scenario = dataclasses.replace(base, time_scale=time_scale, daemon_tick_seconds=2)
    day_keys = [d.isoformat() for d in scenario.day_list[-days:]]
    with tempfile.TemporaryDirectory(prefix="gsc-rw-") as tmp:
        workdir = Path(tmp)
        files = write_scenario(scenario, workdir)
        config, home = files.config, files.home
        with (
            _warehouse_url(warehouse, workdir) as url,
            emulator_process("--config", str(files.emulator_file)) as emu,
            environ_set({CONFIG_ENV: str(files.config_file), "DAGSTER_HOME": str(home),
                         API_ENDPOINT_ENV: emu.base_url, WAREHOUSE_URL_ENV: url}),
        ):  # fmt: skip
            init_instance(home, config)
            from gsc_pipeline.defs.keys import fetch_asset_key

            keys = [
                fetch_asset_key(config, p, r)
                for p in config.properties if site in (None, p.site_url)
                for r in p.report_objects() if report in (None, r.name)
            ]  # fmt: skip
            with dg.DagsterInstance.from_config(str(home)) as instance:
                load = os.getloadavg()[0]
                server_before = postgres_server_cpu() if warehouse == "postgres" else None
                backfill = launch_backfill(instance, home / "workspace.yaml", keys, day_keys,
                                           "profile")  # fmt: skip
                with (
                    dagster_daemon(home, workdir / "daemon.log", 2) as daemon,
                    TreeSampler(daemon.pid, maps_at_peak=maps) as sampler,
                ):
                    spy = None
                    if profile is not None:
                        spy = _spy_on_run_worker(sampler, profile.with_suffix(".raw"),
                                                 time.monotonic() + 300)  # fmt: skip
                    progress = wait_for_backfill(instance, backfill, timeout=1800)
                    _wait_idle(instance, timeout=180)
                    if spy is not None:
                        spy.wait(timeout=60)
                runs = [r for r in _run_infos(instance, backfill) if r.backfill]
                events: collections.Counter[str] = collections.Counter()
                timeline: list[tuple[float, str]] = []
                for run in runs:
                    for entry in instance.all_logs(run.run_id):
                        kind = entry.dagster_event.event_type_value if entry.dagster_event \
                            else "log line"  # fmt: skip
                        events[kind] += 1
                        label = entry.dagster_event.asset_key.to_user_string() if (
                            entry.dagster_event and entry.dagster_event.asset_key
                        ) else (entry.user_message or "")[:60]  # fmt: skip
                        timeline.append((entry.timestamp, f"{kind} {label}"))
            server = None
            if server_before is not None:
                time.sleep(1)  # the postmaster reaps the run's ended backends
                server = (postgres_server_cpu() or server_before) - server_before, _sessions(url)
            rows = _rows_written(url, config)
    workers = [p for p in sampler.processes.values() if p.role == "run worker"]
    cpu = sum(p.cpu_seconds for p in workers)
    rss = max((p.peak_rss for p in workers), default=0)
    private = max((p.peak_private for p in workers), default=0)
    kernel = sum(p.system_seconds for p in workers)
    faults = sum(p.minor_faults for p in workers)
    print(f"{days} days x {len(keys)} asset(s), time scale {time_scale:g}, "
          f"{warehouse}: succeeded {progress.succeeded}, {len(runs)} run(s), load {load:.2f} -> "
          f"{os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    print(f"  run worker CPU {cpu:.1f} s, {rows:,} rows, {cpu / max(rows, 1) * 1e6:.2f} us/row, "
          f"peak RSS {rss / 2**20:.0f} MB (private {private / 2**20:.0f} MB); CPU by role "
          f"{ {k: round(v, 1) for k, v in sorted(sampler.cpu_by_role().items())} }")
    print(f"  run worker kernel CPU {kernel:.1f} s of it, minor page faults {faults:,}")
    if server is not None:
        print(f"  PostgreSQL server CPU {server[0]:.1f} s over the backfill; warehouse database "
              f"sessions {server[1]}")  # fmt: skip
    print(f"  events {sum(events.values())}: "
          + ", ".join(f"{k} {n}" for k, n in events.most_common()), flush=True)
    if maps:
        peak = max(workers, key=lambda p: p.peak_rss, default=None)
        if peak is not None and peak.peak_maps:
            before = [t for t in sorted(timeline) if t[0] <= peak.peak_at][-3:]
            after = [t for t in sorted(timeline) if t[0] > peak.peak_at][:2]
            print(f"  peak {peak.peak_at - peak.first_seen:.1f} s after the run worker started; "
                  "the run's events around it:")
            for at, what in before + [(peak.peak_at, "<- peak")] + after:
                print(f"    {at - peak.first_seen:7.1f} {what}")
            print("  RSS at the peak by mapping (MB; libraries of one package summed):")
            for name, size in _maps_by_package(peak.peak_maps).most_common(25):
                print(f"    {size / 2**20:7.1f} {name}")
    if profile is not None and profile.with_suffix(".raw").exists():
        _summarise_profile(profile.with_suffix(".raw"), profile)
        print(f"  profile: {profile} (raw stacks {profile.with_suffix('.raw')})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--time-scale", type=float, default=10.0)
    parser.add_argument("--warehouse", default="duckdb", choices=["duckdb", "postgres"])
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--site", help="only this property (e.g. sc-domain:large.example)")
    parser.add_argument("--report", help="only this report (e.g. page_query)")
    parser.add_argument("--maps", action="store_true",
                        help="print the largest run worker's RSS by mapping at its peak")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile = args.profile.resolve()
    for _ in range(args.rounds):
        one_round(args.days, args.time_scale, args.warehouse, args.profile, args.site, args.report,
                  args.maps)


if __name__ == "__main__":
    main()
