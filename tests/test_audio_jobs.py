"""Serverless jobs with audio inputs on the tiny tree: base64, data URIs, a URL from a loopback server,
a bucket key on the moto S3 server; refusals come back as {"error": sentence} before any generation."""

import base64
import dataclasses
import hashlib
import time

import boto3
import pytest

from acestep_worker.doors.serverless import run_job

from .test_audio_sources import WAV, web  # noqa: F401  (the loopback web server fixture)
from .test_delivery import SECRET, s3_server  # noqa: F401  (the moto S3 server fixture)
from .test_handler import handler_module  # noqa: F401

WAV_SHA = hashlib.sha256(WAV).hexdigest()
B64 = base64.b64encode(WAV).decode()


def _run(engine, **fields):
    return run_job(engine, "job-audio", {"caption": "test", "duration": 10, **fields}, env={})


@pytest.fixture
def private_ok(engine, monkeypatch):
    """The tests' loopback servers are private addresses: allow them, as ACESTEP_ALLOW_PRIVATE_URLS=1 does."""
    monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings, allow_private_urls=True))
    return engine


def test_base64_and_data_uri_sources_are_decoded_and_reported(engine):
    out = _run(engine, src_audio=B64, reference_audio="data:audio/wav;base64," + B64)
    assert out["status"] == "completed" and out["task_type"]
    for key, field in (("source", "src_audio"), ("reference", "reference_audio")):
        assert out[key] == {"field": field, "duration_s": 1.0, "sha256": WAV_SHA, "bytes": len(WAV),
                            "format": "wav", "sample_rate": 48_000, "channels": 2}
    assert "audio_input" in out["timings"]


def test_a_url_from_a_loopback_server(private_ok, web):  # noqa: F811
    base, _ = web
    out = _run(private_ok, src_audio=f"{base}/hop")
    assert out["source"]["sha256"] == WAV_SHA and out["status"] == "completed"


def test_a_bucket_key_with_the_jobs_s3config(engine, s3_server):  # noqa: F811
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                 region_name="us-east-1").put_object(Bucket="songs", Key="in/ref.wav", Body=WAV)
    s3 = {"endpointUrl": s3_server, "accessId": "AK", "accessSecret": SECRET, "bucketName": "songs"}
    out = run_job(engine, "job-s3-in", {"duration": 10, "ref_audio": "s3://songs/in/ref.wav"}, s3_config=s3, env={})
    assert out["reference"]["sha256"] == WAV_SHA and "source" not in out


def test_private_urls_are_refused_by_default_before_generating(handler_module, web, monkeypatch):  # noqa: F811
    base, port = web
    monkeypatch.setattr(handler_module._engine, "generate", lambda *a, **k: pytest.fail("generated anyway"))
    for url in (f"{base}/song.wav", f"https://localhost:{port}/song.wav"):
        out = handler_module.handle({"id": "ssrf", "input": {"src_audio": url}})
        assert set(out) == {"error"} and out["error"].startswith("src_audio ")


def test_bad_audio_is_an_error_sentence_naming_the_field(handler_module):  # noqa: F811
    out = handler_module.handle({"id": "bad", "input": {"reference_audio": base64.b64encode(b"no audio" * 99).decode()}})
    assert set(out) == {"error"} and out["error"].startswith("reference_audio is not audio")


def test_the_jobs_deadline_bounds_the_download(private_ok, web):  # noqa: F811
    base, _ = web
    started = time.monotonic()
    with pytest.raises(Exception, match="in time"):
        _run(private_ok, src_audio=f"{base}/slow", timeout_seconds=1)
    assert time.monotonic() - started < 2.5


def test_a_source_that_codes_replace_is_neither_fetched_nor_used_and_is_reported_unused(engine):
    codes = "".join(f"<|audio_code_{n}|>" for n in range(0, 64_000, 3_000))  # 22 codes: 110 frames
    # Not base64, not a URL this worker may fetch: any attempt to load it would fail the job.
    out = _run(engine, task_type="cover", audio_code_string=codes, src_audio="https://127.0.0.1:9/song.wav")
    assert out["status"] == "completed" and "source" not in out
    assert "audio codes" in out["params"]["unused"]["src_audio"]
    plain = _run(engine, task_type="cover", src_audio=B64)
    assert "src_audio" not in plain["params"].get("unused", {})
