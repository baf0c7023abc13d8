"""`gsc-pipeline ui` and `make ui` stop everything they started on SIGTERM and SIGINT: the
emulator and dg dev with its webserver, daemon and code servers (issue 15: they outlived it)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests import ui_process

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parents[1]
# What a started UI runs (command-line fragments), each of which must be stopped with it.
PARTS = {
    "emulator": "gsc_pipeline.emulator",
    "dg dev": " dev -w ",
    "webserver": "dagster_webserver",
    "daemon": "dagster._daemon",
    "code server": "code-server start",
}

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _tree_once_up(pid: int, timeout: float = 180) -> list[psutil.Process]:
    """The UI's descendants once every part of it is running."""
    deadline = time.monotonic() + timeout
    while True:
        tree = psutil.Process(pid).children(recursive=True)
        lines = {p.pid: " ".join(p.cmdline()) for p in tree if _alive(p)}
        missing = [n for n, part in PARTS.items() if not any(part in c for c in lines.values())]
        if not missing:
            return tree
        assert time.monotonic() < deadline, f"not started in {timeout:.0f} s: {missing}"
        time.sleep(0.5)


@pytest.mark.parametrize(
    ("how", "sig"),
    [("gsc-pipeline", signal.SIGTERM), ("gsc-pipeline", signal.SIGINT), ("make", signal.SIGTERM)],
    ids=["cli-SIGTERM", "cli-SIGINT", "make-SIGTERM"],
)
def test_a_signal_to_the_ui_stops_every_process_it_started(how, sig, tmp_path) -> None:
    port = ui_process.free_port()
    workdir = tmp_path / "demo"
    if how == "make":
        cmd = ["make", "-s", "-C", str(REPO), "ui", f"VENV={VENV}", f"WORKDIR={workdir}",
               f"PORT={port}"]  # fmt: skip
    else:
        cmd = ui_process.ui_command(workdir, port)
    log = tmp_path / "ui.log"
    proc = ui_process.start(cmd, log)
    tree: list[psutil.Process] = []
    try:
        ui_process.wait_until_serving(proc, port, log)
        tree = _tree_once_up(proc.pid)
        # The signal to the command's own process only, as `kill PID` or a supervisor sends it.
        proc.send_signal(sig)
        proc.wait(timeout=120)
        deadline = time.monotonic() + 60
        while (left := [p for p in tree if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, [" ".join(p.cmdline()) for p in left]
    finally:
        # Whatever this test started and is still running, so a failure leaves nothing behind.
        for leftover in [p for p in tree if _alive(p)]:
            leftover.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
