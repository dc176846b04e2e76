"""Where user audio comes from: the value of `src_audio` / `reference_audio`, turned into bytes.

A value is one of (the first match wins):

| form                                | kind   | where accepted                                 |
|-------------------------------------|--------|------------------------------------------------|
| `https://host/path` (`http://` too   | url    | everywhere; streamed with a byte cap and a     |
|  when private URLs are allowed)     |        | time limit inside the job's deadline           |
| `data:audio/<type>;base64,...`      | data   | everywhere                                     |
| `s3://bucket/key`                   | s3     | everywhere a bucket is configured (job         |
|                                     |        | `s3Config` or the BUCKET_* variables)          |
| a file name or `/v1/audio?...` URL  | path   | the pod only: inside its input or output folder|
| anything else                       | base64 | plain base64 (in the pod, only when longer     |
|                                     |        | than any path could be)                        |

URLs may not reach this machine's own networks (the rules are in net/safe_http.py), and every redirect
is checked again. `ACESTEP_ALLOW_PRIVATE_URLS=1` lifts this, and allows `http://`, for trusted
networks and tests. URLs and bucket objects both come through net/download.py, which ends a
download at the earlier of the job's deadline and ACESTEP_AUDIO_FETCH_TIMEOUT, or within a fraction
of a second of a cancel, however slowly the sender sends.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import InputError
from ..net.bucket import Bucket, BucketConfig, DeliveryError, ObjectTooLarge
from ..net.download import DownloadRules, download
from ..net.safe_http import checked_url
from .decode import AudioLimits, DecodedAudio, decode, probe

AUDIO_FIELDS = ("src_audio", "reference_audio")
PATH_MAX_CHARS = 4_096  # longer than any path: in the pod such a value can only be base64
USER_AGENT = "acestep-worker (audio input)"


@dataclass(frozen=True)
class SourcePolicy:
    """What one adapter accepts and how far it may reach."""

    limits: AudioLimits = AudioLimits()
    allow_private: bool = False
    fetch_timeout_s: float = 120.0
    path_roots: tuple[Path, ...] = ()  # empty: server paths are not a source (serverless)
    bucket: BucketConfig | None = field(default=None, repr=False)  # credentials for s3:// sources

    @classmethod
    def from_settings(cls, settings, *, paths: bool = False, bucket: BucketConfig | None = None) -> "SourcePolicy":
        roots = (settings.input_dir.resolve(), settings.output_dir.resolve()) if paths else ()
        return cls(settings.audio_limits(), settings.allow_private_urls, settings.audio_fetch_timeout_s, roots, bucket)


    @classmethod
    def for_pod(cls, settings, output_dir: Path, env: Mapping[str, str] | None = None) -> "SourcePolicy":
        """The pod reads server files from its input folder (uploads, `*_path`) and its output folder
        (a result fed back in), and bucket keys with the BUCKET_* variables when they are set."""
        try:
            bucket = BucketConfig.from_env(os.environ if env is None else env,
                                           allow_private=settings.allow_private_urls)
        except DeliveryError:  # an incomplete bucket setup: s3:// sources are refused as unconfigured
            bucket = None
        roots = (Path(settings.input_dir).resolve(), Path(output_dir).resolve())
        return dataclasses.replace(cls.from_settings(settings, bucket=bucket), path_roots=roots)


@dataclass
class LoadedAudio:
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # field -> [samples, 2] float32, 48 kHz
    reports: dict[str, dict] = field(default_factory=dict)  # field -> DecodedAudio.report()

    def output_fields(self) -> dict:
        """`source` (src_audio) and `reference` (reference_audio) entries for an adapter's result."""
        names = {"src_audio": "source", "reference_audio": "reference"}
        return {names[name]: report for name, report in self.reports.items()}


def kind_of(value: str, policy: SourcePolicy) -> str:
    lowered = value[:16].lower()
    if lowered.startswith(("https://", "http://")):
        return "url"
    if lowered.startswith("data:"):
        return "data"
    if lowered.startswith("s3://"):
        return "s3"
    if policy.path_roots and len(value) <= PATH_MAX_CHARS:
        return "path"
    return "base64"


def check(field_name: str, value: str, policy: SourcePolicy) -> str:
    """The checks that need no network and no decoding of samples: syntax, scheme, folder
    confinement, and the header of the audio already at hand (server files, data URIs and base64,
    decoded within the byte cap). Adapters call it when a request arrives; returns the kind."""
    kind = kind_of(value, policy)
    if kind == "url":
        checked_url(field_name, value, policy.allow_private)
    elif kind == "s3":
        _s3_location(field_name, value, policy)
    elif kind == "path":
        path = _confined_path(field_name, value, policy.path_roots)
        with path.open("rb") as handle:
            probe(field_name, handle, policy.limits)
    else:  # data, base64: in the request itself, so refused at submission like an upload
        probe(field_name, _inline(field_name, value, kind, policy.limits), policy.limits)
    return kind


def read_bytes(field_name: str, value: str, policy: SourcePolicy, deadline: float | None = None,
               should_stop: Callable[[], bool] | None = None) -> bytes:
    """The bytes behind `value`, within the byte cap and (for downloads) before `deadline`
    (a time.monotonic() value; None: the policy's fetch timeout from now). A download also ends,
    with GenerationCancelled, as soon as `should_stop()` says so (a cancelled job)."""
    kind = kind_of(value, policy)
    if kind == "url":
        return _download(field_name, value, policy, deadline, should_stop or (lambda: False))
    if kind == "data":
        return _inline(field_name, value, kind, policy.limits)
    if kind == "s3":
        return _read_object(field_name, value, policy, deadline, should_stop or (lambda: False))
    if kind == "path":
        path = _confined_path(field_name, value, policy.path_roots)
        policy.limits.check_size(field_name, path.stat().st_size)
        return path.read_bytes()
    return _base64(field_name, value, policy.limits)


def load_audio(values: Mapping[str, str], policy: SourcePolicy, deadline: float | None = None,
               should_stop: Callable[[], bool] | None = None) -> LoadedAudio:
    """Fetch and decode each audio field's value (field -> source descriptor, in order); raise
    InputError naming the first bad one."""
    loaded = LoadedAudio()
    for name, value in values.items():
        data = read_bytes(name, value, policy, deadline, should_stop)
        audio: DecodedAudio = decode(name, data, policy.limits)
        loaded.arrays[name] = audio.samples
        loaded.reports[name] = audio.report()
    return loaded


# -- base64 ---------------------------------------------------------------------------------------

def _inline(field_name: str, value: str, kind: str, limits: AudioLimits) -> bytes:
    """The bytes of a `data` URI or plain `base64` value."""
    if kind == "data":
        header, sep, payload = value.partition(",")
        if not sep or not header.lower().endswith(";base64"):
            raise InputError(field_name, f"{field_name} is a data URI without base64 audio; send "
                                         "data:audio/<type>;base64,<data>")
        return _base64(field_name, payload, limits)
    return _base64(field_name, value, limits)


def _base64(field_name: str, text: str, limits: AudioLimits) -> bytes:
    compact = "".join(text.split())
    limits.check_size(field_name, len(compact) * 3 // 4)
    if "-" in compact or "_" in compact:
        compact = compact.replace("-", "+").replace("_", "/")  # the URL-safe alphabet
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(field_name, f"{field_name} is neither a URL, a data URI, an s3:// key nor valid base64 "
                                     "audio") from None
    if not data:
        raise InputError(field_name, f"{field_name} is empty; send audio")
    return data


# -- URLs -----------------------------------------------------------------------------------------

def _time_limit(policy: SourcePolicy) -> str:
    return f"the job's timeout_seconds or ACESTEP_AUDIO_FETCH_TIMEOUT={policy.fetch_timeout_s:g} s"


def _fetch_deadline(policy: SourcePolicy, deadline: float | None) -> float:
    """The earlier of the job's deadline and the policy's own limit for one download, from now."""
    own_limit = time.monotonic() + policy.fetch_timeout_s
    return own_limit if deadline is None else min(deadline, own_limit)


def _download(field_name: str, url: str, policy: SourcePolicy, deadline: float | None,
              should_stop: Callable[[], bool]) -> bytes:
    rules = DownloadRules(deadline=_fetch_deadline(policy, deadline),
                          check_size=lambda size: policy.limits.check_size(field_name, size),
                          allow_private=policy.allow_private, should_stop=should_stop, limit=_time_limit(policy))
    return download(field_name, url, "the audio file", rules,
                    headers={"User-Agent": USER_AGENT, "Accept": "audio/*, application/octet-stream, */*"})


# -- buckets and server files ---------------------------------------------------------------------

def _s3_location(field_name: str, value: str, policy: SourcePolicy) -> tuple[str, str]:
    bucket, _, key = value[5:].partition("/")
    if not bucket or not key:
        raise InputError(field_name, f"{field_name} must be s3://<bucket>/<key>")
    if policy.bucket is None:
        raise InputError(field_name, f"{field_name} names an s3:// object but no bucket is configured; send "
                                     "s3Config with the job or set BUCKET_ENDPOINT_URL and its keys")
    return bucket, key


def _read_object(field_name: str, value: str, policy: SourcePolicy, deadline: float | None,
                 should_stop: Callable[[], bool]) -> bytes:
    bucket, key = _s3_location(field_name, value, policy)
    try:
        return Bucket(policy.bucket).read(bucket, key, policy.limits.max_bytes, field=field_name,
                                          deadline=_fetch_deadline(policy, deadline), should_stop=should_stop,
                                          limit=_time_limit(policy))
    except ObjectTooLarge as exc:
        policy.limits.check_size(field_name, exc.size)
        raise
    except FileNotFoundError:
        raise InputError(field_name, f"{field_name}: bucket {bucket!r} has no object {key[:200]!r}") from None
    except DeliveryError as exc:
        raise InputError(field_name, f"{field_name} could not be read: {exc}") from None


def _confined_path(field_name: str, value: str, roots: tuple[Path, ...]) -> Path:
    """A file inside one of `roots` after resolving symlinks and `..`; relative names are looked up
    in each root in turn. Our own `/v1/audio?filename=` (or upstream's `?path=`) links count too."""
    if value.startswith("/v1/audio?"):
        query = parse_qs(urlsplit(value).query)
        value = (query.get("filename") or query.get("path") or [""])[0]
    if not value or "\x00" in value or len(value) > PATH_MAX_CHARS:
        raise InputError(field_name, f"{field_name} is not a usable file name")
    candidates = [Path(value)] if Path(value).is_absolute() else [root / value for root in roots]
    for candidate in candidates:
        try:
            real = candidate.resolve(strict=False)
        except (OSError, RuntimeError):
            continue
        if not any(real == root or root in real.parents for root in roots):
            raise InputError(field_name, f"{field_name} must name a file inside the server's input folder "
                                         "(ACESTEP_INPUT_DIR); other paths are refused: upload the file instead")
        try:
            found = real.is_file()
        except OSError:  # a component over NAME_MAX: no such file, whatever the OS calls it
            found = False
        if found:
            return real
    raise InputError(field_name, f"{field_name}: no such file in the server's input folder; upload it "
                                 "(multipart) or give a URL")
