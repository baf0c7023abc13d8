"""sitemaps.list / sitemaps.get: a site's submitted sitemaps, deterministic per (seed, site).

Shaped like Google's WmxSitemap resource: int64 counts travel as JSON strings, times are
RFC 3339, types are upper-case enums. The sitemaps describe the site's own pages, so their
submitted URL counts match the emulator's page vocabulary.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from gsc_pipeline.emulator.config import PropertyConfig

# (file name, type, content types) of the sitemaps a site submits, in order.
_SITEMAPS = (
    ("sitemap.xml", "SITEMAP", ("WEB", "IMAGE")),
    ("sitemap-news.xml", "SITEMAP", ("WEB", "NEWS")),
    ("feed.rss", "RSS_FEED", ("WEB",)),
    ("sitemap-video.xml", "SITEMAP", ("VIDEO",)),
)


def _number(seed: int, site_url: str, *parts: object) -> int:
    digest = hashlib.blake2b(repr((seed, site_url, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _root(site_url: str) -> str:
    if site_url.startswith("sc-domain:"):
        return f"https://{site_url.removeprefix('sc-domain:')}/"
    return site_url


def site_sitemaps(seed: int, site: PropertyConfig, today: dt.date) -> list[dict[str, Any]]:
    """The first `site.sitemaps` sitemaps of the site as Google lists them."""
    out = []
    for i, (name, kind, contents) in enumerate(_SITEMAPS[: site.sitemaps]):
        n = _number(seed, site.site_url, name)
        submitted = today - dt.timedelta(days=30 + n % 300)
        midnight = dt.datetime.combine(today, dt.time(), dt.UTC)
        downloaded = midnight - dt.timedelta(days=n % 3, hours=(n >> 8) % 24)
        # The last sitemap of a site with several is still waiting for Google's first read.
        pending = i > 0 and i == site.sitemaps - 1
        entry: dict[str, Any] = {
            "path": f"{_root(site.site_url)}{name}",
            "lastSubmitted": f"{submitted.isoformat()}T08:00:00.000Z",
            "isPending": pending,
            "isSitemapsIndex": False,
            "type": kind,
            "warnings": "0" if pending else str((n >> 16) % 5),
            "errors": "0" if pending else str((n >> 24) % 2),
            "contents": [
                {"type": content, "submitted": str(max(1, site.pages // (j + 1))), "indexed": "0"}
                for j, content in enumerate(contents)
            ],
        }
        if not pending:
            entry["lastDownloaded"] = downloaded.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        out.append(entry)
    return out
