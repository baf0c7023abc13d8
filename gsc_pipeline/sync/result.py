"""One day's outcome once written: `PartitionResult`."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PartitionResult:
    """What one day's sync did: for logs and Dagster partition metadata."""

    site_url: str
    report: str
    day: dt.date
    rows: int
    pages: int
    api_calls: int
    retries: int
    quota_wait_seconds: float
    fetch_seconds: float
    write_seconds: float
    latency_p50_ms: float
    latency_p95_ms: float
    achieved_qpm: float
    truncated: bool
    clicks: float
    impressions: float
    data_state: str
    first_incomplete_date: dt.date | None
    # Extra passes over the pages to settle rows tied across page boundaries (0: none needed).
    tie_passes: int = 0

    def metadata(self) -> dict[str, Any]:
        """Plain values (str/int/float/bool/None) for Dagster metadata and JSON logs."""
        values = asdict(self)
        values["day"] = self.day.isoformat()
        values["first_incomplete_date"] = (
            self.first_incomplete_date.isoformat() if self.first_incomplete_date else None
        )
        values["truncated_days"] = int(self.truncated)
        return values
