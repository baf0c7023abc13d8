"""What the run fork server imports once (`gsc_pipeline.instance.run_start`): every run forked
from it starts with these loaded.

Imported only by that server. An error here is logged, not raised: the server would die and
take every run launch with it, while the run that imports the same module again reports the
error where the user sees it.
"""

import gc
import logging

try:
    # The run's entry point (start_run_in_subprocess), and what every run imports after it: its
    # instance, compute-log manager and executor (found by listing a run's new modules).
    import dagster._core.execution.plan.active  # noqa: F401
    import dagster._core.executor.in_process  # noqa: F401
    import dagster._core.instance.factory  # noqa: F401
    import dagster._core.secrets.env_file  # noqa: F401
    import dagster._core.storage.local_compute_log_manager  # noqa: F401
    import dagster._grpc.impl  # noqa: F401
    import googleapiclient.discovery_cache  # noqa: F401

    import gsc_pipeline.definitions  # noqa: F401
    import gsc_pipeline.instance.storage  # noqa: F401
except Exception:
    logging.getLogger(__name__).exception("the run fork server could not preload the code")

# The imports' objects go to the collector's permanent generation: a forked run neither scans
# them in its collections nor copies their pages by touching their headers.
gc.freeze()
