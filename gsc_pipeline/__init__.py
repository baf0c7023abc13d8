"""gsc_pipeline: a complete, verified copy of Google Search Console search analytics."""

import os
from typing import Any

# Arrow's default allocator keeps freed memory per thread; with several days of 25,000-row pages
# parsed on fetch threads that held run processes ~150 MB above what they use (measured by the
# benchmark). The system allocator returns it. Set before pyarrow allocates; users may override.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# `gsc_pipeline.GscComponent` for dg (the dagster_dg_cli.registry_modules entry point names this
# package), imported on first use so `gsc-pipeline emulator` and the domain layers stay free of
# Dagster.
__all__ = ["GscComponent"]


def __getattr__(name: str) -> Any:
    if name == "GscComponent":
        from gsc_pipeline.component import GscComponent

        return GscComponent
    raise AttributeError(f"module 'gsc_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    # dg discovers components with dir(module): list the lazy one too.
    return sorted([*globals(), *__all__])
