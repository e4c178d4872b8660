"""The public app in a real browser (headless Chromium through Playwright), as a visitor sees it.

Needs Debian's Chromium at /usr/bin/chromium (Playwright's own browser download is not used) and
is skipped, saying so, without it. Screenshots go to the test's temporary folder; with
``TBXRAY_UPDATE_SCREENSHOTS=1`` they also replace ``docs/gradio-*.png`` (shown in the README).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradio_app.service import ModelSource
from tests.dicom_files import displayed_as
from tests.gradio_helpers import phantom_pair, png, running_app, train_tiny_run

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[1] / "docs"
VERDICT_SHOWN = "el => !!el && /No signs of TB|Possible TB|Cannot assess/.test(el.innerText)"

pytestmark = [
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("gradio-browser")
    store = train_tiny_run(root)
    example = root / "phantom-tb.png"
    example.write_bytes(png(phantom_pair(0)[1]))
    with running_app(ModelSource(store, refresh_s=0), examples=[example]) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app_url, request):
    width = getattr(request, "param", 1280)
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    page.goto(app_url)
    page.wait_for_selector("#upload input[type=file]", state="attached", timeout=30_000)
    yield page
    context.close()


def _keep(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("TBXRAY_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS / name)
    return shot


def test_an_upload_shows_verdict_probability_heatmap_and_model_card(page, tmp_path):
    upload = tmp_path / "chest.png"
    upload.write_bytes(png(phantom_pair(3)[1]))
    page.set_input_files("#upload input[type=file]", str(upload))
    verdict = page.locator("#verdict")
    verdict.wait_for(timeout=30_000)
    page.wait_for_function(f"({VERDICT_SHOWN})(document.querySelector('#verdict'))")
    assert "P(TB)" in verdict.inner_text()
    page.locator("#gradcam img").wait_for(timeout=30_000)
    gauge = page.locator("#probability").inner_text()
    assert "P(TB) =" in gauge
    assert "threshold" in gauge
    card = page.locator("#model-card")
    assert "Model card" in card.inner_text()
    # The model served here was trained on phantoms: the top of the page says so.
    assert "do not use it on real chest X-rays" in page.locator("#banner").inner_text()
    assert "not a diagnosis" in card.inner_text()
    shot = _keep(page, tmp_path, "gradio-app.png")
    assert shot.stat().st_size > 10_000


@pytest.mark.parametrize("page", [1024, 1440], indirect=True, ids=["1024px", "1440px"])
def test_a_dicom_upload_is_accepted_shown_as_read_and_assessed(page, tmp_path):
    # Gradio's image box refused .dcm in the browser ("Only image/* allowed") before the app saw it.
    upload = tmp_path / "chest.dcm"
    upload.write_bytes(displayed_as(phantom_pair(3)[1], BurnedInAnnotation="YES"))
    page.set_input_files("#upload input[type=file]", str(upload))
    page.wait_for_function(f"({VERDICT_SHOWN})(document.querySelector('#verdict'))")
    text = page.locator("#verdict").inner_text()
    assert "Cannot assess" not in text, text
    assert "P(TB)" in text
    assert "burned into the image" in text
    page.locator("#gradcam img").wait_for(state="visible", timeout=30_000)
    page.locator("#preview img").wait_for(state="visible", timeout=30_000)  # the image as read
    assert "not read, shown or kept" in page.inner_text("body")  # the privacy promise
    width = page.viewport_size["width"]
    shot = _keep(page, tmp_path, f"gradio-dicom-{width}.png")
    assert shot.stat().st_size > 10_000


def test_a_photo_is_answered_cannot_assess_with_the_reason(page, tmp_path):
    import skimage.data

    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(png(skimage.data.chelsea(), "JPEG"))
    page.set_input_files("#upload input[type=file]", str(photo))
    page.wait_for_function(f"({VERDICT_SHOWN})(document.querySelector('#verdict'))")
    text = page.locator("#verdict").inner_text()
    assert "Cannot assess" in text
    assert "colour picture" in text
    assert page.locator("#gradcam img").count() == 0
    _keep(page, tmp_path, "gradio-cannot-assess.png")


def test_lime_and_shap_run_on_request_for_a_picked_example(page, tmp_path):
    page.get_by_text("phantom-tb").first.click()
    page.wait_for_function(f"({VERDICT_SHOWN})(document.querySelector('#verdict'))")
    for method in ("LIME", "SHAP"):
        page.get_by_role("button", name=f"Explain with {method}").click()
    for method in ("LIME", "SHAP"):
        page.get_by_text(f"{method} on the image as the model sees it").wait_for(timeout=60_000)
        # The note and the heatmap arrive together, but the image may paint a moment later.
        page.locator(f"#{method.lower()} img").wait_for(state="visible", timeout=30_000)
    _keep(page, tmp_path, "gradio-explanations.png")


def test_the_page_is_answered_every_call_it_makes_and_clears_old_explanations(page, tmp_path):
    # The app refuses event calls that the page does not make (gradio_app.events).
    refused = []
    page.on(
        "response",
        lambda r: r.request.method == "POST" and r.status >= 400 and refused.append(r.url),
    )
    upload = tmp_path / "chest.png"
    upload.write_bytes(png(phantom_pair(3)[1]))
    page.set_input_files("#upload input[type=file]", str(upload))
    page.wait_for_function(f"({VERDICT_SHOWN})(document.querySelector('#verdict'))")
    page.get_by_role("button", name="Explain with LIME").click()
    note = page.get_by_text("LIME on the image as the model sees it")
    note.wait_for(timeout=60_000)
    page.get_by_text("phantom-tb").first.click()  # another image: the old LIME goes
    note.wait_for(state="detached", timeout=30_000)
    page.locator("#preview img").wait_for(state="visible", timeout=30_000)
    assert "Model card" in page.locator("#model-card").inner_text()
    assert not refused


def test_on_a_phone_the_verdict_shows_without_scrolling_after_an_upload(browser, app_url, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(app_url)
        page.wait_for_selector("#upload input[type=file]", state="attached", timeout=30_000)
        # The research-tool warning is read before anything else, not only at the bottom.
        assert page.get_by_text("not a diagnosis").first.bounding_box()["y"] < 844
        upload = tmp_path / "chest.png"
        upload.write_bytes(png(phantom_pair(3)[1]))
        page.set_input_files("#upload input[type=file]", str(upload))
        page.wait_for_function(f"({VERDICT_SHOWN})(document.querySelector('#verdict'))")
        box = page.locator("#verdict").bounding_box()
        scrolled = page.evaluate("window.scrollY")
        assert box["y"] + box["height"] - scrolled <= 844, box
        # Labels wrap instead of being cut off.
        label = page.locator("#gradcam label, #gradcam [data-testid=block-label]").first
        assert label.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
        _keep(page, tmp_path, "gradio-phone.png")
    finally:
        context.close()


def test_an_upload_is_decoded_once_for_its_verdict_preview_and_explanations(
    page, tmp_path, monkeypatch
):
    from pipeline.imaging import decode

    decodes = []
    real = decode.decode

    def counted(src, **kwargs):
        decodes.append(src)
        return real(src, **kwargs)

    monkeypatch.setattr(decode, "decode", counted)
    upload = tmp_path / "chest.png"
    upload.write_bytes(png(phantom_pair(4)[1]))
    page.set_input_files("#upload input[type=file]", str(upload))
    page.wait_for_function(f"({VERDICT_SHOWN})(document.querySelector('#verdict'))")
    page.locator("#preview img").wait_for(state="visible", timeout=30_000)
    for method in ("LIME", "SHAP"):
        page.get_by_role("button", name=f"Explain with {method}").click()
        page.get_by_text(f"{method} on the image as the model sees it").wait_for(timeout=60_000)
    assert len(decodes) == 1, decodes
