"""The issue's "done means": from a fresh dg project, two commands and one YAML file.

`create-dagster project`, pip install of this package into the project's new virtualenv,
`dg scaffold defs gsc_pipeline.GscComponent gsc`, point GSC_API_ENDPOINT at the emulator (the
defs.yaml is not edited), and `dg launch --assets '*' --partition <day>` stores exactly what the
API serves, checks passed. Then a bad attribute: `dg check defs` and `dg launch` print the key
and the fix, and no traceback.

The project's virtualenv is new, and gsc-pipeline is built and installed into it from this
checkout by pip (a wheel, not editable), with `--no-deps`: its dependencies come from this test
environment through a .pth file, so the test needs no download and takes seconds, not minutes.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.reports import REPORTS
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import EMULATOR_CONFIG, direct_fetch, warehouse_rows

ROOT = Path(__file__).parents[1]
DAY = "2026-03-02"
# The property `dg scaffold defs` writes, served small by the emulator (as `gsc-pipeline
# emulator` serves it by default).
SCAFFOLDED_SITE = "sc-domain:example.com"
SCAFFOLDED_SITE_EMULATOR = {
    **EMULATOR_CONFIG,
    "properties": [
        {"site_url": SCAFFOLDED_SITE, "page_query_rows_per_day": 120, "pages": 30,
         "search_types": ["web"]},
    ],
}  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dg_project")]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def test_fresh_dg_project_scaffolds_and_launches_the_component(tmp_path):
    env = {
        **os.environ,
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "GSC_WAREHOUSE_URL": f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
    }
    env.pop("GSC_PIPELINE_CONFIG", None)
    (tmp_path / "dagster_home").mkdir()
    create_dagster = str(Path(sys.executable).with_name("create-dagster"))
    _run([create_dagster, "project", "--no-uv-sync", "scratch"], tmp_path, env)
    project = tmp_path / "scratch"

    # The project's own virtualenv, as its README says; gsc-pipeline installed by pip.
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    _run([str(base_python), "-m", "venv", ".venv"], project, env)
    python = project / ".venv" / "bin" / "python"
    venv_site = Path(
        _run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], project, env)
        .strip()
        .splitlines()[-1]
    )
    (venv_site / "_test_dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(ROOT)], project, env)
    installed = _run(
        [str(python), "-c", "import gsc_pipeline; print(gsc_pipeline.__file__)"], project, env
    )
    assert str(venv_site) in installed, "gsc_pipeline must come from the project's virtualenv"

    dg_cli = [str(python), "-m", "dagster_dg_cli.cli"]
    # The scratch project's own package by path rather than `pip install -e .` (13 s of build).
    env = {**env, "VIRTUAL_ENV": str(project / ".venv"), "PYTHONPATH": str(project / "src")}
    _run([*dg_cli, "scaffold", "defs", "gsc_pipeline.GscComponent", "gsc"], project, env)
    defs_yaml = project / "src" / "scratch" / "defs" / "gsc" / "defs.yaml"
    scaffolded = defs_yaml.read_text()
    declaration = yaml.safe_load(scaffolded)
    assert declaration["type"] == "gsc_pipeline.GscComponent"
    # The comments say where the key goes, how to reach the emulator, where rows are stored.
    for hint in ("key_env: GSC_SA_KEY", "GSC_API_ENDPOINT=http://127.0.0.1:8765/",
                 "gsc-pipeline emulator", "GSC_WAREHOUSE_URL", "prefix:"):  # fmt: skip
        assert hint in scaffolded, hint
    # Not one edit to the file: the emulator serves its example property, and the endpoint is
    # the one environment variable set.
    _run([*dg_cli, "check", "defs"], project, env)
    with running_emulator(SCAFFOLDED_SITE_EMULATOR) as emulator:
        env["GSC_API_ENDPOINT"] = emulator.base_url
        _run([*dg_cli, "launch", "--assets", "*", "--partition", DAY], project, env)
        expected = {
            name: direct_fetch(
                emulator.base_url, SCAFFOLDED_SITE, REPORTS[name], pd.Timestamp(DAY).date()
            )
            for name in ("page_query", "page", "site")
        }
    assert defs_yaml.read_text() == scaffolded

    warehouse = open_warehouse(env["GSC_WAREHOUSE_URL"])
    for name, rows in expected.items():
        assert len(rows) > 0
        stored = warehouse_rows(
            warehouse, SCAFFOLDED_SITE, REPORTS[name], pd.Timestamp(DAY).date()
        )
        pd.testing.assert_frame_equal(stored, rows)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        check_keys = [
            dg.AssetCheckKey(dg.AssetKey(["gsc", "example_com", name]), "no_missing_batches")
            for name in ("page_query", "page", "site")
        ]
        for key in check_keys:
            history = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
            assert [r.status.value for r in history] == ["SUCCEEDED"], key

    # A bad attribute: every command a user runs shows the key and the fix, and no traceback.
    defs_yaml.write_text(
        scaffolded.replace("site_url: sc-domain:example.com", "site_url: example.com")
    )
    for command in (["check", "defs"], ["launch", "--assets", "*", "--partition", DAY]):
        done = subprocess.run(
            [*dg_cli, *command], cwd=project, env=env, capture_output=True, text=True, timeout=300
        )
        out = done.stdout + done.stderr
        assert done.returncode != 0, out
        assert "Traceback" not in out and "Stack Trace" not in out, out
        assert "attributes.properties[0].site_url: 'example.com' is not a Search Console" in out
        assert "did you mean 'sc-domain:example.com'" in out
