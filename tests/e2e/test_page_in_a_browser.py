"""The Gradio page in a real headless Chromium (Debian's package, driven by Playwright):
load it, fill the form, generate with the tiny model, and see an audio player."""

import os
import shutil
from pathlib import Path

import gradio as gr
import pytest
from fastapi import FastAPI

from acestep_worker.audio.encode import decode
from acestep_worker.doors.pod.page.form import build_ui
from acestep_worker.doors.pod.queue import TaskManager, TaskState
from acestep_worker.schema.request import parse

from ..support.live_server import LiveServer
from ..support.repo import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "test-artifacts"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if CHROMIUM is None and os.environ.get("CI"):
    pytest.fail("Chromium is required in CI (.ci/run installs Debian's chromium package)", pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")


def _serve(engine):
    manager = TaskManager(engine, engine.settings.output_dir).start()
    app = gr.mount_gradio_app(FastAPI(), build_ui(engine, manager), path="/",
                              allowed_paths=[str(Path(engine.settings.output_dir).resolve())])
    return manager, LiveServer(app)


@pytest.fixture(scope="module")
def served(engine):
    manager, server = _serve(engine)
    with server:
        yield server.url, manager
    manager.stop()


@pytest.fixture(scope="module")
def page_url(served):
    return served[0]


@pytest.fixture()
def browser_page():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 1400})
        finally:
            browser.close()


def _open(page, url):
    """Load the page until its form is there. Not "networkidle": Gradio keeps a heartbeat stream open
    for pages with session state (the Stop button's task id)."""
    page.goto(url, wait_until="load")
    page.wait_for_selector("#generate", timeout=60_000)


def test_page_generates_a_song_in_a_real_browser(page_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            _open(page, page_url)
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


def test_advanced_fields_are_empty_and_show_the_models_defaults(page_url, browser_page):
    page = browser_page
    _open(page, page_url)
    page.locator("#advanced").click()
    steps = page.locator("#steps textarea, #steps input").first
    assert steps.input_value() == "" and steps.get_attribute("placeholder") == "8 (the model's)"  # turbo
    guidance = page.locator("#guidance textarea, #guidance input").first
    assert guidance.input_value() == "" and "unused by turbo" in guidance.get_attribute("placeholder")
    page.locator("#model input").first.click()
    page.get_by_role("option", name="acestep-v15-base").click()
    page.wait_for_function("document.querySelector('#steps textarea, #steps input').placeholder.startsWith('32')")
    assert guidance.get_attribute("placeholder") == "7 (the model's)"
    assert "[Chorus]" in page.content() and "not the story" in page.content()  # the structure hints
    page.locator("#editing").click()
    for field in ("repainting-start", "repainting-end", "audio-cover-strength"):
        box = page.locator(f"#{field} textarea, #{field} input").first
        assert box.input_value() == "" and box.get_attribute("placeholder").startswith("empty"), field
    page.screenshot(path=str(ARTIFACTS / "gradio-page-advanced.png"), full_page=True)


def test_each_upload_shows_its_length_and_both_trims_reach_the_engine(served, browser_page, tmp_path):
    """The waveform editor's own trim (cut in the browser, uploaded as a 48 kHz WAV), then the from / to
    fields on what it uploaded: the task's source is the part both kept."""
    from ..support.audio import wav

    url, manager = served
    source = tmp_path / "take.wav"
    source.write_bytes(wav(rate=44_100, seconds=3.0))
    page = browser_page
    _open(page, url)
    page.locator("#editing").click()
    for elem in ("src-audio", "reference-audio"):
        for end in ("from", "to"):
            box = page.locator(f"#{elem}-{end} textarea, #{elem}-{end} input").first
            assert box.input_value() == "" and box.get_attribute("placeholder").startswith("empty"), (elem, end)
    page.locator("#src-audio input[type=file]").set_input_files(str(source))
    page.wait_for_selector("#src-audio-length >> text=3.00 s", timeout=60_000)
    assert "44100 Hz, stereo, WAV" in page.locator("#src-audio-length").inner_text()
    page.wait_for_function("document.querySelector('#src-audio-to textarea, #src-audio-to input')"
                           ".placeholder.includes('3.00 s')")
    page.get_by_role("button", name="Trim audio to selection").click()
    page.locator("#src-audio button", has_text="Trim").first.wait_for()
    page.locator("#editing").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "gradio-page-trim.png"), full_page=True)
    page.locator("#src-audio button", has_text="Trim").first.click()  # the editor's default selection
    page.wait_for_selector("#src-audio-length >> text=48000 Hz", timeout=60_000)
    edited_s = float(page.locator("#src-audio-length strong").inner_text().split()[0])
    assert 0.1 < edited_s < 3.0
    page.locator("#src-audio-from textarea, #src-audio-from input").first.fill("0.1")
    page.locator("#src-audio-to textarea, #src-audio-to input").first.fill(f"{edited_s - 0.1:.2f}")
    page.locator("#generate").click()
    page.wait_for_selector("text=Done: 1 song(s)", timeout=180_000)
    task = max(manager._tasks.values(), key=lambda t: t.created)
    kept = task.sources["source"]
    assert kept["duration_s"] == pytest.approx(round(edited_s - 0.2, 2), abs=0.002)
    assert kept["sample_rate"] == 48_000 and kept["format"] == "flac"


def test_simple_mode_says_it_needs_the_planner_when_there_is_none(page_url, browser_page):
    page = browser_page
    _open(page, page_url)
    page.get_by_role("tab", name="Simple: describe the song").click()
    page.wait_for_selector("#no-planner", timeout=30_000)
    assert page.locator("#description textarea").is_disabled()
    assert page.locator("#format").is_disabled()
    page.screenshot(path=str(ARTIFACTS / "gradio-page-simple-no-planner.png"), full_page=True)


def test_stop_cancels_a_queued_task(served, engine, browser_page):
    url, manager = served
    blocker = manager.submit(parse({"caption": "keeps the worker busy", "duration": 600, "batch_size": 2}))
    try:
        page = browser_page
        _open(page, url)
        page.locator("#caption textarea").fill("waits in the queue")
        page.locator("#generate").click()
        page.wait_for_selector("text=In the queue", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "gradio-page-queued.png"), full_page=True)
        page.locator("#stop").click()
        page.wait_for_selector("text=Stopped: the task was cancelled", timeout=60_000)
        mine = [t for t in manager._tasks.values() if t.request.caption == "waits in the queue"]
        assert len(mine) == 1 and mine[0].state is TaskState.FAILED and "cancelled" in mine[0].error
    finally:
        manager.cancel(blocker.id)
        blocker.done.wait(300)


@pytest.fixture(scope="module")
def planner_page(planner_engine):
    manager, server = _serve(planner_engine)
    with server:
        yield server.url
    manager.stop()


def test_simple_mode_turns_a_description_into_a_song(planner_page, browser_page):
    page = browser_page
    _open(page, planner_page)
    page.get_by_role("tab", name="Simple: describe the song").click()
    page.locator("#description textarea").fill("a calm piano instrumental about the sea")
    page.locator("#seed textarea, #seed input").first.fill("5")
    page.locator("#generate").click()
    page.wait_for_selector("text=Done: 1 song(s)", timeout=240_000)
    page.screenshot(path=str(ARTIFACTS / "gradio-page-simple.png"), full_page=True)
    assert page.locator("#song-0 audio").count() >= 1
    assert "lm_metadata" in page.content()


def test_format_my_lyrics_rewrites_them_with_the_planner(planner_page, browser_page):
    page = browser_page
    _open(page, planner_page)
    page.locator("#caption textarea").fill("rock")
    page.locator("#lyrics textarea").fill("hello world")
    page.locator("#format").click()
    page.wait_for_function("document.querySelector('#caption textarea').value !== 'rock'", timeout=120_000)
