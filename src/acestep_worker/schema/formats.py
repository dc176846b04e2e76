"""The audio formats songs are written in, as one table: file extension, content type, which library
encodes it and how, from what length it is cut into segments, and how many bytes a second of it
takes (for predicting, before a job runs, whether its songs fit inline in a response).

Plain data, no audio library: the request schema and the HTTP client read it; `audio/encode.py`
encodes by it. The encoder choices come from measured speed at equal settings (bench/encode.py,
figures in bench/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .units import CHANNELS, SAMPLE_RATE

MP3_BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
DEFAULT_MP3_BITRATE_KBPS = 192


@dataclass(frozen=True)
class AudioFormat:
    name: str
    extension: str
    container: str  # libsndfile major format, or FFmpeg muxer name when encoder == "av"
    subtype: str | None  # libsndfile subtype, or FFmpeg encoder name when encoder == "av"
    content_type: str
    encoder: Literal["sndfile", "av"] = "sndfile"
    bitrate_kbps: int | None = None  # fixed rate of the av formats; MP3's comes from the request
    # A song at least twice this long is encoded as parallel segments when cores are free
    # (mp3_segments.py for libsndfile's MP3, av_segments.py for PyAV's codecs); None: always one pass.
    segment_min_s: float | None = None
    # Encoded bytes per second of 48 kHz stereo. Exact for the constant-rate formats (PCM WAV); for the
    # variable-rate ones a LOW estimate (measured with our encoders on noise and on tonal test
    # signals: Vorbis and Opus ~15 kB/s; FLAC keeps music at 50-80 % of PCM), so a job is refused
    # only when it really cannot fit. None: from the request's bitrate (MP3, constant bitrate).
    bytes_per_s: int | None = None

    def predicted_bytes_per_s(self, mp3_bitrate_kbps: int = DEFAULT_MP3_BITRATE_KBPS) -> float:
        return self.bytes_per_s if self.bytes_per_s is not None else mp3_bitrate_kbps * 1000 / 8


_PCM16_BYTES_PER_S = SAMPLE_RATE * CHANNELS * 2

FORMATS = {
    # libsndfile's LAME is ~20% faster than FFmpeg's libmp3lame wrapper at 192 kbps CBR.
    # Segments of 10 s or more: each later segment also encodes ~1.2 s of lead-in, <12% extra work.
    "mp3": AudioFormat("mp3", "mp3", "MP3", "MPEG_LAYER_III", "audio/mpeg", segment_min_s=10.0),
    "flac": AudioFormat("flac", "flac", "FLAC", "PCM_16", "audio/flac", bytes_per_s=_PCM16_BYTES_PER_S // 2),
    "wav": AudioFormat("wav", "wav", "WAV", "PCM_16", "audio/wav", bytes_per_s=_PCM16_BYTES_PER_S),
    "wav32": AudioFormat("wav32", "wav", "WAV", "FLOAT", "audio/wav", bytes_per_s=2 * _PCM16_BYTES_PER_S),
    "ogg": AudioFormat("ogg", "ogg", "OGG", "VORBIS", "audio/ogg", bytes_per_s=13_000),
    # Same ~120 kbps as libsndfile's default, ~3x faster through FFmpeg's libopus (bench/encode.py).
    # Opus and AAC segments, like MP3's, encode ~1 s of lead-in each: 10 s or more keeps that <11%.
    "opus": AudioFormat("opus", "opus", "ogg", "libopus", "audio/ogg", "av", 120, segment_min_s=10.0,
                        bytes_per_s=13_000),
    # 192 kbps AAC is 24 kB/s; predicted low like the other variable-rate formats.
    "aac": AudioFormat("aac", "m4a", "ipod", "aac", "audio/mp4", "av", 192, segment_min_s=10.0, bytes_per_s=20_000),
}

CONTENT_TYPES = {fmt.extension: fmt.content_type for fmt in FORMATS.values()}
# File suffixes that are not a format's name (`song.m4a` asks for AAC).
FORMAT_OF_SUFFIX = {fmt.extension: name for name, fmt in FORMATS.items() if fmt.extension not in FORMATS}
