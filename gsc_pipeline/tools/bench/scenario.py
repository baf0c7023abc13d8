"""The bench's fixed scenarios: the emulated properties, days, latency and quota (`SCENARIOS`),
and the environment the measured processes read."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gsc_pipeline.config import GOOGLE_QPM_QUOTA, PipelineConfig, load_config
from gsc_pipeline.reports import DEFAULT_REPORTS

# The emulated "today" is fixed so every run serves identical data (the emulator's data depends
# only on seed, site, search type and date).
TODAY = dt.date(2026, 6, 30)
FINAL_LAG_DAYS = 3
SMALL = "sc-domain:small.example"
MEDIUM = "sc-domain:medium.example"
LARGE = "sc-domain:large.example"


@dataclass(frozen=True)
class Scenario:
    name: str
    days: int
    # Days of the sequential baseline (per property and report), extrapolated to `days`.
    sequential_days: int
    # (site_url, page x query rows per day, distinct pages)
    properties: tuple[tuple[str, int, int], ...] = (
        (SMALL, 500, 80),
        (MEDIUM, 8_000, 1_200),
        # Over the 50k cap: page_query needs 3 requests a day (25k, 25k, then an empty page).
        (LARGE, 60_000, 6_000),
    )
    latency_base_ms: float = 500
    latency_per_row_us: float = 40
    jitter_sigma: float = 0.3
    quota_qpm: int = GOOGLE_QPM_QUOTA
    budget_fraction: float = 0.8
    # Emulator time_scale: latency / s and quota windows / s; the pipeline's quota x s with it.
    time_scale: float = 1.0
    # None: the real 30 s backfill tick; tests and smoke shorten it.
    daemon_tick_seconds: int | None = None
    seed: int = 5

    @property
    def budget_qpm(self) -> float:
        """The budget in emulated minutes (what the report compares with the quota)."""
        return self.quota_qpm * self.budget_fraction

    @property
    def budget_per_real_second(self) -> float:
        return self.budget_qpm * self.time_scale / 60

    @property
    def day_list(self) -> list[dt.date]:
        # Ends two days before the last final day, which is kept free for the "new day" of the
        # incremental lifetime-stats measurement.
        last = TODAY - dt.timedelta(days=FINAL_LAG_DAYS + 2)
        return [last - dt.timedelta(days=i) for i in reversed(range(self.days))]

    @property
    def new_day(self) -> dt.date:
        return self.day_list[-1] + dt.timedelta(days=1)

    @property
    def small_backfill_day(self) -> dt.date:
        """The last final day: in neither the backfill nor the lifetime stats' new day."""
        return TODAY - dt.timedelta(days=FINAL_LAG_DAYS)

    def emulator_config(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "today": TODAY.isoformat(),
            "time_scale": self.time_scale,
            "max_rows_per_day": 50_000,
            # Every report the bench asks for stays built (`run.warm_emulator`): each property's
            # page x query rows for every day, three times over for the other reports and shards.
            "cache_rows": 3 * self.days * sum(rows for _, rows, _ in self.properties),
            "latency": {
                "base_ms": self.latency_base_ms,
                "per_row_us": self.latency_per_row_us,
                "jitter_sigma": self.jitter_sigma,
            },
            "quotas": {"site_qpm": self.quota_qpm, "user_qpm": self.quota_qpm},
            "properties": [
                {"site_url": site, "page_query_rows_per_day": rows, "pages": pages,
                 "search_types": ["web"]}
                for site, rows, pages in self.properties
            ],
        }  # fmt: skip

    def pipeline_config(self) -> dict[str, Any]:
        """Only what the scenario fixes; pool limit, step concurrency and days per run stay at
        the defaults users get (config.py), which is what the bench measures."""
        return {
            "start_date": self.day_list[0].isoformat(),
            "credentials": {
                "default": {
                    "kind": "none",
                    # Quota windows run time_scale x faster, so the budget per real minute too.
                    "qpm_quota": int(self.quota_qpm * self.time_scale),
                    "budget_fraction": self.budget_fraction,
                }
            },
            "properties": [
                # The fetch backfill alone: no sitemaps snapshot in the measured runs.
                {"site_url": site, "reports": [r.name for r in DEFAULT_REPORTS], "sitemaps": False}
                for site, _, _ in self.properties
            ],
        }


SCENARIOS = {
    "standard": Scenario("standard", days=120, sequential_days=4),
    # Same shape, small enough for CI: 3 days, latency and quota windows 10x faster.
    "smoke": Scenario("smoke", days=3, sequential_days=1, time_scale=10.0, daemon_tick_seconds=2),
}


@dataclass(frozen=True)
class ScenarioFiles:
    """A scenario written out in a work directory (see `write_scenario`)."""

    config_file: Path
    emulator_file: Path
    config: PipelineConfig
    # The Dagster home beside them (not created: `init_instance` does).
    home: Path


def write_scenario(scenario: Scenario, workdir: Path) -> ScenarioFiles:
    """The scenario's pipeline declaration (gsc.yaml) and emulator config (emulator.yaml) in
    `workdir`, the declaration loaded as the pipeline will, and the Dagster home's path."""
    config_file, emulator_file = workdir / "gsc.yaml", workdir / "emulator.yaml"
    config_file.write_text(yaml.safe_dump(scenario.pipeline_config(), sort_keys=False))
    emulator_file.write_text(yaml.safe_dump(scenario.emulator_config()))
    return ScenarioFiles(
        config_file, emulator_file, load_config(config_file), (workdir / "dagster_home").resolve()
    )


@contextlib.contextmanager
def environ_set(values: dict[str, str]) -> Iterator[None]:
    """The daemon and the in-process Definitions read these; restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
