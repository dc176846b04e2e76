"""The flow-matching sampling loop shared by the turbo and base/sft models.

The loop keeps the latent in float32 whatever the model dtype (the DiT runs in bf16 on GPUs), takes
Euler steps x <- x - v * (t - t_next) down to t = 0, and for base/sft models combines conditional
and unconditional predictions of one doubled batch inside the CFG interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import torch

from .conditioning import Conditions
from .guidance import ADG, APG
from .model import DiTModel


@dataclass(frozen=True)
class SamplingPlan:
    """How to sample: the timesteps (float32, final 0 implicit) and the guidance rule.

    CFG runs when `guidance_scale > 1`; it is applied on the steps whose t lies inside
    `cfg_interval` (inclusive, compared in float32 as upstream does) and the conditional prediction
    is used on the others.
    """

    timesteps: torch.Tensor
    guidance_scale: float = 1.0
    cfg_interval: tuple[float, float] = (0.0, 1.0)
    guidance: Literal["apg", "adg"] = "apg"

    @property
    def uses_cfg(self) -> bool:
        return self.guidance_scale > 1.0

    @property
    def steps(self) -> int:
        return int(self.timesteps.numel())


@dataclass
class DecoderCall:
    """One DiT evaluation, recorded for parity checks: inputs and raw output, before guidance."""

    timestep: torch.Tensor  # [decoder_batch]
    hidden_states: torch.Tensor  # [decoder_batch, T, C]
    velocity: torch.Tensor  # [decoder_batch, T, C]


@dataclass
class SamplerHooks:
    on_step: Callable[[int, int], None] | None = None  # (steps done, total); may raise to stop
    record: list[DecoderCall] | None = field(default=None)


def _in_interval(t: torch.Tensor, interval: tuple[float, float]) -> bool:
    return bool((t >= interval[0]) & (t <= interval[1]))


@torch.no_grad()
def sample(dit: DiTModel, conditions: Conditions, noise: torch.Tensor, plan: SamplingPlan,
           hooks: SamplerHooks | None = None) -> torch.Tensor:
    """Integrate from `noise` [B, T, C] at t = 1 to a clean latent [B, T, C] (float32)."""
    hooks = hooks or SamplerHooks()
    dtype, device = dit.dtype, dit.device
    encoder_states = conditions.encoder_hidden_states.to(dtype)
    context = conditions.context_latents.to(dtype)
    if plan.uses_cfg:
        null = dit.null_condition_emb.to(dtype).expand_as(encoder_states)
        encoder_states = torch.cat([encoder_states, null])
        context = torch.cat([context, context])
    guide = (ADG() if plan.guidance == "adg" else APG()) if plan.uses_cfg else None

    timesteps = plan.timesteps.to(device=device, dtype=torch.float32)
    next_timesteps = torch.cat([timesteps[1:], timesteps.new_zeros(1)])
    x = noise.to(device=device, dtype=torch.float32)
    for step, (t, t_next) in enumerate(zip(timesteps, next_timesteps)):
        x_in = torch.cat([x, x]) if plan.uses_cfg else x
        t_in = t.expand(x_in.shape[0]).to(dtype)
        velocity = dit.transformer(x_in.to(dtype), t_in, t_in, encoder_states, context,
                                   return_dict=False)[0].float()
        if hooks.record is not None:
            hooks.record.append(DecoderCall(t_in.float().cpu(), x_in.float().cpu(), velocity.cpu()))
        if plan.uses_cfg:
            v_cond, v_uncond = velocity.chunk(2)
            velocity = (guide(v_cond, v_uncond, plan.guidance_scale, x=x, t=t)
                        if _in_interval(t, plan.cfg_interval) else v_cond)
        x = x - velocity * (t - t_next)
        if hooks.on_step is not None:
            hooks.on_step(step + 1, plan.steps)
    return x
