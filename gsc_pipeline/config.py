"""What to fetch and for whom: the properties/credentials config file.

One YAML file lists the Search Console properties, the credential each uses, and the knobs a
data engineer turns (start date, quota budget, pool limit, days per backfill run). It is
validated here, once, with errors that name the key and say how to fix it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gsc_pipeline.constants import (
    CONFIG_ENV,
    DEFAULT_POOL,
    DEFAULT_POOL_LIMIT,
    DEFAULT_STEP_MEMORY_MB,
    GOOGLE_QPM_QUOTA,
    IDENTIFIER_PATTERN,
)
from gsc_pipeline.reports import (
    DEFAULT_REPORTS,
    DEFAULT_SHARD_BUDGET,
    MAX_ROW_LIMIT,
    REPORTS,
    RETENTION_MONTHS,
    Filter,
    Report,
    ReportDefinitionError,
    declare,
    shard_levels,
)
from gsc_pipeline.search_calendar import oldest_available_day, pacific_today

# The demo's declaration: this project's own dg defs.yaml (a GscComponent's attributes).
BUNDLED_DEMO_CONFIG = Path(__file__).parent / "defs" / "gsc" / "defs.yaml"
# The `type:` of a defs.yaml declaring the component.
COMPONENT_TYPE = "gsc_pipeline.GscComponent"

_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_DOMAIN_RE = re.compile(rf"^sc-domain:{_LABEL}(\.{_LABEL})+$")
_URL_PREFIX_RE = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?/$")


# `start_date: earliest` follows Google's window: the oldest day it keeps when the config loads.
EARLIEST = "earliest"


class ConfigError(ValueError):
    """The config file is wrong; the message names the key and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def validate_site_url(site_url: str) -> str:
    """Accept the two property forms Search Console knows; anything else is a clear error."""
    if _DOMAIN_RE.match(site_url) or _URL_PREFIX_RE.match(site_url):
        return site_url
    suggestion = _suggest_site_url(site_url)
    if suggestion is None:
        raise ValueError(
            f"{site_url!r} is not a Search Console property; write a domain property as "
            "'sc-domain:example.com' or a URL-prefix property as 'https://www.example.com/' "
            "(with the trailing slash)"
        )
    raise ValueError(f"{site_url!r} is not a Search Console property; did you mean {suggestion}?")


def _suggest_site_url(site_url: str) -> str | None:
    """The valid form(s) the user most likely meant, quoted, or None for unreadable input."""
    text = site_url.strip()
    domain = re.match(r"(?i)^sc-domain:(.*)$", text)
    prefix = re.match(r"(?i)^(https?)://([^/?#]*)([^?#]*)", text)
    if domain:
        host = re.sub(r"(?i)^https?://", "", domain.group(1)).split("/")[0].lower()
        candidates = [(f"sc-domain:{host}", "domain property: the bare host name")]
    elif prefix:
        path = prefix.group(3).strip("/")
        url = f"{prefix.group(1).lower()}://{prefix.group(2).lower()}/{path + '/' if path else ''}"
        candidates = [(url, "URL-prefix property, with the trailing slash")]
    else:
        # A bare host, or one behind a scheme Search Console does not know (ftp://...).
        host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text.lower()).split("/")[0]
        if not _DOMAIN_RE.match(f"sc-domain:{host}"):
            return None
        candidates = [
            (f"sc-domain:{host}", "domain property"),
            (f"https://{host}/", "URL-prefix property, with the trailing slash"),
        ]
    valid = [
        f"{url!r} ({form})"
        for url, form in candidates
        if _DOMAIN_RE.match(url) or _URL_PREFIX_RE.match(url)
    ]
    return " or ".join(valid) or None


def _today(info: ValidationInfo) -> dt.date:
    """The Pacific date Google's window is placed at: `parse_config(today=...)`, else today's."""
    return (info.context or {}).get("today") or pacific_today()


def _identifier(value: str | None, info: ValidationInfo) -> str | None:
    """Names that become asset key segments, group, pool and schema names."""
    if value is not None and not re.fullmatch(IDENTIFIER_PATTERN, value):
        raise ValueError(
            f"{info.field_name} {value!r} must be lowercase letters, digits and underscores"
        )
    return value


class CredentialConfig(_Strict):
    """One Google identity. Quotas are per credential, so each gets its own pool and budget.

    Secrets are never in this file: it names the environment variable (or file) holding them.
    """

    kind: Literal["none", "service_account", "oauth"] = "none"
    # Environment variable holding the key JSON (raw or base64), or a path to it.
    key_env: str | None = None
    key_file: str | None = None
    qpm_quota: int = Field(GOOGLE_QPM_QUOTA, gt=0)
    budget_fraction: float = Field(0.8, gt=0, le=1)
    pool_limit: int = Field(DEFAULT_POOL_LIMIT, ge=1, le=64)
    # Most days one fetching step keeps in flight: the memory cap. Below it the step keeps
    # budget x latency in flight (Little's law, `sync.days.InFlight`): alone at 960/min with
    # 25,000-row pages at ~1 s that is ~17; see docs/bench/README.md.
    step_concurrency: int = Field(16, ge=1, le=64)
    # Most MB of fetched rows one fetching step holds (its days not yet committed, each counted
    # at the size of its report's recent days): a property of 60,000 rows a day holds ~8 days,
    # a small one `step_concurrency`. A run process's peak is about twice this above what its
    # imports take (pages and response bodies in flight); see docs/bench/README.md. Days of one
    # unsharded request fetch their pages one after another, so a step alone on a property of
    # 50,000-row days keeps ~9 requests in flight: raise it where such a step must use the
    # whole budget alone.
    step_memory_mb: int = Field(DEFAULT_STEP_MEMORY_MB, ge=1, le=4096)

    @model_validator(mode="after")
    def _secret_source(self) -> CredentialConfig:
        if self.kind != "none" and not (self.key_env or self.key_file):
            raise ValueError(
                f"a {self.kind} credential needs key_env (an environment variable holding the "
                "JSON key, raw or base64) or key_file (a path to it)"
            )
        return self

    @property
    def qpm_budget(self) -> float:
        return self.qpm_quota * self.budget_fraction


class FilterConfig(_Strict):
    """One filter of a declared report, in Google's terms (filters are ANDed)."""

    dimension: str
    operator: str = "equals"
    expression: str


class ReportConfig(_Strict):
    """A report declared under the config's top-level `reports:` (validated by its name)."""

    dimensions: tuple[str, ...]
    search_types: tuple[str, ...] = ("web",)
    aggregation_type: str = "auto"
    filters: tuple[FilterConfig, ...] = ()
    row_limit: int = MAX_ROW_LIMIT
    # How a day over Google's 50,000-row cap is split: auto (on for page x query reports),
    # off, or the levels in order ([device, country, page]); README "Past the 50,000-row cap".
    shard: Literal["auto", "off"] | tuple[str, ...] = "auto"
    shard_budget: int = DEFAULT_SHARD_BUDGET
    # learned: a day whose neighbours were capped starts at the splits they needed (no capped
    # whole-day request); whole: every day starts with its whole-day request.
    shard_start: Literal["learned", "whole"] = "learned"

    def report(self, name: str) -> Report:
        return declare(
            name,
            self.dimensions,
            search_types=self.search_types,
            aggregation_type=self.aggregation_type,
            filters=tuple(Filter(f.dimension, f.expression, f.operator) for f in self.filters),
            row_limit=self.row_limit,
            shard=self.shard,
            shard_budget=self.shard_budget,
            shard_start=self.shard_start,
        )


class PropertyConfig(_Strict):
    site_url: str
    # Asset key segment and group name; derived from the site URL when omitted.
    name: str | None = None
    credential: str = "default"
    reports: tuple[str, ...] = tuple(r.name for r in DEFAULT_REPORTS)
    # Overrides the search types of every report of this property.
    search_types: tuple[str, ...] | None = None
    # Overrides the aggregation type of every report of this property: `auto` for properties
    # whose API answers byPage/byProperty with a 400.
    aggregation_type: str | None = None
    # Override every report's `shard` and `shard_budget` for this property (see ReportConfig).
    shard: Literal["auto", "off"] | tuple[str, ...] | None = None
    shard_budget: int | None = None
    shard_start: Literal["learned", "whole"] | None = None
    # Snapshot the property's submitted sitemaps daily (asset gsc_sitemaps/<property>).
    sitemaps: bool = True

    _check_site = field_validator("site_url")(lambda cls, v: validate_site_url(v))

    _check_name = field_validator("name")(lambda cls, v, info: _identifier(v, info))

    @property
    def key(self) -> str:
        return self.name or property_key(self.site_url)

    # The config's declared reports, set when the whole config is validated.
    _declared: dict[str, Report] = PrivateAttr(default_factory=dict)

    def report_objects(self) -> tuple[Report, ...]:
        """The property's reports: built-in or declared by name, with its search types."""
        available = {**REPORTS, **self._declared}
        out = []
        for name in self.reports:
            if name not in available:
                raise ValueError(
                    f"unknown report {name!r}; choose a built-in report {sorted(REPORTS)} or "
                    "declare it under the top-level `reports:`"
                )
            report = available[name]
            overridden = (self.search_types, self.aggregation_type, self.shard, self.shard_budget,
                          self.shard_start)  # fmt: skip
            if any(value is not None for value in overridden):
                report = dataclasses.replace(
                    report,
                    search_types=tuple(self.search_types or report.search_types),
                    aggregation_type=self.aggregation_type or report.aggregation_type,
                    shard=report.shard
                    if self.shard is None
                    else shard_levels(name, self.shard, report.dimensions),
                    shard_budget=report.shard_budget
                    if self.shard_budget is None
                    else self.shard_budget,
                    shard_start=self.shard_start or report.shard_start,
                )
                try:
                    report.validate()
                except ReportDefinitionError as exc:
                    raise ValueError(
                        f"report {name!r} with this property's {exc.key}: {exc.problem}"
                    ) from None
            out.append(report)
        return tuple(out)


def property_key(site_url: str) -> str:
    """`sc-domain:shop.example` -> `shop_example`, `https://www.example.org/` -> `www_example_org`.
    """
    bare = re.sub(r"^(sc-domain:|https?://)", "", site_url)
    key = re.sub(r"[^a-z0-9]+", "_", bare.lower()).strip("_")
    return key if key[:1].isalpha() else f"p_{key}"


class PipelineConfig(_Strict):
    # Namespace of this declaration: asset keys, job, schedule, sensors, pools, resources and
    # warehouse tables (a schema) carry it, so two declarations in one code location (two
    # agencies) never clash. Unset: the unprefixed names.
    prefix: str | None = None
    # First day to fetch (GSC keeps 16 months); partitions start here.
    start_date: dt.date
    # Days per backfill run: one run fetches this many days for every asset it holds.
    # 30: the daemon takes seconds to submit each run on a small machine and each run costs
    # seconds of CPU to start, so fewer, longer runs keep the pool busy (docs/bench/README.md).
    backfill_days_per_run: int = Field(30, ge=1, le=400)
    # The daily schedule re-fetches this many recent days (GSC revises them for 2-3 days).
    refresh_days: int = Field(4, ge=1, le=30)
    # Fetch recent days with dataState=all, then let the finalization sensor replace them.
    fresh_data: bool = False
    # How often the finalization sensor asks Google which fresh days are final (one request per
    # property holding fresh days) and replaces them: a fresh day is final within this long.
    finalization_interval_seconds: int = Field(600, ge=5, le=86400)
    credentials: dict[str, CredentialConfig] = Field(
        default_factory=lambda: {"default": CredentialConfig()}
    )
    # Reports declared once by name (custom dimensions, filters, search types); properties
    # name them in their `reports:` list beside the built-in ones.
    reports: dict[str, ReportConfig] = Field(default_factory=dict)
    properties: tuple[PropertyConfig, ...]
    # How the assets look in Dagster (read by gsc_pipeline.defs.translator, never by fetching):
    # owners of every asset (`team:seo` or an email), and `translation`, Dagster's asset
    # attributes (key, key_prefix, group_name, owners, tags, description, ...) applied to each
    # fetching asset, the same shape as dagster-sling's and dagster-dlt's `translation:`.
    owners: tuple[str, ...] = ()
    translation: dict[str, Any] | str | None = None

    @cached_property
    def declared_reports(self) -> dict[str, Report]:
        return {name: declared.report(name) for name, declared in self.reports.items()}

    def _check_declared_reports(self) -> None:
        for name, declared in self.reports.items():
            if name in REPORTS:
                raise ValueError(
                    f"reports.{name}: {name!r} is a built-in report and a declared report may "
                    f"not shadow it; give yours another name (built-ins: {sorted(REPORTS)})"
                )
            try:
                declared.report(name)
            except ReportDefinitionError as exc:
                raise ValueError(f"reports.{name}.{exc.key}: {exc.problem}") from None

    _check_prefix = field_validator("prefix")(lambda cls, v, info: _identifier(v, info))

    @field_validator("start_date", mode="before")
    @classmethod
    def _earliest(cls, value: object, info: ValidationInfo) -> object:
        # `earliest`: everything Google keeps, resolved each time the config loads, so a config
        # that wants the whole window never falls out of it as the window moves.
        if isinstance(value, str) and value.strip().lower() == EARLIEST:
            return oldest_available_day(_today(info))
        return value

    @field_validator("start_date")
    @classmethod
    def _inside_google_window(cls, start: dt.date, info: ValidationInfo) -> dt.date:
        # Google serves only the last 16 months: older partitions could only ever be empty.
        today = _today(info)
        oldest = oldest_available_day(today)
        if start < oldest:
            raise ValueError(
                f"{start} is older than Google's {RETENTION_MONTHS}-month window; the earliest "
                f"allowed date today is {oldest} (the window moves forward a day each day, so "
                f"leave some margin, or write `start_date: {EARLIEST}` to follow the window)"
            )
        if start > today:
            raise ValueError(
                f"{start} is in the future (today is {today}, Pacific Time); set a past day, "
                f"on or after {oldest}"
            )
        return start

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        if not self.properties:
            raise ValueError("properties: list at least one Search Console property")
        self._check_declared_reports()
        seen: dict[str, str] = {}
        for i, prop in enumerate(self.properties):
            prop._declared = self.declared_reports
            if prop.credential not in self.credentials:
                raise ValueError(
                    f"properties[{i}].credential: {prop.credential!r} is not defined under "
                    f"credentials (have {sorted(self.credentials)})"
                )
            try:
                prop.report_objects()
            except ValueError as exc:
                raise ValueError(f"properties[{i}].reports: {exc}") from None
            if prop.key in seen:
                raise ValueError(
                    f"properties[{i}]: {prop.site_url!r} and {seen[prop.key]!r} both map to "
                    f"the name {prop.key!r}; give one of them an explicit `name:`"
                )
            seen[prop.key] = prop.site_url
        return self

    @cached_property
    def pools(self) -> dict[str, str]:
        """Dagster pool per credential: `gsc_api` for the default one, `gsc_api_<name>` else."""
        return {name: self.namespaced(pool_name(name)) for name in self.credentials}

    def namespaced(self, name: str) -> str:
        """`name` inside this declaration's namespace: `<prefix>_<name>`, or `name` unprefixed."""
        return f"{self.prefix}_{name}" if self.prefix else name


def pool_name(credential: str) -> str:
    return DEFAULT_POOL if credential == "default" else f"{DEFAULT_POOL}_{credential}"


def validation_problems(exc: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    """Each problem of `exc` as (key path, message naming the fix), in the words of this module.

    A dg defs.yaml places the key paths on lines; a plain config file prints them inline.
    """
    problems = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"].startswith("date_"):
            reason = msg.removeprefix("Input should be a valid date or datetime, ")
            msg = (
                f"{err['input']!r} is not a calendar day ({reason}); write it as YYYY-MM-DD, "
                "e.g. 2026-02-28"
            )
        problems.append((tuple(err["loc"]), msg))
    return problems


def key_path(loc: tuple[str | int, ...]) -> str:
    """`('properties', 0, 'site_url')` -> `properties[0].site_url`."""
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")


def _format_validation_error(exc: ValidationError, source: str) -> str:
    # Whole-config checks name their key path in the message themselves.
    lines = [f"{key_path(loc)}: {msg}" if loc else msg for loc, msg in validation_problems(exc)]
    return f"{source}: " + "; ".join(lines)


def parse_config(
    data: object, source: str = "config", *, today: dt.date | None = None
) -> PipelineConfig:
    """Validate `data`; `today` (Pacific, default the real one) places Google's window."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    try:
        return PipelineConfig.model_validate(data, context={"today": today})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


class _TextDatesLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so pydantic parses them and a bad one is reported
    with its key (PyYAML itself raises a bare ValueError for 2026-02-30)."""


_TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_config(path: str | os.PathLike[str] | None = None) -> PipelineConfig:
    """Load the file at `path`, else $GSC_PIPELINE_CONFIG, else the bundled demo declaration.

    The file is either a plain config or a dg `defs.yaml` declaring a GscComponent, whose
    `attributes:` are the config: doctor and init-instance read the same file as `dg`.
    """
    path = Path(path or os.environ.get(CONFIG_ENV) or BUNDLED_DEMO_CONFIG)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (set {CONFIG_ENV} to its path)")
    data = read_yaml(path)
    if isinstance(data, dict) and "type" in data and "attributes" in data:
        return parse_config(data["attributes"], f"{path} attributes")
    return parse_config(data, str(path))


def read_yaml(path: Path) -> object:
    try:
        return yaml.load(path.read_text(), Loader=_TextDatesLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: a constructor refused a value (an explicit `!!timestamp 2026-02-30`).
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


def is_declaration(data: object) -> bool:
    """Whether a parsed defs.yaml declares a GscComponent."""
    return isinstance(data, dict) and data.get("type") == COMPONENT_TYPE


def find_declarations(defs_dir: Path) -> list[Path]:
    """Every defs.yaml under a dg project's defs folder that declares a GscComponent."""
    found = []
    for path in sorted(defs_dir.rglob("defs.yaml")):
        try:
            data = read_yaml(path)
        except ConfigError:
            continue  # another component's file, or one dg itself reports as broken
        if is_declaration(data):
            found.append(path)
    return found


def project_defs_dir(start: Path) -> Path | None:
    """The defs folder of the dg project holding `start` (pyproject.toml's `[tool.dg]`), or None.

    dg's own rule: the defs module is `[tool.dg.project] defs_module`, else `<root_module>.defs`,
    found under `src/` (a create-dagster project) or the project root.
    """
    for directory in [start, *start.parents]:
        pyproject = directory / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            dg_table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("dg")
        except tomllib.TOMLDecodeError:
            continue
        project = (dg_table or {}).get("project") or {}
        root_module = project.get("root_module")
        if not root_module:
            continue
        module = Path(*(project.get("defs_module") or f"{root_module}.defs").split("."))
        for base in (directory / "src", directory):
            if (base / module).is_dir():
                return base / module
    return None


@dataclass(frozen=True)
class Declarations:
    """The declarations a command works on, and a sentence saying where they came from."""

    configs: dict[Path, PipelineConfig]
    origin: str


def load_declarations(path: str | os.PathLike[str] | None, cwd: Path) -> Declarations:
    """`path`, else $GSC_PIPELINE_CONFIG, else every GscComponent of the dg project around
    `cwd`; only outside a dg project the bundled demo, and `origin` says so."""
    explicit = path or os.environ.get(CONFIG_ENV)
    if explicit:
        return Declarations({Path(explicit): load_config(explicit)}, f"config {explicit}")
    defs_dir = project_defs_dir(cwd.resolve())
    if defs_dir is None:
        return Declarations(
            {BUNDLED_DEMO_CONFIG: load_config(BUNDLED_DEMO_CONFIG)},
            f"not inside a dg project (no pyproject.toml with [tool.dg] above {cwd}): using the "
            f"bundled demo declaration {BUNDLED_DEMO_CONFIG}; pass --config <your defs.yaml>",
        )
    found = find_declarations(defs_dir)
    if not found:
        raise ConfigError(
            f"{defs_dir}: no defs.yaml declares {COMPONENT_TYPE}; create one with `dg scaffold "
            f"defs {COMPONENT_TYPE} gsc`, or pass --config <defs.yaml>"
        )
    return Declarations(
        {p: load_config(p) for p in found},
        f"dg project declarations: {', '.join(str(p) for p in found)}",
    )
