"""Predict, before any GPU time is spent, whether a serverless job's songs can reach the caller.

Without a bucket a serverless caller receives songs only inline, as base64 in the job's response:
`file` names a path inside the worker, reachable only through a shared volume or a pod. The inline
text is bounded by `max_base64_bytes` and by Runpod's response limit, so a long WAV or a big batch
cannot come back. The encoded size is predictable from the format, bitrate, duration and batch
size; a job that cannot be delivered is refused with what would work instead.
"""

from __future__ import annotations

import math

from ..audio.encode import DEFAULT_MP3_BITRATE_KBPS
from ..errors import InputError
from ..net.bucket import base64_size

SAMPLE_RATE = 48_000
CHANNELS = 2
HEADER_BYTES = 4_096  # container headers and tags, per file
# Encoded bytes per second of 48 kHz stereo audio. Exact for the constant-rate formats (PCM WAV,
# constant-bitrate MP3); for the variable-rate ones a LOW estimate (measured with our encoder on
# noise and on tonal test signals: Vorbis and Opus ~15 kB/s at libsndfile's default quality; FLAC
# keeps music at 50-80 % of PCM), so a job is refused only when it really cannot fit.
BYTES_PER_SECOND = {
    "wav": SAMPLE_RATE * CHANNELS * 2,
    "wav32": SAMPLE_RATE * CHANNELS * 4,
    "flac": SAMPLE_RATE * CHANNELS * 2 // 2,
    "ogg": 13_000,
    "opus": 13_000,
    "aac": 20_000,  # 192 kbps AAC is 24 kB/s; predicted low like the other variable-rate formats
}
SMALL_FORMATS = ("opus", "mp3")  # what to suggest instead, smallest first
MIN_DURATION_S = 10


def encoded_bytes(audio_format: str, duration_s: float, mp3_bitrate_kbps: int = DEFAULT_MP3_BITRATE_KBPS) -> int:
    """The predicted size of one encoded song."""
    rate = mp3_bitrate_kbps * 1000 / 8 if audio_format == "mp3" else BYTES_PER_SECOND[audio_format]
    return HEADER_BYTES + math.ceil(rate * duration_s)


def inline_bytes(audio_format: str, duration_s: float, batch_size: int,
                 mp3_bitrate_kbps: int = DEFAULT_MP3_BITRATE_KBPS) -> int:
    """The predicted base64 text of a whole batch."""
    return batch_size * base64_size(encoded_bytes(audio_format, duration_s, mp3_bitrate_kbps))


def known_duration(request, *, planner_loaded: bool, default_s: float) -> float | None:
    """The seconds a job will generate, when they are known before it runs: the request's own, or the
    default when no planner and no source audio can choose another."""
    if request.duration:
        return float(request.duration)
    planner_decides = planner_loaded and (request.use_cot_metas or request.sample_mode or request.sample_query)
    return None if planner_decides or getattr(request, "src_audio", None) else default_s


def check_deliverable(request, *, has_bucket: bool, duration_s: float | None, response_limit: int) -> None:
    """Refuse a job whose songs cannot reach the caller: no bucket, base64 asked for, and the
    predicted base64 over `max_base64_bytes` or Runpod's response limit. `duration_s` is what the
    job will generate, None when only the planner or the source audio will decide it."""
    if has_bucket or not request.return_audio_base64 or duration_s is None:
        return
    budget = min(request.max_base64_bytes, response_limit)
    fmt, batch, bitrate = request.audio_format, request.batch_size, request.mp3_bitrate
    predicted = inline_bytes(fmt, duration_s, batch, bitrate)
    if predicted <= budget:
        return
    songs = f"{batch} songs" if batch > 1 else "a song"
    limit = (f"max_base64_bytes={request.max_base64_bytes:,}" if request.max_base64_bytes <= response_limit
             else f"Runpod's response limit of {response_limit:,} bytes")
    options = ["a bucket (the job's s3Config, or the worker's BUCKET_* variables), which returns URLs"]
    formats = [other for other in SMALL_FORMATS
               if other != fmt and inline_bytes(other, duration_s, batch, bitrate) <= budget]
    if formats:
        options.append("audio_format " + " or ".join(formats))
    longest = _longest_duration(fmt, batch, bitrate, budget)
    if longest >= MIN_DURATION_S:
        options.append(f"a duration of at most {longest} s")
    most = budget // inline_bytes(fmt, duration_s, 1, bitrate)
    if 1 <= most < batch:
        options.append(f"batch_size {most}")
    raise InputError("return_audio_base64", (
        f"{songs} of {duration_s:g} s as {fmt} would be about {predicted / 1e6:.1f} MB of base64, more than "
        f"{limit} allows, and this job has no bucket, so it would fail after generating; use "
        + _either(options)))


def _longest_duration(fmt: str, batch: int, bitrate: int, budget: int) -> int:
    per_song_raw = budget // batch * 3 // 4 - HEADER_BYTES
    rate = bitrate * 1000 / 8 if fmt == "mp3" else BYTES_PER_SECOND[fmt]
    return max(0, int(per_song_raw / rate))


def _either(options: list[str]) -> str:
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + ", or " + options[-1]
