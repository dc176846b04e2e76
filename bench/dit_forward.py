#!/usr/bin/env python3
"""One DiT forward, timed: per-step cost with and without the condition-projection cache, and the
time and peak memory of one forward with the dense or the windowed sliding-window attention.

    python bench/dit_forward.py steps --size real --duration 10 30 --steps 3
    python bench/dit_forward.py attention --size tiny --duration 600

The transformer is built in memory with random weights (no checkpoint on disk is needed: random
weights cost exactly what real ones do). `real` is the 24-layer upstream config, `tiny` the test
tree's. Each measurement runs in its own process so its peak RSS is its own; the plain and cached
runs alternate so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
CONDITION_TOKENS = 385  # a 10 s request with a short caption and a verse of lyrics, as measured


def build_transformer(size: str, dtype):
    import torch

    from acestep_worker.dev import tiny
    from acestep_worker.models.dit.model import module_configs
    from acestep_worker.models.weights import empty_modules

    config = tiny.real_dit_config("turbo") if size == "real" else tiny.tiny_dit_config("turbo")
    torch.manual_seed(0)
    with empty_modules("cpu", dtype):
        from diffusers import AceStepTransformer1DModel
        transformer = AceStepTransformer1DModel(**module_configs(config)["transformer"])
    for name, param in transformer.named_parameters():
        param.data.fill_(1.0) if "norm" in name else param.data.normal_(0.0, 0.02)
    return transformer.eval().requires_grad_(False)


def child(args: argparse.Namespace) -> dict:
    import torch

    from acestep_worker.models.dit.condition_cache import reuse_condition_projections

    torch.set_num_threads(args.threads)
    transformer = build_transformer(args.size, torch.float32)
    frames = int(args.duration * 25)
    g = torch.Generator().manual_seed(0)
    hidden = transformer.config.encoder_hidden_size or transformer.config.hidden_size
    x = torch.randn(1, frames, 64, generator=g)
    context = torch.randn(1, frames, 128, generator=g)
    conditions = torch.randn(1, CONDITION_TOKENS, hidden, generator=g)
    t = torch.full((1,), 0.5)

    def forward():
        return transformer(x, t, t, conditions, context, return_dict=False)[0]

    with torch.no_grad():
        if args.what == "steps":
            forward()  # warm-up
            times, recomputed = {}, 0
            with reuse_condition_projections(transformer) as memos:
                forward()  # the generation's first step computes the projections
                for mode in ("plain", "cached") * args.steps:
                    if mode == "plain":
                        for memo in memos:  # forget them: this call recomputes, as without the cache
                            memo.input = None
                    before = sum(m.computed for m in memos)
                    start = time.perf_counter()
                    forward()
                    times.setdefault(mode, []).append(time.perf_counter() - start)
                    if mode == "cached":
                        recomputed += sum(m.computed for m in memos) - before
            return {"what": "steps", "size": args.size, "duration_s": args.duration, "frames": frames,
                    "threads": args.threads, "step_plain_s": round(statistics.median(times["plain"]), 3),
                    "step_cached_s": round(statistics.median(times["cached"]), 3),
                    "projections_per_step_plain": len(memos),
                    "projections_recomputed_cached": recomputed, "runs": args.steps,
                    "load_avg_1min": round(os.getloadavg()[0], 2)}
        runs = []
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(args.steps):
            start = time.perf_counter()
            from acestep_worker.models.dit.attention import AttentionChoice, dit_attention

            path = "banded" if args.attention == "windowed" else args.attention
            with dit_attention(AttentionChoice(path)):
                forward()
            runs.append(time.perf_counter() - start)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"what": "attention", "size": args.size, "duration_s": args.duration, "frames": frames,
                "attention": args.attention, "threads": args.threads,
                "forward_s": round(statistics.median(runs), 3), "runs": args.steps,
                "peak_rss_gib": round(peak / 2**20, 2),
                "peak_rss_above_weights_gib": round((peak - base_rss) / 2**20, 2),
                "load_avg_1min": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["steps", "attention"])
    parser.add_argument("--size", default="tiny", choices=["tiny", "real"])
    parser.add_argument("--duration", type=float, nargs="+", default=[10.0])
    parser.add_argument("--steps", type=int, default=3, help="timed runs per mode (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attention", nargs="+", default=["dense", "windowed"],
                        help="dense, windowed (= banded) or flex: the sliding-window path")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.duration, args.attention = args.duration[0], args.attention[0]
        print(json.dumps(child(args)))
        return 0
    modes = args.attention if args.what == "attention" else ["dense"]
    for duration in args.duration:
        for attention in modes:
            argv = [sys.executable, __file__, args.what, "--child", "--size", args.size, "--duration",
                    str(duration), "--steps", str(args.steps), "--threads", str(args.threads),
                    "--attention", attention]
            out = subprocess.run(argv, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return out.returncode
            print(out.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
