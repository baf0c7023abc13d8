"""gsc_pipeline: a complete, verified copy of Google Search Console search analytics."""

import os
import sys
from typing import Any

# Arrow's memory pool, set before pyarrow allocates (users may set either variable themselves).
# Arrow's default (mimalloc) keeps freed memory per thread: with several days of 25,000-row pages
# parsed on fetch threads, run processes sat ~150 MB above what they used (stop 25). The system
# allocator returned it, but with glibc mapping blocks from 64 KB up (`sync.writer`) every
# page's parse buffers, takes and group-bys were fresh mappings: 1.2 million page faults in a
# 30-day PostgreSQL run, a third of its CPU in the kernel. Arrow's bundled jemalloc (pyarrow's
# Linux wheels have it) with one arena and no thread caches reuses freed pages on any thread
# and hands them back within 0.3 s: 0.67 million faults, the run 13.6 -> 11.5 and 15.1 -> 12.4
# CPU s, its peak RSS 260 -> 248 and 267 -> 258 MB (docs/bench/README.md, issue 14 stop 34;
# within 0.1 s the same RSS and more CPU). jemalloc's defaults (an arena per core, thread
# caches) held 70-90 MB more (stop 25).
os.environ.setdefault(
    "ARROW_DEFAULT_MEMORY_POOL", "jemalloc" if sys.platform == "linux" else "system"
)
# jemalloc's options (its MALLOC_CONF under the prefix pyarrow builds it with), read when it
# first allocates.
_JEMALLOC_OPTIONS = "narenas:1,tcache:false,dirty_decay_ms:300,muzzy_decay_ms:0"
os.environ.setdefault("JE_ARROW_MALLOC_CONF", _JEMALLOC_OPTIONS)
# DuckDB's Linux wheels link a jemalloc of their own (read under the DUCKDB_JE_ prefix), which
# DuckDB sets up with an arena per thread, thread caches and a 1 s decay. With the same options
# as Arrow's, a 30-day DuckDB run peaked at 345-364 MB against 365-383, for the same CPU
# (9.4-10.5 s against 9.3-10.1; docs/bench/README.md, issue 14 stop 35).
os.environ.setdefault("DUCKDB_JE_MALLOC_CONF", _JEMALLOC_OPTIONS)

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
