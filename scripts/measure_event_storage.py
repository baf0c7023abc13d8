"""What one Dagster event costs the run worker, by event kind and instance storage.

    .venv/bin/python scripts/measure_event_storage.py
        [--storage sqlite|pooled|postgres|pooled-postgres]
        [--days 30] [--rounds 2]

A fetch run writes per day: a materialization (with the table metadata) and one check
evaluation per in-run check (4 per report). This materializes one daily-partitioned asset
over `--days` days in this process (in-process executor, a fresh instance), yielding what the
fetching asset yields per day with the same metadata sizes, and prints the process CPU (and
the wall time) of: the run alone (no per-day events), + a materialization per day, + 4 check
evaluations per day; the differences divided by the count are the cost per event.
`--storage sqlite` is Dagster's own SQLite storage, `pooled` the local instance's
(`GscInstance`, gsc_pipeline/instance/storage.py: connections kept, commits without fsync;
stop 20's `sqlite-tuned` patch measured the same lever before it shipped). `--storage postgres`
uses Dagster's PostgreSQL storage in database `p20cpu_events` at $GSC_TEST_POSTGRES_URL's
server (created anew); `pooled-postgres` the same database with the instance class and
storages of the project's template, gsc_pipeline/instance/dagster-postgres.yaml.
"""

import argparse
import os
import tempfile
import time
from collections.abc import Iterator

import dagster as dg
import sqlalchemy as sa
import yaml

from gsc_pipeline.instance import _TEMPLATES

CHECKS = [f"check_{i}" for i in range(4)]
PARTITIONS = dg.DailyPartitionsDefinition("2026-01-01")
# As the fetching asset's day: the sync numbers, then Dagster's table metadata (12 columns).
DAY_METADATA = {
    **{f"sync_{i}": 1.5 for i in range(11)},
    "dagster/row_count": 50_000,
    "dagster/table_name": "warehouse.main.gsc_page_query",
    "dagster/column_schema": dg.TableSchema(
        columns=[dg.TableColumn(f"column_{i}", "VARCHAR") for i in range(12)]
    ),
}
# As a per-day check evaluation: ~2 KB of text.
CHECK_METADATA = {f"measurement_{i}": "x" * 150 for i in range(12)}


def _asset(materializations: bool, evaluations: bool) -> dg.AssetsDefinition:
    specs = [dg.AssetCheckSpec(name, asset="gsc_report") for name in CHECKS] if evaluations else []

    # As the fetching assets: a subsettable multi_asset (its check outputs are optional).
    @dg.multi_asset(name="gsc_property", specs=[dg.AssetSpec("gsc_report")],
                    partitions_def=PARTITIONS, check_specs=specs, can_subset=True)  # fmt: skip
    def report(context: dg.AssetExecutionContext) -> Iterator[object]:
        if materializations:
            for day in context.partition_keys:
                context.add_asset_metadata(DAY_METADATA, partition_key=day)
        yield dg.MaterializeResult(asset_key="gsc_report")
        for name in CHECKS if evaluations else []:
            for day in context.partition_keys:
                yield dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey("gsc_report"), check_name=name, passed=True,
                    metadata=CHECK_METADATA, partition=day,
                )  # fmt: skip

    return report


def _postgres_url() -> str:
    server = os.environ.get("GSC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    admin = sa.create_engine(server.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS p20cpu_events WITH (FORCE)"))
        conn.execute(sa.text("CREATE DATABASE p20cpu_events"))
    admin.dispose()
    return server.rsplit("/", 1)[0] + "/p20cpu_events"


def _project_postgres_storages() -> dict:
    """The instance class and the three storage sections of the project's PostgreSQL instance
    template (its classes, the URL from $DAGSTER_POSTGRES_URL), without its run queue and pool
    settings."""
    template = yaml.safe_load((_TEMPLATES / "dagster-postgres.yaml").read_text())
    keys = ("instance_class", "run_storage", "event_log_storage", "schedule_storage")
    return {key: template[key] for key in keys}


def _cost_of_run(
    storage: str, days: int, materializations: bool, evaluations: bool
) -> tuple[float, float]:
    """(CPU s, wall s) of the second of two runs (the first warms imports and tables)."""
    overrides = None
    if storage == "postgres":
        overrides = {"storage": {"postgres": {"postgres_url": _postgres_url()}}}
    elif storage == "pooled-postgres":
        os.environ["DAGSTER_POSTGRES_URL"] = _postgres_url()
        overrides = _project_postgres_storages()
    elif storage == "pooled":
        overrides = {"instance_class": {"module": "gsc_pipeline.instance.storage",
                                        "class": "GscInstance"}}  # fmt: skip
    keys = PARTITIONS.get_partition_keys()[:days]
    tags = {"dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1]}  # fmt: skip
    with tempfile.TemporaryDirectory() as home, \
            dg.instance_for_test(temp_dir=home, overrides=overrides) as instance:  # fmt: skip
        asset = _asset(materializations, evaluations)
        dg.materialize([asset], instance=instance, tags=tags)  # warm: imports, tables
        cpu, wall = time.process_time(), time.perf_counter()
        dg.materialize([asset], instance=instance, tags=tags)
        return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--storage", default="sqlite", choices=["sqlite", "pooled", "postgres", "pooled-postgres"]
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.rounds):
        load = os.getloadavg()[0]
        bare, mats, checks = (
            _cost_of_run(args.storage, args.days, *kinds)
            for kinds in ((False, False), (True, False), (True, True))
        )
        per_day = [(m - b) / args.days * 1e3 for m, b in zip(mats, bare, strict=True)]
        per_check = [
            (c - m) / (args.days * len(CHECKS)) * 1e3 for c, m in zip(checks, mats, strict=True)
        ]
        print(
            f"{args.storage}, load {load:.2f}: run {bare[0]:.2f} s CPU; per materialization "
            f"{per_day[0]:.1f} ms CPU ({per_day[1]:.1f} wall); per check evaluation "
            f"{per_check[0]:.1f} ms CPU ({per_check[1]:.1f} wall)",
            flush=True,
        )


if __name__ == "__main__":
    main()
