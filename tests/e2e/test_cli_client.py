"""The package CLI client (python -m acestep_worker client), run as a user runs it: against a live pod
API and a local Runpod endpoint, with and without audio inputs (multipart to the pod, data URIs to Runpod).
The one-file root generate_music.py has its own tests."""

import os
import subprocess
import sys
from dataclasses import replace

from acestep_worker.audio.encode import decode

from ..support.audio import WAV, WAV_SHA
from ..support.live_server import free_port


def _cli_quiet(*args, cwd, quiet=True):
    return subprocess.run([sys.executable, "-m", "acestep_worker", "client", *args, *(["-q"] if quiet else []),
                           "--poll-interval", "0.2"],
                          cwd=cwd, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def test_source_and_reference_files_go_to_the_pod_as_uploads(api, manager, tmp_path):
    url = api
    (tmp_path / "source.wav").write_bytes(WAV)
    (tmp_path / "ref.wav").write_bytes(WAV)
    result = _cli_quiet("--api-url", url, "-d", "10", "--src-audio", "source.wav", "--reference-audio", "ref.wav",
                        "-o", "edited.mp3", cwd=tmp_path, quiet=False)
    assert result.returncode == 0, result.stderr
    assert f"src_audio received, 1.0 s, sha256 {WAV_SHA[:16]}" in result.stderr
    assert (tmp_path / "edited.mp3").stat().st_size > 0
    task = max(manager._tasks.values(), key=lambda t: t.created)
    assert task.sources["source"]["sha256"] == WAV_SHA and task.sources["reference"]["sha256"] == WAV_SHA
    assert not list(manager.input_dir.glob("upload-*"))


def test_a_source_file_goes_to_runpod_inline(local_api, tmp_path):
    (tmp_path / "source.flac").write_bytes(WAV)  # the extension is only a label: the bytes are sniffed
    result = _cli_quiet("--runpod-url", local_api, "-d", "10", "--src-audio", "source.flac", "-o", "out.mp3",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.mp3").stat().st_size > 0


def test_a_missing_file_fails_before_anything_is_sent(tmp_path):
    result = _cli_quiet("--api-url", "http://127.0.0.1:9", "-d", "10", "--src-audio", "nope.wav", cwd=tmp_path)
    assert result.returncode == 1 and "--src-audio nope.wav: no such file" in result.stderr


def test_a_url_is_passed_on_for_the_server_to_fetch_and_judge(api, tmp_path):
    url = api
    result = _cli_quiet("--api-url", url, "-d", "10", "--src-audio", "https://127.0.0.1/song.wav", cwd=tmp_path)
    assert result.returncode == 1 and "src_audio points at 127.0.0.1" in result.stderr


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "acestep_worker", "client", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))


def test_downloads_songs_from_the_pod_api(api, tmp_path):
    result = _cli("--api-url", api, "-c", "cli test", "-d", "10", "-b", "2", "--seed", "3", "-o", "song.flac",
                  "--poll-interval", "0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "BPM:" in result.stderr and "Total Time:" in result.stderr
    for name in ("song_1.flac", "song_2.flac"):
        audio, rate = decode((tmp_path / name).read_bytes())
        assert rate == 48000 and audio.shape == (480000, 2)


def test_downloads_songs_from_a_runpod_style_endpoint(local_api, tmp_path):
    result = _cli("--runpod-url", local_api, "-c", "runpod test", "-d", "10", "-o", "one.mp3", "--poll-interval",
                  "0.2", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    audio, rate = decode((tmp_path / "one.mp3").read_bytes())
    assert rate == 48000 and audio.shape == (480000, 2)


def test_unreachable_server(tmp_path):
    result = _cli("--api-url", f"http://127.0.0.1:{free_port()}", "-d", "10", "-q", cwd=tmp_path)
    assert result.returncode == 1 and "is not responding" in result.stderr


def test_failed_task_is_reported(api, manager, tmp_path, monkeypatch):
    # A loopback URL is accepted at submission here and fails when the task fetches it: in the queue,
    # where the client must report the task's own error.
    monkeypatch.setattr(manager, "audio_policy", replace(manager.audio_policy, allow_private=True))
    nowhere = f"http://127.0.0.1:{free_port()}/take.wav"
    result = _cli("--api-url", api, "-d", "10", "--src-audio", nowhere, "-q", "--poll-interval", "0.2", cwd=tmp_path)
    assert result.returncode == 1 and "generation failed" in result.stderr and "src_audio" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_refused_task_is_reported(api, tmp_path):
    result = _cli("--api-url", api, "-d", "10", "--thinking", "-q", "--poll-interval", "0.2", cwd=tmp_path)
    assert result.returncode == 1 and "thinking needs the 5 Hz planner" in result.stderr
    assert not list(tmp_path.iterdir())


def test_timeout(api, tmp_path):
    result = _cli("--api-url", api, "-d", "300", "--timeout", "0.5", "--poll-interval", "0.2", "-q", cwd=tmp_path)
    assert result.returncode == 1 and "gave up after 0.5 s" in result.stderr


def test_invalid_values_fail_before_anything_is_sent(tmp_path):
    result = _cli("--api-url", "http://127.0.0.1:9", "-d", "10", "-b", "12", cwd=tmp_path)
    assert result.returncode == 1 and "batch_size must be an integer from 1 to 8" in result.stderr


def test_help_texts(tmp_path):
    assert "[Chorus]" in _cli("--show-lyrics-help", cwd=tmp_path).stdout
    assert "genre" in _cli("--show-caption-help", cwd=tmp_path).stdout
    module = subprocess.run([sys.executable, "-m", "acestep_worker.doors.client", "--help"], capture_output=True, text=True)
    assert "--endpoint-id" in module.stdout and "--api-url" in module.stdout
