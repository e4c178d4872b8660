"""Fair use of the public app: no one client can shut the others out.

Gradio's queue is shared: 65 LIME requests sent at once by one client filled it, and every
verdict after that failed with "Queue is full". :class:`FairUse` is an ASGI middleware in front
of the queue and the upload route that, per client (its IP address, and its browser session
separately), allows

- a number of requests per moving window, by kind: predictions, explanations, uploads and
  the page's own small events (the ``limits`` library's moving-window limiter, in memory;
  defaults :data:`RULES`);
- a few explanations waiting or running at once (``explain_in_flight``);

and it refuses an upload that would take the stored uploads past ``upload_budget`` bytes on disk
(Gradio deletes them after a few minutes; the budget bounds what a burst can store meanwhile),
and stores every upload under a random name, never the uploader's file name;

and, for everyone together, at most ``explain_capacity`` explanations waiting or running, so that
explanations can never take the queue's room from predictions. A refused request gets HTTP 429
and a sentence saying what to do. A call naming a file that was not uploaded here (a server path
or a web address) gets HTTP 422 and a sentence, where Gradio answered ``{"error": null}``. An
event call the app does not take from outside (:mod:`gradio_app.events`) gets HTTP 404 or 422
and a sentence. The
event functions call :meth:`Ledger.done` when an explanation ends; an explanation whose client
vanished is forgotten after :data:`FORGET_S`.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from gradio_app.events import Events, RefusedError
from pipeline.data.layouts import IMAGE_SUFFIXES

RULES: dict[str, str] = {
    "predict": "30/minute;300/hour",
    "explain": "6/minute;60/hour",
    "upload": "30/minute;300/hour",
    # The model card and banner on page load, the image as read and the card after each upload.
    "page": "120/minute;1200/hour",
}
EXPLAIN_IN_FLIGHT = 2
FORGET_S = 300.0
MESSAGES = {
    "rate": "You have sent many {kind} requests in a short time; please wait a minute and "
    "try again. (Everyone shares this service, so each visitor gets a fair share.)",
    "in_flight": "Your earlier explanations are still being made; wait for them to finish "
    "before asking for another.",
    "disk": "The service is holding too many uploads right now; try again in a minute (each "
    "upload is deleted within minutes).",
    "busy": "Many people are asking for explanations right now; the verdict and Grad-CAM still "
    "work — try LIME or SHAP again in a minute.",
}


class Ledger:
    """The counts behind the limits of one app: requests per client and kind in moving windows,
    and the explanations waiting or running (see the module docstring)."""

    def __init__(
        self,
        rules: dict[str, str] | None = None,
        explain_in_flight: int = EXPLAIN_IN_FLIGHT,
        explain_capacity: int = 24,
        upload_budget: int = 512 * 2**20,
    ) -> None:
        self.upload_budget = upload_budget
        self.explain_in_flight = explain_in_flight
        self.explain_capacity = explain_capacity
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.rules = {kind: parse_many(text) for kind, text in {**RULES, **(rules or {})}.items()}
        self.lock = threading.Lock()
        self.pending: dict[str, deque[float]] = {}

    def admit(self, kind: str, clients: list[str]) -> str | None:
        """None if the request may go ahead (and it is counted), else the sentence refusing it.

        ``clients``: the keys it counts under, its IP address first.
        """
        with self.lock:
            now = time.monotonic()
            if kind == "explain":
                for queue in self.pending.values():
                    while queue and now - queue[0] > FORGET_S:
                        queue.popleft()
                if len(self.pending.get(clients[0], ())) >= self.explain_in_flight:
                    return MESSAGES["in_flight"]
                if sum(len(q) for q in self.pending.values()) >= self.explain_capacity:
                    return MESSAGES["busy"]
            for client in clients:
                for item in self.rules[kind]:
                    if not self.limiter.test(item, kind, client):
                        return MESSAGES["rate"].format(kind=_WORDS[kind])
            for client in clients:
                for item in self.rules[kind]:
                    self.limiter.hit(item, kind, client)
            if kind == "explain":
                self.pending.setdefault(clients[0], deque()).append(now)
        return None

    def disk_full(self, incoming: int) -> bool:
        """Whether ``incoming`` more bytes would take the stored uploads past the budget."""
        from gradio.utils import get_upload_folder

        stored = sum(f.stat().st_size for f in Path(get_upload_folder()).rglob("*") if f.is_file())
        return stored + incoming > self.upload_budget

    def done(self, host: str | None) -> None:
        """An explanation for the client at ``host`` ended (or failed)."""
        with self.lock:
            queue = self.pending.get(f"ip:{host}")
            if queue:
                queue.popleft()


class FairUse:
    """ASGI middleware applying a :class:`Ledger` in front of Gradio's event routes and upload
    route; ``events`` says which event calls are taken and which kind each counts as."""

    def __init__(self, app: Any, ledger: Ledger, events: Events) -> None:
        self.app = app
        self.ledger = ledger
        self.events = events

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.endswith("/upload"):
            if self.ledger.disk_full(_content_length(scope)):
                await _answer(send, 503, MESSAGES["disk"])
                return
            refusal = self.ledger.admit("upload", _clients(scope, None))
            if refusal is None:
                scope, receive = await _anonymised(scope, receive)
        elif self.events.is_event_call(path):
            body, receive = await _read_body(receive)
            payload = _json_object(body)
            refusal = _foreign_file(payload)
            if refusal is not None:
                await _answer(send, 422, refusal)
                return
            try:
                kind = self.events.kind(path, payload)
            except RefusedError as err:
                await _answer(send, err.status, str(err))
                return
            refusal = self.ledger.admit(kind, _clients(scope, payload.get("session_hash")))
        else:
            refusal = None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await _answer(send, 429, refusal)


_WORDS = {"predict": "verdict", "explain": "explanation", "upload": "upload", "page": "page"}


NOT_AN_UPLOAD = (
    "Send the X-ray itself: upload the file first (POST /gradio_api/upload) and pass the path "
    "it returns. This service does not open files on its own disk or fetch web addresses."
)


def _json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; empty when it is not one (Gradio then refuses it)."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _foreign_file(data: Any) -> str | None:
    """A sentence refusing ``data`` (a request body, searched all through: ``/call/v2/`` takes
    named arguments) when it names a file that was not uploaded here (a server path, a web
    address), else None."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()).resolve()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and not Path(path).resolve().is_relative_to(folder):
                return NOT_AN_UPLOAD
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
    return None


async def _answer(send: Any, status: int, sentence: str) -> None:
    body = json.dumps({"error": sentence, "detail": sentence}).encode()
    headers = [(b"content-type", b"application/json")]
    if status == 429:
        headers.append((b"retry-after", b"60"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_FILENAME = re.compile(rb'(Content-Disposition:[^\r\n]*?filename=")([^"\r\n]*)(")', re.IGNORECASE)


async def _anonymised(scope: dict, receive: Any) -> tuple[dict, Any]:
    """The upload with every file renamed at random (its extension kept), so that neither the
    uploader's file name nor anything it says is stored or sent back in a path."""
    body, _ = await _read_body(receive)

    def rename(match: re.Match[bytes]) -> bytes:
        suffix = Path(match.group(2).decode("utf-8", "replace")).suffix.lower()
        keep = suffix if suffix in IMAGE_SUFFIXES else ""
        return match.group(1) + f"upload-{uuid.uuid4().hex}{keep}".encode() + match.group(3)

    body = _FILENAME.sub(rename, body)
    headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    return {**scope, "headers": headers}, _replaying(body, receive)


def _content_length(scope: dict) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0


def _clients(scope: dict, session: str | None) -> list[str]:
    """The keys a request is counted under: its IP address, and its session when it has one."""
    host = (scope.get("client") or ("unknown", 0))[0]
    return [f"ip:{host}"] + ([f"session:{session}"] if session else [])


async def _read_body(receive: Any) -> tuple[bytes, Any]:
    """The whole request body, and a ``receive`` that hands it on unchanged."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    return body, _replaying(body, receive)


def _replaying(body: bytes, receive: Any) -> Any:
    """A ``receive`` that hands on ``body`` as the whole request, then whatever follows."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
