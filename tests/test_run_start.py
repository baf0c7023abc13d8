"""Run processes forked from one warm server (gsc_pipeline.instance.run_start): the choice and
its refusals. tests/test_daemon.py checks a real run's process is such a fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from gsc_pipeline.instance.run_start import (
    RUN_START_ENV,
    WARM_MODULE,
    fork_runs_from_warm_server,
    launches_runs_here,
    run_start_method,
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the default elsewhere is spawn")
def test_linux_forks_runs_by_default_and_spawn_keeps_dagsters_way(monkeypatch):
    monkeypatch.delenv(RUN_START_ENV, raising=False)
    assert run_start_method() == "forkserver"
    monkeypatch.setenv(RUN_START_ENV, " Spawn ")
    assert run_start_method() == "spawn"
    assert fork_runs_from_warm_server() is False


def test_an_unknown_method_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(RUN_START_ENV, "fork")
    with pytest.raises(ValueError, match=r"GSC_RUN_START='fork' .*'forkserver'.*'spawn'"):
        run_start_method()


def test_outside_a_code_server_nothing_is_switched(monkeypatch):
    """Tests, dg and run workers import the definitions too, with Dagster's server module
    loaded: no code server is being built on their stack, so nothing is switched."""
    import dagster._grpc.server  # noqa: F401

    monkeypatch.delenv(RUN_START_ENV, raising=False)
    assert fork_runs_from_warm_server() is False


@pytest.mark.parametrize(
    ("dagster_yaml", "here"),
    [
        ("instance_class:\n  module: gsc_pipeline.instance.storage\n  class: GscInstance\n", True),
        ("run_launcher:\n  module: dagster\n  class: DefaultRunLauncher\n", True),
        ("run_launcher:\n  module: dagster_k8s\n  class: K8sRunLauncher\n", False),
        (None, False),  # no dagster.yaml: nothing says this server launches runs
        ("run_launcher: [\n", False),  # unreadable: not guessed
    ],
)
def test_a_fork_server_starts_early_only_where_the_code_server_launches_runs(
    tmp_path, dagster_yaml, here
):
    if dagster_yaml is not None:
        (tmp_path / "dagster.yaml").write_text(dagster_yaml)
    assert launches_runs_here(str(tmp_path)) is here


def test_no_dagster_home_starts_no_fork_server_early(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert launches_runs_here() is False


# A code server is a process of its own: the hook runs in a fresh interpreter here, not in a
# test process whose earlier tests may have started (or left) a fork server of their own.
_BUILD_A_SERVER = """
import json, multiprocessing.forkserver, psutil
from dagster._grpc.server import DagsterApiServer
from gsc_pipeline.instance.run_start import fork_runs_from_warm_server

class Building(DagsterApiServer):
    def __init__(self):  # what the hook looks for: a server being built
        self._mp_ctx = None

    def load(self):
        return fork_runs_from_warm_server()

server = Building()
switched = server.load()
pid = multiprocessing.forkserver._forkserver._forkserver_pid
process = psutil.Process(pid) if pid else None
print(json.dumps({
    "switched": switched,
    "method": server._mp_ctx.get_start_method() if server._mp_ctx else None,
    "status": process.status() if process else None,
    "cmdline": process.cmdline() if process else None,
}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the default elsewhere is spawn")
@pytest.mark.parametrize(("launcher", "early"), [(None, True), ("K8sRunLauncher", False)])
def test_a_code_server_of_a_local_instance_starts_its_fork_server_as_it_loads(
    tmp_path, launcher, early
):
    """Where the code server launches the runs, its fork server runs before any run is
    launched, with the warm module preloaded (the first run is then a fork at once); elsewhere
    none is started until a run is (the server's exit stops it)."""
    settings = "telemetry:\n  enabled: false\n"
    if launcher:
        settings += f"run_launcher:\n  module: dagster_k8s\n  class: {launcher}\n"
    (tmp_path / "dagster.yaml").write_text(settings)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    env.pop(RUN_START_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", _BUILD_A_SERVER], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["switched"] is True and seen["method"] == "forkserver", seen
    if not early:
        assert seen["status"] is None, seen
        return
    assert seen["status"] not in (None, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD), seen
    assert any(WARM_MODULE in part for part in seen["cmdline"]), seen
