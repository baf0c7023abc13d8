"""Dagster's integration conventions on GscComponent, as dagster-sling / dagster-dlt have them:
a `translation:` attribute and a GscTranslator deciding keys, groups, owners, tags and
descriptions everywhere; kinds; a freshness policy; an overridable `execute()`; and
`dagster/row_count`, `dagster/table_name`, `dagster/column_schema` on every materialization."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState, TimeWindowFreshnessPolicy
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.freshness import FreshnessDaemon
from dagster.components.core.component_tree import ComponentTree

from gsc_pipeline import GscComponent
from gsc_pipeline.component import DeclarationError
from gsc_pipeline.defs.keys import sitemaps_asset_key
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.stats import stats_asset_key
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.warehouse import open_warehouse
from tests.pipeline_env import EMULATOR_CONFIG, SMALL

DAYS = ["2026-03-01", "2026-03-02"]
RANGE_TAGS = {
    "dagster/asset_partition_range_start": DAYS[0],
    "dagster/asset_partition_range_end": DAYS[-1],
}
TRANSLATED_YAML = """
type: gsc_pipeline.GscComponent
attributes:
  prefix: agency_b
  start_date: 2026-01-01
  owners: ["team:seo"]
  properties:
    - site_url: sc-domain:small.example
      reports: [page, page_query, site]
  translation:
    key_prefix: marketing
    group_name: "search_{{ prop.key }}"
    owners: ["seo-lead@example.com"]
    tags:
      report: "{{ report.name }}"
    description: "GSC {{ report.name }} of {{ prop.site_url }}"
"""


def _load_defs_folder(tmp_path: Path, monkeypatch, text: str) -> dg.Definitions:
    """What dg loads from a project's defs folder holding `gsc/defs.yaml` = `text`."""
    package = f"defs_{uuid.uuid4().hex[:8]}"
    (tmp_path / package / "gsc").mkdir(parents=True)
    (tmp_path / package / "__init__.py").touch()
    (tmp_path / package / "gsc" / "defs.yaml").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    tree = ComponentTree.from_module(
        defs_module=importlib.import_module(package), project_root=tmp_path
    )
    return tree.build_defs()


def _repo(component: GscComponent) -> dg.RepositoryDefinition:
    defs = dg.build_defs_for_component(component)
    dg.Definitions.validate_loadable(defs)
    return defs.get_repository_def()


def test_translation_in_yaml_sets_key_group_owners_tags_description_everywhere(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    defs = _load_defs_folder(tmp_path, monkeypatch, TRANSLATED_YAML)
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    page = dg.AssetKey(["marketing", "agency_b", "gsc", "small_example", "page"])
    node = graph.get(page)
    assert node.group_name == "search_small_example"
    # The translation's owners replace the declaration's (Dagster's replace_attributes).
    assert node.owners == ["seo-lead@example.com"]
    assert node.tags["report"] == "page"
    assert node.description == "GSC page of sc-domain:small.example"
    # Untranslated attributes keep the translator's defaults.
    assert node.metadata["table"] == "gsc_page"
    # The prefix still namespaces the key, and nothing uses the untranslated key.
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert not any(k.startswith("agency_b/gsc/") for k in keys), keys
    # Every user of the fetching asset's key follows the translation: its checks, its history
    # asset (in the translated group), the fetch job, and the lifetime stats' dependencies.
    checks = {c.name for c in graph.get_check_keys_for_assets({page})}
    assert "rows_match_ledger" in checks
    history = graph.get(dg.AssetKey([*page.path, "history"]))
    assert history.group_name == "search_small_example"
    assert history.owners == ["seo-lead@example.com"]
    fetch_job = repo.get_job("agency_b_gsc_fetch")
    assert page in fetch_job.asset_layer.selected_asset_keys
    stats = graph.get(dg.AssetKey(["agency_b", "url_lifetime_stats"]))
    assert page in stats.parent_keys
    # The declaration's own owners: on the assets the translation does not touch.
    assert stats.owners == ["team:seo"]


@pytest.mark.parametrize(
    ("translation", "message"),
    [
        ({"group": "seo"}, r"translation\.group: Extra inputs .*group_name"),
        (
            {"partitions_def": {"type": "static", "partition_keys": ["a"]}},
            r"partitions_def.*remove",
        ),
    ],
)
def test_a_bad_translation_names_the_attribute_and_what_it_takes(
    tmp_path, monkeypatch, translation, message
):
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    component = GscComponent.from_attributes_dict(
        attributes={
            "start_date": "2026-01-01",
            "properties": [{"site_url": SMALL}],
            "translation": translation,
        }
    )
    # A declaration error: Dagster shows its message alone, without a stack trace.
    with pytest.raises(DeclarationError, match=message):
        dg.build_defs_for_component(component)


@pytest.mark.parametrize(
    ("url", "kind"), [("duckdb:///{tmp}/wh.duckdb", "duckdb"), ("postgresql://u@h/db", "postgres")]
)
def test_kinds_owners_and_freshness_policy(tmp_path, monkeypatch, url, kind):
    monkeypatch.setenv(WAREHOUSE_URL_ENV, url.format(tmp=tmp_path))
    component = GscComponent.from_attributes_dict(
        attributes={
            "start_date": "2026-01-01",
            "owners": ["team:seo"],
            "properties": [{"site_url": SMALL, "reports": ["page", "page_query", "hourly_page"]}],
        }
    )
    graph = _repo(component).asset_graph
    page = graph.get(dg.AssetKey(["gsc", "small_example", "page"]))
    assert page.kinds == {"google", "googlesearchconsole", kind}
    assert page.owners == ["team:seo"]
    assert page.metadata["dagster/storage_kind"] == kind
    assert graph.get(stats_asset_key(component.config)).kinds == {"python", kind}
    # A daily report is expected daily: FAIL once its newest materialization is a day older
    # than that (2 days), WARN two hours late; an hourly report is expected hourly.
    daily = page.freshness_policy
    assert isinstance(daily, TimeWindowFreshnessPolicy)
    assert daily.fail_window.to_timedelta() == dt.timedelta(days=2)
    assert daily.warn_window.to_timedelta() == dt.timedelta(hours=26)
    hourly = graph.get(dg.AssetKey(["gsc", "small_example", "hourly_page"])).freshness_policy
    assert hourly.fail_window.to_timedelta() == dt.timedelta(hours=25)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return request.getfixturevalue("postgres_schema_url")


class _Wrapped(GscComponent):
    """A user's subclass: runs its own code around the default fetch."""

    calls: list[str] = []

    def execute(self, context, props):
        self.calls.append(
            f"{props.prop.key}/{props.report.name}:{','.join(context.partition_keys)}"
        )
        yield from super().execute(context, props)


def test_materializations_carry_row_count_table_name_and_column_schema(monkeypatch, warehouse_url):
    """Per day of a ranged run, on both backends, through a subclass overriding execute()."""
    _Wrapped.calls = []
    with running_emulator(EMULATOR_CONFIG) as emulator:
        monkeypatch.setenv(API_ENDPOINT_ENV, emulator.base_url)
        monkeypatch.setenv(WAREHOUSE_URL_ENV, warehouse_url)
        component = _Wrapped.from_attributes_dict(
            attributes={
                "start_date": "2026-01-01",
                "properties": [{"site_url": SMALL, "reports": ["page", "page_query"]}],
            }
        )
        defs = dg.build_defs_for_component(component)
        page = dg.AssetKey(["gsc", "small_example", "page"])
        stats = stats_asset_key(component.config)
        sitemaps = sitemaps_asset_key(component.config, component.config.properties[0])
        with dg.instance_for_test() as instance:
            job = defs.resolve_implicit_global_asset_job_def()
            fetched = job.execute_in_process(
                instance=instance,
                tags=RANGE_TAGS,
                asset_selection=[page, dg.AssetKey(["gsc", "small_example", "page_query"])],
            )
            assert fetched.success
            assert dg.materialize(
                [defs.get_assets_def(stats)],
                instance=instance,
                resources=defs.resources,
                selection=[stats],
            ).success
            events = {
                (e.asset_key, e.partition): e.metadata
                for e in (
                    r.asset_materialization
                    for r in instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=page), limit=10
                    ).records
                )
            }
            latest = instance.get_latest_materialization_event(stats)
            stats_metadata = latest.asset_materialization.metadata
            assert dg.materialize(
                [defs.get_assets_def(sitemaps)],
                instance=instance,
                resources=defs.resources,
                selection=[sitemaps],
            ).success
            latest = instance.get_latest_materialization_event(sitemaps)
            sitemaps_metadata = latest.asset_materialization.metadata
    warehouse = open_warehouse(warehouse_url)
    database, schema = warehouse.read_sql(
        "SELECT current_database() AS d, current_schema() AS s"
    ).iloc[0]
    varchar = "VARCHAR" if warehouse.dialect == "duckdb" else "character varying"
    double = "DOUBLE" if warehouse.dialect == "duckdb" else "double precision"
    assert set(events) == {(page, day) for day in DAYS}
    for day in DAYS:
        metadata = events[(page, day)]
        stored = warehouse.read_sql("SELECT COUNT(*) AS n FROM gsc_page WHERE date = ?", [day])
        assert metadata["dagster/row_count"].value == int(stored["n"].iloc[0]) > 0
        assert metadata["dagster/table_name"].value == f"{database}.{schema}.gsc_page"
        columns = [(c.name, c.type) for c in metadata["dagster/column_schema"].schema.columns]
        assert columns[:4] == [
            ("site_url", varchar),
            ("search_type", varchar),
            ("date", "DATE" if warehouse.dialect == "duckdb" else "date"),
            ("page", varchar),
        ]
        assert columns[4:] == [(m, double) for m in ("clicks", "impressions", "ctr", "position")]
    stored = warehouse.read_sql("SELECT COUNT(*) AS n FROM url_lifetime_stats")["n"].iloc[0]
    assert stats_metadata["dagster/row_count"].value == int(stored) > 0
    assert stats_metadata["dagster/table_name"].value == f"{database}.{schema}.url_lifetime_stats"
    assert "page" in {c.name for c in stats_metadata["dagster/column_schema"].schema.columns}
    stored = warehouse.read_sql(
        "SELECT COUNT(*) AS n FROM gsc_sitemaps WHERE site_url = ?", [SMALL]
    )["n"].iloc[0]
    assert sitemaps_metadata["dagster/row_count"].value == int(stored) > 0
    assert sitemaps_metadata["dagster/table_name"].value == f"{database}.{schema}.gsc_sitemaps"
    # The subclass's execute() ran each fetching asset, once per ranged run.
    assert sorted(_Wrapped.calls) == [
        f"small_example/{report}:{','.join(DAYS)}" for report in ("page", "page_query")
    ]


def test_a_day_older_than_expected_fails_the_freshness_policy(tmp_path, monkeypatch):
    """Dagster's freshness daemon, on a real instance, over the component's definitions: a
    daily report's newest materialization passes for a day, warns two hours late, fails a day
    late (what the UI shows as the asset's freshness)."""
    monkeypatch.setenv(WAREHOUSE_URL_ENV, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    module = tmp_path / "gsc_defs.py"
    module.write_text(
        "import dagster as dg\n"
        "from gsc_pipeline import GscComponent\n"
        "defs = dg.build_defs_for_component(GscComponent.from_attributes_dict(attributes={\n"
        f"    'start_date': '2026-01-01', 'properties': [{{'site_url': {SMALL!r}}}]}}))\n"
    )
    page = dg.AssetKey(["gsc", "small_example", "page"])
    materialized = dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC)
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=str(module), attribute="defs")
    )
    states = {}
    with (
        dg.instance_for_test() as instance,
        WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as workspace,
    ):
        with freeze_time(materialized):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(page, partition="2026-11-30")
            )
        for hours in (25, 27, 49):
            with freeze_time(materialized + dt.timedelta(hours=hours)):
                list(FreshnessDaemon().run_iteration(workspace))
            record = instance.get_freshness_state_records([page])[page]
            states[hours] = record.freshness_state
    assert states == {25: FreshnessState.PASS, 27: FreshnessState.WARN, 49: FreshnessState.FAIL}
