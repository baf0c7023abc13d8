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


_KINDS = {"service_account": "service_account", "oauth": "authorized_user"}


def load_credentials(
    kind: str = "auto",
    *,
    path: str | os.PathLike[str] | None = None,
    json_text: str | None = None,
    scopes: tuple[str, ...] = SCOPES,
    source: str | None = None,
) -> google.auth.credentials.Credentials | None:
    """Credentials from a JSON key file, or its text (raw JSON or base64, e.g. from an env var).

    kind: 'none' (the emulator: returns None), 'service_account' (a key from the Cloud console),
    'oauth' (an authorized-user JSON with client_id, client_secret, refresh_token), or 'auto'
    (decided by the JSON's `type`). `source` names where `json_text` came from (e.g.
    "environment variable GSC_SA_KEY"), so an error says which variable to fix.
    """
    if kind == "none":
        return None
    if kind != "auto" and kind not in _KINDS:
        raise AuthError(f"credential kind {kind!r} is not one of none, service_account, oauth")
    if (path is None) == (json_text is None):
        raise AuthError(
            f"a {kind} credential needs exactly one of a key file path or the key JSON text"
        )
    where, info = _read_json(path, json_text, source)
    found = info.get("type")
    wanted = _KINDS.get(kind, found)
    if found != wanted or found not in _KINDS.values():
        raise AuthError(
            f"{where}: type is {found!r}; expected "
            + (repr(wanted) if kind != "auto" else "'service_account' or 'authorized_user'")
            + " (a service-account key JSON from the Cloud console, or an OAuth login JSON)"
        )
    try:
        if found == "service_account":
            return service_account.Credentials.from_service_account_info(info, scopes=scopes)
        user = user_credentials.Credentials.from_authorized_user_info(info, scopes=scopes)
        # from_authorized_user_info always sets Google's token endpoint; honour the file's
        # (the emulator issues tokens itself).
        return user.with_token_uri(info["token_uri"]) if info.get("token_uri") else user
    except (ValueError, KeyError) as exc:
        raise AuthError(f"{where}: incomplete {found} credentials ({exc})") from exc


def _read_json(
    path: str | os.PathLike[str] | None, json_text: str | None, source: str | None = None
) -> tuple[str, dict[str, Any]]:
    if path is not None:
        where = str(path)
        try:
            text = pathlib.Path(path).read_text()
        except OSError as exc:
            raise AuthError(f"cannot read credentials file {where}: {exc}") from exc
    else:
        where = source or "credentials JSON text"
        text = (json_text or "").strip()
        if not text.startswith("{"):
            try:
                text = base64.b64decode(text, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise AuthError(
                    f"{where}: neither JSON nor base64 of JSON ({exc}); it must hold the key "
                    "JSON (from the Cloud console, or an OAuth login), raw or base64-encoded"
                ) from exc
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuthError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise AuthError(f"{where}: expected a JSON object")
    return where, info


def credential_key(credentials: google.auth.credentials.Credentials | None, endpoint: str) -> str:
    """A stable name for 'whose quota is this': the rate limiter is shared per key."""
    if credentials is None:
        return f"anonymous@{endpoint}"
    email = getattr(credentials, "service_account_email", None)
    if email:
        return f"{email}@{endpoint}"
    secret = f"{getattr(credentials, 'client_id', '')}:{getattr(credentials, 'refresh_token', '')}"
    return f"user-{hashlib.sha256(secret.encode()).hexdigest()[:16]}@{endpoint}"
