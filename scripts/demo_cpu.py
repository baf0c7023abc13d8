"""`gsc-pipeline demo` with its process tree's CPU, by role, and its wall time.

    .venv/bin/python scripts/demo_cpu.py <workdir>

Samples the demo's tree every 0.5 s (tools/bench/sampler.py): the demo process itself, the
emulator, the daemon, the code server, each run worker. The emulator's CPU is shown apart (it
stands for Google). Then prints each run's timeline (scripts/run_timeline.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from gsc_pipeline.tools.bench.sampler import TreeSampler

TIMELINE = Path(__file__).with_name("run_timeline.py")


def _role(cmdline: str, role: str) -> str:
    if "gsc_pipeline.emulator" in cmdline:
        return "emulator"
    if "dagster-daemon" in cmdline:
        return "daemon"
    return role


def main(workdir: str) -> None:
    demo = Path(sys.executable).with_name("gsc-pipeline")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(demo), "demo", "--workdir", workdir])
    with TreeSampler(proc.pid) as sampler:
        status = proc.wait()
    wall = time.perf_counter() - t0
    by_role: dict[str, float] = {}
    runs = 0
    for sample in sampler.processes.values():
        role = _role(sample.cmdline, sample.role)
        runs += role == "run worker"
        by_role[role] = by_role.get(role, 0.0) + sample.cpu_seconds
    pipeline = sum(s for role, s in by_role.items() if role != "emulator")
    print(f"demo exit {status}: wall {wall:.1f} s, load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"CPU s without the emulator {pipeline:.1f}; by role "
          f"{ {role: round(s, 1) for role, s in sorted(by_role.items())} }; run workers {runs}")
    subprocess.run([sys.executable, str(TIMELINE), f"{workdir}/dagster_home"], check=False)


if __name__ == "__main__":
    main(sys.argv[1])
