"""Retake on the Gradio page, through Gradio's own client over real HTTP: the Advanced controls reach the
job and the summary reports the retake seeds; a bad retake seed is refused by name."""

import pytest

from acestep_worker.doors.pod.launch import page_app
from acestep_worker.doors.pod.page.inputs import client_args
from acestep_worker.doors.pod.queue import TaskManager

from ..support.live_server import LiveServer


@pytest.fixture(scope="module")
def page(engine):
    manager = TaskManager(engine, engine.settings.output_dir, maxsize=20, ttl_s=3600).start()
    with LiveServer(page_app(engine, manager, None, 50_000_000)) as server:
        yield server.url
    manager.stop()


def test_the_pages_retake_controls_reach_the_song_and_are_reported(page):
    from gradio_client import Client

    client = Client(page, verbose=False)
    inputs = client_args(caption="page retake", duration=10, seed="5", retake_seed="12", retake_variance=0.4)
    status, *_, summary = client.predict(*inputs, api_name="/generate")
    assert status.startswith("Done: 1 song(s)")
    assert (summary["seeds"], summary["retake_seeds"], summary["retake_variance"]) == ([5], [12], 0.4)
    with pytest.raises(Exception, match="retake_seed"):
        client.predict(*client_args(caption="page retake", duration=10, retake_seed="x", retake_variance=0.4),
                       api_name="/generate")
