#!/usr/bin/env python3
"""Planner benchmark: audio-code tokens per second of our decode loop against `model.generate`.

    python bench/planner.py --sizes tiny real --tokens 64
    python bench/planner.py --sizes real --device cuda --tokens 600     # on a GPU, bf16

`tiny` is the project's tiny planner; `real` is a random-weight Qwen3 with the 1.7B planner's
config (hidden 2048, 28 layers, vocabulary 217,204) built in memory. Rows:

* `ours, cfg`    - the production codes loop: conditional + unconditional rows, static KV cache,
                   code-only constraint, top-p sampling without host syncs;
* `ours, no cfg` - the same loop with guidance off (one row);
* `hf generate`  - transformers' `model.generate` on the conditional prompt, sampling with the same
                   temperature/top-p, no guidance and no constraint: the plain baseline.

tokens/s counts generated tokens per sequence (a CFG pair counts once, as it yields one code);
"s / song-minute" is the time for the 300 codes one minute of music needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
CACHE = REPO / "bench" / ".cache"


def planner_for(size: str, device: str, dtype, compile_decode: str = "off"):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from acestep_worker.dev import tiny
    from acestep_worker.models.compile_policy import apply_compile_policy
    from acestep_worker.models.planner.lm import PlannerLM, load_tokenizer, token_ids
    from acestep_worker.models.planner.planner import Planner
    from acestep_worker.models.weights import empty_modules

    apply_compile_policy()  # as an engine's start-up does
    folder = tiny.ensure(CACHE / "tiny") / tiny.LM_FOLDER
    if size == "tiny":
        return Planner(PlannerLM.load(folder, device, dtype, compile_decode))
    config = Qwen3Config(vocab_size=217_204, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                         num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                         rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
    with empty_modules(device, dtype):
        model = Qwen3ForCausalLM(config)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        param.data.fill_(1.0) if "norm" in name else param.data.normal_(0.0, 0.02)
    tokenizer = load_tokenizer(folder)  # the tiny vocabulary's ids all lie inside the real-size one
    return Planner(PlannerLM(model, tokenizer, token_ids(tokenizer, folder), "random-1.7B", compile_decode))


def timed(fn) -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(size: str, args) -> list[dict]:
    import torch

    from acestep_worker.models.planner.chat_prompts import codes_prompts
    from acestep_worker.models.planner.decoding import SamplingParams
    from acestep_worker.models.planner.metadata import Metadata, cot_text
    from acestep_worker.models.planner.planner import SongText

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.set_num_threads(os.cpu_count() or 1)
    planner = planner_for(size, device, dtype, args.compile)
    meta = Metadata(bpm=120, caption="driving synthwave", duration=60, keyscale="A minor", language="en",
                    timesignature="4")
    seconds = args.tokens / 5
    rows = []
    for label, cfg in (("ours, cfg", 2.0), ("ours, no cfg", 1.0)):
        params = SamplingParams(cfg_scale=cfg)
        text = SongText("driving synthwave", "")
        planner.write_codes(text, meta, seconds, [0], params)  # warm-up (and compile)
        elapsed = timed(lambda: planner.write_codes(text, meta, seconds, [1], params))
        rows.append((label, elapsed))
    prompt, _ = codes_prompts(planner.lm, "driving synthwave", "", cot_text(meta), None)
    ids = torch.tensor([planner.lm.encode(prompt)], device=device)
    generate = lambda n: planner.lm.model.generate(  # noqa: E731
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=True,
        temperature=0.85, top_p=0.9, top_k=0, pad_token_id=planner.lm.ids.pad)  # top_k=0: same sampling as ours
    with torch.no_grad():
        generate(4)
        rows.append(("hf generate", timed(lambda: generate(args.tokens))))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    suffix = {"off": "", "on": ", compiled", "graphs": ", compiled + CUDA graphs"}[args.compile]
    return [{"size": size, "loop": label + (suffix if label.startswith("ours") else ""), "device": str(device), "dtype": str(dtype).removeprefix("torch."),
             "tokens": args.tokens, "seconds": round(elapsed, 3), "tokens_per_s": round(args.tokens / elapsed, 2),
             "s_per_song_minute": round(300 * elapsed / args.tokens, 2), "peak_rss_gib": round(rss, 2)}
            for label, elapsed in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny"], choices=["tiny", "real"])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", choices=["off", "on", "graphs"], default="off",
                        help="the decode step eager, compiled, or compiled with CUDA graphs (ACESTEP_LM_COMPILE)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for size in args.sizes:
        for row in measure(size, args):
            print(json.dumps(row))
            if args.json:
                with args.json.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
