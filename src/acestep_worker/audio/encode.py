"""Encoding finished songs to files: MP3, FLAC, WAV, Ogg Vorbis through libsndfile; Opus and AAC
(.m4a) through PyAV (FFmpeg). Which library encodes a format, and from what length a song is cut
into segments encoded on several cores, is data in the format table (`schema/formats.py`); this
module carries it out. `decode` reads any of our files back (tests, bench)."""

from __future__ import annotations

import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from ..schema.formats import DEFAULT_MP3_BITRATE_KBPS, FORMATS, AudioFormat

log = logging.getLogger(__name__)


# libsndfile gets audio in blocks of this many frames: libvorbis allocates its analysis buffer on the
# stack (alloca of the whole pending input), so one write of a ~45 s song overflowed the 8 MiB
# stack and killed the process. MP3, FLAC and WAV files are byte-identical however they are fed.
_WRITE_BLOCK_FRAMES = 1 << 16


def _mp3_compression_level(bitrate_kbps: int) -> float:
    # libsndfile maps a constant-bitrate compression level linearly onto 320..32 kbps and rounds
    # down to a legal MPEG bitrate; aim just above the wanted rate so it lands on it.
    return max(0.0, (320 - bitrate_kbps) / 288 - 1e-3)


def encode(audio: np.ndarray, sample_rate: int, fmt: str, *, bitrate_kbps: int = DEFAULT_MP3_BITRATE_KBPS,
           tags: dict[str, str] | None = None, threads: int = 1) -> bytes:
    """Encode float audio [samples, channels] in [-1, 1] and return the file's bytes.

    With `threads` > 1, a format with `segment_min_s` encodes a long enough song as up to `threads`
    segments at once and joins them (mp3_segments.py, av_segments.py); otherwise, or when no valid
    join is found, in one pass.
    """
    spec = FORMATS[fmt]
    if spec.encoder == "av":
        from . import av_codecs  # FFmpeg's libraries load only when a format needs them

        output = av_codecs.AvOutput(spec.subtype, spec.container, spec.bitrate_kbps, tags)
        segments = _segments(spec, audio.shape[0], sample_rate, threads, bitrate_kbps)
        if segments > 1:
            from .av_segments import encode_segmented as encode_av_segmented

            joined = _segmented(fmt, lambda: encode_av_segmented(audio, sample_rate, segments, output))
            if joined is not None:
                return joined
        return av_codecs.encode(audio, sample_rate, output)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    segments = _segments(spec, audio.shape[0], sample_rate, threads, bitrate_kbps)
    if segments > 1:
        from .mp3_segments import encode_segmented

        joined = _segmented(fmt, lambda: encode_segmented(
            audio, segments, lambda part: _sndfile_encode(part, sample_rate, spec, bitrate_kbps, tags)))
        if joined is not None:
            return joined
    return _sndfile_encode(audio, sample_rate, spec, bitrate_kbps, tags)


def _segmented(fmt: str, encode_joined: Callable[[], bytes | None]) -> bytes | None:
    """The joined file, or None (with a warning on failure) when the caller should encode in one pass."""
    try:
        return encode_joined()
    except Exception:  # noqa: BLE001 - a speed-up must never cost the song: the one pass is the reference
        log.warning("segmented %s failed; encoding in one pass", fmt.upper(), exc_info=True)
        return None


def _segments(spec: AudioFormat, samples: int, sample_rate: int, threads: int, bitrate_kbps: int) -> int:
    """How many parallel segments to encode a song of `samples` in (1: one pass)."""
    if spec.segment_min_s is None or threads < 2:
        return 1
    if spec.encoder == "sndfile":  # the MP3 joiner's limits
        if sample_rate not in (32_000, 44_100, 48_000):
            return 1  # it reads MPEG-1 frames, which only these rates use
        if 144 * bitrate_kbps * 1000 // sample_rate < 192:
            return 1  # LAME writes no Info frame (gapless delay and padding) into frames this small
    return max(1, min(threads, int(samples / (spec.segment_min_s * sample_rate))))


def _sndfile_encode(audio: np.ndarray, sample_rate: int, spec: AudioFormat, bitrate_kbps: int,
                    tags: dict[str, str] | None) -> bytes:
    options = {}
    if spec.container == "MP3":
        options = {"compression_level": _mp3_compression_level(bitrate_kbps), "bitrate_mode": "CONSTANT"}
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", sample_rate, audio.shape[1], subtype=spec.subtype, format=spec.container,
                      **options) as handle:
        for key, value in (tags or {}).items():
            _set_tag(handle, key, value)
        for start in range(0, audio.shape[0], _WRITE_BLOCK_FRAMES):
            handle.write(audio[start:start + _WRITE_BLOCK_FRAMES])
    return buffer.getvalue()


def usable_cores() -> int:
    """CPU cores this process may use: its affinity set, capped by a cgroup v2 CPU quota (a
    container limited to 4 CPUs on a 64-core host must not cut songs into 64 segments)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


def encode_all(songs: list[tuple[np.ndarray, int]], fmt: str, *, threads: int | None = None, **options) -> list[bytes]:
    """Encode several (audio, sample rate) songs at once on `threads` cores (default: all usable).

    Both libsndfile (through cffi) and FFmpeg (through PyAV) release the GIL while they encode, so
    a batch of four songs costs about one song's time on four cores instead of four songs' time;
    cores left over go to each song's segments (`encode`'s `threads`).
    """
    cores = threads or usable_cores()
    per_song = max(1, cores // max(1, len(songs)))

    def one(song: tuple[np.ndarray, int]) -> bytes:
        return encode(song[0], song[1], fmt, threads=per_song, **options)

    if len(songs) <= 1:
        return [one(song) for song in songs]
    with ThreadPoolExecutor(max_workers=min(len(songs), cores)) as pool:
        return list(pool.map(one, songs))


def _set_tag(handle: sf.SoundFile, key: str, value: str) -> None:
    # Tags are a courtesy: libsndfile takes C strings (no NULs, not empty) and a tag that cannot be
    # written must never cost the song.
    text = "".join(ch for ch in value if ch.isprintable() or ch in "\t ").strip()
    if text:
        try:
            setattr(handle, key, text)
        except sf.LibsndfileError:
            pass


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode any of our formats back to float32 [samples, channels] and the sample rate."""
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except sf.LibsndfileError:  # .m4a: libsndfile does not read MP4
        from . import av_codecs

        return av_codecs.decode(data)
    return audio, rate
