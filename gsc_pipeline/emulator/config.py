"""Emulator configuration: one YAML file validated into typed models.

Every model forbids unknown keys so a typo fails loudly, and every error names the key path
(`properties[1].page_query_rows_per_day: ...`) because the YAML is hand-written.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
from importlib import resources
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PACIFIC = ZoneInfo("America/Los_Angeles")
SEARCH_TYPES = ("web", "image", "video", "news", "discover", "googleNews")
PERMISSIONS = ("siteOwner", "siteFullUser", "siteRestrictedUser", "siteUnverifiedUser")

# The pipeline's variable of the same name (gsc_pipeline.constants; the emulator imports nothing
# of the pipeline): one pinned date puts Google's stand-in and the pipeline on the same calendar.
TODAY_ENV = "GSC_TODAY"


class EmulatorConfigError(ValueError):
    """A configuration the emulator cannot run with; the message names the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PropertyConfig(_Strict):
    site_url: str
    # Approximate distinct page x query rows per day, before the 50k/day cap.
    page_query_rows_per_day: int = Field(default=1000, gt=0)
    pages: int = Field(default=200, gt=0)
    anonymized_share: float = Field(default=0.2, ge=0, lt=1)
    permission: Literal[PERMISSIONS] = "siteOwner"  # type: ignore[valid-type]
    search_types: tuple[Literal[SEARCH_TYPES], ...] = ("web",)  # type: ignore[valid-type]
    # Aggregation types this property answers with a 400 (some real properties reject byPage
    # or byProperty outright), so clients can be tested on their fallback.
    rejected_aggregations: tuple[Literal["byPage", "byProperty"], ...] = ()
    # Sitemaps the site has submitted (sitemaps.list), 0 to 4.
    sitemaps: int = Field(default=2, ge=0, le=4)

    @field_validator("site_url")
    @classmethod
    def _site_url_form(cls, value: str) -> str:
        if value.startswith("sc-domain:") and len(value) > len("sc-domain:"):
            return value
        if value.startswith(("http://", "https://")) and value.endswith("/"):
            return value
        raise ValueError("must be 'sc-domain:host' or a URL prefix ending in '/'")


class LatencyConfig(_Strict):
    base_ms: float = Field(default=0.0, ge=0)
    per_row_us: float = Field(default=0.0, ge=0)
    # Log-normal sigma of the multiplicative jitter; 0 gives a constant latency.
    jitter_sigma: float = Field(default=0.0, ge=0)


class LoadQuotaConfig(_Strict):
    enabled: bool = False
    # Budgets in cost units (see quotas.load_cost) per (user, site).
    short_window_budget: float = Field(default=2000.0, gt=0)
    short_window_seconds: float = Field(default=600.0, gt=0)
    daily_budget: float = Field(default=50000.0, gt=0)
    daily_window_seconds: float = Field(default=86400.0, gt=0)


class QuotaConfig(_Strict):
    site_qpm: int = Field(default=1200, gt=0)
    user_qpm: int = Field(default=1200, gt=0)
    project_qpm: int = Field(default=40000, gt=0)
    qps_status: Literal[429, 403] = 429
    load: LoadQuotaConfig = LoadQuotaConfig()


class FaultConfig(_Strict):
    seed: int = 0
    rate_500: float = Field(default=0.0, ge=0, le=1)
    rate_503: float = Field(default=0.0, ge=0, le=1)
    rate_reset: float = Field(default=0.0, ge=0, le=1)
    rate_slow: float = Field(default=0.0, ge=0, le=1)
    # Real seconds (not scaled by time_scale): it must outlast the client's timeout.
    slow_seconds: float = Field(default=30.0, ge=0)
    rate_truncated: float = Field(default=0.0, ge=0, le=1)
    rate_malformed: float = Field(default=0.0, ge=0, le=1)


class Restatement(_Strict):
    """Google correcting final data: the days' impressions (and clicks, when they would exceed
    them) times `factor`, for one site or every site. Impressions over-reported from May 2025
    were corrected so in April 2026."""

    start: dt.date
    end: dt.date
    factor: float = Field(default=0.8, gt=0)
    site_url: str | None = None

    def covers(self, site_url: str, day: dt.date) -> bool:
        return self.start <= day <= self.end and self.site_url in (None, site_url)


class SwitchConfig(_Strict):
    # Days whose totals Google changed after calling them final (`Restatement`).
    restated: tuple[Restatement, ...] = ()
    # searchAppearance values Google no longer sends (FAQ_RICH_RESULT from August 2026): their
    # rows carry no appearance, so they vanish from searchAppearance reports and filters.
    dropped_appearances: tuple[str, ...] = ()
    arbitrary_tie_order: bool = False
    auth_required: bool = False
    old_dates: Literal["clamp", "error"] = "clamp"
    metadata_key_case: Literal["camel", "snake"] = "camel"
    discover_position: Literal["absent", "zero"] = "absent"
    final_lag_days: int = Field(default=3, ge=0, le=10)


class AuthConfig(_Strict):
    # The principal a refresh_token grant authenticates as (per-user quotas key on it).
    user_email: str = "user@example.com"
    service_account_email: str = "gsc-emulator@emulator-project.iam.gserviceaccount.com"


class EmulatorConfig(_Strict):
    seed: int = 1
    today: dt.date | None = None
    max_rows_per_day: int = Field(default=50000, gt=0)
    # Built reports kept, in serialised rows (~200 bytes each): a page of a cached report is a
    # bytes join, a report built anew costs ~6 µs a row of the emulator's CPU.
    cache_rows: int = Field(default=1_500_000, gt=0)
    time_scale: float = Field(default=1.0, gt=0)
    properties: tuple[PropertyConfig, ...] = ()
    latency: LatencyConfig = LatencyConfig()
    quotas: QuotaConfig = QuotaConfig()
    faults: FaultConfig = FaultConfig()
    switches: SwitchConfig = SwitchConfig()
    auth: AuthConfig = AuthConfig()

    @field_validator("properties")
    @classmethod
    def _unique_sites(cls, value: tuple[PropertyConfig, ...]) -> tuple[PropertyConfig, ...]:
        urls = [p.site_url for p in value]
        duplicates = sorted({u for u in urls if urls.count(u) > 1})
        if duplicates:
            raise ValueError(f"duplicate site_url {duplicates}")
        return value

    def start_today(self) -> dt.date:
        """The emulated 'today' at startup: the config's, else the date `GSC_TODAY` pins (the
        pipeline's clock, so both agree), else the current Pacific date."""
        if self.today:
            return self.today
        pinned = os.environ.get(TODAY_ENV, "").strip()
        if pinned:
            try:
                return dt.date.fromisoformat(pinned)
            except ValueError:
                raise ValueError(f"{TODAY_ENV}={pinned!r} is not a date (YYYY-MM-DD)") from None
        return dt.datetime.now(PACIFIC).date()

    def site(self, site_url: str) -> PropertyConfig | None:
        return next((p for p in self.properties if p.site_url == site_url), None)


def _key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(root)"


def _default_mapping() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("default.yaml").read_text()
    return yaml.safe_load(text)


def _read_yaml(path: pathlib.Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise EmulatorConfigError(f"emulator config: cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise EmulatorConfigError(f"emulator config: {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EmulatorConfigError(f"emulator config: {path} must hold a mapping at the top level")
    return data


def load_config(
    config: EmulatorConfig | dict[str, Any] | str | pathlib.Path | None = None,
    **overrides: Any,
) -> EmulatorConfig:
    """Validate a config given as a model, a mapping or a YAML path; None means default.yaml.

    A mapping without `properties` gets the default properties, so a test can say
    `{"latency": {...}}` without restating the sites. `overrides` replace top-level keys.
    """
    if isinstance(config, EmulatorConfig):
        data: dict[str, Any] = config.model_dump()
    elif config is None:
        data = _default_mapping()
    elif isinstance(config, dict):
        data = dict(config)
    else:
        data = _read_yaml(pathlib.Path(config))
    if "properties" not in data:
        data["properties"] = _default_mapping()["properties"]
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return EmulatorConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_key_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise EmulatorConfigError(f"emulator config: {problems}") from None
