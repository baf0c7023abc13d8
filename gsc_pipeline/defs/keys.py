"""Asset keys of one declaration: every other defs module imports them from here (so no module
imports the assets module for a name, and nothing imports in a circle). A fetching asset's key
is its translated spec's (`defs.translator`): the one place it is decided."""

from __future__ import annotations

import dagster as dg

from gsc_pipeline.config import PipelineConfig, PropertyConfig
from gsc_pipeline.defs.names import AUDIT_KEY_PREFIX, SITEMAPS_KEY_PREFIX
from gsc_pipeline.defs.translator import declaration_key, fetch_asset_spec
from gsc_pipeline.reports import Report

__all__ = ["declaration_key", "fetch_asset_key", "fetch_asset_keys", "sitemaps_asset_key"]


def fetch_asset_key(config: PipelineConfig, prop: PropertyConfig, report: Report) -> dg.AssetKey:
    """`gsc/<property>/<report>` under the declaration's prefix, unless `translation:` sets
    another key."""
    return fetch_asset_spec(config, prop, report).key


def fetch_asset_keys(config: PipelineConfig) -> list[dg.AssetKey]:
    """Every fetching asset of the declaration: what a backfill of everything selects."""
    return [fetch_asset_key(config, p, r) for p in config.properties for r in p.report_objects()]


def sitemaps_asset_key(config: PipelineConfig, prop: PropertyConfig) -> dg.AssetKey:
    # Outside gsc/<property>/...: those are the daily-partitioned fetching assets.
    return declaration_key(config, SITEMAPS_KEY_PREFIX, prop.key)


def audit_asset_key(config: PipelineConfig, prop: PropertyConfig) -> dg.AssetKey:
    # Outside gsc/<property>/... like the sitemaps snapshot: unpartitioned, once a day.
    return declaration_key(config, AUDIT_KEY_PREFIX, prop.key)
