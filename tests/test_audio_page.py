"""The Gradio page's editing controls, driven through Gradio's own client over real HTTP: an uploaded
source song reaches the task, is reported, and is deleted with it; bad audio is refused by name; a
trimmed upload reaches the engine at the chosen length, and a bad trim is refused by the control's name."""

import hashlib

import pytest

from acestep_worker.server import page_app
from acestep_worker.server.editing_ui import _choices
from acestep_worker.server.lora_ui import NONE
from acestep_worker.server.tasks import TaskManager

from .live_server import LiveServer
from .test_audio_in import _wav
from .test_audio_sources import WAV


@pytest.fixture(scope="module")
def page(engine):
    manager = TaskManager(engine, engine.settings.output_dir, maxsize=20, ttl_s=3600).start()
    with LiveServer(page_app(engine, manager, None, 50_000_000)) as server:
        yield server.url, manager
    manager.stop()


def _inputs(src, task_type="text2music", start=None, end=None, steps="", src_trim=("", ""), ref=None,
            ref_trim=("", "")):
    """The page's inputs in order (its mode is session state, not sent): its form, the editing accordion, the
    adapter picker."""
    base = ["", "page edit", "", 10, None, 1, "5", "mp3", steps, "", "", "", "", "", "auto", False]
    return base + [src, *src_trim, ref, *ref_trim, task_type, start, end, None, ""] + [NONE, 1.0]


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


def _latest(manager):
    return max(manager._tasks.values(), key=lambda t: t.created)


def test_trimmed_uploads_reach_the_engine_at_the_chosen_length(page, tmp_path):
    from gradio_client import Client, handle_file

    url, manager = page
    source, reference = tmp_path / "long-take.wav", tmp_path / "voice.wav"
    source.write_bytes(_wav(rate=44_100, seconds=3.0))
    reference.write_bytes(_wav(rate=48_000, seconds=2.0))
    status, *_, summary = Client(url, verbose=False).predict(
        *_inputs(handle_file(str(source)), src_trim=("0.5", "2.25"), ref=handle_file(str(reference)),
                 ref_trim=("1.5", "")), api_name="/generate")
    assert status.startswith("Done: 1 song(s)")
    assert summary["source"]["duration_s"] == pytest.approx(1.75, abs=0.001)  # what the engine decoded
    assert summary["reference"]["duration_s"] == pytest.approx(0.5, abs=0.001)
    assert summary["source"]["format"] == "flac" and summary["source"]["sample_rate"] == 44_100
    assert _latest(manager).request.src_audio.endswith(".flac")
    assert not list(manager.input_dir.glob("upload-*"))


@pytest.mark.parametrize("trim,message", [
    (("2", "1"), r"Source to \(s\) \(1\) must be after Source from \(s\) \(2\)"),
    (("5", ""), r"Source from \(s\) \(5\) is past the end of the uploaded song \(3.00 s long\)"),
    (("ten", ""), r"Source from \(s\) is 'ten'; give seconds as a number from 0"),
])
def test_a_bad_trim_is_refused_by_name_and_stores_nothing(page, tmp_path, trim, message):
    from gradio_client import Client, handle_file

    url, manager = page
    source = tmp_path / "take.wav"
    source.write_bytes(_wav(rate=44_100, seconds=3.0))
    before = len(manager._tasks)
    with pytest.raises(Exception, match=message):
        Client(url, verbose=False).predict(*_inputs(handle_file(str(source)), src_trim=trim), api_name="/generate")
    assert len(manager._tasks) == before and not list(manager.input_dir.glob("upload-*"))


def test_a_trim_without_an_upload_is_refused(page):
    from gradio_client import Client

    url, manager = page
    with pytest.raises(Exception, match=r"Reference from \(s\) / Reference to \(s\) are set but no reference_audio"):
        Client(url, verbose=False).predict(*_inputs(None, ref_trim=("", "3")), api_name="/generate")
