"""Gradio keeps its own copies of what the page uploads and shows (in GRADIO_TEMP_DIR); the pod's
page must delete them with the results' TTL, through Gradio's own schedule, or the disk fills."""

import time

import pytest

from acestep_worker.doors.pod.launch import page_app
from acestep_worker.doors.pod.page.inputs import client_args
from acestep_worker.doors.pod.queue import TaskManager

from ..support.audio import wav
from ..support.live_server import LiveServer

TTL_S = 2  # also Gradio's sweep period: the page sweeps every min(3600, TTL) seconds


def _cached(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))  # read when the page's Blocks and app are built
    return folder


def test_uploads_and_served_songs_leave_gradios_cache_after_the_ttl(engine, cache_dir, tmp_path):
    from gradio_client import Client, handle_file

    source = tmp_path / "take.wav"
    source.write_bytes(wav(rate=48_000, seconds=1.0))
    manager = TaskManager(engine, engine.settings.output_dir, maxsize=5, ttl_s=TTL_S).start()
    try:
        with LiveServer(page_app(engine, manager, None, 50_000_000)) as server:
            inputs = client_args(caption="cache expiry", duration=10, seed="3", audio_format="wav",
                                 src_audio=handle_file(str(source)))
            status, *_ = Client(server.url, verbose=False).predict(*inputs, api_name="/generate")
            assert status.startswith("Done: 1 song(s)")
            cached = _cached(cache_dir)
            names = {p.name for p in cached}
            assert "take.wav" in names, names  # the upload
            assert any(p.suffix == ".wav" and p.name != "take.wav" for p in cached), names  # the song it served
            deadline = time.monotonic() + 4 * TTL_S + 10  # age, one sweep period, and a loaded machine
            while _cached(cache_dir) and time.monotonic() < deadline:
                time.sleep(0.25)
            assert _cached(cache_dir) == [], "Gradio's cached copies outlived the TTL"
    finally:
        manager.stop()
