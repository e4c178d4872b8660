"""The dashboard in a real browser: ``streamlit run`` on a free localhost port, driven by
headless Chromium (Debian's ``chromium`` through Playwright) through every page.

Every page is visited at 1024 and 1440 px wide. A page passes when it finishes running without a
Streamlit exception box and no headline metric is cut short (an ellipsis in its text, or text
wider than its box). A screenshot of each page at each width is saved under the test's
tmp_path, and also as ``docs/dashboard-<page>-<width>.png`` when ``TBXRAY_DOCS_SCREENSHOTS=1``
(the README's pictures).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pages import APP, ROOT, seed_store

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORTS = [{"width": 1024, "height": 768}, {"width": 1440, "height": 900}]

# Headline metrics whose value or label is cut: an ellipsis in its text, or an element (or one
# inside it) whose content is wider than its box, which is what CSS text-overflow: ellipsis shows.
TRUNCATED_METRICS = """() => {
  const parts = '[data-testid="stMetricValue"], [data-testid="stMetricLabel"]';
  const cut = [];
  for (const metric of document.querySelectorAll('[data-testid="stMetric"]')) {
    const short = [...metric.querySelectorAll(parts)].some(el =>
      el.innerText.trim().endsWith('\u2026') ||
      [el, ...el.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1));
    if (short) cut.push(metric.innerText.replace(/\\s+/g, ' ').trim());
  }
  return cut;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"streamlit exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"streamlit did not answer on {url} within {timeout:.0f} s")


@pytest.fixture
def dashboard(phantoms, isolated_store, tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    """A seeded store and the dashboard serving it; yields its URL and the run ids."""
    ids = seed_store(phantoms, epochs=3)
    port = free_port()
    log = (tmp_path / "streamlit.log").open("wb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.headless=true",
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            "--browser.gatherUsageStats=false",
            "--client.toolbarMode=viewer",
        ],
        cwd=tmp_path,  # so the Dataset page offers the seeded phantoms, not ./data
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server)
        yield url, ids
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def settle(page, timeout: float = 120.0) -> None:
    """Wait until the app has rendered and stopped running (the status widget is gone)."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return
        time.sleep(0.2)
    raise AssertionError(f"{page.url} kept running for {timeout:.0f} s")


def screenshot(page, path: Path, viewport: dict[str, int]) -> None:
    """The whole page: the viewport grows to the main area's height for the picture."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": min(int(height) + 40, 6000)})
    time.sleep(0.8)  # Plotly redraws at the new size
    page.screenshot(path=str(path))
    page.set_viewport_size(viewport)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt install chromium)")
def test_every_page_renders_at_1024_and_1440_without_an_exception_or_cut_metric(
    dashboard, tmp_path
):
    from playwright.sync_api import sync_playwright

    url, ids = dashboard
    pages = {
        "leaderboard": "",
        "run": f"run?run={ids['plain']}",
        "run-failed": f"run?run={ids['failed']}",
        "compare": f"compare?runs={ids['plain']},{ids['clahe']}",
        "dataset": "dataset",
        "launch": "launch",
        "explain": f"explain?run={ids['plain']}",
        "publish": "publish",
    }
    docs = os.environ.get("TBXRAY_DOCS_SCREENSHOTS") == "1"
    failures = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = browser.new_page()
        for name, path in pages.items():
            for viewport in VIEWPORTS:
                width = viewport["width"]
                page.set_viewport_size(viewport)
                page.goto(f"{url}/{path}")
                settle(page)
                shot = tmp_path / f"dashboard-{name}-{width}.png"
                screenshot(page, shot, viewport)
                if docs:
                    screenshot(page, ROOT / "docs" / f"dashboard-{name}-{width}.png", viewport)
                boxes = page.locator('[data-testid="stException"]')
                if boxes.count():
                    failures.append(f"{name} at {width}: {boxes.first.inner_text()[:1500]}")
                for metric in page.evaluate(TRUNCATED_METRICS):
                    failures.append(f"{name} at {width}: metric cut short: {metric!r}")
                assert shot.stat().st_size > 10_000
        browser.close()
    assert not failures, "\n\n".join(failures)
