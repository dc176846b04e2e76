"""The Gradio page's editing controls, driven through Gradio's own client over real HTTP: an uploaded
source song reaches the task, is reported, and is deleted with it; bad audio is refused by name; a
trimmed upload reaches the engine at the chosen length, and a bad trim is refused by the control's name."""

import hashlib

import pytest

from acestep_worker.doors.pod.launch import page_app
from acestep_worker.doors.pod.page.edit_controls import _choices, stem_choices
from acestep_worker.doors.pod.page.inputs import INPUT_NAMES, client_args
from acestep_worker.doors.pod.queue import TaskManager

from ..support.audio import WAV, wav
from ..support.live_server import LiveServer


@pytest.fixture(scope="module")
def page(engine):
    manager = TaskManager(engine, engine.settings.output_dir, maxsize=20, ttl_s=3600).start()
    with LiveServer(page_app(engine, manager, None, 50_000_000)) as server:
        yield server.url, manager
    manager.stop()


def _inputs(**fields):
    """/generate's positional arguments for a short song with `fields` (the rest at the page's defaults)."""
    return client_args(caption="page edit", duration=10, seed="5", **fields)


def test_the_pages_generate_takes_the_tables_inputs_in_its_order(page):
    from gradio_client import Client

    url, _ = page
    api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    labels = [p["label"] for p in api["named_endpoints"]["/generate"]["parameters"]]
    sent = [name for name in INPUT_NAMES if name != "mode"]  # the open tab is session state
    assert len(labels) == len(sent) == len(client_args())
    label = dict(zip(sent, labels))
    assert [label[name] for name in ("description", "inference_steps", "guidance_scale")] == [
        "Description", "Steps", "Guidance"]
    assert (label["task_type"], label["lora_scale"]) == ("Task", "Scale")


def test_an_uploaded_source_reaches_the_task_and_leaves_with_it(page, tmp_path):
    from gradio_client import Client, handle_file

    url, manager = page
    source = tmp_path / "source.wav"
    source.write_bytes(WAV)
    client = Client(url, verbose=False)
    status, *_, summary = client.predict(*_inputs(src_audio=handle_file(str(source))), api_name="/generate")
    assert status.startswith("Done: 1 song(s)") and summary["source"]["field"] == "src_audio"
    task = max(manager._tasks.values(), key=lambda t: t.created)
    assert task.sources["source"]["sha256"] == hashlib.sha256(WAV).hexdigest()
    assert not list(manager.input_dir.glob("upload-*"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio" * 100)
    with pytest.raises(Exception, match="src_audio is not audio"):
        client.predict(*_inputs(src_audio=handle_file(str(bad))), api_name="/generate")
    assert not list(manager.input_dir.glob("upload-*"))


def test_what_the_model_cannot_do_is_refused_before_queueing(page, tmp_path):
    from gradio_client import Client

    url, manager = page
    before = len(manager._tasks)
    inputs = _inputs(inference_steps="500")  # beyond the turbo model's range
    with pytest.raises(Exception, match="inference_steps"):
        Client(url, verbose=False).predict(*inputs, api_name="/generate")
    assert len(manager._tasks) == before


def test_the_page_runs_an_editing_task(page, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = page
    source = tmp_path / "take.wav"
    source.write_bytes(WAV)
    status, *_, summary = Client(url, verbose=False).predict(
        *_inputs(src_audio=handle_file(str(source)), task_type="repaint", repainting_start=0.2,
                 repainting_end=0.6), api_name="/generate")
    assert status.startswith("Done: 1 song(s)") and summary["task_type"] == "repaint"
    assert "repaint" in _choices("task_type") and "vocals" in stem_choices()


def _latest(manager):
    return max(manager._tasks.values(), key=lambda t: t.created)


def test_trimmed_uploads_reach_the_engine_at_the_chosen_length(page, tmp_path):
    from gradio_client import Client, handle_file

    url, manager = page
    source, reference = tmp_path / "long-take.wav", tmp_path / "voice.wav"
    source.write_bytes(wav(rate=44_100, seconds=3.0))
    reference.write_bytes(wav(rate=48_000, seconds=2.0))
    status, *_, summary = Client(url, verbose=False).predict(
        *_inputs(src_audio=handle_file(str(source)), src_audio_from="0.5", src_audio_to="2.25",
                 reference_audio=handle_file(str(reference)), reference_audio_from="1.5"), api_name="/generate")
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
    source.write_bytes(wav(rate=44_100, seconds=3.0))
    before = len(manager._tasks)
    with pytest.raises(Exception, match=message):
        Client(url, verbose=False).predict(*_inputs(src_audio=handle_file(str(source)), src_audio_from=trim[0],
                                                    src_audio_to=trim[1]), api_name="/generate")
    assert len(manager._tasks) == before and not list(manager.input_dir.glob("upload-*"))


def test_a_trim_without_an_upload_is_refused(page):
    from gradio_client import Client

    url, manager = page
    with pytest.raises(Exception, match=r"Reference from \(s\) / Reference to \(s\) are set but no reference_audio"):
        Client(url, verbose=False).predict(*_inputs(reference_audio_to="3"), api_name="/generate")


def test_the_advanced_finishing_controls_reach_the_task(page):
    from gradio_client import Client

    url, manager = page
    client = Client(url, verbose=False)
    status, *_, summary = client.predict(*_inputs(enable_normalization=False, fade_out_duration=1.5),
                                         api_name="/generate")
    task = max(manager._tasks.values(), key=lambda t: t.created)
    assert status.startswith("Done: 1 song(s)")
    assert task.request.enable_normalization is False and task.request.fade_out_duration == 1.5
    assert summary["normalization_gain_db"] == [None] and summary["fade_out_duration"] == 1.5
    _, *_, default = client.predict(*_inputs(), api_name="/generate")
    assert default["normalization_gain_db"][0] is not None  # upstream's default: normalised
