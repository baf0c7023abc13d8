"""Loading Google credentials: service-account keys (file or base64) and OAuth user logins."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import pathlib
from typing import Any

import google.auth.credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from gsc_pipeline.gsc.errors import AuthError

SCOPES = ("https://www.googleapis.com/auth/webmasters.readonly",)


def load_credentials(
    path: str | os.PathLike[str] | None = None,
    *,
    base64_json: str | None = None,
    scopes: tuple[str, ...] = SCOPES,
) -> google.auth.credentials.Credentials:
    """Credentials from a JSON key file or its base64 text (e.g. from an env var).

    The JSON's `type` decides: `service_account` (a key from the Cloud console) or
    `authorized_user` (an OAuth login with client_id, client_secret, refresh_token).
    """
    if (path is None) == (base64_json is None):
        raise AuthError("give exactly one of a credentials file path or base64 credentials JSON")
    if path is not None:
        where = str(path)
        try:
            text = pathlib.Path(path).read_text()
        except OSError as exc:
            raise AuthError(f"cannot read credentials file {where}: {exc}") from exc
    else:
        where = "base64 credentials"
        try:
            text = base64.b64decode(base64_json, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthError(f"{where}: not valid base64 of a JSON key ({exc})") from exc
    try:
        info: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuthError(f"{where}: not valid JSON ({exc})") from exc
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            return service_account.Credentials.from_service_account_info(info, scopes=scopes)
        if kind == "authorized_user":
            return user_credentials.Credentials.from_authorized_user_info(info, scopes=scopes)
    except (ValueError, KeyError) as exc:
        raise AuthError(f"{where}: incomplete {kind} credentials ({exc})") from exc
    raise AuthError(
        f"{where}: type is {kind!r}; expected 'service_account' (a key JSON from the Cloud "
        "console) or 'authorized_user' (an OAuth login JSON)"
    )


def credential_key(credentials: google.auth.credentials.Credentials | None, endpoint: str) -> str:
    """A stable name for 'whose quota is this': the rate limiter is shared per key."""
    if credentials is None:
        return f"anonymous@{endpoint}"
    email = getattr(credentials, "service_account_email", None)
    if email:
        return f"{email}@{endpoint}"
    secret = f"{getattr(credentials, 'client_id', '')}:{getattr(credentials, 'refresh_token', '')}"
    return f"user-{hashlib.sha256(secret.encode()).hexdigest()[:16]}@{endpoint}"
