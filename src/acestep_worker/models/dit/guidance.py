"""Classifier-free guidance rules of the base/sft sampler: APG (default) and ADG.

Both combine a conditional and an unconditional velocity, shapes [batch, frames, channels].
"""

from __future__ import annotations

import torch
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance

APG_MOMENTUM = -0.75
APG_NORM_THRESHOLD = 2.5
ADG_ANGLE_CLIP = 3.14 / 6  # upstream's literal, deliberately not math.pi / 6


class APG:
    """Adaptive projected guidance with a momentum buffer that lives for one generation.

    Norms and the projection run along the time axis (dim 1), per item and channel. The buffer only
    advances on steps where guidance is applied.
    """

    def __init__(self) -> None:
        self._momentum = MomentumBuffer(APG_MOMENTUM)

    def __call__(self, v_cond: torch.Tensor, v_uncond: torch.Tensor, guidance_scale: float,
                 **_: object) -> torch.Tensor:
        return normalized_guidance(
            v_cond, v_uncond, guidance_scale - 1.0, momentum_buffer=self._momentum, eta=0.0,
            norm_threshold=APG_NORM_THRESHOLD, use_original_formulation=True, norm_dim=(1,),
        )


class ADG:
    """Angle-domain guidance: rotate the conditional x0 estimate away from the unconditional one.

    Per frame, over the channel axis: the angle between the two x0 estimates is scaled by
    w = max(g - 1, 0) + 1e-3 and clipped, and the result is turned back into a velocity at the
    current time t. Angles are computed in float64.
    """

    def __call__(self, v_cond: torch.Tensor, v_uncond: torch.Tensor, guidance_scale: float, *,
                 x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = t.to(x.dtype).reshape(-1, 1, 1)
        weight = max(guidance_scale - 1.0, 0.0) + 1e-3

        x0_cond = x - sigma * v_cond
        x0_uncond = x - sigma * v_uncond
        theta = _angle(x0_cond.double(), x0_uncond.double())  # [B, T, 1]
        theta_new = torch.clamp(weight * theta, -ADG_ANGLE_CLIP, ADG_ANGLE_CLIP)

        delta = (x0_cond - x0_uncond).float()
        base = x0_uncond.float()
        coef = (delta * base).sum(-1, keepdim=True) / ((base * base).sum(-1, keepdim=True) + 1e-8)
        perpendicular = delta - coef * base

        sin_theta = torch.sin(theta)
        small = sin_theta <= 1e-3
        rotation = torch.where(small, torch.full_like(theta, weight), torch.sin(theta_new) / sin_theta)
        x0_new = torch.cos(theta_new) * x0_cond + perpendicular * rotation
        return ((x - x0_new) / sigma).to(x.dtype)


def _angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a / torch.linalg.vector_norm(a, dim=-1, keepdim=True)
    b = b / torch.linalg.vector_norm(b, dim=-1, keepdim=True)
    cos = (a * b).sum(-1, keepdim=True).clamp(-1.0 + 1e-6, 1.0 - 1e-6)
    return torch.acos(cos)

