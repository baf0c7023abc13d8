"""CPU per row of parsing one searchAnalytics.query page, by parser, on a page the emulator served.

    .venv/bin/python scripts/measure_parse.py [--rounds 15] [--mmap-threshold]

Starts the emulator (the bench's large property, 60,000 page x query rows a day), fetches one
full 25,000-row page over HTTP, compact and pretty-printed as Google sends it, and times each
parser on the same bytes, alternating, `--rounds` times (process CPU, every thread; the best and
the median are printed):
- `arrow (pipeline)`: `gsc_pipeline.gsc.client.parse_rows_page`, the pipeline's parser
  (pyarrow's C++ JSON reader with the response's schema);
- `polars`: polars' JSON reader with the same schema, cast to Arrow (when polars is installed);
- `arrow NDJSON`: the `rows` array cut out of the compact body and split into one line per row
  (at `},{"keys":`, which only a row boundary holds), read by Arrow's line-delimited reader
  (stop 41: slower; compact bodies only);
- `orjson`: orjson to Python dicts, without even building Arrow columns.
Each result is checked to hold the same rows as the pipeline's. `--mmap-threshold` first fixes
glibc's mmap threshold at 64 KB, as a fetching step does (`sync.writer.map_large_blocks`).
"""

from __future__ import annotations

# First: the package sets Arrow's memory pool (its configured jemalloc) before pyarrow loads, as
# in the pipeline's processes; imported after pyarrow, Arrow would parse into mimalloc.
import gsc_pipeline  # noqa: F401

# isort: split
import argparse
import datetime as dt
import importlib.util
import io
import statistics
import time
from urllib.parse import quote

import orjson
import pyarrow as pa
import pyarrow.json as pajson

from gsc_pipeline.emulator.testing import emulator_process
from gsc_pipeline.gsc.client import SEARCH_ROW_TYPE, parse_rows_page
from gsc_pipeline.reports import PAGE_QUERY
from gsc_pipeline.sync.pages import page_from_rows
from gsc_pipeline.sync.writer import map_large_blocks
from gsc_pipeline.tools.bench.floor import _RawApi
from gsc_pipeline.warehouse.base import report_schema

LARGE = "sc-domain:large.example"
CONFIG = {
    "today": "2026-06-30",
    "time_scale": 100.0,
    "properties": [{"site_url": LARGE, "page_query_rows_per_day": 60_000, "pages": 6_000,
                    "search_types": ["web"]}],
}  # fmt: skip
ROW_LIMIT = 25_000


def polars_rows(content: bytes) -> pa.StructArray:
    import polars as pl

    row = pl.Struct(
        {"keys": pl.List(pl.String)}
        | {name: pl.Float64 for name in ("clicks", "impressions", "ctr", "position")}
    )
    schema = {"rows": pl.List(row), "metadata": pl.Struct({"firstIncompleteDate": pl.String})}
    table = pl.read_json(io.BytesIO(content), schema=schema).to_arrow()
    return table.column("rows").combine_chunks().flatten().cast(SEARCH_ROW_TYPE)


def ndjson_rows(content: bytes) -> pa.StructArray:
    start = content.index(b'"rows":[') + len(b'"rows":[')
    lines = content[start : content.rindex(b"]")].replace(b'},{"keys":', b'}\n{"keys":')
    table = pajson.read_json(
        io.BytesIO(lines),
        read_options=pajson.ReadOptions(use_threads=False, block_size=len(lines) + 1),
        parse_options=pajson.ParseOptions(
            explicit_schema=pa.schema(list(SEARCH_ROW_TYPE)), unexpected_field_behavior="ignore"
        ),
    )
    return pa.StructArray.from_arrays(
        [table.column(f.name).combine_chunks() for f in SEARCH_ROW_TYPE],
        fields=list(SEARCH_ROW_TYPE),
    )


def orjson_rows(content: bytes) -> list[dict]:
    return orjson.loads(content)["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--mmap-threshold", action="store_true")
    args = parser.parse_args()
    if args.mmap_threshold:
        map_large_blocks()
    with emulator_process(CONFIG) as endpoint:
        body = {"startDate": "2026-06-01", "endDate": "2026-06-01",
                "dimensions": ["date", "page", "query"], "type": "web",
                "rowLimit": ROW_LIMIT, "startRow": 0, "dataState": "final"}  # fmt: skip
        compact = _RawApi(endpoint).query(LARGE, body)
    pretty = orjson.dumps(orjson.loads(compact), option=orjson.OPT_INDENT_2)
    expected = parse_rows_page(compact).rows
    assert len(expected) == ROW_LIMIT, f"a full page was expected, got {len(expected)} rows"
    parsers = {"arrow (pipeline)": lambda c: parse_rows_page(c).rows}
    if importlib.util.find_spec("polars") is not None:
        parsers["polars"] = polars_rows
    else:
        print("polars is not installed: `pip install polars==2.1.0` to compare it too")
    parsers["orjson to dicts"] = orjson_rows
    for label, content in (("compact", compact), ("pretty-printed", pretty)):
        if label == "compact":
            parsers["arrow NDJSON"] = ndjson_rows
        else:
            parsers.pop("arrow NDJSON")
        for name, parse in parsers.items():
            if name != "orjson to dicts":
                assert parse(content).equals(expected), f"{label}: {name} disagrees"
        times: dict[str, list[float]] = {name: [] for name in parsers}
        for _ in range(args.rounds):
            for name, parse in parsers.items():
                start = time.process_time()
                parse(content)
                times[name].append(time.process_time() - start)
        print(f"{label} page: {ROW_LIMIT:,} rows, {len(content):,} bytes ({quote(LARGE)})")
        for name, seconds in times.items():
            best = min(seconds) / ROW_LIMIT * 1e6
            median = statistics.median(seconds) / ROW_LIMIT * 1e6
            print(f"  {name:<18} best {best:.2f} µs/row, median {median:.2f} µs/row")
    # What the page costs held in memory as the pipeline holds it, and with plain columns.
    day = dt.date(2026, 6, 1)
    held = page_from_rows(PAGE_QUERY, LARGE, "web", day, expected)
    plain = held.cast(report_schema(PAGE_QUERY))
    print(
        f"held as rows: {held.nbytes / ROW_LIMIT:.1f} bytes a row (site, search type and day "
        f"dictionary-encoded, `batch_schema`); {plain.nbytes / ROW_LIMIT:.1f} as plain columns"
    )


if __name__ == "__main__":
    main()
