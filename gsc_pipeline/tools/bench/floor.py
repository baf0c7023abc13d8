"""The bench's CPU floor: the least work that stores the same rows, without the pipeline.

Raw HTTP (`http.client`, one keep-alive connection per thread) to the emulator, Arrow's JSON
reader on the response bytes, the rows cut to the report's columns, and one bulk insert per
table into scratch tables of the same warehouse (dropped afterwards). No Dagster, no Google
client, no validation, no ledger, no retries and no rate limit. Its CPU per row times the rows
the pipeline stored, divided by the cores, is a floor no implementation on this machine goes
under; the pipeline's own CPU is not (wasting CPU would raise that "bound" and flatter the
ratio).
"""

from __future__ import annotations

import datetime as dt
import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from gsc_pipeline.config import PipelineConfig
from gsc_pipeline.gsc.client import parse_rows_page
from gsc_pipeline.reports import Report
from gsc_pipeline.warehouse import Warehouse, open_warehouse
from gsc_pipeline.warehouse.base import report_schema

FLOOR_TABLE_PREFIX = "bench_floor_"


@dataclass(frozen=True)
class Floor:
    requests: int
    rows: int
    seconds: float
    cpu_seconds: float

    @property
    def cpu_us_per_row(self) -> float:
        return self.cpu_seconds / max(1, self.rows) * 1e6


class _RawApi:
    """searchAnalytics.query over plain HTTP/1.1, one persistent connection per thread."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/") + "/webmasters/v3/sites/"
        self.local = threading.local()

    def query(self, site_url: str, body: dict) -> bytes:
        con = getattr(self.local, "con", None)
        if con is None:
            con = self.local.con = http.client.HTTPConnection(self.host, self.port, timeout=120)
        path = f"{self.prefix}{quote(site_url, safe='')}/searchAnalytics/query"
        con.request("POST", path, orjson.dumps(body), {"Content-Type": "application/json"})
        response = con.getresponse()
        content = response.read()
        if response.status != 200:
            raise RuntimeError(
                f"reference path: HTTP {response.status} for {site_url}: {content!r}"
            )
        return content


def _columns(
    report: Report, site_url: str, search_type: str, day: dt.date, rows: pa.StructArray
) -> pa.Table:
    schema = report_schema(report)
    keys, clicks, impressions, ctr, position = rows.flatten()
    n = len(rows)
    dims = [pc.list_element(keys, i + 1) for i in range(len(report.dimensions))]
    constants = [pa.repeat(site_url, n), pa.repeat(search_type, n),
                 pa.repeat(pa.scalar(day, pa.date32()), n)]  # fmt: skip
    return pa.Table.from_arrays(
        [*constants, *dims, clicks, impressions, ctr, position], schema=schema
    )


def _fetch_day(api: _RawApi, site_url: str, report: Report, day: dt.date) -> list[pa.Table]:
    pages: list[pa.Table] = []
    for search_type in report.search_types:
        start = 0
        while True:
            body = {"startDate": day.isoformat(), "endDate": day.isoformat(),
                    "dimensions": report.api_dimensions, "type": search_type,
                    "aggregationType": report.aggregation_type, "rowLimit": report.row_limit,
                    "startRow": start, "dataState": "final"}  # fmt: skip
            rows = parse_rows_page(api.query(site_url, body)).rows
            pages.append(_columns(report, site_url, search_type, day, rows))
            start += report.row_limit
            if len(rows) < report.row_limit:
                break
    return pages


def cpu_seconds(warehouse: Warehouse) -> float:
    """This process's CPU seconds so far (all threads), plus the process that runs the
    warehouse's database for it on this machine (DuckDB's writer), once the warehouse has done
    the work it defers (`Warehouse.release`: DuckDB's writer detaches, so checkpoints, a file a
    moment after its last transaction)."""
    warehouse.release()
    return time.process_time() + warehouse.helper_cpu_seconds()


def reference_path(
    config: PipelineConfig, endpoint: str, warehouse_url: str, days: list[dt.date],
    threads: int = 8,
) -> Floor:  # fmt: skip
    """Fetch, parse and bulk-insert every (property, report, day) of `days`; its CPU and rows.

    CPU is this process's (all threads) and DuckDB's writer's from the first request to the
    last commit; the scratch tables' DDL is outside the measurement.
    """
    api = _RawApi(endpoint)
    warehouse = open_warehouse(warehouse_url)
    reports = {r.table: r for p in config.properties for r in p.report_objects()}
    with warehouse.transaction() as conn:
        for table, report in reports.items():
            conn.execute(
                warehouse.create_table_sql(FLOOR_TABLE_PREFIX + table, report_schema(report))
            )
    work = [(p.site_url, r, d) for p in config.properties for r in p.report_objects() for d in days]
    try:
        cpu0, t0 = cpu_seconds(warehouse), time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            fetched = list(pool.map(lambda w: (w[1].table, _fetch_day(api, *w)), work))
        by_table: dict[str, list[pa.Table]] = {}
        for table, pages in fetched:
            by_table.setdefault(table, []).extend(pages)
        with warehouse.transaction() as conn:
            for table, pages in by_table.items():
                conn.insert_arrow(FLOOR_TABLE_PREFIX + table, pa.concat_tables(pages))
        cpu, seconds = cpu_seconds(warehouse) - cpu0, time.perf_counter() - t0
    finally:
        with warehouse.transaction() as conn:
            for table in reports:
                conn.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE_PREFIX}{table}")
    requests = sum(len(pages) for _, pages in fetched)
    rows = sum(page.num_rows for _, pages in fetched for page in pages)
    return Floor(requests, rows, seconds, cpu)
