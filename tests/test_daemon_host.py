"""The demo's and the bench's daemon host: one code server for the session, which the daemon
reaches as a `grpc_server` (a managed `python_module` server is replaced every 60 s)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import yaml
from dagster._grpc.client import DagsterGrpcClient

from gsc_pipeline.tools.daemon_host import _grpc_workspace

DEFS = """import dagster as dg


@dg.asset
def tiny() -> None:
    pass


defs = dg.Definitions(assets=[tiny])
"""


def test_a_python_module_workspace_becomes_one_running_code_server(tmp_path: Path):
    (tmp_path / "tiny_defs.py").write_text(DEFS)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": "tiny_defs", "location_name": "tiny",
        "working_directory": str(tmp_path),
    }}]}))  # fmt: skip
    servers: list = []
    grpc = _grpc_workspace(workspace, tmp_path, started=servers.append)
    try:
        socket = str(tmp_path / "code-0.sock")
        assert grpc == {"load_from": [{"grpc_server": {"socket": socket, "location_name": "tiny"}}]}
        # It serves the module's definitions as soon as the workspace is returned.
        client = DagsterGrpcClient(socket=socket)
        assert client.ping("x")["echo"] == "x"
        assert "tiny_defs" in client.list_repositories()
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


def test_any_other_workspace_is_left_to_the_daemon(tmp_path: Path):
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {"port": 4266}}]}))
    assert _grpc_workspace(workspace, tmp_path) is None


# Run with SIGINT ignored, as under nohup or in a script's background job: what it then execs
# reports whether SIGINT is still ignored there.
_SIGINT_PROBE = """
import os, signal, sys
from gsc_pipeline.tools.daemon_host import stoppable_by_sigterm
{call}
check = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
os.execv(sys.executable, [sys.executable, "-c", check])
"""


def test_what_it_starts_does_not_inherit_an_ignored_sigint():
    """Dagster's processes handle SIGTERM as SIGINT; started under an ignored SIGINT they ignored
    SIGTERM too, and a stop waited for SIGKILL. The daemon host gives SIGINT its action back."""

    def ignored_sigint(call: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", _SIGINT_PROBE.format(call=call)],
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    assert ignored_sigint("pass") == "True"  # the situation itself
    assert ignored_sigint("stoppable_by_sigterm()") == "False"
