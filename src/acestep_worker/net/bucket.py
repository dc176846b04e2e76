"""S3-compatible buckets: reading a job's `s3://` sources and uploading its songs, answered with presigned URLs.

Bucket credentials come from the same variables as runpod's `rp_upload` (`BUCKET_ENDPOINT_URL`,
`BUCKET_ACCESS_KEY_ID`, `BUCKET_SECRET_ACCESS_KEY`, plus `BUCKET_NAME`) or from a job's `s3Config`
(`endpointUrl`, `accessId`, `accessSecret`, `bucketName`). Secrets never appear in a repr, a log
line or an error message.

An endpoint follows the download rules of net/safe_http.py: it may not be (or resolve to) a
loopback, private, link-local or reserved address unless ACESTEP_ALLOW_PRIVATE_URLS=1 (a MinIO
beside the worker); `http://` stays allowed. Objects are read through a presigned GET URL by
net/download.py (the address it connects to is the one it checked; the job's deadline and cancel
bound the whole read). Uploads go through boto3, which resolves the host itself: its addresses
are checked just before each upload, but boto3's own connection is not pinned to them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..errors import AceStepError, InputError, echo

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
    allow_private: bool = False  # ACESTEP_ALLOW_PRIVATE_URLS=1: the endpoint may be on a private network

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, allow_private: bool = False) -> "BucketConfig | None":
        trio = [env.get(k, "").strip() for k in ("BUCKET_ENDPOINT_URL", "BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY")]
        if not all(trio):
            return None
        bucket = env.get("BUCKET_NAME", "").strip()
        if not bucket:
            raise DeliveryError("BUCKET_ENDPOINT_URL and its keys are set but BUCKET_NAME is not; set the bucket name")
        endpoint = _endpoint(trio[0], "BUCKET_ENDPOINT_URL", allow_private)
        return cls(endpoint, _bucket_name(bucket, "BUCKET_NAME"), trio[1], trio[2],
                   env.get("BUCKET_REGION") or _region_of(endpoint), allow_private)

    @classmethod
    def from_job(cls, s3_config: object, *, allow_private: bool = False) -> "BucketConfig | None":
        """A job's `s3Config`, checked before any GPU time is spent on the job."""
        if s3_config is None:
            return None
        needed = ("endpointUrl", "accessId", "accessSecret", "bucketName")
        if not isinstance(s3_config, dict) or any(not isinstance(s3_config.get(k), str) or not s3_config[k].strip()
                                                  or len(s3_config[k]) > MAX_SETTING_CHARS for k in needed):
            raise DeliveryError("s3Config must be an object with endpointUrl, accessId, accessSecret and bucketName, "
                                f"each a non-empty string of at most {MAX_SETTING_CHARS} characters")
        endpoint = _endpoint(s3_config["endpointUrl"].strip(), "s3Config.endpointUrl", allow_private)
        return cls(endpoint, _bucket_name(s3_config["bucketName"].strip(), "s3Config.bucketName"),
                   s3_config["accessId"].strip(), s3_config["accessSecret"].strip(), _region_of(endpoint),
                   allow_private)


def _endpoint(url: str, name: str, allow_private: bool) -> str:
    """`url` if it is an http(s) URL whose host is not an IP address the download rules refuse (a host
    name is judged by its addresses when the bucket is used)."""
    import ipaddress

    from .safe_http import address_allowed, blocked_error, checked_url

    try:
        host = checked_url(name, url, True, allow_http=True).host
    except InputError:
        raise DeliveryError(f"{name} must be an http(s) URL such as https://s3.example.com; got {echo(url)}") from None
    try:
        literal = str(ipaddress.ip_address(host))
    except ValueError:
        literal = None
    if literal is not None and not allow_private and not address_allowed(literal):
        raise DeliveryError(str(blocked_error(name, host, literal)))
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

    def read(self, bucket: str, key: str, max_bytes: int, *, field: str = "s3", deadline: float | None = None,
             should_stop: Callable[[], bool] | None = None, limit: str = "the bucket's read timeout") -> bytes:
        """An object's bytes, read through a presigned GET URL by net/download.py before `deadline` (a
        time.monotonic() value; None: READ_TIMEOUT_S from now). Raise ObjectTooLarge past `max_bytes`
        without reading the rest, FileNotFoundError when the bucket has no such key, DeliveryError
        when the bucket refuses; a timeout is an InputError naming `field`, a cancel
        GenerationCancelled."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        from .download import DownloadRules, HTTPRefused, download

        uri = f"s3://{bucket}/{key}"
        try:
            url = self._client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                      ExpiresIn=3600)
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            raise DeliveryError(f"reading {uri} failed: {_describe(exc)}") from None

        def check_size(size: int) -> None:
            if size > max_bytes:
                raise ObjectTooLarge(uri, size)

        try:
            rules = DownloadRules(deadline=time.monotonic() + READ_TIMEOUT_S if deadline is None else deadline,
                                  check_size=check_size, allow_private=self.config.allow_private, allow_http=True,
                                  should_stop=should_stop, limit=limit)
            return download(field, url, "the object", rules)
        except HTTPRefused as exc:
            code, message = _xml_text(exc.body, "Code"), _xml_text(exc.body, "Message")
            if exc.status == 404 or code in ("NoSuchKey", "NotFound"):
                raise FileNotFoundError(uri) from None
            raise DeliveryError(f"reading {uri} failed: {code or f'HTTP {exc.status}'} "
                                f"({message or 'no message'})") from None

    def upload(self, path: Path, key: str, content_type: str, expires_s: int = PRESIGN_SECONDS) -> str:
        """Upload a file under `key` with its content type; return a presigned GET URL."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        self.check_endpoint()
        try:
            self._client.upload_file(str(path), self.config.bucket, key, ExtraArgs={"ContentType": content_type})
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.config.bucket, "Key": key}, ExpiresIn=expires_s)
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            raise DeliveryError(f"upload of {path.name} to bucket {self.config.bucket!r} failed: "
                                f"{_describe(exc)}; the job's songs are not kept") from None


    def check_endpoint(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Refuse an endpoint whose host resolves to an address the download rules refuse (boto3 then
        resolves it again itself: this check is not pinned to the connection)."""
        if self.config.allow_private:
            return
        import httpx

        from .download import Clock, Stopped, resolve
        from .safe_http import BlockedAddress, check_addresses

        url = httpx.URL(self.config.endpoint_url)
        try:
            found = resolve(url.host, url.port or 443, Clock(time.monotonic() + timeout_s))
            check_addresses(url.host, [address[0] for _, address in found], False)
        except BlockedAddress as exc:
            raise DeliveryError(f"the bucket endpoint {echo(exc.host)} resolves to {exc.address}, a loopback, "
                                "private or reserved address; a bucket on a private network needs "
                                "ACESTEP_ALLOW_PRIVATE_URLS=1") from None
        except Stopped:
            raise DeliveryError(f"the bucket endpoint {echo(url.host)} could not be resolved in time") from None
        except Exception as exc:  # httpcore.ConnectError: no such host
            raise DeliveryError(f"the bucket endpoint {echo(url.host)} could not be resolved "
                                f"({type(exc).__name__})") from None


def _xml_text(body: bytes, tag: str) -> str:
    match = re.search(rf"<{tag}>([^<]{{0,200}})</{tag}>".encode(), body)
    return match.group(1).decode("utf-8", "replace").strip() if match else ""


def _describe(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    if error:
        return f"{error.get('Code', 'error')} ({error.get('Message', '').strip() or 'no message'})"
    cause = exc.__context__ if getattr(exc.__context__, "response", None) else None
    if cause is not None:  # boto3's transfer errors wrap the service's ClientError
        return _describe(cause)
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
