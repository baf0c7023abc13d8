"""A process that fetches never loads pandas (~33 MB of a run process's RSS), and pyarrow's
pandas support is whole again once anything imports it (`gsc_pipeline.pandas_on_demand`).

Each test runs in a fresh interpreter: this one imported pandas long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.pipeline_env import EMULATOR_CONFIG, MEDIUM, SMALL, pipeline_config

# Prints who imported pandas (the stack), if anything does: the failure then names the culprit.
_WATCH = """
import importlib.abc, sys, traceback
class _Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pandas":
            stack = "".join(traceback.format_stack(limit=40))
            print("pandas imported by:", stack.replace("\\n", "|"), "[end]", file=sys.stderr)
            sys.meta_path.remove(self)
        return None
sys.meta_path.insert(0, _Watch())
"""


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _WATCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    importer = out.stderr.partition("pandas imported by:")[2].partition("[end]")[0]
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "stderr": out.stderr,
            "importer": importer}


def test_pyarrow_converts_without_pandas_then_finds_it_when_imported():
    found = _run(
        """
        import datetime as dt, json, sys
        import pyarrow as pa, pyarrow.compute as pc
        from gsc_pipeline.pandas_on_demand import spare_pandas
        spare_pandas()
        pa.array(["a"], pa.string()); pa.scalar(3, pa.int64())
        pc.add(pa.array([1, 2], pa.int64()), pa.scalar(1, pa.int64()))
        pa.array([dt.date(2026, 1, 1)], pa.date32())
        before = "pandas" in sys.modules
        import pandas as pd
        table = pa.table(pd.DataFrame({"a": [1, 2]}))  # only with pyarrow's pandas support
        print(json.dumps({"before": before, "sees": bool(pa.lib._pandas_api.have_pandas),
                          "rows": table.num_rows, "back": table.to_pandas()["a"].tolist()}))
        """
    )
    assert found["before"] is False, found["stderr"]
    assert found["sees"] is True
    assert (found["rows"], found["back"]) == (2, [1, 2])


def test_without_sparing_pyarrow_imports_pandas():
    """The reason for the module: the same conversion imports pandas when nothing spares it."""
    found = _run(
        """
        import json, sys
        import pyarrow as pa
        pa.array(["a"], pa.string())
        print(json.dumps({"loaded": "pandas" in sys.modules}))
        """
    )
    assert found["loaded"] is True


POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.mark.parametrize("backend", ["duckdb", POSTGRES])
def test_a_fetch_run_with_its_checks_never_imports_pandas(backend, tmp_path, request):
    """A real run in process (the emulator over HTTP, the warehouse, the in-run checks), as a
    run worker executes it: every check evaluated and passed, and neither pandas nor DuckDB
    ever imported."""
    url = (
        f"duckdb:///{tmp_path / 'wh.duckdb'}"
        if backend == "duckdb"
        else request.getfixturevalue("postgres_schema_url")
    )
    # The shared test config, as JSON: tests.pipeline_env itself imports pandas.
    config = pipeline_config(SMALL, MEDIUM)
    declared = json.dumps(config.model_dump(mode="json", exclude_unset=True))
    found = _run(
        f"""
        import json, os, sys
        import dagster as dg
        from gsc_pipeline.config import parse_config
        from gsc_pipeline.definitions import build_definitions
        from gsc_pipeline.defs.keys import fetch_asset_keys
        from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
        from gsc_pipeline.emulator.testing import running_emulator

        config = parse_config(json.loads({declared!r}))
        loaded_by_setup = "pandas" in sys.modules
        with running_emulator(json.loads({json.dumps(EMULATOR_CONFIG)!r})) as gsc:
            os.environ[API_ENDPOINT_ENV] = gsc.base_url
            os.environ[WAREHOUSE_URL_ENV] = {url!r}
            defs = build_definitions(config)
            # What a backfill runs: the fetching assets, each with its in-run checks.
            selection = dg.AssetSelection.assets(*fetch_asset_keys(config))
            job = dg.define_asset_job("t", selection=selection)
            resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("t")
            tags = {{"dagster/asset_partition_range_start": "2026-03-01",
                     "dagster/asset_partition_range_end": "2026-03-03"}}
            with dg.instance_for_test() as instance:
                result = resolved.execute_in_process(instance=instance, tags=tags)
        checks = [e.event_specific_data for e in result.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        materialized = [e for e in result.all_events
                        if e.event_type_value == "ASSET_MATERIALIZATION"]
        print(json.dumps({{
            "success": result.success,
            "setup": loaded_by_setup,
            "loaded": "pandas" in sys.modules,
            "duckdb": "duckdb" in sys.modules,
            "checks": len(checks),
            "failed": [c.check_name for c in checks if not c.passed],
            "materialized": len(materialized),
        }}))
        """
    )
    assert found["success"], found["stderr"][-4000:]
    assert found["setup"] is False
    # 2 properties x 3 reports x 3 days, each day judged by the 4 in-run checks.
    assert found["materialized"] == 18
    assert found["checks"] == 72 and found["failed"] == []
    assert found["loaded"] is False, found["importer"]
    # DuckDB runs in its writer process (gsc_pipeline.warehouse.duckdb_server), never here.
    assert found["duckdb"] is False
