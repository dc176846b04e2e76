"""Downloads against a hostile sender (tests/support/slow.py: one byte per second, or nothing after the
headers): the whole download is bounded by the job's deadline, a cancel stops it within a second, and
the queue behind a stopped task runs (#18 items 1 and 2)."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading
import time

import pytest

from acestep_worker.audio.sources import SourcePolicy, read_bytes
from acestep_worker.doors.pod.queue import TaskManager, TaskState
from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import GenerationCancelled, InputError
from acestep_worker.models.lora.sources import locate
from acestep_worker.schema.lora_refs import LoraRef
from acestep_worker.schema.request import TimedRequest, parse
from acestep_worker.settings import Settings

from ..support.slow import SlowServer, self_signed

OPEN = SourcePolicy(allow_private=True)
SLACK_S = 1.0  # the bound: deadline + 1 s, cancel + 1 s


@pytest.mark.parametrize("path", ["/trickle.wav", "/silent.wav"])
def test_a_download_ends_at_its_deadline_whatever_the_sender_does(slow_server, path):
    started = time.monotonic()
    with pytest.raises(InputError, match="could not be downloaded in time") as err:
        read_bytes("src_audio", slow_server.url + path, OPEN, deadline=started + 2.0)
    elapsed = time.monotonic() - started
    assert err.value.field == "src_audio" and 2.0 <= elapsed < 2.0 + SLACK_S
    assert slow_server.wait_closed(path) < 2.0 + SLACK_S  # the connection is closed, not left behind


@pytest.mark.parametrize("path", ["/trickle-cancel.wav", "/silent-cancel.wav"])
def test_a_cancel_stops_a_download_within_a_second(slow_server, path):
    cancelled = threading.Event()
    threading.Timer(1.5, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(GenerationCancelled):
        read_bytes("reference_audio", slow_server.url + path, OPEN, deadline=started + 60,
                   should_stop=cancelled.is_set)
    assert time.monotonic() - started < 1.5 + SLACK_S


def test_a_serverless_job_with_a_trickling_source_fails_at_its_deadline(engine, slow_server, monkeypatch):
    monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings, allow_private_urls=True))
    started = time.monotonic()
    with pytest.raises(InputError, match=r"src_audio could not be downloaded in time \(the job's timeout_seconds"):
        run_job(engine, "job-trickle", {"caption": "test", "duration": 10, "timeout_seconds": 3,
                                        "src_audio": f"{slow_server.url}/trickle-job.wav"}, env={})
    assert time.monotonic() - started < 3 + SLACK_S


@pytest.mark.parametrize("path", ["/trickle-task.wav", "/silent-task.wav"])
def test_a_cancelled_pod_task_stops_its_download_and_the_next_task_runs(engine, slow_server, tmp_path, path):
    manager = TaskManager(engine, tmp_path).start()
    manager.audio_policy = dataclasses.replace(manager.audio_policy, allow_private=True)
    try:
        stuck = manager.submit(parse({"duration": 10, "timeout_seconds": 120, "src_audio": slow_server.url + path},
                                     TimedRequest))
        after = manager.submit(parse({"duration": 10}, TimedRequest))
        end = time.monotonic() + 30
        while stuck.stage != "audio_input" and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(1.5)  # well inside the download
        assert stuck.stage == "audio_input"
        cancelled_at = time.monotonic()
        manager.cancel(stuck.id)
        assert stuck.done.wait(SLACK_S), "the cancelled task was still downloading a second later"
        assert time.monotonic() - cancelled_at < SLACK_S
        assert stuck.state is TaskState.FAILED and "cancelled" in stuck.error
        assert after.done.wait(120) and after.state is TaskState.SUCCEEDED
    finally:
        manager.stop()


def test_a_lora_download_gives_up_at_the_jobs_deadline(slow_server, tmp_path):
    settings = Settings.from_env({"ACESTEP_ALLOW_PRIVATE_URLS": "1", "ACESTEP_LORA_CACHE_DIR": str(tmp_path)})
    started = time.monotonic()
    with pytest.raises(InputError, match="could not be downloaded in time") as err:
        locate("loras[0]", LoraRef("url", f"{slow_server.url}/trickle/style.safetensors"), settings,
               deadline=started + 2.0)
    assert err.value.field == "loras[0]" and time.monotonic() - started < 2.0 + SLACK_S
    assert not list(tmp_path.rglob("*.safetensors"))


def test_a_lora_download_stops_at_a_cancel(slow_server, tmp_path):
    settings = Settings.from_env({"ACESTEP_ALLOW_PRIVATE_URLS": "1", "ACESTEP_LORA_CACHE_DIR": str(tmp_path)})
    cancelled = threading.Event()
    threading.Timer(1.0, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(GenerationCancelled):
        locate("loras[0]", LoraRef("url", f"{slow_server.url}/silent/style.safetensors"), settings,
               should_stop=cancelled.is_set)
    assert time.monotonic() - started < 1.0 + SLACK_S


def test_the_lora_download_limit_bounds_a_download_without_a_job_deadline(slow_server, tmp_path):
    settings = Settings.from_env({"ACESTEP_ALLOW_PRIVATE_URLS": "1", "ACESTEP_LORA_CACHE_DIR": str(tmp_path),
                                  "ACESTEP_LORA_FETCH_TIMEOUT": "1.5"})
    started = time.monotonic()
    with pytest.raises(InputError, match="ACESTEP_LORA_FETCH_TIMEOUT=1.5 s"):
        locate("loras[1]", LoraRef("url", f"{slow_server.url}/trickle/limit.safetensors"), settings)
    assert time.monotonic() - started < 1.5 + SLACK_S


def test_over_tls_the_certificate_is_checked_and_every_wait_is_bounded(tmp_path, monkeypatch):
    """The TLS path of the same backend: a peer that never answers the handshake is left at a cancel,
    the certificate is verified against the host name, and a trickle stops at the deadline."""
    with socket.create_server(("127.0.0.1", 0)) as mute:  # accepts the connection, never says a word
        cancelled = threading.Event()
        threading.Timer(1.0, cancelled.set).start()
        started = time.monotonic()
        with pytest.raises(GenerationCancelled):
            read_bytes("src_audio", f"https://localhost:{mute.getsockname()[1]}/x.wav", OPEN,
                       deadline=started + 8, should_stop=cancelled.is_set)
        assert time.monotonic() - started < 1.0 + SLACK_S
    server_context, cert = self_signed(tmp_path)
    with SlowServer(tls=server_context) as server:
        with pytest.raises(InputError, match="could not be downloaded from localhost"):  # not a trusted certificate
            read_bytes("src_audio", f"{server.url}/trickle-untrusted.wav", OPEN, deadline=time.monotonic() + 5)
        monkeypatch.setattr("acestep_worker.net.download._ssl_context",
                            lambda: ssl.create_default_context(cafile=str(cert)))
        started = time.monotonic()
        with pytest.raises(InputError, match="could not be downloaded in time"):
            read_bytes("src_audio", f"{server.url}/trickle-tls.wav", OPEN, deadline=started + 2.0)
        assert time.monotonic() - started < 2.0 + SLACK_S
