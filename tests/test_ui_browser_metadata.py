"""The UI shows Dagster's table metadata of a fetched asset, as it does for dagster-sling and
dagster-dlt assets: the row count and column schema on the asset's overview, the fully qualified
table name on its materialization, and the freshness policy. Reuses test_ui_browser's
`gsc-pipeline ui` fixture and helpers (a backfill from the Materialize dialog, run by the daemon).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
import yaml

from tests.test_ui_browser import (  # noqa: F401 - `ui` is a fixture
    ASSET,
    CHROMIUM,
    CHROMIUM_FLAGS,
    _connect_when_free,
    _launch_backfill,
    _wait_for_runs,
    ui,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_browser")]


def _lines_after(page, url: str, heading: str, until: str, expect: str = "") -> list[str]:
    """The non-empty text lines between the last `heading` and the next `until` on `url`, once
    both are shown (and a line `expect`, for a section that loads after the page)."""
    page.goto(url)
    deadline = time.monotonic() + 60
    while True:
        lines = [line.strip() for line in page.inner_text("body").splitlines() if line.strip()]
        start = len(lines) - lines[::-1].index(heading) if heading in lines else len(lines)
        if until in lines[start:]:
            section = lines[start : lines.index(until, start)]
            if not expect or expect in section:
                return section
        assert time.monotonic() < deadline, f"no {heading!r} ... {until!r} on {url}: {lines}"
        page.wait_for_timeout(250)


def _stored(workdir: Path, day: str) -> tuple[str, int, list[tuple[str, str]]]:
    """(qualified table name, the day's rows, columns) of the asset's table, read from the file."""
    (path,) = [p for p in workdir.rglob("*.duckdb") if p.stem != "gsc_state"] or [None]
    assert path is not None, sorted(workdir.rglob("*.duckdb"))
    with _connect_when_free(path, read_only=True, timeout=60) as con:
        rows = con.execute("SELECT COUNT(*) FROM gsc_page WHERE date = ?", [day]).fetchone()[0]
        columns = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'gsc_page' AND table_schema = 'main' ORDER BY ordinal_position"
        ).fetchall()
    return f"{path.stem}.main.gsc_page", rows, columns


def test_a_fetched_asset_shows_row_count_table_name_and_column_schema(ui) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    base, workdir = ui
    declaration = yaml.safe_load((workdir / "gsc.yaml").read_text())
    first_day = dt.date.fromisoformat(str(declaration["attributes"]["start_date"]))
    days = [(first_day + dt.timedelta(days=i)).isoformat() for i in range(2)]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda: page.get_by_role("button", name="Skip").click(),
        )
        _launch_backfill(page, base, f"[{days[0]}...{days[1]}]")
        _wait_for_runs(workdir / "dagster_home", 1)
        overview = f"{base}/assets/{ASSET}"
        status = _lines_after(page, overview, "Row count", "Description")
        columns = _lines_after(page, overview, "Columns", "Metadata")
        expected_freshness = "Fails if more than 2 days since last materialization"
        freshness = _lines_after(
            page, overview, "Freshness policy", "Compute details", expected_freshness
        )
        # The newest materialization is the last day's: its own metadata list, first on Events.
        events = _lines_after(page, f"{base}/assets/{ASSET}?view=events", "Metadata", "Tags")
        browser.close()
    table_name, rows, stored_columns = _stored(workdir, days[1])
    assert rows > 0
    assert status[0] == f"{rows:,}"
    # "Updated <time>", the header row, then each column's name and type.
    assert columns[2:] == [part for column in stored_columns for part in column]
    assert events[events.index("day") + 1] == days[1]
    assert events[events.index("dagster/table_name") + 1] == table_name
    assert events[events.index("dagster/row_count") + 1] == str(rows)
    assert "dagster/column_schema" in events
    assert "Warns if more than 26 hours since last materialization" in freshness
