"""A real S3-compatible server (moto in server mode) on loopback, with a bucket named "songs".

Loopback is a private address: a bucket endpoint there is refused unless the private-network opt-in
is given (ACESTEP_ALLOW_PRIVATE_URLS=1, `allow_private=True`), so every user of this server opts in:
`bucket_config` here, PRIVATE_OK in an environment, or the engine's settings."""

from __future__ import annotations

import dataclasses

import boto3
import pytest

SECRET = "s3cr3t-Value-That-Must-Not-Leak"


PRIVATE_OK = {"ACESTEP_ALLOW_PRIVATE_URLS": "1"}


def bucket_config(url: str, bucket: str = "songs"):
    """The moto server as a bucket, with the private-network opt-in it needs."""
    from acestep_worker.net.bucket import BucketConfig

    return BucketConfig(url, bucket, "AK", SECRET, allow_private=True)


def s3_client(url: str):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                        region_name="us-east-1")


@pytest.fixture
def s3_engine(engine, monkeypatch):
    """The session's engine with the private-network opt-in the loopback S3 server needs."""
    monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings, allow_private_urls=True))
    return engine


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3_client(url).create_bucket(Bucket="songs")
    yield url
    server.stop()
