"""Google's JSON error envelope, so clients parse emulator errors exactly like real ones."""

from __future__ import annotations

import orjson

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error the API answers with `{"error": {"code", "message", "errors", "status"}}`."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str,
        *,
        domain: str = "global",
        location: str | None = None,
        location_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.location = location
        self.location_type = location_type

    def body(self) -> bytes:
        detail: dict[str, str] = {
            "message": self.message,
            "domain": self.domain,
            "reason": self.reason,
        }
        if self.location:
            detail["location"] = self.location
            detail["locationType"] = self.location_type or "parameter"
        error = {
            "code": self.code,
            "message": self.message,
            "errors": [detail],
            "status": _STATUS.get(self.code, "UNKNOWN"),
        }
        return orjson.dumps({"error": error})


def bad_request(
    message: str, *, reason: str = "badRequest", location: str | None = None
) -> ApiError:
    return ApiError(400, message, reason, location=location)


def backend_error(code: int) -> ApiError:
    message = "Backend Error" if code == 500 else "The service is currently unavailable."
    return ApiError(code, message, "backendError")


def qps_exceeded(status: int) -> ApiError:
    reason = "rateLimitExceeded" if status == 429 else "quotaExceeded"
    return ApiError(status, "Search Analytics QPS quota exceeded.", reason, domain="usageLimits")


def load_exceeded() -> ApiError:
    return ApiError(
        403,
        "Search Analytics load quota exceeded. Reduce the load of your requests (for example by "
        "grouping by fewer dimensions or querying shorter date ranges) and try again later.",
        "quotaExceeded",
        domain="usageLimits",
    )


def forbidden(site_url: str) -> ApiError:
    return ApiError(403, f"User does not have sufficient permission for site '{site_url}'. "
                    "See also: https://support.google.com/webmasters/answer/2451999.", "forbidden")


def not_found(site_url: str) -> ApiError:
    return ApiError(
        404, f"'{site_url}' is not a verified Search Console site in this account.", "notFound"
    )


def unauthenticated(invalid: bool) -> ApiError:
    if invalid:
        return ApiError(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential.",
            "authError",
            location="Authorization",
            location_type="header",
        )
    return ApiError(
        401,
        "Request is missing required authentication credential. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential.",
        "required",
        location="Authorization",
        location_type="header",
    )
