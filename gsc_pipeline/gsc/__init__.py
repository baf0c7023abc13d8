"""Talking to Google Search Console (or the emulator): client, typed errors, rate limit."""

from gsc_pipeline.gsc.client import API_ENDPOINT_ENV, DEFAULT_QPM_BUDGET, ClientStats, GscClient
from gsc_pipeline.gsc.credentials import load_credentials
from gsc_pipeline.gsc.errors import (
    AuthError,
    Cancelled,
    EndpointUnreachable,
    GscError,
    InvalidRequest,
    QuotaExceeded,
    SiteNotFound,
    SitePermissionDenied,
    TransientError,
)
from gsc_pipeline.gsc.rate_limit import RateLimiter
from gsc_pipeline.gsc.retry import RetryPolicy

__all__ = [
    "API_ENDPOINT_ENV",
    "DEFAULT_QPM_BUDGET",
    "AuthError",
    "Cancelled",
    "ClientStats",
    "EndpointUnreachable",
    "GscClient",
    "GscError",
    "InvalidRequest",
    "QuotaExceeded",
    "RateLimiter",
    "RetryPolicy",
    "SiteNotFound",
    "SitePermissionDenied",
    "TransientError",
    "load_credentials",
]
