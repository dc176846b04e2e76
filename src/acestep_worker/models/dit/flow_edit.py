"""Flow-edit: move a source song from its own text toward a target text along the sampling path.

Upstream's "remix by flow-edit" (ACE-Step 1.5 issue #1156; its sampler is
`acestep/models/common/flow_edit.py` with `flow_edit_helpers.py`). With N steps of the schedule t_0 = 1 > ... > t_N = 0,
the edit acts on the steps i in [int(N * n_min), int(N * n_max)). The edited latent starts as the
clean source x_src; on each edit step, for each of `n_avg` fresh noises e (drawn in order from the
songs' own seeded generators):

    zt_src = (1 - t_i) x_src + t_i e        the source, noised to t_i
    zt_tar = z_edit + zt_src - x_src        the edit, carried along the same noise
    V_src, V_tar = guided velocities of zt_src under the source text and of zt_tar under the target text

and z_edit += (t_{i+1} - t_i) * (mean V_tar - mean V_src). Each branch has its own APG momentum
(advanced once per step, with the mean difference of its draws) and its own velocity EMA (applied once
per step to its mean velocity); the norm cap applies per draw. Steps before the window are skipped.
After it, one more noise e enters the target: x = z_edit + (1 - t) x_src + t e - x_src at the first
step past the window, from where the sampler's plain loop denoises toward the target text alone.

So n_max = 1 returns z_edit itself, and n_min = n_max = 1 returns the source unchanged;
n_min = n_max = k / N is a plain run from the source noised to t_k (a cover's `cover_noise_strength`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from .conditioning import Conditions
from .guidance import cap_velocity, smooth_velocity


def edit_window(steps: int, n_min: float, n_max: float) -> tuple[int, int]:
    """The edited step indices [start, end) of a `steps`-step schedule (Python's int(), as upstream)."""
    return int(steps * n_min), int(steps * n_max)


@dataclass
class FlowEdit:
    """What the sampler needs for a flow-edit, prepared by the pipeline."""

    source_conditions: Conditions  # the source text over the target's audio context
    source_latents: torch.Tensor  # [B, T, C] the clean source x_src
    draw_noise: Callable[[], torch.Tensor]  # fresh [B, T, C] standard normal noise, item i from song i's generator
    n_min: float = 0.0
    n_max: float = 1.0
    n_avg: int = 1

    def window(self, steps: int) -> tuple[int, int]:
        return edit_window(steps, self.n_min, self.n_max)


class Branch(NamedTuple):
    """One trajectory's condition (decoder-ready) and guidance (None without CFG)."""

    condition: Any
    guide: Any


# (x [B, T, C], t, branch, guided now) -> (guided velocity, v_cond - v_uncond or None when unguided)
Predict = Callable[[torch.Tensor, torch.Tensor, Branch, bool], tuple[torch.Tensor, torch.Tensor | None]]


class FlowEditRun:
    """One sampling run's flow-edit state: the window, the source branch and its previous velocity."""

    def __init__(self, flow: FlowEdit, steps: int, source: Branch, device: torch.device):
        self.flow = flow
        self.start, self.end = flow.window(steps)
        self.source = source
        self.source_latents = flow.source_latents.to(device=device, dtype=torch.float32)
        self.previous_source_v: torch.Tensor | None = None

    def initial(self) -> torch.Tensor:
        """z_edit before the first step: the clean source."""
        return self.source_latents.clone()

    def owns(self, step: int) -> bool:
        """Steps before the window's end are flow-edit's (skipped before its start)."""
        return step < self.end

    def _noised_source(self, t: float) -> torch.Tensor:
        noise = self.flow.draw_noise().to(self.source_latents)
        return (1.0 - t) * self.source_latents + t * noise

    def enter_target(self, x_edit: torch.Tensor, t: float) -> torch.Tensor:
        """The target trajectory at the first step past the window: the edit carried onto a fresh noise."""
        return x_edit + self._noised_source(t) - self.source_latents

    def edit_step(self, x_edit: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, t_host: float, guided: bool,
                  target: Branch, previous_target_v: torch.Tensor | None, predict: Predict,
                  options) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the window: z_edit moved by the mean velocity difference. Returns (z_edit, the
        target's mean velocity, which the target's EMA carries on). `t_host`: `t` as a float, read from the
        host copy of the schedule so that a step never waits on the device. `options`: the sampling plan."""
        n = self.flow.n_avg
        branches = {"source": self.source, "target": target}
        before = {name: b.guide.snapshot() for name, b in branches.items() if b.guide is not None}
        sums = {name: torch.zeros_like(x_edit) for name in branches}
        differences: dict[str, torch.Tensor] = {}
        for _ in range(n):
            for name, state in before.items():
                branches[name].guide.restore(state)  # every draw is guided from the step's starting momentum
            zt_src = self._noised_source(t_host)
            latents = {"source": zt_src, "target": x_edit + zt_src - self.source_latents}
            for name, branch in branches.items():
                velocity, difference = predict(latents[name], t, branch, guided)
                if difference is not None:
                    differences[name] = differences[name] + difference if name in differences else difference
                sums[name] = sums[name] + cap_velocity(velocity, latents[name], options.velocity_norm_threshold)
        for name, state in before.items():  # then the momentum advances once, by the mean difference
            branches[name].guide.restore(state)
            if name in differences:
                branches[name].guide.advance(differences[name] / n)
        v_src = smooth_velocity(sums["source"] / n, self.previous_source_v, options.velocity_ema_factor)
        v_tar = smooth_velocity(sums["target"] / n, previous_target_v, options.velocity_ema_factor)
        self.previous_source_v = v_src
        return x_edit + (t_next - t) * (v_tar - v_src), v_tar
