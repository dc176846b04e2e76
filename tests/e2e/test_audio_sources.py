"""Audio sources over the network: URLs from a real loopback HTTP server and bucket keys on the moto S3
server; the address rules checked against a live server."""

import time

import boto3
import pytest

from acestep_worker.audio.decode import AudioLimits
from acestep_worker.audio.sources import SourcePolicy, check, read_bytes
from acestep_worker.errors import InputError

from ..support.audio import WAV
from ..support.s3 import SECRET, bucket_config

OPEN = SourcePolicy(allow_private=True)
STRICT = SourcePolicy()


def test_a_url_is_streamed_and_redirects_are_followed(web):
    base, _ = web
    assert read_bytes("src_audio", f"{base}/song.wav", OPEN) == WAV
    assert read_bytes("src_audio", f"{base}/hop", OPEN) == WAV


@pytest.mark.parametrize("path,policy,fragment", [
    ("/missing", OPEN, "answered HTTP 404"),
    ("/loop", OPEN, "redirected more than 5 times"),
    ("/to-file", OPEN, "must be an https:// URL"),
    ("/slow", SourcePolicy(allow_private=True, fetch_timeout_s=0.5), "in time"),
    ("/big-declared", SourcePolicy(AudioLimits(max_bytes=50_000), allow_private=True), "the limit is"),
    ("/big-undeclared", SourcePolicy(AudioLimits(max_bytes=150_000), allow_private=True), "the limit is"),
])
def test_url_failures_are_one_sentence(web, path, policy, fragment):
    base, _ = web
    started = time.monotonic()
    with pytest.raises(InputError, match=fragment) as err:
        read_bytes("reference_audio", base + path, policy)
    assert err.value.field == "reference_audio" and time.monotonic() - started < 2.5


def test_the_jobs_deadline_bounds_a_download(web):
    base, _ = web
    with pytest.raises(InputError, match="in time"):
        read_bytes("src_audio", f"{base}/slow", OPEN, deadline=time.monotonic() + 0.3)


def test_private_addresses_and_plain_http_are_refused_by_default(web):
    base, port = web
    with pytest.raises(InputError, match="https://"):
        read_bytes("src_audio", f"{base}/song.wav", STRICT)
    for url in (f"https://127.0.0.1:{port}/song.wav", f"https://[::1]:{port}/x", "https://169.254.169.254/latest"):
        with pytest.raises(InputError, match="loopback, private or reserved"):
            check("src_audio", url, STRICT)
    # A name is judged by what it resolves to, at connect time.
    with pytest.raises(InputError, match=r"localhost \((127\.0\.0\.1|::1)\)"):
        read_bytes("src_audio", f"https://localhost:{port}/song.wav", STRICT)


def test_a_bucket_key_is_read_with_the_jobs_credentials(s3_server):
    client = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    client.put_object(Bucket="songs", Key="in/source.wav", Body=WAV)
    policy = SourcePolicy(bucket=bucket_config(s3_server))
    assert read_bytes("src_audio", "s3://songs/in/source.wav", policy) == WAV
    with pytest.raises(InputError, match="has no object") as err:
        read_bytes("src_audio", "s3://songs/in/missing.wav", policy)
    with pytest.raises(InputError, match="the limit is"):
        read_bytes("src_audio", "s3://songs/in/source.wav", SourcePolicy(AudioLimits(max_bytes=1_000),
                                                                         bucket=policy.bucket))
    with pytest.raises(InputError, match="no bucket is configured"):
        check("src_audio", "s3://songs/in/source.wav", STRICT)
    assert SECRET not in str(err.value)


def test_a_cancel_ends_a_download_between_chunks(web):
    from acestep_worker.errors import GenerationCancelled

    base, _ = web
    with pytest.raises(GenerationCancelled):
        read_bytes("src_audio", f"{base}/song.wav", OPEN, should_stop=lambda: True)
