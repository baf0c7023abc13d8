"""The sitemaps snapshot: the emulator's sitemaps.list over HTTP, stored per property on DuckDB
and PostgreSQL, and the daily asset that takes it."""

from __future__ import annotations

import dagster as dg
import pytest

from gsc_pipeline.config import parse_config
from gsc_pipeline.definitions import build_definitions
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.stats import STATS_AUTOMATION_SENSOR
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.gsc import GscClient, SitePermissionDenied
from gsc_pipeline.sitemaps import SITEMAPS_TABLE, snapshot_sitemaps
from gsc_pipeline.warehouse import open_warehouse

SITE = "sc-domain:maps.example"
BARE = "https://bare.example/"
HIDDEN = "sc-domain:hidden.example"


@pytest.fixture(scope="module")
def emulator():
    config = {
        "today": "2026-03-20",
        "properties": [
            {"site_url": SITE, "sitemaps": 3, "pages": 80},
            {"site_url": BARE, "sitemaps": 0},
            {"site_url": HIDDEN, "permission": "siteUnverifiedUser"},
        ],
    }
    with running_emulator(config) as handle:
        yield handle


def test_snapshot_stores_what_sitemaps_list_serves_and_replaces_it(emulator, warehouse):
    client = GscClient(emulator.base_url, qpm_budget=1e6)
    served = client.list_sitemaps(SITE)
    assert len(served) == 3
    snapshot_sitemaps(client, warehouse, SITE)
    snapshot_sitemaps(client, warehouse, SITE)  # a second snapshot replaces the first
    snapshot_sitemaps(client, warehouse, BARE)  # no sitemaps: Google answers {}
    stored = warehouse.read_sql(f"SELECT * FROM {SITEMAPS_TABLE} ORDER BY path")
    assert stored["site_url"].tolist() == [SITE] * 3
    by_path = {r.path: r for r in stored.itertuples(index=False)}
    for entry in served:
        row = by_path[entry["path"]]
        assert row.type == entry["type"]
        assert bool(row.is_pending) == entry["isPending"]
        assert (int(row.warnings), int(row.errors)) == (int(entry["warnings"]),
                                                        int(entry["errors"]))  # fmt: skip
        assert row.urls_submitted == sum(int(c["submitted"]) for c in entry["contents"])
        submitted = str(row.last_submitted.tz_convert("UTC").isoformat())
        assert submitted.startswith(entry["lastSubmitted"][:19])
        # A sitemap Google has not read yet has no download time: NULL, not a made-up one.
        assert (row.last_downloaded is None or str(row.last_downloaded) == "NaT") == (
            "lastDownloaded" not in entry
        )
    assert stored["is_pending"].astype(bool).sum() == 1


def test_a_property_the_credential_cannot_read_fails_with_the_fix(emulator, warehouse):
    client = GscClient(emulator.base_url, qpm_budget=1e6)
    with pytest.raises(SitePermissionDenied, match="add it as a user"):
        snapshot_sitemaps(client, warehouse, HIDDEN)


def test_sitemaps_asset_per_property_is_pooled_automated_and_lands_the_snapshot(
    monkeypatch, emulator, tmp_path
):
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, url)
    config = parse_config({"start_date": "2026-01-01", "properties": [
        {"site_url": SITE, "reports": ["site"]},
        {"site_url": BARE, "reports": ["site"], "sitemaps": False},
    ]})  # fmt: skip
    defs = build_definitions(config)
    key = dg.AssetKey(["gsc_sitemaps", "maps_example"])
    asset = defs.resolve_assets_def(key)
    assert asset.partitions_def is None
    assert asset.node_def.pools == {"gsc_api"}
    assert asset.specs_by_key[key].automation_condition is not None
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey(["gsc_sitemaps", "bare_example"]) not in graph.get_all_asset_keys()
    assert asset.specs_by_key[key].group_name == "maps_example"
    sensor = next(s for s in defs.sensors if s.name == STATS_AUTOMATION_SENSOR)
    assert key in sensor.asset_selection.resolve(graph)
    with dg.instance_for_test() as instance:
        job = dg.define_asset_job("sitemaps_only", selection=[key])
        merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
        result = merged.resolve_job_def("sitemaps_only").execute_in_process(instance=instance)
        assert result.success
        meta = result.asset_materializations_for_node(asset.node_def.name)[0].metadata
    assert meta["dagster/row_count"].value == 3
    assert meta["pending_sitemaps"].value == 1
    stored = open_warehouse(url).read_sql(f"SELECT site_url FROM {SITEMAPS_TABLE}")
    assert stored["site_url"].tolist() == [SITE] * 3
