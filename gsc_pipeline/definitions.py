"""The Definitions object, built from the config file ($GSC_PIPELINE_CONFIG or the demo's)."""

from __future__ import annotations

import warnings

import dagster as dg

from gsc_pipeline.config import PipelineConfig, load_config
from gsc_pipeline.defs.assets import build_fetch_assets
from gsc_pipeline.defs.resources import gsc_resource, gsc_resource_key, warehouse_resource


# BackfillPolicy is "beta" in 1.13 yet it is what batches days per run; say so once, not per asset.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(config: PipelineConfig) -> dg.Definitions:
    resources: dict[str, object] = {
        gsc_resource_key(name): gsc_resource(cred) for name, cred in config.credentials.items()
    }
    resources["warehouse"] = warehouse_resource()
    return dg.Definitions(
        assets=build_fetch_assets(config),
        resources=resources,
        # Steps of one run execute one after another in the run's process: a multiprocess
        # executor would pay a process start per step, and parallelism comes from runs anyway.
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_config())
