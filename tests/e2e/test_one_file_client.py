"""The one-file client (root generate_music.py), run as a user runs it: by a Python with nothing
installed, against the real pod API and against a scripted Runpod-style endpoint that misbehaves."""

import base64
import email.parser
import json
import signal
import subprocess
import threading
import time
import venv
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from acestep_worker.audio.encode import decode

from ..support.repo import REPO

CLIENT = REPO / "generate_music.py"


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A virtual environment with nothing installed: only the standard library is importable."""
    folder = tmp_path_factory.mktemp("bare")
    venv.create(folder, with_pip=False)
    return str(folder / "bin" / "python")


def _run(python, *args, cwd, env=None):
    return subprocess.run([python, str(CLIENT), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_a_bare_python_generates_two_songs_on_the_pod(bare_python, api, tmp_path):
    result = _run(bare_python, "--api-url", api, "-c", "bare client", "-d", "10", "-b", "2", "--seed", "3",
                  "-o", "song.flac", "--poll-interval", "0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["song_1.flac", "song_2.flac"]
    assert "queued (position" in result.stderr and "BPM:" in result.stderr
    for name in ("song_1.flac", "song_2.flac"):
        audio, rate = decode((tmp_path / name).read_bytes())
        assert rate == 48000 and audio.shape == (480000, 2)


def test_the_pods_sentence_is_what_the_user_reads(bare_python, api, tmp_path):
    bad = _run(bare_python, "--api-url", api, "-d", "10", "-b", "12", "-q", cwd=tmp_path)
    assert bad.returncode == 1 and "batch_size must be an integer from 1 to 8" in bad.stderr
    no_planner = _run(bare_python, "--api-url", api, "--sample-query", "a sad song about rain", "-d", "10", "-q",
                      "--poll-interval", "0.2", cwd=tmp_path)
    assert no_planner.returncode == 1 and "planner" in no_planner.stderr
    assert not list(tmp_path.iterdir())


def test_a_bare_python_extracts_a_files_codes_on_the_pod(bare_python, api, tmp_path):
    from ..support.audio import WAV

    (tmp_path / "take.wav").write_bytes(WAV)
    result = _run(bare_python, "--api-url", api, "--extract-codes", "--src-audio", "take.wav", "-q",
                  "--poll-interval", "0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status_message"] == "Audio Codes Extraction Success" and out["audio_codes"].count("<|audio_code_") == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.wav"]  # no song written


def test_unreachable_server_is_one_sentence(bare_python, tmp_path):
    result = _run(bare_python, "--api-url", "http://127.0.0.1:9", "-d", "10", "-q", "--retries", "2", cwd=tmp_path)
    assert result.returncode == 1 and "is not responding" in result.stderr and "Traceback" not in result.stderr


def test_help_texts_and_flags(bare_python, tmp_path):
    assert "[Chorus]" in _run(bare_python, "--show-lyrics-help", cwd=tmp_path).stdout
    assert "genre" in _run(bare_python, "--show-caption-help", cwd=tmp_path).stdout
    usage = _run(bare_python, "--help", cwd=tmp_path).stdout
    for flag in ("--api-url", "--caption", "--lyrics-file", "--batch-size", "--output", "--poll-interval",
                 "--timeout", "--quiet", "--endpoint-id", "--sample-query", "--format-input", "--src-audio",
                 "--reference-audio", "--task-type", "--repaint-start", "--repaint-end"):
        assert flag in usage, flag
# -- a scripted endpoint ----------------------------------------------------------------------------
class FakeEndpoint:
    """Runpod's /run, /status, /cancel and the pod's routes, answering from a script of failures."""

    def __init__(self, status_script=(), run_script=(), finish_after=None):
        self.status_script = list(status_script)  # per /status call: an int HTTP code, "drop", or "running"
        self.run_script = list(run_script)
        self.finish_after = finish_after  # /status calls before COMPLETED; None: never
        self.calls, self.bodies, self.headers = [], {}, {}
        self.audio = b"ID3 fake song bytes"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, payload, headers=()):
                body = json.dumps(payload).encode()
                self.send_response(code)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _scripted(self, script):
                step = script.pop(0) if script else None
                if step == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return True
                if isinstance(step, int):
                    self._send(step, {"error": "scripted"}, [("Retry-After", "1")] if step == 429 else ())
                    return True
                return False

            def do_GET(self):
                self.do_POST()

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                fake.calls.append(f"{self.command} {path}")
                fake.bodies[path], fake.headers[path] = body, dict(self.headers)
                if path == "/run":
                    if not self._scripted(fake.run_script):
                        self._send(200, {"id": "job-1", "status": "IN_QUEUE"})
                elif path.startswith("/status/"):
                    if self._scripted(fake.status_script):
                        return
                    polls = sum(c.startswith("GET /status/") for c in fake.calls)
                    if fake.finish_after is not None and polls > fake.finish_after:
                        result = {"audio_base64": base64.b64encode(fake.audio).decode(), "format": "mp3"}
                        self._send(200, {"id": "job-1", "status": "COMPLETED", "output": {"results": [result]}})
                    else:
                        self._send(200, {"id": "job-1", "status": "IN_PROGRESS", "output": {
                            "stage": "diffusion", "step": 4, "total_steps": 8, "percent": 50.0}})
                elif path.startswith("/cancel"):
                    self._send(200, {"data": {"task_id": "t-1", "status": 2}, "code": 200} if path == "/cancel_task"
                               else {"id": "job-1", "status": "CANCELLED"})
                elif path == "/health":
                    self._send(200, {"data": {"status": "ok"}, "code": 200})
                elif path == "/release_task":
                    self._send(200, {"data": {"task_id": "t-1", "status": "queued", "queue_position": 3}, "code": 200})
                elif path == "/query_result":
                    self._send(200, {"data": [{"task_id": "t-1", "status": 0, "stage": "queued", "progress": 0.0,
                                               "queue_position": 3, "result": "[]"}], "code": 200})
                else:
                    self._send(404, {"detail": "Not Found"})

        return Handler


def test_runpod_mode_retries_429_5xx_and_drops_then_downloads(bare_python, tmp_path):
    with FakeEndpoint(run_script=[429], status_script=[503, "drop"], finish_after=3) as fake:
        result = _run(bare_python, "--endpoint-id", "ignored", "--runpod-url", fake.url, "-c", "x", "-d", "10",
                      "-o", "song.mp3", "--poll-interval", "0.1", cwd=tmp_path, env={"RUNPOD_API_KEY": "rk-123"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "song.mp3").read_bytes() == fake.audio
    assert "HTTP 429; retrying in 1 s" in result.stderr  # Retry-After honoured
    assert "HTTP 503; retrying" in result.stderr and "connection dropped; retrying" in result.stderr
    assert "diffusion 4/8" in result.stderr and "50%" in result.stderr  # the progress line
    assert fake.headers["/run"]["Authorization"] == "Bearer rk-123"
    job = json.loads(fake.bodies["/run"])["input"]
    assert job["return_audio_base64"] is True and job["caption"] == "x" and job["duration"] == 10


def test_runpod_timeout_cancels_the_job(bare_python, tmp_path):
    with FakeEndpoint() as fake:
        result = _run(bare_python, "--runpod-url", fake.url, "-d", "10", "--timeout", "1.5", "--poll-interval",
                      "0.2", "-q", cwd=tmp_path)
    assert result.returncode == 1 and "gave up after 1.5 s (--timeout); job job-1: cancelled it" in result.stderr
    assert "POST /cancel/job-1" in fake.calls


def test_ctrl_c_cancels_the_job_and_exits_130(bare_python, tmp_path):
    with FakeEndpoint() as fake:
        proc = subprocess.Popen([bare_python, str(CLIENT), "--runpod-url", fake.url, "-d", "10", "--poll-interval",
                                 "0.1"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin"})
        deadline = time.time() + 60
        while not any(c.startswith("GET /status/") for c in fake.calls) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "interrupted; job job-1: cancelled it" in stderr
    assert "POST /cancel/job-1" in fake.calls


def test_audio_inputs_travel_as_data_uris_to_runpod_and_multipart_to_a_pod(bare_python, tmp_path):
    clip = tmp_path / "take.wav"
    clip.write_bytes(b"RIFF fake wav")
    with FakeEndpoint(finish_after=0) as fake:
        result = _run(bare_python, "--runpod-url", fake.url, "--src-audio", str(clip), "--task-type", "repaint",
                      "--repaint-start", "2", "--repaint-end", "5", "-d", "10", "-q", "--poll-interval", "0.1",
                      cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        job = json.loads(fake.bodies["/run"])["input"]
        assert job["src_audio"] == "data:audio/x-wav;base64," + base64.b64encode(b"RIFF fake wav").decode()
        assert (job["task_type"], job["repainting_start"], job["repainting_end"]) == ("repaint", 2, 5)

        result = _run(bare_python, "--api-url", fake.url, "--reference-audio", str(clip), "-c", "pod", "-d", "10",
                      "--timeout", "1", "--poll-interval", "0.2", cwd=tmp_path)
    assert result.returncode == 1 and "task t-1: cancelled it" in result.stderr and "queued, position 3" in result.stderr
    raw = fake.bodies["/release_task"]
    kind = fake.headers["/release_task"]["Content-Type"]
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
    parts = {part.get_param("name", header="content-disposition"): part for part in message.get_payload()}
    assert parts["reference_audio"].get_filename() == "take.wav"
    assert parts["reference_audio"].get_payload(decode=True) == b"RIFF fake wav"
    assert parts["caption"].get_payload() == "pod" and parts["duration"].get_payload() == "10.0"


def test_a_missing_audio_file_fails_before_anything_is_sent(bare_python, tmp_path):
    with FakeEndpoint() as fake:
        result = _run(bare_python, "--runpod-url", fake.url, "--src-audio", "nope.mp3", "-q", cwd=tmp_path)
    assert result.returncode == 1 and "--src-audio: nope.mp3 is not a file" in result.stderr
    assert fake.calls == []


def test_timeout_cancels_the_task_on_the_real_pod(bare_python, api, tmp_path):
    result = _run(bare_python, "--api-url", api, "-c", "too long", "-d", "600", "-b", "2", "--timeout", "1.5",
                  "--poll-interval", "0.2", "-q", cwd=tmp_path)
    assert result.returncode == 1 and "gave up after 1.5 s (--timeout); task " in result.stderr
    assert ": cancelled it" in result.stderr  # the pod's /cancel_task answered
