#!/usr/bin/env python3
"""Encoding speed: seconds per audio minute for every format, libsndfile against FFmpeg (PyAV) at
equal settings, a batch encoded one song after another against the thread pool, and one long MP3,
AAC or Opus song encoded in one pass against frame-aligned segments (timing, and the joined file's
decoded quality against the single pass's).

    python bench/encode.py --seconds 60 --batch 4 --segments 1,2,4,8,16 --segment-seconds 240
    python bench/encode.py --runs 0 --batch 0 --segment-formats aac,opus --segments 1,2,4,8,16 --segment-seconds 240

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
            for start in range(0, len(audio), 1 << 16):  # as audio/encode.py does: one big Vorbis write segfaults
                handle.write(audio[start:start + (1 << 16)])
        return buffer.getvalue()
    return run


def pyav(codec: str, container: str, kbps: int | None):
    from acestep_worker.audio import av_codecs

    return lambda audio: av_codecs.encode(audio, RATE, av_codecs.AvOutput(codec, container, kbps))


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
    parser.add_argument("--runs", type=int, default=2, help="timed runs per format (0 skips the format table)")
    parser.add_argument("--segments", default="1,2", help="segment counts for one song ('' skips)")
    parser.add_argument("--segment-seconds", type=float, default=None, help="its length (default --seconds)")
    parser.add_argument("--segment-formats", default="mp3", help="formats encoded in segments: mp3,aac,opus")
    args = parser.parse_args()
    audio = test_signal(args.seconds)
    minutes = args.seconds / 60
    print(f"# {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {args.seconds:.0f} s of 48 kHz stereo")
    for fmt, library, encoder in candidates() if args.runs else []:
        seconds, data = best_of(lambda: encoder(audio), args.runs)
        print(json.dumps({"format": fmt, "library": library, "s_per_audio_min": round(seconds / minutes, 3),
                          "realtime_x": round(args.seconds / seconds, 1),
                          "kbps": round(len(data) * 8 / args.seconds / 1000, 1)}), flush=True)
    if args.batch:
        from acestep_worker.audio.encode import encode, encode_all

        songs = [(test_signal(args.seconds, seed), RATE) for seed in range(args.batch)]
        for fmt in ("mp3", "opus", "aac"):
            one_by_one, _ = best_of(lambda: [encode(a, r, fmt) for a, r in songs], 1)
            pooled, _ = best_of(lambda: encode_all(songs, fmt), 1)
            print(json.dumps({"batch": args.batch, "format": fmt, "one_by_one_s": round(one_by_one, 2),
                              "thread_pool_s": round(pooled, 2), "speedup": round(one_by_one / pooled, 2),
                              "load_avg_1min": round(os.getloadavg()[0], 1)}), flush=True)
    if args.segments:
        for fmt in args.segment_formats.split(","):
            segmented(fmt, args.segment_seconds or args.seconds, [int(n) for n in args.segments.split(",")])
    return 0


def music_signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Decaying harmonic notes four times a second plus noise bursts: transients make LAME switch
    window shapes and drain its bit reservoir, which is what a segment join has to get right."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    out = np.zeros((n, 2))
    t = np.arange(RATE) / RATE
    for k in range(int(seconds * 4)):
        start = k * RATE // 4
        length = min(n - start, RATE)
        f = 110 * 2 ** (rng.integers(0, 36) / 12)
        for h in range(1, 6):
            for ch, phase in ((0, 0.0), (1, h)):
                out[start:start + length, ch] += 0.1 / h * np.sin(2 * np.pi * f * h * t[:length] + phase) * np.exp(-3 * t[:length])
        burst = min(n - start, 4000)
        out[start:start + burst] += rng.standard_normal((burst, 2)) * 0.3 * np.exp(-np.arange(burst) / 800)[:, None]
    return np.clip(out, -1, 1).astype(np.float32)


def segmented(fmt: str, seconds: float, segment_counts: list[int]) -> None:
    """One song in one pass and in 2..N segments. On a shared machine wall time says little, so each
    row also gives the CPU time (all threads) and the critical path: the slowest segment's thread
    CPU time plus the calling thread's (split, join, container), which is what the wall time is on
    an idle host with at least that many cores. Quality: SNR against the input for the single pass
    and the joined file, their difference relative to the codec's own noise (with, for scale, how
    far a one pass of the input plus a -100 dB dither lands from the one pass), and, in the frames
    where a join may fall, the largest difference and codec error; and per codec frame the bound
    tests/unit/test_segmented_aac_opus.py sets near joins: how many frames of the whole file break it and by how
    much the worst does, in the file and near the joins (the dithered one pass breaks it too, now and
    then: the encoder's own variability)."""
    from concurrent.futures import ThreadPoolExecutor

    from acestep_worker.audio import av_codecs, av_segments, mp3_segments, mp3_stream, segmenting
    from acestep_worker.audio.encode import decode, encode
    from acestep_worker.schema.formats import FORMATS

    spec = FORMATS[fmt]
    if spec.encoder == "av":
        joining = av_segments.CODECS[spec.subtype]
        frame, lead_in, warm = joining.frame_samples, joining.lead_in_frames, joining.warm_frames
    else:
        frame, lead_in, warm = mp3_stream.FRAME_SAMPLES, mp3_segments.LEAD_IN_FRAMES, mp3_segments.WARM_FRAMES

    def join_frames(samples: int, segments: int) -> list[int]:
        return [first for first, _ in segmenting.plan(samples, segments, frame)[1:]]

    def encode_in_segments(audio: np.ndarray, segments: int, pool, segment_cpu: list) -> bytes | None:
        def timed(function):
            def run(*args, **kwargs):
                begin = time.thread_time()
                result = function(*args, **kwargs)
                segment_cpu.append(time.thread_time() - begin)
                return result
            return run

        if spec.encoder == "av":
            output = av_codecs.AvOutput(spec.subtype, spec.container, spec.bitrate_kbps)
            return av_segments.encode_segmented(audio, RATE, segments, output, pool=pool,
                                                encode_packets=timed(av_codecs.encode_packets))
        return mp3_segments.encode_segmented(audio, segments, timed(lambda part: encode(part, RATE, "mp3")), pool)

    for name, audio in (("tone+noise", test_signal(seconds)), ("notes+bursts", music_signal(seconds))):
        start, cpu = time.perf_counter(), time.process_time()
        single_data = encode(audio, RATE, fmt)
        one_pass = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}
        single = decode(single_data)[0]
        samples = len(audio)
        noise = single[:samples] - audio
        dither = np.random.default_rng(1).standard_normal(audio.shape).astype(np.float32) * 1e-5
        dithered = decode(encode(audio + dither, RATE, fmt))[0]
        for segments in segment_counts:
            if segments == 1:
                row = {"wall_s": one_pass["wall"], "cpu_s": one_pass["cpu"], "critical_path_s": one_pass["cpu"]}
                joined = dithered
            else:
                segment_cpu = []
                start, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
                with ThreadPoolExecutor(segments) as pool:
                    data = encode_in_segments(audio, segments, pool, segment_cpu)
                row = {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
                       "critical_path_s": max(segment_cpu) + time.thread_time() - own}
                joined = decode(data)[0] if data is not None else None
            # The one pass's row (a dithered one pass) is measured at the most segments' joins, for scale.
            near = [range(first - lead_in + warm - 2, first + 4)
                    for first in join_frames(samples, segments if segments > 1 else max(segment_counts))]
            quality = {}
            if joined is not None:
                exact = joined.shape == single.shape
                joined = joined[:samples]
                difference = joined - single[:samples]
                over = frames_over_join_bound_db(audio, single[:samples], joined, frame)
                around = np.zeros(samples, dtype=bool)
                for rows in near:
                    around[rows[0] * frame:(rows[-1] + 1) * frame] = True
                near_frames = [n for rows in near for n in rows if n < len(over)]
                quality = {
                    "exact_length": exact,
                    "snr_db_single": round(_snr(audio, single[:samples]), 2),
                    "snr_db_joined": round(_snr(audio, joined), 2),
                    "diff_rms_over_codec_noise_rms": round(float(np.sqrt((difference ** 2).mean()
                                                                         / (noise ** 2).mean())), 4),
                    "max_diff_near_joins": round(float(np.abs(difference[around]).max()), 4) if around.any() else 0.0,
                    "max_codec_error_near_joins": round(float(np.abs(noise[around]).max()), 4) if around.any() else 0.0,
                    "frames_over_test_bound": f"{int((over > 0).sum())} of {len(over)}",
                    "worst_frame_over_test_bound_db": round(float(over.max()), 1),
                    "worst_near_joins_over_test_bound_db": round(float(over[near_frames].max()), 1) if near_frames else None}
            print(json.dumps({
                "format": fmt, "signal": name, "seconds": seconds, "segments": segments,
                "joined": joined is not None if segments > 1 else "one pass (quality: a dithered one pass)",
                **{f"{k}_per_audio_min": round(v / (seconds / 60), 3) for k, v in row.items()},
                "expected_speedup": round(one_pass["cpu"] / row["critical_path_s"], 2), **quality,
                "load_avg_1min": round(os.getloadavg()[0], 1)}), flush=True)


def frames_over_join_bound_db(audio: np.ndarray, single: np.ndarray, other: np.ndarray, frame: int) -> np.ndarray:
    """Per frame, how far `other`'s error is over the bound tests/unit/test_segmented_aac_opus.py asserts near
    joins with this function: at most 10 dB over the one pass's error, or 20 dB under the music (dB;
    > 0 breaks it)."""
    frames = len(audio) // frame

    def energy(x: np.ndarray) -> np.ndarray:
        return (x[:frames * frame].reshape(frames, -1) ** 2).sum(axis=1)

    bound = np.maximum(10 * energy(single - audio), 0.01 * energy(audio))
    return 10 * np.log10(np.maximum(energy(other - audio), 1e-20) / np.maximum(bound, 1e-20))


def _snr(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10((reference ** 2).sum() / ((other - reference) ** 2).sum()))


if __name__ == "__main__":
    sys.exit(main())
