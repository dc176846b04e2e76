"""One job from submission to songs on disk, the same for every door.

    runner = JobRunner(engine)
    plan = runner.check(request, sources)                       # at submission: refused now, or planned
    finished = runner.run(Job("job-1", plan, Deadline(request.timeout_seconds), sources, files))

`check` is everything refused before a job exists: what the chosen model or this server cannot do
(the plan), and what each audio field says without downloading it. `run` is the job itself, in
order: its audio inputs fetched and decoded inside its deadline; the plan completed with the
source's length and checked again by the door's delivery (a serverless job's inline budget);
generation; the songs written all or none; delivery (a bucket upload). An analysis job (the plan's
`mode`: extract_codes_only, full_analysis_only, analysis_only) stops after the engine: it writes and
delivers nothing, and its result is `Finished.result.analysis`. A cancel or the deadline
stops it within one step, and a job that does not finish (stopped, or its delivery failed) leaves
no file behind. The serverless handler, the
pod's queue (API and page) and the local CLI each translate their own shapes around these two
calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from ..audio.sources import SourcePolicy, load_audio
from ..audio.sources import check as check_audio
from ..delivery.files import Encoding, SavedSong, save_songs, song_tags, stem_paths
from ..errors import GenerationCancelled
from ..pipeline.engine import Engine, GenerationResult, Progress
from ..pipeline.plan import JobPlan
from ..schema.request import GenerationRequest
from .deadline import Deadline


class Delivery(Protocol):
    """What a door does with a job's songs beyond writing them."""

    def check(self, plan: JobPlan) -> None:
        """Refuse, before any GPU time, a job whose songs could not reach the caller (called at
        submission and again once the source's length is known)."""

    def deliver(self, songs: list[SavedSong], deadline: Deadline) -> dict[str, float]:
        """Send the written songs on; returns timings. May raise DeliveryError."""


class KeepFiles:
    """The songs stay where they were written (the pod serves them; the CLI wrote them where asked)."""

    def check(self, plan: JobPlan) -> None:
        return None

    def deliver(self, songs: list[SavedSong], deadline: Deadline) -> dict[str, float]:
        return {}


@dataclass
class Job:
    id: str
    plan: JobPlan  # from `JobRunner.check`: its seeds are the job's
    deadline: Deadline
    sources: SourcePolicy  # where this door lets its audio come from
    paths: Callable[[int, str], list[Path]]  # (songs, file extension) -> where the songs are written
    delivery: Delivery = field(default_factory=KeepFiles)
    on_progress: Callable[[Progress], None] | None = None
    on_stage: Callable[[str], None] | None = None  # the runner's own stages ("audio_input")


@dataclass
class Finished:
    plan: JobPlan  # as it ran: with the source's length
    songs: list[SavedSong]
    result: GenerationResult
    sources: dict  # `source` / `reference`: what was decoded of each audio input
    timings: dict[str, float]


class JobRunner:
    def __init__(self, engine: Engine):
        self.engine = engine

    def check(self, request: GenerationRequest, sources: SourcePolicy, delivery: Delivery | None = None) -> JobPlan:
        """Everything refused at submission, before a job exists, by every door: what the chosen model
        or this server cannot do, the adapters in the adapter folder (read and checked; urls and hub
        repos are fetched when the job runs), what the audio fields say without downloading them (file
        headers are read: call it off an event loop), and what its delivery cannot carry."""
        plan = self.engine.plan(request)
        if plan.generates and request.loras:  # an analysis loads no adapter
            self.engine.check_adapters(request)
        for name in plan.audio_fields:
            check_audio(name, getattr(request, name), sources)
        if plan.generates:  # an analysis delivers no audio
            (delivery or KeepFiles()).check(plan)
        return plan

    def run(self, job: Job) -> Finished:
        """Run `job`; raise an AceStepError whose message is for the caller (the deadline's or the
        cancel's reason when it was stopped)."""
        saved: list[SavedSong] = []
        deadline = job.deadline
        try:
            plan, loaded, timings = self._audio_inputs(job)
            result = self.engine.run(plan, job.on_progress, deadline, loaded.arrays)
            if not plan.generates:
                deadline.check()
                timings.update(result.timings)
                return Finished(plan, [], result, loaded.output_fields(), timings)
            start = time.perf_counter()
            paths = job.paths(len(result.songs), plan.output.extension)
            if plan.splits_stems:  # each file says which stem it is
                paths = stem_paths(paths, [song.stem for song in result.songs])
            saved = save_songs(result.songs, _encoding(plan, result), paths, deadline.check)
            timings.update(result.timings, encode=time.perf_counter() - start)
            timings.update(job.delivery.deliver(saved, deadline))
            deadline.check()
        except BaseException as failed:
            for song in saved:  # a job that does not finish (stopped, or its delivery failed) leaves nothing
                song.path.unlink(missing_ok=True)
            if isinstance(failed, GenerationCancelled):
                raise deadline.reason(failed) from None
            raise
        result.timings = timings
        return Finished(plan, saved, result, loaded.output_fields(), timings)

    def _audio_inputs(self, job: Job):
        """Fetch and decode the audio inputs inside the deadline, before any GPU time is spent; the
        plan then knows the source's length, and the delivery checks it again."""
        if job.on_stage is not None:
            job.on_stage("audio_input")
        start = time.perf_counter()
        plan = job.plan
        loaded = load_audio({name: getattr(plan.request, name) for name in plan.audio_fields}, job.sources,
                            job.deadline.at, should_stop=job.deadline.cancelled.is_set)
        timings = {"audio_input": time.perf_counter() - start} if loaded.arrays else {}
        if "src_audio" in loaded.arrays and plan.generates:
            plan = plan.with_source(len(loaded.arrays["src_audio"]))
            job.delivery.check(plan)
        return plan, loaded, timings


def _encoding(plan: JobPlan, result: GenerationResult) -> Encoding:
    caption = str(result.params.get("caption") or plan.request.caption)
    return Encoding(plan.output.format, plan.output.mp3_bitrate, song_tags(result.model, result.random_weights, caption))
