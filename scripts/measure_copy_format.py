"""Client and server CPU per row of a PostgreSQL bulk load: COPY in CSV against binary COPY.

    .venv/bin/python scripts/measure_copy_format.py [--rows 300000] [--rounds 4]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

Loads the same table (page x query rows shaped as the bench's large property: page URLs
dictionary-encoded, as a fetched day holds them) into a table with the warehouse's index, once
as CSV (Arrow's C++ CSV writer, the warehouse's format before issue 14 stop 30) and once in
the binary format (`gsc_pipeline.warehouse.postgres._CopyStream`, pgpq), alternating, `--rounds`
times each. Prints each format's client CPU (this process) and server CPU (the backend's, read
from /proc: the server must run on this machine) per row, and the wall time.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import time
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv

from gsc_pipeline.warehouse.postgres import _CopyStream

_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed")
_WORDS = ["best", "cheap", "how", "to", "buy", "review", "2026", "near", "me", "vs", "guide",
          "free", "online", "top", "price"]  # fmt: skip


class _CsvStream:
    """The table as CSV, 8,192 rows a slice, as the warehouse wrote it before."""

    def __init__(self, data: pa.Table) -> None:
        self._batches = iter(data.to_batches(max_chunksize=8192))
        self._pending = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            if (batch := next(self._batches, None)) is None:
                break
            out = io.BytesIO()
            pacsv.write_csv(batch, out, _CSV_OPTIONS)
            self._pending += out.getbuffer()
        cut = len(self._pending) if size < 0 else min(size, len(self._pending))
        chunk = bytes(self._pending[:cut])
        del self._pending[:cut]
        return chunk


def _rows(n: int) -> pa.Table:
    rng = random.Random(7)
    pages = [f"https://large.example/section-{i % 40}/article-{i}-{rng.randrange(10**6)}"
             for i in range(6000)]  # fmt: skip
    return pa.table({
        "site_url": pa.array(["sc-domain:large.example"] * n).dictionary_encode(),
        "search_type": pa.array(["web"] * n).dictionary_encode(),
        "date": pa.array([19000 + i // 60000 for i in range(n)], pa.int32()).cast(pa.date32()),
        "page": pa.array([pages[rng.randrange(6000)] for _ in range(n)]).dictionary_encode(),
        "query": [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 5))) for _ in range(n)],
        "clicks": [float(rng.randrange(5)) for _ in range(n)],
        "impressions": [float(rng.randrange(1, 500)) for _ in range(n)],
        "ctr": [rng.random() for _ in range(n)],
        "position": [rng.random() * 50 for _ in range(n)],
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    table = _rows(args.rows)
    con = psycopg2.connect(args.postgres_url)
    cur = con.cursor()
    cur.execute(
        "DROP TABLE IF EXISTS measure_copy_format; CREATE TABLE measure_copy_format "
        "(site_url VARCHAR, search_type VARCHAR, date DATE, page VARCHAR, query VARCHAR, "
        "clicks DOUBLE PRECISION, impressions DOUBLE PRECISION, ctr DOUBLE PRECISION, "
        "position DOUBLE PRECISION); CREATE INDEX ON measure_copy_format (site_url, date)"
    )
    cur.execute("SELECT pg_backend_pid()")
    stat = f"/proc/{cur.fetchone()[0]}/stat"

    def server_cpu() -> float:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    formats = {"csv": _CsvStream, "binary": _CopyStream}
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in formats}
    try:
        for _ in range(args.rounds):
            for name, stream in formats.items():
                cur.execute("TRUNCATE measure_copy_format")
                con.commit()
                server0, client0, wall0 = server_cpu(), time.process_time(), time.perf_counter()
                cur.copy_expert(f"COPY measure_copy_format FROM STDIN WITH (FORMAT {name})",
                                stream(table), size=1 << 20)  # fmt: skip
                con.commit()
                results[name].append((time.process_time() - client0, server_cpu() - server0,
                                      time.perf_counter() - wall0))  # fmt: skip
                cur.execute("SELECT count(*) FROM measure_copy_format")
                assert cur.fetchone()[0] == args.rows
    finally:
        cur.execute("DROP TABLE IF EXISTS measure_copy_format")
        con.commit()
    print(f"{args.rows:,} rows a load, {args.rounds} loads a format, alternating")
    for name, runs in results.items():
        client = sorted(round(c / args.rows * 1e6, 2) for c, _, _ in runs)
        server = sorted(round(s / args.rows * 1e6, 2) for _, s, _ in runs)
        wall = sorted(round(w, 2) for _, _, w in runs)
        print(f"  {name:6} client µs/row {client}  server µs/row {server}  wall s {wall}")


if __name__ == "__main__":
    main()
