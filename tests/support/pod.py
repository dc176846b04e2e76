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
