"""Serverless jobs with audio inputs from the network: a URL from a loopback server, a bucket key on the moto
S3 server; private URLs are refused and the job's deadline bounds the download."""

import dataclasses
import time

import boto3
import pytest

from acestep_worker.doors.serverless import run_job

from ..support.audio import WAV, WAV_SHA
from ..support.s3 import SECRET


def _audio_job(engine, **fields):
    return run_job(engine, "job-audio", {"caption": "test", "duration": 10, **fields}, env={})


@pytest.fixture
def private_ok(engine, monkeypatch):
    """The tests' loopback servers are private addresses: allow them, as ACESTEP_ALLOW_PRIVATE_URLS=1 does."""
    monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings, allow_private_urls=True))
    return engine


def test_a_url_from_a_loopback_server(private_ok, web):
    base, _ = web
    out = _audio_job(private_ok, src_audio=f"{base}/hop")
    assert out["source"]["sha256"] == WAV_SHA and out["status"] == "completed"


def test_a_bucket_key_with_the_jobs_s3config(s3_engine, s3_server):
    engine = s3_engine
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                 region_name="us-east-1").put_object(Bucket="songs", Key="in/ref.wav", Body=WAV)
    s3 = {"endpointUrl": s3_server, "accessId": "AK", "accessSecret": SECRET, "bucketName": "songs"}
    out = run_job(engine, "job-s3-in", {"duration": 10, "ref_audio": "s3://songs/in/ref.wav"}, s3_config=s3, env={})
    assert out["reference"]["sha256"] == WAV_SHA and "source" not in out


def test_private_urls_are_refused_by_default_before_generating(handler_module, web, monkeypatch):
    base, port = web
    monkeypatch.setattr(handler_module._engine, "run", lambda *a, **k: pytest.fail("generated anyway"))
    for url in (f"{base}/song.wav", f"https://localhost:{port}/song.wav"):
        out = handler_module.handle({"id": "ssrf", "input": {"src_audio": url}})
        assert set(out) == {"error"} and out["error"].startswith("src_audio ")


def test_the_jobs_deadline_bounds_the_download(private_ok, web):
    base, _ = web
    started = time.monotonic()
    with pytest.raises(Exception, match="in time"):
        _audio_job(private_ok, src_audio=f"{base}/slow", timeout_seconds=1)
    assert time.monotonic() - started < 2.5
