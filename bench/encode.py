#!/usr/bin/env python3
"""Encoding speed: seconds per audio minute for every format, libsndfile against FFmpeg (PyAV) at
equal settings, and a batch encoded one song after another against the thread pool.

    python bench/encode.py --seconds 60 --batch 4

The input is 48 kHz stereo float noise shaped like music (a tone plus a random walk), clipped to
[-1, 1]; encoders spend the same time on it as on songs. Each figure is the best of `--runs` after
one warm-up (best, not median: the machine is shared and load only ever adds time).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

RATE = 48_000


def test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    walk = np.cumsum(rng.standard_normal((t.size, 2)), axis=0) * 0.002
    walk -= walk.mean(axis=0)
    audio = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] + 0.1 * rng.standard_normal((t.size, 2)) + walk
    return np.clip(audio, -1, 1).astype(np.float32)


def sndfile(fmt: str, subtype: str, **options):
    import soundfile as sf

    def run(audio: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        with sf.SoundFile(buffer, "w", RATE, 2, format=fmt, subtype=subtype, **options) as handle:
            handle.write(audio)
        return buffer.getvalue()
    return run


def pyav(codec: str, container: str, kbps: int | None):
    from acestep_worker import av_codecs

    return lambda audio: av_codecs.encode(audio, RATE, codec=codec, container=container, bitrate_kbps=kbps)


def candidates() -> list[tuple[str, str, object]]:
    """(format, library, encoder) at equal settings: CBR 192 kbps MP3, ~120 kbps Opus, AAC 192 kbps."""
    return [
        ("mp3 192k CBR", "libsndfile (LAME)", sndfile("MP3", "MPEG_LAYER_III", compression_level=(320 - 192) / 288 - 1e-3,
                                                     bitrate_mode="CONSTANT")),
        ("mp3 192k CBR", "PyAV (LAME)", pyav("libmp3lame", "mp3", 192)),
        ("opus ~120k VBR", "libsndfile (libopus)", sndfile("OGG", "OPUS")),
        ("opus ~120k VBR", "PyAV (libopus)", pyav("libopus", "ogg", 120)),
        ("ogg vorbis q~0.4", "libsndfile", sndfile("OGG", "VORBIS")),
        ("flac 16-bit", "libsndfile", sndfile("FLAC", "PCM_16")),
        ("flac 16-bit", "PyAV", pyav("flac", "flac", None)),
        ("aac 192k (.m4a)", "PyAV (FFmpeg aac)", pyav("aac", "ipod", 192)),
        ("wav 16-bit", "libsndfile", sndfile("WAV", "PCM_16")),
    ]


def best_of(fn, runs: int) -> tuple[float, object]:
    result = fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length per song")
    parser.add_argument("--batch", type=int, default=4, help="songs in the batch comparison (0: skip)")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    audio = test_signal(args.seconds)
    minutes = args.seconds / 60
    print(f"# {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {args.seconds:.0f} s of 48 kHz stereo")
    for fmt, library, encoder in candidates():
        seconds, data = best_of(lambda: encoder(audio), args.runs)
        print(json.dumps({"format": fmt, "library": library, "s_per_audio_min": round(seconds / minutes, 3),
                          "realtime_x": round(args.seconds / seconds, 1),
                          "kbps": round(len(data) * 8 / args.seconds / 1000, 1)}), flush=True)
    if args.batch:
        from acestep_worker.audio_io import encode, encode_all

        songs = [(test_signal(args.seconds, seed), RATE) for seed in range(args.batch)]
        for fmt in ("mp3", "opus", "aac"):
            one_by_one, _ = best_of(lambda: [encode(a, r, fmt) for a, r in songs], 1)
            pooled, _ = best_of(lambda: encode_all(songs, fmt), 1)
            print(json.dumps({"batch": args.batch, "format": fmt, "one_by_one_s": round(one_by_one, 2),
                              "thread_pool_s": round(pooled, 2), "speedup": round(one_by_one / pooled, 2),
                              "load_avg_1min": round(os.getloadavg()[0], 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
