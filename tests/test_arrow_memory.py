"""Arrow's memory pool and DuckDB's jemalloc as `gsc_pipeline/__init__.py` sets them, in fresh
processes (the pool is chosen when pyarrow first allocates, jemalloc's options when it first
allocates)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os
import gsc_pipeline
import pyarrow as pa
buffer = pa.allocate_buffer(1 << 20)
print(json.dumps({"pool": pa.default_memory_pool().backend_name,
                  "conf": os.environ.get("JE_ARROW_MALLOC_CONF")}))
"""


ALLOCATOR_VARIABLES = ("ARROW_DEFAULT_MEMORY_POOL", "JE_ARROW_MALLOC_CONF", "DUCKDB_JE_MALLOC_CONF")


def _fresh_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`code` in a new interpreter whose allocator variables are only `env`'s."""
    clean = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_VARIABLES}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip


def _probe(**env: str) -> tuple[dict[str, str], str]:
    """What a fresh process importing gsc_pipeline allocates from, and its stderr."""
    out = _fresh_python(PROBE, **env)
    assert "Unsupported backend" not in out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="pyarrow bundles jemalloc on Linux")
def test_arrow_allocates_from_jemalloc_with_one_arena_and_a_short_decay() -> None:
    seen, stderr = _probe()
    assert seen == {
        "pool": "jemalloc",
        "conf": "narenas:1,tcache:false,dirty_decay_ms:300,muzzy_decay_ms:0",
    }
    assert "<jemalloc>" not in stderr  # every option taken (a bad one is complained about)
    # ... and pyarrow's jemalloc reads that variable: an option it does not know is refused.
    _, stderr = _probe(JE_ARROW_MALLOC_CONF="no_such_option:1")
    assert "<jemalloc>: Invalid conf pair: no_such_option:1" in stderr


def test_a_pool_the_user_chose_is_kept() -> None:
    seen, _ = _probe(ARROW_DEFAULT_MEMORY_POOL="system", JE_ARROW_MALLOC_CONF="narenas:2")
    assert seen == {"pool": "system", "conf": "narenas:2"}


DUCKDB_PROBE = """
import gsc_pipeline
import duckdb
duckdb.connect().execute("SELECT 1").fetchall()
"""


def _duckdb_stderr(**env: str) -> str:
    """What DuckDB's jemalloc says on stderr in a fresh process importing gsc_pipeline first."""
    return _fresh_python(DUCKDB_PROBE, **env).stderr


@pytest.mark.skipif(sys.platform != "linux", reason="DuckDB links its own jemalloc on Linux")
def test_duckdb_allocates_with_the_same_jemalloc_options() -> None:
    # What gsc_pipeline sets, plus a request to print the options in force at exit.
    options = "narenas:1,tcache:false,dirty_decay_ms:300,muzzy_decay_ms:0"
    stderr = _duckdb_stderr(DUCKDB_JE_MALLOC_CONF=f"{options},stats_print:true")
    assert "<jemalloc>" not in stderr  # every option taken
    for line in ("opt.narenas: 1", "opt.tcache: false", "opt.dirty_decay_ms: 300",
                 "opt.muzzy_decay_ms: 0"):  # fmt: skip
        assert line in stderr, f"DuckDB's jemalloc did not take {line!r}"
    # ... gsc_pipeline's own setting is exactly those options, and a user's is kept.
    setting = "import gsc_pipeline, os; print(os.environ['DUCKDB_JE_MALLOC_CONF'])"
    assert _fresh_python(setting).stdout.strip() == options
    assert _fresh_python(setting, DUCKDB_JE_MALLOC_CONF="narenas:2").stdout.strip() == "narenas:2"
    # ... and that variable is the one DuckDB's jemalloc reads: an unknown option is refused.
    assert "<jemalloc>: Invalid conf pair: no_such_option:1" in _duckdb_stderr(
        DUCKDB_JE_MALLOC_CONF="no_such_option:1"
    )
