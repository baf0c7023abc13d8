"""The `gsc_emulator` fixture: add `pytest_plugins = ["gsc_pipeline.emulator.pytest_plugin"]`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gsc_pipeline.emulator.testing import EmulatorHandle, running_emulator


@pytest.fixture
def gsc_emulator() -> Iterator[EmulatorHandle]:
    """A fresh emulator per test: default properties, zero latency, no faults, fixed today."""
    with running_emulator({"today": "2026-08-18"}) as handle:
        yield handle
