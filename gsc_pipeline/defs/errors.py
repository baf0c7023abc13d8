"""Errors a person reads: the message that names the problem and the fix, without Python frames.

Dagster turns an exception into a `SerializableErrorInfo` (message plus stack) wherever it shows
one: a code location's load error (`dg check defs`, `dg dev`, `dagster dev`, the UI) and a
step's failure (the run's log, `dagster asset materialize`). An exception that already carries
its own error info, a `DagsterUserCodeProcessError`, is shown as that info instead
(`serializable_error_info_from_exc_info` hoists it), so giving it an info without a stack shows
the message alone. Being a Dagster error, the user-code boundaries let it through unwrapped;
being a `ComponentTreeException`, the component tree re-raises it instead of wrapping it.

A bug (anything else) keeps its stack trace: only errors about the user's input become these.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from dagster._core.errors import DagsterUserCodeProcessError
from dagster._utils.error import SerializableErrorInfo
from dagster.components.core.component_tree import ComponentTreeException

from gsc_pipeline.config import ConfigError
from gsc_pipeline.gsc import GscError
from gsc_pipeline.warehouse import WarehouseUrlError

# What a user's input causes and a message can tell them to fix: the API's answers (credential,
# endpoint, permission, quota given up on), the config, the warehouse URL.
INPUT_ERRORS = (GscError, ConfigError, WarehouseUrlError)

F = TypeVar("F", bound=Callable[..., Any])


class UserFacingError(DagsterUserCodeProcessError, ComponentTreeException):
    """Shown by Dagster as its message alone (see the module docstring)."""

    def __init__(self, message: str) -> None:
        info = SerializableErrorInfo(message=message, stack=[], cls_name=type(self).__name__)
        super().__init__(message, user_code_process_error_infos=[info])


def _restated(exc: BaseException, what: str) -> UserFacingError:
    # Notes (e.g. "sync of ...: 2 day(s) written before the error") are part of the message.
    notes = "".join(f"\n{note}" for note in getattr(exc, "__notes__", ()))
    return UserFacingError(f"{what}: {exc}{notes}")


def input_errors_without_trace(what: str) -> Callable[[F], F]:
    """Decorate an asset's body (a function or a generator) so that an error caused by the
    user's input fails the step with `what: <message>` and no stack trace."""

    def decorate(fn: F) -> F:
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def generator(*args: Any, **kwargs: Any) -> Any:
                try:
                    return (yield from fn(*args, **kwargs))
                except INPUT_ERRORS as exc:
                    raise _restated(exc, what) from exc

            return generator  # type: ignore[return-value]

        @functools.wraps(fn)
        def function(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except INPUT_ERRORS as exc:
                raise _restated(exc, what) from exc

        return function  # type: ignore[return-value]

    return decorate


def _print_message_only(
    previous: Callable[[type[BaseException], BaseException, TracebackType | None], Any],
) -> Callable[[type[BaseException], BaseException, TracebackType | None], Any]:
    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> Any:
        if isinstance(exc, UserFacingError):
            print(f"Error: {exc}", file=sys.stderr)
            return None
        return previous(kind, exc, tb)

    return hook


# A command that loads the definitions in its own process (`dagster asset materialize`,
# `dagster definitions validate -m ...`) lets a load error reach the interpreter, which would
# print it as a traceback: print such an error as its message (exit status 1 all the same).
# Every other exception goes to the hook that was installed before.
if not getattr(sys.excepthook, "_gsc_message_only", False):
    sys.excepthook = _print_message_only(sys.excepthook)
    sys.excepthook._gsc_message_only = True  # type: ignore[attr-defined]
