"""Encoding and decoding through PyAV (FFmpeg's codecs): AAC in .m4a, and Opus, where FFmpeg's
libopus wrapper encodes 3.5x faster than libsndfile's at the same bitrate (bench/encode.py).

PyAV's encoder converts our float frames to each codec's sample format and frame size itself.
The MP4 muxer records the AAC encoder's priming samples in an edit list, so decoders that honour
it (FFmpeg, browsers, Apple) give back exactly the samples we encoded.
"""

from __future__ import annotations

import io

import av
import numpy as np

# Constrained VBR keeps Opus files at the size libsndfile's default gives (~120 kbps) on every kind
# of input; FFmpeg's unconstrained default overshoots on dense, noisy mixes.
_CODEC_OPTIONS = {"libopus": {"vbr": "constrained"}}
# FFmpeg encodes in blocks of this many samples per channel per call; larger blocks only cost memory.
_BLOCK_SAMPLES = 48_000 * 10


def encode(audio: np.ndarray, sample_rate: int, *, codec: str, container: str, bitrate_kbps: int | None,
           tags: dict[str, str] | None = None) -> bytes:
    """Float audio [samples, channels] in [-1, 1] -> the bytes of a `container` file of `codec`."""
    layout = {1: "mono", 2: "stereo"}[audio.shape[1]]
    planar = np.ascontiguousarray(np.clip(audio, -1.0, 1.0).astype(np.float32).T)  # [channels, samples]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        for key, value in (tags or {}).items():
            text = "".join(ch for ch in value if ch.isprintable() or ch in "\t ").strip()
            if text:
                output.metadata[key] = text
        stream = output.add_stream(codec, rate=sample_rate, layout=layout)
        if bitrate_kbps:
            stream.bit_rate = bitrate_kbps * 1000
        stream.codec_context.options = dict(_CODEC_OPTIONS.get(codec, {}))
        for start in range(0, planar.shape[1], _BLOCK_SAMPLES):
            frame = av.AudioFrame.from_ndarray(planar[:, start:start + _BLOCK_SAMPLES], format="fltp",
                                               layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()


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
