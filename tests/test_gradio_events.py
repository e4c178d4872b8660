"""The page's own events, called by a raw HTTP client as a stranger's script would.

No model is needed: every event here answers as quickly without one. The page itself (which
must keep getting these events) is driven in a real browser in ``test_gradio_browser.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.gradio_helpers import LIMITS, app_with

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
API_NAMES = "/predict, /lime or /shap"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[httpx.Client, dict[str, int]]]:
    with app_with(tmp_path, LIMITS) as served:
        yield served


def page_call(http: httpx.Client, fn_index: int, data: list, route: str = "run/predict"):
    """One event call exactly as the page sends it (the browser's own route and fields)."""
    body = {"data": data, "event_data": None, "fn_index": fn_index, "session_hash": "page"}
    return http.post(f"/gradio_api/{route}", json=body)


def test_the_pages_own_events_cannot_be_called_by_name(app):
    http, _ = app
    for path in ("call/card", "call/top", "call/preview", "call/v2/card", "call/load_example"):
        answer = http.post(f"/gradio_api/{path}", json={"data": []})
        assert answer.status_code == 404, path
        assert API_NAMES in answer.json()["error"]
        assert "event_id" not in answer.text  # never queued


def test_queued_events_cannot_skip_the_queue_and_its_limits(app):
    # Gradio's /run/<name> ran /lime and /predict at once, past the queue and fair use.
    http, index = app
    for name in ("predict", "lime", "shap", "preview"):  # "preview": the image as read
        for route in (f"run/{name}", "run/predict", f"api/{name}"):
            answer = page_call(http, index[name], [None], route)
            assert answer.status_code == 404, (name, route)
            assert "does not match what the app's page sends" in answer.json()["error"]
            assert "data" not in answer.json()


def test_the_pages_events_run_only_with_the_arguments_the_page_sends(app):
    http, index = app
    # As the page sends them, they work: the model card, the banner, an example.
    card = page_call(http, index["card_1"], [])
    assert card.status_code == 200
    assert "No model is available yet" in card.json()["data"][0]
    assert page_call(http, index["top"], []).status_code == 200
    example = page_call(http, index["load_example"], [0])
    assert example.status_code == 200
    assert example.json()["data"][0]["value"]["orig_name"] == "example.png"
    # Anything else is refused, in a sentence, unrun.
    refused = [
        page_call(http, index["card_1"], ["/etc/passwd"]),
        page_call(http, index["top"], [None, None]),
        page_call(http, index["load_example"], [7]),
        page_call(http, index["load_example"], [-1]),
        page_call(http, index["load_example"], ["../../etc/passwd"]),
        page_call(http, index["preview"], [None, None], "queue/join"),
        page_call(http, index["preview"], ["/etc/passwd"], "queue/join"),
        page_call(http, index["card_1"], [], "queue/join"),  # the page calls it on /run/
    ]
    for answer in refused:
        assert answer.status_code in {404, 422}, answer.text
        assert "does not match what the app's page sends" in answer.json()["error"]
    # A server path passed as the upload the page would send is refused as before.
    server_file = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
    answer = page_call(http, index["preview"], [server_file], "queue/join")
    assert answer.status_code == 422
    assert "upload the file first" in answer.json()["error"]


def test_the_pages_events_count_against_a_fair_use_limit(tmp_path):
    strict = replace(LIMITS, rates=(*LIMITS.rates, ("page", "5/minute")))
    with app_with(tmp_path, strict) as (http, index):
        codes = [page_call(http, index["card_1"], []).status_code for _ in range(5)]
        assert codes == [200] * 5
        refused = page_call(http, index["top"], [])
        assert refused.status_code == 429
        assert "wait a minute" in refused.json()["error"]


def test_the_named_v2_routes_count_and_check_uploads_like_the_others(tmp_path):
    # /call/v2/lime went unlimited and /call/v2/predict took a server path unchecked.
    strict = replace(LIMITS, rates=(("explain", "2/minute"),))
    with app_with(tmp_path, strict) as (http, _):
        codes = [http.post("/gradio_api/call/v2/lime", json={"path": None}) for _ in range(3)]
        assert [c.status_code for c in codes] == [200, 200, 429]
        server_file = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
        answer = http.post("/gradio_api/call/v2/predict", json={"path": server_file})
        assert answer.status_code == 422
        assert "upload the file first" in answer.json()["error"]
