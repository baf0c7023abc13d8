"""The local UI's short backfill tick: imported by every Python process `gsc-pipeline ui` starts.

Dagster 1.13's daemon sleeps a fixed 30 s between backfill iterations (a module constant,
`dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS`, with no instance setting), so a
3-day backfill launched from the UI waited ~50 s for ~3 s of work. `gsc-pipeline ui` and the
demo's daemon put this folder on PYTHONPATH with GSC_BACKFILL_TICK_SECONDS set, and the constant
is replaced right after Dagster defines it. Production daemons never see this file: they keep 30 s.
"""

import importlib.abc
import importlib.util
import os
import sys
from types import ModuleType

_TICK = os.environ.get("GSC_BACKFILL_TICK_SECONDS")
_MODULE = "dagster._daemon.controller"


class _ShortBackfillTick(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        define = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            define(module)
            module.DEFAULT_DAEMON_INTERVAL_SECONDS = int(_TICK or 30)

        spec.loader.exec_module = exec_module
        return spec


if _TICK:
    sys.meta_path.insert(0, _ShortBackfillTick())
