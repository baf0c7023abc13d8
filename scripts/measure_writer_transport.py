"""What sending rows to DuckDB's writer process costs, against inserting them in this process.

    .venv/bin/python scripts/measure_writer_transport.py [--rounds 2] [--commits 8]

Each round, for `inline` then `process` (`GSC_DUCKDB_WRITER`): a fresh DuckDB file, then
`--commits` transactions of one `insert_arrow` each, of a page x query table of two DuckDB row
groups (245,760 rows, ~142 bytes a row, as a group commit). Prints this process's CPU, the
writer's (`Warehouse.helper_cpu_seconds`) and their sum per row. A measurement, not a test
(docs/bench/README.md, stop 38).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import pyarrow as pa

from gsc_pipeline.warehouse.duckdb import WRITER_ENV, DuckDBWarehouse

ROWS = 2 * 122_880
COLUMNS = (
    "site_url VARCHAR, search_type VARCHAR, date DATE, page VARCHAR, query VARCHAR, "
    "clicks DOUBLE, impressions DOUBLE, ctr DOUBLE, position DOUBLE"
)


def _rows() -> pa.Table:
    n = ROWS
    return pa.table({
        "site_url": pa.array(["sc-domain:large.example"] * n),
        "search_type": pa.array(["web"] * n),
        "date": pa.array([20_000] * n, pa.int32()).cast(pa.date32()),
        "page": pa.array([f"https://large.example/path/{i % 50_000}/page.html" for i in range(n)]),
        "query": pa.array([f"query words {i}" for i in range(n)]),
        "clicks": pa.array([float(i % 7) for i in range(n)]),
        "impressions": pa.array([float(i) for i in range(n)]),
        "ctr": pa.array([0.1] * n),
        "position": pa.array([3.5] * n),
    })  # fmt: skip


def _measure(mode: str, rows: pa.Table, commits: int, path: str) -> None:
    warehouse = DuckDBWarehouse(path, writer=mode)
    with warehouse.transaction() as conn:
        conn.execute(f"CREATE TABLE t ({COLUMNS})")
    helper0, cpu0, wall0 = warehouse.helper_cpu_seconds(), time.process_time(), time.time()
    for _ in range(commits):
        with warehouse.transaction() as conn:
            conn.insert_arrow("t", rows)
    here = time.process_time() - cpu0
    writer = warehouse.helper_cpu_seconds() - helper0
    total_rows = commits * rows.num_rows
    print(
        f"{mode:8s} this process {here:5.2f} CPU s, writer {writer:5.2f}, together "
        f"{(here + writer) / total_rows * 1e6:.2f} µs/row, wall {time.time() - wall0:.1f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--commits", type=int, default=8)
    args = parser.parse_args()
    os.environ.pop(WRITER_ENV, None)
    rows = _rows()
    print(f"{args.commits} commits of {rows.num_rows:,} rows ({rows.nbytes // rows.num_rows} "
          "bytes a row) per measurement")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gsc-writer-transport-") as workdir:
        for round_no in range(args.rounds):
            for mode in ("inline", "process"):
                path = os.path.join(workdir, f"{mode}-{round_no}.duckdb")
                _measure(mode, rows, args.commits, path)


if __name__ == "__main__":
    main()
