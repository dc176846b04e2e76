"""Bucket delivery against a real S3-compatible server (moto in server mode) on loopback."""

import urllib.request

import boto3
import pytest

from acestep_worker.doors.serverless import run_job
from acestep_worker.net.bucket import DeliveryError

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
