"""Check our loader and sampler against tensors produced by upstream ACE-Step (`tests/golden/`).

A golden folder holds an official-layout checkpoint (`config.json`, `model.safetensors`), a
`manifest.json` naming every recorded boundary, and one safetensors file per boundary with `in.*`
inputs and `mid.*`/`out.*`/`trace.*` expected values. The checkpoint is loaded through the product's
own loader; the silence latent stand-in recorded with the inputs is written as `silence_latent.pt`
next to it in a scratch folder, because the product loader requires that file.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from .dit.conditioning import codes_to_quantized, detokenize, encode_conditions, pooled_mask, prepare_condition, tokenize
from .dit.loading import load_dit
from .dit.model import DiTModel
from .dit.sampler import SamplerHooks, SamplingPlan, sample
from .dit.schedules import base_timesteps, turbo_timesteps

SINGLE_FORWARD = {"atol": 1e-5, "rtol": 1e-4}
GENERATE = {"atol": 5e-4, "rtol": 1e-3}


@dataclass
class Comparison:
    file: str
    tensor: str
    max_abs: float
    max_rel: float
    exact: bool  # integer/bool tensors must match exactly
    passed: bool


def compare(file: str, name: str, ours: torch.Tensor, ref: torch.Tensor, tol: dict) -> Comparison:
    if tuple(ours.shape) != tuple(ref.shape):
        return Comparison(file, f"{name} (shape {tuple(ours.shape)} vs {tuple(ref.shape)})",
                          float("inf"), float("inf"), False, False)
    exact = not ref.dtype.is_floating_point
    if exact:
        diff = (ours.long() != ref.long()).sum().item()
        return Comparison(file, name, float(diff), float(diff), True, diff == 0)
    ours, ref = ours.double(), ref.double()
    err = (ours - ref).abs()
    rel = err / ref.abs().clamp_min(1e-3)
    passed = bool((err <= tol["atol"] + tol["rtol"] * ref.abs()).all())
    return Comparison(file, name, err.max().item(), rel.max().item(), False, passed)


def _fsq_input(dit: DiTModel, latents: torch.Tensor, silence: torch.Tensor) -> torch.Tensor:
    """The value entering the FSQ rounding: tanh(x / c) * c of the projected pooled features."""
    captured = {}
    quantizer = dit.audio_tokenizer.quantizer
    handle = quantizer.register_forward_pre_hook(lambda _m, args: captured.setdefault("x", args[0]))
    try:
        tokenize(dit, latents, silence)
    finally:
        handle.remove()
    x = F.linear(captured["x"].float(), quantizer.project_in.weight.float(), quantizer.project_in.bias.float())
    clamp = 1.0 + 1.0 / (torch.tensor(quantizer.levels, dtype=torch.float32) - 1.0)
    return (x / clamp).tanh() * clamp


def _encoder_inputs(t: dict) -> tuple:
    return (t["in.text_hidden_states"], t["in.text_attention_mask"], t["in.lyric_hidden_states"],
            t["in.lyric_attention_mask"], t["in.refer_audio_acoustic_hidden_states_packed"],
            t["in.refer_audio_order_mask"])


def run_encoder(dit: DiTModel, t: dict) -> dict:
    text, text_mask, lyric, lyric_mask, refs, order = _encoder_inputs(t)
    enc = dit.condition_encoder
    hidden, mask = encode_conditions(dit, *_encoder_inputs(t))
    timbre, timbre_mask = enc.timbre_encoder(refs, order)
    return {"mid.text_projected": enc.text_projector(text),
            "mid.lyric_encoder_last_hidden_state": enc.lyric_encoder(lyric, lyric_mask),
            "mid.timbre_embs_unpack": timbre, "mid.timbre_embs_mask": timbre_mask,
            "out.encoder_hidden_states": hidden, "out.encoder_attention_mask": mask}


def _prepare(dit: DiTModel, t: dict):
    return prepare_condition(dit, *_encoder_inputs(t), t["in.src_latents"], t["in.chunk_masks"],
                             t["in.is_covers"], silence_latent=t["in.silence_latent"])


def run_prepare_condition(dit: DiTModel, t: dict) -> dict:
    c = _prepare(dit, t)
    return {"out.encoder_hidden_states": c.encoder_hidden_states,
            "out.encoder_attention_mask": c.encoder_attention_mask, "out.context_latents": c.context_latents}


def run_decoder(dit: DiTModel, t: dict) -> dict:
    def call(r):
        return dit.transformer(t["in.hidden_states"], t["in.timestep"], r, t["in.encoder_hidden_states"],
                               t["in.context_latents"], return_dict=False)[0]
    return {"out.velocity_r_equal": call(t["in.timestep_r_equal"]),
            "out.velocity_r_distinct": call(t["in.timestep_r_distinct"])}


def run_tokenizer(dit: DiTModel, t: dict) -> dict:
    quantized, indices = tokenize(dit, t["in.latents"], t["in.silence_latent"])
    return {"mid.fsq_layer_input": _fsq_input(dit, t["in.latents"], t["in.silence_latent"]),
            "out.quantized": quantized, "out.indices": indices,
            "out.pooled_attention_mask": pooled_mask(t["in.attention_mask"], dit.pool_window_size)}


def run_detokenizer(dit: DiTModel, t: dict) -> dict:
    from_indices = codes_to_quantized(dit, t["in.indices"])
    return {"mid.quantized_from_indices": from_indices,
            "out.latents_from_quantized": detokenize(dit, t["in.quantized"]),
            "out.latents_from_indices": detokenize(dit, from_indices)}


def plan_from_scalars(kind: str, args: dict) -> SamplingPlan:
    """Translate a golden file's upstream `generate_audio` arguments into our plan."""
    if kind == "turbo":
        return SamplingPlan(turbo_timesteps(args.get("shift", 3.0), timesteps=args.get("timesteps")))
    return SamplingPlan(
        base_timesteps(args["infer_steps"], args.get("shift", 1.0)),
        guidance_scale=args.get("diffusion_guidance_sale", 1.0),
        cfg_interval=(args.get("cfg_interval_start", 0.0), args.get("cfg_interval_end", 1.0)),
        guidance="adg" if args.get("use_adg") else "apg",
    )


def run_generate(dit: DiTModel, t: dict, kind: str, args: dict) -> dict:
    conditions = _prepare(dit, t)
    record: list = []
    latents = sample(dit, conditions, t["in.initial_noise"], plan_from_scalars(kind, args),
                     SamplerHooks(record=record))
    return {"mid.context_latents": conditions.context_latents, "out.target_latents": latents,
            "trace.decoder_timestep": torch.stack([c.timestep for c in record]),
            "trace.decoder_input_xt": torch.stack([c.hidden_states for c in record]),
            "trace.decoder_output_v": torch.stack([c.velocity for c in record])}


RUNNERS: dict[str, Callable[[DiTModel, dict], dict]] = {
    "encoder": run_encoder, "prepare_condition": run_prepare_condition, "decoder": run_decoder,
    "tokenizer": run_tokenizer, "detokenizer": run_detokenizer,
}


def _sampler_kind(manifest: dict, filename: str) -> str:
    upstream = manifest.get("upstream_class", "")
    if ".turbo." in upstream:
        return "turbo"
    if ".base." in upstream or ".sft." in upstream:
        return "base"
    return "turbo" if filename.startswith("generate_turbo") else "base"


def _silence_stand_in(golden: Path, manifest: dict) -> torch.Tensor:
    for name in manifest["files"]:
        tensors = load_file(str(golden / name))
        if "in.silence_latent" in tensors:
            return tensors["in.silence_latent"]
    raise ValueError(f"{golden}: no file records in.silence_latent")


def _checkpoint_copy(golden: Path, manifest: dict, scratch: Path) -> Path:
    folder = scratch / golden.name
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(golden / name, folder / name)
    torch.save(_silence_stand_in(golden, manifest).transpose(1, 2).contiguous(), folder / "silence_latent.pt")
    return folder


def check_golden_dir(golden: str | Path) -> list[Comparison]:
    """Run every boundary of a golden folder; return one comparison per expected tensor."""
    golden = Path(golden)
    manifest = json.loads((golden / "manifest.json").read_text())
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        dit = load_dit(_checkpoint_copy(golden, manifest, Path(scratch)), "cpu", torch.float32)
    rows = []
    for name, entry in manifest["files"].items():
        stem = name.removesuffix(".safetensors")
        if stem.endswith("_dcw_default"):
            continue  # optional: upstream's newer DCW correction, which we do not implement
        tensors = load_file(str(golden / name))
        with torch.no_grad():
            if stem.startswith("generate_"):
                ours = run_generate(dit, tensors, _sampler_kind(manifest, stem), entry.get("scalar_args", {}))
                tol = GENERATE
            else:
                ours = RUNNERS[stem](dit, tensors)
                tol = SINGLE_FORWARD
        for key, ref in tensors.items():
            if key.startswith("in."):
                continue
            if key not in ours:
                rows.append(Comparison(stem, f"{key} (not produced)", float("inf"), float("inf"), False, False))
                continue
            rows.append(compare(stem, key, ours[key].detach().cpu(), ref, tol))
    return rows


def format_table(rows: list[Comparison]) -> str:
    lines = [f"{'boundary':38} {'tensor':40} {'max abs':>10} {'max rel':>10}  result"]
    for r in rows:
        abs_s = f"{int(r.max_abs)} diff" if r.exact else f"{r.max_abs:10.3e}"
        rel_s = "exact" if r.exact else f"{r.max_rel:10.3e}"
        lines.append(f"{r.file:38} {r.tensor:40} {abs_s:>10} {rel_s:>10}  {'PASS' if r.passed else 'FAIL'}")
    return "\n".join(lines)
