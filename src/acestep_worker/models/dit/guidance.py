"""Classifier-free guidance rules of the base/sft sampler: APG (default) and ADG, and upstream's two
optional velocity stabilisers (a norm cap and an EMA over steps).

Both guidance rules combine a conditional and an unconditional velocity, shapes [batch, frames, channels].
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

    # Flow-edit averages several guided predictions per step; the momentum must advance once per
    # step (with the averaged difference), not once per prediction, as upstream's flow-edit does.
    def snapshot(self) -> torch.Tensor | float:
        return self._momentum.running_average

    def restore(self, state: torch.Tensor | float) -> None:
        self._momentum.running_average = state

    def advance(self, difference: torch.Tensor) -> None:
        """One momentum update with `difference` = v_cond - v_uncond."""
        self._momentum.update(difference)


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



def plain_cfg(v_cond: torch.Tensor, v_uncond: torch.Tensor, guidance_scale: float, **_: object) -> torch.Tensor:
    """Classic classifier-free guidance, u + g (c - u): upstream guides Heun's corrector with it under APG."""
    return v_uncond + guidance_scale * (v_cond - v_uncond)


def cap_velocity(velocity: torch.Tensor, x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Upstream's velocity norm cap: |v| at most threshold * |x| per item (off at 0)."""
    if threshold <= 0:
        return velocity
    v_norm = torch.linalg.vector_norm(velocity, dim=(1, 2), keepdim=True)
    x_norm = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True) + 1e-10
    return velocity * torch.clamp(threshold * x_norm / (v_norm + 1e-10), max=1.0)


def smooth_velocity(velocity: torch.Tensor, previous: torch.Tensor | None, factor: float) -> torch.Tensor:
    """Upstream's velocity EMA over steps: (1 - f) v + f v_previous (off at 0 or on the first step)."""
    if factor <= 0 or previous is None:
        return velocity
    return (1.0 - factor) * velocity + factor * previous
