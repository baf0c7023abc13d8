"""Injected failures: seeded random rates and exactly scripted events."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from gsc_pipeline.emulator.config import FaultConfig
from gsc_pipeline.emulator.query import QuerySpec

KINDS = ("status", "reset", "slow", "truncated", "malformed")


@dataclass
class Fault:
    """What goes wrong with one response. `status` only matters for kind 'status'."""

    kind: str
    status: int = 503


@dataclass
class ScriptedFault:
    """Fails matching requests `times` times, then lets them through.

    Unset criteria match anything; `date` matches when it lies in the request's date range.
    """

    site_url: str
    kind: str = "status"
    status: int = 503
    times: int = 1
    date: dt.date | None = None
    start_row: int | None = None
    report: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, not {self.kind!r}")
        if self.times < 1:
            raise ValueError("times must be at least 1")

    def matches(self, site_url: str, spec: QuerySpec) -> bool:
        return (
            self.site_url == site_url
            and (self.date is None or spec.start <= self.date <= spec.end)
            and (self.start_row is None or self.start_row == spec.start_row)
            and (self.report is None or self.report == spec.report)
        )


class Faults:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        self.scripted: list[ScriptedFault] = []

    def script(self, fault: ScriptedFault) -> None:
        self.scripted.append(fault)

    def clear(self) -> None:
        self.scripted.clear()

    def pick(self, site_url: str, spec: QuerySpec) -> Fault | None:
        """The fault for this query: a matching script first, else a seeded random draw."""
        for scripted in self.scripted:
            if scripted.matches(site_url, spec):
                scripted.times -= 1
                if scripted.times == 0:
                    self.scripted.remove(scripted)
                return Fault(scripted.kind, scripted.status)
        c = self.config
        draw = self.random.random()
        for rate, fault in (
            (c.rate_500, Fault("status", 500)),
            (c.rate_503, Fault("status", 503)),
            (c.rate_reset, Fault("reset")),
            (c.rate_slow, Fault("slow")),
            (c.rate_truncated, Fault("truncated")),
            (c.rate_malformed, Fault("malformed")),
        ):
            if draw < rate:
                return fault
            draw -= rate
        return None
