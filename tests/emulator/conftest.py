"""Emulator test fixtures: small properties so the whole suite stays fast."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gsc_pipeline.emulator.testing import EmulatorHandle, running_emulator

from .client import SMALL_CONFIG, service_for, small_config


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[EmulatorHandle]:
    """One read-only emulator per module; tests that change state use their own."""
    with running_emulator(SMALL_CONFIG) as handle:
        yield handle


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with running_emulator(SMALL_CONFIG) as handle:
        yield handle


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., EmulatorHandle]]:
    """Start emulators with config changes; all stop when the test ends."""
    stack: list[Any] = []

    def start(**changes: Any) -> EmulatorHandle:
        context = running_emulator(small_config(**changes))
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def service(shared_emulator: EmulatorHandle) -> Any:
    return service_for(shared_emulator)
