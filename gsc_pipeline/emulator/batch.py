"""The multipart/mixed batch protocol, as googleapiclient.http.BatchHttpRequest speaks it.

Each request part is `application/http` holding a whole HTTP request (path only, `\\n` line
endings from Python's email Generator). The answer repeats each part's Content-ID prefixed with
`response-`, because the client maps answers back by the id after ' + '.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus

MAX_CALLS = 1000


class BatchFormatError(ValueError):
    pass


@dataclass(frozen=True)
class BatchCall:
    content_id: str
    method: str
    target: str  # path and query, still percent-encoded
    headers: dict[str, str]
    body: bytes


def parse_batch(content_type: str, body: bytes) -> list[BatchCall]:
    if not content_type.lower().startswith("multipart/mixed"):
        raise BatchFormatError("Batch requests must be multipart/mixed.")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise BatchFormatError("Batch body is not multipart.")
    parts = list(message.iter_parts())
    if len(parts) > MAX_CALLS:
        raise BatchFormatError(f"A batch holds at most {MAX_CALLS} calls.")
    return [_parse_call(part.get("Content-ID", ""), part.get_payload(decode=True) or b"")
            for part in parts]  # fmt: skip


def _parse_call(content_id: str, payload: bytes) -> BatchCall:
    request_line, _, rest = payload.partition(b"\n")
    try:
        method, target, _version = request_line.decode().strip().split(" ", 2)
    except ValueError:
        raise BatchFormatError(f"Bad request line in batch part: {request_line!r}") from None
    inner = BytesParser(policy=HTTP).parsebytes(rest)
    headers = {k.lower(): str(v) for k, v in inner.items()}
    raw = inner.get_payload(decode=True) or b""
    return BatchCall(content_id.strip(), method, target, headers, raw)


def _response_id(content_id: str) -> str:
    # `<uuid + 1>` -> `<response-uuid + 1>`, the shape the client's _header_to_id() expects.
    if content_id.startswith("<") and content_id.endswith(">"):
        return f"<response-{content_id[1:-1]}>"
    return f"<response-{content_id}>"


def batch_response(answers: list[tuple[str, int, bytes]]) -> tuple[str, bytes]:
    """(content type, body) for [(content id, status, JSON body)] in request order."""
    boundary = "batch_" + uuid.uuid4().hex
    chunks: list[bytes] = []
    for content_id, status, body in answers:
        reason = HTTPStatus(status).phrase
        chunks.append(
            (
                f"--{boundary}\r\n"
                "Content-Type: application/http\r\n"
                f"Content-ID: {_response_id(content_id)}\r\n\r\n"
                f"HTTP/1.1 {status} {reason}\r\n"
                "Content-Type: application/json; charset=UTF-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/mixed; boundary={boundary}", b"".join(chunks)
