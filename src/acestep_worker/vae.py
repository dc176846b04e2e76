"""The Oobleck VAE: latents [B, T, 64] at 25 Hz -> stereo waveforms [B, 2, T * 1920] at 48 kHz."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch
from diffusers import AutoencoderOobleck

from .errors import CheckpointError, GenerationFailed
from .weights import empty_modules, iter_tensors, load_into

# Upstream's tiled decode: 512-frame windows, 64 frames of context on each side, 384-frame cores.
DECODE_CHUNK_FRAMES = 512
DECODE_OVERLAP_FRAMES = 64


def load_vae(folder: str | Path, device: torch.device | str, dtype: torch.dtype) -> AutoencoderOobleck:
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
    vae.enable_tiling()
    vae.tile_latent_min_length = DECODE_CHUNK_FRAMES
    vae.tile_latent_overlap = DECODE_OVERLAP_FRAMES
    return vae.eval().requires_grad_(False)


def check_latents(latents: torch.Tensor) -> None:
    """Refuse latents that would decode to noise bursts or silence instead of saving them."""
    if not torch.isfinite(latents).all():
        raise GenerationFailed("the diffusion model produced NaN or infinite latents; try another seed")
    if not latents.abs().amax().item() > 0:
        raise GenerationFailed("the diffusion model produced all-zero latents")


@torch.no_grad()
def decode(vae: AutoencoderOobleck, latents: torch.Tensor, check: Callable[[], object] | None = None) -> torch.Tensor:
    """Latents [B, T, C] -> float32 waveforms [B, 2, T * hop] on the CPU, peak-limited to 1.

    Each item is decoded on its own: tiling bounds memory per item, and a batch of long songs at
    once would multiply it. Items whose peak exceeds 1 are scaled down to peak 1; quieter ones are
    left untouched (no loudness normalisation, as upstream). `check` runs before each item and may
    raise to stop (a deadline or a cancel).
    """
    check_latents(latents)
    songs = []
    for item in latents:
        if check is not None:
            check()
        z = item.transpose(0, 1).unsqueeze(0).to(device=vae.device, dtype=vae.dtype)
        songs.append(vae.decode(z).sample.float().cpu())
    audio = torch.cat(songs)
    peak = audio.abs().amax(dim=(1, 2), keepdim=True)
    return audio / peak.clamp_min(1.0)
