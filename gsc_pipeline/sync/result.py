"""One day's outcome, from its fetch to the caller: `PartitionResult`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gsc_pipeline.warehouse.base import PartitionBatch


@dataclass(frozen=True, kw_only=True)
class PartitionResult:
    """What one day's sync did: for logs and Dagster partition metadata.

    `fetch_day` makes it holding the fetched `batch`; the group writer commits the batch and
    hands on the day with `write_seconds` (its group commit's duration) and without the batch,
    so the results a sync returns hold no rows.
    """

    site_url: str
    report: str
    day: dt.date
    rows: int
    pages: int
    api_calls: int
    retries: int
    quota_wait_seconds: float
    fetch_seconds: float
    write_seconds: float = 0.0
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
    # Request shapes stored (one per search type unless a capped day was split into shards),
    # and how many of them still hit Google's row cap (then `truncated`).
    shards: int = 1
    capped_shards: int = 0
    # Search types whose day started at its neighbours' shard splits (no whole-day request),
    # and the requests the day was planned to take before the step's first fetch.
    started_split: int = 0
    planned_requests: int | None = None
    # The fetched rows and ledger until they are written; None once written.
    batch: PartitionBatch | None = field(default=None, repr=False, compare=False)

    @property
    def held_bytes(self) -> int:
        """The memory the fetched rows and ledger hold until written (0 once written)."""
        if self.batch is None:
            return 0
        return self.batch.rows.get_total_buffer_size() + self.batch.ledger.get_total_buffer_size()

    def committed(self, write_seconds: float) -> PartitionResult:
        """This day once its group commit is done (`write_seconds`: the commit's duration)."""
        return replace(self, write_seconds=round(write_seconds, 3), batch=None)

    def metadata(self) -> dict[str, Any]:
        """Plain values (str/int/float/bool/None) for Dagster metadata and JSON logs."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "batch"}
        values["day"] = self.day.isoformat()
        values["first_incomplete_date"] = (
            self.first_incomplete_date.isoformat() if self.first_incomplete_date else None
        )
        values["truncated_days"] = int(self.truncated)
        return values
