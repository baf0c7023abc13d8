"""`gsc-pipeline ui` as a process for tests: start it on a free port and wait until it serves.

Shared by the browser test and the signal test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CLI = str(Path(sys.executable).with_name("gsc-pipeline"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ui_command(workdir: Path, port: int) -> list[str]:
    return [CLI, "ui", "--workdir", str(workdir), "--port", str(port)]


def start(cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """Start `cmd` (a UI command) with its output in `log`, outside the suite's config."""
    env = {k: v for k, v in os.environ.items() if k != "GSC_PIPELINE_CONFIG"}
    with open(log, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, **kwargs)


def wait_until_serving(proc: subprocess.Popen, port: int, log: Path, timeout: float = 180) -> str:
    """The UI's base URL once /server_info answers; fails with the log's tail if it exits."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{base}/server_info", timeout=2).close()
            return base
        except OSError:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"the UI did not start in {timeout:.0f} s"
            time.sleep(0.5)
