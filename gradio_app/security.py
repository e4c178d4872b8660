"""Response headers that keep browsers from misreading or framing the public app.

``X-Content-Type-Options: nosniff`` stops a browser from running an upload served back as a
script; ``frame-ancestors 'none'`` (and the older ``X-Frame-Options``) stops another site from
framing the app to trick its users into clicks; no referrer leaves for other sites. A pure ASGI
middleware, so streamed responses (the queue's server-sent events) pass through untouched.
"""

from __future__ import annotations

from typing import Any

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeaders:
    """Adds :data:`HEADERS` to every HTTP response (replacing any of the same name)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = kept + list(HEADERS)
            await send(message)

        await self.app(scope, receive, with_headers)
