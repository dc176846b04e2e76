"""Several stems from one job: the rows the DiT made, batch by batch, become the songs the result lists.

A derived stem is not extracted: the instrumental is the source song minus its vocals stem, sample by
sample. Upstream's checkpoints are trained on twelve track names (acestep/constants.py TRACK_NAMES:
no instrumental or accompaniment track), so "Extract the INSTRUMENTAL track" would be an instruction
the model never saw, and it would cost a DiT row of its own. Subtracting in the latents instead would
cost a VAE decode and would not add up: the VAE is not linear, so decode(z_src - z_vocals) + vocals is
not the source. In the waveform, vocals + instrumental is the source exactly, up to the clip to
[-1, 1] every song gets (bench/stems.py measures all three).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schema.task_types import DERIVED_STEMS
from .plan import JobPlan


@dataclass
class StemSong:
    stem: str | None  # None: the job names no stem
    seed: int
    audio: torch.Tensor  # [2, samples] float32
    take: int = 0  # which of the batch_size takes it is (its seed's and retake seed's index)


def stem_songs(plan: JobPlan, audio: torch.Tensor, source: torch.Tensor | None) -> list[StemSong]:
    """The result's songs from the DiT's: `audio` [rows, 2, samples] in the order of `plan.rows`, `source`
    the source waveform [2, samples'] a derived stem is taken from. Stem by stem as asked, take by take."""
    rows = plan.rows
    if not plan.stems:
        return [StemSong(None, row.seed, wave, row.take) for row, wave in zip(rows, audio, strict=True)]
    made = {(row.stem, row.take): wave for row, wave in zip(rows, audio, strict=True)}
    songs = []
    for stem in plan.stems:
        for take, seed in enumerate(plan.seeds):
            if stem in DERIVED_STEMS:
                part = made[(DERIVED_STEMS[stem], take)]
                wave = (source[:, : part.shape[-1]].to(part) - part).clamp(-1.0, 1.0)
            else:
                wave = made[(stem, take)]
            songs.append(StemSong(stem, seed, wave, take))
    return songs
