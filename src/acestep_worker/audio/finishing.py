"""Upstream's finishing of decoded songs: latent shift/rescale before the VAE, then peak normalisation
and linear fades on each waveform.

Upstream order (ACE-Step 1.5, `generate_music_decode.py` and `inference.py`), which the pipeline
keeps: latents * rescale + shift -> VAE decode -> anti-clip (a song peaking above 1 is divided by
its peak) -> repaint splice -> `normalize` -> `fade` -> encode. Peak normalisation is on by default
upstream: each song is scaled so that its peak sits at `normalization_db` dBFS (-1), one gain per
song; a song whose peak is below 1e-6 is left as it is. Fades are linear ramps over
round(seconds * sample_rate) samples, clamped to the song; a fade-in and a fade-out that overlap both
apply. Everything here is plain torch on float32 [2, samples] songs, written with upstream's
operations so that the results are bitwise upstream's (tests/golden/turbo_a/manifest_post.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SILENT_PEAK = 1e-6  # below this peak a song is not normalised (upstream: no extreme gain on silence)


@dataclass(frozen=True)
class Finishing:
    """What to do to a batch's latents before the VAE and to each decoded song after it. The
    defaults are upstream's."""

    normalize: bool = True  # upstream `enable_normalization`
    normalization_db: float = -1.0  # the peak level, dBFS (upstream normalises only at or below 0)
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    latent_shift: float = 0.0
    latent_rescale: float = 1.0

    @property
    def normalizes(self) -> bool:
        return self.normalize and self.normalization_db <= 0.0


def adjust_latents(latents: torch.Tensor, shift: float = 0.0, rescale: float = 1.0) -> torch.Tensor:
    """Upstream's latent post-processing before the VAE: latents * rescale + shift (neutral values:
    the same tensor, untouched)."""
    if shift == 0.0 and rescale == 1.0:
        return latents
    return latents * rescale + shift


def normalize(song: torch.Tensor, target_db: float = -1.0) -> tuple[torch.Tensor, float | None]:
    """One song scaled so that its peak is `target_db` dBFS, and the linear gain applied (None: the
    song is silent, below `SILENT_PEAK`, and comes back unchanged)."""
    peak = torch.max(torch.abs(song))
    if peak < SILENT_PEAK:
        return song, None
    gain = 10 ** (target_db / 20.0) / peak  # a tensor: Python scalar / tensor, as upstream computes it
    return song * gain, float(gain)


def fade_samples(seconds: float, sample_rate: int) -> int:
    """Samples of a fade of `seconds` (Python's round, as upstream)."""
    return round(seconds * sample_rate)


def fade(song: torch.Tensor, fade_in: int = 0, fade_out: int = 0) -> torch.Tensor:
    """Linear fade-in over the first `fade_in` samples and fade-out over the last `fade_out`, each
    clamped to the song's length (a copy; no fade: the song itself)."""
    if fade_in <= 0 and fade_out <= 0:
        return song
    out = song.clone()
    total = out.shape[-1]
    if fade_in > 0:
        n = min(fade_in, total)
        out[..., :n] = out[..., :n] * torch.linspace(0.0, 1.0, n, dtype=out.dtype, device=out.device)
    if fade_out > 0:
        n = min(fade_out, total)
        out[..., total - n:] = out[..., total - n:] * torch.linspace(1.0, 0.0, n, dtype=out.dtype, device=out.device)
    return out


def finish(audio: torch.Tensor, finishing: Finishing, sample_rate: int) -> tuple[torch.Tensor, dict]:
    """Normalise then fade each song of [B, 2, samples]; returns the songs and what was applied (the
    gain per song in dB, None where a song was silent or normalisation is off)."""
    fade_in, fade_out = fade_samples(finishing.fade_in_s, sample_rate), fade_samples(finishing.fade_out_s, sample_rate)
    songs, gains_db = [], []
    for song in audio:
        gain = None
        if finishing.normalizes:
            song, gain = normalize(song, finishing.normalization_db)
        gains_db.append(None if gain is None else round(20 * math.log10(gain), 4))
        songs.append(fade(song, fade_in, fade_out))
    changed = finishing.normalizes or fade_in > 0 or fade_out > 0
    report = {"enable_normalization": finishing.normalize, "normalization_db": finishing.normalization_db,
              "normalization_gain_db": gains_db, "fade_in_duration": finishing.fade_in_s,
              "fade_out_duration": finishing.fade_out_s, "fade_in_samples": min(fade_in, audio.shape[-1]),
              "fade_out_samples": min(fade_out, audio.shape[-1]), "latent_shift": finishing.latent_shift,
              "latent_rescale": finishing.latent_rescale}
    return (torch.stack(songs) if changed and songs else audio), report
