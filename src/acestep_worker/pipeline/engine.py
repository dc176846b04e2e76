"""The engine: the models loaded once, and one generation at a time over them.

    engine = Engine(Settings.from_env())
    plan = engine.plan(parse({"caption": "...", "duration": 30}))   # refused now, by field, or planned
    result = engine.generate(plan.request, plan=plan, on_progress=print)

`plan` resolves a request against what this engine holds (pipeline/plan.py); `generate` runs the
pipeline (pipeline/generation.py) under the accelerator's lock, with the job's adapters attached
for that job only. The adapters are located, downloaded, read and checked before the lock, inside
the job's deadline (models/lora/adapters.py), so a slow adapter URL holds no other job. The planner's own services (format a caption, invent a sample) live in
pipeline/planner_services.py. The models themselves are `engine.models` (models/registry.py).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..models.dit.attention import dit_attention
from ..models.registry import ModelRegistry
from ..schema.job_modes import MODE_NEEDS_PLANNER, MODE_NEEDS_SOURCE
from ..schema.request import GenerationRequest
from ..settings import Settings
from .generation import GenerationPipeline, GenerationResult, Song
from .plan import EngineFacts, JobPlan, resolve
from .progress import Progress, ProgressTracker
from .understanding import ANALYSIS_DIT_MODEL, analyze

__all__ = ["Engine", "GenerationResult", "Progress", "Song"]


class Engine:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.models = ModelRegistry(self.settings)
        self.pipeline = GenerationPipeline(self.models)

    @property
    def synthesizer(self):
        return self.pipeline.synthesizer

    def plan(self, request: GenerationRequest, seeds: tuple[int, ...] | None = None, *,
             retake_seeds: tuple[int, ...] | None = None, has_source: bool | None = None) -> JobPlan:
        """Everything about `request` known before any model runs; InputError or PlannerUnavailableError,
        naming the field, for what the chosen model or this server cannot do. Reads configs only."""
        facts = EngineFacts(self.models.variant(request.model), self.models.families(),
                            self.models.planner is not None)
        return resolve(request, facts, seeds, retake_seeds=retake_seeds, has_source=has_source)

    def check_adapters(self, request: GenerationRequest) -> None:
        """Refuse at submission, naming `loras[i]`, the adapters that cannot load: the slots, and each one
        in the adapter folder read and checked (urls and hub repos are fetched when the job runs)."""
        self.models.adapters.check(request.loras)

    def generate(self, request: GenerationRequest, on_progress: Callable[[Progress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 audio: dict[str, np.ndarray] | None = None) -> GenerationResult:
        """Plan `request` and generate its `batch_size` songs (see `run`). `audio` holds the decoded
        editing inputs by field name ("src_audio", "reference_audio"), each float32 [samples, 2] at
        48 kHz (see audio/sources.py)."""
        source = (audio or {}).get("src_audio")
        plan = self.plan(request, has_source=source is not None and len(source) > 0)
        return self.run(plan, on_progress, should_stop, audio)

    def run(self, plan: JobPlan, on_progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None,
            audio: dict[str, np.ndarray] | None = None) -> GenerationResult:
        """Generate a planned job's songs under the accelerator's lock. Raises InputError,
        PlannerUnavailableError, GenerationCancelled, GenerationFailed.

        `should_stop` is polled throughout; when it is a runner Deadline, its `at` (a `time.monotonic()`
        reading) also bounds the adapters' downloads, which happen before the lock is taken."""
        if not plan.generates:
            return self.analyze(plan, on_progress, should_stop, audio)
        audio = {name: pcm for name, pcm in (audio or {}).items() if name not in plan.replaced}
        adapters = self.models.adapters.prepare(plan.request.loras, deadline=getattr(should_stop, "at", None),
                                                should_stop=should_stop)
        with self.models.lock:
            if plan.request.model is None and plan.variant.name != self.models.default_model:
                # /v1/init made another DiT the default since the job was planned: "the default" is the
                # one held now, as when it was submitted (checked again against its rules).
                plan = self.plan(plan.request, plan.seeds, retake_seeds=plan.retake_seeds,
                                 has_source="src_audio" in audio)
            if plan.uses_source and not plan.length.known:
                plan = plan.with_source(len(audio["src_audio"]))
            tracker = ProgressTracker(on_progress, should_stop, uses_planner=plan.planner.runs,
                                      writes_codes=plan.planner.writes_codes, encodes_audio=bool(audio))
            # No adapter outlives the job; the attention hooks are the job's too.
            with self.models.adapters.session(adapters) as loras, dit_attention(self.models.attention_choice()):
                result = self.pipeline(plan, audio, tracker, loras)
            tracker.finish()
        return result

    def analyze(self, plan: JobPlan, on_progress: Callable[[Progress], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                audio: dict[str, np.ndarray] | None = None) -> GenerationResult:
        """Run an analysis job (pipeline/understanding.py) under the accelerator's lock: no songs, the
        result in `analysis`."""
        start = time.perf_counter()
        with self.models.lock:
            reads_audio = plan.mode in MODE_NEEDS_SOURCE
            tracker = ProgressTracker(on_progress, should_stop, uses_planner=plan.mode in MODE_NEEDS_PLANNER,
                                      encodes_audio=reads_audio)
            dit = self.models.dit(plan.variant.name) if reads_audio else None
            analysis = analyze(plan, audio or {}, dit, self.models.vae, self.models.planner, tracker)
            tracker.finish()
        return GenerationResult(songs=[], model=dit.variant.name if dit is not None else ANALYSIS_DIT_MODEL,
                                random_weights=self.models.random_weights, params={"mode": plan.mode},
                                timings={**analysis.timings, "total": time.perf_counter() - start},
                                analysis=analysis.payload)
