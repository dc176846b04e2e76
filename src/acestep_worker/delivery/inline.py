"""Songs inline in a serverless response, as base64: predicted before any GPU time is spent, and
attached within the job's budget after.

Without a bucket a serverless caller receives songs only inline: `file` names a path inside the
worker, reachable only through a shared volume or a pod. The inline text is bounded by
`max_base64_bytes` and by Runpod's response limit, so a long WAV or a big batch cannot come back.
The encoded size is predictable from the format table's bytes per second, the song's length (the
job's plan says how long, and what decides it) and the batch size; a job that cannot be delivered
is refused before it runs, with what would work instead.
"""

from __future__ import annotations

import base64
import math

from ..errors import InputError
from ..schema.formats import DEFAULT_MP3_BITRATE_KBPS, FORMATS
from ..schema.units import CODES_PER_SECOND, MIN_DURATION_S

HEADER_BYTES = 4_096  # container headers and tags, per file
SMALL_FORMATS = ("opus", "mp3")  # what to suggest instead, smallest first


def base64_size(raw_bytes: int) -> int:
    return 4 * ((raw_bytes + 2) // 3)


def encoded_bytes(audio_format: str, duration_s: float, mp3_bitrate_kbps: int = DEFAULT_MP3_BITRATE_KBPS) -> int:
    """The predicted size of one encoded song."""
    return HEADER_BYTES + math.ceil(FORMATS[audio_format].predicted_bytes_per_s(mp3_bitrate_kbps) * duration_s)


def inline_bytes(audio_format: str, duration_s: float, batch_size: int,
                 mp3_bitrate_kbps: int = DEFAULT_MP3_BITRATE_KBPS) -> int:
    """The predicted base64 text of a whole batch."""
    return batch_size * base64_size(encoded_bytes(audio_format, duration_s, mp3_bitrate_kbps))


def check_deliverable(request, seconds: float | None, decided_by: str, *, has_bucket: bool,
                      response_limit: int, songs: int | None = None) -> None:
    """Refuse a job whose songs cannot reach the caller: no bucket, base64 asked for, and the
    predicted base64 over `max_base64_bytes` or Runpod's response limit. `seconds` is how long each
    song will be and `decided_by` what sets it (the plan's length: codes, source, duration, default);
    None while the planner or a source still to be decoded decides. `songs`: how many the job makes (the
    plan's: stems x batch_size), default batch_size."""
    if has_bucket or not request.return_audio_base64 or seconds is None:
        return
    budget = min(request.max_base64_bytes, response_limit)
    # Songs delivered: best-of-N (keep_best) returns only the takes it keeps.
    fmt, batch, bitrate = request.audio_format, request.keep_best or songs or request.batch_size, request.mp3_bitrate
    predicted = inline_bytes(fmt, seconds, batch, bitrate)
    if predicted <= budget:
        return
    songs = f"{batch} songs" if batch > 1 else "a song"
    limit = (f"max_base64_bytes={request.max_base64_bytes:,}" if request.max_base64_bytes <= response_limit
             else f"Runpod's response limit of {response_limit:,} bytes")
    options = ["a bucket (the job's s3Config, or the worker's BUCKET_* variables), which returns URLs"]
    formats = [other for other in SMALL_FORMATS if other != fmt and inline_bytes(other, seconds, batch, bitrate) <= budget]
    if formats:
        options.append("audio_format " + " or ".join(formats))
    shorter = _shorter(decided_by, _longest_seconds(fmt, batch, bitrate, budget))
    if shorter:
        options.append(shorter)
    most = budget // inline_bytes(fmt, seconds, 1, bitrate)
    if 1 <= most < batch:
        options.append(f"keep_best {most}" if request.keep_best else f"batch_size {most}" if batch == request.batch_size
                       else f"at most {most} songs (stems x batch_size)")
    made_by = {"codes": " (the length of its audio codes)", "source": " (the length of its source song)"}
    raise InputError("return_audio_base64", (
        f"{songs} of {seconds:g} s{made_by.get(decided_by, '')} as {fmt} would be about {predicted / 1e6:.1f} MB "
        f"of base64, more than {limit} allows, and this job has no bucket, so it would fail after generating; use "
        + _either(options)))


def _shorter(decided_by: str, longest_s: int) -> str | None:
    """What would make the songs short enough, in the terms of what sets their length."""
    if decided_by == "codes":
        codes = longest_s * CODES_PER_SECOND
        return f"an audio_code_string of at most {codes} codes ({longest_s} s)" if codes else None
    if decided_by == "source":
        return f"a source song of at most {longest_s} s" if longest_s >= 1 else None
    return f"a duration of at most {longest_s} s" if longest_s >= MIN_DURATION_S else None


def _longest_seconds(fmt: str, batch: int, bitrate: int, budget: int) -> int:
    per_song_raw = budget // batch * 3 // 4 - HEADER_BYTES
    return max(0, int(per_song_raw / FORMATS[fmt].predicted_bytes_per_s(bitrate)))


def _either(options: list[str]) -> str:
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + ", or " + options[-1]


def attach_base64(results: list[dict], payloads: list[bytes], max_bytes: int, elsewhere: str) -> None:
    """Add `audio_base64` to each result, in order, while the total base64 text fits `max_bytes`.

    A song that does not fit gets `base64_omitted` with the reason and `elsewhere` (where else the
    caller can get it) instead; later, smaller songs may still fit.
    """
    used = 0
    for result, data in zip(results, payloads):
        size = base64_size(len(data))
        if used + size > max_bytes:
            result["base64_omitted"] = (f"{size} bytes of base64 would exceed max_base64_bytes={max_bytes} "
                                        f"({used} already used); {elsewhere}")
            continue
        result["audio_base64"] = base64.b64encode(data).decode("ascii")
        used += size
