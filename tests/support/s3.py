"""A real S3-compatible server (moto in server mode) on loopback, with a bucket named "songs"."""

from __future__ import annotations

import boto3
import pytest

SECRET = "s3cr3t-Value-That-Must-Not-Leak"


def s3_client(url: str):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id="AK", aws_secret_access_key=SECRET,
                        region_name="us-east-1")


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
