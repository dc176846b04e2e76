"""Editing tasks through the network doors on the tiny tree, with real audio bytes: serverless jobs reading a
loopback URL or a bucket key, the pod (multipart and a path field), the CLI against the pod, and the
refusals that must come before any download or upload is kept. Sources are 1 s: the tiny VAE encoder
is slow on a CPU."""

import dataclasses
import json
import os
import subprocess
import sys
import time

import boto3
import httpx
import pytest

from acestep_worker.audio.encode import decode as decode_output
from acestep_worker.doors.serverless import run_job

from ..support.audio import WAV
from ..support.s3 import SECRET

BASE = "acestep-v15-base"


def _job(engine, job_id, s3_config=None, **fields):
    return run_job(engine, job_id, {"caption": "tiny edit", "seed": 3, **fields}, s3_config=s3_config, env={})


def test_serverless_extension_from_a_loopback_url(engine, web, monkeypatch):
    base, _ = web
    monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings, allow_private_urls=True))
    out = _job(engine, "edit-extend", src_audio=f"{base}/song.wav", task_type="repaint", repainting_start=0.5,
               repainting_end=2.0)
    assert out["results"][0]["duration"] == 2.0 and out["source"]["field"] == "src_audio"


def test_serverless_extract_on_the_base_model_from_a_bucket_key(s3_engine, s3_server):
    engine = s3_engine
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                 region_name="us-east-1").put_object(Bucket="songs", Key="edit/mix.wav", Body=WAV)
    s3 = {"endpointUrl": s3_server, "accessId": "AK", "accessSecret": SECRET, "bucketName": "songs"}
    out = _job(engine, "edit-extract", s3_config=s3, src_audio="s3://songs/edit/mix.wav", task_type="extract",
               track_name="vocals", model=BASE, inference_steps=3)
    assert out["task_type"] == "extract" and out["model"] == BASE and out["results"][0]["duration"] == 1.0


def test_serverless_refuses_an_unsupported_task_before_downloading(engine, web, monkeypatch):
    base, _ = web
    monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings, allow_private_urls=True))
    started = time.monotonic()
    with pytest.raises(Exception, match="task_type") as err:
        _job(engine, "edit-refused", src_audio=f"{base}/slow", task_type="extract", track_name="vocals")
    assert "base" in str(err.value) and time.monotonic() - started < 2.0  # the 3 s download never started


def _finish(url, response, timeout=180):
    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["task_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        entry = httpx.post(f"{url}/query_result", json={"task_id_list": [task_id]}).json()["data"][0]
        if entry["status"] != 0:
            assert entry["status"] == 1, entry.get("error")
            return json.loads(entry["result"])[0]
        time.sleep(0.2)
    raise AssertionError("task did not finish")


def test_pod_cover_from_a_multipart_upload(api, manager):
    url = api
    item = _finish(url, httpx.post(f"{url}/release_task", data={"task_type": "cover", "audio_cover_strength": "0.5",
                                                                "caption": "cover"},
                                   files={"src_audio": ("take.wav", WAV, "audio/wav")}))
    assert item["task_type"] == "cover" and item["duration"] == 1.0 and item["source"]["bytes"] == len(WAV)
    assert not list(manager.input_dir.glob("upload-*"))


def test_pod_lego_on_the_base_model_from_a_path_field(api, manager):
    url = api
    manager.input_dir.mkdir(parents=True, exist_ok=True)
    (manager.input_dir / "band.wav").write_bytes(WAV)
    item = _finish(url, httpx.post(f"{url}/release_task", json={
        "task_type": "lego", "track_name": "guitar", "src_audio_path": "band.wav", "model": BASE,
        "inference_steps": 3}))
    assert item["task_type"] == "lego" and item["dit_model"] == BASE


def test_pod_refuses_an_unsupported_task_at_submission_and_drops_the_upload(api, manager):
    url = api
    response = httpx.post(f"{url}/release_task", data={"task_type": "complete"},
                          files={"src_audio": ("take.wav", WAV, "audio/wav")})
    assert response.status_code == 400 and "task_type" in response.json()["detail"]
    assert not list(manager.input_dir.glob("upload-*"))


def test_cli_repaint_against_the_pod(api, tmp_path):
    url = api
    (tmp_path / "take.wav").write_bytes(WAV)
    result = subprocess.run(
        [sys.executable, "-m", "acestep_worker.doors.client", "--api-url", url, "--src-audio", "take.wav",
         "--task-type", "repaint", "--repainting-start", "0.2", "--repainting-end", "0.6", "-o", "fixed.wav",
         "--poll-interval", "0.2"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "repaint: src_audio received, 1.0 s" in result.stderr
    audio, rate = decode_output((tmp_path / "fixed.wav").read_bytes())
    assert rate == 48_000 and audio.shape == (48_000, 2)
