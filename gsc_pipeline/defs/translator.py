"""How each fetching asset looks in Dagster, in one place: `GscTranslator`.

Built the way Dagster's own integrations are (DagsterSlingTranslator, DagsterDltTranslator):
`get_asset_spec(props)` returns the asset's key, group, description, kinds, owners, tags,
metadata and freshness policy, and a declaration's `translation:` (Dagster's asset attributes,
the same shape dagster-sling and dagster-dlt take) is applied on top. Every module that needs a
fetching asset's key (checks, job, schedules, sensors, the stats asset) gets it from here through
`defs.keys.fetch_asset_key`, so a translated key is the key everywhere.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

# Not exported at dagster's top level in 1.13; Dagster's own integrations import it from here.
from dagster._core.definitions.metadata import TableMetadataSet
from dagster.components.resolved.context import ResolutionContext
from dagster.components.resolved.core_models import AssetAttributesModel
from dagster.components.utils.translation import TranslatorResolvingInfo
from pydantic import ValidationError

from gsc_pipeline.config import ConfigError, PipelineConfig, PropertyConfig
from gsc_pipeline.defs.names import FETCH_KEY_PREFIX
from gsc_pipeline.reports import Report
from gsc_pipeline.warehouse import TableDescription, parse_warehouse_url, warehouse_url

if TYPE_CHECKING:
    from gsc_pipeline.defs.assets import FetchStep

# Kinds every asset that calls the API carries (the UI shows Google's icon for "google").
GSC_KINDS = frozenset({"google", "googlesearchconsole"})


# Asset attributes a translation may not change: every schedule, sensor, check and backfill
# assumes the daily partitions, and a fetching asset reads the API, not other assets.
FIXED_ATTRIBUTES = frozenset({"partitions_def", "deps"})


@dataclass(frozen=True)
class GscAssetProps:
    """What one fetching asset is: a report of a property in a declaration.

    In a `translation:` template these are `props`, `prop` (the property: `prop.key`,
    `prop.site_url`) and `report` (`report.name`, `report.table`). In a run, `step` is what the
    report shares with the property's other reports fetched in the same step (API client,
    days in flight, stop); None outside a step.
    """

    config: PipelineConfig
    prop: PropertyConfig
    report: Report
    step: FetchStep | None = field(default=None, compare=False, repr=False)


def declaration_key(config: PipelineConfig, *path: str) -> dg.AssetKey:
    """`path` under the declaration's prefix when it has one."""
    return dg.AssetKey([*filter(None, [config.prefix]), *path])


def warehouse_kind() -> str:
    """`duckdb` or `postgres`: the warehouse this code location writes to."""
    return parse_warehouse_url(warehouse_url())[0]


def freshness_policy(report: Report) -> dg.FreshnessPolicy:
    """Expected: a materialization a day (the daily refresh), an hour for hourly reports (the
    hourly refresh). WARN when that is two hours late, FAIL when the newest materialization is
    a whole day older than expected: a stalled refresh shows in the UI within a day."""
    expected = dt.timedelta(hours=1) if report.hourly else dt.timedelta(days=1)
    return dg.FreshnessPolicy.time_window(
        fail_window=expected + dt.timedelta(days=1), warn_window=expected + dt.timedelta(hours=2)
    )


def table_metadata(table: TableDescription, rows: int) -> dict[str, object]:
    """Dagster's table metadata (`dagster/row_count`, `dagster/table_name`,
    `dagster/column_schema`) for a materialization that wrote `rows` rows into `table`."""
    return dict(
        TableMetadataSet(
            row_count=rows,
            table_name=table.qualified_name,
            column_schema=dg.TableSchema(
                columns=[dg.TableColumn(name, kind) for name, kind in table.columns]
            ),
        )
    )


class GscTranslator:
    """The default spec of each fetching asset, before the declaration's `translation:`."""

    def get_asset_spec(self, props: GscAssetProps) -> dg.AssetSpec:
        config, prop, report = props.config, props.prop, props.report
        dims = ", ".join(report.api_dimensions) or "nothing"
        filters = "".join(
            f", where {f.dimension} {f.operator} {f.expression!r}" for f in report.filters
        )
        kind = warehouse_kind()
        return dg.AssetSpec(
            declaration_key(config, FETCH_KEY_PREFIX, prop.key, report.name),
            group_name=config.namespaced(prop.key),
            description=(
                f"Search Console rows for {prop.site_url} grouped by {dims} "
                f"({report.aggregation_type}; {', '.join(report.search_types)}){filters}, "
                f"table {report.table}."
            ),
            kinds={*GSC_KINDS, kind},
            owners=list(config.owners),
            metadata={
                "site_url": prop.site_url,
                "table": report.table,
                "dimensions": dims,
                "search_types": ", ".join(report.search_types),
                "filters": filters.removeprefix(", ") or "none",
                **TableMetadataSet(storage_kind=kind),
            },
            freshness_policy=freshness_policy(report),
        )


def _translation(config: PipelineConfig) -> Callable[[dg.AssetSpec, GscAssetProps], dg.AssetSpec]:
    """The declaration's `translation:` as a function of (default spec, props), resolved by
    Dagster's own translation machinery (templates see `props`, `prop`, `report`, `spec`)."""
    attributes = config.translation
    if isinstance(attributes, dict):
        if fixed := sorted(FIXED_ATTRIBUTES & set(attributes)):
            raise ConfigError(
                f"translation.{fixed[0]}: the pipeline fixes the partitions_def and deps of its "
                "fetching assets (Google's daily partitions; no upstream assets); remove it"
            )
        try:
            attributes = AssetAttributesModel.model_validate(attributes)
        except ValidationError as exc:
            problems = "; ".join(
                f"translation.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(
                f"{problems} (translation takes Dagster's asset attributes: "
                f"{', '.join(sorted(AssetAttributesModel.model_fields))})"
            ) from None
    info = TranslatorResolvingInfo(
        asset_attributes=attributes,
        resolution_context=ResolutionContext.default(),
        model_key="translation",
    )
    return lambda spec, props: info.get_asset_spec(
        spec, {"props": props, "prop": props.prop, "report": props.report, "spec": spec}
    )


# Translated specs by declaration: a translation renders templates (milliseconds per spec) and
# checks, schedules and sensors ask for keys asset by asset. A config is frozen, so its specs
# never change; keyed by its id and dropped when it is garbage collected (the id is then free).
_SPECS: dict[int, dict[tuple[str, str, str], dg.AssetSpec]] = {}


def fetch_asset_spec(config: PipelineConfig, prop: PropertyConfig, report: Report) -> dg.AssetSpec:
    """The fetching asset's spec: the translator's default with the declaration's
    `translation:` applied."""
    props = GscAssetProps(config, prop, report)
    if config.translation is None:
        return GscTranslator().get_asset_spec(props)
    if (specs := _SPECS.get(id(config))) is None:
        specs = _SPECS[id(config)] = {}
        weakref.finalize(config, _SPECS.pop, id(config), None)
    # The warehouse's kind is part of the spec and comes from the environment.
    cache_key = (prop.key, report.name, warehouse_kind())
    if cache_key not in specs:
        specs[cache_key] = _translation(config)(GscTranslator().get_asset_spec(props), props)
    return specs[cache_key]
