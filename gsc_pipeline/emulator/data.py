"""Deterministic synthetic facts: one page x query x country x device table per site and day.

Every report the emulator serves is an aggregation of these facts, so page x query sums, page
totals and property totals agree the way Google's do (minus the anonymized queries, which appear
only in totals). A day's facts depend only on (seed, site, search type, date), never on request
order, so restarts and concurrent requests see identical data.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import orjson

from gsc_pipeline.emulator.config import PropertyConfig

COUNTRIES = (
    "usa", "gbr", "deu", "ind", "can", "fra", "aus", "bra", "esp", "ita",
    "nld", "jpn", "mex", "pol", "swe", "tur", "idn", "phl", "zaf", "nga",
)  # fmt: skip
DEVICES = ("MOBILE", "DESKTOP", "TABLET")
APPEARANCES = ("AMP_BLUE_LINK", "FAQ_RICH_RESULT", "PRODUCT_SNIPPETS", "REVIEW_SNIPPET", "VIDEO")
# Search types other than web see a fraction of web's volume.
TYPE_VOLUME = {"web": 1.0, "image": 0.3, "video": 0.08, "news": 0.1, "discover": 0.15,
               "googleNews": 0.05}  # fmt: skip
# Discover and Google News have no queries: every fact is query-less.
QUERYLESS_TYPES = frozenset({"discover", "googleNews"})
# Business sites dip at weekends (Monday first).
WEEKDAY_FACTOR = np.array([1.06, 1.08, 1.07, 1.04, 0.97, 0.84, 0.88])
_COUNTRY_P = 1.0 / np.arange(1, len(COUNTRIES) + 1) ** 1.6
_COUNTRY_P /= _COUNTRY_P.sum()
_DEVICE_P = np.array([0.61, 0.35, 0.04])
# Share of a day's impressions per Pacific hour: quiet at night, peaking in the evening.
_HOUR_P = 1.0 + 0.8 * np.sin((np.arange(24) - 9) / 24 * 2 * np.pi)
_HOUR_P /= _HOUR_P.sum()
_WORDS = (
    "best", "buy", "cheap", "review", "how", "to", "guide", "near", "me", "price", "sale", "new",
    "free", "online", "vs", "top", "shoes", "coffee", "garden", "bike", "laptop", "phone", "tea",
    "lamp", "chair", "desk", "recipe", "travel", "hotel", "flight", "yoga", "running", "camera",
    "watch", "book", "music", "game", "tent", "kayak", "paint", "bread", "pizza", "wine", "dog",
    "cat", "plant", "rug", "sofa", "bag", "jacket",
)  # fmt: skip
_SECTIONS = ("blog", "products", "guides", "category", "news", "help")


def ctr_for_position(position: np.ndarray) -> np.ndarray:
    """Click-through rate falling steeply with position (~30% at 1, ~2% at 10)."""
    return 0.31 * np.power(position, -1.35)


@dataclass(frozen=True)
class Facts:
    """One site-day-type fact table; query == -1 marks an anonymized query."""

    page: np.ndarray  # int32 index into Vocabulary.pages
    query: np.ndarray  # int32 index into Vocabulary.query, or -1
    country: np.ndarray  # int8 index into COUNTRIES
    device: np.ndarray  # int8 index into DEVICES
    appearance: np.ndarray  # int8 index into APPEARANCES, or -1
    hour: np.ndarray  # int8 Pacific hour of day
    clicks: np.ndarray  # int64
    impressions: np.ndarray  # int64, >= clicks and >= 1
    position: np.ndarray  # float64 average position, 1..100

    def __len__(self) -> int:
        return len(self.clicks)

    def take(self, mask: np.ndarray) -> Facts:
        return Facts(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    def scaled(self, fraction: float) -> Facts:
        """The share of this day Google has processed so far (incomplete, fresh data)."""
        clicks = np.floor(self.clicks * fraction).astype(np.int64)
        impressions = np.maximum(np.floor(self.impressions * fraction).astype(np.int64), clicks)
        keep = impressions > 0
        rest = {f: getattr(self, f)[keep] for f in self.__dataclass_fields__}
        rest["clicks"] = clicks[keep]
        rest["impressions"] = impressions[keep]
        return Facts(**rest)

    def restated(self, factor: float) -> Facts:
        """The same rows with impressions times `factor` (clicks never above impressions)."""
        impressions = np.maximum(np.round(self.impressions * factor).astype(np.int64), 1)
        rest = {f: getattr(self, f) for f in self.__dataclass_fields__}
        rest["impressions"] = impressions
        rest["clicks"] = np.minimum(self.clicks, impressions)
        return Facts(**rest)

    def without_appearances(self, codes: list[int]) -> Facts:
        """The same rows, those of the appearances `codes` without any appearance."""
        rest = {f: getattr(self, f) for f in self.__dataclass_fields__}
        rest["appearance"] = np.where(np.isin(self.appearance, codes), -1, self.appearance)
        return Facts(**rest)

    @staticmethod
    def concat(parts: list[Facts]) -> Facts:
        return Facts(*(np.concatenate([getattr(p, f) for p in parts])
                       for f in Facts.__dataclass_fields__))


EMPTY_FACTS = Facts(
    *(np.zeros(0, dtype=t) for t in
      (np.int32, np.int32, np.int8, np.int8, np.int8, np.int8, np.int64, np.int64, np.float64))
)  # fmt: skip


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def query_text(index: int) -> str:
    """A unique, readable query for each index: its digits in base len(_WORDS) as words."""
    words = []
    n = index
    while True:
        n, digit = divmod(n, len(_WORDS))
        words.append(_WORDS[digit])
        if n == 0 and len(words) >= 2:
            return " ".join(words)


def _site_root(site_url: str) -> str:
    if site_url.startswith("sc-domain:"):
        return f"https://{site_url.removeprefix('sc-domain:')}/"
    return site_url


class Vocabulary:
    """A site's page URLs and query strings by index, also JSON-encoded for serialisation."""

    def __init__(self, site: PropertyConfig) -> None:
        root = _site_root(site.site_url)
        self.pages = [root] + [
            f"{root}{_SECTIONS[i % len(_SECTIONS)]}/{query_text(i).replace(' ', '-')}-{i}"
            for i in range(1, site.pages)
        ]
        self.pages_json = [orjson.dumps(p).decode() for p in self.pages]
        self.query_count = max(2, int(site.page_query_rows_per_day * 0.9))
        self._queries_json: dict[int, str] = {}

    def query(self, index: int) -> str:
        return query_text(index)

    def query_json(self, index: int) -> str:
        text = self._queries_json.get(index)
        if text is None:
            # Query words are plain ASCII, so quoting is the whole JSON encoding.
            text = self._queries_json[index] = f'"{query_text(index)}"'
        return text


@dataclass(frozen=True)
class _Universe:
    """The page x query pairs a site ranks for, most popular first, with their traits."""

    page: np.ndarray
    query: np.ndarray
    mean_impressions: np.ndarray
    position: np.ndarray
    combos: np.ndarray  # how many country x device rows a pair spreads over per day


class FactSource:
    """Generates and caches fact tables for every configured site."""

    def __init__(self, seed: int, properties: tuple[PropertyConfig, ...]) -> None:
        self.seed = seed
        self.sites = {p.site_url: p for p in properties}
        self.vocabularies = {p.site_url: Vocabulary(p) for p in properties}
        # Bound the caches: a large site's day is ~1.5 MB of arrays.
        self.facts = functools.lru_cache(maxsize=256)(self._facts)
        self._universe = functools.lru_cache(maxsize=64)(self._make_universe)

    def _make_universe(self, site_url: str, search_type: str) -> _Universe:
        site = self.sites[site_url]
        rng = _rng(self.seed, site_url, search_type, "universe")
        target = max(1, round(site.page_query_rows_per_day * TYPE_VOLUME[search_type]))
        size = math.ceil(target * 1.5)
        queries = self.vocabularies[site_url].query_count
        # Power-transformed uniforms give Zipf-like popularity for pages and queries.
        draws = 3 * size + 50
        page = np.floor(site.pages * rng.random(draws) ** 2.5).astype(np.int64)
        query = np.floor(queries * rng.random(draws) ** 1.8).astype(np.int64)
        _, first = np.unique(page * queries + query, return_index=True)
        first = np.sort(first)[:size]
        page, query = page[first], query[first]
        rank = np.arange(len(first))
        scale = 20.0 * (1 + math.log10(target))
        mean_impressions = scale * 60 * (rank + 1.0) ** -0.75 * rng.lognormal(0, 0.5, len(rank))
        position = 1 + 45 * (rank / len(rank)) ** 0.8 * rng.lognormal(0, 0.5, len(rank))
        combos = 1 + np.minimum(5, rng.poisson(mean_impressions / 150))
        return _Universe(
            page=page.astype(np.int32),
            query=query.astype(np.int32),
            mean_impressions=mean_impressions,
            position=np.clip(position, 1, 100),
            combos=combos,
        )

    def _facts(self, site_url: str, search_type: str, day: dt.date) -> Facts:
        site = self.sites[site_url]
        if search_type not in site.search_types:
            return EMPTY_FACTS
        universe = self._universe(site_url, search_type)
        rng = _rng(self.seed, site_url, search_type, day.isoformat())
        size = len(universe.page)
        target = size / 1.5
        # The top pairs rank every day; the tail comes and goes.
        always = max(1, size // 20)
        p_tail = min(1.0, max(0.0, (target - always) / max(1, size - always)))
        present = rng.random(size) < p_tail
        present[:always] = True
        idx = np.flatnonzero(present)
        reps = universe.combos[idx]
        pair = np.repeat(idx, reps)
        n = len(pair)
        trend = 1 + 0.12 * math.sin(2 * math.pi * day.toordinal() / 365.25)
        day_factor = WEEKDAY_FACTOR[day.weekday()] * trend
        expected = universe.mean_impressions[pair] / universe.combos[pair] * day_factor
        impressions = 1 + rng.poisson(expected * (0.5 + rng.random(n)))
        position = np.clip(universe.position[pair] * rng.lognormal(0, 0.15, n), 1, 100)
        clicks = rng.binomial(impressions, np.minimum(1.0, ctr_for_position(position)))
        query = universe.query[pair].copy()
        if search_type in QUERYLESS_TYPES:
            query[:] = -1
        named = Facts(
            page=universe.page[pair],
            query=query,
            country=rng.choice(len(COUNTRIES), n, p=_COUNTRY_P).astype(np.int8),
            device=rng.choice(len(DEVICES), n, p=_DEVICE_P).astype(np.int8),
            appearance=self._appearances(rng, n),
            hour=rng.choice(24, n, p=_HOUR_P).astype(np.int8),
            clicks=clicks.astype(np.int64),
            impressions=impressions.astype(np.int64),
            position=position,
        )
        if search_type in QUERYLESS_TYPES or site.anonymized_share == 0:
            return named
        return Facts.concat([named, self._anonymized(rng, site, int(clicks.sum()), n)])

    @staticmethod
    def _appearances(rng: np.random.Generator, n: int) -> np.ndarray:
        appearance = rng.integers(0, len(APPEARANCES), n).astype(np.int8)
        appearance[rng.random(n) >= 0.06] = -1
        return appearance

    def _anonymized(
        self, rng: np.random.Generator, site: PropertyConfig, named_clicks: int, named_rows: int
    ) -> Facts:
        """Rare queries Google hides: they carry `anonymized_share` of all clicks."""
        share = site.anonymized_share
        total = round(named_clicks * share / (1 - share))
        n = max(1, named_rows // 3)
        weights = rng.random(n) ** 3
        clicks = rng.multinomial(total, weights / weights.sum()).astype(np.int64)
        position = np.clip(rng.lognormal(math.log(8), 0.8, n), 1, 100)
        impressions = np.ceil(clicks / ctr_for_position(position)).astype(np.int64)
        impressions = np.maximum(impressions + rng.poisson(2, n), 1)
        return Facts(
            page=np.floor(site.pages * rng.random(n) ** 2.5).astype(np.int32),
            query=np.full(n, -1, dtype=np.int32),
            country=rng.choice(len(COUNTRIES), n, p=_COUNTRY_P).astype(np.int8),
            device=rng.choice(len(DEVICES), n, p=_DEVICE_P).astype(np.int8),
            appearance=self._appearances(rng, n),
            hour=rng.choice(24, n, p=_HOUR_P).astype(np.int8),
            clicks=clicks,
            impressions=impressions,
            position=position,
        )
