"""One generation, top to bottom: a resolved plan and decoded audio in, float32 stereo songs out.

`GenerationPipeline.__call__` reads as the algorithm, one numbered step each: the DiT and the job's
adapters, the sampling schedule, the memory check (which splits a several-stem job into the fewest
batches that fit), the planner's pass, the source and reference through the VAE (once per job), one
spec per (stem, take), synthesis batch by batch, and the result with what was used. Every step
takes the values it needs from the plan; none works out again what the plan already says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..audio.finishing import Finishing, finish
from ..models.dit.model import DiTModel
from ..models.registry import ModelRegistry
from ..schema.units import FRAMES_PER_SECOND, SAMPLE_RATE
from .best_of import best_of
from .edit_conditions import encode_edit_audio
from .initial_noise import Retake
from .memory_budget import MemoryBudget, check_fits, largest_batch
from .plan import JobPlan
from .planner_pass import PlannerInputs, planner_pass
from .progress import ProgressTracker
from .quality_pass import score_songs
from .sampling_plan import sampling_plan
from .song_specs import song_params, song_specs
from .stems import stem_songs
from .synthesizer import SynthesisOutput, Synthesizer


@dataclass
class Song:
    audio: np.ndarray  # [samples, 2] float32 in [-1, 1]
    sample_rate: int
    seed: int
    duration_s: float
    stem: str | None = None  # the track it is, in a job that names stems
    take: int = 0  # which of the batch_size takes it is (every stem of a take shares its seeds)
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
        # 3. What would not fit in memory is refused before any model runs, when the length is known; a
        #    several-stem job is split into the fewest DiT batches that fit instead.
        if plan.length.known:
            plan = self._fit_memory(dit, plan, plan.length.frames, schedule.uses_cfg)
        # 4. The planner: caption, lyrics, metadata and audio codes, as the plan asks.
        resolved = planner_pass(plan.planner, PlannerInputs.from_request(plan.request), self.models.planner,
                                list(plan.seeds), progress)
        frames = plan.frames_after_planner(resolved.duration_s, resolved.codes)
        if not plan.length.known:
            plan = self._fit_memory(dit, plan, frames, schedule.uses_cfg)
        # 5. The source and the timbre reference through the VAE, once for every stem and batch.
        edit = encode_edit_audio(self.models.vae, plan, audio, dit.timbre_frames / FRAMES_PER_SECOND, progress)
        # 6-7. One spec per (stem, take); encode the prompts, condition, sample, shift the latents, decode,
        #      batch by batch; read the LRC and scores when asked.
        output = self._synthesize(dit, plan, resolved, edit, frames, schedule, progress)
        # 8. The songs (a derived stem from the source and its part), each finished as upstream finishes a
        #    song (peak normalisation, fades; after the instrumental is taken from the unscaled source and
        #    vocals), and what was used to make them; best-of-N keeps the best takes.
        source = edit.source.audio if edit.source is not None else None
        songs = stem_songs(plan, output.audio, source)
        audio, applied = finish(torch.stack([song.audio for song in songs]), finishing(plan), SAMPLE_RATE)
        duration = audio.shape[-1] / SAMPLE_RATE
        takes = [Song(np.ascontiguousarray(wave.numpy().T), SAMPLE_RATE, s.seed, duration, s.stem, s.take, extras)
                 for s, wave, extras in zip(songs, audio, _aligned(plan, songs, output.alignment), strict=True)]
        quality_params, quality_timings = score_songs(plan, resolved, self.models.planner, takes)
        kept, ranking = best_of(takes, plan.request.keep_best, plan.request.rank_by)
        if ranking is not None:  # per-song finishing figures follow the songs delivered, best first
            applied["normalization_gain_db"] = [applied["normalization_gain_db"][song.take] for song in kept]
        result = GenerationResult(
            songs=kept,
            model=dit.variant.name, random_weights=self.models.random_weights,
            params=dict(sampling, **song_params(plan, resolved, self.models.planner), **edit.report(),
                        **applied, **quality_params),
            timings={**resolved.timings, **edit.timings, **output.timings, **quality_timings})
        if adapters:
            result.params["loras"] = adapters
        if ranking is not None:
            result.params["takes"] = ranking
        result.timings["total"] = time.perf_counter() - start
        return result

    def _synthesize(self, dit: DiTModel, plan: JobPlan, resolved, edit, frames: int, schedule,
                    progress: ProgressTracker) -> SynthesisOutput:
        """The plan's batches through the synthesizer, their songs in row order and stage times summed."""
        batches = plan.batches
        progress.expect_passes(len(batches))
        outputs = [self.synthesizer(dit, song_specs(dit, plan, resolved, edit, rows), frames, schedule, progress, edit,
                                    finishing(plan), _retake(plan, rows), plan.alignment)
                   for rows in batches]
        if len(outputs) == 1:
            return outputs[0]
        timings: dict[str, float] = {}
        for out in outputs:
            for name, seconds in out.timings.items():
                timings[name] = timings.get(name, 0.0) + seconds
        aligned = None if outputs[0].alignment is None else [x for out in outputs for x in out.alignment]
        return SynthesisOutput(torch.cat([out.audio for out in outputs]), frames, timings, aligned)

    def _fit_memory(self, dit: DiTModel, plan: JobPlan, frames: int, uses_cfg: bool) -> JobPlan:
        """Refuse what would not fit; a several-stem job gets the rows one DiT batch may hold."""
        config, dtype_bytes = dit.transformer.config, torch.finfo(dit.dtype).bits // 8
        if not plan.splits_stems:
            check_fits(config, frames, len(plan.seeds), uses_cfg, dtype_bytes, self.memory)
            return plan
        return plan.with_batch_limit(largest_batch(config, frames, len(plan.rows), uses_cfg, dtype_bytes, self.memory))


def _aligned(plan: JobPlan, songs, aligned: list[dict] | None) -> list[dict]:
    """Each song's LRC and scores, from the row the DiT made it in (a derived stem, taken from the source
    and another stem, has none)."""
    if aligned is None:
        return [{} for _ in songs]
    by_row = {(row.stem, row.take): extras for row, extras in zip(plan.rows, aligned, strict=True)}
    return [dict(by_row.get((song.stem, song.take), {})) for song in songs]


def _retake(plan: JobPlan, rows) -> Retake | None:
    """The retake of one batch's rows: each row takes its take's retake seed (every stem of a take alike)."""
    if not plan.retake_seeds:
        return None
    return Retake(tuple(plan.retake_seeds[row.take] for row in rows), plan.request.retake_variance)


def finishing(plan: JobPlan) -> Finishing:
    """The request's finishing fields (schema/request.py), as audio/finishing.py takes them."""
    r = plan.request
    return Finishing(r.enable_normalization, r.normalization_db, r.fade_in_duration, r.fade_out_duration,
                     r.latent_shift, r.latent_rescale)
