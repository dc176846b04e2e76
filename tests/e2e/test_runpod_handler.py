"""handler.py run as Runpod runs it: the local test modes in a child process and --rp_serve_api over real HTTP."""

import json
import shutil
import subprocess
import sys

import httpx

from ..support.handler import handler_env
from ..support.repo import REPO


def test_python_handler_runs_test_input_json(tiny_env, tmp_path):
    shutil.copy(REPO / "test_input.json", tmp_path / "test_input.json")
    result = subprocess.run([sys.executable, str(REPO / "handler.py")], cwd=tmp_path, env=handler_env(tiny_env),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)  # stdout is the result alone: `python handler.py | jq` works
    assert document["id"] == "local_test" and document["status"] == "COMPLETED"
    assert document["output"]["status"] == "completed" and document["output"]["results"][0]["format"] == "mp3"
    assert "Started" in result.stderr  # the SDK's own log lines went to stderr


def test_test_input_flag_and_its_failure_exit_code(tiny_env, tmp_path):
    ok = {"input": {"caption": "x", "duration": 10, "seed": 1}}
    result = subprocess.run([sys.executable, str(REPO / "handler.py"), "--test_input", json.dumps(ok)],
                            cwd=tmp_path, env=handler_env(tiny_env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["output"]["results"][0]["seed"] == 1
    bad = {"input": {"duration": 3}}
    result = subprocess.run([sys.executable, str(REPO / "handler.py"), "--test_input", json.dumps(bad)],
                            cwd=tmp_path, env=handler_env(tiny_env), capture_output=True, text=True, timeout=300)
    failed = json.loads(result.stdout)
    assert result.returncode == 1 and failed["status"] == "FAILED" and "between 10 and 600" in failed["error"]


def test_local_mode_without_a_job_says_what_to_give(tiny_env, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "handler.py")], cwd=tmp_path, env=handler_env(tiny_env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == "" and "--test_input" in result.stderr


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
