#!/usr/bin/env python3
"""End-to-end job time on the tiny tree: one serverless job (`doors.serverless.run_job`: generation, MP3
encoding, writing the file) with MP3 encoded in one pass against segments on all usable cores,
alternating run by run so machine load falls on both alike.

    python bench/job.py --duration 120 --runs 3

Prints, per mode, the median wall time of the job and of its encode stage.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from synth import tiny_cpu_env

    from acestep_worker.audio import encode as audio_encode
    from acestep_worker.doors.serverless import run_job
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.settings import Settings

    env = tiny_cpu_env(Path(tempfile.mkdtemp(prefix="bench-job-")))
    engine = Engine(Settings.from_env(env))
    job = {"caption": "benchmark", "duration": args.duration, "seed": 1, "audio_format": "mp3"}
    segmented = audio_encode.FORMATS["mp3"]
    modes = {"one pass": dataclasses.replace(segmented, segment_min_s=None), "segmented": segmented}
    run_job(engine, "warm-up", job, env=env)
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    try:
        for run in range(args.runs):
            for mode, spec in modes.items():
                audio_encode.FORMATS["mp3"] = spec
                start = time.perf_counter()
                out = run_job(engine, f"{mode.replace(' ', '-')}-{run}", job, env=env)
                times[mode].append((time.perf_counter() - start, out.get("timings", {}).get("encode", float("nan"))))
    finally:
        audio_encode.FORMATS["mp3"] = segmented
    for mode, rows in times.items():
        print(json.dumps({"mode": mode, "duration_s": args.duration, "cores": audio_encode.usable_cores(),
                          "job_s": round(statistics.median(r[0] for r in rows), 2),
                          "encode_s": round(statistics.median(r[1] for r in rows), 2),
                          "load_avg_1min": round(os.getloadavg()[0], 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
