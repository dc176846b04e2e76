"""Encoding and decoding through PyAV (FFmpeg's codecs): AAC in .m4a, and Opus, where FFmpeg's
libopus wrapper encodes 3.5x faster than libsndfile's at the same bitrate (bench/encode.py).

Encoding is two steps, so that a song encoded in segments (av_segments.py) gets exactly the
encoder settings and the container of the one pass: `encode_packets` runs the codec alone (PyAV
converts our float frames to its sample format and frame size), `mux` writes packets into a file.
The MP4 muxer records the AAC encoder's priming samples in an edit list, so decoders that honour
it (FFmpeg, browsers, Apple) give back exactly the samples we encoded; Ogg carries Opus's pre-skip
in its header and the end trimming in the last granule position.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from ..schema.units import SAMPLE_RATE

# Constrained VBR keeps Opus files at the size libsndfile's default gives (~120 kbps) on every kind
# of input; FFmpeg's unconstrained default overshoots on dense, noisy mixes.
_CODEC_OPTIONS = {"libopus": {"vbr": "constrained"}}
# FFmpeg encodes in blocks of this many samples per channel per call; larger blocks only cost memory.
_BLOCK_SAMPLES = SAMPLE_RATE * 10
_LAYOUTS = {1: "mono", 2: "stereo"}


@dataclass(frozen=True)
class AvOutput:
    """The file PyAV writes: which FFmpeg encoder and muxer, at what bitrate, with which tags. One
    value for the one pass and for every segment of a segmented encode, so they cannot differ."""

    codec: str  # FFmpeg encoder name: aac, libopus
    container: str  # FFmpeg muxer name: ipod (.m4a), ogg
    bitrate_kbps: int | None = None  # None: the encoder's default
    tags: dict[str, str] | None = None


def encode(audio: np.ndarray, sample_rate: int, output: AvOutput) -> bytes:
    """Float audio [samples, channels] in [-1, 1] -> the bytes of the file `output` describes."""
    packets = encode_packets(audio, sample_rate, codec=output.codec, bitrate_kbps=output.bitrate_kbps)
    return mux(packets, sample_rate, audio.shape[1], output)


def encode_packets(audio: np.ndarray, sample_rate: int, *, codec: str, bitrate_kbps: int | None) -> list[av.Packet]:
    """Float audio [samples, channels] -> the codec's packets, timestamps in samples (the first is
    negative by the encoder's priming), in a codec context of its own (PyAV releases the GIL while
    FFmpeg encodes, so several run at once on threads)."""
    layout = _LAYOUTS[audio.shape[1]]
    context = av.CodecContext.create(codec, "w")
    _configure(context, sample_rate, layout, bitrate_kbps)
    context.format = context.codec.audio_formats[0]  # what PyAV's add_stream picks: libopus takes s16
    context.time_base = Fraction(1, sample_rate)
    context.open()
    planar = np.ascontiguousarray(np.clip(audio, -1.0, 1.0).astype(np.float32).T)  # [channels, samples]
    packets = []
    for start in range(0, planar.shape[1], _BLOCK_SAMPLES):
        frame = av.AudioFrame.from_ndarray(planar[:, start:start + _BLOCK_SAMPLES], format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        packets += context.encode(frame)
    packets += context.encode(None)
    return packets


def mux(packets: list[av.Packet], sample_rate: int, channels: int, output: AvOutput) -> bytes:
    """Packets of `encode_packets` at `output`'s codec and bitrate -> its container file with its
    tags. The muxer rebuilds every table the container keeps (MP4 sample tables and edit list, Ogg
    pages, granule positions and CRCs) from the packets' timestamps and durations."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=output.container) as file:
        for key, value in (output.tags or {}).items():
            text = "".join(ch for ch in value if ch.isprintable() or ch in "\t ").strip()
            if text:
                file.metadata[key] = text
        # The stream's own encoder is opened only for the codec header (AAC's AudioSpecificConfig,
        # OpusHead with its pre-skip), which it derives from the same settings as the packets'.
        stream = file.add_stream(output.codec, rate=sample_rate, layout=_LAYOUTS[channels])
        _configure(stream.codec_context, sample_rate, _LAYOUTS[channels], output.bitrate_kbps)
        for packet in packets:
            packet.stream = stream
            file.mux(packet)
    return buffer.getvalue()


def _configure(context: av.CodecContext, sample_rate: int, layout: str, bitrate_kbps: int | None) -> None:
    context.sample_rate = sample_rate
    context.layout = layout
    if bitrate_kbps:
        context.bit_rate = bitrate_kbps * 1000
    context.options = dict(_CODEC_OPTIONS.get(context.codec.name, {}))


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Any file FFmpeg reads -> float32 [samples, channels] and its sample rate."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout.name, rate=rate)
        channels = stream.codec_context.channels
        chunks = [resampled.to_ndarray().reshape(-1, channels)
                  for frame in container.decode(stream) for resampled in resampler.resample(frame)]
        chunks += [r.to_ndarray().reshape(-1, channels) for r in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32), rate
