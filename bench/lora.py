#!/usr/bin/env python3
"""LoRA benchmark: adapter load time, and the per-step DiT cost with no adapter, unfused, and fused.

    python bench/lora.py --size tiny
    python bench/lora.py --size real --frames 250 --rank 64 --device cuda --dtype bfloat16
    python bench/lora.py --size tiny --kind lokr     # or loha, dora: the other kinds the server loads

The transformer is built in memory with random weights (bench/dit_forward.py's builder); the
adapter is a random rank-r LoRA on every attention projection of every layer, written as a PEFT
folder the way upstream's trainer writes one (`--kind lokr`/`loha`/`dora`: the same projections as
a peft LoKr with LyCORIS' default factors, a LoHa, or a DoRA), then loaded through the server's own path
(`Adapters.load`: read, normalise, shape check, inject). "unfused" is how jobs run (switching
adapters between jobs is free; a LoKr's layers in Kronecker form are hooks, `lora/kron.py`); "fused"
merges the weights into the DiT (`fuse_lora`), which costs a merge and an unmerge per switch. For
`--kind lokr` and `dora`, "dense_pair" replaces "fused": the same adapter as the LoRA pairs it was
before the Kronecker forward (LoKr, dense once full-rank) or the per-job merge (DoRA, always
dense), so `cpu_unfused_overhead_pct` against `cpu_dense_pair_overhead_pct` is the saving. Prints
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
CONDITION_TOKENS = 385


def write_peft_adapter(folder: Path, transformer, rank: int, kind: str = "lora") -> None:
    import torch
    from safetensors.torch import save_file

    renames = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out.0": "o_proj"}
    tensors = {}
    g = torch.Generator().manual_seed(1)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.01

    for name, module in transformer.named_modules():
        suffix = next((s for s in renames if name.endswith("attn." + s)), None)
        if suffix is None:
            continue
        key = f"base_model.model.{name[: -len(suffix)] + renames[suffix]}"
        out_features, in_features = module.out_features, module.in_features
        if kind == "lokr":  # LyCORIS' factor -1: w1 whole, w2 whole once the rank reaches half its side
            (out_small, out_big), (in_small, in_big) = _factors(out_features), _factors(in_features)
            tensors[f"{key}.lokr_w1"] = rand(out_small, in_small)
            if rank >= max(out_big, in_big) / 2:
                tensors[f"{key}.lokr_w2"] = rand(out_big, in_big)
            else:
                tensors[f"{key}.lokr_w2_a"], tensors[f"{key}.lokr_w2_b"] = rand(out_big, rank), rand(rank, in_big)
        elif kind == "loha":
            for half in ("w1", "w2"):
                tensors[f"{key}.hada_{half}_a"], tensors[f"{key}.hada_{half}_b"] = rand(out_features, rank), rand(
                    rank, in_features)
        else:
            tensors[f"{key}.lora_A.weight"], tensors[f"{key}.lora_B.weight"] = rand(rank, in_features), rand(
                out_features, rank)
            if kind == "dora":
                tensors[f"{key}.lora_magnitude_vector"] = module.weight.detach().float().norm(dim=1).cpu()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"lokr": {"peft_type": "LOKR", "r": rank, "alpha": rank}, "loha": {"peft_type": "LOHA", "r": rank,
              "alpha": rank}}.get(kind, {"peft_type": "LORA", "r": rank, "lora_alpha": rank, "use_dora": kind == "dora"})
    (folder / "adapter_config.json").write_text(json.dumps(config))


def _factors(dimension: int) -> tuple[int, int]:
    """(m, n) with m * n = dimension and m the largest divisor up to its square root."""
    small = max(m for m in range(1, int(dimension**0.5) + 1) if dimension % m == 0)
    return small, dimension // small


def one_layer(frames: int, width: int, rank: int, repeats: int = 7, calls: int = 10) -> dict:
    """CPU ms of one square `width` projection on `frames` tokens (fp32, one thread; the least over
    `repeats` of `calls` calls each, since a process's CPU clock may tick coarsely):
    the layer alone, plus the LoKr at LyCORIS' default factors as its old pair (dense once full-rank)
    and in Kronecker form. The real DiT's attention projections are 2048 wide (k/v 1024 out)."""
    import torch

    from acestep_worker.models.lora import kron

    small, big = _factors(width)
    g = torch.Generator().manual_seed(2)
    x, weight = torch.randn(frames, width, generator=g), torch.randn(width, width, generator=g)
    w1, w2 = torch.randn(small, small, generator=g), torch.randn(big, big, generator=g)
    if rank < big / 2:  # w2 factorised, as write_peft_adapter writes it: the pair is small * rank wide
        down, up = torch.randn(small * rank, width, generator=g), torch.randn(width, small * rank, generator=g)
    else:
        down, up = torch.randn(width, width, generator=g), torch.eye(width)
    runs = {"layer": lambda: x @ weight.T, "pair": lambda: (x @ down.T) @ up.T,
            "kron": lambda: kron.kron_apply(x, w1, w2)}
    cpu_ms = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # OpenMP threads spin-wait after a big matmul, billing the next small ops' CPU time
    for name, run in runs.items():
        run()
        samples = []
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(calls):
                run()
            samples.append(1000 * (time.process_time() - start) / calls)
        cpu_ms[name] = min(samples)  # the least disturbed: other processes only ever add
    torch.set_num_threads(threads)
    return {"layer_width": width, "layer_pair_rank": min(small * rank, width) if rank < big / 2 else width,
            "layer_cpu_ms": round(cpu_ms["layer"], 3),
            "layer_pair_overhead_pct": round(100 * cpu_ms["pair"] / cpu_ms["layer"], 1),
            "layer_kron_overhead_pct": round(100 * cpu_ms["kron"] / cpu_ms["layer"], 1),
            "layer_pair_flops_pct": round(100 * kron.pair_cost(width if rank >= big / 2 else small * rank,
                                                               width, width) / width**2, 1),
            "layer_kron_flops_pct": round(100 * kron.kron_cost((small, small), (big, big)) / width**2, 1)}


def one_step(transformer, inputs, sync, cpu_times: list | None = None) -> float:
    """Wall seconds of one forward; its CPU seconds (all threads) go to `cpu_times` when given.

    CPU time is what a shared machine cannot inflate much (other processes take wall time, not
    this process's CPU time), so on a busy CPU compare the `cpu_` figures."""
    import torch

    with torch.no_grad():
        start, cpu_start = time.perf_counter(), time.process_time()
        transformer(*inputs, return_dict=False)
        sync()
        if cpu_times is not None:
            cpu_times.append(time.process_time() - cpu_start)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--frames", type=int, default=250, help="latent frames (25 per second of audio)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--kind", choices=("lora", "lokr", "loha", "dora"), default="lora")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()

    import torch
    from dit_forward import build_transformer

    from acestep_worker.models.dit.model import DiTModel
    from acestep_worker.models.lora.adapters import Adapters
    from acestep_worker.models.lora.formats import read_adapter
    from acestep_worker.models.variants import detect_variant
    from acestep_worker.schema.lora_refs import LoraRef
    from acestep_worker.settings import Settings

    dtype = getattr(torch, args.dtype)
    transformer = build_transformer(args.size, torch.float32).to(device=args.device, dtype=dtype)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    g = torch.Generator().manual_seed(0)
    hidden = transformer.config.encoder_hidden_size or transformer.config.hidden_size
    x = torch.randn(1, args.frames, 64, generator=g)
    context = torch.randn(1, args.frames, 128, generator=g)
    conditions = torch.randn(1, CONDITION_TOKENS, hidden, generator=g)
    t = torch.tensor([0.5])
    inputs = [v.to(device=args.device, dtype=dtype) for v in (x, t, t, conditions, context)]
    dit = DiTModel(detect_variant("bench", {"is_turbo": True}), transformer, None, None, None)

    with tempfile.TemporaryDirectory() as tmp:
        lora_dir = Path(tmp) / "loras"
        write_peft_adapter(lora_dir / "bench", transformer, args.rank, args.kind)
        size_mb = (lora_dir / "bench" / "adapter_model.safetensors").stat().st_size / 2**20
        settings = Settings(dit_path=Path(tmp), vae_path=Path(tmp), text_encoder_path=Path(tmp), lora_dir=lora_dir)
        adapters = Adapters(settings)
        ref = LoraRef("name", "bench", 1.0)
        start = time.perf_counter()
        used = adapters.activate(dit, (ref,))
        cold = time.perf_counter() - start
        adapters.deactivate(dit)
        start = time.perf_counter()
        adapters.activate(dit, (ref,))
        warm = time.perf_counter() - start
        adapters.deactivate(dit)
        modes = ("plain", "unfused", "dense_pair" if args.kind in ("lokr", "dora") else "fused")
        extra = {}
        if args.kind == "lokr":
            # What every LoKr module was before lora/kron.py: its LoRA pair, dense once full-rank.
            paired = read_adapter("bench", lora_dir / "bench", kron_forward=False)
            dense = {k: v.to(device=args.device, dtype=dtype) for k, v in paired.state_dict.items()}
            extra = {"kron_layers": used[0]["kron_layers"], "dense_pair_rank": paired.rank}
        if args.kind == "dora":
            # What every DoRA module was before lora/merged.py: ΔW and an identity.
            merges = adapters.load("bench", ref, dit).merges
            dense = {key: tensor for module, delta in merges.items() for key, tensor in (
                (f"transformer.{module}.lora_A.weight", delta),
                (f"transformer.{module}.lora_B.weight", torch.eye(delta.shape[0], device=args.device, dtype=dtype)))}
            extra = {"merged_layers": used[0]["merged_layers"]}
        if args.kind in ("lokr", "dora"):
            transformer.load_lora_adapter(dense, prefix="transformer", adapter_name="dense_pair")

        fuse_times = []

        def enter(mode: str) -> None:
            if mode in ("unfused", "fused"):
                adapters.activate(dit, (ref,))  # an LRU hit: set_adapters, and the Kronecker hooks
            if mode == "fused":
                start = time.perf_counter()
                transformer.fuse_lora(lora_scale=1.0)
                sync()
                fuse_times.append(time.perf_counter() - start)
            if mode == "dense_pair":
                transformer.enable_lora()
                transformer.set_adapters(["dense_pair"])

        def leave(mode: str) -> None:
            if mode == "fused":
                transformer.unfuse_lora()
            adapters.deactivate(dit)

        # The modes alternate step by step, so machine load hits each alike; medians are reported.
        times = {mode: [] for mode in modes}
        cpu = {mode: [] for mode in modes}
        one_step(transformer, inputs, sync)  # warm-up
        for _ in range(args.steps):
            for mode in modes:
                enter(mode)
                times[mode].append(one_step(transformer, inputs, sync, cpu[mode]))
                leave(mode)
        wall = {mode: statistics.median(times[mode]) for mode in modes}
        cpu_s = {mode: statistics.median(cpu[mode]) for mode in modes}

    label = {"plain": "no_adapter"}
    report = {
        "size": args.size, "device": args.device, "dtype": args.dtype, "frames": args.frames, "rank": args.rank,
        "kind": args.kind, "pair_rank": used[0]["rank"], **extra,
        "adapter_mb": round(size_mb, 2), "load_cold_s": round(cold, 4), "load_warm_lru_s": round(warm, 4),
    }
    if fuse_times:
        report["fuse_s"] = round(statistics.median(fuse_times), 4)
    for mode in modes:
        report[f"step_{label.get(mode, mode)}_s"] = round(wall[mode], 4)
    for mode in modes[1:]:
        report[f"{mode}_overhead_pct"] = round(100 * (wall[mode] / wall["plain"] - 1), 1)
    for mode in modes:
        report[f"cpu_step_{label.get(mode, mode)}_s"] = round(cpu_s[mode], 4)
    for mode in modes[1:]:
        report[f"cpu_{mode}_overhead_pct"] = round(100 * (cpu_s[mode] / cpu_s["plain"] - 1), 1)
    if args.kind == "lokr":
        report.update(one_layer(args.frames, 2048, args.rank))
    print(json.dumps(report, indent=2))

if __name__ == "__main__":
    main()
