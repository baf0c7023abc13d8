"""Following the daemon's process tree (daemon, code server, run workers) for CPU and memory."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

from gsc_pipeline.warehouse.duckdb_writer import SERVER_MODULE as DUCKDB_WRITER_MODULE


def machine_steal_and_busy() -> tuple[float, float] | None:
    """(steal, busy) CPU seconds of the whole machine so far, all cores: the time a hypervisor
    ran something else while this machine's cores had work (steal), and the time they ran it.
    None where the OS does not report steal (not Linux). A machine shared with others measures
    its CPU in noisier seconds when steal is high: the report shows it beside the load."""
    times = psutil.cpu_times()
    if not hasattr(times, "steal"):  # psutil has it on Linux, with irq and softirq
        return None
    return times.steal, times.user + times.nice + times.system + times.irq + times.softirq


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds of process `pid` so far (user + system); None without one or once it ended."""
    try:
        times = psutil.Process(pid).cpu_times() if pid else None
    except psutil.Error:
        return None
    return None if times is None else times.user + times.system


def postgres_server_cpu() -> float | None:
    """CPU seconds of this machine's PostgreSQL server so far: the postmaster, its ended
    backends (its reaped children) and its live processes. None without a local server.

    Not part of the pipeline's CPU, but on one machine it takes the same cores: a PostgreSQL
    warehouse's COPY, index upkeep and proofs run in the server's backends.
    """
    for proc in psutil.process_iter(["name", "ppid"]):
        try:
            if proc.info["name"] != "postgres" or psutil.Process(proc.info["ppid"]).name() == (
                "postgres"
            ):
                continue
            times = proc.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in proc.children():
                try:
                    child_times = child.cpu_times()
                except psutil.NoSuchProcess:  # ended in between: now a reaped child
                    continue
                total += child_times.user + child_times.system
            return total
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def _minor_faults(pid: int) -> int:
    """A process's minor page faults so far (Linux's /proc/PID/stat), or 0."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The fields after the command name's closing parenthesis: minflt is the 8th.
            return int(stat.read().rpartition(")")[2].split()[7])
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class ProcessSample:
    pid: int
    role: str
    cmdline: str
    cpu_seconds: float = 0.0
    # CPU it had spent when first seen, if it is outside the tree and started before the
    # sampler (DuckDB's writer, which serves a whole Dagster instance): not counted.
    cpu_before: float = 0.0
    peak_rss: int = 0
    # RSS less its shared pages (library code and other file pages, which every run process
    # maps and the kernel keeps once): what one more such process costs the machine.
    peak_private: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    # RSS in bytes by mapping (a file's path, [heap], [anon]...) when RSS peaked; only kept for
    # run workers when the sampler was asked to (TreeSampler.maps_at_peak).
    peak_maps: dict[str, int] = field(default_factory=dict)
    peak_at: float = 0.0  # when RSS peaked (time.time())
    system_seconds: float = 0.0  # the part of cpu_seconds spent in the kernel
    # Minor page faults (a fresh page's first touch), from /proc/PID/stat; 0 where there is none.
    minor_faults: int = 0


@dataclass
class TreeSampler:
    """Follows a process tree (children come and go) and keeps each process's CPU and peak RSS.

    psutil reads /proc, so a process's last sample is up to `interval` old when it exits: the
    CPU it spends in its final `interval` is missed (at most 0.5 s per run process).
    """

    root_pid: int
    interval: float = 0.5
    # Read /proc/PID/smaps whenever a run worker's RSS reaches a new peak (a diagnostic: a few
    # ms per read).
    maps_at_peak: bool = False
    processes: dict[tuple[int, float], ProcessSample] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = field(default_factory=time.time)

    def __enter__(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        # DuckDB's writer does the runs' DuckDB work wherever it was started (by a run, which
        # may have ended, or before the tree: it serves a whole Dagster instance).
        tree = {proc.pid for proc in procs}
        procs += [proc for proc in duckdb_writers() if proc.pid not in tree]
        now = time.time()
        for proc in procs:
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    cpu = proc.cpu_times()
                    memory = proc.memory_info()
                    entry = self.processes.get(key)
                    if entry is None:
                        cmd = " ".join(proc.cmdline())
                        role = _role(proc.pid == self.root_pid, cmd, self._role_of(proc.ppid()))
                        entry = self.processes[key] = ProcessSample(
                            proc.pid, role, cmd, first_seen=now
                        )
                        if proc.pid not in tree and key[1] < self._started:
                            entry.cpu_before = cpu.user + cpu.system
            except psutil.Error:
                continue
            entry.cpu_seconds = max(entry.cpu_seconds, cpu.user + cpu.system - entry.cpu_before)
            entry.system_seconds = max(entry.system_seconds, cpu.system)
            entry.minor_faults = max(entry.minor_faults, _minor_faults(proc.pid))
            if memory.rss > entry.peak_rss:
                entry.peak_rss, entry.peak_at = memory.rss, now
                if self.maps_at_peak and entry.role == "run worker":
                    entry.peak_maps = rss_by_mapping(proc.pid) or entry.peak_maps
            entry.peak_private = max(entry.peak_private, memory.rss - memory.shared)
            entry.last_seen = now

    def mark(self) -> dict[str, float]:
        """Count each process's CPU from this moment on; returns what the tree had spent until
        now (starting up, loading code) by role. Peak RSS is kept as it was."""
        self.sample()
        spent = self.cpu_by_role()
        for entry in self.processes.values():
            entry.cpu_before += entry.cpu_seconds
            entry.cpu_seconds = 0.0
        return spent

    def total_cpu(self) -> float:
        return sum(self.cpu_by_role().values())

    def _role_of(self, pid: int) -> str | None:
        roles = [p.role for (p_pid, _), p in self.processes.items() if p_pid == pid]
        return roles[-1] if roles else None

    def peak_rss_by_role(self) -> dict[str, int]:
        """The largest peak RSS (bytes) of any process of each role."""
        out: dict[str, int] = {}
        for p in self.processes.values():
            out[p.role] = max(out.get(p.role, 0), p.peak_rss)
        return out

    def cpu_by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.processes.values():
            out[p.role] = out.get(p.role, 0.0) + p.cpu_seconds
        return out


def rss_by_mapping(pid: int) -> dict[str, int]:
    """A process's RSS in bytes by what is mapped: a file's path, `[heap]`, `[stack]`, or
    `[anon]` for anonymous memory (malloc's arenas and mmaps, Arrow's and DuckDB's buffers)."""
    out: dict[str, int] = {}
    name = "[anon]"
    try:
        with open(f"/proc/{pid}/smaps") as smaps:
            for line in smaps:
                head, _, rest = line.partition(" ")
                if head == "Rss:":
                    out[name] = out.get(name, 0) + int(rest.split()[0]) * 1024
                elif "-" in head and not head.endswith(":"):
                    fields = line.split(None, 5)
                    name = fields[5].strip() if len(fields) > 5 and fields[5].strip() else "[anon]"
    except OSError:
        return {}
    return out


def duckdb_writers() -> list[psutil.Process]:
    """This machine's DuckDB writer processes (`gsc_pipeline.warehouse.duckdb_server`)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if len(cmdline) > 2 and cmdline[2] == DUCKDB_WRITER_MODULE:
            found.append(proc)
    return found


def _role(is_root: bool, cmdline: str, parent: str | None = None) -> str:
    if is_root:
        return "daemon"
    if DUCKDB_WRITER_MODULE in cmdline:
        return "DuckDB writer"
    # The code server starts each run in a multiprocessing child (DefaultRunLauncher): spawned,
    # or forked from its run fork server (gsc_pipeline.instance.run_start), whose command line
    # the forks keep.
    if "spawn_main" in cmdline or "execute_run" in cmdline or parent == "run fork server":
        return "run worker"
    if "multiprocessing.forkserver" in cmdline:
        return "run fork server"
    if "api grpc" in cmdline:
        return "code server"
    if "watch_orphans" in cmdline or cmdline.startswith("tail "):
        return "compute-log capture"
    return "other"


def analyzes_so_far(warehouse_url: str) -> int:
    """How many times ANALYZE has run on the tables of a PostgreSQL warehouse's schema (by
    anyone: the pipeline's `refresh_statistics`, autovacuum)."""
    from gsc_pipeline.warehouse import open_warehouse

    return int(
        open_warehouse(warehouse_url).read_rows(
            "SELECT COALESCE(SUM(analyze_count + autoanalyze_count), 0) AS n "
            "FROM pg_stat_user_tables WHERE schemaname = current_schema()"
        )[0].n
    )
