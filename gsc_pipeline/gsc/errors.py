"""Typed errors of the GSC client: each says what went wrong and what to do about it.

Callers branch on the type: `TransientError` and `QuotaExceeded` are retried by the client's
retry policy (and surface only once it gives up); the others are never retried because asking
again cannot change the answer.
"""

from __future__ import annotations


class GscError(Exception):
    """Base of every error the GSC client raises."""

    #: Attempts made before this error surfaced (1 when it was not retried).
    attempts: int = 1


class TransientError(GscError):
    """5xx, timeout, connection reset, truncated or malformed body: worth retrying later."""


class QuotaExceeded(GscError):
    """Google refused the call for quota: 'qps' (per-minute rate) or 'load' (cost windows)."""

    def __init__(self, message: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        if kind not in ("qps", "load"):
            raise ValueError(f"QuotaExceeded kind must be 'qps' or 'load', not {kind!r}")
        self.kind = kind
        self.retry_after = retry_after

    def __reduce__(self):  # keep kind/retry_after across pickling (process pools, Dagster)
        return (_rebuild_quota, (str(self), self.kind, self.retry_after, self.attempts))


def _rebuild_quota(message: str, kind: str, retry_after: float | None, attempts: int):
    err = QuotaExceeded(message, kind=kind, retry_after=retry_after)
    err.attempts = attempts
    return err


class SitePermissionDenied(GscError):
    """The credential cannot read this property (403): fix access, do not retry."""


class SiteNotFound(GscError):
    """The property is not in this account (404): check the site_url form, do not retry."""


class InvalidRequest(GscError):
    """Google rejected the request body (400); the message carries Google's own words."""


class AuthError(GscError):
    """The credential is missing, unreadable, expired or revoked (401, token refresh failed)."""


class EndpointUnreachable(GscError):
    """The very first call found nothing listening at the endpoint: a wrong URL or a server
    that is not running, which waiting will not fix (later drops are `TransientError`)."""


class Cancelled(GscError):
    """The caller's stop event was set: no further calls or waits were made."""
