"""Run processes forked from one warm server instead of each started cold.

Dagster's code server (the default run launcher) starts every run in a `multiprocessing` child
by the "spawn" method: a new interpreter that imports Dagster, pyarrow, the Google client and
these definitions again, ~1-1.5 CPU s and a second or two before the run's first step, and that
maps most of pyarrow's libraries while they initialise.

With the "forkserver" method (`GSC_RUN_START`, the default on Linux) the code server starts
one server process that imports all of that once (`gsc_pipeline.instance.warm_run`); each run
is a fork of it. Where the code server launches the instance's runs (Dagster's default run
launcher: `launches_runs_here`) it starts as the code server loads, so that the first run does
not wait for its imports; elsewhere with the first run the server launches, if any. The fork
shares the server's memory copy-on-write and maps only the library pages the run touches, and
the run starts at the job, not at the imports. Only how the process is made changes: the run
gets the same arguments, the same `start_run_in_subprocess`, the same termination event and the
same exit-code checks.

Dagster fixes its code server's start method when the server is built (`DagsterApiServer`,
Dagster 1.13) and loads the code inside that constructor, so the definitions module calls
`fork_runs_from_warm_server` while it loads and the server being built is found on the stack.
Elsewhere (a run worker, `dg`, tests importing the definitions) nothing is found and nothing
changes.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
import os
import sys
from typing import Any

import yaml

RUN_START_ENV = "GSC_RUN_START"
_METHODS = ("forkserver", "spawn")
# Imported once by the fork server: what every run needs before its first step.
WARM_MODULE = "gsc_pipeline.instance.warm_run"
_LOG = logging.getLogger(__name__)


def run_start_method() -> str:
    """`GSC_RUN_START`: "forkserver" (the default on Linux) or "spawn" (Dagster's own)."""
    default = "forkserver" if sys.platform.startswith("linux") else "spawn"
    method = os.environ.get(RUN_START_ENV, "").strip().lower() or default
    if method not in _METHODS:
        raise ValueError(
            f"{RUN_START_ENV}={method!r} is not a run start method; set it to 'forkserver' "
            "(runs forked from one warm server, the default on Linux) or 'spawn' (Dagster's "
            "own: a fresh interpreter per run), or unset it"
        )
    return method


def fork_runs_from_warm_server() -> bool:
    """If a Dagster code server is loading this code, make it start runs from the fork server.

    True when the server was switched; False where no code server is loading (nothing to do)
    or `GSC_RUN_START=spawn`.
    """
    if run_start_method() != "forkserver" or "dagster._grpc.server" not in sys.modules:
        return False
    server = _server_being_built()
    if server is None:
        return False
    if not hasattr(server, "_mp_ctx"):
        _LOG.warning(
            "this Dagster's code server has no _mp_ctx: runs start by Dagster's own method"
        )
        return False
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([WARM_MODULE])
    server._mp_ctx = context
    if launches_runs_here():
        # Started now, beside the server (its imports run in its own process while the server
        # starts serving): the first run is a fork at once instead of waiting ~1.3 s for them.
        # Elsewhere it starts with the first run this server launches, if any.
        multiprocessing.forkserver.ensure_running()
    return True


def launches_runs_here(home: str | None = None) -> bool:
    """Whether this Dagster instance's runs are launched by its code servers: Dagster's default
    run launcher, in `$DAGSTER_HOME/dagster.yaml` (the local deployment `gsc-pipeline
    init-instance` writes). Not where another launcher starts runs (Kubernetes pods, Dagster+
    agents), nor without a dagster.yaml to say so: a code server there never launches a run,
    and a fork server would be ~200 MB for nothing."""
    home = home if home is not None else os.environ.get("DAGSTER_HOME")
    if not home:
        return False
    try:
        with open(os.path.join(home, "dagster.yaml")) as source:
            settings = yaml.safe_load(source)
    except (OSError, yaml.YAMLError):
        return False
    if not isinstance(settings, dict):
        return False
    launcher = settings.get("run_launcher")
    return launcher is None or (
        isinstance(launcher, dict) and launcher.get("class") == "DefaultRunLauncher"
    )


def _server_being_built() -> Any:
    from dagster._grpc.server import DagsterApiServer

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, DagsterApiServer):
            return candidate
        frame = frame.f_back
    return None
