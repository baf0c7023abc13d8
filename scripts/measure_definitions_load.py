"""Time building the Definitions, the repository and its snapshot for N generated properties.

    .venv/bin/python scripts/measure_definitions_load.py 30 100 300

What `docs/bench/README.md` quotes as the definitions load "before" (commit 707bc2e, one
whole-history check op per asset) and "after"; `gsc-pipeline bench --size agency` measures the
same in a fresh process.
"""

from __future__ import annotations

import sys
import time

from dagster._core.remote_representation.external_data import RepositorySnap

from gsc_pipeline.config import parse_config
from gsc_pipeline.definitions import build_definitions


def main(sizes: list[int]) -> None:
    for n in sizes:
        config = parse_config({
            "start_date": "2025-03-01",
            "credentials": {"default": {"kind": "none"}},
            "properties": [{"site_url": f"sc-domain:p{i}.example"} for i in range(n)],
        })  # fmt: skip
        t0 = time.perf_counter()
        defs = build_definitions(config)
        t1 = time.perf_counter()
        repo = defs.get_repository_def()
        t2 = time.perf_counter()
        RepositorySnap.from_def(repo)
        t3 = time.perf_counter()
        print(f"{n} properties: Definitions {t1 - t0:.2f} s, repository {t2 - t1:.2f} s, "
              f"snapshot {t3 - t2:.2f} s, total {t3 - t0:.2f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [30, 100, 300])
