"""Shared set-up for the Dagster-level tests: an emulator scenario and a matching config."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from gsc_pipeline.config import PipelineConfig, parse_config
from gsc_pipeline.gsc import GscClient, RetryPolicy
from gsc_pipeline.reports import Report
from gsc_pipeline.warehouse.base import column_name

TODAY = dt.date(2026, 3, 20)
SMALL = "sc-domain:small.example"
MEDIUM = "https://www.medium.example/"
FORBIDDEN = "sc-domain:not-yours.example"

EMULATOR_CONFIG: dict[str, Any] = {
    "seed": 11,
    "today": TODAY.isoformat(),
    "latency": {"base_ms": 0, "per_row_us": 0, "jitter_sigma": 0},
    "properties": [
        {"site_url": SMALL, "page_query_rows_per_day": 120, "pages": 30, "search_types": ["web"]},
        # More than one 25,000-row page a day.
        {
            "site_url": MEDIUM,
            "page_query_rows_per_day": 27000,
            "pages": 3000,
            "search_types": ["web"],
        },
        {
            "site_url": FORBIDDEN,
            "page_query_rows_per_day": 50,
            "pages": 10,
            "permission": "siteUnverifiedUser",
            "search_types": ["web"],
        },
    ],
}


def pipeline_config(
    *site_urls: str, days_per_run: int = 3, pool_limit: int = 2, step_concurrency: int = 2
) -> PipelineConfig:
    return parse_config(
        {
            "start_date": "2026-01-01",
            "backfill_days_per_run": days_per_run,
            "credentials": {
                "default": {"pool_limit": pool_limit, "step_concurrency": step_concurrency}
            },
            "properties": [{"site_url": s} for s in site_urls],
        }
    )


T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float) -> T:
    """Poll `probe` until it returns something truthy (and return that), within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s")


def direct_fetch(
    base_url: str, site_url: str, report: Report, day: dt.date, data_state: str = "final"
) -> pd.DataFrame:
    """What the API serves for one day, paged by hand: the reference the warehouse must equal."""
    client = GscClient(base_url, None, qpm_budget=100_000, retry_policy=RetryPolicy(max_attempts=1))
    time_columns = {"date": ["date"], "hour": ["hour"], None: []}[report.time_dimension]
    records = []
    for search_type in report.search_types:
        start = 0
        while True:
            body = {**report.request_body(day, search_type, data_state), "startRow": start}
            rows = client.query(site_url, body).get("rows", [])
            for r in rows:
                keys = r.get("keys", [])
                fixed = {"search_type": search_type, "date": day.isoformat()}
                fixed.update(zip(time_columns, keys[: len(time_columns)], strict=True))
                fixed.update(
                    zip(map(column_name, report.dimensions), keys[len(time_columns) :], strict=True)
                )
                metrics = {m: r.get(m) for m in ("clicks", "impressions", "ctr", "position")}
                records.append({**fixed, **metrics})
            if len(rows) < report.row_limit:
                break
            start += report.row_limit
    hour = ["hour"] if report.hourly else []
    dims = list(map(column_name, report.dimensions))
    columns = ["search_type", "date", *hour, *dims, "clicks", "impressions", "ctr", "position"]
    return normalise(pd.DataFrame.from_records(records, columns=columns), report)


def normalise(df: pd.DataFrame, report: Report) -> pd.DataFrame:
    df = df.copy()
    df["date"] = pd.to_datetime(df["date"]).dt.date.astype(str)
    hour = ["hour"] if report.hourly else []
    if hour:
        # One spelling for an instant: Google's Pacific-offset keys and the stored TIMESTAMPTZ.
        df["hour"] = pd.to_datetime(df["hour"], utc=True).dt.strftime("%Y-%m-%dT%H:%MZ")
    keys = ["search_type", "date", *hour, *map(column_name, report.dimensions)]
    metrics = ["clicks", "impressions", "ctr", "position"]
    df[metrics] = df[metrics].astype(float)
    return df[[*keys, *metrics]].sort_values(keys).reset_index(drop=True)


def warehouse_rows(warehouse, site_url: str, report: Report, day: dt.date) -> pd.DataFrame:
    df = warehouse.read_sql(
        f"SELECT * FROM {report.table} WHERE site_url = ? AND date = ?", [site_url, day]
    )
    return normalise(df, report)


def write_dg_project(root: Path, declarations: dict[str, str], name: str = "proj") -> Path:
    """A minimal dg project at `root` (the layout create-dagster writes: `src/<name>/defs/`)
    with one defs.yaml per entry of `declarations` (folder -> text); returns `root`."""
    package = root / "src" / name
    (package / "defs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        "from pathlib import Path\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0"\n'
        f'[tool.dg]\ndirectory_type = "project"\n[tool.dg.project]\nroot_module = "{name}"\n'
    )
    for folder, text in declarations.items():
        (package / "defs" / folder).mkdir()
        (package / "defs" / folder / "defs.yaml").write_text(text)
    return root
