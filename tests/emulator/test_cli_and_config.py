"""The CLI as a subprocess, and configuration errors that name the key."""

from __future__ import annotations

import json
import pathlib
import signal
import stat
import subprocess
import sys
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
import yaml
from google.oauth2 import service_account

from gsc_pipeline.emulator.config import EmulatorConfigError, load_config
from gsc_pipeline.emulator.testing import EmulatorHandle, running_emulator

from .client import SITE, query, service_for, small_config


def _start(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gsc_pipeline.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("GSC emulator listening on http://127.0.0.1:"), (
        line + process.stderr.read()  # type: ignore[union-attr]
    )
    return process, line.rsplit(" ", 1)[1].strip()


def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=10)


@pytest.fixture
def config_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "emulator.yaml"
    path.write_text(yaml.safe_dump(small_config()))
    return path


def test_cli_serves_until_sigterm_and_exits_0(config_file: pathlib.Path) -> None:
    process, base_url = _start("--config", str(config_file))
    try:
        handle = EmulatorHandle.connect(base_url)
        assert query(service_for(handle))["rows"]
        assert handle.stats()["requests_total"] == 1
        assert handle.config["seed"] == 11
    finally:
        assert _stop(process) == 0


def test_cli_exits_0_on_sigint(config_file: pathlib.Path) -> None:
    process, _ = _start("--config", str(config_file), "--seed", "5", "--time-scale", "4")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0


def test_cli_key_file_survives_restarts(config_file: pathlib.Path, tmp_path: pathlib.Path) -> None:
    key = tmp_path / "key.json"
    first, _ = _start("--config", str(config_file), "--write-key", str(key))
    assert _stop(first) == 0
    written = json.loads(key.read_text())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600  # a private key: owner only
    process, base_url = _start("--config", str(config_file), "--write-key", str(key))
    try:
        info = json.loads(key.read_text())
        assert info["private_key_id"] == written["private_key_id"]
        assert info["token_uri"] == base_url + "token"
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=["https://www.googleapis.com/auth/webmasters.readonly"]
        )
        http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http())
        assert query(service_for(EmulatorHandle.connect(base_url), http))["rows"]
    finally:
        assert _stop(process) == 0


def test_cli_bad_config_names_the_key(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(small_config(latency={"base_ms": -1})))
    result = subprocess.run(
        [sys.executable, "-m", "gsc_pipeline.emulator", "--port", "0", "--config", str(bad)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "latency.base_ms" in result.stderr


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"properties": [{"site_url": SITE}, {"site_url": "sc-domain:b.example",
                                              "page_query_rows_per_day": 0}]},
         "properties[1].page_query_rows_per_day"),
        ({"properties": [{"site_url": "example.com"}]}, "properties[0].site_url"),
        ({"properties": [{"site_url": SITE, "permission": "siteAdmin"}]},
         "properties[0].permission"),
        ({"properties": [{"site_url": SITE, "search_types": ["web", "maps"]}]},
         "properties[0].search_types[1]"),
        ({"properties": [{"site_url": SITE}, {"site_url": SITE}]}, "properties"),
        ({"quotas": {"qps_status": 500}}, "quotas.qps_status"),
        ({"quotas": {"load": {"short_window_budget": 0}}}, "quotas.load.short_window_budget"),
        ({"faults": {"rate_503": 1.5}}, "faults.rate_503"),
        ({"switches": {"old_dates": "wrap"}}, "switches.old_dates"),
        ({"switches": {"tie_order": "random"}}, "switches.tie_order"),
        ({"time_scale": 0}, "time_scale"),
        ({"seeed": 1}, "seeed"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(EmulatorConfigError, match=r"^emulator config: ") as caught:
        load_config(config)
    assert f"{key}:" in str(caught.value)


def test_bad_yaml_and_missing_file(tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1, 2\n")
    with pytest.raises(EmulatorConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(EmulatorConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(EmulatorConfigError), running_emulator({"max_rows_per_day": 0}):
        pass


def test_default_config() -> None:
    config = load_config()
    sites = {p.site_url: p for p in config.properties}
    assert list(sites) == ["sc-domain:example.com", "https://www.example.org/",
                           "sc-domain:shop.example", "sc-domain:big.example",
                           "sc-domain:not-yours.example"]  # fmt: skip
    assert sites["sc-domain:big.example"].page_query_rows_per_day > 3 * 50000 * 0.9
    assert sites["sc-domain:shop.example"].page_query_rows_per_day > 25000
    assert sites["sc-domain:not-yours.example"].permission == "siteUnverifiedUser"
    assert config.latency.base_ms > 0  # the CLI default is realistic...
    assert load_config({}).latency.base_ms == 0  # ...tests start from zero latency
    assert config.quotas.site_qpm == config.quotas.user_qpm == 1200
    assert config.quotas.project_qpm == 40000
    assert config.max_rows_per_day == 50000


def test_the_pytest_plugin_fixture(gsc_emulator: EmulatorHandle) -> None:
    assert gsc_emulator.base_url.startswith("http://127.0.0.1:")
    assert gsc_emulator.config["latency"]["base_ms"] == 0
    assert gsc_emulator.config["today"] == "2026-08-18"
    assert len(service_for(gsc_emulator).sites().list().execute()["siteEntry"]) == 5
