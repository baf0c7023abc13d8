"""`gsc-pipeline doctor` against the emulator: each problem named, with its fix."""

from __future__ import annotations

import pytest

from gsc_pipeline.cli import main
from gsc_pipeline.constants import CONFIG_ENV
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV
from gsc_pipeline.warehouse import WAREHOUSE_URL_ENV
from tests.pipeline_env import write_dg_project

GOOD_CONFIG = "start_date: 2026-10-01\nproperties:\n  - site_url: sc-domain:example.com\n"


@pytest.fixture(autouse=True)
def warehouse_in_tmp(tmp_path, monkeypatch):
    """Every doctor run checks the warehouse: keep it in the test's directory."""
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")


def _write(tmp_path, text: str):
    path = tmp_path / "gsc.yaml"
    path.write_text(text)
    return str(path)


def test_doctor_passes_a_good_deployment(gsc_emulator, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(API_ENDPOINT_ENV, gsc_emulator.base_url)
    config = _write(
        tmp_path,
        """
start_date: 2026-01-01
properties:
  - site_url: sc-domain:example.com
  - site_url: https://www.example.org/
""",
    )
    assert main(["doctor", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "sc-domain:example.com: siteOwner, test query ok" in out
    assert f"[ok] warehouse duckdb:///{tmp_path / 'wh.duckdb'}: connected, created" in out
    assert "all good" in out


def test_doctor_names_each_problem_and_its_fix(gsc_emulator, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(API_ENDPOINT_ENV, gsc_emulator.base_url)
    monkeypatch.delenv("AGENCY_KEY", raising=False)
    config = _write(
        tmp_path,
        """
start_date: 2026-01-01
credentials:
  default: {}
  agency: {kind: service_account, key_env: AGENCY_KEY}
properties:
  - site_url: sc-domain:not-yours.example
  - site_url: https://example.com/
  - site_url: sc-domain:unknown.example
  - site_url: sc-domain:client.example
    credential: agency
""",
    )
    assert main(["doctor", "--config", config]) == 1
    out = capsys.readouterr().out
    assert "sc-domain:not-yours.example: permission siteUnverifiedUser" in out
    assert "did you mean 'sc-domain:example.com'" in out
    assert "sc-domain:unknown.example: not in this credential's Search Console account" in out
    assert "AGENCY_KEY is empty or unset" in out
    assert "4 problem(s)" in out


def test_doctor_reports_a_bad_config(tmp_path, capsys):
    config = _write(tmp_path, "start_date: 2026-01-01\nproperties:\n  - site_url: example.com\n")
    assert main(["doctor", "--config", config]) == 1
    assert "did you mean 'sc-domain:example.com'" in capsys.readouterr().out


def test_unreachable_api_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(API_ENDPOINT_ENV, "http://127.0.0.1:9/")
    config = _write(
        tmp_path, "start_date: 2026-01-01\nproperties:\n  - site_url: sc-domain:a.com\n"
    )
    assert main(["doctor", "--config", config]) == 1
    assert "unreachable" in capsys.readouterr().out


@pytest.mark.postgres
def test_doctor_writes_to_a_postgres_warehouse_and_leaves_nothing(
    gsc_emulator, postgres_schema_url, tmp_path, monkeypatch, capsys
):
    import psycopg2

    monkeypatch.setenv(API_ENDPOINT_ENV, gsc_emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, postgres_schema_url)
    assert main(["doctor", "--config", _write(tmp_path, GOOD_CONFIG)]) == 0
    assert "[ok] warehouse postgresql://" in capsys.readouterr().out
    with psycopg2.connect(postgres_schema_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
        assert cur.fetchone() == (0,)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("nonsense", "[FAIL] warehouse: GSC_WAREHOUSE_URL='nonsense': it is neither a URL nor"),
        ("mysql://u:pw@db/gsc", "GSC_WAREHOUSE_URL='mysql://u:***@db/gsc': 'mysql' is not a"),
        ("duckdb:///{tmp}/missing-dir/wh.duckdb", "[FAIL] warehouse duckdb:///{tmp}/missing-dir/"
         "wh.duckdb (GSC_WAREHOUSE_URL): cannot connect and write (IOException: "),
        ("postgresql://postgres@127.0.0.1:9/gsc", "[FAIL] warehouse postgresql://postgres@"
         "127.0.0.1:9/gsc (GSC_WAREHOUSE_URL): cannot connect and write (OperationalError: "),
    ],
)  # fmt: skip
def test_doctor_names_a_warehouse_it_cannot_use(
    gsc_emulator, tmp_path, monkeypatch, capsys, url, says
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(API_ENDPOINT_ENV, gsc_emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, url.format(tmp=tmp_path))
    config = _write(tmp_path, GOOD_CONFIG)
    assert main(["doctor", "--config", config]) == 1
    out = capsys.readouterr().out
    assert says.format(tmp=tmp_path) in out and "1 problem(s)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gsc.yaml"]  # nothing created


def test_doctor_leaves_no_warehouse_file_and_counts_in_words(
    gsc_emulator, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(API_ENDPOINT_ENV, gsc_emulator.base_url)
    assert main(["doctor", "--config", _write(tmp_path, GOOD_CONFIG)]) == 0
    out = capsys.readouterr().out
    assert ": 1 property, 1 credential, start 2026-10-01" in out, out
    assert "connected, created and dropped a scratch table" in out
    # Its docstring's promise: nothing left behind, not even the empty database file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gsc.yaml"]


def _project_declaration(site_url: str, *extra: str) -> str:
    return (
        "type: gsc_pipeline.GscComponent\nattributes:\n  start_date: 2026-10-01\n"
        f"  properties:\n    - site_url: {site_url}\n" + "".join(f"  {x}\n" for x in extra)
    )


def test_doctor_in_a_dg_project_checks_all_its_declarations(
    gsc_emulator, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(API_ENDPOINT_ENV, gsc_emulator.base_url)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    project = write_dg_project(
        tmp_path / "proj",
        {
            "gsc": _project_declaration("sc-domain:example.com"),
            "agency": _project_declaration("sc-domain:shop.example", "prefix: agency"),
        },
    )
    monkeypatch.chdir(project / "src")  # anywhere inside the project
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    defs = project / "src" / "proj" / "defs"
    assert f"config {defs / 'agency' / 'defs.yaml'}: 1 property" in out, out
    assert f"config {defs / 'gsc' / 'defs.yaml'}: 1 property" in out
    assert "sc-domain:example.com: siteOwner, test query ok" in out
    assert "sc-domain:shop.example: siteOwner, test query ok" in out
    # Not the bundled demo's properties.
    assert "www.example.org" not in out and "bundled demo" not in out


def test_doctor_outside_a_project_says_it_uses_the_bundled_demo(
    gsc_emulator, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(API_ENDPOINT_ENV, gsc_emulator.base_url)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    main(["doctor"])
    out = capsys.readouterr().out
    assert "not inside a dg project" in out and "using the bundled demo declaration" in out


def test_doctor_in_a_project_without_a_declaration_says_how_to_add_one(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(write_dg_project(tmp_path / "proj", {}))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "no defs.yaml declares gsc_pipeline.GscComponent" in out
    assert "dg scaffold defs gsc_pipeline.GscComponent gsc" in out
