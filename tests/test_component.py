"""GscComponent: registered for dg, validated like the config file, two instances side by side,
secrets kept out of the UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value

from gsc_pipeline import GscComponent
from gsc_pipeline.config import BUNDLED_DEMO_CONFIG, load_config
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.reports import REPORTS
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import EMULATOR_CONFIG, SMALL, write_dg_project

ROOT = Path(__file__).parents[1]
DG = str(Path(sys.executable).with_name("dg"))
DAY = "2026-03-02"


def _dg(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",
        "NO_COLOR": "1",
        # dg runs the project's code in the active environment (this one).
        "VIRTUAL_ENV": sys.prefix,
    }
    env.pop("GSC_PIPELINE_CONFIG", None)
    return subprocess.run(
        [DG, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


def _component(**attributes) -> GscComponent:
    return GscComponent.from_attributes_dict(
        attributes={"start_date": "2026-01-01", "properties": [{"site_url": SMALL}], **attributes}
    )


def test_dg_lists_the_component_with_its_docs():
    done = _dg("list", "components", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    listed = {c["key"]: c for c in json.loads(done.stdout)["items"]}
    summary = listed["gsc_pipeline.GscComponent"]["summary"]
    assert summary.startswith("A verified copy of Google Search Console search analytics")


def test_dg_loads_this_project_from_its_defs_folder():
    """`dg check defs` passes and `dg list defs` shows the demo declaration exactly once."""
    check = _dg("check", "defs")
    assert check.returncode == 0, check.stderr[-2000:]
    listed = _dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assets = {a["asset_key"]: a for a in json.loads(listed.stdout)["assets"]}
    # Every fetching asset with its history, each property's sitemaps and audit, + stats:
    # nothing twice.
    config = load_config(BUNDLED_DEMO_CONFIG)
    fetching = [r for p in config.properties for r in p.report_objects()]
    sitemaps = [p for p in config.properties if p.sitemaps]
    assert len(fetching) == 17  # 14 on the demo's three properties, 3 on the big one
    assert len(assets) == len(fetching) * 2 + len(sitemaps) + len(config.properties) + 1
    assert assets["gsc/example_com/page_query"]["source"] == "gsc_pipeline/defs/gsc/defs.yaml:4"


def test_the_bundled_declaration_is_the_defs_yaml_dg_loads():
    assert BUNDLED_DEMO_CONFIG == ROOT / "gsc_pipeline" / "defs" / "gsc" / "defs.yaml"
    declaration = yaml.safe_load(BUNDLED_DEMO_CONFIG.read_text())
    assert declaration["type"] == "gsc_pipeline.GscComponent"
    component = GscComponent.from_attributes_dict(attributes=declaration["attributes"])
    assert component.config == load_config(BUNDLED_DEMO_CONFIG)


def test_bad_attributes_get_the_config_files_messages(tmp_path):
    with pytest.raises(Exception, match="'agency' is not defined under credentials"):
        _component(properties=[{"site_url": SMALL, "credential": "agency"}])
    with pytest.raises(Exception, match="did you mean 'sc-domain:example.com'"):
        _component(properties=[{"site_url": "example.com"}])
    with pytest.raises(Exception, match="prefix 'Agency B' must be lowercase letters"):
        _component(prefix="Agency B")
    # In a dg project the error names the defs.yaml and the line.
    project = write_dg_project(
        tmp_path / "proj",
        {
            "gsc": "type: gsc_pipeline.GscComponent\nattributes:\n  start_date: 2026-01-01\n"
            "  properties:\n    - site_url: example.com\n"
        },
    )
    out = _check_fails_with_the_message_alone(project)
    assert "defs.yaml:5: gsc_pipeline.GscComponent attributes.properties[0].site_url" in out, out
    assert "did you mean 'sc-domain:example.com'" in out


def _check_fails_with_the_message_alone(project: Path) -> str:
    """`dg check defs` fails, and its output has no Python frames around the message."""
    done = _dg("check", "defs", cwd=project)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "Traceback" not in out and "Stack Trace" not in out, out
    return out


def _declaration(*extra: str) -> str:
    return (
        "type: gsc_pipeline.GscComponent\nattributes:\n  start_date: 2026-01-01\n"
        f"  properties:\n    - site_url: {SMALL}\n" + "".join(f"  {line}\n" for line in extra)
    )


def test_two_declarations_without_prefix_are_told_to_set_prefix(tmp_path):
    project = write_dg_project(
        tmp_path / "proj", {"agency_a": _declaration(), "agency_b": _declaration()}
    )
    out = _check_fails_with_the_message_alone(project)
    defs = project / "src" / "proj" / "defs"
    assert f"{defs / 'agency_a' / 'defs.yaml'} and {defs / 'agency_b' / 'defs.yaml'}" in out, out
    assert "with no `prefix:`" in out and "set a distinct `prefix:`" in out
    assert "same key" not in out
    # The fix the message gives is enough.
    (defs / "agency_b" / "defs.yaml").write_text(_declaration("prefix: agency_b"))
    fixed = _dg("check", "defs", cwd=project)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]


def test_a_bad_warehouse_url_is_a_load_error_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv(WAREHOUSE_URL_ENV, "mysql://db.example/gsc")
    project = write_dg_project(tmp_path / "proj", {"gsc": _declaration()})
    out = _check_fails_with_the_message_alone(project)
    assert "defs/gsc/defs.yaml: GSC_WAREHOUSE_URL='mysql://db.example/gsc'" in out, out
    assert "'mysql' is not a supported warehouse" in out


def test_a_run_command_shows_a_bad_declaration_without_a_traceback(tmp_path):
    """`dagster asset materialize` loads the definitions in its own process: the load error
    reaches the interpreter, which prints the message, not a traceback."""
    project = write_dg_project(tmp_path / "proj", {"gsc": _declaration("refresh_days: 99")})
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "NO_COLOR": "1"}
    env.pop("GSC_PIPELINE_CONFIG", None)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
         "-m", "proj.definitions", "--select", "*", "--partition", DAY],
        cwd=project, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "defs.yaml:6: gsc_pipeline.GscComponent attributes.refresh_days:" in out, out
    assert "less than or equal to 30" in out
    assert "Traceback" not in out and "Stack Trace" not in out, out


def test_secrets_stay_env_vars_and_never_reach_the_ui(monkeypatch):
    secret = "-----BEGIN PRIVATE KEY-----never-in-the-ui"
    monkeypatch.setenv("GSC_TEST_SA_KEY", secret)
    component = _component(
        credentials={"default": {"kind": "service_account", "key_env": "GSC_TEST_SA_KEY"}}
    )
    defs = dg.Definitions.merge(dg.build_defs_for_component(component))
    # The resource holds the variable's name; the key is read when a step creates its client.
    assert defs.resources["gsc_default"].credential_env == "GSC_TEST_SA_KEY"
    # What the webserver gets from the code location: the repository snapshot.
    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "GSC_TEST_SA_KEY" in snapshot
    assert secret not in snapshot


def test_two_instances_load_together_and_never_share_names():
    agency = _component(
        prefix="agency_b",
        credentials={"default": {"pool_limit": 2}, "client": {"pool_limit": 1}},
        properties=[
            {"site_url": SMALL},
            {"site_url": "sc-domain:b.example", "credential": "client"},
        ],
    )
    defs = dg.Definitions.merge(
        dg.build_defs_for_component(_component()), dg.build_defs_for_component(agency)
    )
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"gsc/small_example/page", "url_lifetime_stats"} <= keys
    assert {"agency_b/gsc/small_example/page", "agency_b/url_lifetime_stats"} <= keys
    assert {j.name for j in repo.get_all_jobs() if not j.name.startswith("__")} == {
        "gsc_fetch",
        "agency_b_gsc_fetch",
    }
    assert {s.name for s in repo.schedule_defs} == {
        "daily_refresh_schedule",
        "agency_b_daily_refresh_schedule",
    }
    assert {s.name for s in repo.sensor_defs} == {
        f"{prefix}{name}"
        for prefix in ("", "agency_b_")
        for name in ("repair_sensor", "finalization_sensor", "restatement_sensor",
                     "url_lifetime_stats_automation")
    }  # fmt: skip
    pools = {
        key.to_user_string(): repo.assets_defs_by_key[key].node_def.pools
        for key in repo.asset_graph.get_all_asset_keys()
        if "gsc" in key.path and repo.assets_defs_by_key[key].is_executable
    }
    assert pools["gsc/small_example/site"] == {"gsc_api"}
    assert pools["agency_b/gsc/small_example/site"] == {"agency_b_gsc_api"}
    assert pools["agency_b/gsc/b_example/site"] == {"agency_b_gsc_api_client"}
    assert agency.config.pools == {
        "default": "agency_b_gsc_api",
        "client": "agency_b_gsc_api_client",
    }
    assert {"gsc_default", "warehouse", "agency_b_gsc_default", "agency_b_warehouse"} <= set(
        repo.get_top_level_resources()
    )


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_warehouse(request, tmp_path):
    """One database for both instances, and the prefix of the second (unique on Postgres,
    where schemas outlive the test)."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'wh.duckdb'}", "agency_b"
        return
    import psycopg2

    url = request.getfixturevalue("postgres_schema_url")
    prefix = f"agency_{uuid.uuid4().hex[:8]}"
    yield url, prefix
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {prefix} CASCADE")
    conn.close()


def test_two_instances_write_to_distinct_tables(monkeypatch, shared_warehouse):
    url, prefix = shared_warehouse
    with running_emulator(EMULATOR_CONFIG) as emulator:
        monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
        monkeypatch.setenv(WAREHOUSE_URL_ENV, url)
        first = _component(properties=[{"site_url": SMALL, "reports": ["site"]}])
        second = _component(prefix=prefix, properties=[{"site_url": SMALL, "reports": ["page"]}])
        defs = dg.Definitions.merge(
            dg.build_defs_for_component(first),
            dg.build_defs_for_component(second),
            dg.Definitions(
                jobs=[
                    dg.define_asset_job(name, selection=dg.AssetSelection.groups(group))
                    for name, group in (
                        ("first", "small_example"),
                        ("second", f"{prefix}_small_example"),
                    )
                ]
            ),
        )
        with dg.instance_for_test() as instance:
            for job in ("first", "second"):
                result = defs.resolve_job_def(job).execute_in_process(
                    instance=instance, partition_key=DAY
                )
                assert result.success
                assert all(e.passed for e in result.get_asset_check_evaluations())
    default, namespaced = open_warehouse(url), open_warehouse(url, schema=prefix)
    site, page = REPORTS["site"].table, REPORTS["page"].table
    assert default.read_sql(f"SELECT count(*) AS n FROM {site}")["n"].iloc[0] == 1
    assert namespaced.read_sql(f"SELECT count(*) AS n FROM {page}")["n"].iloc[0] > 1
    # Each ledger lists only its own instance's pages.
    assert default.read_sql("SELECT DISTINCT report FROM gsc_fetch_ledger")["report"].tolist() == [
        "site"
    ]
    assert namespaced.read_sql("SELECT DISTINCT report FROM gsc_fetch_ledger")[
        "report"
    ].tolist() == ["page"]
    tables = default.read_sql(
        "SELECT table_schema AS s, table_name AS t FROM information_schema.tables "
        "WHERE table_name IN (?, ?)",
        [site, page],
    )
    schemas = {(r.s, r.t) for r in tables.itertuples()}
    assert (prefix, page) in schemas and all(s != prefix for s, t in schemas if t == site)
