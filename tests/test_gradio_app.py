"""The public app end to end: a live local server, driven with gradio_client as a stranger would.

One tiny 64-px CNN is trained on balanced phantoms for the whole module (about 15 s); it learns
them a little (test AUC about 0.8), enough for a TB phantom to score above its lesion-free twin.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from db import RunStore
from pipeline.formats import probability_and_threshold
from pipeline.lungs.quality import MaskQuality
from pipeline.serving import ood
from tests.dicom_files import dicom_bytes, displayed_as
from tests.gradio_helpers import (
    LIMITS,
    SIZE,
    client_for,
    phantom_pair,
    png,
    running_app,
    train_tiny_run,
)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file

from gradio_app.app import build_demo, launch_options
from gradio_app.service import (
    ASSESSED,
    CANNOT_ASSESS,
    OUT_OF_DISTRIBUTION,
    REFUSED,
    VERDICTS,
    Limits,
    ModelSource,
    ServedModel,
)

# Gradio's queue uses pandas options that pandas 3 deprecates; not this project's to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    return train_tiny_run(tmp_path_factory.mktemp("gradio-app"))


@pytest.fixture(scope="module")
def source(store: RunStore) -> ModelSource:
    return ModelSource(store, refresh_s=0)


@pytest.fixture(scope="module")
def url(source: ModelSource) -> Iterator[str]:
    with running_app(source) as local_url:
        yield local_url


@pytest.fixture(scope="module")
def client(url: str) -> Client:
    return client_for(url)


def predict(client: Client, data: bytes, tmp_path: Path, name: str = "upload.png") -> tuple:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_bytes(data)
    return client.predict(handle_file(str(path)), api_name="/predict")


def test_a_tb_phantom_scores_above_its_lesion_free_twin(client, tmp_path):
    gaps = []
    for k in range(5):
        normal, tb = phantom_pair(k)
        (a, label_a, verdict_a, heat_a) = predict(client, png(normal), tmp_path)
        (b, _, _, heat_b) = predict(client, png(tb), tmp_path)
        for result, heat in ((a, heat_a), (b, heat_b)):
            assert result["status"] == ASSESSED, result["reason"]
            assert result["verdict"] in VERDICTS[:2]
            assert heat is not None  # the Grad-CAM overlay comes with the verdict
        # P(TB) is shown against the threshold the verdict used, never as "Normal 76 %".
        shown_p, shown_t = probability_and_threshold(a["probability"], a["threshold"])
        assert f"P(TB) = {shown_p}" in label_a
        assert f"threshold {shown_t}" in label_a
        assert f"P(TB) = {shown_p} is" in a["reason"]  # the reason reads the same numbers
        side = "at or above" if a["probability"] >= a["threshold"] else "below"
        assert side in label_a
        assert "Normal" not in label_a
        assert a["verdict"] in verdict_a  # the verdict box shows the same verdict
        gaps.append(b["probability"] - a["probability"])
    assert np.mean(gaps) > 0.02, gaps


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width × height pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _bad_uploads() -> list[tuple[str, bytes, str, str]]:
    """(file name, bytes, expected status, words the message must contain)."""
    import skimage.data

    good = png(phantom_pair(0)[1])
    rng = np.random.default_rng(0)
    return [
        ("empty.png", b"", REFUSED, "empty"),
        ("notes.png", b"these are my notes, not an x-ray\n" * 20, REFUSED, "not a PNG, JPEG"),
        ("truncated.png", good[: len(good) // 2], REFUSED, "truncated or corrupt"),
        ("dot.png", png(np.zeros((1, 1), np.uint8)), REFUSED, "too small"),
        ("bomb.png", _png_claiming(5_000, 5_000), REFUSED, "pixel limit"),
        ("giant.png", _png_claiming(100_000, 100_000), REFUSED, "over the 4,000,000 pixel limit"),
        ("scan.dcm", bytes(128) + b"DICM" + bytes(64), REFUSED, "DICOM"),
        (
            "ct.dcm",
            dicom_bytes(phantom_pair(0)[0], bits_stored=8, Modality="CT"),
            REFUSED,
            "CT slice",
        ),
        (
            "lateral.dcm",
            displayed_as(phantom_pair(0)[0], ViewPosition="LL"),
            OUT_OF_DISTRIBUTION,
            "a frontal view (PA or AP) is needed",
        ),
        (
            "noise.png",
            png(rng.integers(0, 256, (256, 256), dtype=np.uint8)),
            OUT_OF_DISTRIBUTION,
            "noise",
        ),
        ("blank.png", png(np.full((256, 256), 200, np.uint8)), OUT_OF_DISTRIBUTION, "uniform"),
        ("photo.jpg", png(skimage.data.astronaut(), "JPEG"), OUT_OF_DISTRIBUTION, "colour"),
        ("page.png", png(skimage.data.page()), OUT_OF_DISTRIBUTION, "wider or taller"),
    ]


@pytest.mark.parametrize(
    ("name", "data", "status", "words"), _bad_uploads(), ids=[u[0] for u in _bad_uploads()]
)
def test_a_bad_upload_gets_a_message_and_the_app_keeps_serving(
    client, tmp_path, name, data, status, words
):
    result, _, verdict_html, heatmap = predict(client, data, tmp_path, name)
    assert result["verdict"] == CANNOT_ASSESS
    assert result["status"] == status
    assert words in result["reason"]
    assert "Traceback" not in result["reason"]
    assert result["probability"] is None
    assert heatmap is None
    assert CANNOT_ASSESS in verdict_html
    after, *_ = predict(client, png(phantom_pair(1)[0]), tmp_path)
    assert after["status"] == ASSESSED


def test_awkward_but_valid_encodings_are_assessed_like_the_plain_png(client, tmp_path):
    normal, _ = phantom_pair(2)
    plain, *_ = predict(client, png(normal), tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the stored pixels lie on their side
    variants = {
        "16-bit.png": png(Image.fromarray(normal.astype(np.uint16) * 257)),
        "rgba.png": png(Image.fromarray(normal).convert("RGBA")),
        "palette.png": png(Image.fromarray(normal).convert("P")),
        "cmyk.jpg": png(Image.fromarray(normal).convert("CMYK"), "JPEG", quality=95),
        "exif-rotated.jpg": png(np.rot90(normal), "JPEG", quality=95, exif=exif),
    }
    for name, data in variants.items():
        result, *_ = predict(client, data, tmp_path, name)
        assert result["status"] == ASSESSED, (name, result["reason"])
        assert abs(result["probability"] - plain["probability"]) < 0.1, name


def test_a_dicom_upload_gets_the_verdict_of_its_png_export(client, tmp_path):
    # displayed_as: a 12-bit MONOCHROME1 file with a rescale and a window whose display is
    # exactly the phantom, i.e. what a viewer's PNG export of it would hold.
    for k, name in ((2, "chest.dcm"), (3, "IM000001")):  # CD exports often have no extension
        normal, tb = phantom_pair(k)
        for img in (normal, tb):
            from_png, *_ = predict(client, png(img), tmp_path)
            from_dicom, _, verdict_html, heatmap = predict(
                client, displayed_as(img), tmp_path, name
            )
            assert from_dicom["status"] == ASSESSED, from_dicom["reason"]
            assert from_dicom["verdict"] == from_png["verdict"]
            assert from_dicom["probability"] == pytest.approx(from_png["probability"], abs=1e-6)
            assert heatmap is not None
            assert from_dicom["verdict"] in verdict_html


def test_text_burned_into_a_dicom_image_is_noted_beside_the_verdict(client, tmp_path):
    data = displayed_as(phantom_pair(1)[0], BurnedInAnnotation="YES")
    result, _, verdict_html, _ = predict(client, data, tmp_path, "annotated.dcm")
    assert result["status"] == ASSESSED
    assert any("burned into the image" in note for note in result["notes"])
    assert "burned into the image" in verdict_html
    plain, *_ = predict(client, png(phantom_pair(1)[0]), tmp_path)
    assert plain["notes"] == []


def test_a_raw_detector_image_is_refused_unless_the_policy_allows_it_with_a_warning(source):
    data = displayed_as(phantom_pair(1)[0], PresentationIntentType="FOR PROCESSING")
    refused = source.current().assess(data, LIMITS)
    assert refused.status == REFUSED
    assert "FOR PROCESSING" in refused.reason
    warned = source.current().assess(data, replace(LIMITS, for_processing="warn"))
    assert warned.status == ASSESSED
    assert any("raw detector image" in note for note in warned.notes)


def test_no_dicom_header_field_reaches_a_response_a_log_or_a_file(client, tmp_path, capfd):
    """A marker PatientName (and ID, institution) must never leave the uploaded file."""
    from gradio.utils import get_upload_folder

    marker = "Zzprivatemarker^Qqdonotleak"
    started = time.time()
    tags = {"PatientName": marker, "PatientID": marker[:16], "InstitutionName": marker}
    said = []
    uploads = {
        "assessed.dcm": displayed_as(phantom_pair(0)[1], **tags),
        "noted.dcm": displayed_as(phantom_pair(0)[1], BurnedInAnnotation="YES", **tags),
        "lateral.dcm": displayed_as(phantom_pair(0)[1], ViewPosition="LL", **tags),
        "refused.dcm": dicom_bytes(phantom_pair(0)[1], bits_stored=8, Modality="MR", **tags),
    }
    for name, data in uploads.items():
        answer = predict(client, data, tmp_path, name)
        said.append(json.dumps(answer[0]) + str(answer[1:3]))
    _, note = client.predict(handle_file(str(tmp_path / "noted.dcm")), api_name="/lime")
    said.append(note)
    said += capfd.readouterr()
    assert not [s for s in said if "Zzprivatemarker" in s or marker[:16] in s]
    # On disk, only Gradio's copies of the uploads themselves hold it (deleted within minutes,
    # see test_uploads_are_deleted_after_the_configured_time); nothing the app wrote does.
    roots = [Path(get_upload_folder()), Path(os.environ["TBXRAY_RUNS_DIR"]), tmp_path]
    written = [
        p
        for root in roots
        if root.is_dir()
        for p in root.rglob("*")
        if p.is_file() and p.stat().st_mtime >= started - 1
    ]
    leaked = [
        p
        for p in written
        if b"Zzprivatemarker" in p.read_bytes() and p.read_bytes() not in uploads.values()
    ]
    assert leaked == []


def test_an_upload_over_the_size_limit_is_refused_before_it_is_stored(client, url, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(png(np.random.default_rng(0).integers(0, 256, (1500, 1500), dtype=np.uint8)))
    assert big.stat().st_size > LIMITS.max_bytes
    # gradio_client (like the browser) checks the limit the app publishes before sending...
    with pytest.raises(
        ValueError, match=f"exceeds the maximum file size of {LIMITS.max_bytes} bytes"
    ):
        client.predict(handle_file(str(big)), api_name="/predict")
    # ...and the server refuses a client that does not.
    with httpx.Client(base_url=url) as http, big.open("rb") as f:
        response = http.post("/gradio_api/upload", files={"files": ("big.png", f, "image/png")})
    assert response.status_code == 413
    after, *_ = predict(client, png(phantom_pair(1)[0]), tmp_path)
    assert after["status"] == ASSESSED


def test_the_size_limit_is_also_applied_to_files_that_reach_the_service(source):
    data = png(np.random.default_rng(0).integers(0, 256, (1500, 1500), dtype=np.uint8))
    result = source.current().assess(data, LIMITS)
    assert result.status == REFUSED
    assert "over the 2.0 MB limit" in result.reason


def test_the_lungs_are_outlined_and_an_upload_without_two_lungs_cannot_be_assessed(
    source, monkeypatch
):
    from gradio_app.render import gradcam_overlay
    from pipeline.lungs.segmenter import Segmenter

    normal, _ = phantom_pair(5)
    seen = source.current().assess(png(normal), LIMITS)
    assert seen.status == ASSESSED
    assert seen.lungs.any()
    drawn = gradcam_overlay(seen)
    assert np.all(drawn == (255, 0, 255), axis=-1).any()  # the magenta outline

    def one_lung(self, image):
        mask = np.zeros(image.shape, bool)
        mask[image.shape[0] // 4 : -image.shape[0] // 4, : image.shape[1] // 2 - 2] = True
        return mask, MaskQuality(1.0, 2.0, True, "")

    monkeypatch.setattr(Segmenter, "find", one_lung)
    refused = source.current().assess(png(normal), LIMITS)
    assert refused.verdict == CANNOT_ASSESS
    assert refused.status == OUT_OF_DISTRIBUTION
    assert "lung fields" in refused.reason


def test_lungs_outlined_only_with_low_confidence_give_cannot_assess_not_a_verdict(
    source, monkeypatch
):
    """Two lungs of the right shape, but drawn where the segmenter was unsure: the verdict
    would rest on guessed pixels, so the visitor is told that instead."""
    from pipeline.lungs.segmenter import Segmenter

    normal, _ = phantom_pair(5)
    assert source.current().assess(png(normal), LIMITS).status == ASSESSED
    sure = Segmenter.probabilities

    def unsure(self, batch):  # the same outline at 0.5, but every pixel near 0.5
        return 0.5 + 0.3 * (sure(self, batch) - 0.5)

    monkeypatch.setattr(Segmenter, "probabilities", unsure)
    refused = source.current().assess(png(normal), LIMITS)
    assert refused.verdict == CANNOT_ASSESS
    assert refused.status == OUT_OF_DISTRIBUTION
    assert "the lung outline is uncertain" in refused.reason
    assert "a doctor should read this X-ray" in refused.reason
    assert "could not be found" not in refused.reason  # the shape was fine


def test_an_x_ray_upside_down_or_cut_to_a_quadrant_cannot_be_assessed(source):
    """Both keep two plausible lungs; the view check, not the classifier, refuses them."""
    served = source.current()
    for k in range(6):
        normal, tb = phantom_pair(k)
        for image in (normal, tb):
            assert served.assess(png(image), LIMITS).status == ASSESSED
            flipped = served.assess(png(np.ascontiguousarray(image[::-1])), LIMITS)
            assert flipped.verdict == CANNOT_ASSESS
            assert "upside down" in flipped.reason
            assert "neck is at the top" in flipped.reason
            part = served.assess(png(image[: SIZE // 2, : SIZE // 2].copy()), LIMITS)
            assert part.verdict == CANNOT_ASSESS


def test_a_real_x_ray_upside_down_is_told_so_not_that_it_comes_from_elsewhere(source):
    """The phantom-trained model finds any real X-ray unlike its own; upside down, the reader
    is first told to turn it."""
    from tests.conftest import shared_dataset

    folder = shared_dataset("nlm-224")
    data = sorted((folder / "tb").glob("*.jpg"))[0].read_bytes()
    upright = source.current().assess(data, LIMITS)
    assert "looks different from the ones the model learned from" in upright.reason
    xray = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    flipped = source.current().assess(png(np.ascontiguousarray(xray[::-1])), LIMITS)
    assert flipped.verdict == CANNOT_ASSESS
    assert "upside down" in flipped.reason


def test_an_explanation_waits_while_a_prediction_runs_but_not_forever():
    from gradio_app.service import PredictionsFirst

    gate = PredictionsFirst(max_wait_s=5.0)
    waited: list[float] = []

    def explanation_batch() -> None:
        start = time.perf_counter()
        gate.wait_turn()
        waited.append(time.perf_counter() - start)

    with gate.prediction():
        batch = threading.Thread(target=explanation_batch)
        batch.start()
        time.sleep(0.3)
        assert not waited  # still waiting for the prediction to finish
    batch.join(5)
    assert 0.25 <= waited[0] < 2.0  # it went on as soon as the prediction ended
    gate.wait_turn()  # nothing running: no wait at all
    stuck = PredictionsFirst(max_wait_s=0.2)
    with stuck.prediction():
        start = time.perf_counter()
        stuck.wait_turn()  # predictions never stop: explanations still progress
        assert time.perf_counter() - start < 2.0


def test_twenty_concurrent_predictions_all_succeed(client, tmp_path):
    path = tmp_path / "tb.png"
    path.write_bytes(png(phantom_pair(3)[1]))
    jobs = [client.submit(handle_file(str(path)), api_name="/predict") for _ in range(20)]
    results = [job.result(timeout=120)[0] for job in jobs]
    assert all(r["status"] == ASSESSED for r in results)
    assert len({round(r["probability"], 6) for r in results}) == 1


def test_lime_and_shap_explain_on_request(client, tmp_path):
    path = tmp_path / "tb.png"
    path.write_bytes(png(phantom_pair(4)[1]))
    for method in ("lime", "shap"):
        heatmap, note = client.predict(handle_file(str(path)), api_name=f"/{method}")
        assert heatmap is not None
        assert method.upper() in note


def test_explanations_refuse_what_cannot_be_assessed(client, tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(png(np.random.default_rng(1).integers(0, 256, (128, 128), dtype=np.uint8)))
    heatmap, note = client.predict(handle_file(str(path)), api_name="/lime")
    assert heatmap is None
    assert note.startswith(CANNOT_ASSESS)
    assert "noise" in note


def test_slow_explanations_do_not_hold_up_predictions(client, tmp_path, monkeypatch):
    from pipeline.explain import heatmaps

    release = threading.Event()
    real_explain = heatmaps.explain

    def slow_explain(*args, **kwargs):
        release.wait(30)
        return real_explain(*args, **kwargs)

    monkeypatch.setattr(heatmaps, "explain", slow_explain)
    path = tmp_path / "tb.png"
    path.write_bytes(png(phantom_pair(4)[1]))
    explaining = [client.submit(handle_file(str(path)), api_name="/lime") for _ in range(3)]
    try:
        start = time.perf_counter()
        result, *_ = client.predict(handle_file(str(path)), api_name="/predict")
        waited = time.perf_counter() - start
        assert result["status"] == ASSESSED
        assert waited < 10
        assert not any(job.done() for job in explaining)
    finally:
        release.set()
    assert all(job.result(timeout=60)[0] is not None for job in explaining)


def test_the_run_store_and_server_files_are_not_reachable(url, store, source, tmp_path):
    run = source.current().run
    secrets = [
        store.url.removeprefix("sqlite:///"),
        str(Path(run.artifacts_dir) / "model.keras"),
        "/etc/passwd",
    ]
    with httpx.Client(base_url=url) as http:
        for path in secrets:
            assert http.get(f"/gradio_api/file={path}").status_code in {403, 404}, path
        # An API call that names a server file instead of uploading one is refused unread.
        phantoms = Path(store.url.removeprefix("sqlite:///")).parents[1] / "phantoms"
        tb_phantom = next((phantoms / "Tuberculosis").glob("*.png"))
        started = http.post(
            "/gradio_api/call/predict",
            json={"data": [{"path": str(tb_phantom), "meta": {"_type": "gradio.FileData"}}]},
        )
    assert started.status_code == 422
    assert "upload the file first" in started.json()["error"]
    assert "probability" not in started.text


def test_uploads_are_deleted_after_the_configured_time(source, tmp_path):
    with (
        running_app(source, keep_uploads_s=1) as local_url,
        httpx.Client(base_url=local_url) as http,
    ):
        data = png(phantom_pair(0)[0])
        (stored,) = http.post(
            "/gradio_api/upload", files={"files": ("mine.png", data, "image/png")}
        ).json()
        started = http.post(
            "/gradio_api/call/predict",
            json={"data": [{"path": stored, "meta": {"_type": "gradio.FileData"}}]},
        )
        answer = http.get(f"/gradio_api/call/predict/{started.json()['event_id']}").text
        assert "assessed" in answer
        deadline = time.monotonic() + 15
        while Path(stored).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not Path(stored).exists()


def _register_copy(store: RunStore, run, folder: Path, name: str) -> str:
    """A new succeeded run in ``store`` whose artifacts are a copy of ``run``'s in ``folder``."""
    shutil.copytree(run.artifacts_dir, folder)
    copy = store.create_run(run.config, name=name)
    store.start_run(copy.id, worker="test")
    store.finish_run(
        copy.id,
        metrics=run.metrics,
        artifacts_dir=str(folder),
        data_fingerprint=run.data_fingerprint,
        versions=run.versions,
        duration_s=1.0,
    )
    return copy.id


def _served_id_becomes(client: Client, tmp_path: Path, run_id: str) -> bool:
    """Whether predictions come from ``run_id`` within 60 s (new models load in the background)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result, *_ = predict(client, png(phantom_pair(1)[0]), tmp_path)
        if result["run_id"] == run_id:
            return True
        time.sleep(0.2)
    return False


def test_a_promotion_is_served_without_a_restart(client, store, source, tmp_path):
    first = source.current().run
    second = _register_copy(store, first, tmp_path / "second-run", "challenger")
    try:
        store.promote(second, note="test")
        assert _served_id_becomes(client, tmp_path, second)
    finally:
        store.promote(first.id, note="back")
    assert _served_id_becomes(client, tmp_path, first.id)


def test_a_site_calibration_promoted_with_the_run_sets_the_threshold_the_public_gets(
    client, store, source, tmp_path
):
    from gradio_app.card import model_card

    run = source.current().run
    image = png(phantom_pair(2)[1])
    before, *_ = predict(client, image, tmp_path)
    p = before["probability"]
    # A site whose threshold sits just above this image's P(TB) (for the other verdict, just
    # below it): the same image must get the other verdict once that calibration is promoted.
    site_threshold = min(p + 0.01, 1.0) if p >= run.threshold else max(p - 0.01, 0.0)
    check = {"sensitivity": 0.9, "sensitivity_ci": [0.8, 0.95], "specificity": 0.7}
    cal = store.add_calibration(
        run.id,
        site="Clinic Z",
        dataset_path="/sites/z",
        data_fingerprint="f",
        result={
            "threshold": site_threshold,
            "prevalence": 0.05,
            "n_images": 60,
            "n_calibration": 30,
            "n_check": 30,
            "check": check,
        },
    )
    try:
        store.promote(run.id, note="site", calibration_id=cal.id)
        deadline = time.monotonic() + 60
        while (after := predict(client, image, tmp_path)[0])["threshold"] != site_threshold:
            assert time.monotonic() < deadline, "the site threshold was never served"
            time.sleep(0.2)
        assert after["verdict"] != before["verdict"]
        assert after["probability"] == pytest.approx(p)
        assert "calibrated for Clinic Z" in after["reason"]
        assert "calibrated for Clinic Z" in model_card(source.current(), [])
    finally:
        store.promote(run.id, note="back to the validated threshold")
    deadline = time.monotonic() + 60
    while (back := predict(client, image, tmp_path)[0])["threshold"] != run.threshold:
        assert time.monotonic() < deadline, "the validated threshold never came back"
        time.sleep(0.2)
    assert back["verdict"] == before["verdict"]


def test_a_promoted_run_that_cannot_be_loaded_leaves_the_old_model_serving(
    client, store, source, tmp_path
):
    first = source.current().run
    broken = _register_copy(store, first, tmp_path / "broken-run", "broken")
    (tmp_path / "broken-run" / "model.keras").write_bytes(b"not a keras file")
    try:
        store.promote(broken, note="test")
        for _ in range(3):
            result, *_ = predict(client, png(phantom_pair(1)[0]), tmp_path)
            assert result["run_id"] == first.id
            time.sleep(0.3)
        assert broken in (source.problem or "")
        # Shown on the public page: Keras's error named the model file's path on the server.
        assert "model.keras" not in source.problem
    finally:
        store.promote(first.id, note="back")
    result, *_ = predict(client, png(phantom_pair(1)[0]), tmp_path)
    assert source.problem is None


def test_without_a_model_the_app_says_so(tmp_path):
    empty = ModelSource(RunStore(f"sqlite:///{tmp_path / 'empty.db'}"), refresh_s=0)
    with running_app(empty) as local_url:
        result, *_ = predict(client_for(local_url), png(phantom_pair(0)[0]), tmp_path)
    assert result["verdict"] == CANNOT_ASSESS
    assert "no model is available yet" in result["reason"]
    assert "no run has been promoted to the public app yet" in result["reason"]
    assert "python -m pipeline promote RUN" in result["reason"]


def test_model_card_names_the_run_its_figures_and_its_limits(source):
    from gradio_app.card import banner, model_card

    served = source.current()
    card = model_card(served, [])
    assert served.run.id in card
    assert "AUC" in card
    assert "sensitivity" in card
    assert "phantoms (" in card  # the data it was trained on, with the split sizes
    assert "not a diagnosis" in card
    assert "fitted at training time" in card
    assert "not a calibrated probability" in card  # trained without eval.calibration
    assert "No model is available yet" in model_card(None, [])
    # Trained on phantoms: labelled a demonstration, at the top of the page and of the card.
    assert served.synthetic
    assert "do not use it on real chest X-rays" in banner(served)
    assert card.index("Demonstration model") < card.index("Held-out test set")
    # Same-collection figures never stand alone: with no external evaluation, it says so.
    assert "On X-rays from other hospitals: not measured" in card
    assert banner(None) == ""

    from pipeline.evaluation import metrics

    y, p = np.array([0, 0, 1, 1] * 10), np.array([0.9, 0.8, 0.95, 0.7] * 10)
    found = metrics.external(y, p, served.run.threshold, n_boot=0)
    external = source.store.add_external_eval(
        served.run.id, dataset_path="/data/other-hospital", data_fingerprint="x", metrics=found
    )
    card = model_card(served, [external])
    assert "other-hospital" in card
    assert "not measured" not in card
    assert f"off by {found['calibration']['ece']:.2f}" in card


def test_older_runs_get_their_ood_reference_rebuilt_or_fall_back_to_image_checks(source, tmp_path):
    run = source.current().run
    assert (Path(run.artifacts_dir) / ood.OOD_FILE).is_file()  # written by training
    old = tmp_path / "old-run"
    shutil.copytree(run.artifacts_dir, old)
    (old / ood.OOD_FILE).unlink()
    rebuilt = ServedModel(replace(run, artifacts_dir=str(old)))
    assert "rebuilt" in rebuilt.reference_note
    assert rebuilt.reference.threshold == pytest.approx(
        source.current().reference.threshold, rel=0.05
    )

    config = json.loads((old / "config.json").read_text())
    config["data"]["path"] = str(tmp_path / "deleted-dataset")
    (old / "config.json").write_text(json.dumps(config))
    without = ServedModel(replace(run, artifacts_dir=str(old)))
    assert without.reference is None
    assert "image checks" in without.reference_note
    assert without.assess(png(phantom_pair(0)[0])).status == ASSESSED
    assert without.assess(png(np.full((99, 99), 7, np.uint8))).status == OUT_OF_DISTRIBUTION


def test_an_image_far_from_the_training_features_cannot_be_assessed(source):
    """The feature-distance check itself: the same X-ray is refused once the reference moves."""
    served = ServedModel(source.current().run)
    xray = png(phantom_pair(0)[1])
    assert served.assess(xray).status == ASSESSED
    served.assessor.reference = replace(served.reference, mean=served.reference.mean + 1e3)
    refused = served.assess(xray)
    assert refused.status == OUT_OF_DISTRIBUTION
    assert refused.verdict == CANNOT_ASSESS
    # Worded for a lay reader: a chest X-ray, but from elsewhere; not "upload an X-ray".
    assert "looks different from the ones the model learned from" in refused.reason
    assert "another machine or hospital" in refused.reason
    assert "upload a frontal" not in refused.reason
    assert refused.probability is None


def test_every_response_carries_the_security_headers(url):
    for path in ("/", "/config", "/gradio_api/info"):
        response = httpx.get(url.rstrip("/") + path, timeout=30)
        assert response.status_code == 200, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"


def test_the_upload_limit_reads_the_same_on_the_page_and_in_the_browser():
    # Browsers and Gradio's refusal count MB as 2**20 bytes; the page says the same number.
    limits = Limits()
    assert launch_options(limits)["max_file_size"] == limits.max_bytes == 20 * 2**20
    intro = " ".join(
        str(b.get("props", {}).get("value", ""))
        for b in build_demo(ModelSource(RunStore()), limits).config["components"]
    )
    assert "Up to 20 MB" in intro


def test_identical_uploads_at_once_each_get_their_own_complete_heatmap(client, tmp_path):
    data = png(phantom_pair(2)[1])
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda i: predict(client, data, tmp_path / str(i)), range(4)))
    heats = [heat for (_, _, _, heat) in answers]
    # Each request's own file (Gradio named identical images alike and wrote them in place,
    # so a download could come back empty while another request rewrote it)...
    assert len({h["path"] for h in heats}) == len(heats)
    # ...complete when downloaded, and the same picture, since the upload was the same.
    pixels = []
    for h in heats:
        body = httpx.get(h["url"], timeout=30).content
        assert len(body) > 1000
        pixels.append(np.asarray(Image.open(io.BytesIO(body))))
    assert all(np.array_equal(pixels[0], p) for p in pixels[1:])


def test_one_client_flooding_explanations_cannot_shut_out_verdicts(source, tmp_path):
    # At most 1 explanation waiting or running per client, 2 for everyone, 3 per minute.
    strict = replace(LIMITS, rates=(("explain", "3/minute"),), explain_in_flight=1)
    strict = replace(strict, explain_capacity=2)
    path = tmp_path / "chest.png"
    path.write_bytes(png(phantom_pair(1)[1]))
    with running_app(source, strict, queue_size=4) as url:
        flooder = client_for(url)
        jobs = [flooder.submit(handle_file(str(path)), api_name="/lime") for _ in range(8)]
        refused, answered = [], 0
        for job in jobs:
            try:
                job.result(timeout=120)
                answered += 1
            except Exception as err:
                refused.append(str(err))
        assert answered >= 1
        assert len(refused) >= 5
        assert all("429" in r for r in refused), refused
        # Someone else (and the flooder too) still gets verdicts at once.
        verdict, *_ = predict(client_for(url), png(phantom_pair(1)[0]), tmp_path)
        assert verdict["status"] == ASSESSED
        assert predict(flooder, png(phantom_pair(2)[0]), tmp_path)[0]["status"] == ASSESSED
    # A refused request is told why, in words, with HTTP 429.
    with running_app(source, strict) as url:
        fn = next(i for i, f in build_demo(source, strict).fns.items() if f.api_name == "lime")
        body = {"data": [None], "fn_index": fn, "session_hash": "s1", "event_data": None}
        with httpx.Client(base_url=url, timeout=30) as http:
            codes = [http.post("/gradio_api/queue/join", json=body) for _ in range(5)]
        refused = [c for c in codes if c.status_code == 429]
        assert refused, [c.status_code for c in codes]
        assert "explanation" in refused[-1].json()["error"]


def test_a_server_path_or_url_sent_as_the_upload_gets_a_sentence(url):
    fn = next(
        i for i, f in build_demo(ModelSource(RunStore())).fns.items() if f.api_name == "predict"
    )
    for sneaky in ("/etc/passwd", "http://169.254.169.254/latest/meta-data"):
        data = [{"path": sneaky, "meta": {"_type": "gradio.FileData"}}]
        body = {"data": data, "fn_index": fn, "session_hash": "raw", "event_data": None}
        answer = httpx.post(url.rstrip("/") + "/gradio_api/queue/join", json=body, timeout=30)
        assert answer.status_code == 422  # Gradio queued it and answered {"error": null}
        assert "upload the file first" in answer.json()["error"]


def test_uploads_stop_at_the_disk_budget_with_a_sentence(source):
    from gradio.utils import get_upload_folder

    # Other tests' uploads may still be stored: the budget is 2 MB above what is there now, so
    # one 1.5 MB upload fits and a second does not.
    stored = sum(f.stat().st_size for f in Path(get_upload_folder()).rglob("*") if f.is_file())
    budget = -(-stored // 2**20) + 2
    rng = np.random.default_rng(0)
    files = [rng.integers(0, 256, 1_500_000, dtype=np.uint8).tobytes() for _ in range(2)]
    with (
        running_app(
            source, replace(LIMITS, upload_budget_mb=budget, upload_per_client_mb=budget)
        ) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        first = http.post("/gradio_api/upload", files={"files": ("a.png", files[0])})
        second = http.post("/gradio_api/upload", files={"files": ("b.png", files[1])})
    assert first.status_code == 200
    assert second.status_code == 503
    assert "try again in a minute" in second.json()["error"]


def test_uploads_are_stored_under_random_names(url, client, tmp_path):
    data = png(phantom_pair(1)[0])
    with httpx.Client(base_url=url, timeout=30) as http:
        (stored,) = http.post(
            "/gradio_api/upload", files={"files": ("Smith, John 1961-02-03.png", data)}
        ).json()
    assert "Smith" not in stored
    assert "1961" not in stored
    assert stored.endswith(".png")
    assert Path(stored).read_bytes() == data
    # And an upload through the client still gets its verdict.
    assert predict(client, data, tmp_path, name="Smith, John.png")[0]["status"] == ASSESSED
