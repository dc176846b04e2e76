"""One generation, top to bottom: a resolved plan and decoded audio in, float32 stereo songs out.

`GenerationPipeline.__call__` reads as the algorithm, one numbered step each: the DiT and the job's
adapters, the sampling schedule, the memory check, the planner's pass, the source and reference
through the VAE, one spec per song, synthesis, and the result with what was used. Every step
takes the values it needs from the plan; none works out again what the plan already says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..audio.finishing import Finishing
from ..models.dit.model import DiTModel
from ..models.registry import ModelRegistry
from ..schema.units import FRAMES_PER_SECOND, SAMPLE_RATE
from .best_of import best_of
from .edit_conditions import encode_edit_audio
from .initial_noise import Retake
from .memory_budget import MemoryBudget, check_fits
from .plan import JobPlan
from .planner_pass import PlannerInputs, planner_pass
from .progress import ProgressTracker
from .sampling_plan import sampling_plan
from .song_specs import song_params, song_specs
from .synthesizer import Synthesizer


@dataclass
class Song:
    audio: np.ndarray  # [samples, 2] float32 in [-1, 1]
    sample_rate: int
    seed: int
    duration_s: float
    extras: dict = field(default_factory=dict)  # per song: LRC, scores, its take (lyric_alignment, best_of)


@dataclass
class GenerationResult:
    songs: list[Song]
    model: str
    random_weights: bool  # made by the tiny random-weight checkpoints: noise, not music
    params: dict  # the values actually used (after defaults and the model's rules)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, plus "total"
    analysis: dict | None = None  # an analysis job's result in upstream's shape (pipeline/understanding.py)


class GenerationPipeline:
    """The models (by name, from the registry) and the synthesizer over their text encoder and VAE."""

    def __init__(self, models: ModelRegistry):
        self.models = models
        self.synthesizer = Synthesizer(models.text_encoder, models.vae)
        settings = models.settings
        self.memory = MemoryBudget(models.device, settings.memory_budget_mb, settings.vae_tile_frames)

    def __call__(self, plan: JobPlan, audio: dict[str, np.ndarray], progress: ProgressTracker,
                 loras=None) -> GenerationResult:
        """Generate the plan's songs. `audio`: the decoded inputs by field, float32 [samples, 2] at 48 kHz,
        those the plan replaces left out. `loras`: the job's adapter session over its adapters, read and
        checked before the lock (models/lora/adapters.py).
        Raises InputError (what does not fit), GenerationCancelled, GenerationFailed."""
        start = time.perf_counter()
        # 1. The DiT, with the job's adapters (a misfit adapter fails the job here, before any work).
        dit = self.models.dit(plan.variant.name)
        adapters = loras.apply(dit) if loras is not None else []
        # 2. The sampling schedule under the DiT's rules.
        schedule, sampling = sampling_plan(plan.request, plan.steps, dit.variant)
        progress.expect_steps(schedule.steps)
        # 3. What would not fit in memory is refused before any model runs, when the length is known.
        if plan.length.known:
            self._check_memory(dit, plan.length.frames, len(plan.seeds), schedule.uses_cfg)
        # 4. The planner: caption, lyrics, metadata and audio codes, as the plan asks.
        resolved = planner_pass(plan.planner, PlannerInputs.from_request(plan.request), self.models.planner,
                                list(plan.seeds), progress)
        frames = plan.frames_after_planner(resolved.duration_s, resolved.codes)
        if not plan.length.known:
            self._check_memory(dit, frames, len(plan.seeds), schedule.uses_cfg)
        # 5. The source and the timbre reference through the VAE.
        edit = encode_edit_audio(self.models.vae, plan, audio, dit.timbre_frames / FRAMES_PER_SECOND, progress)
        # 6. One spec per song: text, metadata, instruction, code hints.
        songs = song_specs(dit, plan, resolved, edit)
        # 7. Encode the prompts, condition, sample, decode, finish (latent shift, normalisation, fades);
        #    read the LRC and scores when asked.
        retake = Retake(plan.retake_seeds, plan.request.retake_variance) if plan.retake_seeds else None
        output = self.synthesizer(dit, songs, frames, schedule, progress, edit, finishing(plan), retake,
                                  plan.alignment)
        # 8. The songs, and what was used to make them; best-of-N keeps the best takes.
        audio_out = output.audio.numpy()
        duration = audio_out.shape[-1] / SAMPLE_RATE
        extras = output.alignment or [{} for _ in songs]
        takes = [Song(np.ascontiguousarray(a.T), SAMPLE_RATE, s.seed, duration, dict(x))
                 for a, s, x in zip(audio_out, songs, extras)]
        kept, ranking = best_of(takes, plan.request.keep_best, plan.request.rank_by)
        result = GenerationResult(
            songs=kept,
            model=dit.variant.name, random_weights=self.models.random_weights,
            params=dict(sampling, **song_params(plan, resolved, self.models.planner), **edit.report(),
                        **output.finishing),
            timings={**resolved.timings, **edit.timings, **output.timings})
        if adapters:
            result.params["loras"] = adapters
        if ranking is not None:
            result.params["takes"] = ranking
        result.timings["total"] = time.perf_counter() - start
        return result

    def _check_memory(self, dit: DiTModel, frames: int, batch: int, uses_cfg: bool) -> None:
        check_fits(dit.transformer.config, frames, batch, uses_cfg, torch.finfo(dit.dtype).bits // 8, self.memory)


def finishing(plan: JobPlan) -> Finishing:
    """The request's finishing fields (schema/request.py), as audio/finishing.py takes them."""
    r = plan.request
    return Finishing(r.enable_normalization, r.normalization_db, r.fade_in_duration, r.fade_out_duration,
                     r.latent_shift, r.latent_rescale)
