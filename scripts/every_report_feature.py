"""Run a config through the real fetch job against the emulator and print what each table holds.

    .venv/bin/python scripts/every_report_feature.py [--config FILE]
        [--warehouse duckdb:///tmp/every.duckdb | postgresql://...]

(default config: docs/examples/every-report-feature.yaml)

The emulator serves the two properties of the example config (today 2026-03-20); one Dagster
run fetches 2026-03-15..19 for every report, a second takes the sitemaps snapshots and
url_lifetime_stats. Prints the in-run check tally and rows per table, site and search type.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import dagster as dg

from gsc_pipeline.component import build_definitions
from gsc_pipeline.config import load_config
from gsc_pipeline.defs.resources import API_ENDPOINT_ENV, WAREHOUSE_URL_ENV
from gsc_pipeline.defs.schedules import FETCH_JOB
from gsc_pipeline.emulator.testing import running_emulator
from gsc_pipeline.warehouse import open_warehouse

EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "every-report-feature.yaml"
EMULATOR = {
    "seed": 3,
    "today": "2026-03-20",
    "properties": [
        {"site_url": "sc-domain:example.com", "page_query_rows_per_day": 3000, "pages": 300,
         "search_types": ["web", "image", "video", "news", "discover", "googleNews"],
         "sitemaps": 3},
        {"site_url": "https://www.strict.example/", "page_query_rows_per_day": 400, "pages": 60,
         "search_types": ["web", "image"], "rejected_aggregations": ["byPage", "byProperty"]},
    ],
}  # fmt: skip
RANGE = {"dagster/asset_partition_range_start": "2026-03-15",
         "dagster/asset_partition_range_end": "2026-03-19"}  # fmt: skip
SNAPSHOTS = ("gsc_sitemaps", "gsc_report_definitions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(EXAMPLE))
    default_db = Path(tempfile.mkdtemp()) / "every.duckdb"
    parser.add_argument("--warehouse", default=f"duckdb:///{default_db}")
    args = parser.parse_args()
    with running_emulator(EMULATOR) as gsc:
        os.environ[API_ENDPOINT_ENV] = gsc.base_url
        os.environ[WAREHOUSE_URL_ENV] = args.warehouse
        config = load_config(args.config)
        defs = build_definitions(config)
        others = [k for k in defs.resolve_asset_graph().get_all_asset_keys()
                  if k.path[0] == "gsc_sitemaps" or k.path == ["url_lifetime_stats"]]  # fmt: skip
        job = dg.define_asset_job("snapshots", selection=dg.AssetSelection.keys(*others))
        with dg.instance_for_test() as instance:
            fetch = defs.resolve_job_def(FETCH_JOB).execute_in_process(
                instance=instance, tags=RANGE
            )
            rest = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
            snapshots = rest.resolve_job_def("snapshots").execute_in_process(instance=instance)
        evaluations = fetch.get_asset_check_evaluations()
        print(f"fetch run: {fetch.success}; sitemaps + lifetime run: {snapshots.success}")
        print(f"in-run checks: {sum(e.passed for e in evaluations)}/{len(evaluations)} passed")
        warehouse = open_warehouse(args.warehouse)
        tables = sorted({r.table for p in config.properties for r in p.report_objects()})
        for table in [*tables, "gsc_sitemaps", "url_lifetime_stats", "gsc_fetch_ledger",
                      "gsc_report_definitions"]:  # fmt: skip
            keys = "site_url" if table in SNAPSHOTS else "site_url, search_type"
            counts = warehouse.read_sql(
                f"SELECT {keys}, COUNT(*) AS n FROM {table} GROUP BY {keys} ORDER BY {keys}"
            )
            if table in SNAPSHOTS:
                counts["search_type"] = "-"
            parts = ", ".join(
                f"{r.site_url.split(':')[-1].strip('/')}/{r.search_type}={r.n:,}"
                for r in counts.itertuples()
            )
            print(f"{table:<32} {int(counts['n'].sum()):>8,}  {parts}")


if __name__ == "__main__":
    main()
