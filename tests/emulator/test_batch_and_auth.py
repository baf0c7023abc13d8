"""The batch endpoint via BatchHttpRequest, and the token flow via real google-auth credentials."""

from __future__ import annotations

import json
import pathlib
import stat
from collections.abc import Callable
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.exceptions import RefreshError
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from gsc_pipeline.emulator.testing import EmulatorHandle

from .client import PREFIX_SITE, SITE, UNVERIFIED, query, service_for

SCOPES = ["https://www.googleapis.com/auth/webmasters.readonly"]
DAY = {"startDate": "2026-08-01", "endDate": "2026-08-01"}


def _run_batch(gsc: EmulatorHandle, service: Any, calls: list[tuple[str, dict]],
               http: httplib2.Http | None = None) -> dict[str, tuple[Any, Any]]:  # fmt: skip
    answers: dict[str, tuple[Any, Any]] = {}
    batch = BatchHttpRequest(
        callback=lambda rid, resp, exc: answers.__setitem__(rid, (resp, exc)),
        batch_uri=gsc.batch_url,
    )
    for site, body in calls:
        batch.add(service.searchanalytics().query(siteUrl=site, body=body))
    batch.execute(http=http or httplib2.Http())
    return answers


def test_batch_parts_answer_in_order_and_fail_independently(emulator: EmulatorHandle) -> None:
    service = service_for(emulator)
    calls = [
        (SITE, {**DAY, "dimensions": ["page"], "rowLimit": 3}),
        (UNVERIFIED, DAY),
        (PREFIX_SITE, {**DAY, "dimensions": ["query"], "rowLimit": 2}),
        (SITE, {**DAY, "dimensions": ["page", "page"]}),
    ]
    answers = _run_batch(emulator, service, calls)
    assert list(answers) == ["1", "2", "3", "4"]
    assert answers["1"][0] == query(service, **calls[0][1])
    assert answers["3"][0] == query(service, PREFIX_SITE, **calls[2][1])
    assert isinstance(answers["2"][1], HttpError) and answers["2"][1].resp.status == 403
    assert isinstance(answers["4"][1], HttpError) and answers["4"][1].resp.status == 400
    stats = emulator.stats()
    assert stats["requests_by_status"] == {"200": 4, "403": 1, "400": 1}
    assert stats["requests_by_site"][PREFIX_SITE] == 2


def test_each_batched_call_counts_against_quota(
    make_emulator: Callable[..., EmulatorHandle],
) -> None:
    gsc = make_emulator(quotas={"site_qpm": 5})
    answers = _run_batch(gsc, service_for(gsc), [(SITE, DAY)] * 7)
    statuses = [exc.resp.status if exc else 200 for _, exc in answers.values()]
    assert statuses == [200] * 5 + [429] * 2
    assert gsc.stats()["quota_rejections"]["site"] == 2


def test_batch_scripted_fault_hits_only_its_part(emulator: EmulatorHandle) -> None:
    emulator.script_fault(PREFIX_SITE, status=503)
    answers = _run_batch(emulator, service_for(emulator), [(SITE, DAY), (PREFIX_SITE, DAY)])
    assert answers["1"][1] is None
    assert answers["2"][1].resp.status == 503


def test_malformed_batch_is_400(emulator: EmulatorHandle) -> None:
    response, content = httplib2.Http().request(
        emulator.batch_url, "POST", body="not multipart", headers={"content-type": "text/plain"}
    )
    assert response.status == 400
    assert json.loads(content)["error"]["code"] == 400


def _user_credentials(info: dict[str, Any]) -> user_credentials.Credentials:
    # from_authorized_user_info() always resets token_uri to Google's, so build directly.
    return user_credentials.Credentials(
        None,
        refresh_token=info["refresh_token"],
        token_uri=info["token_uri"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        scopes=SCOPES,
    )


def _authorized_service(gsc: EmulatorHandle, credentials: Any) -> tuple[Any, httplib2.Http]:
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http())
    return service_for(gsc, http), http


def test_service_account_key_obtains_a_token(
    emulator: EmulatorHandle, tmp_path: pathlib.Path
) -> None:
    key = emulator.write_service_account_key(tmp_path / "key.json")
    info = json.loads(key.read_text())
    assert info["token_uri"] == emulator.base_url + "token"
    credentials = service_account.Credentials.from_service_account_file(str(key), scopes=SCOPES)
    emulator.set_switch("auth_required", True)
    service, http = _authorized_service(emulator, credentials)
    assert query(service)["rows"]
    assert credentials.token and credentials.valid
    # Batches carry the token in every part.
    answers = _run_batch(emulator, service, [(SITE, DAY)], http=http)
    assert answers["1"][1] is None
    assert list(emulator.stats()["peak_qpm_by_user"]) == [info["client_email"]]


def test_refresh_token_grant(emulator: EmulatorHandle, tmp_path: pathlib.Path) -> None:
    path = emulator.write_authorized_user(tmp_path / "user.json")
    credentials = _user_credentials(json.loads(path.read_text()))
    emulator.set_switch("auth_required", True)
    service, _ = _authorized_service(emulator, credentials)
    assert query(service)["rows"]
    assert emulator.stats()["peak_qpm_by_user"] == {"user@example.com": 1}


def test_key_files_are_readable_by_their_owner_only(
    emulator: EmulatorHandle, tmp_path: pathlib.Path
) -> None:
    # A path that already exists world-readable must not keep its mode.
    old = tmp_path / "old.json"
    old.write_text("{}")
    old.chmod(0o644)
    for path in (
        emulator.write_service_account_key(tmp_path / "key.json"),
        emulator.write_authorized_user(tmp_path / "user.json"),
        emulator.write_service_account_key(old),
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert json.loads(path.read_text())["client_id"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.json", "old.json", "user.json"]


def test_refresh_token_grant_rejects_a_wrong_token(emulator: EmulatorHandle) -> None:
    info = {**emulator.authorized_user_info(), "refresh_token": "1//forged"}
    credentials = _user_credentials(info)
    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials.refresh(google_auth_httplib2.Request(httplib2.Http()))


def test_jwt_signed_by_another_key_is_rejected(emulator: EmulatorHandle) -> None:
    info = emulator.service_account_info()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info["private_key"] = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials.refresh(google_auth_httplib2.Request(httplib2.Http()))


def test_auth_required_rejects_missing_and_invalid_tokens(emulator: EmulatorHandle) -> None:
    emulator.set_switch("auth_required", True)
    for headers, reason in (({}, "required"), ({"Authorization": "Bearer nope"}, "authError")):
        http = httplib2.Http()
        with pytest.raises(HttpError) as caught:
            service_for(emulator, http).searchanalytics().query(
                siteUrl=SITE, body=DAY
            ).execute(http=_with_headers(http, headers))
        assert caught.value.resp.status == 401
        error = json.loads(caught.value.content)["error"]
        assert error["status"] == "UNAUTHENTICATED"
        assert error["errors"][0]["reason"] == reason


def _with_headers(http: httplib2.Http, extra: dict[str, str]) -> httplib2.Http:
    """An Http that adds headers to every request (a stand-in for a bad credential)."""
    original = http.request

    def request(uri: str, method: str = "GET", body: Any = None, headers: Any = None,
                **kwargs: Any) -> Any:  # fmt: skip
        return original(uri, method, body, {**(headers or {}), **extra}, **kwargs)

    http.request = request  # type: ignore[method-assign]
    return http


def test_tokens_key_per_user_quotas(
    make_emulator: Callable[..., EmulatorHandle], tmp_path: pathlib.Path
) -> None:
    gsc = make_emulator(quotas={"user_qpm": 3})
    sa = service_account.Credentials.from_service_account_file(
        str(gsc.write_service_account_key(tmp_path / "k.json")), scopes=SCOPES
    )
    user = _user_credentials(gsc.authorized_user_info())
    for credentials in (sa, user):
        service, _ = _authorized_service(gsc, credentials)
        for _ in range(3):
            query(service)
        with pytest.raises(HttpError) as caught:
            query(service)
        assert caught.value.resp.status == 429
    assert gsc.stats()["quota_rejections"]["user"] == 2
