"""`gsc-pipeline doctor` against the emulator: each problem named, with its fix."""

from __future__ import annotations

from gsc_pipeline.cli import main
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV


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
