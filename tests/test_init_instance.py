"""`gsc-pipeline init-instance`: never destroys a user's dagster.yaml, says what it wrote."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from gsc_pipeline.cli import main
from gsc_pipeline.constants import CONFIG_ENV
from tests.pipeline_env import write_dg_project

CONFIG = "start_date: 2026-10-01\nproperties:\n  - site_url: sc-domain:example.com\n"


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    path = tmp_path / "gsc.yaml"
    path.write_text(CONFIG)
    return str(path)


def _pool_limit(home, pool: str) -> int | None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return instance.event_log_storage.get_concurrency_info(pool).slot_count


def test_init_instance_keeps_a_users_dagster_yaml(tmp_path, config, capsys):
    home = tmp_path / "home"
    home.mkdir()
    theirs = (
        "# our team's instance: runs and events in our own directory\n"
        "storage:\n"
        "  sqlite:\n"
        f"    base_dir: {tmp_path / 'team_storage'}\n"
        "telemetry:\n"
        "  enabled: false\n"
    )
    (home / "dagster.yaml").write_text(theirs)
    assert main(["init-instance", str(home), "--config", config]) == 0
    out = capsys.readouterr().out
    merged = (home / "dagster.yaml").read_text()
    # Their text first, byte for byte (comment included); the pipeline's sections after it.
    assert merged.startswith(theirs)
    settings = yaml.safe_load(merged)
    assert settings["storage"] == {"sqlite": {"base_dir": str(tmp_path / "team_storage")}}
    assert settings["concurrency"]["pools"]["granularity"] == "op"
    assert settings["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert f"merged gsc_pipeline's settings into {home / 'dagster.yaml'}, keeping yours" in out
    # The pool limit went into their storage, and no workspace.yaml was written.
    assert _pool_limit(home, "gsc_api") == 4
    assert (tmp_path / "team_storage").is_dir()
    assert not (home / "workspace.yaml").exists()
    assert "pool gsc_api: limit 4" in out
    # Run again: nothing to add.
    assert main(["init-instance", str(home), "--config", config]) == 0
    assert (home / "dagster.yaml").read_text() == merged
    assert "unchanged" in capsys.readouterr().out


def test_init_instance_refuses_a_conflicting_dagster_yaml_with_the_diff(
    tmp_path, config, capsys
):
    home = tmp_path / "home"
    home.mkdir()
    theirs = "concurrency:\n  pools:\n    default_limit: 1\n"
    (home / "dagster.yaml").write_text(theirs)
    assert main(["init-instance", str(home), "--config", config]) == 1
    err = capsys.readouterr().err
    assert "differs from gsc_pipeline's settings in concurrency; nothing was written" in err
    assert f"--- {home / 'dagster.yaml'} (yours)" in err
    assert "-    default_limit: 1" in err and "+    default_limit: 4" in err
    assert "rerun with --force" in err
    assert (home / "dagster.yaml").read_text() == theirs
    # --force replaces it, and says so.
    assert main(["init-instance", str(home), "--config", config, "--force"]) == 0
    assert f"replaced {home / 'dagster.yaml'} (--force)" in capsys.readouterr().out
    assert yaml.safe_load((home / "dagster.yaml").read_text())["concurrency"]["pools"] == {
        "default_limit": 4,
        "granularity": "op",
    }


def test_init_instance_writes_workspace_yaml_only_when_asked(tmp_path, config, capsys):
    home = tmp_path / "home"
    assert main(["init-instance", str(home), "--config", config]) == 0
    assert f"created {home / 'dagster.yaml'}" in capsys.readouterr().out
    assert not (home / "workspace.yaml").exists()
    assert main(["init-instance", str(home), "--config", config, "--workspace"]) == 0
    assert f"created {home / 'workspace.yaml'}" in capsys.readouterr().out
    assert "gsc_pipeline.definitions" in (home / "workspace.yaml").read_text()


def test_init_instance_in_a_dg_project_sets_every_declarations_pools(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    declaration = (
        "type: gsc_pipeline.GscComponent\nattributes:\n  start_date: 2026-10-01\n"
        "  credentials: {default: {pool_limit: 3}}\n"
        "  properties:\n    - site_url: sc-domain:example.com\n"
    )
    project = write_dg_project(
        tmp_path / "proj", {"gsc": declaration, "agency": declaration + "  prefix: agency\n"}
    )
    monkeypatch.chdir(project)
    home = tmp_path / "home"
    assert main(["init-instance", str(home)]) == 0
    out = capsys.readouterr().out
    assert "dg project declarations:" in out and "bundled demo" not in out
    assert _pool_limit(home, "gsc_api") == 3
    assert _pool_limit(home, "agency_gsc_api") == 3
