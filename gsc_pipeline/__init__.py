"""gsc_pipeline: a complete, verified copy of Google Search Console search analytics."""

import os

# Arrow's default allocator keeps freed memory per thread; with several days of 25,000-row pages
# parsed on fetch threads that held run processes ~150 MB above what they use (measured by the
# benchmark). The system allocator returns it. Set before pyarrow allocates; users may override.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
