"""What a refresh touched: the measure of its cost."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass
class RefreshStats:
    """What a refresh touched: the measure of its cost (rows, not seconds, are the contract)."""

    days_refreshed: int = 0
    pages_touched: int = 0
    pages_rescanned: int = 0
    source_rows_read: int = 0
    state_rows_read: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    changed: list[tuple[str, dt.date]] = field(default_factory=list)

    def add(self, other: RefreshStats) -> None:
        for name in ("days_refreshed", "pages_touched", "pages_rescanned", "source_rows_read",
                     "state_rows_read", "rows_written"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.changed.extend(other.changed)

    def metadata(self) -> dict[str, int | float]:
        return {
            "days_refreshed": self.days_refreshed,
            "pages_touched": self.pages_touched,
            "pages_rescanned": self.pages_rescanned,
            "source_rows_read": self.source_rows_read,
            "state_rows_read": self.state_rows_read,
            "rows_written": self.rows_written,
            "refresh_seconds": round(self.seconds, 3),
        }
