"""The machine's CPU each second, by what runs: PostgreSQL, the emulator, the pipeline's processes.

    .venv/bin/python scripts/sample_machine_cpu.py OUT.txt &   # beside `gsc-pipeline bench ...`
    kill %1

Every second, each process's CPU (user + system) since the last sample, summed by role and
written as one line: seconds since the start, the total (2.00 = both cores of this machine
busy), then `postgres` (every process of the `postgres` user: the warehouse's backends, and the
instance storage's when it is PostgreSQL), `emulator`, `runs` (the run fork server and the run
workers forked from it, which carry its command line), `code_server`, `daemon`, `duckdb_writer`
and `other` (any other Python process, this one and the bench's included). A process's first
second is not counted (no earlier sample to subtract), so short-lived processes are missed.
Used to see which process took the cores at a moment of the bench's chart (docs/bench/README.md,
issue 14 stop 45).
"""

from __future__ import annotations

import sys
import time

import psutil

ROLES = ("postgres", "emulator", "runs", "code_server", "daemon", "duckdb_writer", "other")


def role(process: psutil.Process) -> str | None:
    try:
        if process.username() == "postgres":
            return "postgres"
        command = " ".join(process.cmdline())
    except psutil.Error:
        return None
    for needle, name in (
        ("gsc_pipeline.emulator", "emulator"),
        ("multiprocessing.forkserver", "runs"),
        ("duckdb_server", "duckdb_writer"),
        ("api grpc", "code_server"),
        ("code-server", "code_server"),
        ("daemon", "daemon"),
    ):
        if needle in command:
            return name
    return "other" if "python" in command else None


def main() -> None:
    out = open(sys.argv[1], "w")  # noqa: SIM115 - written until killed
    out.write("seconds total " + " ".join(ROLES) + "\n")
    last: dict[int, float] = {}
    start = time.monotonic()
    while True:
        used = dict.fromkeys(ROLES, 0.0)
        now: dict[int, float] = {}
        for process in psutil.process_iter():
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            now[process.pid] = times.user + times.system
            name = role(process)
            if name is not None and process.pid in last:
                used[name] += now[process.pid] - last[process.pid]
        last = now
        out.write(f"{time.monotonic() - start:.1f} {sum(used.values()):.2f} "
                  + " ".join(f"{used[r]:.2f}" for r in ROLES) + "\n")  # fmt: skip
        out.flush()
        time.sleep(1.0)


if __name__ == "__main__":
    main()
