"""DuckDB's CPU to insert and checkpoint page x query rows, with its default threads and with one.

    .venv/bin/python scripts/measure_duckdb_threads.py [--pairs 8] [--days 5]

Fetches the standard scenario's large property's first `--days` days of page x query (two
25,000-row pages a day, parsed and shaped as the bench's reference path does) from the
emulator, then in this process, alternating the two settings `--pairs` times: a fresh DuckDB
file, each day inserted from Arrow in its own statement, a CHECKPOINT; CPU (getrusage, all
threads) per row for the inserts and for the checkpoint, and the file's size. Also the CPU of a
`SELECT 1` (a statement's fixed cost) under each setting. A measurement, not a test
(docs/bench/README.md, stops 40-42: the pipeline's writer took 19% less CPU with one thread
over 4 pairs; reverted at stop 41 after a CI failure, kept at stop 42 once that failure's cause,
a race in DuckDB's creation of a new file, was measured and closed: `DuckDBWarehouse._create_file`).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa

from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.tools.bench.command import standard_rounds
from gsc_pipeline.tools.bench.floor import _fetch_day, _RawApi
from gsc_pipeline.tools.bench.scenario import LARGE, SCENARIOS

SETTINGS: dict[str, dict[str, object]] = {"default": {}, "threads=1": {"threads": 1}}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _days(days: int) -> list[pa.Table]:
    """The large property's first `days` days of page x query, as the reference path fetches
    and shapes them (`bench.floor._fetch_day`: its pages until a short one, the table's columns)."""
    scenario = SCENARIOS["standard"]
    tables: list[pa.Table] = []
    for _files, endpoint, _url in standard_rounds("duckdb", 1, "gsc-duckdb-threads-"):
        api = _RawApi(endpoint)
        tables = [
            pa.concat_tables(_fetch_day(api, LARGE, PAGE_QUERY, day))
            for day in scenario.day_list[:days]
        ]
    return tables


def _insert_and_checkpoint(
    path: Path, config: dict[str, object], days: list[pa.Table]
) -> tuple[float, float, float]:
    """(insert µs/row, checkpoint µs/row, file MB) into a fresh file."""
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path), config=dict(config))
    con.register("day", days[0])
    con.execute("CREATE TABLE t AS SELECT * FROM day WHERE false")
    con.unregister("day")
    con.execute("CHECKPOINT")
    rows = sum(day.num_rows for day in days)
    cpu0 = _cpu()
    for day in days:
        con.register("day", day)
        con.execute("INSERT INTO t SELECT * FROM day")
        con.unregister("day")
    cpu1 = _cpu()
    con.execute("CHECKPOINT")
    cpu2 = _cpu()
    con.close()
    return (cpu1 - cpu0) / rows * 1e6, (cpu2 - cpu1) / rows * 1e6, path.stat().st_size / 1e6


def _statement_ms(config: dict[str, object], n: int = 3000) -> float:
    con = duckdb.connect(config=dict(config))
    for _ in range(100):
        con.execute("SELECT 1").fetchall()
    cpu0 = _cpu()
    for _ in range(n):
        con.execute("SELECT 1").fetchall()
    return (_cpu() - cpu0) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--days", type=int, default=5)
    args = parser.parse_args()
    days = _days(args.days)
    rows = sum(day.num_rows for day in days)
    print(f"{rows:,} rows in {len(days)} days; DuckDB {duckdb.__version__}")
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SETTINGS}
    statements: dict[str, list[float]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="gsc-duckdb-threads-") as tmp:
        path = Path(tmp) / "t.duckdb"
        for _ in range(args.pairs):
            for name, config in SETTINGS.items():
                results[name].append(_insert_and_checkpoint(path, config, days))
                statements[name].append(_statement_ms(config))
    for name, runs in results.items():
        totals = [insert + checkpoint for insert, checkpoint, _ in runs]
        print(
            f"{name:10s} insert + checkpoint µs/row "
            + " ".join(f"{i:.2f}+{c:.2f}" for i, c, _ in runs)
            + f"; median {statistics.median(totals):.2f}; file {runs[-1][2]:.1f} MB; "
            f"SELECT 1 median {statistics.median(statements[name]):.3f} ms"
        )


if __name__ == "__main__":
    main()
