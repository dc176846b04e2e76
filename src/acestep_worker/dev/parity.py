"""Check our loader and sampler against tensors produced by upstream ACE-Step (`tests/golden/`).

A golden folder holds an official-layout checkpoint (`config.json`, `model.safetensors`), a
`manifest.json` naming every recorded boundary, optionally a `manifest_editing.json` naming the
editing-path sampler runs (`edit_*`), optionally a `manifest_post.json` naming the finishing runs
(`post_*`: latent shift/rescale, the anti-clip, peak normalisation, fades; compared bitwise), a
`manifest_alignment.json` naming the lyric-alignment files (`align_*`, with the tokenizer file their
token texts decode with), a `manifest_alignment_attention.json` naming the DiT's alignment pass
(`align_attention`: re-noised latent -> cross-attention maps, checked bit for bit), and one
safetensors file per boundary with `in.*` inputs and
`mid.*`/`out.*`/`trace.*` expected values. A `manifest_retake.json` names the retake files: upstream's
starting noise for given seeds, retake seeds and variance (`retake_noise_*`, checked bit for bit), and
sampler runs from such noise (`retake_generate_*`). A `manifest_flow_edit.json` names upstream's
flow-edit runs (`flowedit_*`: a source text and a target text over one audio context, the clean source,
the forward noises' seeds). A `manifest_heun.json` names upstream's runs with `sampler_mode: "heun"`;
each of its files holds only the outputs and takes its inputs from the file its entry names
(`inputs_from`), and is compared at the tolerance its entry names (`bitwise`). A `manifest_pmi.json`
names the PMI quality-score file (`pmi_*`: upstream's per-condition and overall scores on the tiny
planner, dev/parity_pmi.py). The checkpoint is loaded
through the product's own loader; the silence latent stand-in recorded with the inputs is written as `silence_latent.pt`
next to it in a scratch folder, because the product loader requires that file.

The runner is strict: a safetensors file in the folder that no manifest names, or that no runner
checks, fails the run, and so does a manifest entry whose file is missing. A golden file that is
present but unchecked would otherwise pass silently.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ..audio.finishing import Finishing, adjust_latents, finish
from ..models.dit.conditioning import (
    ContextInputs,
    EncoderInputs,
    codes_to_quantized,
    detokenize,
    encode_conditions,
    pooled_mask,
    prepare_condition,
    tokenize,
)
from ..models.dit.dcw import DCW
from ..models.dit.flow_edit import FlowEdit
from ..models.dit.loading import load_dit
from ..models.dit.model import DiTModel
from ..models.dit.sampler import SamplerHooks, SamplerTrace, SamplingPlan, sample
from ..models.dit.sampler_edits import CoverSwitch, Edit, Repaint, nearest_start, renoise
from ..models.dit.schedules import base_timesteps, turbo_timesteps
from ..models.vae import limit_peaks
from ..pipeline.initial_noise import Retake, draw_noise, initial_noise
from . import parity_pmi, parity_understanding
from .parity_alignment import ALIGNMENT_DIT_RUNNERS, ALIGNMENT_RUNNERS, alignment_tokenizer

SINGLE_FORWARD = {"atol": 1e-5, "rtol": 1e-4}
GENERATE = {"atol": 5e-4, "rtol": 1e-3}
BITWISE = {"atol": 0.0, "rtol": 0.0}  # the same seeded draws and float32 operations as upstream's: the same bits
ALIGNMENT = {"atol": 1e-6, "rtol": 1e-6}  # the same float32/float64 arithmetic as upstream's, on the CPU


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


def _encoder_inputs(t: dict) -> EncoderInputs:
    return EncoderInputs(t["in.text_hidden_states"], t["in.text_attention_mask"], t["in.lyric_hidden_states"],
                         t["in.lyric_attention_mask"], t["in.refer_audio_acoustic_hidden_states_packed"],
                         t["in.refer_audio_order_mask"])


def run_encoder(dit: DiTModel, t: dict) -> dict:
    inputs = _encoder_inputs(t)
    enc = dit.condition_encoder
    hidden, mask = encode_conditions(dit, inputs)
    timbre, timbre_mask = enc.timbre_encoder(inputs.refs_packed, inputs.refs_order)
    return {"mid.text_projected": enc.text_projector(inputs.text_hidden),
            "mid.lyric_encoder_last_hidden_state": enc.lyric_encoder(inputs.lyric_hidden, inputs.lyric_mask),
            "mid.timbre_embs_unpack": timbre, "mid.timbre_embs_mask": timbre_mask,
            "out.encoder_hidden_states": hidden, "out.encoder_attention_mask": mask}


def _prepare(dit: DiTModel, t: dict):
    return prepare_condition(dit, _encoder_inputs(t),
                             ContextInputs(t["in.src_latents"], t["in.chunk_masks"], t["in.is_covers"]),
                             silence_latent=t["in.silence_latent"])


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
    dcw = (DCW(args.get("dcw_mode", "double"), args.get("dcw_scaler", 0.05), args.get("dcw_high_scaler", 0.02),
               args.get("dcw_wavelet", "haar")) if args.get("dcw_enabled") else None)
    common = dict(kind=kind, infer_method=args.get("infer_method", "ode"), dcw=dcw,
                  velocity_norm_threshold=args.get("velocity_norm_threshold", 0.0),
                  velocity_ema_factor=args.get("velocity_ema_factor", 0.0),
                  sampler_mode=args.get("sampler_mode", "euler"))
    if kind == "turbo":
        return SamplingPlan(turbo_timesteps(args.get("shift", 3.0), timesteps=args.get("timesteps")), **common)
    return SamplingPlan(
        base_timesteps(args["infer_steps"], args.get("shift", 1.0)),
        # generate_audio spells it "sale"; flowedit_generate_audio "scale"
        guidance_scale=args.get("diffusion_guidance_sale", args.get("diffusion_guidance_scale", 1.0)),
        cfg_interval=(args.get("cfg_interval_start", 0.0), args.get("cfg_interval_end", 1.0)),
        guidance="adg" if args.get("use_adg") else "apg", **common,
    )


def _trace_outputs(trace: SamplerTrace) -> dict:
    calls = trace.calls
    out = {"trace.decoder_timestep": torch.stack([c.timestep for c in calls]),
           "trace.decoder_input_xt": torch.stack([c.hidden_states for c in calls]),
           "trace.decoder_output_v": torch.stack([c.velocity for c in calls]),
           "trace.decoder_encoder_hidden_states": torch.stack([c.encoder_hidden_states for c in calls]),
           "trace.decoder_context_latents": torch.stack([c.context_latents for c in calls])}
    if trace.injections:
        out["trace.repaint_injection_t"] = torch.stack([t for t, _ in trace.injections])
        out["trace.repaint_injected_xt"] = torch.stack([x for _, x in trace.injections])
    if trace.before_blend is not None:
        out["mid.latents_before_boundary_blend"] = trace.before_blend
    return out


def run_generate(dit: DiTModel, t: dict, kind: str, args: dict) -> dict:
    conditions = _prepare(dit, t)
    trace = SamplerTrace()
    latents = sample(dit, conditions, t["in.initial_noise"], plan_from_scalars(kind, args), SamplerHooks(trace=trace))
    return {"mid.context_latents": conditions.context_latents, "out.target_latents": latents, **_trace_outputs(trace)}


def run_edit(dit: DiTModel, t: dict, kind: str, args: dict) -> dict:
    """Upstream's `generate_audio` on an editing path: repaint/lego, cover strength, cover noise."""
    conditions = _prepare(dit, t)
    plan = plan_from_scalars(kind, args)
    noise, edit, out = t["in.initial_noise"], Edit(), {}
    cover_noise = float(args.get("cover_noise_strength", 0.0))
    if cover_noise > 0:
        first = nearest_start(plan.timesteps, cover_noise)
        plan = replace(plan, timesteps=plan.timesteps[first:])
        edit.start = renoise(t["in.src_latents"], noise, plan.timesteps[0])
    strength = float(args.get("audio_cover_strength", 1.0))
    if strength < 1.0 and "in.non_cover_text_hidden_states" in t:
        silence = t["in.silence_latent"][:, : t["in.src_latents"].shape[1]].expand_as(t["in.src_latents"])
        non_cover_text = replace(_encoder_inputs(t), text_hidden=t["in.non_cover_text_hidden_states"],
                                 text_mask=t["in.non_cover_text_attention_mask"])
        non_cover = prepare_condition(
            dit, non_cover_text, ContextInputs(silence, t["in.chunk_masks"], torch.zeros_like(t["in.is_covers"])),
            silence_latent=t["in.silence_latent"])
        edit.cover_switch = CoverSwitch(non_cover, int(plan.steps * strength))
        out.update({"mid.context_latents_non_cover": non_cover.context_latents,
                    "mid.encoder_hidden_states_non_cover": non_cover.encoder_hidden_states,
                    "mid.encoder_attention_mask_non_cover": non_cover.encoder_attention_mask})
    if "in.repaint_mask" in t:
        edit.repaint = Repaint(t["in.repaint_mask"], t["in.clean_src_latents"],
                               round(float(args["repaint_injection_ratio"]) * plan.steps),
                               int(args["repaint_crossfade_frames"]))
    trace = SamplerTrace()
    latents = sample(dit, conditions, noise, plan, SamplerHooks(trace=trace), edit)
    return {**out, "mid.context_latents": conditions.context_latents,
            "mid.encoder_hidden_states": conditions.encoder_hidden_states,
            "mid.encoder_attention_mask": conditions.encoder_attention_mask,
            "out.target_latents": latents, **_trace_outputs(trace)}


def run_post(t: dict, args: dict) -> dict:
    """Upstream's finishing (`post_*`): latents -> shifted latents; decoded waveforms -> the anti-clip,
    the peak normalisation alone, and normalisation plus fades."""
    if "in.latents" in t:
        return {"out.latents": adjust_latents(t["in.latents"], args["latent_shift"], args["latent_rescale"])}
    clipped = limit_peaks(t["in.decoded"])
    finishing = Finishing(args["enable_normalization"], args["normalization_db"], args["fade_in_duration"],
                          args["fade_out_duration"])
    normalized, _ = finish(clipped, replace(finishing, fade_in_s=0.0, fade_out_s=0.0), args["sample_rate"])
    return {"mid.anticlipped": clipped, "mid.normalized": normalized,
            "out.finished": finish(clipped, finishing, args["sample_rate"])[0]}


def retake_noise(args: dict) -> torch.Tensor:
    """Our starting noise for a retake file's seeds, retake seeds and variance (pipeline/initial_noise.py)."""
    channels = int(args["channels"])
    return initial_noise(list(args["seeds"]), int(args["frames"]), channels,
                         Retake(tuple(args["retake_seeds"]), float(args["retake_variance"])))[0]


def run_retake_generate(dit: DiTModel, t: dict, kind: str, args: dict) -> dict:
    """Upstream's `generate_audio` from the retake noise of the file's seeds: the noise, then the sampler."""
    noise = retake_noise(args)
    return {"mid.initial_noise": noise, **run_generate(dit, {**t, "in.initial_noise": noise}, kind, args)}


def run_flow_edit(dit: DiTModel, t: dict, args: dict) -> dict:
    """Upstream's `flowedit_generate_audio`: the source text (`in.text_*`, `in.lyric_*`) and the target text
    (`in.target_*`) over one audio context (`in.ctx_src_latents`, or the source itself when none is recorded,
    as upstream defaults), the clean source `in.src_latents` edited with forward noise drawn from
    generators seeded with `seed`, one per item (pipeline/initial_noise.draw_noise, as Synthesizer.flow_edit)."""
    source_text = _encoder_inputs(t)
    target_text = replace(source_text, text_hidden=t["in.target_text_hidden_states"],
                          text_mask=t["in.target_text_attention_mask"],
                          lyric_hidden=t["in.target_lyric_hidden_states"],
                          lyric_mask=t["in.target_lyric_attention_mask"])
    context = ContextInputs(t.get("in.ctx_src_latents", t["in.src_latents"]), t["in.chunk_masks"], t["in.is_covers"])
    source, target = (prepare_condition(dit, text, context, silence_latent=t["in.silence_latent"])
                      for text in (source_text, target_text))
    clean = t["in.src_latents"]
    generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in args["seed"]]
    flow = FlowEdit(source, clean, lambda: draw_noise(generators, clean.shape[1], clean.shape[2]),
                    args["edit_n_min"], args["edit_n_max"], args["edit_n_avg"])
    trace = SamplerTrace()
    latents = sample(dit, target, torch.zeros_like(clean), plan_from_scalars("base", args), SamplerHooks(trace=trace),
                     Edit(flow_edit=flow))
    # source and target calls interleave, with condition lengths of their own: only the common records stack
    return {"out.target_latents": latents, "trace.decoder_timestep": torch.stack([c.timestep for c in trace.calls]),
            "trace.decoder_input_xt": torch.stack([c.hidden_states for c in trace.calls]),
            "trace.decoder_output_v": torch.stack([c.velocity for c in trace.calls])}


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
    return "turbo" if "_turbo_" in filename else "base"


MANIFESTS = ("manifest.json", "manifest_editing.json", "manifest_post.json", "manifest_retake.json",
             "manifest_flow_edit.json", "manifest_understanding.json", "manifest_alignment.json",
             "manifest_heun.json", "manifest_alignment_attention.json", "manifest_pmi.json")
CHECKPOINT_FILES = {"model.safetensors"}


def _manifest_entries(golden: Path) -> tuple[dict, dict[str, tuple[dict, dict]]]:
    """The main manifest, and every golden file named by any manifest with (its manifest, entry)."""
    main = json.loads((golden / "manifest.json").read_text())
    entries = {}
    for name in MANIFESTS:
        if (golden / name).is_file():
            manifest = json.loads((golden / name).read_text())
            manifest["_folder"] = golden
            entries.update({file: (manifest, entry) for file, entry in manifest["files"].items()})
    return main, entries


def _silence_stand_in(golden: Path, entries: dict) -> torch.Tensor:
    for name in entries:
        if (golden / name).is_file():
            tensors = load_file(str(golden / name))
            if "in.silence_latent" in tensors:
                return tensors["in.silence_latent"]
    raise ValueError(f"{golden}: no file records in.silence_latent")


def _checkpoint_copy(golden: Path, entries: dict, scratch: Path) -> Path:
    folder = scratch / golden.name
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(golden / name, folder / name)
    torch.save(_silence_stand_in(golden, entries).transpose(1, 2).contiguous(), folder / "silence_latent.pt")
    return folder


TOLERANCES = {"bitwise": BITWISE, "sampler": GENERATE}  # the names a manifest entry may give


def _run_file(dit: DiTModel, stem: str, tensors: dict, manifest: dict, entry: dict) -> tuple[dict, dict] | None:
    """Our outputs for one golden file and the tolerance to compare them at; None: no runner."""
    args = entry.get("scalar_args", {})
    if stem.startswith("generate_"):
        tol = TOLERANCES[entry.get("tolerance", "sampler")]  # a misspelt name stops the run, not loosens it
        return run_generate(dit, tensors, _sampler_kind(manifest, stem), args), tol
    if stem.startswith("edit_"):
        return run_edit(dit, tensors, _sampler_kind(manifest, stem), args), GENERATE
    if stem.startswith("post_"):
        return run_post(tensors, args), BITWISE
    if stem.startswith("retake_noise_"):
        return {"out.initial_noise": retake_noise(args)}, BITWISE
    if stem.startswith("retake_generate_"):
        return run_retake_generate(dit, tensors, _sampler_kind(manifest, stem), args), GENERATE
    if stem.startswith("flowedit_"):
        return run_flow_edit(dit, tensors, args), GENERATE
    if stem in RUNNERS:
        return RUNNERS[stem](dit, tensors), SINGLE_FORWARD
    if stem.startswith("understand_"):
        return parity_understanding.run(stem, dit, tensors, entry)
    if stem.startswith("pmi_"):
        return parity_pmi.run(tensors, entry)
    if stem in ALIGNMENT_RUNNERS:
        tokenizer = alignment_tokenizer(manifest["_folder"], manifest)
        return ALIGNMENT_RUNNERS[stem](tensors, args, tokenizer), ALIGNMENT
    if stem in ALIGNMENT_DIT_RUNNERS:
        tokenizer = alignment_tokenizer(manifest["_folder"], manifest)
        return ALIGNMENT_DIT_RUNNERS[stem](dit, tensors, args, tokenizer), BITWISE
    return None


def _golden_tensors(golden: Path, name: str, entry: dict) -> dict:
    """A golden file's tensors, with the `in.*` inputs of the file its entry names when it records none."""
    tensors = load_file(str(golden / name))
    if "inputs_from" in entry:
        inputs = load_file(str(golden / entry["inputs_from"]))
        tensors.update({key: value for key, value in inputs.items() if key.startswith("in.")})
    return tensors


def _failure(stem: str, why: str) -> Comparison:
    return Comparison(stem, why, float("inf"), float("inf"), False, False)


def check_golden_dir(golden: str | Path) -> list[Comparison]:
    """Run every boundary of a golden folder; return one comparison per expected tensor, plus a
    failing row for each golden file that is present but unchecked or named but missing."""
    golden = Path(golden)
    _, entries = _manifest_entries(golden)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        dit = load_dit(_checkpoint_copy(golden, entries, Path(scratch)), "cpu", torch.float32)
    rows = []
    present = {p.name for p in golden.glob("*.safetensors")} - CHECKPOINT_FILES
    for name in sorted(present - set(entries)):
        rows.append(_failure(name.removesuffix(".safetensors"), "(present but named by no manifest: not checked)"))
    for name, (manifest, entry) in entries.items():
        stem = name.removesuffix(".safetensors")
        if name not in present:
            rows.append(_failure(stem, "(named by the manifest but missing)"))
            continue
        stale = parity_understanding.stale_models(manifest) if "tiny_tree" in manifest else []
        if stale:
            rows.append(_failure(stem, f"(made from another tiny tree: {', '.join(stale)} changed)"))
            continue
        tensors = _golden_tensors(golden, name, entry)
        with torch.no_grad():
            result = _run_file(dit, stem, tensors, manifest, entry)
        if result is None:
            rows.append(_failure(stem, "(no runner for this golden file: not checked)"))
            continue
        ours, tol = result
        for key, pair in ours.items():
            if isinstance(pair, tuple):  # (ours, expected[, tolerance]) beyond the file's tensors
                rows.append(compare(stem, key, pair[0], pair[1], pair[2] if len(pair) > 2 else tol))
        for key, ref in tensors.items():
            if key.startswith("in."):
                continue
            if key not in ours:
                rows.append(_failure(stem, f"{key} (not produced)"))
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
