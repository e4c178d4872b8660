"""The public app under hostile requests: bounded bodies, uploads counted per request and per
client, no 500 for a malformed call, nothing left on disk after SIGTERM, and messages that say
what happened. No model is needed: every case is answered before one would run.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from db import RunStore
from gradio_app import bodies
from gradio_app.app import build_demo
from gradio_app.events import Events
from gradio_app.flood import FairUse, Ledger
from gradio_app.security import Edge
from gradio_app.service import ModelSource
from tests.gradio_helpers import LIMITS, app_with, free_port, phantom_pair, png

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
ROOT = Path(__file__).resolve().parents[1]


def _noise(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


# -- bodies are read with a bound --------------------------------------------------------------


class _Endless:
    """An ASGI ``receive`` that would send ``total`` bytes in 1 MB chunks; counts what was read."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.read = 0

    async def __call__(self) -> dict:
        chunk = min(2**20, self.total - self.read)
        self.read += chunk
        return {"type": "http.request", "body": b"\0" * chunk, "more_body": self.read < self.total}


def _call(middleware: FairUse, path: str, receive: _Endless, headers=()) -> tuple[int, str]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"multipart/form-data; boundary=x"), *headers],
        "client": ("10.0.0.9", 1),
    }
    asyncio.run(middleware(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)["error"]


def _middleware(tmp_path: Path) -> FairUse:
    async def app(scope, receive, send):  # what Gradio would do: read everything
        raise AssertionError("an oversized body reached Gradio")

    demo = build_demo(ModelSource(RunStore(f"sqlite:///{tmp_path / 's.db'}"), refresh_s=0), LIMITS)
    ledger = Ledger(upload_budget=512 * 2**20, max_upload=2 * 2**20)
    return FairUse(app, ledger, Events(demo))


def test_a_chunked_upload_or_json_body_stops_being_read_at_the_limit(tmp_path):
    middleware = _middleware(tmp_path)
    upload = _Endless(500 * 2**20)  # chunked: no Content-Length
    status, sentence = _call(middleware, "/gradio_api/upload", upload)
    assert status == 413
    assert "larger than the 2 MB the service takes" in sentence
    assert upload.read <= 2 * 2**20 + bodies.MULTIPART_SLACK + 2**20  # not 500 MB

    call = _Endless(100 * 2**20)
    status, sentence = _call(middleware, "/gradio_api/call/v2/predict", call)
    assert status == 413
    assert "upload the file first" in sentence
    assert call.read <= bodies.MAX_JSON_BYTES + 2**20


# -- uploads are counted per request and per client --------------------------------------------


def _upload(http: httpx.Client, files: list[tuple[str, bytes]], client: str = "10.0.0.1"):
    return http.post(
        "/gradio_api/upload",
        files=[("files", f) for f in files],
        headers={"x-forwarded-for": client},
    )


def test_one_request_carries_one_file_and_one_client_cannot_fill_the_upload_budget(tmp_path):
    limits = replace(LIMITS, max_bytes=2 * 2**20, upload_budget_mb=16, upload_per_client_mb=2)
    with app_with(tmp_path, limits) as (http, _):
        many = _upload(http, [(f"{i}.png", _noise(1000, i)) for i in range(3)])
        assert many.status_code == 413
        assert "one X-ray per upload" in many.json()["error"]

        first = _upload(http, [("a.png", _noise(1_500_000, 1))])
        second = _upload(http, [("b.png", _noise(1_500_000, 2))])
        assert first.status_code == 200
        assert second.status_code == 429
        assert "uploaded about" in second.json()["error"]
        # Another visitor is still served.
        other = _upload(http, [("c.png", _noise(1_500_000, 3))], client="10.0.0.2")
        assert other.status_code == 200


def test_a_file_over_the_limit_is_told_too_large_in_mb_even_when_the_disk_is_nearly_full(
    tmp_path,
):
    limits = replace(LIMITS, max_bytes=2 * 2**20, upload_budget_mb=1, upload_per_client_mb=8)
    with app_with(tmp_path, limits) as (http, _):
        answer = _upload(http, [("big.png", _noise(3 * 2**20))])
    assert answer.status_code == 413
    sentence = answer.json()["error"]
    assert "3 MB, larger than the 2 MB" in sentence
    assert str(2 * 2**20) not in sentence
    assert "try again" not in sentence


# -- no 500 for a malformed call, and failed explanations give their slot back ---------------


def test_malformed_calls_get_a_4xx_sentence_never_a_500(tmp_path):
    with app_with(tmp_path, LIMITS) as (http, fns):
        for name in ("predict", "lime", "shap"):
            for body in ({}, {"path": None, "extra": 1}, {"image": None}):
                answer = http.post(f"/gradio_api/call/v2/{name}", json=body)
                assert answer.status_code == 422, (name, body, answer.text)
                assert "takes one argument, the uploaded X-ray" in answer.json()["error"]
                assert answer.headers["x-content-type-options"] == "nosniff"
        nul = _file("/tmp/gradio/x\x00.png")
        calls = [
            ("/gradio_api/call/predict", {"data": [nul]}),
            ("/gradio_api/call/v2/predict", {"path": nul}),
            (
                "/gradio_api/queue/join",
                {"data": [nul], "fn_index": fns["predict"], "session_hash": "s"},
            ),
            ("/gradio_api/call/predict", {"data": [{"path": 123}]}),
            ("/gradio_api/call/predict", {"data": [_file("/tmp/" + "x" * 5000 + ".png")]}),
        ]
        for route, body in calls:
            answer = http.post(route, json=body)
            assert answer.status_code == 422, (route, answer.text)
            assert "upload the file first" in answer.json()["error"]
        deep = b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        for route in ("/gradio_api/call/predict", "/gradio_api/queue/join", "/gradio_api/reset"):
            answer = http.post(route, content=deep, headers={"content-type": "application/json"})
            assert answer.status_code == 400, route
            assert "not valid JSON" in answer.json()["error"]
        for kind in ("multipart/form-data; boundary=" + "b" * 300, "application/octet-stream"):
            answer = http.post(
                "/gradio_api/upload", content=b"x" * 100, headers={"content-type": kind}
            )
            assert answer.status_code == 400, kind
            assert "multipart/form-data" in answer.json()["error"]
        # Reading an answer that is not there: Gradio began a stream, then broke it off.
        for route in (
            "/gradio_api/call/predict/nonexistent",
            "/gradio_api/queue/data?session_hash=x",
        ):
            answer = http.get(route)
            assert answer.status_code == 404, route
            assert "no answer waiting under this id" in answer.json()["error"]


def test_failed_explanation_calls_give_their_slot_back(tmp_path):
    limits = replace(LIMITS, explain_in_flight=2)
    with app_with(tmp_path, limits) as (http, _):
        for _ in range(3):
            assert http.post("/gradio_api/call/v2/lime", json={}).status_code == 422
        (uploaded,) = _upload(http, [("a.png", png(phantom_pair(0)[0]))]).json()
        gone = str(Path(uploaded).with_name("deleted.png"))
        for _ in range(3):
            answer = http.post("/gradio_api/call/lime", json={"data": [_file(gone)]})
            assert answer.status_code == 200
            (event,) = answer.json().values()
            http.get(f"/gradio_api/call/lime/{event}")  # waits for the answer
        answer = http.post("/gradio_api/call/lime", json={"data": [_file(uploaded)]})
        assert answer.status_code == 200, answer.text


# -- closed routes, banners, CORS, headers on errors ---------------------------------------------


def test_routes_the_app_does_not_use_are_closed_and_it_tells_nothing_of_itself(tmp_path):
    with app_with(tmp_path, LIMITS) as (http, _):
        recording = http.post(
            "/gradio_api/process_recording", files={"files": ("a.wav", _noise(2**20))}
        )
        assert recording.status_code == 404
        assert "takes no recordings" in recording.json()["error"]
        assert http.get("/monitoring/summary").status_code in (403, 404)
        page = http.get("/", headers={"origin": "http://localhost:1234"})
        assert page.status_code == 200
        assert "server" not in page.headers
        assert not [h for h in page.headers if h.startswith("access-control-")]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        missing = http.get("/gradio_api/nothing-here")
        assert missing.headers["x-frame-options"] == "DENY"


def test_an_unhandled_error_gets_a_sentence_and_the_security_headers():
    async def broken(scope, receive, send):
        raise RuntimeError("boom")

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": []}
    asyncio.run(Edge(broken)(scope, None, send))
    start, body = sent
    assert start["status"] == 500
    assert (b"x-content-type-options", b"nosniff") in start["headers"]
    assert "has been logged" in json.loads(body["body"])["error"]


# -- nothing of an upload stays on disk after SIGTERM -----------------------------------------


def test_sigterm_deletes_the_uploads_and_a_restart_removes_those_of_a_killed_process(tmp_path):
    tmp = tmp_path / "tmp"
    stale = tmp / "tbxray-uploads-999999999-abc"  # no such process
    stale.mkdir(parents=True)
    (stale / "left.dcm").write_bytes(b"x")
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "TBXRAY_RUNS_DIR": str(tmp_path / "runs"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradio_app", "--port", str(port), "--no-examples"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert not stale.exists()
        (stored,) = httpx.post(
            url + "/gradio_api/upload", files={"files": ("a.png", png(phantom_pair(0)[0]))}
        ).json()
        assert Path(stored).is_file()
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert not Path(stored).exists()
        assert not list(tmp.glob("tbxray-uploads-*"))
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


# -- DICOM decoding shares the budget and is reduced; messages name the problem ----------------


def _dicom(stored: np.ndarray, **kwargs) -> bytes:
    from tests.dicom_files import dicom_bytes

    return dicom_bytes(stored, **kwargs)


def test_a_huge_dicom_is_reduced_and_decoded_under_the_shared_memory_budget(monkeypatch):
    from pipeline.imaging import decoded as decoded_module
    from pipeline.imaging import dicom
    from pipeline.imaging.decode import decode

    rows = np.repeat(np.arange(5000, dtype=np.uint16)[:, None] % 4096, 4500, axis=1)
    data = _dicom(rows)
    image = decode(data)
    assert image.size == (4500, 5000)
    assert max(image.pixels.shape) <= decoded_module.MAX_SIDE
    monkeypatch.setattr(dicom, "DECODE_BUDGET", decoded_module.DecodeBudget(10 * 2**20))
    with pytest.raises(decoded_module.ImageError, match=r"of memory, over the 10\.0 MB"):
        decode(data)


def test_dicom_and_image_refusals_say_what_the_file_is(tmp_path):
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian

    from pipeline.imaging.decode import decode
    from pipeline.imaging.decoded import ImageError
    from pipeline.serving import ood

    header_only = _dicom(np.zeros((64, 64), np.uint16))
    ds = dcmread(io.BytesIO(header_only))
    for tag in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        delattr(ds, tag)
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(ImageError) as err:
        decode(buf.getvalue())
    assert "holds no image" in str(err.value)
    assert "screenshot" not in str(err.value)

    # The transfer syntax field rewritten in place (same length) to Markdown.
    crafted = _dicom(np.zeros((64, 64), np.uint16)).replace(
        ExplicitVRLittleEndian.encode(), b"[see](http://x)    "
    )
    with pytest.raises(ImageError) as err:
        decode(crafted)
    assert "http://x" not in str(err.value)

    bomb = io.BytesIO()
    Image.new("L", (20000, 20000)).save(bomb, format="PNG")
    with pytest.raises(ImageError) as err:
        decode(bomb.getvalue(), max_pixels=4_000_000)
    assert "4,000,000 pixel limit" in str(err.value)
    assert "178956970" not in str(err.value)

    strip = decode(png(np.full((8, 100_000), 128, np.uint8)))
    reason = ood.image_checks(strip.pixels, 0.0, strip.size)
    assert "100000×8 pixels" in reason


def test_an_animation_is_read_from_its_first_frame_and_says_so():
    from pipeline.imaging.decode import decode

    frames = [Image.fromarray(phantom_pair(k)[0]) for k in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    (note,) = decode(buf.getvalue()).notes
    assert "animation of 3 frames" in note
    assert "first frame" in note


def test_what_a_file_says_of_itself_is_shown_as_text_not_markdown():
    from gradio_app.render import refusal_note

    note = refusal_note("transfer syntax [click here](http://x.example) **now**")
    assert "[click here](" not in note
    assert "**now**" not in note
    assert "click here" in note


def test_gradio_keeps_the_answer_queue_of_a_call_still_waiting_past_2000_sessions(tmp_path):
    from gradio_app.events import Sessions

    demo = build_demo(ModelSource(RunStore(f"sqlite:///{tmp_path / 's.db'}"), refresh_s=0), LIMITS)
    queue = demo._queue
    assert isinstance(queue.pending_messages_per_session, Sessions)
    sessions = Sessions(queue, max_size=3)
    queue.pending_event_ids_session.update({"waiting": {"e1"}, "done": set(), "done2": set()})
    for key in ("waiting", "done", "done2", "new"):
        sessions[key] = object()
    assert list(sessions) == ["waiting", "done2", "new"]
