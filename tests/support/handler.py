"""The root handler.py: imported in-process with the session's engine, or served by a child process with
--rp_serve_api (a local Runpod endpoint)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from .live_server import free_port
from .repo import REPO


@pytest.fixture(scope="module")
def handler_module(engine, tiny_env):
    os.environ.update(tiny_env)
    sys.path.insert(0, str(REPO))
    import handler

    handler._engine, handler._load_error = engine, None  # share the session's loaded engine
    return handler


def handler_env(tiny_env):
    """The environment a handler.py child process runs in: the tiny tree, and no Runpod job queue."""
    env = dict(os.environ, **tiny_env)
    env.pop("RUNPOD_WEBHOOK_GET_JOB", None)
    return env


@pytest.fixture(scope="module")
def local_api(tiny_env, tmp_path_factory):
    """The base URL of `python handler.py --rp_serve_api` on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "handler.py"), "--rp_serve_api", "--rp_api_host",
                             "127.0.0.1", "--rp_api_port", str(port)], cwd=tmp_path_factory.mktemp("api"),
                            env=handler_env(tiny_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            httpx.get(url + "/docs", timeout=1)
            break
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
