"""The songs' starting noise: each song's own, from its seed, blended with a retake's when one is asked.

Upstream (newest `generate_audio`; its MLX port `acestep/models/mlx/dit_generate.py` does the same) draws
the noise n0 from the songs' seeds and, only while `retake_variance` v > 0, a second noise nr the same way
from the retake seeds, then starts from cos(v*pi/2)*n0 + sin(v*pi/2)*nr. The blend keeps unit variance:
v = 0 is the song itself, v = 1 the retake seed's own song, and a small v a nearby take. Everything after
starts from the blend (cover noise, repaint injection, the sampler), so a retake works on every task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Retake:
    """A job's retake: one retake seed per song and the share v in [0, 1] of their noise."""

    seeds: tuple[int, ...]
    variance: float


def draw_noise(generators: list[torch.Generator], frames: int, channels: int) -> torch.Tensor:
    """[B, frames, channels] standard normal noise, item i from generator i.

    Drawn on the CPU in float32 so that a seed gives the same starting point on every device.
    """
    return torch.cat([torch.randn((1, frames, channels), generator=g) for g in generators])


def retake_blend(noise: torch.Tensor, retake_noise: torch.Tensor, variance: float) -> torch.Tensor:
    """cos(v*pi/2) * noise + sin(v*pi/2) * retake_noise, in upstream's order of operations (bitwise)."""
    angle = variance * (math.pi / 2.0)
    return math.cos(angle) * noise + math.sin(angle) * retake_noise


def initial_noise(seeds: list[int], frames: int, channels: int,
                  retake: Retake | None = None) -> tuple[torch.Tensor, list[torch.Generator]]:
    """The batch's starting noise [B, frames, channels] and the songs' generators (an SDE run keeps
    drawing its step noise from them). Without a retake, or at v = 0, it is exactly the songs' own noise."""
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    noise = draw_noise(generators, frames, channels)
    if retake is not None and retake.variance > 0:
        if len(retake.seeds) != len(seeds):
            raise ValueError(f"{len(retake.seeds)} retake seeds for {len(seeds)} songs")
        retake_generators = [torch.Generator("cpu").manual_seed(seed) for seed in retake.seeds]
        noise = retake_blend(noise, draw_noise(retake_generators, frames, channels), retake.variance)
    return noise, generators
