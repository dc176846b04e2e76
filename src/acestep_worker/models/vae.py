"""The Oobleck VAE: stereo 48 kHz waveforms [B, 2, samples] <-> latents [B, T, 64] at 25 Hz."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from diffusers import AutoencoderOobleck
from diffusers.models.autoencoders.autoencoder_oobleck import OobleckDiagonalGaussianDistribution

from ..errors import CheckpointError, GenerationFailed
from ..schema.units import SAMPLE_RATE, SAMPLES_PER_FRAME
from .weights import empty_modules, iter_tensors, load_into

# Upstream's tiled decode: 512-frame windows, 64 frames of context on each side, 384-frame cores.
DECODE_CHUNK_FRAMES = 512
DECODE_OVERLAP_FRAMES = 64
# Upstream's tiled encode: 30 s windows with 2 s of context on each side (26 s cores). Upstream picks
# 30 s where the GPU has more than 8 GB and 15 s on CPUs or smaller GPUs; this service runs on large
# GPUs, so its sources are windowed as upstream windows them there, on every device (also on a CPU).
ENCODE_CHUNK_SAMPLES = SAMPLE_RATE * 30
ENCODE_OVERLAP_SAMPLES = SAMPLE_RATE * 2


def load_vae(folder: str | Path, device: torch.device | str, dtype: torch.dtype,
             tile_frames: int | None = None) -> AutoencoderOobleck:
    """The VAE, ready to decode; `tile_frames` fixes the decode tile (None: see `decode_plan`)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(folder, "VAE folder lacks config.json")
    weights = folder / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise CheckpointError(folder, "VAE weights (diffusion_pytorch_model.safetensors) are missing")
    try:
        config = AutoencoderOobleck.load_config(folder)
        # Built straight on the device in the target dtype without random init; every tensor of
        # the file is then copied once into its parameter (no second, float32 copy of the VAE).
        with warnings.catch_warnings(), empty_modules(device, dtype):
            warnings.simplefilter("ignore", FutureWarning)  # diffusers' Oobleck uses the old weight_norm
            vae = AutoencoderOobleck.from_config(config)
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointError(folder, f"cannot load the VAE: {exc}") from exc
    load_into(dict(vae.state_dict(keep_vars=True)), iter_tensors([weights]), str, folder)
    # Tiling here is diffusers' decode tiling (tile_latent_*). `encode` below windows long audio itself
    # and runs `vae.encoder` on each window, so diffusers' encode tiling (tile_sample_*) is never used.
    vae.enable_tiling()
    vae.tile_latent_min_length = DECODE_CHUNK_FRAMES
    vae.tile_latent_overlap = DECODE_OVERLAP_FRAMES
    vae.decode_tile_frames = tile_frames
    return vae.eval().requires_grad_(False)


def check_latents(latents: torch.Tensor) -> None:
    """Refuse latents that would decode to noise bursts or silence instead of saving them."""
    if not torch.isfinite(latents).all():
        raise GenerationFailed("the diffusion model produced NaN or infinite latents; try another seed")
    if not latents.abs().amax().item() > 0:
        raise GenerationFailed("the diffusion model produced all-zero latents")


# Rough peak bytes of decoder activations per latent frame and per byte of dtype: 1920 samples x
# 128 channels at full rate, five tensors of that size. Measured (real VAE config, random weights,
# float32, CPU, untiled, peak over baseline at 16/32/64 frames): 4.44 MB per frame, linear, i.e.
# 4.5 such tensors live at once; five keeps the estimate above it. Sizes GPU tiles and batches
# against free memory (with half of it kept in reserve) and the memory check's decode share.
_DECODE_BYTES_PER_FRAME_PER_DTYPE_BYTE = SAMPLES_PER_FRAME * 128 * 5


def decode_bytes_per_frame(dtype_bytes: int) -> int:
    """Rough peak bytes of decoder activations per latent frame decoded at once, in a dtype of that size."""
    return _DECODE_BYTES_PER_FRAME_PER_DTYPE_BYTE * dtype_bytes


def decode_plan(vae: AutoencoderOobleck, batch: int, frames: int, tile_frames: int | None = None) -> tuple[int, int]:
    """(tile frames, items decoded together) for a [batch, frames] decode.

    CPUs use upstream's 512-frame tiles one item at a time (memory, not speed, bounds them). On a
    GPU the tile is as large as half the free memory allows, so most songs decode in one piece,
    and as many items as fit decode together. An explicit `tile_frames` (ACESTEP_VAE_TILE_FRAMES)
    wins. Where a song fits in one tile the output equals the untiled decode; with several tiles
    each seam sees `DECODE_OVERLAP_FRAMES` of context per side, as upstream's tiling.
    """
    if vae.device.type != "cuda":
        return tile_frames or DECODE_CHUNK_FRAMES, 1
    free, _ = torch.cuda.mem_get_info(vae.device)
    per_frame = decode_bytes_per_frame(torch.finfo(vae.dtype).bits // 8)
    fitting_frames = max(DECODE_CHUNK_FRAMES, int(free * 0.5) // per_frame)
    tile = tile_frames or max(DECODE_CHUNK_FRAMES, fitting_frames // 64 * 64)
    together = max(1, min(batch, fitting_frames // max(1, min(frames, tile))))
    return tile, together


@torch.no_grad()
def decode(vae: AutoencoderOobleck, latents: torch.Tensor, check: Callable[[], object] | None = None,
           tile_frames: int | None = None, together: int | None = None) -> torch.Tensor:
    """Latents [B, T, C] -> float32 waveforms [B, 2, T * hop] on the CPU, peak-limited to 1.

    Items are decoded in groups sized by `decode_plan` (one at a time on CPUs; `together`
    overrides it). Items whose peak exceeds 1 are scaled down to peak 1 (`limit_peaks`); quieter
    ones are left untouched here (upstream's peak normalisation comes later, after a repaint's
    splice: audio/finishing.py). `check` runs before each group and may raise to stop (a deadline
    or a cancel).
    """
    check_latents(latents)
    tile, planned = decode_plan(vae, latents.shape[0], latents.shape[1],
                                tile_frames or getattr(vae, "decode_tile_frames", None))
    group = together or planned
    vae.tile_latent_min_length = max(tile, 2 * DECODE_OVERLAP_FRAMES + 1)
    songs = []
    # diffusers decodes tile by tile through `vae.decoder`: checking before each call stops a long
    # song within one tile of a deadline or a cancel.
    def before_tile(*_) -> None:  # a pre-hook's non-None return value would replace the tile's input
        check()

    hook = vae.decoder.register_forward_pre_hook(before_tile) if check is not None else None
    try:
        for start in range(0, latents.shape[0], group):
            if check is not None:
                check()
            z = latents[start:start + group].transpose(1, 2).to(device=vae.device, dtype=vae.dtype)
            songs.append(vae.decode(z).sample.float().cpu())
    finally:
        if hook is not None:
            hook.remove()
    return limit_peaks(torch.cat(songs))


def limit_peaks(audio: torch.Tensor) -> torch.Tensor:
    """Upstream's anti-clip after the VAE: each item of [B, 2, samples] whose peak exceeds 1 is
    divided by its peak (dividing the others by 1 leaves them bitwise as they were)."""
    peak = audio.abs().amax(dim=(1, 2), keepdim=True)
    return audio / peak.clamp_min(1.0)


@torch.no_grad()
def encode(vae: AutoencoderOobleck, audio: torch.Tensor, generator: torch.Generator | None = None,
           pad_to_frames: bool = True, chunk: int = ENCODE_CHUNK_SAMPLES,
           overlap: int = ENCODE_OVERLAP_SAMPLES) -> torch.Tensor:
    """Waveforms [B, 2, samples] at 48 kHz -> float32 latents [B, ceil(samples / hop), C] on the VAE's device.

    The audio is zero-padded to whole latent frames; with `pad_to_frames` False it is not, and the
    convolutions drop a last partial frame (floor(samples / hop) frames), as upstream's encode of a
    source for its audio codes does. Upstream samples the posterior; so do we when
    given a `generator` (seeded from the job, so a request stays reproducible), else the
    posterior's mean is returned.

    Audio longer than `chunk` samples is encoded window by window as upstream's `tiled_encode`
    (`encode_windows`): each window's posterior is sampled on its own, with noise of the whole
    window's shape (its context included) drawn from `generator` in window order, and only the
    window's core is kept. The mean (no generator) uses the same windows.
    """
    hop = vae.hop_length
    pad = (-audio.shape[-1]) % hop if pad_to_frames else 0
    x = torch.nn.functional.pad(audio, (0, pad)).to(device=vae.device, dtype=vae.dtype)
    if x.shape[-1] <= chunk:
        return _latents(_posterior(vae, x), generator).float().transpose(1, 2)
    cores, factor = [], None
    for window in encode_windows(x.shape[-1], chunk, overlap):
        moments = _posterior(vae, x[:, :, window.start:window.end])
        latents = _latents(moments, generator)
        if factor is None:  # upstream measures the samples per latent frame on the first window only
            factor = (window.end - window.start) / latents.shape[-1]
        cores.append(window.core(latents, factor))
    # Upstream writes the cores into a buffer of round(samples / factor) frames and cuts it to what was
    # written: the cores joined, wherever upstream's buffer holds them (it does for whole-hop factors).
    return torch.cat(cores, dim=-1).float().transpose(1, 2)


@dataclass(frozen=True)
class EncodeWindow:
    """One window of a long encode: audio [start, end) of which [core_start, core_end) is kept."""

    start: int
    end: int
    core_start: int
    core_end: int

    def core(self, latents: torch.Tensor, factor: float) -> torch.Tensor:
        """The window's latents [B, C, frames] less its context on each side, each side rounded to
        whole frames at `factor` samples per frame (Python's round, as upstream's)."""
        left = int(round((self.core_start - self.start) / factor))
        right = int(round((self.end - self.core_end) / factor))
        return latents[:, :, left:latents.shape[-1] - right if right > 0 else latents.shape[-1]]


def encode_windows(samples: int, chunk: int = ENCODE_CHUNK_SAMPLES,
                   overlap: int = ENCODE_OVERLAP_SAMPLES) -> list[EncodeWindow]:
    """Upstream's encode windows for `samples` samples: cores of chunk - 2 * overlap samples from the
    start (the last one shorter), each widened by `overlap` on both sides within the audio."""
    stride = chunk - 2 * overlap
    if stride <= 0:
        raise ValueError(f"an encode chunk of {chunk} samples must exceed twice the overlap ({overlap})")
    windows = []
    for core_start in range(0, samples, stride):
        core_end = min(core_start + stride, samples)
        windows.append(EncodeWindow(max(0, core_start - overlap), min(samples, core_end + overlap),
                                    core_start, core_end))
    return windows


def _posterior(vae: AutoencoderOobleck, x: torch.Tensor) -> OobleckDiagonalGaussianDistribution:
    """The encoder's posterior over all of `x` (what `vae.encode` returns without diffusers' tiling)."""
    return OobleckDiagonalGaussianDistribution(vae.encoder(x))


def _latents(posterior: OobleckDiagonalGaussianDistribution, generator: torch.Generator | None) -> torch.Tensor:
    return posterior.mean if generator is None else _sample(posterior, generator)


def _sample(posterior, generator: torch.Generator) -> torch.Tensor:
    """Posterior sample with noise drawn on the generator's device (CPU: the same on every device)."""
    noise = torch.randn(posterior.mean.shape, generator=generator, dtype=torch.float32,
                        device=generator.device).to(posterior.mean)
    return posterior.mean + posterior.std * noise
