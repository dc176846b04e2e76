"""Pod mode as the image starts it: one process serving the API and the Gradio page."""

import os
import subprocess
import sys
import time

import httpx
import pytest

from .conftest import REPO
from .live_server import free_port


@pytest.mark.parametrize("command", [["-m", "acestep_worker", "serve"], [str(REPO / "handler.py")]],
                         ids=["serve-command", "handler-pod-mode"])
def test_one_process_serves_api_and_page(tiny_env, tmp_path, command):
    api_port, page_port = free_port(), free_port()
    env = {**os.environ, **tiny_env, "ACESTEP_MODE": "pod", "ACESTEP_API_HOST": "127.0.0.1",
           "ACESTEP_API_PORT": str(api_port), "ACESTEP_GRADIO_PORT": str(page_port), "ACESTEP_OUTPUT_DIR": str(tmp_path)}
    env.pop("RUNPOD_WEBHOOK_GET_JOB", None)
    proc = subprocess.Popen([sys.executable, *command], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            try:
                health = httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=2)
                page = httpx.get(f"http://127.0.0.1:{page_port}/", timeout=5)
                break
            except httpx.HTTPError:
                assert time.time() < deadline, "pod mode did not come up"
                time.sleep(0.5)
        assert health.json()["data"]["status"] == "ok"
        assert page.status_code == 200 and "gradio" in page.text.lower()
        task = httpx.post(f"http://127.0.0.1:{api_port}/release_task", json={"duration": 10}).json()
        assert task["code"] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)
