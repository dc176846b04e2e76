"""The Gradio page's editing controls, driven through Gradio's own client over real HTTP: an uploaded
source song reaches the task, is reported, and is deleted with it; bad audio is refused by name."""

import hashlib

import pytest

from acestep_worker.server import page_app
from acestep_worker.server.editing_ui import _choices
from acestep_worker.server.lora_ui import NONE
from acestep_worker.server.tasks import TaskManager

from .live_server import LiveServer
from .test_audio_sources import WAV


@pytest.fixture(scope="module")
def page(engine):
    manager = TaskManager(engine, engine.settings.output_dir, maxsize=20, ttl_s=3600).start()
    with LiveServer(page_app(engine, manager, None, 50_000_000)) as server:
        yield server.url, manager
    manager.stop()


def _inputs(src, task_type="text2music", start=None, end=None, steps=""):
    """The page's inputs in order (its mode is session state, not sent): its form, the editing accordion, the
    adapter picker."""
    base = ["", "page edit", "", 10, None, 1, "5", "mp3", steps, "", "", "", "", "", "auto", False]
    return base + [src, None, task_type, start, end, None, ""] + [NONE, 1.0]


def test_an_uploaded_source_reaches_the_task_and_leaves_with_it(page, tmp_path):
    from gradio_client import Client, handle_file

    url, manager = page
    source = tmp_path / "source.wav"
    source.write_bytes(WAV)
    client = Client(url, verbose=False)
    status, *_, summary = client.predict(*_inputs(handle_file(str(source))), api_name="/generate")
    assert status.startswith("Done: 1 song(s)") and summary["source"]["field"] == "src_audio"
    task = max(manager._tasks.values(), key=lambda t: t.created)
    assert task.sources["source"]["sha256"] == hashlib.sha256(WAV).hexdigest()
    assert not list(manager.input_dir.glob("upload-*"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio" * 100)
    with pytest.raises(Exception, match="src_audio is not audio"):
        client.predict(*_inputs(handle_file(str(bad))), api_name="/generate")
    assert not list(manager.input_dir.glob("upload-*"))


def test_the_task_choices_come_from_the_schema():
    assert "text2music" in _choices("task_type") and _choices("no_such_field") == []


def test_what_the_model_cannot_do_is_refused_before_queueing(page, tmp_path):
    from gradio_client import Client

    url, manager = page
    before = len(manager._tasks)
    inputs = _inputs(None, steps="500")  # beyond the turbo model's range
    with pytest.raises(Exception, match="inference_steps"):
        Client(url, verbose=False).predict(*inputs, api_name="/generate")
    assert len(manager._tasks) == before


def test_the_page_runs_an_editing_task(page, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = page
    source = tmp_path / "take.wav"
    source.write_bytes(WAV)
    status, *_, summary = Client(url, verbose=False).predict(
        *_inputs(handle_file(str(source)), task_type="repaint", start=0.2, end=0.6), api_name="/generate")
    assert status.startswith("Done: 1 song(s)") and summary["task_type"] == "repaint"
    assert "repaint" in _choices("task_type") and "vocals" in _choices("track_name")
