"""Bucket delivery against a real S3-compatible server (moto in server mode) on loopback."""

import dataclasses
import urllib.request
from pathlib import Path

import boto3
import pytest

from acestep_worker.audio.sources import SourcePolicy, read_bytes
from acestep_worker.doors.serverless import run_job
from acestep_worker.errors import InputError
from acestep_worker.net.bucket import Bucket, BucketConfig, DeliveryError

from ..support.audio import WAV, WAV_SHA
from ..support.s3 import SECRET


def _env(url, bucket="songs"):
    return {"BUCKET_ENDPOINT_URL": url, "BUCKET_ACCESS_KEY_ID": "AK", "BUCKET_SECRET_ACCESS_KEY": SECRET,
            "BUCKET_NAME": bucket}


def test_upload_from_env_gives_presigned_url_with_audio_content_type(s3_engine, s3_server):
    engine = s3_engine
    out = run_job(engine, "job-s3", {"duration": 10, "audio_format": "flac"}, env=_env(s3_server))
    result, = out["results"]
    with urllib.request.urlopen(result["url"]) as response:
        body = response.read()
        assert response.headers["Content-Type"] == "audio/flac"
    assert body == (engine.settings.output_dir / result["filename"]).read_bytes()
    key = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                       region_name="us-east-1").head_object(Bucket="songs", Key=f"job-s3/{result['filename']}")
    assert key["ContentType"] == "audio/flac"
    assert "upload" in out["timings"] and SECRET not in str(out)


def test_per_job_s3config_wins_over_env(s3_engine, s3_server):
    engine = s3_engine
    s3 = {"endpointUrl": s3_server, "accessId": "AK", "accessSecret": SECRET, "bucketName": "songs"}
    out = run_job(engine, "job-cfg", {"duration": 10}, s3_config=s3, env={})
    assert "job-cfg/job-cfg-1.mp3" in out["results"][0]["url"]


def test_failed_upload_is_a_clear_error_leaves_no_file_and_hides_secrets(s3_engine, s3_server):
    engine = s3_engine
    with pytest.raises(DeliveryError) as err:
        run_job(engine, "job-nobucket", {"duration": 10}, env=_env(s3_server, bucket="missing-bucket"))
    message = str(err.value)
    assert "NoSuchBucket" in message and "missing-bucket" in message and "songs are not kept" in message
    assert SECRET not in message and SECRET not in repr(err.value.__context__ or "")
    assert not list(engine.settings.output_dir.glob("job-nobucket*"))  # a failed delivery leaves nothing behind


def test_a_loopback_s3config_is_refused_without_the_opt_in_and_used_with_it(s3_engine, s3_server, monkeypatch):
    """#18 item 6: a job's endpointUrl on 127.0.0.1 reached the bucket; now it needs ACESTEP_ALLOW_PRIVATE_URLS=1."""
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                 region_name="us-east-1").put_object(Bucket="songs", Key="in/private.wav", Body=WAV)
    s3 = {"endpointUrl": s3_server, "accessId": "AK", "accessSecret": SECRET, "bucketName": "songs"}
    job = {"duration": 10, "src_audio": "s3://songs/in/private.wav"}
    with monkeypatch.context() as patched:
        patched.setattr(s3_engine, "settings", dataclasses.replace(s3_engine.settings, allow_private_urls=False))
        patched.setattr(s3_engine, "run", lambda *a, **k: pytest.fail("generated anyway"))
        with pytest.raises(DeliveryError, match=r"^s3Config.endpointUrl points at 127\.0\.0\.1 .*"
                                                r"ACESTEP_ALLOW_PRIVATE_URLS=1"):
            run_job(s3_engine, "job-private", job, s3_config=s3, env={})
    out = run_job(s3_engine, "job-private-ok", job, s3_config=s3, env={})
    assert out["source"]["sha256"] == WAV_SHA and "job-private-ok/" in out["results"][0]["url"]


def test_a_bucket_host_name_that_resolves_to_loopback_is_refused_when_used(s3_server):
    """A name is judged by its addresses: reading goes through the pinned download, an upload is checked
    first (boto3 then resolves the name again itself)."""
    named = s3_server.replace("127.0.0.1", "localhost")
    config = BucketConfig(named, "songs", "AK", SECRET)
    with pytest.raises(InputError, match=r"src_audio points at localhost \((127\.0\.0\.1|::1)\)"):
        read_bytes("src_audio", "s3://songs/in/private.wav", SourcePolicy(bucket=config))
    with pytest.raises(DeliveryError, match="resolves to .*ACESTEP_ALLOW_PRIVATE_URLS=1"):
        Bucket(config).upload(Path(__file__), "never/there.py", "text/plain")
