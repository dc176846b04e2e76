"""S3-compatible buckets: reading a job's `s3://` sources and uploading its songs, answered with presigned URLs.

Bucket credentials come from the same variables as runpod's `rp_upload` (`BUCKET_ENDPOINT_URL`,
`BUCKET_ACCESS_KEY_ID`, `BUCKET_SECRET_ACCESS_KEY`, plus `BUCKET_NAME`) or from a job's `s3Config`
(`endpointUrl`, `accessId`, `accessSecret`, `bucketName`). Secrets never appear in a repr, a log
line or an error message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from ..errors import AceStepError, echo

PRESIGN_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
MAX_SETTING_CHARS = 2048
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,62}$")
ATTEMPTS = 3  # per request, retries included, all within the time the caller gives
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 10.0, 60.0  # a bucket that never answers must not hold a job


class DeliveryError(AceStepError):
    """The files exist locally but could not be delivered (or a bucket object could not be read)."""


class ObjectTooLarge(DeliveryError):
    def __init__(self, uri: str, size: int):
        super().__init__(f"{uri} is {size} bytes")
        self.size = size


@dataclass(frozen=True)
class BucketConfig:
    endpoint_url: str
    bucket: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    region: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "BucketConfig | None":
        trio = [env.get(k, "").strip() for k in ("BUCKET_ENDPOINT_URL", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY")]
        if not all(trio):
            return None
        bucket = env.get("BUCKET_NAME", "").strip()
        if not bucket:
            raise DeliveryError("BUCKET_ENDPOINT_URL and its keys are set but BUCKET_NAME is not; set the bucket name")
        endpoint = _endpoint(trio[0], "BUCKET_ENDPOINT_URL")
        return cls(endpoint, _bucket_name(bucket, "BUCKET_NAME"), trio[1], trio[2],
                   env.get("BUCKET_REGION") or _region_of(endpoint))

    @classmethod
    def from_job(cls, s3_config: object) -> "BucketConfig | None":
        """A job's `s3Config`, checked before any GPU time is spent on the job."""
        if s3_config is None:
            return None
        needed = ("endpointUrl", "accessId", "accessSecret", "bucketName")
        if not isinstance(s3_config, dict) or any(not isinstance(s3_config.get(k), str) or not s3_config[k].strip()
                                                  or len(s3_config[k]) > MAX_SETTING_CHARS for k in needed):
            raise DeliveryError("s3Config must be an object with endpointUrl, accessId, accessSecret and bucketName, "
                                f"each a non-empty string of at most {MAX_SETTING_CHARS} characters")
        endpoint = _endpoint(s3_config["endpointUrl"].strip(), "s3Config.endpointUrl")
        return cls(endpoint, _bucket_name(s3_config["bucketName"].strip(), "s3Config.bucketName"),
                   s3_config["accessId"].strip(), s3_config["accessSecret"].strip(), _region_of(endpoint))


def _endpoint(url: str, name: str) -> str:
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # e.g. a port that is not a number
        valid = False
    if not valid:
        raise DeliveryError(f"{name} must be an http(s) URL such as https://s3.example.com; got {echo(url)}")
    return url


def _bucket_name(bucket: str, name: str) -> str:
    if not _BUCKET_NAME.match(bucket):
        raise DeliveryError(f"{name} must be a bucket name (3-63 letters, digits, dots, hyphens or "
                            f"underscores); got {echo(bucket)}")
    return bucket


def _region_of(endpoint: str) -> str | None:
    match = re.search(r"\.s3[.-]([a-z0-9-]+)\.amazonaws\.com", endpoint)
    return match.group(1) if match else None


class Bucket:
    """An S3-compatible bucket client made from one config (boto3 is imported only when used)."""

    def __init__(self, config: BucketConfig, timeout_s: float | None = None):
        import boto3
        from botocore.config import Config

        self.config = config
        # Every attempt gets its share of the time left, so retries end inside the job's deadline.
        share = READ_TIMEOUT_S if timeout_s is None else max(1.0, timeout_s / ATTEMPTS)
        self._client = boto3.client(
            "s3", endpoint_url=config.endpoint_url, aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key, region_name=config.region or "us-east-1",
            config=Config(signature_version="s3v4", retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
                          connect_timeout=min(CONNECT_TIMEOUT_S, share), read_timeout=min(READ_TIMEOUT_S, share)))

    def read(self, bucket: str, key: str, max_bytes: int) -> bytes:
        """An object's bytes; raise DeliveryError past `max_bytes` without reading the rest, and
        FileNotFoundError when the bucket has no such key."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=bucket, Key=key)
            if response.get("ContentLength", 0) > max_bytes:
                response["Body"].close()
                raise ObjectTooLarge(f"s3://{bucket}/{key}", response["ContentLength"])
            data = response["Body"].read(max_bytes + 1)
            response["Body"].close()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"s3://{bucket}/{key}") from None
            raise DeliveryError(f"reading s3://{bucket}/{key} failed: {_describe(exc)}") from None
        except (Boto3Error, BotoCoreError) as exc:
            raise DeliveryError(f"reading s3://{bucket}/{key} failed: {_describe(exc)}") from None
        if len(data) > max_bytes:
            raise ObjectTooLarge(f"s3://{bucket}/{key}", len(data))
        return data

    def upload(self, path: Path, key: str, content_type: str, expires_s: int = PRESIGN_SECONDS) -> str:
        """Upload a file under `key` with its content type; return a presigned GET URL."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.upload_file(str(path), self.config.bucket, key, ExtraArgs={"ContentType": content_type})
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.config.bucket, "Key": key}, ExpiresIn=expires_s)
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            raise DeliveryError(f"upload of {path.name} to bucket {self.config.bucket!r} failed: "
                                f"{_describe(exc)}; the job's songs are not kept") from None


def _describe(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    if error:
        return f"{error.get('Code', 'error')} ({error.get('Message', '').strip() or 'no message'})"
    cause = exc.__context__ if getattr(exc.__context__, "response", None) else None
    if cause is not None:  # boto3's transfer errors wrap the service's ClientError
        return _describe(cause)
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
