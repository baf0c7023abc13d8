"""`dagster-daemon run` with one code server for the whole session (the demo's, the bench's).

    python -m gsc_pipeline.tools.daemon_host <workspace.yaml>

Given a `python_module` workspace, `dagster-daemon run` manages the code server itself and
replaces it every 60 s (Dagster 1.13's `RELOAD_WORKSPACE_INTERVAL`, a module constant): each
replacement imports Dagster and builds the definitions again (~4-5 CPU s on a 2-core machine,
three or four times in the bench's backfill), and the replaced server lives on as long as the
runs it started. `dagster dev` and a deployment run code servers of their own instead, which
the daemon only asks for a fresh snapshot.

This does the same for a workspace of `python_module` entries: it starts `dagster api grpc` for
each, waits until it answers, then becomes the daemon (exec, same pid) with a workspace of
`grpc_server` entries. The code servers stay its children: stopping the process group stops
them with it, and the bench's sampler sees them as the daemon's code server. Any other
workspace is passed to the daemon unchanged.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml


def _keep(server: subprocess.Popen) -> None:
    """The daemon's code servers live as long as it does (its process group is stopped)."""


def _wait_until_serving(server: subprocess.Popen, socket_path: str, timeout: float) -> None:
    """The server binds its socket once it has loaded the code: poll until a connect succeeds
    (without importing Dagster here, which the daemon does after the exec)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(socket_path)
                return
            except OSError:
                pass
        if server.poll() is not None:
            raise RuntimeError(f"the code server exited ({server.returncode}) while loading")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the code server did not load its code in {timeout:.0f} s")
        time.sleep(0.1)


def _grpc_workspace(
    workspace: Path, socket_dir: Path, started: Callable[[subprocess.Popen], None] = _keep
) -> dict | None:
    """Start a code server per python_module entry (each passed to `started`); the workspace
    naming them, or None for any other workspace."""
    entries = (yaml.safe_load(workspace.read_text()) or {}).get("load_from") or []
    if not entries or any(set(entry) != {"python_module"} for entry in entries):
        return None
    load_from = []
    for i, entry in enumerate(entries):
        spec = entry["python_module"]
        spec = {"module_name": spec} if isinstance(spec, str) else spec
        socket_path = str(socket_dir / f"code-{i}.sock")
        location = spec.get("location_name") or spec["module_name"]
        options = {"--working-directory": spec.get("working_directory"),
                   "--attribute": spec.get("attribute")}  # fmt: skip
        server = subprocess.Popen([
            sys.executable, "-m", "dagster", "api", "grpc", "--socket", socket_path,
            "--location-name", location, "--module-name", spec["module_name"],
            *(arg for option, value in options.items() if value for arg in (option, value)),
            "--log-level", "warning",
        ])  # fmt: skip
        started(server)
        _wait_until_serving(server, socket_path, timeout=180)
        load_from.append({"grpc_server": {"socket": socket_path, "location_name": location}})
    return {"load_from": load_from}


def stoppable_by_sigterm() -> None:
    """Let the Dagster processes this one starts stop on SIGTERM.

    Dagster's processes (`dagster api grpc`, `dagster-daemon`) handle SIGTERM as whatever SIGINT
    does (`setup_interrupt_handlers`); an ignored SIGINT is inherited across exec, and a parent
    that ignores it (`nohup`, a script's `&` background job) thereby made them ignore SIGTERM:
    stopping them then waited for SIGKILL. Here SIGINT gets Python's own handler back (a
    process started from here gets the default action).
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str]) -> None:
    stoppable_by_sigterm()
    workspace = Path(argv[0]).resolve()
    # Beside the workspace, unless that path is too long for a Unix socket (~100 bytes).
    socket_dir = workspace.parent
    if len(str(socket_dir)) > 80:
        socket_dir = Path(tempfile.mkdtemp(prefix="gsc-code-"))
    grpc = _grpc_workspace(workspace, socket_dir)
    if grpc is not None:
        workspace = socket_dir / "daemon-workspace.yaml"
        workspace.write_text(yaml.safe_dump(grpc, sort_keys=False))
    daemon = str(Path(sys.executable).with_name("dagster-daemon"))
    os.execv(daemon, [daemon, "run", "-w", str(workspace), *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
