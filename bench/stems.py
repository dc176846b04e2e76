#!/usr/bin/env python3
"""Several stems from one job against one job per stem, and the instrumental three ways.

    python bench/stems.py --seconds 10 --steps 8 --runs 3       # the tiny tree, on the CPU

`jobs`: one serverless job (`doors.serverless.run_job`: the source decoded, VAE-encoded, the DiT, decode,
MP3, the files written) extracting 4 stems, against 4 jobs of 1 stem each, alternating run by run so
machine load falls on both alike; wall time and CPU time (all threads) of the whole, median of --runs.
`instrumental`: vocals + instrumental against the source, for the instrumental as the source minus the
vocals in the waveform (what the engine does), in the latents (decode(z_source - z_vocals), the DiT's own
vocals latents), and as its own extraction ("Extract the INSTRUMENTAL track", an instruction the
checkpoints were not trained on): the largest sum error and what each costs beyond the vocals.
`bench/gpu.py` runs the same comparison (`stems` phase) at real size.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

STEMS = ("vocals", "drums", "bass", "guitar")
BASE = "acestep-v15-base"


def source_song(seconds: float):
    """A stand-in mix, float32 [samples, 2] at 48 kHz: two tones and a little seeded noise."""
    import numpy as np

    t = np.arange(int(seconds * 48_000)) / 48_000
    rng = np.random.default_rng(0)
    mono = 0.25 * np.sin(2 * np.pi * 110 * t) + 0.15 * np.sin(2 * np.pi * 660 * t) + 0.03 * rng.standard_normal(t.size)
    return np.stack([mono, np.roll(mono, 64)], axis=1).astype(np.float32)


def wav_base64(song) -> str:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, song, 48_000, format="WAV", subtype="FLOAT")
    return base64.b64encode(buffer.getvalue()).decode()


def _clock(fn) -> tuple[float, float]:
    """(wall s, CPU s of every thread of this process) of fn(), the GPU synchronised."""
    import torch

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def jobs(engine, env: dict, seconds: float, steps: int, runs: int, warm_up: bool = True) -> dict:
    """One job of 4 stems against 4 jobs of 1 stem, whole serverless jobs, alternating (after a warm-up of
    each unless `warm_up` is False: bench/gpu.py's smoke run only checks that the figures come)."""
    from acestep_worker.doors.serverless import run_job

    job = {"task_type": "extract", "model": BASE, "inference_steps": steps, "seed": 1,
           "src_audio": wav_base64(source_song(seconds)), "audio_format": "mp3"}
    modes = {"one job, 4 stems": lambda tag: run_job(engine, f"{tag}-all", {**job, "track_name": list(STEMS)},
                                                     env=env),
             "4 jobs, 1 stem each": lambda tag: [run_job(engine, f"{tag}-{s}", {**job, "track_name": s}, env=env)
                                                 for s in STEMS]}
    for mode in modes.values() if warm_up else ():  # allocator, kernel selection, lazy init
        mode("warm")
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
    for run in range(runs):
        for name, mode in modes.items():
            times[name].append(_clock(lambda mode=mode, tag=f"run{run}": mode(tag)))
    out = {}
    for name, rows in times.items():
        out[name] = {"wall_s": round(statistics.median(r[0] for r in rows), 3),
                     "cpu_s": round(statistics.median(r[1] for r in rows), 3)}
    one, four = out["one job, 4 stems"], out["4 jobs, 1 stem each"]
    out["saved"] = {"wall": f"{1 - one['wall_s'] / four['wall_s']:.0%}",
                    "cpu": f"{1 - one['cpu_s'] / four['cpu_s']:.0%}"}
    return out


def instrumental(engine, seconds: float, steps: int) -> dict:
    """The instrumental three ways: sum error against the source, and the cost beyond the vocals."""
    import numpy as np
    import torch

    from acestep_worker.models.vae import decode
    from acestep_worker.pipeline import edit_conditions, synthesizer
    from acestep_worker.schema.request import parse

    source = source_song(seconds)
    kept: dict = {}
    prepare, decoder = edit_conditions.prepare_source, synthesizer.decode

    def keep_source(*args, **kwargs):
        kept["source"] = prepare(*args, **kwargs)
        return kept["source"]

    def keep_latents(vae, latents, *args, **kwargs):
        kept["latents"] = latents.detach().clone()
        return decoder(vae, latents, *args, **kwargs)

    edit_conditions.prepare_source, synthesizer.decode = keep_source, keep_latents
    base = {"task_type": "extract", "model": BASE, "inference_steps": steps, "seed": 1}
    try:
        wall = time.perf_counter()
        result = engine.generate(parse({**base, "track_name": "vocals+instrumental"}), audio={"src_audio": source})
        with_waveform = time.perf_counter() - wall
        vocals, by_waveform = result.songs[0].audio, result.songs[1].audio
        own, own_s = _clock(lambda: kept.update(own=engine.generate(parse(
            {**base, "track_name": "vocals", "instruction": "Extract the INSTRUMENTAL track from the audio:"}),
            audio={"src_audio": source})))
    finally:
        edit_conditions.prepare_source, synthesizer.decode = prepare, decoder
    by_own = kept["own"].songs[0].audio
    z_source, z_vocals = kept["source"].latents, kept["latents"][0]
    vae = engine.models.vae
    difference = (z_source.to(z_vocals) - z_vocals)[None]
    latent_s, _ = _clock(lambda: kept.update(by_latents=decode(vae, difference)))
    by_latents = kept["by_latents"][0, :, : source.shape[0]].float().cpu().numpy().T

    def sum_error(part) -> float:
        return float(np.abs(vocals + part - source).max())

    clipped = float(np.mean(np.abs(source - vocals) > 1.0))
    return {"source_s": seconds, "vocals_job_s": round(with_waveform, 3), "samples_clipped": f"{clipped:.2%}",
            "waveform": {"max_sum_error": sum_error(by_waveform), "extra_s": 0.0},
            "latents": {"max_sum_error": round(sum_error(by_latents), 4), "extra_s": round(latent_s, 3),
                        "extra_work": "one VAE decode"},
            "own_extraction": {"max_sum_error": round(sum_error(by_own), 4), "extra_s": round(own, 3),
                               "extra_cpu_s": round(own_s, 3),
                               "extra_work": "a DiT row (here timed as its own job) and its decode"},
            "torch_threads": torch.get_num_threads()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="source length")
    parser.add_argument("--steps", type=int, default=8, help="base-model diffusion steps")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from synth import tiny_cpu_env

    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    env = tiny_cpu_env(Path(tempfile.mkdtemp(prefix="bench-stems-")))
    engine = Engine(Settings.from_env(env))
    figures = {"jobs": jobs(engine, env, args.seconds, args.steps, args.runs),
               "instrumental": instrumental(engine, args.seconds, args.steps),
               "load_avg_1min": round(os.getloadavg()[0], 1)}
    print(json.dumps(figures, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
