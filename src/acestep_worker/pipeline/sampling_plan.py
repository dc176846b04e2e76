"""From a request to the sampler's inputs under one DiT's rules: the plan and the seeds."""

from __future__ import annotations

import random

import torch

from ..errors import InputError
from ..models.dit.conditioning import codes_to_quantized, detokenize
from ..models.dit.dcw import DCW
from ..models.dit.model import DiTModel
from ..models.dit.sampler import SamplingPlan
from ..models.dit.schedules import base_timesteps, snap_turbo_shift, turbo_timesteps
from ..models.variants import Variant
from ..schema.request import MAX_SEED, GenerationRequest


def codes_to_hints(dit: DiTModel, codes: list[int]) -> torch.Tensor:
    """Audio codes (5 Hz) -> 25 Hz latent hints [5 * len(codes), channels] through the detokenizer."""
    with torch.no_grad():
        indices = torch.tensor(codes, dtype=torch.long, device=dit.device).clamp(0, 63_999).view(1, -1, 1)
        return detokenize(dit, codes_to_quantized(dit, indices))[0]


def sampling_plan(request: GenerationRequest, dit: DiTModel) -> tuple[SamplingPlan, dict]:
    """The sampling plan for `request` under the rules of `dit`'s variant, and what it resolved to.

    Omitted values take the variant's defaults. Turbo models are guidance-distilled: guidance, the
    CFG interval and ADG do not apply to them and are reported as unused rather than rejected, so
    clients that always send upstream's defaults keep working. DCW defaults to on for turbo
    models and off for base/sft, as newest upstream; SDE and the velocity options apply to both.
    """
    rules = dit.variant.rules
    steps = check_sampling(request, dit.variant)
    shift = request.shift if request.shift is not None else rules.default_shift
    dcw_on = request.dcw_enabled if request.dcw_enabled is not None else rules.kind == "turbo"
    dcw = DCW(request.dcw_mode, request.dcw_scaler, request.dcw_high_scaler, request.dcw_wavelet) if dcw_on else None
    options = dict(kind=rules.kind, infer_method=request.infer_method, dcw=dcw,
                   velocity_norm_threshold=request.velocity_norm_threshold,
                   velocity_ema_factor=request.velocity_ema_factor)
    if rules.kind == "turbo":
        shift = snap_turbo_shift(shift)
        timesteps = turbo_timesteps(shift, steps, request.timesteps)
        plan = SamplingPlan(timesteps, **options)
        guidance = None
    else:
        guidance = request.guidance_scale if request.guidance_scale is not None else rules.default_guidance
        plan = SamplingPlan(base_timesteps(steps, shift), guidance_scale=guidance,
                            cfg_interval=(request.cfg_interval_start, request.cfg_interval_end),
                            guidance="adg" if request.use_adg else "apg", **options)
    used = {"inference_steps": plan.steps, "shift": shift, "guidance_scale": guidance,
            "timesteps": [round(t, 6) for t in plan.timesteps.tolist()],
            "guidance": plan.guidance if plan.uses_cfg else None, "infer_method": plan.infer_method,
            "dcw": ({"mode": dcw.mode, "scaler": dcw.scaler, "high_scaler": dcw.high_scaler,
                     "wavelet": dcw.wavelet} if dcw else None)}
    return plan, used


def check_sampling(request: GenerationRequest, variant: Variant) -> int:
    """The step count `request` asks of `variant`; raise InputError for what that model cannot do."""
    rules = variant.rules
    steps = request.inference_steps or rules.default_steps
    if not 1 <= steps <= rules.max_steps:
        raise InputError("inference_steps", f"inference_steps must be between 1 and {rules.max_steps} for "
                         f"{rules.kind} model {variant.name!r}; got {steps}")
    if rules.kind != "turbo" and request.timesteps is not None:
        raise InputError("timesteps", "custom timesteps apply to turbo models only; use "
                         "inference_steps and shift with base/sft models")
    return steps


def resolve_seeds(request: GenerationRequest) -> list[int]:
    """One seed per song. A single seed s seeds the batch as s, s+1, ...; -1 entries are random."""
    count = request.batch_size
    given = None if request.use_random_seed else request.seed
    if given is None:
        return [random.randint(0, MAX_SEED) for _ in range(count)]
    if len(given) == 1:
        base = given[0]
        return [(base + i) % (MAX_SEED + 1) for i in range(count)]
    return [random.randint(0, MAX_SEED) if s == -1 else s for s in given]
