"""Pod mode as the image starts it: one process serving the API and the Gradio page."""

import hashlib
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from acestep_worker.doors.pod.page.inputs import client_args

from ..support.live_server import free_port
from ..support.repo import REPO


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


def _start_pod(env: dict, cwd) -> tuple[subprocess.Popen, str, str]:
    """A pod process as the image starts one; returns it with the API's and the page's URLs once both answer."""
    api_port, page_port = free_port(), free_port()
    env = {**env, "ACESTEP_MODE": "pod", "ACESTEP_API_HOST": "127.0.0.1", "ACESTEP_API_PORT": str(api_port),
           "ACESTEP_GRADIO_PORT": str(page_port)}
    env.pop("RUNPOD_WEBHOOK_GET_JOB", None)
    proc = subprocess.Popen([sys.executable, str(REPO / "handler.py")], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    api, page = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{page_port}"
    deadline = time.time() + 180
    while True:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        try:
            httpx.get(f"{api}/health", timeout=2).raise_for_status()
            httpx.get(f"{page}/", timeout=5).raise_for_status()
            return proc, api, page
        except httpx.HTTPError:
            assert time.time() < deadline, "pod mode did not come up"
            time.sleep(0.5)


def test_uploads_work_with_the_images_default_folders(tiny_env, tmp_path):
    """The image sets no ACESTEP_INPUT_DIR: uploads land in the relative `inputs` of the working
    directory, and a multipart part and a page upload must both reach their task from there."""
    from gradio_client import Client, handle_file

    from ..support.audio import WAV

    env = {**os.environ, **tiny_env}
    for name in ("ACESTEP_INPUT_DIR", "ACESTEP_OUTPUT_DIR"):  # the defaults: relative folders
        env.pop(name)
    proc, api, page = _start_pod(env, tmp_path)
    try:
        task = httpx.post(f"{api}/release_task", data={"caption": "upload", "duration": "10"},
                          files={"ctx_audio": ("take.wav", WAV, "audio/wav")}, timeout=30)
        assert task.status_code == 200, task.text
        task_id = task.json()["data"]["task_id"]
        deadline = time.time() + 180
        while (entry := httpx.post(f"{api}/query_result", json={"task_id_list": [task_id]}).json()["data"][0])[
                "status"] == 0:
            assert time.time() < deadline, "the task did not finish"
            time.sleep(0.3)
        assert entry["status"] == 1, entry.get("error")
        assert json.loads(entry["result"])[0]["source"]["sha256"] == hashlib.sha256(WAV).hexdigest()
        song = httpx.get(api + json.loads(entry["result"])[0]["file"])
        assert song.status_code == 200 and (tmp_path / "outputs").is_dir()

        source = tmp_path / "page-take.wav"
        source.write_bytes(WAV)
        args = client_args(caption="page upload", duration=10, seed="3", src_audio=handle_file(str(source)))
        status, *_, summary = Client(page, verbose=False).predict(*args, api_name="/generate")
        assert status.startswith("Done: 1 song(s)"), status
        assert summary["source"]["sha256"] == hashlib.sha256(WAV).hexdigest()
        assert list((tmp_path / "inputs").glob("upload-*")) == []  # each upload left with its task
    finally:
        proc.terminate()
        proc.wait(timeout=60)
