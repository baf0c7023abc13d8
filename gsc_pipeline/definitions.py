"""The code location: this dg project's defs folder (the demo's gsc/defs.yaml).

`GSC_PIPELINE_CONFIG`, when set, names the one declaration to load instead (a config file or a
defs.yaml), as before the defs folder existed: deployments configured that way keep working.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg
from dagster.components.core.component_tree import ComponentTree

import gsc_pipeline.defs
from gsc_pipeline.component import build_definitions
from gsc_pipeline.config import CONFIG_ENV, load_config
from gsc_pipeline.instance.run_start import fork_runs_from_warm_server

__all__ = ["build_definitions", "defs", "load_definitions"]

# dg imports every module of the defs folder looking for definitions (ours define none at module
# level: they are the component's wiring) through a loader Dagster marks "preview"; once per
# module that warning would fill every `dg` and `dagster dev` output.
warnings.filterwarnings(
    "ignore", message=r"Function `load_definitions_from_module", category=dg.PreviewWarning
)


def load_definitions() -> dg.Definitions:
    if os.environ.get(CONFIG_ENV):
        return build_definitions(load_config())
    # From the package, not pyproject's [tool.dg]: an installed (non-editable) copy loads too.
    return ComponentTree.from_module(
        defs_module=gsc_pipeline.defs, project_root=Path(__file__).parents[1]
    ).build_defs()


defs = load_definitions()
# In a code server: its runs start as forks of one warm process (gsc_pipeline.instance.run_start).
fork_runs_from_warm_server()
