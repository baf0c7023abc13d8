"""pandas only where it is used: a process that fetches need not load it (~33 MB of RSS).

The fetch path, the in-run checks and the code location read their results as Python rows
(`Warehouse.read_rows`), not DataFrames, and import pandas only in the functions that use it
(whole-history proofs, audits, lifetime stats, sensors). One more importer remains: pyarrow
checks whether the Python values it converts (`pa.array([...])`, `pa.scalar(...)`, a compute
function given a Python number) are pandas objects, and imports pandas to ask, on the first
conversion of every process (`python -c "import sys, pyarrow as pa; pa.array([1]); print('pandas'
in sys.modules)"` prints True).

`spare_pandas()` lets pyarrow ask once while pandas is hidden, so pyarrow records it absent; it
then imports nothing more. Nothing is lost: the first time anything imports pandas afterwards,
pyarrow is told (a one-shot import hook), and its pandas support is whole again (`pa.table(df)`,
`to_pandas()`, pandas timestamps). Measured in docs/bench/README.md (issue 14, stop 27).

Two more importers, avoided rather than hidden (pyarrow's compiled code asks once per process,
and hidden then it would never see pandas' NaT or NA): converting a Python value without its
Arrow type (`pa.array(["x"])`, `pc.equal(col, "x")`: pass `pa.scalar("x", pa.string())`), and
`pyarrow.acero`, which `Table.group_by` imports (`group_by` here runs the same plan without it).
tests/test_pandas_on_demand.py runs a fetch with its checks and fails naming the importer.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

import pyarrow as pa
from pyarrow._acero import AggregateNodeOptions, Declaration, TableSourceNodeOptions

_LOCK = threading.Lock()


def spare_pandas() -> None:
    """Keep pyarrow from importing pandas in this process, until something else imports it.

    A no-op once pandas is imported or pyarrow has looked for it."""
    with _LOCK:
        if "pandas" in sys.modules or any(isinstance(f, _TellPyarrow) for f in sys.meta_path):
            return
        hide = _HidePandas()
        sys.meta_path.insert(0, hide)
        try:
            pa.lib._pandas_api.have_pandas  # noqa: B018  pyarrow looks once, records "absent"
        finally:
            sys.meta_path.remove(hide)
        sys.meta_path.insert(0, _TellPyarrow())


def group_by(table: pa.Table, keys: list[str], aggregations: list[tuple[str, str]]) -> pa.Table:
    """`table.group_by(keys, use_threads=False).aggregate(aggregations)`: the same Acero plan
    (`pyarrow.acero._group_by`), the same output names (`clicks_sum`), without importing
    `pyarrow.acero`, whose `pyarrow.dataset` converts an untyped Python value on import."""
    plan = Declaration.from_sequence(
        [
            Declaration("table_source", TableSourceNodeOptions(table)),
            Declaration(
                "aggregate",
                AggregateNodeOptions(
                    [([c], f"hash_{f}", None, f"{c}_{f}") for c, f in aggregations], keys=keys
                ),
            ),
        ]
    )
    return plan.to_table(use_threads=False)


class _HidePandas(importlib.abc.MetaPathFinder):
    """`import pandas` fails while this is first in `sys.meta_path` (and pandas not imported).
    Not `sys.modules["pandas"] = None`: pyarrow's compiled import takes that None as pandas."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "pandas":
            raise ModuleNotFoundError("pandas hidden from pyarrow", name=fullname)
        return None


class _TellPyarrow(importlib.abc.MetaPathFinder):
    """Finds no module itself. When pandas is first imported, it wraps pandas' loader so that,
    once pandas is whole, pyarrow looks again (and finds it); then it leaves `sys.meta_path`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "pandas":
            return None
        sys.meta_path.remove(self)
        spec = next(
            (
                s
                for finder in list(sys.meta_path)  # a copy: a finder may remove itself
                if (find := getattr(finder, "find_spec", None))
                and (s := find(fullname, path, target)) is not None
            ),
            None,
        )
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_tell(module: Any) -> None:
            exec_module(module)
            pa.lib._pandas_api.pd  # noqa: B018  pyarrow imports pandas (now whole) again

        spec.loader.exec_module = exec_then_tell  # type: ignore[method-assign]
        return spec
