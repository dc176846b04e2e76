"""The package CLI with audio inputs: multipart to a live pod, data URIs to a local Runpod endpoint."""

import hashlib
import os
import subprocess
import sys

import pytest

from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager

from .live_server import LiveServer
from .test_audio_sources import WAV
from .test_handler import local_api  # noqa: F401  (the handler's --rp_serve_api, as a fixture)

WAV_SHA = hashlib.sha256(WAV).hexdigest()


@pytest.fixture(scope="module")
def pod(engine):
    manager = TaskManager(engine, engine.settings.output_dir).start()
    with LiveServer(create_app(engine, manager, ApiSettings())) as server:
        yield server.url, manager
    manager.stop()


def _cli(*args, cwd, quiet=True):
    return subprocess.run([sys.executable, "-m", "acestep_worker.doors.client", *args, *(["-q"] if quiet else []),
                           "--poll-interval", "0.2"],
                          cwd=cwd, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def test_source_and_reference_files_go_to_the_pod_as_uploads(pod, tmp_path):
    url, manager = pod
    (tmp_path / "source.wav").write_bytes(WAV)
    (tmp_path / "ref.wav").write_bytes(WAV)
    result = _cli("--api-url", url, "-d", "10", "--src-audio", "source.wav", "--reference-audio", "ref.wav",
                  "-o", "edited.mp3", cwd=tmp_path, quiet=False)
    assert result.returncode == 0, result.stderr
    assert f"src_audio received, 1.0 s, sha256 {WAV_SHA[:16]}" in result.stderr
    assert (tmp_path / "edited.mp3").stat().st_size > 0
    task = max(manager._tasks.values(), key=lambda t: t.created)
    assert task.sources["source"]["sha256"] == WAV_SHA and task.sources["reference"]["sha256"] == WAV_SHA
    assert not list(manager.input_dir.glob("upload-*"))


def test_a_source_file_goes_to_runpod_inline(local_api, tmp_path):  # noqa: F811
    (tmp_path / "source.flac").write_bytes(WAV)  # the extension is only a label: the bytes are sniffed
    result = _cli("--runpod-url", local_api, "-d", "10", "--src-audio", "source.flac", "-o", "out.mp3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.mp3").stat().st_size > 0


def test_a_missing_file_fails_before_anything_is_sent(tmp_path):
    result = _cli("--api-url", "http://127.0.0.1:9", "-d", "10", "--src-audio", "nope.wav", cwd=tmp_path)
    assert result.returncode == 1 and "--src-audio nope.wav: no such file" in result.stderr


def test_a_url_is_passed_on_for_the_server_to_fetch_and_judge(pod, tmp_path):
    url, _ = pod
    result = _cli("--api-url", url, "-d", "10", "--src-audio", "https://127.0.0.1/song.wav", cwd=tmp_path)
    assert result.returncode == 1 and "src_audio points at 127.0.0.1" in result.stderr
