"""The bench's path slice report by report, and the reference path beside it, in one process.

    .venv/bin/python scripts/measure_sync_costs.py [--warehouse duckdb|postgres] [--rounds 3]
        [--by-report]

Each round, into a fresh warehouse: `sync_days` over the standard scenario's first days of every
property and report, one after another, as the bench's path slice runs them
(`tools.bench.run.sync_slice`), then the reference path (`tools.bench.floor.reference_path`) on
the same days. Prints each round's path and reference µs/row and their ratio, the ratio being
what to compare across code versions on a shared machine (both move with its speed). With
`--by-report`, each (property, report)'s rows, API calls, CPU and the share of it spent in
DuckDB's writer process: small reports show a sync's fixed cost (its transactions and calls);
the writer then detaches the file after each report, which the bench's slice does once.
For an A/B, run it in a worktree of the other commit: `cd <worktree>` and
`PYTHONPATH=<worktree>`. Both: the processes it starts (DuckDB's writer) run `python -m`, which
puts the current directory ahead of `PYTHONPATH` (docs/bench/README.md, stop 40).
A measurement, not a test (docs/bench/README.md, stop 39).
"""

from __future__ import annotations

import argparse

from gsc_pipeline.gsc.client import GscClient
from gsc_pipeline.sync import sync_days
from gsc_pipeline.sync.fetch import Probes
from gsc_pipeline.tools.bench.command import standard_rounds
from gsc_pipeline.tools.bench.floor import cpu_seconds, reference_path
from gsc_pipeline.tools.bench.scenario import SCENARIOS
from gsc_pipeline.warehouse import open_warehouse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", choices=["duckdb", "postgres"], default="duckdb")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--by-report", action="store_true")
    args = parser.parse_args()
    scenario = SCENARIOS["standard"]
    days = scenario.day_list[: scenario.sequential_days]
    rounds = standard_rounds(args.warehouse, args.rounds, "gsc-sync-costs-")
    for round_no, (files, endpoint, url) in enumerate(rounds):
        config, credential = files.config, files.config.credentials["default"]
        client = GscClient(endpoint, None, qpm_budget=credential.qpm_budget)
        warehouse = open_warehouse(url)
        warehouse.ensure_schema([r for p in config.properties for r in p.report_objects()])
        cpu0, rows = cpu_seconds(warehouse), 0
        for prop in config.properties:
            probes = Probes()  # as the bench's slice: a property's reports share their probe
            for report in prop.report_objects():
                calls0 = client.stats.api_calls
                # Measured per report only with --by-report: reading the CPU lets DuckDB's
                # writer detach the file (`cpu_seconds`), as the bench's slice does once, at its
                # end.
                if args.by_report:
                    helper0, start = warehouse.helper_cpu_seconds(), cpu_seconds(warehouse)
                stored = sum(
                    result.rows
                    for result in sync_days(
                        client, warehouse, prop.site_url, report, days, run_id="sync-costs",
                        concurrency=credential.step_concurrency,
                        memory_cap_bytes=credential.step_memory_mb << 20, probes=probes,
                    )
                )  # fmt: skip
                rows += stored
                if args.by_report:
                    cpu = cpu_seconds(warehouse) - start
                    helper = warehouse.helper_cpu_seconds() - helper0
                    print(
                        f"  {prop.site_url:26s} {report.name:11s} {stored:8,} rows "
                        f"{client.stats.api_calls - calls0:3d} calls {cpu * 1000:6.1f} ms CPU "
                        f"({helper * 1000:5.1f} in the writer process), "
                        f"{cpu / max(1, stored) * 1e6:8.2f} µs/row"
                    )
        path_us = (cpu_seconds(warehouse) - cpu0) / rows * 1e6
        ref = reference_path(config, endpoint, url, days)
        print(
            f"round {round_no + 1}: path {path_us:.2f} µs/row ({rows:,} rows), reference "
            f"{ref.cpu_us_per_row:.2f} µs/row ({ref.rows:,} rows), path ÷ reference "
            f"{path_us / ref.cpu_us_per_row:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
