"""Where DuckDB's writer process spends its CPU, from a recording of what it ran.

Record a backfill's writer (every statement, insert, commit and detach, with the thread CPU
each took, and every insert's rows; `gsc_pipeline.warehouse.duckdb_server._Recording`):

    GSC_DUCKDB_WRITER_RECORD=/tmp/rec .venv/bin/python scripts/profile_run_worker.py \
        --days 120 --time-scale 1 --warehouse duckdb

then

    .venv/bin/python scripts/measure_duckdb_writer.py /tmp/rec [--rounds 2]
        [--variant NAME=SETTING,...]... [--top 12]

prints the recorded CPU by kind of work (commits, inserts by table, detaches, each statement by
its first words), then replays the same work, in the order it ran (the writer runs one
transaction at a time on a file: a transaction is placed where it ended), in this process:
DuckDB inline on a fresh file, as the writer runs it (`DuckDBWarehouse`, the file kept attached
and detached where the recording detached it). Each round replays the default first, then
each `--variant`: `checkpoint_threshold=16MB` (any setting of DuckDB's connect config, over
the writer's own), `detach=none` (the file detached only at the end) or `row_group_size=32768`
(the file attached with that row group size; DuckDB's is 122,880). Process CPU, its largest
parts and the file's size per replay. A measurement, not a test (docs/bench/README.md, stop 46).
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from gsc_pipeline.warehouse import duckdb as duckdb_module


def _load(directory: Path) -> list[tuple]:
    events = []
    with open(directory / "events.pickle", "rb") as source:
        while True:
            try:
                events.append(pickle.load(source))
            except EOFError:
                return events


def _serialized(events: list[tuple]) -> list[tuple]:
    """Each transaction's events together, placed where it ended; detaches where they ran.

    A transaction's "begin" is recorded before it waits for the file's lock, so transactions of
    different clients interleave in the recording; under the lock they ran one at a time. A
    transaction's end is recorded once done, after the detach it may have run (the file held
    `HOLD_SECONDS`): that detach is replayed after it.
    """
    units: list[tuple[int, list[tuple]]] = []
    open_: dict[int, list[tuple]] = {}
    ending: dict[int, list[tuple]] = {}  # detaches a transaction's end ran, before its record
    for index, event in enumerate(events):
        thread, kind = event[0], event[1]
        if kind == "begin":
            open_[thread] = [event]
        elif thread not in open_:  # a detach outside any transaction (the linger thread's)
            units.append((index, [event]))
        elif kind == "detach":
            ending.setdefault(thread, []).append(event)
        else:
            open_[thread].append(event)
            if kind in ("commit", "rollback"):
                units.append((index, open_.pop(thread) + ending.pop(thread, [])))
    units.sort(key=lambda unit: unit[0])
    return [event for _, unit in units for event in unit]


def _kind(event: tuple) -> str:
    kind, args = event[1], event[2]
    if kind == "execute":
        return "execute " + " ".join(str(args[0]).split())[:60]
    if kind == "insert":
        return f"insert {args[0]}"
    return kind


def _summary(title: str, parts: dict[str, list], total: float, rows: int, top: int) -> None:
    print(f"{title}: {total:.2f} CPU s, {total / max(1, rows) * 1e6:.2f} µs per row inserted")
    for kind, (count, seconds) in sorted(parts.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {seconds:7.2f} s {count:5d}x {seconds / count * 1000:7.1f} ms  {kind}")


class _Rollback(Exception):
    pass


# The writer's own connect config: a variant's settings go over it.
_BASE_CONFIG = dict(duckdb_module.CONNECT_CONFIG)


def _replay(events: list[tuple], tables: dict[str, pa.Table], variant: dict[str, str]) -> tuple:
    config = {k: v for k, v in variant.items() if k not in ("detach", "row_group_size")}
    duckdb_module.CONNECT_CONFIG.clear()
    duckdb_module.CONNECT_CONFIG.update(_BASE_CONFIG, **config)
    size = variant.get("row_group_size")
    duckdb_module._ATTACH_OPTIONS = f" (ROW_GROUP_SIZE {int(size)})" if size else ""
    detach = variant.get("detach") != "none"
    with tempfile.TemporaryDirectory(prefix="gsc-writer-replay-") as tmp:
        path = str(Path(tmp) / "warehouse.duckdb")
        # Kept attached until the recording detaches it (no linger or hold of its own).
        warehouse = duckdb_module.DuckDBWarehouse(path, writer="inline", linger_seconds=1e6)
        parts: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
        transaction = db = None
        began = time.process_time()
        for event in events:
            kind, args = event[1], event[2]
            started = time.process_time()
            if kind == "begin":
                transaction = warehouse.transaction()
                db = transaction.__enter__()
            elif kind == "execute":
                cursor = db.execute(*args)
                if cursor.description is not None:
                    cursor.fetchall()
            elif kind == "read_sql":
                db.read_sql(*args)
            elif kind == "insert":
                db.insert_arrow(args[0], tables[args[1]])
            elif kind == "commit":
                transaction.__exit__(None, None, None)
            elif kind == "rollback":
                transaction.__exit__(_Rollback, _Rollback(), None)
            elif kind == "detach" and detach:
                duckdb_module.release_file(path)
            part = parts[_kind(event)]
            part[0] += 1
            part[1] += time.process_time() - started
        duckdb_module.release_file(path)
        total = time.process_time() - began
        warehouse.close()
        return total, parts, os.path.getsize(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--variant", action="append", default=[],
        help="NAME=VALUE[,NAME=VALUE]: DuckDB settings, detach=none or row_group_size=N",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    duckdb_module.HOLD_SECONDS = 1e9  # the recording says when the file was detached
    events = _serialized(_load(args.recording))
    tables = {}
    for event in events:
        if event[1] == "insert":
            with pa.memory_map(event[2][1]) as source:
                tables[event[2][1]] = pa.ipc.open_stream(source).read_all()
    rows = sum(table.num_rows for table in tables.values())
    recorded: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
    for event in events:
        recorded[_kind(event)][0] += 1
        recorded[_kind(event)][1] += event[3]
    transactions = sum(1 for e in events if e[1] == "begin")
    print(f"{len(events):,} events: {transactions} transactions, {len(tables)} inserts, "
          f"{rows:,} rows")  # fmt: skip
    _summary("recorded in the writer process (thread CPU of each piece of work)", recorded,
             sum(e[3] for e in events), rows, args.top)  # fmt: skip
    variants = [("default", {})] + [
        (text, dict(item.split("=", 1) for item in text.split(","))) for text in args.variant
    ]
    for round_ in range(1, args.rounds + 1):
        for name, variant in variants:
            total, parts, size = _replay(events, tables, variant)
            _summary(f"round {round_}, replayed inline, {name} (file {size / 1e6:.0f} MB)",
                     parts, total, rows, min(args.top, 6))  # fmt: skip


if __name__ == "__main__":
    main()
