"""The Gradio page in a real headless Chromium (Debian's package, driven by Playwright):
load it, fill the form, generate with the tiny model, and see an audio player."""

import os
import shutil
from pathlib import Path

import gradio as gr
import pytest
from fastapi import FastAPI

from acestep_worker.audio_io import decode
from acestep_worker.server.tasks import TaskManager
from acestep_worker.server.ui import build_ui

from .conftest import REPO
from .live_server import LiveServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if CHROMIUM is None and os.environ.get("CI"):
    pytest.fail("Chromium is required in CI (.ci/run installs Debian's chromium package)", pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")


@pytest.fixture(scope="module")
def page_url(engine):
    manager = TaskManager(engine, engine.settings.output_dir).start()
    app = gr.mount_gradio_app(FastAPI(), build_ui(engine, manager), path="/",
                              allowed_paths=[str(Path(engine.settings.output_dir).resolve())])
    with LiveServer(app) as server:
        yield server.url
    manager.stop()


def test_page_generates_a_song_in_a_real_browser(page_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(page_url, wait_until="networkidle")
            assert "random-weight test checkpoints" in page.content()
            page.locator("#caption textarea").fill("browser test: bright synth pop")
            page.locator("#seed textarea, #seed input").first.fill("11")
            page.locator("#generate").click()
            page.wait_for_selector("#song-0 audio", state="attached", timeout=180_000)
            page.wait_for_selector("text=Done: 1 song(s)", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "gradio-page.png"), full_page=True)
            assert page.locator("#song-0 audio").count() >= 1 and page.locator("#song-1 audio").count() == 0
            link = page.locator("a[href*='.mp3']").first.get_attribute("href")
            download = page.request.get(link if link.startswith("http") else page_url + link)
            data = download.body()
        finally:
            browser.close()
    audio, rate = decode(data)  # the page's download link serves the generated song
    assert rate == 48000 and audio.shape == (30 * 48000, 2)
    assert (ARTIFACTS / "gradio-page.png").stat().st_size > 10_000
