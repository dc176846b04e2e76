"""Timestep schedules of the two ACE-Step 1.5 samplers.

t runs from 1 (pure noise) towards 0 (clean latent): x_t = t * noise + (1 - t) * x0. A schedule
lists the t of every DiT call; the final 0 is implicit.
"""

from __future__ import annotations

from typing import Sequence

import torch

TURBO_SHIFTS = (1.0, 2.0, 3.0)
TURBO_STEPS = 8
MAX_CUSTOM_TIMESTEPS = 20


def shifted(t: float, shift: float) -> float:
    """The flow-matching time shift s*t / (1 + (s-1)*t): larger s spends more steps near noise."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def _turbo_table(shift: float) -> list[float]:
    return [shifted(1.0 - i / TURBO_STEPS, shift) for i in range(TURBO_STEPS)]


# The turbo model was distilled on these 8-step schedules only; every turbo timestep is one of
# these 20 distinct values (1.0, 0.5 and 0.75 are shared between shifts).
TURBO_GRID = sorted({t for s in TURBO_SHIFTS for t in _turbo_table(s)}, reverse=True)


def snap_turbo_shift(shift: float) -> float:
    """Nearest distilled shift; a tie goes to the smaller one."""
    return min(TURBO_SHIFTS, key=lambda s: abs(s - shift))


def _snap_to_turbo_grid(t: float) -> float:
    return min(TURBO_GRID, key=lambda g: abs(g - t))


def turbo_timesteps(shift: float, steps: int = TURBO_STEPS,
                    timesteps: Sequence[float] | None = None) -> torch.Tensor:
    """The turbo sampler's schedule as a float32 tensor.

    With `timesteps`, trailing zeros are dropped, the list is cut to 20 entries, every value is
    snapped to the turbo grid and repeats that snapping creates are merged. Otherwise the shift is snapped to 1, 2 or 3; 8 steps give exactly
    the distilled table, fewer steps the shift formula at that count, snapped to the grid.
    """
    if timesteps is not None:
        values = list(timesteps)
        while values and values[-1] == 0:
            values.pop()
        values = [_snap_to_turbo_grid(float(t)) for t in values[:MAX_CUSTOM_TIMESTEPS]]
        # Close times snap to one grid value; a repeat would be a zero-length step (a wasted DiT call).
        values = [t for i, t in enumerate(values) if i == 0 or t != values[i - 1]]
    else:
        snapped = snap_turbo_shift(shift)
        values = [_snap_to_turbo_grid(shifted(1.0 - i / steps, snapped)) for i in range(steps)]
    return torch.tensor(values, dtype=torch.float32)


def base_timesteps(steps: int, shift: float) -> torch.Tensor:
    """The base/sft sampler's schedule: linspace(1, 0) shifted, computed in float32 tensor ops as
    upstream does (the parity data depends on the rounding of those ops). Excludes the final 0."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)
    if shift != 1.0:
        t = shift * t / (1 + (shift - 1) * t)
    return t[:-1]
