"""The UI as a user clicks it: `gsc-pipeline ui` (what `make ui` starts: dg dev on the demo
instance, the emulator beside it) driven by headless Chromium.

A backfill launched from the asset's Materialize dialog shows its checks' results, and the
whole-history checks keep their last real result (never "Skipped") when the asset is
materialized again from the UI.

Chromium is Debian's package (`make test` installs it when missing); playwright drives it
through `executable_path` and never downloads a browser.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from gsc_pipeline.tools.launch import wait_for_backfill

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ASSET = "gsc/shop_example/page"
IN_RUN_CHECKS = [
    "no_duplicate_batches",
    "no_missing_batches",
    "rows_match_ledger",
    "truncated_days",
]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ui(tmp_path) -> Iterator[tuple[str, Path]]:
    """`gsc-pipeline ui` on a fresh workdir; yields its URL and DAGSTER_HOME."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} missing: `make test` installs Debian's chromium package"
        if os.environ.get("GSC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{message}; CI requires it (or unset GSC_REQUIRE_BROWSER)")
        pytest.skip(message)
    port = _free_port()
    cli = str(Path(sys.executable).with_name("gsc-pipeline"))
    env = {k: v for k, v in os.environ.items() if k != "GSC_PIPELINE_CONFIG"}
    log = open(tmp_path / "ui.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [cli, "ui", "--workdir", str(tmp_path / "demo"), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # dg dev's webserver, daemon and code server: one group
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/server_info", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "ui.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the UI did not start in 120 s"
                time.sleep(0.5)
        yield base, tmp_path / "demo"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(tmp_path / "demo", ignore_errors=True)


def _launch_backfill(page, base: str, days: str) -> None:
    page.goto(f"{base}/assets/{ASSET}?view=partitions")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    # The partition range box, the dialog's only text input, once its partition keys have loaded.
    # (Before the partition section renders, the dialog's first <input> is a hidden checkbox.)
    partitions = dialog.locator('input[type="text"]:not([placeholder="Loading partition keys..."])')
    partitions.fill(days)
    partitions.press("Enter")
    dialog.get_by_role("button", name="Launch backfill").click()
    page.get_by_text("Created backfill").wait_for()


def _wait_for_runs(home: Path, count: int) -> None:
    """Until `count` runs exist and all have finished (the daemon runs them)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for backfill in instance.get_backfills():
            assert wait_for_backfill(instance, backfill.backfill_id, timeout=120).succeeded
        deadline = time.monotonic() + 120
        while True:
            runs = instance.get_runs()
            if len(runs) >= count and all(r.is_finished for r in runs):
                assert all(r.is_success for r in runs), [r.status for r in runs]
                return
            assert time.monotonic() < deadline, f"runs not finished: {runs}"
            time.sleep(0.5)


STATUSES = ("Succeeded", "Failed", "Skipped", "Not Evaluated", "Running", "Warning")
_CANONICAL = {status.lower(): status for status in STATUSES}


def _check_statuses(page, base: str, asset: str) -> dict[str, str]:
    """Check name -> status as the asset's Checks tab lists them (name line, status line).

    Polls until two reads in a row find the same non-empty set of (name, status) pairs: the
    first status text can appear before the list around it has. Statuses compare case-blind
    (the listing capitalises with CSS: "Not evaluated" reads "Not Evaluated" once styles apply).
    """
    page.goto(f"{base}/assets/{asset}?view=checks")
    deadline = time.monotonic() + 30
    previous: dict[str, str] = {}
    while True:
        lines = [line.strip() for line in page.inner_text("body").splitlines() if line.strip()]
        pairs = {
            lines[i]: _CANONICAL[lines[i + 1].lower()]
            for i in range(len(lines) - 1)
            if lines[i + 1].lower() in _CANONICAL
        }
        if pairs and pairs == previous:
            return pairs
        previous = pairs
        assert time.monotonic() < deadline, f"no check statuses on {asset}'s Checks tab: {lines}"
        page.wait_for_timeout(250)


def test_a_backfill_from_the_ui_shows_check_results_never_skipped(ui) -> None:
    from playwright.sync_api import sync_playwright

    base, workdir = ui
    home = workdir / "dagster_home"
    declaration = yaml.safe_load((workdir / "gsc.yaml").read_text())
    first_day = dt.date.fromisoformat(str(declaration["attributes"]["start_date"]))
    days = [(first_day + dt.timedelta(days=i)).isoformat() for i in range(4)]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        # The UI opens a "Join the Dagster community" dialog on localhost a second after load
        # unless this key is in localStorage (dagster-webserver's communityNux state); set it
        # before any page script runs so the dialog never covers the controls.
        page.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda: page.get_by_role("button", name="Skip").click(),
        )
        # 1. A two-day backfill from the asset's Materialize dialog.
        _launch_backfill(page, base, f"[{days[0]}...{days[1]}]")
        _wait_for_runs(home, 1)
        in_run = _check_statuses(page, base, ASSET)
        assert in_run == dict.fromkeys(IN_RUN_CHECKS, "Succeeded")

        # 2. The whole-history checks, executed from their page.
        history = f"{ASSET}/history"
        assert set(_check_statuses(page, base, history).values()) == {"Not Evaluated"}
        page.get_by_role("button", name="Execute all").click()
        _wait_for_runs(home, 2)
        expected = {f"{name}_all_days": "Succeeded" for name in IN_RUN_CHECKS}
        assert _check_statuses(page, base, history) == expected

        # 3. Another materialization from the UI keeps them as they were: not "Skipped".
        _launch_backfill(page, base, f"[{days[2]}...{days[3]}]")
        _wait_for_runs(home, 3)
        assert _check_statuses(page, base, ASSET) == dict.fromkeys(IN_RUN_CHECKS, "Succeeded")
        assert _check_statuses(page, base, history) == expected
        assert "Skipped" not in page.inner_text("body")
        browser.close()
