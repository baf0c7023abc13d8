"""Setting up a Dagster instance for gsc_pipeline: dagster.yaml plus explicit pool limits."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from gsc_pipeline.config import PipelineConfig

_TEMPLATES = Path(__file__).parent
WORKSPACE_YAML = """load_from:
  - python_module:
      module_name: gsc_pipeline.definitions
      location_name: gsc_pipeline
"""


def write_instance_config(home: Path, *, postgres: bool = False) -> Path:
    """Write dagster.yaml (local storage, or PostgreSQL via $DAGSTER_POSTGRES_URL) into `home`."""
    home.mkdir(parents=True, exist_ok=True)
    template = "dagster-postgres.yaml" if postgres else "dagster.yaml"
    target = home / "dagster.yaml"
    shutil.copyfile(_TEMPLATES / template, target)
    (home / "workspace.yaml").write_text(WORKSPACE_YAML)
    return target


def set_pool_limits(
    instance: dg.DagsterInstance, config: PipelineConfig, limit: int | None = None
) -> dict[str, int]:
    """Set each credential's pool limit in the instance DB (what `dagster instance concurrency
    set` does). A pool without a limit is unlimited, so this is part of setup, not optional."""
    limits = {}
    for name, credential in config.credentials.items():
        pool = config.pools[name]
        limits[pool] = limit or credential.pool_limit
        instance.event_log_storage.set_concurrency_slots(pool, limits[pool])
    return limits


def init_instance(
    home: Path, config: PipelineConfig, *, postgres: bool = False, pool_limit: int | None = None
) -> dict[str, int]:
    write_instance_config(home, postgres=postgres)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return set_pool_limits(instance, config, pool_limit)
