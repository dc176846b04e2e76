"""Audio a user sends in (a song to cover or repaint, a timbre reference), decoded for the engine.

Whatever arrives (WAV, FLAC, Ogg/Vorbis, Opus or MP3 bytes, read by libsndfile through soundfile)
leaves as float32 stereo at 48 kHz, shaped [samples, 2], clipped to [-1, 1] as upstream does.
Other rates are converted with soxr (libsoxr, the resampler of SoX/FFmpeg), mono is duplicated to
both channels. Every refusal is an `InputError` naming the field, in one sentence:

- more than 2 channels: upstream silently keeps the first two, which for a surround file are the
  front pair, not the mix; we refuse and ask for a stereo mixdown;
- below 16 kHz: such audio has nothing above 8 kHz, and the model keeps that hole in a cover or a
  repaint's surroundings; above 384 kHz: no real recording, only a forged header;
- shorter than one latent frame (40 ms), longer than the duration cap, bigger than the byte cap,
  NaN or infinite samples, truncated or corrupt data, or bytes that are not audio at all.

The checks that need only the header (`probe`) run before any sample is decoded, so a 10-hour file
costs a header read, not 10 hours of PCM in memory.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf

from ..errors import InputError
from ..schema.units import MAX_DURATION_S, SAMPLE_RATE, SAMPLES_PER_FRAME

MIN_SAMPLES = SAMPLES_PER_FRAME  # one latent frame: less is nothing the model can read
MIN_RATE_HZ, MAX_RATE_HZ = 16_000, 384_000
MAX_CHANNELS = 2
DEFAULT_MAX_BYTES = 128 * 1024 * 1024  # a 10-minute 16-bit 48 kHz stereo WAV (110 MiB) fits
DEFAULT_MAX_SECONDS = MAX_DURATION_S  # the longest song the model makes
READABLE = "WAV, FLAC, Ogg/Vorbis, Opus or MP3"
# Compressed formats whose header frame count is an estimate: allow this much shortfall before
# calling the data truncated.
_ESTIMATED_LENGTH = {"MP3": 0.02}


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS

    def check_size(self, field: str, size: int) -> None:
        if size > self.max_bytes:
            raise InputError(field, f"{field} is {_mb(size)}; the limit is {_mb(self.max_bytes)} "
                                    "(ACESTEP_MAX_AUDIO_MB); send a shorter or compressed file (FLAC, Opus, MP3)")


@dataclass(frozen=True)
class AudioProbe:
    """What a file's header says."""

    format: str  # libsndfile's major format: WAV, FLAC, OGG, MP3, ...
    subtype: str  # PCM_16, VORBIS, OPUS, MPEG_LAYER_III, ...
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class DecodedAudio:
    field: str
    samples: np.ndarray  # [samples, 2] float32 at 48 kHz
    probe: AudioProbe
    sha256: str  # of the bytes as received
    bytes: int

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / SAMPLE_RATE

    def report(self) -> dict:
        """What adapters echo back: which input, how long, and a checksum of what arrived."""
        return {"field": self.field, "duration_s": round(self.duration_s, 3), "sha256": self.sha256,
                "bytes": self.bytes, "format": self.probe.format.lower(), "sample_rate": self.probe.sample_rate,
                "channels": self.probe.channels}


def probe(field: str, data: bytes | BinaryIO, limits: AudioLimits = AudioLimits()) -> AudioProbe:
    """Read and check the header only: readable format, channels, sample rate, duration cap."""
    try:
        with sf.SoundFile(_stream(data)) as handle:
            info = AudioProbe(handle.format, handle.subtype, handle.samplerate, handle.channels, handle.frames)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InputError(field, f"{field} is not audio this server can read ({_reason(exc)}); "
                                f"send {READABLE}") from None
    _check_header(field, info, limits)
    return info


def decode(field: str, data: bytes, limits: AudioLimits = AudioLimits()) -> DecodedAudio:
    """Decode `data` to float32 stereo at 48 kHz, or raise InputError naming `field`."""
    if not data:
        raise InputError(field, f"{field} is empty (0 bytes); send {READABLE} audio")
    limits.check_size(field, len(data))
    info = probe(field, data, limits)
    _check_riff_length(field, data, info)
    max_frames = int(limits.max_seconds * info.sample_rate) + 1
    try:
        samples, got = _decode_blocks(field, data, info.sample_rate, max_frames)
    except InputError:
        raise  # already one sentence naming the field (an InputError is a ValueError too)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise InputError(field, f"{field} is truncated or corrupt ({_reason(exc)}); re-export the file") from None
    allowance = _ESTIMATED_LENGTH.get(info.format, 0.0) * info.frames
    if info.frames > 0 and got < info.frames - allowance:
        raise InputError(field, f"{field} is truncated: its header promises {info.duration_s:.2f} s but only "
                                f"{got / info.sample_rate:.2f} s of audio could be decoded")
    if got * SAMPLE_RATE < MIN_SAMPLES * info.sample_rate:
        raise InputError(field, f"{field} holds {got / info.sample_rate:.3f} s of audio; send at least "
                                f"{MIN_SAMPLES / SAMPLE_RATE:.2f} s")
    return DecodedAudio(field, samples, info, hashlib.sha256(data).hexdigest(), len(data))


def _decode_blocks(field: str, data: bytes, rate: int, max_frames: int) -> tuple[np.ndarray, int]:
    """Decode and resample in 1 s blocks, so memory holds the 48 kHz result and one block, never the
    whole file at its own rate (a small FLAC of 600 s at 384 kHz would otherwise be 1.8 GB of PCM).
    Returns ([samples, 2] float32 at 48 kHz, frames read at the source rate)."""
    import soxr

    stream = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 2, dtype="float32",
                                                                   quality="HQ")
    pieces, got = [], 0
    with sf.SoundFile(io.BytesIO(data)) as handle:
        # Not SoundFile.blocks(): it trusts the header's length and pads a truncated file with stale data.
        while (block := handle.read(rate, dtype="float32", always_2d=True)).shape[0]:
            got += block.shape[0]
            if got >= max_frames:
                raise InputError(field, f"{field} is longer than {(max_frames - 1) / rate:g} s "
                                        "(ACESTEP_MAX_AUDIO_SECONDS); trim it first")
            if not np.isfinite(block).all():
                raise InputError(field, f"{field} contains NaN or infinite samples; re-export it as ordinary "
                                        "PCM audio")
            block = np.repeat(block, 2, axis=1) if block.shape[1] == 1 else block
            pieces.append(block if stream is None else stream.resample_chunk(block))
    if stream is not None:
        pieces.append(stream.resample_chunk(np.zeros((0, 2), np.float32), last=True))
    samples = np.concatenate(pieces) if pieces else np.zeros((0, 2), np.float32)
    return np.ascontiguousarray(np.clip(samples, -1.0, 1.0, out=samples), dtype=np.float32), got


def _check_header(field: str, info: AudioProbe, limits: AudioLimits) -> None:
    if info.channels > MAX_CHANNELS:
        raise InputError(field, f"{field} has {info.channels} channels; send mono or stereo audio "
                                "(mix surround down to stereo first)")
    if not MIN_RATE_HZ <= info.sample_rate <= MAX_RATE_HZ:
        raise InputError(field, f"{field} is sampled at {info.sample_rate} Hz; send audio sampled at "
                                f"{MIN_RATE_HZ} to {MAX_RATE_HZ} Hz (below {MIN_RATE_HZ // 1000} kHz the high "
                                "frequencies the model reproduces are missing)")
    if info.frames > 0 and info.duration_s > limits.max_seconds * (1 + _ESTIMATED_LENGTH.get(info.format, 0.0)):
        raise InputError(field, f"{field} is {info.duration_s:.1f} s long; the limit is {limits.max_seconds:g} s "
                                "(ACESTEP_MAX_AUDIO_SECONDS); trim it first")


def _check_riff_length(field: str, data: bytes, info: AudioProbe) -> None:
    """libsndfile quietly shortens a WAV whose data chunk was cut off; the RIFF header says how much
    should be there. 0 and 0xFFFFFFFF are the placeholders streaming writers use: no promise."""
    if info.format != "WAV" or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"data":
            present = len(data) - offset - 8
            if size not in (0, 0xFFFFFFFF) and present < size:
                raise InputError(field, f"{field} is truncated: its WAV header promises {size} bytes of audio "
                                        f"but {present} arrived")
            return
        offset += 8 + size + (size & 1)


def _stream(data: bytes | BinaryIO) -> BinaryIO:
    return io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data


def _reason(exc: Exception) -> str:
    text = str(exc).split(": ", 1)[-1].strip().rstrip(".") if str(exc) else type(exc).__name__
    return text[:120] or type(exc).__name__


def _mb(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB"
