"""handler.py: imported (the worker does not start), and run in all three local modes over real HTTP."""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
import torch

from .conftest import REPO


@pytest.fixture(scope="module")
def handler_module(engine, tiny_env):
    os.environ.update(tiny_env)
    sys.path.insert(0, str(REPO))
    import handler

    handler._engine, handler._load_error = engine, None  # share the session's loaded engine
    return handler


def _job(**fields):
    return {"id": "job-h", "input": {"caption": "test", "duration": 10, **fields}}


def test_import_does_not_start_the_worker(handler_module):
    assert callable(handler_module.handler) and handler_module._engine is not None


def test_async_handler_returns_the_output(handler_module):
    out = asyncio.run(handler_module.handler(_job(seed=1)))
    assert out["status"] == "completed" and out["results"][0]["seed"] == 1


def test_bad_input_returns_one_error_string(handler_module):
    out = asyncio.run(handler_module.handler(_job(duration=1000)))
    assert set(out) == {"error"} and "duration must be seconds between 10 and 600" in out["error"]
    assert set(handler_module.handle({"id": "x"})) == {"error"}  # no input at all


def test_out_of_memory_asks_for_a_fresh_worker_and_next_job_succeeds(handler_module, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(handler_module._engine, "generate", oom)
    out = handler_module.handle(_job())
    assert out["refresh_worker"] is True and "ran out of memory" in out["error"]
    monkeypatch.undo()
    assert handler_module.handle(_job())["status"] == "completed"


def test_cancelling_the_task_stops_the_engine(handler_module):
    async def scenario():
        task = asyncio.create_task(handler_module.handler(_job(duration=120)))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert handler_module.handle(_job())["status"] == "completed"  # the engine is free again


def test_fitness_check_fails_when_models_did_not_load(handler_module, monkeypatch):
    handler_module.models_loaded()  # loaded: passes
    monkeypatch.setattr(handler_module, "_engine", None)
    monkeypatch.setattr(handler_module, "_load_error", "DiT checkpoint folder does not exist (/x)")
    with pytest.raises(RuntimeError, match="does not exist"):
        handler_module.models_loaded()
    assert "could not load its models" in handler_module.handle(_job())["error"]


def _env(tiny_env):
    env = dict(os.environ, **tiny_env)
    env.pop("RUNPOD_WEBHOOK_GET_JOB", None)
    return env


def test_python_handler_runs_test_input_json(tiny_env, tmp_path):
    shutil.copy(REPO / "test_input.json", tmp_path / "test_input.json")
    result = subprocess.run([sys.executable, str(REPO / "handler.py")], cwd=tmp_path, env=_env(tiny_env),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)  # stdout is the result alone: `python handler.py | jq` works
    assert document["id"] == "local_test" and document["status"] == "COMPLETED"
    assert document["output"]["status"] == "completed" and document["output"]["results"][0]["format"] == "mp3"
    assert "Started" in result.stderr  # the SDK's own log lines went to stderr


def test_test_input_flag_and_its_failure_exit_code(tiny_env, tmp_path):
    ok = {"input": {"caption": "x", "duration": 10, "seed": 1}}
    result = subprocess.run([sys.executable, str(REPO / "handler.py"), "--test_input", json.dumps(ok)],
                            cwd=tmp_path, env=_env(tiny_env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["output"]["results"][0]["seed"] == 1
    bad = {"input": {"duration": 3}}
    result = subprocess.run([sys.executable, str(REPO / "handler.py"), "--test_input", json.dumps(bad)],
                            cwd=tmp_path, env=_env(tiny_env), capture_output=True, text=True, timeout=300)
    failed = json.loads(result.stdout)
    assert result.returncode == 1 and failed["status"] == "FAILED" and "between 10 and 600" in failed["error"]


def test_local_mode_without_a_job_says_what_to_give(tiny_env, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "handler.py")], cwd=tmp_path, env=_env(tiny_env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == "" and "--test_input" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_api(tiny_env, tmp_path_factory):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "handler.py"), "--rp_serve_api", "--rp_api_host",
                             "127.0.0.1", "--rp_api_port", str(port)], cwd=tmp_path_factory.mktemp("api"),
                            env=_env(tiny_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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


def test_rp_serve_api_runsync(local_api):
    response = httpx.post(local_api + "/runsync", json={"input": {"caption": "x", "duration": 10, "seed": 3}},
                          timeout=300)
    body = response.json()
    assert body["status"] == "COMPLETED" and body["output"]["results"][0]["seed"] == 3


def test_rp_serve_api_run_then_status(local_api):
    job = httpx.post(local_api + "/run", json={"input": {"duration": 10, "return_audio_base64": True}},
                     timeout=60).json()
    status = httpx.post(f"{local_api}/status/{job['id']}", timeout=300).json()
    assert status["status"] == "COMPLETED"
    assert status["output"]["results"][0]["audio_base64"]


def test_rp_serve_api_reports_bad_input_as_failed(local_api):
    body = httpx.post(local_api + "/runsync", json={"input": {"batch_size": 99}}, timeout=60).json()
    assert body["status"] == "FAILED" and "batch_size must be an integer from 1 to 8" in body["error"]
