"""DuckDB's CPU per row stored with a checkpoint after each commit, against its own checkpoints.

    .venv/bin/python scripts/measure_duckdb_checkpoint.py [--rows-per-commit 240000 60000]
        [--commits-rows 1920000] [--rounds 2]

DuckDB alone, inline, configured as the writer process configures it (`threads=1`, the file
attached to an in-memory host database): synthetic page x query rows shaped like the bench's
large property (6,000 pages, 50,000 queries, 30,000-row Arrow batches) inserted into one table,
`--rows-per-commit` rows a transaction, either leaving the checkpoints to DuckDB (it checkpoints
inside a COMMIT once its write-ahead log passes `checkpoint_threshold`, 16 MB by default) or
running `CHECKPOINT` after every commit; the file is detached at the end (its last checkpoint).
Prints the process CPU per row, alternating the two ways for `--rounds`. A measurement, not a
test: the lever it measures is not built (docs/bench/README.md, issue 14 stop 45).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

BATCH = 30_000


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _batches(total: int) -> list[pa.Table]:
    rng = np.random.default_rng(1)
    pages = np.array([f"https://large.example/section-{i % 60}/article-{i}" for i in range(6000)])
    queries = np.array([f"query words number {i}" for i in range(50_000)])
    return [
        pa.table({
            "site_url": pa.array(["sc-domain:large.example"] * BATCH),
            "date": pa.array([day] * BATCH, pa.int32()),
            "page": pa.array(pages[rng.integers(0, len(pages), BATCH)]),
            "query": pa.array(queries[rng.integers(0, len(queries), BATCH)]),
            "clicks": pa.array(rng.integers(0, 10, BATCH)),
            "impressions": pa.array(rng.integers(0, 1000, BATCH)),
            "ctr": pa.array(rng.random(BATCH)),
            "position": pa.array(rng.random(BATCH) * 50),
        })  # fmt: skip
        for day in range(total // BATCH)
    ]


def _store(batches: list[pa.Table], per_commit: int, checkpoint_each: bool) -> float:
    """CPU seconds to insert `batches`, `per_commit` batches a transaction."""
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(config={"threads": 1})
        con.execute(f"ATTACH '{Path(tmp) / 'f.duckdb'}' AS f")
        con.execute(
            "CREATE TABLE f.t (site_url VARCHAR, date INTEGER, page VARCHAR, query VARCHAR, "
            "clicks BIGINT, impressions BIGINT, ctr DOUBLE, position DOUBLE)"
        )
        start = _cpu()
        for i in range(0, len(batches), per_commit):
            rows = pa.concat_tables(batches[i : i + per_commit])
            con.execute("BEGIN")
            con.register("rows_in", rows)
            con.execute("INSERT INTO f.t SELECT * FROM rows_in")
            con.unregister("rows_in")
            con.execute("COMMIT")
            if checkpoint_each:
                con.execute("CHECKPOINT f")
        con.execute("DETACH f")
        used = _cpu() - start
        con.close()
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-per-commit", type=int, nargs="+", default=[240_000, 60_000])
    parser.add_argument("--commits-rows", type=int, default=1_920_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    batches = _batches(args.commits_rows)
    rows = len(batches) * BATCH
    for per_commit_rows in args.rows_per_commit:
        per_commit = max(1, per_commit_rows // BATCH)
        for _ in range(args.rounds):
            for checkpoint_each in (False, True):
                cpu = _store(batches, per_commit, checkpoint_each)
                how = "CHECKPOINT after each commit" if checkpoint_each else "its own checkpoints"
                print(f"{per_commit * BATCH:>9,} rows a commit, {how:<29}: {cpu:5.2f} CPU s, "
                      f"{cpu / rows * 1e6:.2f} µs/row", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
