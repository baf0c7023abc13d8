"""Run processes forked from one warm server (gsc_pipeline.instance.run_start): the choice and
its refusals. tests/test_daemon.py checks a real run's process is such a fork."""

from __future__ import annotations

import sys

import pytest

from gsc_pipeline.instance.run_start import (
    RUN_START_ENV,
    fork_runs_from_warm_server,
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
