"""The outermost layer of the public app's server: what every response carries.

:class:`Edge` wraps the whole ASGI application, outside Gradio's own middleware (CORS,
compression, Starlette's error handler), so that every response, an error included, gets:

- security headers: ``X-Content-Type-Options: nosniff`` stops a browser from running an upload
  served back as a script; ``frame-ancestors 'none'`` (and the older ``X-Frame-Options``) stops
  another site from framing the app to trick its users into clicks; ``script-src`` lets the page
  run only its own scripts (Gradio's page needs inline and evaluated ones: the app's ``js=``
  handler is run with ``new Function``), never one from another site; no referrer leaves;
- no CORS grant: Gradio answers any origin, and ``localhost`` ones on a local server, with
  ``Access-Control-Allow-Credentials: true``; the page is served from the app's own origin and
  needs none, so another site's script can never read the app's answers in a visitor's browser;
- a sentence instead of an unhandled exception: the error is logged with its traceback and the
  client gets a JSON 500 with the headers above, on a connection that stays open.

:func:`harden` installs it on a launched server and drops uvicorn's ``server`` banner. A pure
ASGI wrapper, so streamed responses (the queue's server-sent events) pass through untouched.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"frame-ancestors 'none'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
        b"object-src 'none'; base-uri 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
FAILED = (
    "Something went wrong on the server while answering this request; it has been logged. "
    "Try again, and if it keeps happening, tell the people who run this service."
)
_REPLACED = {name for name, _ in HEADERS} | {b"server"}


class Edge:
    """The layer the module docstring describes, around the ASGI ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def guarded(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                kept = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in _REPLACED and not k.lower().startswith(b"access-control-")
                ]
                message = {**message, "headers": kept + list(HEADERS)}
            await send(message)

        try:
            await self.app(scope, receive, guarded)
        except Exception:
            print(f"error answering {scope['method']} {scope['path']}:", file=sys.stderr)
            traceback.print_exc()
            if started:  # the answer was under way: it is cut short, as it must be
                return
            body = json.dumps({"error": FAILED, "detail": FAILED}).encode()
            await guarded(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})


def harden(server: Any) -> None:
    """Put :class:`Edge` around a running uvicorn ``server``'s application and drop its
    ``server: uvicorn`` header. Each new connection takes the application from the server's
    config, so this holds from the next connection on."""
    config = server.config
    if not isinstance(config.loaded_app, Edge):
        config.loaded_app = Edge(config.loaded_app)
    config.encoded_headers = [(k, v) for k, v in config.encoded_headers if k != b"server"]
    # The server refreshes these from the config every second; until then, drop it here too.
    state = server.server_state
    state.default_headers = [(k, v) for k, v in state.default_headers if k != b"server"]
