"""Peak memory of a ranged fetch step: `sync_days` over 16 days of a property over Google's row
cap (sharded), 16 days in flight, in a process of its own, with the emulator in another.

    .venv/bin/python scripts/measure_step_memory.py [--warehouse duckdb|postgres] [--days 16]
        [--concurrency 16] [--memory-mb 48] [--discard-writes]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

Prints the step process's RSS after its imports, its peak (ru_maxrss) and its RSS after the
step; then, sampled every 20 ms, what the RSS was made of at its highest sample (Arrow's pool,
`pa.total_allocated_bytes()`; glibc malloc's memory from the system and the part in use,
mallinfo2; fetched days not yet committed), the most Arrow and days held, the requests, the
achieved rate and the CPU per row. `--discard-writes`: the warehouse writes nothing (the step
without the warehouse's own memory). Environment knobs for A/Bs: ARROW_DEFAULT_MEMORY_POOL,
JE_ARROW_MALLOC_CONF (jemalloc's options), GLIBC_TUNABLES, MEASURE_JEMALLOC_DECAY_MS,
MEASURE_DUCKDB_CONFIG (JSON of DuckDB settings), MEASURE_DEFAULT_MMAP_THRESHOLD=1 (glibc's
dynamic mmap threshold instead of the step's fixed one), MEASURE_MMAP_THRESHOLD=BYTES (another
fixed one). Run it with another checkout's python
(e.g. /work/main/.venv/bin/python) to measure that checkout's code.

A measurement, not a test: the peak depends on how far the writer lags the fetches, i.e.
on the machine's load (measured +540-750 MB quiet, +1,886 MB in CI beside other tests), so
no ceiling here would be both meaningful and stable. Figures: docs/bench/ab-p14path.md,
docs/bench/ab-p20p20mem.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import quote

from gsc_pipeline.constants import DEFAULT_STEP_MEMORY_MB
from gsc_pipeline.emulator.testing import emulator_process

LARGE = "sc-domain:large.example"

# The bench's large property, latency and quota 10x faster (the budget below follows).
CONFIG = {
    "today": "2026-06-30",
    "time_scale": 10.0,
    "max_rows_per_day": 50_000,
    "latency": {"base_ms": 500, "per_row_us": 40, "jitter_sigma": 0.3},
    "quotas": {"site_qpm": 1200, "user_qpm": 1200},
    "properties": [{"site_url": LARGE, "page_query_rows_per_day": 60_000, "pages": 6_000,
                    "search_types": ["web"]}],
}  # fmt: skip

# What the step's process does: the imports a run worker needs for the path, then one step.
_CHILD = """
import datetime as dt, json, resource, sys, threading, time
import ctypes, os
import pyarrow as pa
from gsc_pipeline.gsc import GscClient
from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.sync import sync_days, days as days_module, writer as writer_module
from gsc_pipeline.warehouse import open_warehouse

def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
if os.environ.get("MEASURE_JEMALLOC_DECAY_MS"):  # jemalloc's purge delay, for the A/B
    pa.jemalloc_set_decay_ms(int(os.environ["MEASURE_JEMALLOC_DECAY_MS"]))
if os.environ.get("MEASURE_DEFAULT_MMAP_THRESHOLD"):  # glibc's dynamic threshold, for the A/B
    writer_module.map_large_blocks = lambda: None
if os.environ.get("MEASURE_MMAP_THRESHOLD"):  # another fixed threshold (bytes), for the A/B
    writer_module.MMAP_THRESHOLD_BYTES = int(os.environ["MEASURE_MMAP_THRESHOLD"])
if os.environ.get("MEASURE_DUCKDB_CONFIG"):  # DuckDB settings (JSON), for the A/B
    from gsc_pipeline.warehouse import duckdb as duckdb_module
    duckdb_module.CONNECT_CONFIG.update(json.loads(os.environ["MEASURE_DUCKDB_CONFIG"]))
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
def glibc_mb():
    info = libc.mallinfo2()
    return (info.arena + info.hblkhd) / 2**20, (info.uordblks + info.hblkhd) / 2**20

# Days fetched and not yet committed (waiting for the writer or in its transaction).
held = {"now": 0, "max": 0}
held_lock = threading.Lock()
fetch_day = days_module.fetch_day
def counted_fetch_day(*args, **kwargs):
    result = fetch_day(*args, **kwargs)
    with held_lock:
        held["now"] += 1
        held["max"] = max(held["max"], held["now"])
    return result
days_module.fetch_day = counted_fetch_day
write = writer_module.GroupWriter._write
def counted_write(self, group):
    n = len(group)
    try:
        return write(self, group)
    finally:
        with held_lock:
            held["now"] -= n
writer_module.GroupWriter._write = counted_write

samples = {"rss": 0.0, "arrow_at_rss": 0.0, "held_at_rss": 0, "arrow": 0.0,
           "glibc_at_rss": 0.0, "glibc_used_at_rss": 0.0}
done = threading.Event()
def sample():
    while not done.wait(0.02):
        rss, arrow = rss_mb(), pa.total_allocated_bytes() / 2**20
        samples["arrow"] = max(samples["arrow"], arrow)
        if rss > samples["rss"]:
            glibc, used = glibc_mb()
            samples.update(rss=rss, arrow_at_rss=arrow, held_at_rss=held["now"],
                           glibc_at_rss=glibc, glibc_used_at_rss=used)
threading.Thread(target=sample, daemon=True).start()

endpoint, warehouse_url, site, days, concurrency, memory_mb, discard = sys.argv[1:8]
imports = rss_mb()
glibc_used_at_imports = glibc_mb()[1]
warehouse = open_warehouse(warehouse_url)
if discard == "discard":  # what the step holds without the warehouse's own memory
    type(warehouse).write_partitions = lambda self, batches: None
day_list = [dt.date(2026, 6, 25) - dt.timedelta(days=i) for i in range(int(days))]
client = GscClient(endpoint, qpm_budget=9600.0)
cpu0, wall0 = time.process_time(), time.perf_counter()
results = sync_days(
    client, warehouse, site, PAGE_QUERY,
    day_list, run_id="memory", concurrency=int(concurrency),
    memory_cap_bytes=int(memory_mb) << 20 if int(memory_mb) else None,
)
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
done.set()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
calls = client.stats.snapshot()["api_calls"]
print(json.dumps({"imports_mb": imports, "peak_mb": peak, "end_mb": rss_mb(),
                  "glibc_at_end": glibc_mb(),
                  "glibc_used_at_imports": glibc_used_at_imports,
                  "rows": sum(r.rows for r in results), "wall_s": wall, "cpu_s": cpu,
                  "api_calls": calls, "held_max": held["max"], **samples}))
"""


def _postgres_schema(url: str) -> tuple[str, str]:
    import psycopg2

    schema = f"gsc_memory_{uuid.uuid4().hex[:12]}"
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    return schema, f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", choices=["duckdb", "postgres"], default="duckdb")
    parser.add_argument("--days", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=DEFAULT_STEP_MEMORY_MB,
        help="the step's memory cap (`step_memory_mb`); 0: none, the days cap alone",
    )
    parser.add_argument(
        "--discard-writes",
        action="store_true",
        help="the warehouse writes nothing: the step's memory without the warehouse's own",
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, emulator_process(CONFIG) as endpoint:
        schema = None
        if args.warehouse == "duckdb":
            url = f"duckdb:///{Path(tmp) / 'warehouse.duckdb'}"
        else:
            schema, url = _postgres_schema(args.postgres_url)
        try:
            out = subprocess.run(  # noqa: PLW1510 - check=True below
                [sys.executable, "-c", _CHILD, endpoint, url, LARGE, str(args.days),
                 str(args.concurrency), str(args.memory_mb),
                 "discard" if args.discard_writes else "write"],
                capture_output=True, text=True, timeout=600, check=True,
            )  # fmt: skip
        finally:
            if schema is not None:
                import psycopg2

                conn = psycopg2.connect(args.postgres_url)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"DROP SCHEMA {schema} CASCADE")
                conn.close()
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    growth = figures["peak_mb"] - figures["imports_mb"]
    print(
        f"{args.warehouse}: {figures['rows']:,} rows in {args.days} days, "
        f"{args.concurrency} days / {args.memory_mb or 'no'} MB cap: imports "
        f"{figures['imports_mb']:.0f} MB, peak "
        f"{figures['peak_mb']:.0f} MB (+{growth:.0f} MB), after the step "
        f"{figures['end_mb']:.0f} MB (glibc malloc {figures['glibc_at_end'][0]:.0f}, "
        f"in use {figures['glibc_at_end'][1]:.0f})"
    )
    rows = figures["rows"] or 1
    print(
        f"  at the sampled peak ({figures['rss']:.0f} MB): Arrow {figures['arrow_at_rss']:.0f} MB,"
        f" glibc malloc {figures['glibc_at_rss']:.0f} MB"
        f" ({figures['glibc_used_at_rss']:.0f} in use; "
        f"{figures['glibc_used_at_imports']:.0f} after the imports),"
        f" {figures['held_at_rss']} fetched day(s) not yet committed; max Arrow "
        f"{figures['arrow']:.0f} MB, max days held {figures['held_max']}; "
        f"{figures['api_calls']} requests in {figures['wall_s']:.1f} s "
        f"({figures['api_calls'] * 60 / figures['wall_s']:.0f}/min of 9,600), "
        f"CPU {figures['cpu_s']:.1f} s ({figures['cpu_s'] * 1e6 / rows:.2f} us/row)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
