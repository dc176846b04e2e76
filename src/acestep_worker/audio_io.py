"""Encoding finished songs to files: MP3, FLAC, WAV, Ogg Vorbis through libsndfile; Opus and AAC
(.m4a) through PyAV (FFmpeg). Which library encodes a format is data in `FORMATS`, chosen from
measured speed at equal settings (bench/encode.py, figures in bench/README.md)."""

from __future__ import annotations

import io
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class AudioFormat:
    name: str
    extension: str
    container: str  # libsndfile major format, or FFmpeg muxer name when encoder == "av"
    subtype: str | None  # libsndfile subtype, or FFmpeg encoder name when encoder == "av"
    content_type: str
    encoder: Literal["sndfile", "av"] = "sndfile"
    bitrate_kbps: int | None = None  # fixed rate of the av formats; MP3's comes from the request


FORMATS = {
    # libsndfile's LAME is ~20% faster than FFmpeg's libmp3lame wrapper at 192 kbps CBR.
    "mp3": AudioFormat("mp3", "mp3", "MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "flac": AudioFormat("flac", "flac", "FLAC", "PCM_16", "audio/flac"),
    "wav": AudioFormat("wav", "wav", "WAV", "PCM_16", "audio/wav"),
    "wav32": AudioFormat("wav32", "wav", "WAV", "FLOAT", "audio/wav"),
    "ogg": AudioFormat("ogg", "ogg", "OGG", "VORBIS", "audio/ogg"),
    # Same ~120 kbps as libsndfile's default, ~3x faster through FFmpeg's libopus (bench/encode.py).
    "opus": AudioFormat("opus", "opus", "ogg", "libopus", "audio/ogg", "av", 120),
    "aac": AudioFormat("aac", "m4a", "ipod", "aac", "audio/mp4", "av", 192),
}
MP3_BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
DEFAULT_MP3_BITRATE_KBPS = 192

CONTENT_TYPES = {fmt.extension: fmt.content_type for fmt in FORMATS.values()}
# File suffixes that are not a format's name (`song.m4a` asks for AAC).
FORMAT_OF_SUFFIX = {fmt.extension: name for name, fmt in FORMATS.items() if fmt.extension not in FORMATS}


def _mp3_compression_level(bitrate_kbps: int) -> float:
    # libsndfile maps a constant-bitrate compression level linearly onto 320..32 kbps and rounds
    # down to a legal MPEG bitrate; aim just above the wanted rate so it lands on it.
    return max(0.0, (320 - bitrate_kbps) / 288 - 1e-3)


def encode(audio: np.ndarray, sample_rate: int, fmt: str, *, bitrate_kbps: int = DEFAULT_MP3_BITRATE_KBPS,
           tags: dict[str, str] | None = None) -> bytes:
    """Encode float audio [samples, channels] in [-1, 1] and return the file's bytes."""
    spec = FORMATS[fmt]
    if spec.encoder == "av":
        from . import av_codecs  # FFmpeg's libraries load only when a format needs them

        return av_codecs.encode(audio, sample_rate, codec=spec.subtype, container=spec.container,
                                bitrate_kbps=spec.bitrate_kbps, tags=tags)
    options = {}
    if spec.container == "MP3":
        options = {"compression_level": _mp3_compression_level(bitrate_kbps), "bitrate_mode": "CONSTANT"}
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", sample_rate, audio.shape[1], subtype=spec.subtype, format=spec.container,
                      **options) as handle:
        for key, value in (tags or {}).items():
            _set_tag(handle, key, value)
        handle.write(np.clip(audio, -1.0, 1.0).astype(np.float32))
    return buffer.getvalue()


def encode_all(songs: list[tuple[np.ndarray, int]], fmt: str, **options) -> list[bytes]:
    """Encode several (audio, sample rate) songs at once, one thread each (up to the core count).

    Both libsndfile (through cffi) and FFmpeg (through PyAV) release the GIL while they encode, so
    a batch of four songs costs about one song's time on four cores instead of four songs' time.
    """
    def one(song: tuple[np.ndarray, int]) -> bytes:
        return encode(song[0], song[1], fmt, **options)

    if len(songs) <= 1:
        return [one(song) for song in songs]
    with ThreadPoolExecutor(max_workers=min(len(songs), os.cpu_count() or 1)) as pool:
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


def write_atomically(path: Path, data: bytes) -> None:
    """Write bytes so that `path` either holds the whole file or does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)  # mkstemp creates 0600; songs are meant to be served and shared
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode any of our formats back to float32 [samples, channels] and the sample rate."""
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except sf.LibsndfileError:  # .m4a: libsndfile does not read MP4
        from . import av_codecs

        return av_codecs.decode(data)
    return audio, rate
