"""Fair use of the public app: no one client can shut the others out.

Gradio's queue is shared: 65 LIME requests sent at once by one client filled it, and every
verdict after that failed with "Queue is full". :class:`FairUse` is an ASGI middleware in front
of the queue and the upload route that, per client (its IP address, and its browser session
separately), allows

- a number of requests per moving window, by kind: predictions, explanations, uploads and
  the page's own small events (the ``limits`` library's moving-window limiter, in memory;
  defaults :data:`RULES`);
- a few explanations waiting or running at once (``explain_in_flight``);

and it bounds what uploads can cost (:mod:`gradio_app.bodies` reads every body counting its
bytes and stops at the limit, chunked or not): one file per upload request and at most
``max_upload`` bytes in it; per client at most a quarter of the upload budget per
:data:`VOLUME_WINDOW`; for everyone together at most ``upload_budget`` bytes stored on disk,
counting the uploads still arriving (Gradio deletes stored uploads after a few minutes); every
upload is stored under a random name, never the uploader's file name. Every other request body
is bounded by :data:`gradio_app.bodies.MAX_JSON_BYTES`, and the routes of components the app
does not have (recordings, streams, component servers) are closed;

and, for everyone together, at most ``explain_capacity`` explanations waiting or running, so that
explanations can never take the queue's room from predictions. A refused request gets HTTP
429 (413 when it is too large, 503 when the disk budget is full) and a sentence saying what to
do. A call naming a file that was not uploaded here (a server path, a web address, a name with a
NUL byte) gets HTTP 422 and a sentence, where Gradio answered ``{"error": null}`` or 500. An
event call the app does not take from outside (:mod:`gradio_app.events`) gets HTTP 404 or 422
and a sentence. The event functions call :meth:`Ledger.done` when an explanation ends, and an
explanation call that is answered with an error gives its slot back at once; an explanation
whose client vanished is forgotten after :data:`FORGET_S`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from limits import parse, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from gradio_app import bodies
from gradio_app.events import NO_ANSWER, Events, RefusedError

RULES: dict[str, str] = {
    "predict": "30/minute;300/hour",
    "explain": "6/minute;60/hour",
    "upload": "30/minute;300/hour",
    # The model card and banner on page load, the image as read and the card after each upload.
    "page": "120/minute;1200/hour",
}
EXPLAIN_IN_FLIGHT = 2
FORGET_S = 300.0
# Uploads are deleted 10 minutes after they arrive: a client's upload volume counts over that.
VOLUME_WINDOW = "10 minutes"
MESSAGES = {
    "rate": "You have sent many {kind} requests in a short time; please wait a minute and "
    "try again. (Everyone shares this service, so each visitor gets a fair share.)",
    "in_flight": "Your earlier explanations are still being made; wait for them to finish "
    "before asking for another.",
    "disk": "The service is holding too many uploads right now; try again in a minute (each "
    "upload is deleted within minutes).",
    "too_large": "This upload is {size}larger than the {limit} the service takes: downscale it "
    "or save it as a compressed PNG / JPEG (a chest X-ray rarely needs more than 4096×4096 "
    "pixels).",
    "one_file": "Send one X-ray per upload (this request carried {n} files).",
    "volume": "You have uploaded about {mb} MB in the last 10 minutes, the most one visitor may "
    "store at once; uploads are deleted 10 minutes after they arrive, so try again in a few "
    "minutes.",
    "body": "This request is larger than any the app takes ({limit}): to send an X-ray, upload "
    "the file first (POST /gradio_api/upload) and pass the path it returns.",
    "json": "This request's body is not valid JSON (or nests deeper than any call the app "
    "takes); the 'Use via API' link at the foot of the page shows what to send.",
    "multipart": "Send the file as multipart/form-data, as a browser form or gradio_client "
    "does (one part named 'files', with a boundary of at most 70 characters).",
    "closed": "This app takes no recordings, streams or component requests: upload a chest "
    "X-ray file (PNG, JPEG or DICOM) instead.",
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
        max_upload: int = 20 * 2**20,
        upload_per_client: int | None = None,
    ) -> None:
        self.upload_budget = upload_budget
        self.max_upload = max_upload
        # Per client, counted in kB: by default a quarter of the budget, so that no one visitor
        # can fill it.
        per_client = upload_budget // 4 if upload_per_client is None else upload_per_client
        self.volume = parse(f"{max(1, per_client // 2**10)}/{VOLUME_WINDOW}")
        self.arriving = 0  # bytes of uploads being received, not yet on disk
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

    def space_left(self) -> int:
        """Bytes of the upload budget not taken by stored uploads or uploads arriving."""
        from gradio.utils import get_upload_folder

        stored = sum(f.stat().st_size for f in Path(get_upload_folder()).rglob("*") if f.is_file())
        with self.lock:
            return self.upload_budget - stored - self.arriving

    def take_space(self, n: int) -> bool:
        """Hold ``n`` bytes of the budget for an upload arriving; False when they do not fit."""
        left = self.space_left()
        with self.lock:
            if n > left:
                return False
            self.arriving += n
            return True

    def give_space(self, n: int) -> None:
        with self.lock:
            self.arriving -= n

    def admit_volume(self, client: str, n: int) -> str | None:
        """None if ``client`` may store ``n`` more bytes of uploads (they are counted), else the
        sentence refusing them."""
        kb = max(1, -(-n // 2**10))
        with self.lock:
            if self.limiter.hit(self.volume, "upload_kb", client, cost=kb):
                return None
            stats = self.limiter.get_window_stats(self.volume, "upload_kb", client)
        used = (self.volume.amount - stats.remaining) / 2**10
        return MESSAGES["volume"].format(mb=f"{used:.0f}")

    def done(self, host: str | None) -> None:
        """An explanation for the client at ``host`` ended (or failed)."""
        self.release(f"ip:{host}")

    def release(self, client: str) -> None:
        """Give back one of ``client``'s explanation slots."""
        with self.lock:
            queue = self.pending.get(client)
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
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            if self.events.stream_known(scope["path"], scope.get("query_string", b"")) is False:
                await _answer(send, 404, NO_ANSWER)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.endswith("/upload"):
            await self._upload(scope, receive, send)
            return
        if _CLOSED.search(path):
            await _answer(send, 404, MESSAGES["closed"])
            return
        try:
            body, receive = await bodies.read_body(receive, bodies.MAX_JSON_BYTES)
        except bodies.BodyTooLargeError:
            await _answer(send, 413, MESSAGES["body"].format(limit=_mb(bodies.MAX_JSON_BYTES)))
            return
        parsed = bodies.json_body(scope, body)
        if parsed is bodies.NOT_JSON:
            await _answer(send, 400, MESSAGES["json"])
            return
        if not self.events.is_event_call(path):
            await self.app(scope, receive, send)
            return
        payload = parsed if isinstance(parsed, dict) else {}
        refusal = _foreign_file(payload)
        if refusal is not None:
            await _answer(send, 422, refusal)
            return
        try:
            kind = self.events.kind(path, payload)
        except RefusedError as err:
            await _answer(send, err.status, str(err))
            return
        clients = _clients(scope, payload.get("session_hash"))
        refusal = self.ledger.admit(kind, clients)
        if refusal is not None:
            await _answer(send, 429, refusal)
            return
        if kind != "explain":
            await self.app(scope, receive, send)
            return
        # An explanation refused further in (queue full, arguments Gradio rejects) never runs
        # the function that gives its slot back: give it back here.
        released = False

        async def watching(message: dict) -> None:
            nonlocal released
            if message["type"] == "http.response.start" and message["status"] >= 400:
                released = True
                self.ledger.release(clients[0])
            await send(message)

        try:
            await self.app(scope, receive, watching)
        except BaseException:
            if not released:
                self.ledger.release(clients[0])
            raise

    async def _upload(self, scope: dict, receive: Any, send: Any) -> None:
        """One upload, bounded (see the module docstring), renamed and handed to Gradio."""
        ledger = self.ledger
        if not bodies.is_multipart(scope):
            await _answer(send, 400, MESSAGES["multipart"])
            return
        most = ledger.max_upload + bodies.MULTIPART_SLACK
        declared = bodies.content_length(scope)
        if declared is not None and declared > most:
            await _too_large(send, declared, ledger.max_upload)
            return
        clients = _clients(scope, None)
        refusal = ledger.admit("upload", clients)
        if refusal is not None:
            await _answer(send, 429, refusal)
            return
        held = most if declared is None else declared
        if not ledger.take_space(held):
            await _answer(send, 503, MESSAGES["disk"])
            return
        try:
            try:
                body, receive = await bodies.read_body(receive, most)
            except bodies.BodyTooLargeError:
                await _too_large(send, None, ledger.max_upload)
                return
            sizes = bodies.file_sizes(scope, body)
            if len(sizes) > 1:
                await _answer(send, 413, MESSAGES["one_file"].format(n=len(sizes)))
                return
            if sizes and sizes[0] > ledger.max_upload:
                await _too_large(send, sizes[0], ledger.max_upload)
                return
            refusal = ledger.admit_volume(clients[0], sum(sizes))
            if refusal is not None:
                await _answer(send, 429, refusal)
                return
            scope, receive = bodies.anonymised(scope, body, receive)
            del body
            await self.app(scope, receive, send)
        finally:
            ledger.give_space(held)


_WORDS = {"predict": "verdict", "explain": "explanation", "upload": "upload", "page": "page"}
# Routes of components the app does not have.
_CLOSED = re.compile(
    r"/gradio_api/(?:process_recording|component_server|stream/|vibe-|undo-vibe|run-history)"
)


NOT_AN_UPLOAD = (
    "Send the X-ray itself: upload the file first (POST /gradio_api/upload) and pass the path "
    "it returns. This service does not open files on its own disk or fetch web addresses."
)
# Longer than any path of Gradio's upload folder.
_MAX_PATH = 1024


def _mb(n: int) -> str:
    return f"{n / 2**20:.3g} MB" if n >= 2**20 else f"{n / 2**10:.3g} kB"


async def _too_large(send: Any, size: int | None, limit: int) -> None:
    """413 with :data:`MESSAGES` ``too_large``; ``size`` in bytes, None when not known."""
    told = "" if size is None else f"{_mb(size)}, "
    await _answer(send, 413, MESSAGES["too_large"].format(size=told, limit=_mb(limit)))


def _foreign_file(data: Any) -> str | None:
    """A sentence refusing ``data`` (a request body, searched all through: ``/call/v2/`` takes
    named arguments) when it names a file that was not uploaded here (a server path, a web
    address, a name no file system takes), else None."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()).resolve()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            path = item.get("path")
            # A named call's argument "path" holds the file itself: searched below.
            nested = isinstance(path, dict | list)
            if path is not None and not nested and not _is_upload_path(path, folder):
                return NOT_AN_UPLOAD
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
    return None


def _is_upload_path(path: Any, folder: Path) -> bool:
    """Whether ``path`` could name a file in the upload ``folder``."""
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > _MAX_PATH:
        return False
    try:
        return Path(path).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


async def _answer(send: Any, status: int, sentence: str) -> None:
    body = json.dumps({"error": sentence, "detail": sentence}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status in (429, 503):
        headers.append((b"retry-after", b"60"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _clients(scope: dict, session: Any) -> list[str]:
    """The keys a request is counted under: its IP address, and its session when it has one."""
    host = (scope.get("client") or ("unknown", 0))[0]
    session = session if isinstance(session, str) and session else None
    return [f"ip:{host}"] + ([f"session:{session[:64]}"] if session else [])
