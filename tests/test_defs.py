"""The whole Definitions, loaded as Dagster loads them: keys, partitions, pools, policies."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import pytest

from gsc_pipeline import audit
from gsc_pipeline.config import load_config, parse_config
from gsc_pipeline.definitions import build_definitions, defs
from gsc_pipeline.defs.resources import WarehouseResource


def _fetch_assets(definitions: dg.Definitions) -> dict[dg.AssetKey, dg.AssetsDefinition]:
    graph = definitions.resolve_asset_graph()
    return {
        key: graph.get(key).assets_def
        for key in graph.get_all_asset_keys()
        if key.path[0] == "gsc" and graph.get(key).is_materializable
    }


def test_demo_definitions_have_one_asset_per_property_and_report():
    assets = _fetch_assets(defs)
    extra = ("brand_queries_by_country", "discover_pages", "search_appearance", "hourly_site",
             "hourly_page")  # fmt: skip
    assert sorted(k.to_user_string() for k in assets) == sorted(
        [
            *(f"gsc/{prop}/{report}"
              for prop in ("example_com", "www_example_org", "shop_example", "big_example")
              for report in ("page_query", "page", "site")),
            *(f"gsc/example_com/{report}" for report in extra),
        ]
    )  # fmt: skip


def test_fetch_assets_are_daily_pacific_pooled_and_batched():
    config = load_config()
    for key, asset in _fetch_assets(defs).items():
        partitions = asset.partitions_def
        assert isinstance(partitions, dg.DailyPartitionsDefinition), key
        assert partitions.timezone == "America/Los_Angeles"
        assert partitions.start.date() == config.start_date
        assert asset.backfill_policy == dg.BackfillPolicy.multi_run(config.backfill_days_per_run)
        assert asset.node_def.pools == {"gsc_api"}, key
        assert asset.specs_by_key[key].group_name == key.path[1]


def test_each_credential_gets_its_own_pool_and_resource():
    config = parse_config(
        {
            "start_date": "2026-01-01",
            "credentials": {
                "default": {"pool_limit": 2},
                "agency": {"kind": "service_account", "key_env": "AGENCY_KEY", "pool_limit": 3},
            },
            "properties": [
                {"site_url": "sc-domain:a.com", "reports": ["site"]},
                {"site_url": "sc-domain:b.com", "reports": ["site"], "credential": "agency"},
            ],
        }
    )
    definitions = build_definitions(config)
    pools = {k.path[1]: a.node_def.pools for k, a in _fetch_assets(definitions).items()}
    assert pools == {"a_com": {"gsc_api"}, "b_com": {"gsc_api_agency"}}
    resources = definitions.resources
    # One budget per credential, whatever its pool limit: the pool caps steps, not the rate.
    assert resources["gsc_default"].qpm_budget == 1200 * 0.8
    assert resources["gsc_agency"].qpm_budget == 1200 * 0.8
    # The secret is referenced by its environment variable, never inlined.
    assert resources["gsc_agency"].credential_env == "AGENCY_KEY"
    assert "credential_json" not in type(resources["gsc_agency"]).model_fields


def test_definitions_validate():
    dg.Definitions.validate_loadable(defs)


@pytest.mark.parametrize(
    "args", [["-w", "workspace.yaml"], []], ids=["workspace.yaml", "pyproject"]
)
def test_dagster_cli_loads_the_code_location(args):
    """`dagster dev -w workspace.yaml` and a bare `dagster dev` (pyproject) load the same code."""
    root = Path(__file__).parents[1]
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", *args],
        cwd=root, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Validation successful for code location gsc_pipeline" in done.stdout + done.stderr


def test_declared_reports_become_assets_with_the_same_checks():
    config = parse_config(
        {
            "start_date": "2026-01-01",
            "reports": {
                "brand_queries_by_country": {
                    "dimensions": ["query", "country"],
                    "search_types": ["web", "image"],
                    "filters": [
                        {"dimension": "query", "operator": "includingRegex", "expression": "acme"}
                    ],
                },
                "discover_pages": {"dimensions": ["page"], "search_types": ["discover"]},
            },
            "properties": [
                {"site_url": "sc-domain:a.com",
                 "reports": ["page", "brand_queries_by_country", "discover_pages"]},
            ],
        }
    )  # fmt: skip
    definitions = build_definitions(config)
    assets = _fetch_assets(definitions)
    assert sorted(k.path[-1] for k in assets) == [
        "brand_queries_by_country", "discover_pages", "page"
    ]  # fmt: skip
    # One multi_asset per property (one step fetches its reports): each report its own key.
    brand_key, page_key = (dg.AssetKey(["gsc", "a_com", r]) for r in ("brand_queries_by_country",
                                                                       "page"))  # fmt: skip
    brand = assets[brand_key]
    meta = brand.specs_by_key[brand_key].metadata
    assert meta["table"] == "gsc_brand_queries_by_country"
    assert meta["filters"] == "where query includingRegex 'acme'"
    checks = {key.name for key in brand.check_keys if key.asset_key == brand_key}
    page = assets[page_key]
    assert checks == {key.name for key in page.check_keys if key.asset_key == page_key} and checks
    dg.Definitions.validate_loadable(definitions)


def test_the_ui_shows_readable_targets_and_descriptions():
    """What the UI lists for automation: a selection string, not a Python repr; descriptions."""
    repo = defs.get_repository_def()
    automation = repo.get_sensor_def("url_lifetime_stats_automation")
    assert str(automation.asset_selection) == (
        'tag:"gsc/automated_by"="url_lifetime_stats_automation"'
    )
    graph = defs.resolve_asset_graph()
    targeted = automation.asset_selection.resolve_checks(graph)
    # Only whole-history checks: the *_all_days twins and the checks of Google's changes.
    whole_history = {audit.RESTATED_DAYS, audit.FRESH_DAYS_FINALIZED}
    assert targeted and all(
        k.name.endswith("_all_days") or k.name in whole_history for k in targeted
    )
    assert {k.name for k in targeted} >= whole_history
    assert repo.get_job("gsc_fetch").description
    for instigator in [*repo.sensor_defs, *repo.schedule_defs]:
        assert instigator.description, instigator.name


def test_the_warehouse_resource_opens_one_warehouse_per_process(tmp_path):
    """Threads share the object `open()` made; a forked process (a run forked from the warm
    server) makes its own: a DuckDB host's threads and a connection do not survive a fork."""
    resource = WarehouseResource(url=f"duckdb:///{tmp_path / 'wh.duckdb'}")
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(resource.open())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 4 and all(w is seen[0] for w in seen)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer whether it got the parent's object, then leave at once
        os.write(write, b"same" if resource.open() is seen[0] else b"own")
        os._exit(0)
    os.close(write)
    assert select.select([read], [], [], 60)[0], "the forked child did not answer in 60 s"
    assert os.read(read, 8) == b"own"
    assert os.waitpid(pid, 0)[1] == 0
    assert resource.open() is seen[0]
