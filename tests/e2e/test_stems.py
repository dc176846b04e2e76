"""Several stems from one job through every door, on the tiny base model with a 1 s source: the pod's
/release_task (JSON and multipart), the Gradio page's stem picker, the package CLI client and the one-file
client (`--stems`), and a Runpod endpoint (handler.py --rp_serve_api). Each answer lists one file per stem,
named by its track."""

import os
import subprocess
import sys
import venv

import httpx
import pytest

from acestep_worker.audio.encode import decode
from acestep_worker.doors.pod.launch import page_app
from acestep_worker.doors.pod.page.inputs import client_args
from acestep_worker.doors.pod.queue import TaskManager

from ..support.audio import B64, WAV
from ..support.live_server import LiveServer
from ..support.pod import task_items
from ..support.repo import REPO

BASE = "acestep-v15-base"
EXTRACT = {"task_type": "extract", "model": BASE, "inference_steps": 2, "seed": 3, "caption": "stems"}


def test_pod_json_lists_one_file_per_stem(api):
    items = task_items(api, httpx.post(f"{api}/release_task", json={**EXTRACT, "src_audio": B64,
                                                               "track_name": ["vocals", "drums"]}))
    assert [item["track_name"] for item in items] == ["vocals", "drums"]
    assert all(item["file"].endswith(f"-{item['track_name']}.mp3") for item in items)
    for item in items:
        audio, rate = decode(httpx.get(api + item["file"]).content)
        assert rate == 48_000 and audio.shape[1] == 2


def test_pod_multipart_takes_the_preset_as_a_form_field(api, manager):
    form = {key: str(value) for key, value in EXTRACT.items()}
    items = task_items(api, httpx.post(f"{api}/release_task", data={**form, "track_name": "vocals+instrumental"},
                                   files={"src_audio": ("mix.wav", WAV, "audio/wav")}))
    assert [item["track_name"] for item in items] == ["vocals", "instrumental"]
    assert items[0]["source"]["bytes"] == len(WAV) and not list(manager.input_dir.glob("upload-*"))
    refused = httpx.post(f"{api}/release_task", data={"task_type": "repaint", "track_name": "vocals,drums"},
                         files={"src_audio": ("mix.wav", WAV, "audio/wav")})
    assert refused.status_code == 400 and refused.json()["field"] == "track_name"
    assert not list(manager.input_dir.glob("upload-*"))


def test_the_page_makes_the_stems_picked(engine, tmp_path):
    from gradio_client import Client, handle_file

    manager = TaskManager(engine, engine.settings.output_dir, maxsize=5, ttl_s=3600).start()
    source = tmp_path / "mix.wav"
    source.write_bytes(WAV)
    try:
        with LiveServer(page_app(engine, manager, None, 50_000_000)) as server:
            status, *_players, downloads, _lrc, summary = Client(server.url, verbose=False).predict(
                *client_args(caption="page stems", seed="3", model=BASE, inference_steps="2", task_type="extract",
                             src_audio=handle_file(str(source)), track_name=["vocals", "drums", "bass"]),
                api_name="/generate")
    finally:
        manager.stop()
    assert status.startswith("Done: 3 song(s)") and summary["stems"] == ["vocals", "drums", "bass"]
    assert [os.path.basename(path).rsplit("-", 1)[1] for path in downloads] == ["vocals.mp3", "drums.mp3", "bass.mp3"]


def test_the_cli_client_names_each_file_by_its_stem(api, tmp_path):
    (tmp_path / "mix.wav").write_bytes(WAV)
    result = subprocess.run(
        [sys.executable, "-m", "acestep_worker", "client", "--api-url", api, "--src-audio", "mix.wav",
         "--task-type", "extract", "--model", BASE, "--steps", "2", "--stems", "vocals,drums,bass", "-o", "mix.wav",
         "-q", "--poll-interval", "0.2"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ), check=False)
    assert result.returncode == 0, result.stderr
    for stem in ("vocals", "drums", "bass"):
        audio, rate = decode((tmp_path / f"mix_{stem}.wav").read_bytes())
        assert rate == 48_000 and audio.shape == (48_000, 2)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bare")
    venv.create(folder, with_pip=False)
    return str(folder / "bin" / "python")


def test_the_one_file_client_takes_stems_too(bare_python, api, tmp_path):
    (tmp_path / "mix.wav").write_bytes(WAV)
    result = subprocess.run(
        [bare_python, str(REPO / "generate_music.py"), "--api-url", api, "--src-audio", "mix.wav", "--task-type",
         "extract", "--model", BASE, "--steps", "2", "--stems", "vocals+instrumental", "-o", "take.flac", "-q",
         "--poll-interval", "0.2"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["take_vocals.flac", "take_instrumental.flac"]


def test_a_runpod_endpoint_returns_the_stems_inline(local_api):
    body = httpx.post(local_api + "/runsync", json={"input": {
        **EXTRACT, "src_audio": B64, "track_name": "drums,bass", "return_audio_base64": True}}, timeout=300).json()
    assert body["status"] == "COMPLETED", body
    output = body["output"]
    assert output["stems"] == ["drums", "bass"]
    assert [(r["track_name"], bool(r["audio_base64"])) for r in output["results"]] == [("drums", True), ("bass", True)]
