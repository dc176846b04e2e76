"""What the sampler does differently on upstream's editing paths (repaint, lego, cover).

Shapes: latents [batch, frames, channels] at 25 Hz; masks [batch, frames] bool, True = generate.

* Repaint/lego: after the first `injection_steps` sampler steps, frames outside the region are
  replaced by the source re-noised to the time the step landed on, with the *initial* noise; at the
  end the generated region is faded into the kept source over `crossfade_frames` on each side.
* Cover strength: from step `at_step` on, the sampler switches to a second condition built as
  text2music (the guidance momentum carries over, as upstream's does).
* Cover noise: the sampler starts from the source re-noised to the first kept timestep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .conditioning import Conditions
from .flow_edit import FlowEdit


@dataclass
class Repaint:
    mask: torch.Tensor  # [B, T] bool, True = generate (the repaint range)
    clean: torch.Tensor  # [B, T, C] the unmodified source latents
    injection_steps: int  # inject after steps 0 .. injection_steps - 1
    crossfade_frames: int

    def inject(self, x: torch.Tensor, noise: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """Keep the generated region; put the source, noised to `t_next`, everywhere else."""
        renoised = t_next * noise + (1 - t_next) * self.clean.to(x)
        return torch.where(self.mask.to(x.device)[..., None], x, renoised)

    def blend(self, x: torch.Tensor) -> torch.Tensor:
        """Outside the region the source is kept, with a linear fade over `crossfade_frames`."""
        weight = crossfade_weights(self.mask, self.crossfade_frames).to(x)[..., None]
        return weight * x + (1 - weight) * self.clean.to(x)


@dataclass
class CoverSwitch:
    conditions: Conditions  # the text2music ("non-cover") condition
    at_step: int  # the first step that uses it


@dataclass
class Edit:
    """Everything that turns a plain text2music sampling run into an editing one."""

    start: torch.Tensor | None = None  # [B, T, C] latents at the first timestep (cover noise)
    repaint: Repaint | None = None
    cover_switch: CoverSwitch | None = None
    flow_edit: FlowEdit | None = None  # morph the source toward the target text (flow_edit.py)


def ramp(n: int) -> torch.Tensor:
    """n weights strictly between 0 and 1, rising (upstream's linspace(0, 1, n + 2) without ends)."""
    return torch.linspace(0.0, 1.0, n + 2)[1:-1]


def crossfade_weights(mask: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, T] weight of the generated latents: 1 inside the region, a ramp of up to `frames`
    frames on each side (shortened at the clip ends), 0 elsewhere. A row without any region
    keeps the source entirely; a row that is all region keeps the generated latents."""
    mask = mask.bool().cpu()
    weights = mask.float().clone()
    for row, region in zip(weights, mask):
        inside = region.nonzero().flatten()
        if inside.numel() == 0 or frames <= 0:
            continue
        start, end = int(inside[0]), int(inside[-1]) + 1
        before = min(frames, start)
        if before:
            row[start - before:start] = ramp(before)
        after = min(frames, region.numel() - end)
        if after:
            row[end:end + after] = ramp(after).flip(0)
    return weights


def nearest_start(timesteps: torch.Tensor, cover_noise_strength: float) -> int:
    """Index of the schedule entry nearest 1 - strength, where a cover-noise run starts."""
    target = 1.0 - cover_noise_strength
    return int((timesteps - target).abs().argmin())


def renoise(latents: torch.Tensor, noise: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """The flow-matching interpolation x_t = t * noise + (1 - t) * x0."""
    return t * noise + (1 - t) * latents
