"""What the run fork server imports once (`gsc_pipeline.instance.run_start`): every run forked
from it starts with these loaded.

Imported only by that server. An error here is logged, not raised: the server would die and
take every run launch with it, while the run that imports the same module again reports the
error where the user sees it.
"""

import gc
import logging

try:
    import dagster._grpc.impl  # noqa: F401  (the run's entry point: start_run_in_subprocess)

    import gsc_pipeline.definitions  # noqa: F401
    import gsc_pipeline.instance.storage  # noqa: F401
except Exception:
    logging.getLogger(__name__).exception("the run fork server could not preload the code")

# The imports' objects go to the collector's permanent generation: a forked run neither scans
# them in its collections nor copies their pages by touching their headers.
gc.freeze()
