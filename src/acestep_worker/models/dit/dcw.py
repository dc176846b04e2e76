"""DCW: the per-step "differential correction in wavelet domain" of newer upstream samplers.

After each sampler step, the new latent x_next [B, T, C] is pushed away from the step's clean
estimate x0 = x_t - v * t, separately in the low and high bands of a one-level Haar wavelet
transform along time:

    low(x_next)  += scaler * t       * low(x_next - x0)    (strongest early, at high noise)
    high(x_next) += high_scaler * (1 - t) * high(x_next - x0)  (strongest late, on detail)

("low" and "high" modes correct one band with `scaler`; "pix" adds scaler * (x_next - x0)
without a transform or time weighting, the paper's latent-space baseline.)

The transform is orthonormal and linear, so the correction is the Haar band projection of the
difference. For Haar, the low band of a frame pair (a, b) projects to their mean and the high
band to half their difference; an odd last frame is paired with a zero (upstream's zero padding).
Written here in plain torch: no wavelet library is needed for one Haar level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

DCW_MODES = ("low", "high", "double", "pix")
DCW_WAVELETS = ("haar",)

DcwMode = Literal["low", "high", "double", "pix"]


@dataclass(frozen=True)
class DCW:
    """DCW settings; upstream's defaults (on for turbo models) are double / 0.05 / 0.02 / haar."""

    mode: DcwMode = "double"
    scaler: float = 0.05
    high_scaler: float = 0.02  # used by "double" only; "high" mode uses `scaler` for its band
    wavelet: str = "haar"

    def __post_init__(self) -> None:
        if self.mode not in DCW_MODES:
            raise ValueError(f"dcw mode {self.mode!r} is not one of {DCW_MODES}")
        if self.wavelet not in DCW_WAVELETS:
            raise ValueError(f"dcw wavelet {self.wavelet!r} is not one of {DCW_WAVELETS}")

    @property
    def active(self) -> bool:
        return self.scaler != 0.0 or (self.mode == "double" and self.high_scaler != 0.0)

    def __call__(self, x_next: torch.Tensor, x0: torch.Tensor, t: float) -> torch.Tensor:
        """Correct `x_next` [B, T, C] given the step's clean estimate `x0` and its time `t`."""
        t = float(t)
        low, high = {"low": (self.scaler * t, 0.0), "high": (0.0, self.scaler * (1 - t)),
                     "double": (self.scaler * t, self.high_scaler * (1 - t)),
                     "pix": (self.scaler, 0.0)}[self.mode]
        if low == 0.0 and high == 0.0:
            return x_next
        diff = (x_next - x0).float()
        if self.mode == "pix":  # the paper's latent-space baseline: no transform at all
            return (x_next.float() + low * diff).to(x_next.dtype)
        low_part, high_part = haar_bands(diff)
        return (x_next.float() + low * low_part + high * high_part).to(x_next.dtype)


def haar_bands(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split [B, T, C] into its one-level Haar low and high bands along T (they sum to x).

    Frames are paired (0, 1), (2, 3), ...; an odd length pairs the last frame with a zero.
    """
    frames = x.shape[1]
    padded = F.pad(x, (0, 0, 0, frames % 2))
    pairs = padded.reshape(x.shape[0], -1, 2, x.shape[2])
    mean = pairs.mean(dim=2, keepdim=True)
    low = mean.expand_as(pairs).reshape(padded.shape)[:, :frames]
    return low, x - low
