"""What an attach and a detach cost a DuckDB transaction: small transactions on one file, the
file detached after each (as every transaction did before stop 39) or kept attached (as DuckDB's
writer process now keeps it while transactions keep coming, `warehouse.duckdb.LINGER_SECONDS`).

    .venv/bin/python scripts/measure_duckdb_linger.py [--transactions 200]

DuckDB inline in this process: an in-memory host database, the file attached to it, as
`DuckDBWarehouse` does. Prints CPU ms per transaction for an empty one, a 4-row insert (one
table changed: what a small report's write is) and a 4-row insert into two tables (rows and
ledger), each both ways. A measurement, not a test (docs/bench/README.md, stop 39).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

ROWS = pa.table({"id": pa.array(range(4), pa.int64()), "name": pa.array(["x"] * 4)})


def _insert(con: duckdb.DuckDBPyConnection, table: str) -> None:
    con.register("rows_view", ROWS)
    con.execute(f"INSERT INTO {table} SELECT * FROM rows_view")
    con.unregister("rows_view")


def _measure(
    host: duckdb.DuckDBPyConnection, path: str, work: Callable[[duckdb.DuckDBPyConnection], None],
    detach: bool, transactions: int,
) -> float:  # fmt: skip
    """CPU ms per transaction."""
    con = None
    start = time.process_time()
    for _ in range(transactions):
        if con is None:
            con = host.cursor()
            con.execute(f"ATTACH '{path}' AS w")
            con.execute("USE w")
        con.execute("BEGIN TRANSACTION")
        work(con)
        con.execute("COMMIT")
        if detach:
            con.execute("USE memory")
            con.execute("DETACH w")
            con.close()
            con = None
    spent = time.process_time() - start
    if con is not None:
        con.execute("USE memory")
        con.execute("DETACH w")
        con.close()
    return spent / transactions * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gsc-linger-") as tmp:
        path = str(Path(tmp) / "w.duckdb")
        host = duckdb.connect(":memory:")
        host.execute(f"ATTACH '{path}' AS w")
        host.execute("CREATE TABLE w.t (id BIGINT, name VARCHAR)")
        host.execute("CREATE TABLE w.u (id BIGINT, name VARCHAR)")
        host.execute("DETACH w")
        works: dict[str, Callable[[duckdb.DuckDBPyConnection], None]] = {
            "empty transaction": lambda con: None,
            "4 rows into one table": lambda con: _insert(con, "t"),
            "4 rows into two tables": lambda con: (_insert(con, "t"), _insert(con, "u")),
        }
        print(f"CPU ms per transaction ({args.transactions} each), DuckDB {duckdb.__version__}:")
        print(f"  {'':24s} {'detached after each':>20s} {'kept attached':>14s}")
        for name, work in works.items():
            detached = _measure(host, path, work, True, args.transactions)
            kept = _measure(host, path, work, False, args.transactions)
            print(f"  {name:24s} {detached:20.2f} {kept:14.2f}")


if __name__ == "__main__":
    main()
