"""Server CPU of the duplicate-rows proof on PostgreSQL, with the server's defaults and with the
pipeline's session settings (`warehouse.postgres.SESSION_OPTIONS`).

    .venv/bin/python scripts/measure_pg_proof_query.py [--url postgresql://postgres@127.0.0.1:5432/test]
        [--days 30] [--rows-per-day 60000] [--rounds 2]

One fresh schema holds `--days` days of a property's page_query rows (the standard bench's large
property: 60,000 a day, 6,000 pages), made by SQL. `proof.no_duplicate_batches` then checks the
days through `PostgresWarehouse`, as a fetch run's in-run check does, alternating the server's
defaults (`-c work_mem=4MB -c max_parallel_workers_per_gather=2`, given in the URL, which wins)
with the pipeline's settings. Printed per round: wall seconds and the CPU seconds of every process
of the `postgres` user (the server must run on this host), which includes parallel workers. No
ledger is written, so the check's verdict is "not evaluated": its queries, not its verdict, are
what is measured.

`--warehouse postgresql://...` times the proof on that database's rows of the large property
instead (its last `--days` days), e.g. a database `scripts/measure_lifetime.py --warehouse
postgresql://...` filled with the emulator's rows: real pages and queries, whose longer keys the
old grouping sorted on disk where the synthetic ones fit in memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

import psutil
import psycopg2

from gsc_pipeline import proof
from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.warehouse import open_warehouse
from gsc_pipeline.warehouse.postgres import SESSION_OPTIONS

SITE = "sc-domain:large.example"
FIRST_DAY = dt.date(2026, 3, 1)
SERVER_DEFAULTS = "-c work_mem=4MB -c max_parallel_workers_per_gather=2"


def server_cpu() -> float:
    total = 0.0
    for p in psutil.process_iter(["username"]):
        if p.info["username"] == "postgres":
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warehouse", default=None, help="an existing database's rows instead")
    args = parser.parse_args()
    if args.warehouse:
        sep = "&" if "?" in args.warehouse else "?"
        last = open_warehouse(args.warehouse).read_sql(
            f"SELECT DISTINCT date FROM {PAGE_QUERY.table} WHERE site_url = ? "
            "ORDER BY date DESC LIMIT ?",
            [SITE, args.days],
        )["date"]
        days = sorted(d if isinstance(d, dt.date) else d.date() for d in last)
        print(f"{args.warehouse}: {SITE}, {len(days)} days; duplicate-rows proof over them")
        _time_proof(lambda o: f"{args.warehouse}{sep}options={quote(o)}" if o else args.warehouse,
                    days, args.rounds)  # fmt: skip
        return
    schema = f"gsc_measure_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(args.url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in args.url else "?"

    def url(options: str) -> str:
        return f"{args.url}{sep}options={quote(f'{options} -csearch_path={schema}'.strip())}"

    try:
        wh = open_warehouse(url(""))
        wh.ensure_schema([PAGE_QUERY])
        n = args.days * args.rows_per_day
        with wh.transaction() as conn:
            conn.execute(
                f"INSERT INTO {PAGE_QUERY.table} "
                "(site_url, search_type, date, page, query, clicks, impressions, ctr, position) "
                f"SELECT ?, 'web', CAST(? AS date) + (i / {args.rows_per_day}), "
                "'https://large.example/section-' || (i % 6000) || '/article-' "
                "|| ((i * 7) % 6000), "
                "'query words number ' || ((i * 13) % 50000), 1, 10, 0.1, 5 "
                f"FROM generate_series(0, {n - 1}) i",
                [SITE, FIRST_DAY],
            )
            conn.execute(f"ANALYZE {PAGE_QUERY.table}")
        days = [FIRST_DAY + dt.timedelta(days=i) for i in range(args.days)]
        print(f"{n:,} rows, {args.days} days; duplicate-rows proof over all of them")
        _time_proof(url, days, args.rounds)
    finally:
        admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def _time_proof(url: Callable[[str], str], days: list[dt.date], rounds: int) -> None:
    for _ in range(rounds):
        for name, options in (("server defaults", SERVER_DEFAULTS), ("pipeline", "")):
            warehouse = open_warehouse(url(options))
            cpu, wall = server_cpu(), time.perf_counter()
            proof.no_duplicate_batches(warehouse, SITE, PAGE_QUERY, days)
            wall, cpu = time.perf_counter() - wall, server_cpu() - cpu
            print(f"  {name:<16} ({options or SESSION_OPTIONS}): {wall:5.2f} s wall, "
                  f"{cpu:5.2f} s server CPU", flush=True)


if __name__ == "__main__":
    main()
