"""A live pod: the task manager and the HTTP API over the session's tiny engine, on a free loopback port."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from .live_server import LiveServer


@contextmanager
def serve_api(engine, manager, **settings):
    """The pod's API over `manager` (ApiSettings from `settings`), served until the block ends: its base URL."""
    from acestep_worker.doors.pod.api import ApiSettings, create_app

    with LiveServer(create_app(engine, manager, ApiSettings(**settings))) as server:
        yield server.url


@pytest.fixture(scope="module")
def manager(engine):
    """The pod's task manager over the tiny engine, started; one per module, stopped after its last test."""
    from acestep_worker.doors.pod.queue import TaskManager

    manager = TaskManager(engine, engine.settings.output_dir, maxsize=50, ttl_s=3600).start()
    yield manager
    manager.stop()


@pytest.fixture(scope="module")
def api(engine, manager):
    """The base URL of the pod's API (no key) over `manager`."""
    with serve_api(engine, manager) as url:
        yield url


def task_items(url: str, response, timeout: float = 240, headers: dict | None = None) -> list[dict]:
    """The result items of the task a /release_task `response` queued, once /query_result says it
    succeeded (a refusal, a failure or a task that outlives `timeout` fails the test with the reason)."""
    import json
    import time

    import httpx

    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["task_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        entry = httpx.post(f"{url}/query_result", json={"task_id_list": [task_id]}, headers=headers).json()["data"][0]
        if entry["status"] != 0:
            assert entry["status"] == 1, entry.get("error")
            return json.loads(entry["result"])
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish in {timeout:g} s")
