"""DuckDB's insert of fetched days, their request columns dictionary-encoded or plain.

    .venv/bin/python scripts/measure_dictionary_insert.py [--rounds 4]

Synthetic days of the large property's page x query (60,000 rows as 5 page chunks, as
`fetch_day` concatenates them), written two days a transaction through the warehouse's own
`insert_arrow`, once held as the pipeline holds them (`batch_schema`: site, search type and day
dictionary-encoded) and once as plain columns (`report_schema`), alternating. Prints the
process's CPU per row of each round (docs/bench/README.md, stop 25).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.warehouse import open_warehouse
from gsc_pipeline.warehouse.base import batch_schema, report_schema

PAGE_ROWS = 12_000
PAGES = 5
DAYS = 8


def _page(rng: np.random.Generator, day: dt.date, dictionary: bool) -> pa.Table:
    values = {"site_url": pa.array(["sc-domain:large.example"]), "search_type": pa.array(["web"]),
              "date": pa.array([day], pa.date32())}  # fmt: skip
    zeros = np.zeros(PAGE_ROWS, np.int8)
    columns = {
        name: pa.DictionaryArray.from_arrays(pa.array(zeros), value)
        if dictionary
        else value.take(pa.array(zeros.astype(np.int32)))
        for name, value in values.items()
    }
    columns |= {
        "page": pa.array([f"https://large.example/{x}" for x in rng.integers(0, 6000, PAGE_ROWS)]),
        "query": pa.array([f"query {x} words" for x in rng.integers(0, 10**6, PAGE_ROWS)]),
        "clicks": pa.array(rng.integers(0, 5, PAGE_ROWS).astype(float)),
        "impressions": pa.array(rng.integers(5, 50, PAGE_ROWS).astype(float)),
        "ctr": pa.array(rng.random(PAGE_ROWS)),
        "position": pa.array(rng.random(PAGE_ROWS) * 20),
    }
    schema = batch_schema(PAGE_QUERY) if dictionary else report_schema(PAGE_QUERY)
    return pa.Table.from_pydict(columns, schema=schema)


def _write(days: list[pa.Table]) -> float:
    """CPU µs per row of writing `days`, two a transaction, into a fresh DuckDB file."""
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = open_warehouse(f"duckdb:///{Path(tmp) / 'w.duckdb'}")
        with warehouse.transaction() as conn:
            conn.execute(warehouse.create_table_sql("t", report_schema(PAGE_QUERY)))
        start = time.process_time()
        for first in range(0, len(days), 2):
            with warehouse.transaction() as conn:
                for table in days[first : first + 2]:
                    conn.insert_arrow("t", table)
        return (time.process_time() - start) / sum(t.num_rows for t in days) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    cpu: dict[str, list[float]] = {"dictionary-encoded": [], "plain": []}
    for _ in range(args.rounds):
        for label in cpu:
            dictionary = label == "dictionary-encoded"
            days = [
                pa.concat_tables(
                    _page(rng, dt.date(2026, 1, 1) + dt.timedelta(days=d), dictionary)
                    for _ in range(PAGES)
                )
                for d in range(DAYS)
            ]
            cpu[label].append(_write(days))
    for label, values in cpu.items():
        print(f"{label:<18} " + " ".join(f"{v:.2f}" for v in values) + " µs/row")


if __name__ == "__main__":
    main()
