"""The package CLI client (python -m acestep_worker.doors.client), run as a user runs it: against a live pod
API and a local Runpod endpoint. The one-file root generate_music.py has its own tests."""

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from acestep_worker.audio.encode import decode
from acestep_worker.doors.pod.api import ApiSettings, create_app
from acestep_worker.doors.pod.queue import TaskManager

from .conftest import REPO
from .live_server import LiveServer, free_port
from .test_handler import local_api  # noqa: F401  (the handler's --rp_serve_api, as a fixture)


@pytest.fixture(scope="module")
def pod(engine):
    manager = TaskManager(engine, engine.settings.output_dir).start()
    # Loopback URLs may be given, so that a task can fail where the client must report it: in the queue.
    manager.audio_policy = replace(manager.audio_policy, allow_private=True)
    with LiveServer(create_app(engine, manager, ApiSettings())) as server:
        yield server.url
    manager.stop()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "acestep_worker.doors.client", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))


def test_downloads_songs_from_the_pod_api(pod, tmp_path):
    result = _cli("--api-url", pod, "-c", "cli test", "-d", "10", "-b", "2", "--seed", "3", "-o", "song.flac",
                  "--poll-interval", "0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "BPM:" in result.stderr and "Total Time:" in result.stderr
    for name in ("song_1.flac", "song_2.flac"):
        audio, rate = decode((tmp_path / name).read_bytes())
        assert rate == 48000 and audio.shape == (480000, 2)


def test_downloads_songs_from_a_runpod_style_endpoint(local_api, tmp_path):  # noqa: F811
    result = _cli("--runpod-url", local_api, "-c", "runpod test", "-d", "10", "-o", "one.mp3", "--poll-interval",
                  "0.2", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    audio, rate = decode((tmp_path / "one.mp3").read_bytes())
    assert rate == 48000 and audio.shape == (480000, 2)


def test_unreachable_server(tmp_path):
    result = _cli("--api-url", f"http://127.0.0.1:{free_port()}", "-d", "10", "-q", cwd=tmp_path)
    assert result.returncode == 1 and "is not responding" in result.stderr


def test_failed_task_is_reported(pod, tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}/take.wav"  # accepted at submission, fails when the task fetches it
    result = _cli("--api-url", pod, "-d", "10", "--src-audio", nowhere, "-q", "--poll-interval", "0.2", cwd=tmp_path)
    assert result.returncode == 1 and "generation failed" in result.stderr and "src_audio" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_refused_task_is_reported(pod, tmp_path):
    result = _cli("--api-url", pod, "-d", "10", "--thinking", "-q", "--poll-interval", "0.2", cwd=tmp_path)
    assert result.returncode == 1 and "thinking needs the 5 Hz planner" in result.stderr
    assert not list(tmp_path.iterdir())


def test_timeout(pod, tmp_path):
    result = _cli("--api-url", pod, "-d", "300", "--timeout", "0.5", "--poll-interval", "0.2", "-q", cwd=tmp_path)
    assert result.returncode == 1 and "gave up after 0.5 s" in result.stderr


def test_invalid_values_fail_before_anything_is_sent(tmp_path):
    result = _cli("--api-url", "http://127.0.0.1:9", "-d", "10", "-b", "12", cwd=tmp_path)
    assert result.returncode == 1 and "batch_size must be an integer from 1 to 8" in result.stderr


def test_help_texts(tmp_path):
    assert "[Chorus]" in _cli("--show-lyrics-help", cwd=tmp_path).stdout
    assert "genre" in _cli("--show-caption-help", cwd=tmp_path).stdout
    module = subprocess.run([sys.executable, "-m", "acestep_worker.doors.client", "--help"], capture_output=True, text=True)
    assert "--endpoint-id" in module.stdout and "--api-url" in module.stdout
