"""What the run fork server imports once (`gsc_pipeline.instance.run_start`): every run forked
from it starts with these loaded.

Imported only by that server. An error here is logged, not raised: the server would die and
take every run launch with it, while the run that imports the same module again reports the
error where the user sees it.
"""

import gc
import importlib
import logging

# The run's entry point (start_run_in_subprocess), and what every run imports after it: its
# instance, compute-log manager and executor (found by listing a run's new modules), then the
# definitions and the instance's storages. Each on its own: a module that a later Dagster moved
# costs its runs that import only.
PRELOAD = (
    "dagster._grpc.impl",
    "dagster._core.execution.plan.active",
    "dagster._core.executor.in_process",
    "dagster._core.instance.factory",
    "dagster._core.secrets.env_file",
    "dagster._core.storage.local_compute_log_manager",
    "googleapiclient.discovery_cache",
    "gsc_pipeline.definitions",
    "gsc_pipeline.instance.storage",
)

for _name in PRELOAD:
    try:
        importlib.import_module(_name)
    except Exception:
        logging.getLogger(__name__).exception("the run fork server could not preload %s", _name)

# The imports' objects go to the collector's permanent generation: a forked run neither scans
# them in its collections nor copies their pages by touching their headers.
gc.freeze()
