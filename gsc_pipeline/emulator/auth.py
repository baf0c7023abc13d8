"""OAuth2 token endpoint: service-account JWT-bearer and refresh_token grants.

The emulator issues its own RSA key (as a service-account key file) and its own OAuth client,
so real google-auth credentials whose token_uri points here obtain real-looking bearer tokens.
Tokens are opaque; each maps to the principal it was issued to, which keys per-user quotas.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import tempfile
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gsc_pipeline.emulator.config import AuthConfig

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3600
PROJECT_ID = "emulator-project"


class GrantError(Exception):
    """An OAuth error body: {"error": ..., "error_description": ...} with HTTP 400."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.body = {"error": error, "error_description": description}


class Authority:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._private_pem: str | None = None
        self._key_id: str | None = None
        self.client_id = f"{secrets.token_hex(6)}.apps.emulator.example"
        self.client_secret = secrets.token_urlsafe(18)
        self.refresh_token = "1//emulator-" + secrets.token_urlsafe(24)
        self.tokens: dict[str, str] = {}

    def _ensure_key(self) -> None:
        # Generated on first use: RSA keygen costs ~50 ms, and most tests never need it.
        if self._private_pem is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            self.trust_private_key(secrets.token_hex(20), pem)

    def trust_private_key(self, key_id: str, pem: str) -> None:
        """Adopt a key (e.g. one written by an earlier run) as the one the emulator issues."""
        private = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError("service-account keys must be RSA")
        self._keys[key_id] = private.public_key()
        self._private_pem, self._key_id = pem, key_id

    def service_account_info(self, token_uri: str) -> dict[str, Any]:
        self._ensure_key()
        email = self.config.service_account_email
        return {
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": self._key_id,
            "private_key": self._private_pem,
            "client_email": email,
            "client_id": "100000000000000000001",
            "auth_uri": token_uri.replace("/token", "/auth"),
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "",
            "client_x509_cert_url": "",
            "universe_domain": "googleapis.com",
        }

    def authorized_user_info(self, token_uri: str) -> dict[str, Any]:
        return {
            "type": "authorized_user",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "token_uri": token_uri,
            "account": self.config.user_email,
        }

    def grant(self, form: dict[str, str]) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        if grant_type == JWT_BEARER:
            principal = self._verify_assertion(form.get("assertion", ""))
        elif grant_type == "refresh_token":
            if (form.get("client_id"), form.get("client_secret")) != (
                self.client_id, self.client_secret
            ):
                raise GrantError("invalid_client", "The OAuth client was not found.")
            if form.get("refresh_token") != self.refresh_token:
                raise GrantError("invalid_grant", "Token has been expired or revoked.")
            principal = self.config.user_email
        else:
            raise GrantError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        token = "ya29.emu-" + secrets.token_urlsafe(32)
        self.tokens[token] = principal
        return {"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"}

    def _verify_assertion(self, assertion: str) -> str:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise GrantError("invalid_grant", "Invalid JWT: malformed assertion.") from None
        public_key = self._keys.get(header.get("kid", ""))
        if public_key is None:
            raise GrantError("invalid_grant", "Invalid JWT Signature.")
        try:
            # The audience is the token_uri the key file named; google-auth sets it from there.
            claims = jwt.decode(
                assertion, public_key, algorithms=["RS256"], options={"verify_aud": False}
            )
        except jwt.PyJWTError:
            raise GrantError("invalid_grant", "Invalid JWT Signature.") from None
        if "scope" not in claims and "target_audience" not in claims:
            raise GrantError("invalid_scope", "Empty or missing scope not allowed.")
        # With domain-wide delegation the token acts for `sub`.
        return str(claims.get("sub") or claims.get("iss"))

    def principal(self, authorization: str | None) -> tuple[str | None, bool]:
        """(principal, presented): presented is True when a bearer header was sent at all."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None, False
        return self.tokens.get(authorization[7:].strip()), True


def write_key_file(path: str | pathlib.Path, info: dict[str, Any]) -> pathlib.Path:
    """Write a key JSON readable by its owner only (0600), like a downloaded Google key.

    The file is created 0600 before any secret is in it (a temporary file in the same
    directory, then renamed over `path`), so the key is never world-readable, not even
    briefly, and a reused path loses any looser mode it had.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path
