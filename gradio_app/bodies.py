"""Request bodies read with a bound, for the fair-use middleware (:mod:`gradio_app.flood`).

An ASGI body arrives in chunks, with a ``Content-Length`` or chunked. :func:`read_body` counts
the bytes as they come and stops reading at the limit, so neither a chunked upload nor a
chunked JSON body is ever held whole in memory past it; the body read is handed on unchanged by
a replaying ``receive``. :func:`anonymised` renames every file of a multipart upload at random
and :func:`file_sizes` measures them.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

from pipeline.data.layouts import IMAGE_SUFFIXES

# A multipart body's own framing (boundaries, part headers) on top of its files.
MULTIPART_SLACK = 64 * 2**10
# Event calls carry a few file references and numbers; nothing the app takes is larger.
MAX_JSON_BYTES = 256 * 2**10
# Image suffixes a renamed upload keeps (the content decides the format, not the name).
KEPT_SUFFIXES = IMAGE_SUFFIXES | {".gif", ".webp"}

_BOUNDARY = re.compile(rb"boundary=(\"[^\"]+\"|[^;\s]+)", re.IGNORECASE)
_FILENAME = re.compile(rb'(Content-Disposition:[^\r\n]*?filename=")([^"\r\n]*)(")', re.IGNORECASE)


class BodyTooLargeError(Exception):
    """More than ``limit`` bytes arrived; reading stopped there."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit


def content_length(scope: dict) -> int | None:
    """The request's declared ``Content-Length`` (None when absent or not a number)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


async def read_body(receive: Any, limit: int) -> tuple[bytes, Any]:
    """The whole request body and a ``receive`` that hands it on unchanged; raises
    :class:`BodyTooLargeError` as soon as more than ``limit`` bytes have arrived."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    return body, replaying(body, receive)


def replaying(body: bytes, receive: Any) -> Any:
    """A ``receive`` that hands on ``body`` as the whole request, then whatever follows."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# RFC 2046: a multipart boundary is 1 to 70 characters.
MAX_BOUNDARY = 70
# Deeper than any call the app takes; Python's JSON decoder raises RecursionError near 1,000.
MAX_JSON_DEPTH = 32
NOT_JSON = object()


def is_multipart(scope: dict) -> bool:
    """Whether the request says it is multipart/form-data with a boundary of legal length."""
    kind = dict(scope.get("headers", [])).get(b"content-type", b"")
    boundary = _BOUNDARY.search(kind)
    return (
        kind.lower().startswith(b"multipart/form-data")
        and boundary is not None
        and 0 < len(boundary.group(1).strip(b'"')) <= MAX_BOUNDARY
    )


def json_body(scope: dict, body: bytes) -> Any:
    """The parsed JSON of a request body that is meant to be JSON (any body but a form's);
    None when empty or a form, :data:`NOT_JSON` when it is not valid JSON or nests deeper than
    :data:`MAX_JSON_DEPTH` (Gradio's parser would fail on it with an error 500)."""
    kind = dict(scope.get("headers", [])).get(b"content-type", b"").lower()
    if not body.strip() or kind.startswith((b"multipart/", b"application/x-www-form-urlencoded")):
        return None
    if _depth(body) > MAX_JSON_DEPTH:
        return NOT_JSON
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return NOT_JSON


def _depth(body: bytes) -> int:
    """How deep the brackets of a JSON text nest (strings skipped), without parsing it."""
    depth = most = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            most = max(most, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return most


def file_sizes(scope: dict, body: bytes) -> list[int]:
    """The size in bytes of each file a multipart body carries (parts with a file name), by
    the boundary its ``Content-Type`` names; empty for any other body."""
    boundary = _BOUNDARY.search(dict(scope.get("headers", [])).get(b"content-type", b""))
    if boundary is None:
        return []
    sizes = []
    for part in body.split(b"--" + boundary.group(1).strip(b'"')):
        head, gap, content = part.partition(b"\r\n\r\n")
        if gap and _FILENAME.search(head):
            sizes.append(len(content) - 2 if content.endswith(b"\r\n") else len(content))
    return sizes


def anonymised(scope: dict, body: bytes, receive: Any) -> tuple[dict, Any]:
    """The upload with every file renamed at random (its image suffix kept), so that neither
    the uploader's file name nor anything it says is stored or sent back in a path; returns the
    scope with the new ``Content-Length`` and a ``receive`` that hands the new body on."""

    def rename(match: re.Match[bytes]) -> bytes:
        suffix = Path(match.group(2).decode("utf-8", "replace")).suffix.lower()
        keep = suffix if suffix in KEPT_SUFFIXES else ""
        return match.group(1) + f"upload-{uuid.uuid4().hex}{keep}".encode() + match.group(3)

    body = _FILENAME.sub(rename, body)
    headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    return {**scope, "headers": headers}, replaying(body, receive)
