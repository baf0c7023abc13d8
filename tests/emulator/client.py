"""Helpers that drive the emulator through the real google-api-python-client."""

from __future__ import annotations

from typing import Any

import httplib2
from googleapiclient.discovery import build

from gsc_pipeline.emulator.testing import EmulatorHandle

TODAY = "2026-08-18"
SITE = "sc-domain:example.com"
PREFIX_SITE = "https://www.example.org/"
UNVERIFIED = "sc-domain:not-yours.example"
SMALL_CONFIG: dict[str, Any] = {
    "seed": 11,
    "today": TODAY,
    "properties": [
        {"site_url": SITE, "page_query_rows_per_day": 300, "pages": 40, "anonymized_share": 0.25,
         "search_types": ["web", "image", "video", "news", "discover", "googleNews"]},
        {"site_url": PREFIX_SITE, "page_query_rows_per_day": 80, "pages": 15,
         "anonymized_share": 0.1, "permission": "siteFullUser"},
        {"site_url": UNVERIFIED, "page_query_rows_per_day": 20, "pages": 5,
         "permission": "siteUnverifiedUser"},
    ],
}  # fmt: skip


def small_config(**changes: Any) -> dict[str, Any]:
    return {**SMALL_CONFIG, **changes}


def service_for(handle: EmulatorHandle, http: httplib2.Http | None = None) -> Any:
    """The searchconsole v1 client, exactly as the pipeline builds it."""
    return build(
        "searchconsole",
        "v1",
        http=http or httplib2.Http(),
        client_options={"api_endpoint": handle.base_url},
        static_discovery=True,
    )


def query(service: Any, site: str = SITE, **body: Any) -> dict[str, Any]:
    body.setdefault("startDate", "2026-08-01")
    body.setdefault("endDate", "2026-08-01")
    return service.searchanalytics().query(siteUrl=site, body=body).execute()


def all_rows(service: Any, site: str = SITE, row_limit: int = 25000, **body: Any) -> list[dict]:
    """Pages through a report the documented way: until a page comes back short or empty."""
    rows: list[dict] = []
    start = 0
    while True:
        page = query(service, site, rowLimit=row_limit, startRow=start, **body).get("rows", [])
        rows.extend(page)
        if len(page) < row_limit:
            return rows
        start += row_limit
