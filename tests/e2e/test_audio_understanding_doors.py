"""Audio understanding through every door, as a user of upstream drives it: the pod's multipart upload under
`ctx_audio` with `full_analysis_only=true` read back as upstream's clients read it, JSON with a source URL,
a serverless job with a bucket key, the page's Action, the local command and the client."""

import dataclasses
import json
import os
import subprocess
import sys

import boto3
import httpx
import pytest

from acestep_worker.doors.pod.launch import page_app
from acestep_worker.doors.pod.page.inputs import client_args
from acestep_worker.doors.pod.queue import TaskManager
from acestep_worker.doors.serverless import run_job
from acestep_worker.schema.values import parse_audio_codes

from ..support.audio import WAV, WAV_SHA
from ..support.live_server import LiveServer
from ..support.pod import serve_api, task_items
from ..support.s3 import SECRET

UPSTREAM_CLIENT_KEYS = ("bpm", "keyscale", "timesignature", "duration", "genre", "prompt", "lyrics", "language")


@pytest.fixture(autouse=True)
def short_lyrics(monkeypatch):
    """The random tiny planner never ends its pass: 800 tokens instead of upstream's 4032 (minutes on a CPU)."""
    monkeypatch.setattr("acestep_worker.models.planner.planner.UNDERSTAND_MAX_TOKENS", 800)


@pytest.fixture
def planner_pod(planner_engine, monkeypatch, tmp_path):
    """A pod over the planner engine that may fetch loopback URLs (the test's web server)."""
    monkeypatch.setattr(planner_engine, "settings",
                        dataclasses.replace(planner_engine.settings, allow_private_urls=True))
    manager = TaskManager(planner_engine, tmp_path / "out").start()
    with serve_api(planner_engine, manager) as url:
        yield url, manager
    manager.stop()


def test_a_ctx_audio_upload_with_full_analysis_only_reads_back_as_upstreams_clients_read_it(planner_pod):
    api, manager = planner_pod
    response = httpx.post(f"{api}/release_task", data={"full_analysis_only": "true", "thinking": "false"},
                          files={"ctx_audio": ("take.wav", WAV, "audio/wav")}, timeout=60)
    [result] = task_items(api, response)
    assert result["status_message"] == "Full Hardware Analysis Success"
    analysis = {key: result[key] for key in UPSTREAM_CLIENT_KEYS}  # every key such a client reads is there
    metas = result["metas"]
    assert isinstance(analysis["bpm"], int) and analysis["prompt"] == metas["caption"]
    # After its caption the random planner names fields itself, mostly none (as upstream's loop on it does):
    # what it did not write is null, and absent from metas.
    assert analysis["keyscale"] == metas.get("keyscale") and analysis["genre"] == metas.get("genres")
    assert analysis["timesignature"] == metas.get("timesignature")
    assert len(parse_audio_codes(result["audio_codes"])) == 5 and result["audio_paths"] == []
    assert not list(manager.output_dir.glob("*.mp3")) and not list(manager.input_dir.glob("upload-*"))


def test_json_with_a_source_url_extracts_codes(planner_pod, web):
    api, _ = planner_pod
    base, _ = web
    response = httpx.post(f"{api}/release_task", json={"src_audio_path": f"{base}/song.wav",
                                                       "extract_codes_only": True, "seed": 3}, timeout=60)
    [result] = task_items(api, response)
    assert result["status_message"] == "Audio Codes Extraction Success" and result["metas"] == {}
    assert len(parse_audio_codes(result["audio_codes"])) == 5


def test_the_pod_refuses_a_planner_analysis_without_a_planner_at_submission(api):
    response = httpx.post(f"{api}/release_task", data={"full_analysis_only": "true"},
                          files={"ctx_audio": ("take.wav", WAV, "audio/wav")}, timeout=60)
    assert response.status_code == 400 and response.json()["field"] == "full_analysis_only"
    assert "extract_codes_only needs none" in response.json()["detail"]


def test_a_serverless_job_reads_its_source_from_a_bucket_key(s3_engine, s3_server):
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                 region_name="us-east-1").put_object(Bucket="songs", Key="in/take.wav", Body=WAV)
    s3 = {"endpointUrl": s3_server, "accessId": "AK", "accessSecret": SECRET, "bucketName": "songs"}
    out = run_job(s3_engine, "codes-s3", {"src_audio": "s3://songs/in/take.wav", "extract_codes_only": True},
                  s3_config=s3, env={})
    assert out["status_message"] == "Audio Codes Extraction Success" and out["source"]["sha256"] == WAV_SHA
    assert len(parse_audio_codes(out["audio_codes"])) == 5


def test_the_pages_action_extracts_codes_from_the_uploaded_source(engine, tmp_path):
    from gradio_client import Client, handle_file

    manager = TaskManager(engine, tmp_path / "out").start()
    source = tmp_path / "source.wav"
    source.write_bytes(WAV)
    try:
        with LiveServer(page_app(engine, manager, None, 50_000_000)) as server:
            status, *_, summary = Client(server.url, verbose=False).predict(
                *client_args(src_audio=handle_file(str(source)), analysis="extract_codes_only"), api_name="/generate")
    finally:
        manager.stop()
    assert status == "Done: extract_codes_only, no audio made"
    assert summary["mode"] == "extract_codes_only" and len(parse_audio_codes(summary["audio_codes"])) == 5


def _command(*args, env, cwd):
    return subprocess.run([sys.executable, "-m", "acestep_worker", *args], capture_output=True, text=True,
                          env=dict(os.environ, ACESTEP_DEVICE="cpu", **env), cwd=cwd, timeout=300, check=False)


def test_the_local_command_extracts_codes_and_analyses_metadata(tiny_root, planner_env, tmp_path):
    (tmp_path / "take.wav").write_bytes(WAV)
    codes = _command("generate", "--checkpoints", str(tiny_root), "--extract-codes", "--src-audio", "take.wav",
                     "--seed", "2", "--quiet", env={"ACESTEP_LM_MODEL_PATH": ""}, cwd=tmp_path)
    assert codes.returncode == 0, codes.stderr
    out = json.loads(codes.stdout)
    assert out["mode"] == "extract_codes_only" and len(parse_audio_codes(out["audio_codes"])) == 5
    meta = _command("generate", "--checkpoints", str(tiny_root), "--analyze-metadata", "--caption", "calm piano",
                    "--quiet", env={"ACESTEP_LM_MODEL_PATH": planner_env["ACESTEP_LM_MODEL_PATH"]}, cwd=tmp_path)
    assert meta.returncode == 0, meta.stderr
    out = json.loads(meta.stdout)
    assert out["status_message"] == "Success" and out["dit_model"] == "None (Analysis Only)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.wav"]  # no song written


def test_the_client_analyses_a_file_on_the_pod(planner_pod, tmp_path, capsys):
    from acestep_worker.doors.client import main

    api, _ = planner_pod
    (tmp_path / "take.wav").write_bytes(WAV)
    code = main(["--api-url", api, "--analyze", "--src-audio", str(tmp_path / "take.wav"), "-q",
                 "--poll-interval", "0.2"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status_message"] == "Full Hardware Analysis Success"
    assert set(UPSTREAM_CLIENT_KEYS) <= set(result) and not list(tmp_path.glob("*.mp3"))


def test_the_client_extracts_codes_through_a_runpod_endpoint(local_api, tmp_path):
    (tmp_path / "take.wav").write_bytes(WAV)
    result = subprocess.run([sys.executable, "-m", "acestep_worker", "client", "--runpod-url", local_api,
                             "--extract-codes", "--src-audio", "take.wav", "-q", "--poll-interval", "0.2"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["mode"] == "extract_codes_only" and out["source"]["sha256"] == WAV_SHA
    assert len(parse_audio_codes(out["audio_codes"])) == 5 and "results" not in out
