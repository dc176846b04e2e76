"""Will a generation fit in memory? An estimate from the DiT's dimensions, checked before it runs.

The weights are already resident; what a request adds grows with batch x duration: the DiT's
activations for one forward of the (CFG-doubled) batch, the float32 latents the sampler keeps, the
VAE's tiled decode of one song at a time, and the float32 waveforms of the whole batch on the host.
The estimate errs high (every intermediate of a layer counted as alive at once), so a refusal
names a batch that really fits. `available_bytes` asks the device; `ACESTEP_MEMORY_BUDGET_MB`
overrides it (operations, tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..models.vae import DECODE_CHUNK_FRAMES, decode_bytes_per_frame
from ..schema.units import FRAMES_PER_SECOND, LATENT_CHANNELS, SAMPLES_PER_FRAME


@dataclass(frozen=True)
class Need:
    device_bytes: int
    host_bytes: int


def generation_need(config, frames: int, batch: int, cfg: bool, dtype_bytes: int,
                    tile_frames: int | None = None) -> Need:
    """Bytes a request adds on the device and on the host (beyond the loaded weights); `dtype_bytes`
    is the engine's dtype, which the DiT and the VAE share; `tile_frames` the operator's VAE tile
    (ACESTEP_VAE_TILE_FRAMES), if set."""
    rows = batch * (2 if cfg else 1)
    tokens = math.ceil(frames / int(getattr(config, "patch_size", 2) or 2))
    hidden, inner = int(config.hidden_size), int(config.intermediate_size)
    # One layer's live tensors: the residual stream, q/k/v/out projections and the gated MLP's three
    # intermediates, plus the cross-attention's projections; then the sampler's float32 state.
    per_token = dtype_bytes * (8 * hidden + 3 * inner)
    activations = rows * tokens * per_token
    latents = 4 * rows * frames * LATENT_CHANNELS * 4  # x, velocity, guidance temporaries (float32)
    # The decode's floor: one song, one tile of the operator's size, else of DECODE_CHUNK_FRAMES.
    # Unset, `vae.decode_plan` takes larger tiles and groups of songs only when the memory free at
    # decode time allows them; set, it always takes that tile.
    decode = min(frames, tile_frames or DECODE_CHUNK_FRAMES) * decode_bytes_per_frame(dtype_bytes)
    audio = batch * 2 * frames * SAMPLES_PER_FRAME * 4
    return Need(activations + latents + decode, 2 * audio)  # the waveforms, and one encoded copy


def available_bytes(device: torch.device, override_mb: float | None = None) -> tuple[int, int]:
    """(device bytes free, host bytes free). On a CPU both are the host's available memory."""
    if override_mb is not None:
        budget = int(override_mb * 1_000_000)
        return budget, budget
    host = _host_available()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Memory PyTorch holds in its cache but does not use is free for this request too.
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return free, host
    return host, host


def _host_available() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62  # unknown: do not refuse


@dataclass(frozen=True)
class MemoryBudget:
    """Where a generation runs and what it may use: the device, the operator's budget
    (ACESTEP_MEMORY_BUDGET_MB) instead of what the device reports free, and the operator's VAE tile."""

    device: torch.device
    override_mb: float | None = None
    tile_frames: int | None = None


def _fitter(config, frames: int, cfg: bool, dtype_bytes: int, budget: MemoryBudget, songs: int | None = None):
    """fits(size): would one DiT batch of `size` items fit, with `songs` finished waveforms (default: the
    batch's own) held on the host?"""
    device_free, host_free = available_bytes(budget.device, budget.override_mb)
    shared = budget.device.type != "cuda" or budget.override_mb is not None  # one pool: add both needs

    def fits(size: int) -> bool:
        need = generation_need(config, frames, size, cfg, dtype_bytes, budget.tile_frames)
        host = need.host_bytes * (songs or size) // size
        if shared:
            return need.device_bytes + host <= device_free
        return need.device_bytes <= device_free and host <= host_free

    return fits


def check_fits(config, frames: int, batch: int, cfg: bool, dtype_bytes: int, budget: MemoryBudget) -> None:
    """Raise InputError naming the largest batch that fits when this request would not."""
    fits = _fitter(config, frames, cfg, dtype_bytes, budget)
    if fits(batch):
        return
    largest = max((size for size in range(1, batch) if fits(size)), default=0)
    if largest:
        raise InputError("batch_size", f"{batch} songs of {frames / FRAMES_PER_SECOND:g} s would not fit in the "
                         f"memory this {budget.device.type} has free; the largest batch that fits is {largest} (or "
                         "ask for a shorter duration)")
    _refuse_alone(frames, budget)


def largest_batch(config, frames: int, rows: int, cfg: bool, dtype_bytes: int, budget: MemoryBudget) -> int:
    """How many of `rows` items (a several-stem job's) one DiT batch may hold, all `rows` waveforms kept on the
    host until the job ends; InputError when not even one fits."""
    fits = _fitter(config, frames, cfg, dtype_bytes, budget, songs=rows)
    largest = max((size for size in range(1, rows + 1) if fits(size)), default=0)
    if not largest and rows > 1 and _fitter(config, frames, cfg, dtype_bytes, budget)(1):
        raise InputError("track_name", f"{rows} songs of {frames / FRAMES_PER_SECOND:g} s (stems x batch_size) would "
                         f"not fit in the memory this {budget.device.type} has free; ask for fewer stems or songs")
    if not largest:
        _refuse_alone(frames, budget)
    return largest


def _refuse_alone(frames: int, budget: MemoryBudget) -> None:
    raise InputError("duration", f"a song of {frames / FRAMES_PER_SECOND:g} s would not fit in the memory this "
                     f"{budget.device.type} has free, even alone; ask for a shorter duration")
