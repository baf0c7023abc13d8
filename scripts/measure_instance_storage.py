"""CPU per instance query and per stored asset event: Dagster's SQLite storages vs the local
instance's pooled ones (gsc_pipeline/instance/storage.py).

    .venv/bin/python scripts/measure_instance_storage.py stock pooled stock pooled

Each argument is one fresh instance made by `write_instance_config`; "stock" drops its
`instance_class` section (Dagster's own SQLite storage). 200 `get_runs(limit=1)` (what the
daemon's run queue and monitoring ask, many times a second) and 100 runless asset
materializations (a run's asset event: the run's database and the index), CPU of this process.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import yaml

from gsc_pipeline.instance import write_instance_config


def measure(kind: str) -> str:
    home = Path(tempfile.mkdtemp(prefix="gsc-storage-"))
    try:
        write_instance_config(home, workspace=False)
        if kind == "stock":
            settings = yaml.safe_load((home / "dagster.yaml").read_text())
            settings.pop("instance_class")
            (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)
            c0 = time.process_time()
            for _ in range(200):
                instance.get_runs(limit=1)
            c1 = time.process_time()
            for day in range(100):
                event = dg.AssetMaterialization("a", partition=str(day))
                instance.report_runless_asset_event(event)
            c2 = time.process_time()
            return (f"{kind:6} {type(instance.run_storage).__name__:24} get_runs "
                    f"{1e3 * (c1 - c0) / 200:.2f} ms CPU, asset event "
                    f"{1e3 * (c2 - c1) / 100:.2f} ms CPU")  # fmt: skip
    finally:
        shutil.rmtree(home)


if __name__ == "__main__":
    for kind in sys.argv[1:] or ["stock", "pooled"]:
        print(measure(kind), flush=True)
