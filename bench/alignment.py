#!/usr/bin/env python3
"""What LRC timestamps and lyric-alignment scores cost (auto_lrc, auto_score; issue #19), on the tiny tree.

    python bench/alignment.py --durations 30,120 --runs 3

The alignment is one extra DiT call on the finished latents (two rows per song with scores, one with
the LRC alone), stopped after the deepest alignment layer, plus the DTW on the CPU. Prints, per
duration, the median of the `alignment` stage against the diffusion loop of the same job. On the
tiny DiT (2 layers, its alignment heads in both) the call runs the whole DiT, so the ratio here is
an upper bound; a real 2B DiT stops after layer 6 of 24. bench/gpu.py measures it at real size.

With `--quality`, the PMI quality score too (auto_score with the planner and thinking on): the tiny
planner loaded, the `quality_score` stage of a thinking job against the `planner_codes` stage that
wrote the codes it reads. Its passes are teacher-forced prefills over the codes prompt, so the ratio
to the codes' decode steps is what carries to a real planner.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

LYRICS = ("[Verse]\nNeon rain on the boulevard\nEvery light a falling star\nWe keep moving through the night\n"
          "Chasing shadows, chasing light\n\n[Chorus]\nHold on, hold on to me\nWe are what we want to be\n"
          "Hold on, hold on tonight\nEverything will be alright\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--durations", default="30,120")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quality", action="store_true", help="also the PMI quality score (loads the tiny planner)")
    args = parser.parse_args()

    from synth import tiny_cpu_env, tree_for

    from acestep_worker.dev import tiny
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.schema.request import parse
    from acestep_worker.settings import Settings

    env = tiny_cpu_env()
    if args.quality:
        env["ACESTEP_LM_MODEL_PATH"] = str(tree_for("tiny") / tiny.LM_FOLDER)
    engine = Engine(Settings.from_env(env))
    if args.quality:
        quality(engine, parse, [float(d) for d in args.durations.split(",")], args.runs)
    for duration in (float(d) for d in args.durations.split(",")):
        cases = {"lrc": {"auto_lrc": True}, "lrc+scores": {"auto_lrc": True, "auto_score": True}}
        rows: dict[str, list[dict]] = {name: [] for name in cases}
        for run in range(args.runs + 1):  # the first run warms up
            for name, fields in cases.items():
                request = parse({"caption": "benchmark", "lyrics": LYRICS, "duration": duration, "seed": 1, **fields})
                timings = engine.generate(request).timings
                if run:
                    rows[name].append(timings)
        for name, found in rows.items():
            alignment = statistics.median(t["alignment"] for t in found)
            diffusion = statistics.median(t["diffusion"] for t in found)
            print(json.dumps({"case": name, "duration_s": duration, "alignment_s": round(alignment, 3),
                              "diffusion_8_steps_s": round(diffusion, 3),
                              "alignment_per_diffusion": round(alignment / diffusion, 3),
                              "load_avg_1min": round(os.getloadavg()[0], 1)}), flush=True)
    return 0


def quality(engine, parse, durations: list[float], runs: int) -> None:
    """The `quality_score` stage (per take: up to ten teacher-forced passes of the planner over the codes
    prompt) against `planner_codes` (the decode that wrote those codes), median of `runs` after a warm-up."""
    for duration in durations:
        request = parse({"caption": "benchmark", "lyrics": LYRICS, "duration": duration, "seed": 1,
                         "thinking": True, "auto_score": True})
        found = [engine.generate(request).timings for _ in range(runs + 1)][1:]
        score = statistics.median(t["quality_score"] for t in found)
        codes = statistics.median(t["planner_codes"] for t in found)
        print(json.dumps({"case": "quality_score", "duration_s": duration, "codes": int(duration * 5),
                          "quality_score_s": round(score, 3), "planner_codes_s": round(codes, 3),
                          "score_per_codes": round(score / codes, 3),
                          "load_avg_1min": round(os.getloadavg()[0], 1)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
