#!/usr/bin/env python3
"""Synthesizer benchmark: load time, text encoding, per-step DiT time, VAE decode and encode, encode, peak RSS.

    python bench/synth.py --sizes tiny real --duration 10 --steps 2
    python bench/synth.py --sizes real --device cuda --dtype bfloat16 --duration 60

`tiny` is the project's tiny random-weight tree; `real` writes real-size random weights in the
official layout once (2.39 B-parameter DiT from the upstream config, the 0.6B Qwen3 text encoder,
the 169M-parameter VAE; about 6.5 GB in bf16 under bench/.cache) and measures the same pipeline at
real cost. Random weights run exactly the arithmetic real ones do, so timings and memory transfer;
the audio does not. Each size runs in its own process so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
CACHE = REPO / "bench" / ".cache"


def build_real_tree(root: Path) -> Path:
    """Real-size random weights in the official layout (bf16 on disk, like the published files)."""
    import torch
    from diffusers import AutoencoderOobleck
    from transformers import Qwen3Config, Qwen3Model

    from acestep_worker.dev import tiny
    from acestep_worker.models.dit.model import build_modules
    from acestep_worker.models.weights import empty_modules

    marker = root / tiny.RANDOM_WEIGHTS_MARKER
    if marker.is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = tiny.real_dit_config("turbo")
    with empty_modules("cpu", torch.bfloat16):
        modules = build_modules(config)
    for module in modules.values():
        for name, param in module.named_parameters():
            if name.endswith("norm.weight") or ".norm_" in name or name.endswith("layernorm.weight"):
                param.data.fill_(1.0)
            else:
                param.data.normal_(0.0, 0.02)
    modules["condition_encoder"].silence_latent = torch.randn(1, 15000, 64) * 0.9 - 0.2
    tiny.write_official_dit(root / "acestep-v15-turbo", config, modules, dtype=torch.bfloat16,
                            shard_bytes=2 * 1024**3)
    del modules
    vae = AutoencoderOobleck(encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 6, 10],
                             channel_multiples=[1, 2, 4, 8, 16], decoder_channels=128,
                             decoder_input_channels=64, audio_channels=2, sampling_rate=48000)
    vae.to(torch.bfloat16).save_pretrained(root / "vae", safe_serialization=True)
    del vae
    tokenizer = tiny.build_tokenizer()
    text_config = Qwen3Config(vocab_size=151669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                              num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                              max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=True)
    with empty_modules("cpu", torch.bfloat16):
        text = Qwen3Model(text_config)
    for name, param in text.named_parameters():
        param.data.fill_(1.0) if "norm" in name else param.data.normal_(0.0, 0.02)
    text.save_pretrained(root / "Qwen3-Embedding-0.6B", safe_serialization=True)
    tiny.write_tokenizer_files(root / "Qwen3-Embedding-0.6B", tokenizer, eos_token="<|endoftext|>")
    marker.write_text(json.dumps({"random_weights": True, "component": "bench-real-size"}) + "\n")
    return root


def tree_for(size: str) -> Path:
    from acestep_worker.dev import tiny

    if size == "tiny":
        return tiny.ensure(CACHE / "tiny")
    return build_real_tree(CACHE / "real")


def tiny_cpu_env(output_dir: Path | None = None) -> dict:
    """The environment of a worker on the tiny tree, on the CPU, without the planner (the job benchmarks')."""
    env = dict(os.environ, ACESTEP_CONFIG_PATH=str(tree_for("tiny") / "acestep-v15-turbo"), ACESTEP_DEVICE="cpu",
               ACESTEP_LM_MODEL_PATH="")
    if output_dir is not None:
        env["ACESTEP_OUTPUT_DIR"] = str(output_dir)
    return env


def measure(size: str, args: argparse.Namespace) -> dict:
    """Run in a fresh process: load, one warm-up, then `runs` timed generations."""
    root = tree_for(size)
    os.environ.update(ACESTEP_CONFIG_PATH=str(root / "acestep-v15-turbo"), ACESTEP_DEVICE=args.device,
                      ACESTEP_DTYPE=args.dtype)
    import torch

    from acestep_worker.audio.encode import encode
    from acestep_worker.models.vae import encode as vae_encode
    from acestep_worker.pipeline.engine import Engine
    from acestep_worker.schema.request import parse
    from acestep_worker.settings import Settings

    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    engine = Engine(Settings.from_env())
    load_s = time.perf_counter() - start
    request = parse({"caption": "benchmark: driving synthwave with analog bass", "lyrics": "[Verse]\n" + "la " * 40,
                     "duration": args.duration, "inference_steps": args.steps, "seed": 1})
    engine.generate(request)  # warm-up: first-call allocations and kernel selection
    runs = []
    for _ in range(args.runs):
        result = engine.generate(request)
        t0 = time.perf_counter()
        encode(result.songs[0].audio, 48000, "mp3")
        result.timings["mp3_encode"] = time.perf_counter() - t0
        # The editing tasks' VAE encode, on a song as long as the one just decoded.
        waveform = torch.from_numpy(result.songs[0].audio.T.copy()).unsqueeze(0)
        t0 = time.perf_counter()
        vae_encode(engine.synthesizer.vae, waveform, torch.Generator("cpu").manual_seed(0))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        result.timings["vae_encode"] = time.perf_counter() - t0
        runs.append(result.timings)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    peak_gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {
        "size": size, "device": str(engine.models.device), "dtype": str(engine.models.dtype).removeprefix("torch."),
        "duration_s": args.duration, "steps": args.steps, "runs": args.runs,
        "load_s": round(load_s, 2),
        "text_encoding_s": round(median["text_encoding"], 4),
        "dit_step_s": round(median["diffusion"] / args.steps, 4),
        "vae_decode_s": round(median["vae_decode"], 3),
        "vae_encode_s": round(median["vae_encode"], 3),
        "mp3_encode_s": round(median["mp3_encode"], 3),
        "total_s": round(median["total"], 3),
        "seconds_per_audio_minute": round(median["total"] * 60 / args.duration, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "peak_gpu_gib": round(peak_gpu, 2) if peak_gpu is not None else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny"], choices=["tiny", "real"])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", type=Path, help="append results to this JSON-lines file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return 0
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for size in args.sizes:
        argv = [sys.executable, __file__, "--child", size, "--duration", str(args.duration), "--steps",
                str(args.steps), "--runs", str(args.runs), "--device", args.device, "--dtype", args.dtype]
        out = subprocess.run(argv, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(row))
        if args.json:
            with args.json.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
