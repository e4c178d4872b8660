"""Which event calls the public app accepts over HTTP, on which route, and with what arguments.

What Gradio 6 offers (checked against gradio 6.31's routes) and what it does not:

- ``api_visibility="private"`` only hides an event from the API page and from
  ``gradio_client``; Gradio still runs it for any HTTP client that names it, by name on
  ``/gradio_api/call/<name>`` and ``/call/v2/<name>``, by ``fn_index`` on
  ``/gradio_api/queue/join`` and ``/gradio_api/run/predict``.
- Off Hugging Face Spaces, Gradio's default ``queue(api_open=True)`` also runs the *queued*
  events (``/predict``, ``/lime``, ``/shap``) on ``/gradio_api/run/<name>``, past the queue, its
  concurrency limits and the fair-use limits; the app sets ``api_open=False``.
- The browser calls the page's own events exactly as any client can: the unqueued ones by
  ``fn_index`` on ``/gradio_api/run/predict``, the queued ones on ``/gradio_api/queue/join``,
  under a session hash it makes up itself. Nothing in such a request tells the page from a script
  that copies it, so **an event the page needs cannot be closed to a determined client**.

The page's own events are therefore kept few and made harmless:

- clearing the LIME and SHAP boxes on a new upload runs in the browser (no server function);
- an event is accepted only on the route the page itself uses: the ``/call/`` routes take
  ``/predict``, ``/lime`` and ``/shap`` only; ``/run/`` (and its alias ``/api/``) takes only the
  page's unqueued events, by ``fn_index``; ``queue/join`` takes only queued events;
- a page event's arguments must have the shape the page sends (an uploaded file or nothing for
  the upload box, an example's number for the examples, no arguments otherwise);
- every page event counts against the ``page`` fair-use limit (:mod:`gradio_app.flood`);
- each returns only what the page shows every visitor (the model card, the banner, an example
  image, the caller's own upload as read), and none opens a file that was not uploaded, writes
  to the run store or runs the model.
"""

from __future__ import annotations

import inspect
import re
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

import gradio as gr

# The public API: endpoint name -> the fair-use kind it counts as.
PUBLIC: dict[str, str] = {"predict": "predict", "lime": "explain", "shap": "explain"}
PAGE = "page"
NOT_THE_API = (
    "This is not one of the app's API endpoints: call /predict, /lime or /shap (the "
    "'Use via API' link at the foot of the page shows how)."
)
ARGUMENTS = (
    'The call to /{name} takes one argument, the uploaded X-ray: send {{"data": [FILE]}} to '
    '/gradio_api/call/{name}, or {{"path": FILE}} to /gradio_api/call/v2/{name}, where FILE '
    'is {{"path": PATH, "meta": {{"_type": "gradio.FileData"}}}} with the PATH that '
    "POST /gradio_api/upload returned ('Use via API' at the foot of the page shows how)."
)
NOT_AS_SENT = (
    "This request does not match what the app's page sends, so it was not run. To use the app "
    "from a program, call /predict, /lime or /shap ('Use via API' at the foot of the page)."
)
# Gradio's event routes, each under its API prefix: (route, endpoint name or None).
_ROUTES = re.compile(r"/gradio_api/(?:queue/(join)|(call)/(v2/)?([^/]+)|(?:run|api)/([^/]+))/?$")
# The routes a client reads an answer from, as a stream: by event id, or by session.
_STREAMS = re.compile(r"/gradio_api/(?:call/(?:v2/)?[^/]+/([^/]+)|queue/data)/?$")
NO_ANSWER = (
    "There is no answer waiting under this id: it was collected already, or the call never "
    "reached the queue. Send the call again (POST /gradio_api/call/predict) and read the answer "
    "it names once."
)
# What a named (/call/v2/) call may carry besides its arguments; Gradio drops these itself.
_V2_EXTRAS = frozenset({"oauth_token", "session_hash"})


class RefusedError(Exception):
    """A call the app does not run: ``status`` is the HTTP status, the message a sentence."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status


class Events:
    """The rules above for one ``gr.Blocks``: :meth:`kind` admits or refuses one call."""

    def __init__(self, demo: gr.Blocks) -> None:
        self.fns = dict(demo.fns)
        self.queue = demo._queue

    def stream_known(self, path: str, query: bytes) -> bool | None:
        """For a GET of an answer stream (``/call/<name>/<event id>``, ``/queue/data``), whether
        the queue holds the session it names — Gradio answers an unknown one with a stream that
        it then breaks off; None for any other route."""
        match = _STREAMS.search(path)
        if match is None:
            return None
        queue = self.queue
        if match.group(1) is not None:
            # As Gradio finds the session of an event id (routes.simple_predict_get).
            event_id = match.group(1)
            event = queue.event_ids_to_events.get(event_id)
            session = (
                event.session_hash
                if event is not None
                else next(
                    (s for s, ids in queue.pending_event_ids_session.items() if event_id in ids),
                    event_id,
                )
            )
        else:
            session = parse_qs(query.decode("latin-1")).get("session_hash", [None])[0]
        return session is not None and session in queue.pending_messages_per_session

    @staticmethod
    def is_event_call(path: str) -> bool:
        """Whether a POST to ``path`` asks Gradio to run an event."""
        return _ROUTES.search(path) is not None

    def kind(self, path: str, payload: dict[str, Any]) -> str:
        """The fair-use kind a call to ``path`` with JSON body ``payload`` counts as
        (``predict``, ``explain`` or ``page``); raises :class:`RefusedError` when it is not run."""
        match = _ROUTES.search(path)
        if match is None:
            raise ValueError(f"{path} is not an event route")
        join, call, v2, name, _ = match.groups()
        if call:
            if name not in PUBLIC:
                raise RefusedError(404, NOT_THE_API)
            fn = next(f for f in self.fns.values() if f.api_name == name)
            if v2:
                names = {_parameter(fn)}
                given = set(payload) - _V2_EXTRAS
                data = [payload.get(_parameter(fn))] if given == names else None
            else:
                data = payload.get("data")
            if not _shaped_for(fn, data):
                raise RefusedError(422, ARGUMENTS.format(name=name))
            return PUBLIC[name]
        index = payload.get("fn_index")
        fn = self.fns.get(index) if type(index) is int else None
        # The page calls its queued events through the queue and the others on /run/.
        if fn is None or fn.fn is None or bool(join) != fn.queue:
            raise RefusedError(404, NOT_AS_SENT)
        if fn.api_name in PUBLIC and fn.api_visibility == "public":
            if not _shaped_for(fn, payload.get("data")):
                raise RefusedError(422, ARGUMENTS.format(name=fn.api_name))
            return PUBLIC[fn.api_name]
        data = payload.get("data")
        if not _shaped_for(fn, data):
            raise RefusedError(422, NOT_AS_SENT)
        return PAGE


def _shaped_for(fn: Any, data: Any) -> bool:
    """Whether ``data`` is one value, shaped as the page sends it, for each input of ``fn``."""
    return (
        isinstance(data, list)
        and len(data) == len(fn.inputs)
        and all(map(_as_the_page_sends, fn.inputs, data))
    )


def _parameter(fn: Any) -> str:
    """The name of the one argument of a public endpoint's function (``path``)."""
    return next(iter(inspect.signature(fn.fn).parameters))


def _as_the_page_sends(block: gr.components.Component, item: Any) -> bool:
    """Whether ``item`` is a value the page sends for ``block``: an uploaded file (which
    :func:`gradio_app.flood._foreign_file` checks is an upload) or nothing for the upload box,
    the number of one of the examples for the examples."""
    if isinstance(block, gr.Dataset):
        return type(item) is int and 0 <= item < len(block.samples)
    if isinstance(block, gr.File):
        return item is None or (isinstance(item, dict) and isinstance(item.get("path"), str))
    return False


class Sessions(OrderedDict):
    """Gradio's answer queues per session, bounded as Gradio bounds them (2,000 sessions) but
    evicting the oldest session that has nothing pending rather than the oldest of all.

    Gradio keeps one entry per session until it is pushed out, and every ``/call/`` is a
    session of its own; past 2,000 calls in the lifetime of one waiting call, Gradio dropped
    that call's session while it waited, and every call queued after it failed with an error
    500 (``KeyError``). Installed by :func:`gradio_app.app.build_demo` in place of Gradio's.
    """

    def __init__(self, queue: Any, max_size: int = 2000) -> None:
        super().__init__()
        self.queue = queue
        self.max_size = max_size

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self and len(self) >= self.max_size:
            pending = self.queue.pending_event_ids_session
            idle = next((k for k in self if not pending.get(k)), None)
            del self[next(iter(self)) if idle is None else idle]
        super().__setitem__(key, value)
