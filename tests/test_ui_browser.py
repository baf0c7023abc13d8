"""The UI as a user clicks it: `gsc-pipeline ui` (what `make ui` starts: dg dev on the demo
instance, the emulator beside it) driven by headless Chromium.

A backfill launched from the asset's Materialize dialog shows its checks' results, and the
whole-history checks keep their last real result (never "Skipped") when the asset is
materialized again from the UI. After a backfill of every fetching asset (as the demo launches
it), a fetching asset's check history lists measurements, not "Skipped" rows; a day with rows
deleted from the warehouse is named on the failing check's page, and repair_sensor's run for
that day succeeds.

Fixtures for other browser tests: `ui` (the UI on a fresh workdir), `backfilled_ui` (the same
after a backfill of every fetching asset over three days), `browser_page`.

Chromium is Debian's package (`make test` installs it when missing); playwright drives it
through `executable_path` and never downloads a browser.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION

from gsc_pipeline import audit
from gsc_pipeline.config import load_config
from gsc_pipeline.defs.keys import fetch_asset_keys
from gsc_pipeline.defs.schedules import RANGE_END_TAG, RANGE_START_TAG
from gsc_pipeline.tools.demo import DEMO_DECLARATION
from gsc_pipeline.tools.launch import wait_for_backfill
from tests import ui_process

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
# Whole-history checks of what Google changed (the restatement audit, finalization).
GOOGLE_CHANGE_CHECKS = [audit.RESTATED_DAYS, audit.FRESH_DAYS_FINALIZED]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]


@pytest.fixture
def ui(tmp_path) -> Iterator[tuple[str, Path]]:
    """`gsc-pipeline ui` on a fresh workdir; yields its URL and workdir."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} missing: `make test` installs Debian's chromium package"
        if os.environ.get("GSC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{message}; CI requires it (or unset GSC_REQUIRE_BROWSER)")
        pytest.skip(message)
    port = ui_process.free_port()
    log = tmp_path / "ui.log"
    workdir = tmp_path / "demo"
    # Its own session: the cleanup below reaches everything in the group, whatever happens.
    proc = ui_process.start(ui_process.ui_command(workdir, port), log, start_new_session=True)
    try:
        yield ui_process.wait_until_serving(proc, port, log), workdir
    finally:
        proc.send_signal(signal.SIGTERM)  # stops its whole tree (tests/test_ui_signals.py)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class BackfilledUi:
    base: str
    workdir: Path
    days: list[str]

    @property
    def home(self) -> Path:
        return self.workdir / "dagster_home"


def _graphql(base: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


@pytest.fixture
def backfilled_ui(ui) -> BackfilledUi:
    """The UI after a backfill of every fetching asset over the first three days, launched as
    the demo launches it (the UI's GraphQL mutation) and run by the UI's daemon."""
    base, workdir = ui
    config = load_config(workdir / DEMO_DECLARATION)
    days = [(config.start_date + dt.timedelta(days=i)).isoformat() for i in range(3)]
    answer = _graphql(base, LAUNCH_PARTITION_BACKFILL_MUTATION, {"backfillParams": {
        "partitionNames": days, "title": "demo-like backfill",
        "assetSelection": [{"path": key.path} for key in fetch_asset_keys(config)],
    }})  # fmt: skip
    launched = answer["data"]["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", answer
    filled = BackfilledUi(base, workdir, days)
    _wait_for_runs(filled.home, 1)
    return filled


@pytest.fixture
def browser_page():
    """A Chromium page (Debian's chromium, headless) without Dagster's community dialog."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        # The UI opens a "Join the Dagster community" dialog on localhost a second after load
        # unless this key is in localStorage (dagster-webserver's communityNux state); set it
        # before any page script runs so the dialog never covers the controls.
        page.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda: page.get_by_role("button", name="Skip").click(),
        )
        yield page
        browser.close()


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


def _selects(run: dg.DagsterRun, key: dg.AssetKey) -> bool:
    """Whether `run` materializes asset `key` or evaluates one of its checks."""
    checks = run.asset_check_selection or ()
    return key in (run.asset_selection or ()) or any(c.asset_key == key for c in checks)


def _wait_for_runs(home: Path, count: int, selecting: dg.AssetKey | None = None) -> None:
    """Until `count` runs exist, one of them selecting `selecting` if given, and all have
    finished (the daemon runs them). A count alone can be met early: the demo's sensors start
    runs of their own (seen in CI: a sensor's fetch run finished while the audit clicked in
    the UI had not started, and the history checks then found no audit)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for backfill in instance.get_backfills():
            assert wait_for_backfill(instance, backfill.backfill_id, timeout=300).succeeded
        deadline = time.monotonic() + 180
        while True:
            runs = instance.get_runs()
            selected = selecting is None or any(_selects(r, selecting) for r in runs)
            if len(runs) >= count and selected and all(r.is_finished for r in runs):
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


def test_a_backfill_from_the_ui_shows_check_results_never_skipped(ui, browser_page) -> None:
    base, workdir = ui
    page = browser_page
    home = workdir / "dagster_home"
    declaration = yaml.safe_load((workdir / DEMO_DECLARATION).read_text())
    first_day = dt.date.fromisoformat(str(declaration["attributes"]["start_date"]))
    days = [(first_day + dt.timedelta(days=i)).isoformat() for i in range(4)]
    # 1. A two-day backfill from the asset's Materialize dialog.
    _launch_backfill(page, base, f"[{days[0]}...{days[1]}]")
    _wait_for_runs(home, 1)
    in_run = _check_statuses(page, base, ASSET)
    assert in_run == dict.fromkeys(IN_RUN_CHECKS, "Succeeded")

    # 2. The property's daily restatement audit (the automation sensor runs it each morning;
    #    here from its page), then the whole-history checks, executed from their page: every
    #    one of them has something to measure.
    page.goto(f"{base}/assets/gsc_audit/{ASSET.split('/')[1]}")
    # The button's accessible name includes its icon's ("materialization Materialize").
    page.locator("button", has_text=re.compile(r"^\s*Materialize\s*$")).click()
    _wait_for_runs(home, 2, selecting=dg.AssetKey(["gsc_audit", ASSET.split("/")[1]]))
    history = f"{ASSET}/history"
    assert set(_check_statuses(page, base, history).values()) == {"Not Evaluated"}
    page.get_by_role("button", name="Execute all").click()
    _wait_for_runs(home, 3, selecting=dg.AssetKey(history.split("/")))
    expected = {
        **{f"{name}_all_days": "Succeeded" for name in IN_RUN_CHECKS},
        **dict.fromkeys(GOOGLE_CHANGE_CHECKS, "Succeeded"),
    }
    # The run is over in the instance before the Checks tab shows its results (seen once in CI:
    # "Running" and "Not Evaluated" read right after the run ended): read again until it does.
    deadline = time.monotonic() + 60
    seen = _check_statuses(page, base, history)
    while seen != expected and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        seen = _check_statuses(page, base, history)
    assert seen == expected

    # 3. Another materialization from the UI keeps them as they were: not "Skipped".
    _launch_backfill(page, base, f"[{days[2]}...{days[3]}]")
    _wait_for_runs(home, 4)
    assert _check_statuses(page, base, ASSET) == dict.fromkeys(IN_RUN_CHECKS, "Succeeded")
    assert _check_statuses(page, base, history) == expected
    assert "Skipped" not in page.inner_text("body")


SITE_ASSET = "gsc/example_com/site"


def _check_page(page, base: str, asset: str, check: str, wait_for: str, tab: str = "") -> str:
    """The text of a check's page (Overview: its latest evaluation; or another tab, e.g.
    "Execution history") once `wait_for` shows on it."""
    page.goto(f"{base}/assets/{asset}?view=checks&checkDetail={check}")
    if tab:
        page.get_by_text(tab, exact=True).first.click()
    page.get_by_text(wait_for).first.wait_for(timeout=30_000)
    return page.inner_text("body")


def _connect_when_free(
    path: Path, read_only: bool = False, timeout: float = 120
) -> duckdb.DuckDBPyConnection:
    """A direct connection to the UI's DuckDB file once nothing of the UI holds it: a run, a
    sensor, or its DuckDB writer, which keeps the file a moment after its last transaction."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException:
            assert time.monotonic() < deadline, f"the warehouse stayed locked for {timeout:.0f} s"
            time.sleep(0.2)


def _delete_rows(workdir: Path, table: str, site_url: str, day: str, count: int) -> None:
    """Delete `count` rows of one day, as a fault: the ledger still says they were fetched."""
    with _connect_when_free(workdir / "warehouse.duckdb") as conn:
        conn.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
            "WHERE site_url = ? AND date = ? LIMIT ?)",
            [site_url, day, count],
        )


def _repair_run(home: Path, timeout: float = 400) -> dg.DagsterRun:
    """repair_sensor's first run, once finished (the sensor ticks every 2 minutes)."""
    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while True:
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "repair_sensor"}))
            if runs and runs[0].is_finished:
                return runs[0]
            assert time.monotonic() < deadline, f"no finished repair run in {timeout:.0f} s"
            time.sleep(1)


# The UI's start, a backfill, and repair_sensor's next tick (every 2 minutes) and run.
@pytest.mark.timeout(900)
def test_a_bad_day_is_named_on_its_check_page_then_repaired(backfilled_ui, browser_page):
    ui, page = backfilled_ui, browser_page
    # 1. After the backfill, a fetching asset's check history reads as measurements: one per
    # day (Dagster plans a backfill run's checks per day), each saying its day, none "Skipped".
    for name in IN_RUN_CHECKS:
        text = _check_page(page, ui.base, SITE_ASSET, name, ui.days[0], "Execution history")
        assert "Skipped" not in text, text
        assert text.count("Passed") == len(ui.days), text
        assert all(f"{day}: passed" in text for day in ui.days), text
    page.screenshot(path=str(ui.workdir.parent / "check_history.png"), full_page=True)

    # 2. A fault: 5 page rows of one day deleted from the warehouse.
    bad_day = ui.days[1]
    _delete_rows(ui.workdir, "gsc_page", "sc-domain:shop.example", bad_day, 5)

    # 3. The whole-history checks, executed from the history asset's page, fail and name the
    # day in the text shown first (no JSON to open), with what to do.
    history = f"{ASSET}/history"
    page.goto(f"{ui.base}/assets/{history}?view=checks")
    page.get_by_role("button", name="Execute all").click()
    _wait_for_runs(ui.home, 2, selecting=dg.AssetKey(history.split("/")))
    assert _check_statuses(page, ui.base, history)["rows_match_ledger_all_days"] == "Failed"
    text = _check_page(page, ui.base, history, "rows_match_ledger_all_days", wait_for=bad_day)
    assert "1 day: 5 rows missing" in text, text
    assert "repair requested" in text and "Execute all" in text, text
    assert "Show JSON" not in text.split(bad_day)[0], "the day is in the text shown first"
    page.screenshot(path=str(ui.workdir.parent / "failed_check.png"), full_page=True)

    # 4. repair_sensor re-fetches exactly that day, and its run succeeds on the run's page.
    run = _repair_run(ui.home)
    assert (run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG]) == (bad_day, bad_day)
    page.goto(f"{ui.base}/runs/{run.run_id}")
    page.get_by_text("Success", exact=True).first.wait_for(timeout=60_000)
    assert run.is_success
    # The in-run checks of the repair say which day they measured: a one-day repair.
    text = _check_page(page, ui.base, ASSET, "rows_match_ledger", wait_for=bad_day)
    assert f"passed: {bad_day} (1 day) checked" in text, text
    page.screenshot(path=str(ui.workdir.parent / "repaired_check.png"), full_page=True)
