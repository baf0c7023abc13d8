"""`gsc-pipeline bench`: sequential fetching vs the pipeline as users run it vs the lower bound.

One invocation, in a fresh temporary Dagster home and warehouse, against the emulator in its own
process (so its CPU is not counted as ours):

1. the sequential baseline: `sync_days` in this process, one request at a time, on a slice of
   the days (extrapolated linearly); its CPU time per row is the fetch -> parse -> write cost;
2. the pipeline: a backfill launched through GraphQL `launchPartitionBackfill` (as the UI does)
   and run by the real daemon with the default pool limit and run batching, while a sampler
   follows the daemon's process tree (daemon, code server, run workers) for CPU and RSS;
3. lifetime stats: a full recompute, then one new day and an incremental refresh;
4. the quota cost of sharding: a property three times over the 50,000-row cap, a few days of
   page_query with sharding off and on (`shards.py`; `--size shards` runs this part alone).

The scenario is fixed in code (`scenario.SCENARIOS`) and printed in the report. Results go to
`<out>/<size>-<warehouse>.md` and `.png` (see `report.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from gsc_pipeline.config import CONFIG_ENV
from gsc_pipeline.tools.bench.report import write_report
from gsc_pipeline.tools.bench.run import measure
from gsc_pipeline.tools.bench.scenario import (
    SCENARIOS,
    ScenarioFiles,
    environ_set,
    write_scenario,
)
from gsc_pipeline.tools.bench.shards import shard_cost


@contextlib.contextmanager
def _warehouse_url(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh DuckDB file, or a fresh PostgreSQL database dropped afterwards."""
    if kind == "duckdb":
        yield f"duckdb:///{workdir / 'warehouse.duckdb'}"
        return
    import psycopg2

    admin = os.environ.get("GSC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"gsc_bench_{uuid.uuid4().hex[:10]}"
    con = psycopg2.connect(admin)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        con.close()


def standard_rounds(
    warehouse: str, rounds: int, prefix: str
) -> Iterator[tuple[ScenarioFiles, str, str]]:
    """For the measurement scripts: the standard scenario's files and its emulator (in its own
    process), then per round a fresh warehouse: (files, the emulator's URL, the warehouse's)."""
    from gsc_pipeline.tools.demo import emulator_process

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        files = write_scenario(SCENARIOS["standard"], workdir)
        with emulator_process(
            "--config", str(files.emulator_file), log=workdir / "emulator.log"
        ) as emu:
            for round_no in range(rounds):
                roundir = workdir / f"round{round_no}"
                roundir.mkdir()
                with _warehouse_url(warehouse, roundir) as url:
                    yield files, emu.base_url, url


def run_bench(
    size: str = "smoke",
    warehouse: str = "duckdb",
    out: Path = Path("bench-report"),
    keep_home: Path | None = None,
    warm: bool = True,
) -> int:
    """Measure, write `<out>/<size>-<warehouse>.md` and `.png`; 0 when the backfill succeeded.

    `keep_home`: the backfill's Dagster home is copied there at the end (its runs' events, for
    `scripts/run_timeline.py <keep_home> --steps`); the bench's work directory is deleted.
    `warm` False skips the emulator's warm-up (`run.warm_emulator`), for its A/B."""
    out.mkdir(parents=True, exist_ok=True)
    if size == "shards":
        md_path = out / "shards.md"
        md_path.write_text("\n".join(shard_cost().markdown()))
        print(f"report: {md_path}")
        return 0
    scenario = SCENARIOS[size]
    with tempfile.TemporaryDirectory(prefix="gsc-bench-") as tmp:
        workdir = Path(tmp)
        files = write_scenario(scenario, workdir)
        with (
            _warehouse_url(warehouse, workdir) as url,
            environ_set({CONFIG_ENV: str(files.config_file)}),
        ):
            result = measure(scenario, files, url, warehouse, workdir, warm=warm)
        if keep_home is not None:
            shutil.copytree(files.home, keep_home, dirs_exist_ok=True)
            print(f"the backfill's Dagster home: {keep_home}")
    stem = f"{scenario.name}-{warehouse}"
    md = write_report(result, out / f"{stem}.md", out / f"{stem}.png")
    with md.open("a") as report:
        report.write("\n" + "\n".join(shard_cost(days=min(3, scenario.days)).markdown()))
    print(f"report: {md} (chart {out / f'{stem}.png'})")
    return 0 if result.succeeded else 1
