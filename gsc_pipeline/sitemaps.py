"""Snapshot of a property's submitted sitemaps (sitemaps.list), beside the traffic tables.

No Dagster here. One call per property; the snapshot replaces the property's previous one in
one transaction. Google sends int64 counts as JSON strings and times as RFC 3339: they are
stored as numbers and instants, and each sitemap's per-content-type counts as JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pyarrow as pa

from gsc_pipeline.gsc import GscClient
from gsc_pipeline.warehouse import Warehouse
from gsc_pipeline.warehouse.base import INSTANT_TYPE

SITEMAPS_TABLE = "gsc_sitemaps"
SITEMAPS_SCHEMA = pa.schema(
    [
        ("site_url", pa.string()),
        ("path", pa.string()),
        ("type", pa.string()),
        ("is_sitemaps_index", pa.bool_()),
        ("is_pending", pa.bool_()),
        ("last_submitted", INSTANT_TYPE),
        ("last_downloaded", INSTANT_TYPE),
        ("warnings", pa.int64()),
        ("errors", pa.int64()),
        ("urls_submitted", pa.int64()),
        # [{"type": "WEB", "submitted": 300, "indexed": 0}, ...] as Google lists them.
        ("contents", pa.string()),
        ("snapshot_at", pa.timestamp("us")),
    ]
)


def _instant(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _count(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


def sitemap_rows(
    site_url: str, entries: list[dict[str, Any]], snapshot_at: dt.datetime
) -> pa.Table:
    """Google's WmxSitemap dicts -> rows of `SITEMAPS_TABLE`."""
    rows = []
    for entry in entries:
        contents = [
            {"type": c.get("type"), "submitted": _count(c.get("submitted")),
             "indexed": _count(c.get("indexed"))}
            for c in entry.get("contents", [])
        ]  # fmt: skip
        rows.append(
            {
                "site_url": site_url,
                "path": entry["path"],
                "type": entry.get("type"),
                "is_sitemaps_index": bool(entry.get("isSitemapsIndex", False)),
                "is_pending": bool(entry.get("isPending", False)),
                "last_submitted": _instant(entry.get("lastSubmitted")),
                "last_downloaded": _instant(entry.get("lastDownloaded")),
                "warnings": _count(entry.get("warnings")),
                "errors": _count(entry.get("errors")),
                "urls_submitted": sum(c["submitted"] for c in contents),
                "contents": orjson.dumps(contents).decode(),
                "snapshot_at": snapshot_at,
            }
        )
    return pa.Table.from_pylist(rows, schema=SITEMAPS_SCHEMA)


def snapshot_sitemaps(client: GscClient, warehouse: Warehouse, site_url: str) -> pa.Table:
    """Fetch the property's sitemaps and replace its stored snapshot; the rows written."""
    entries = client.list_sitemaps(site_url)
    rows = sitemap_rows(site_url, entries, dt.datetime.now(dt.UTC).replace(tzinfo=None))
    warehouse.replace_site_rows(SITEMAPS_TABLE, SITEMAPS_SCHEMA, site_url, rows)
    return rows
