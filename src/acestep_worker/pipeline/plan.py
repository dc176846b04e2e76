"""A request resolved once: everything about a job that is known before any model runs.

`resolve` turns a validated request and what the engine knows (the chosen DiT's variant, the
installed models, whether the planner is loaded) into one `JobPlan`: the task's rule, the given
audio codes parsed once, how long the songs will be and what decides it, whether and why the planner
runs, the seeds, the fields another field replaces, and the output's predicted size. It refuses, by
field name, what the chosen model cannot do. Once the source song is decoded, `with_source` fixes its
length. The memory budget, the deliverability check, the planner's pass, the song specs and the
result's echo all read the plan; none of them works any of it out again.

Stems: extract and lego may name several tracks (`track_name` as a list). The plan then holds the
stems the result lists (`stems`), the ones the DiT makes (`extracted`: the instrumental is the source
minus the vocals, so it needs those), one row per (stem, take) that the DiT makes, and, once the
memory budget has said how many rows one DiT batch holds (`with_batch_limit`), the fewest batches
that carry them. The source is encoded once for all of them.

The song's length, first rule that applies:

| decided by | when                                        | latent frames                          |
|------------|---------------------------------------------|----------------------------------------|
| codes      | `audio_code_string` holds audio codes        | 5 per code (at least 128)              |
| source     | the task edits a source song (or flow-edit) | the source's, padded for its range     |
| duration   | `duration` is given                         | upstream's rounding of the seconds     |
| planner    | the planner runs and writes the metadata    | known after the planner's pass         |
| default    | none of the above                           | 30 s                                   |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal, Mapping

from ..errors import InputError, PlannerUnavailableError
from ..models.dit.text_prompts import COVER_INSTRUCTION
from ..models.planner.metadata import FIELD_ORDER
from ..models.variants import Variant
from ..schema.formats import FORMATS
from ..schema.job_modes import MODE_NEEDS_PLANNER, MODE_NEEDS_SOURCE, JobMode, analysis_unused, job_mode
from ..schema.messages import needs_planner
from ..schema.request import GenerationRequest
from ..schema.task_types import (
    DERIVED_STEMS,
    TASKS,
    Region,
    TaskRule,
    check_flow_edit_supported,
    check_supported,
    extracted_stems,
    flow_edits,
    instruction_for,
    region_for,
    replaced_fields,
)
from ..schema.units import (
    CODES_PER_SECOND,
    DEFAULT_DURATION_S,
    FRAMES_PER_CODE,
    FRAMES_PER_SECOND,
    MAX_DURATION_S,
    MIN_FRAMES,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    frames_for_duration,
    latent_frames,
)
from .lyric_alignment import AlignmentRequest
from .quality_pass import check_quality_ranking
from .seeds import draw_retake_seeds, draw_seeds

LengthSource = Literal["codes", "source", "duration", "planner", "default"]


@dataclass(frozen=True)
class SongLength:
    """How long the songs will be, and what decides it. `frames` and `seconds` are None while the
    planner or a source song still to be decoded decides."""

    source: LengthSource
    frames: int | None  # latent frames of the batch (at least MIN_FRAMES)
    seconds: float | None  # of each finished song

    @property
    def known(self) -> bool:
        return self.frames is not None


@dataclass(frozen=True)
class PlannerWork:
    """Whether and why the planner runs, and what it is asked for. `runs` is False when nothing asks
    for it, when the task does not run it (upstream skips the LM for tasks that only transform a
    source), or when no planner is loaded and only optional steps (the chain of thought) asked."""

    runs: bool = False
    sample: bool = False  # a description (sample_query / sample_mode) invents caption, lyrics, metadata
    format: bool = False  # use_format rewrites caption and lyrics
    metadata: tuple[str, ...] = ()  # chain-of-thought fields to fill, when the user left some unset
    writes_codes: bool = False  # thinking: the planner writes the audio codes the DiT follows
    decides_length: bool = False  # no duration, codes or source: the planner's metadata sets it


@dataclass(frozen=True)
class OutputPlan:
    format: str
    mp3_bitrate: int
    extension: str
    content_type: str


@dataclass(frozen=True)
class SongRow:
    """One item the DiT makes: take `take` (seeded `seed`) of `stem` (None: the job names no stem)."""

    stem: str | None
    take: int
    seed: int
    instruction: str


@dataclass(frozen=True)
class JobPlan:
    request: GenerationRequest
    task: TaskRule
    variant: Variant
    codes: tuple[int, ...] | None  # the request's own audio codes, parsed once
    steps: int  # diffusion steps, within the variant's range
    instruction: str  # the caption prompt's instruction line (the task's, or the request's own)
    length: SongLength
    planner: PlannerWork
    seeds: tuple[int, ...]
    output: OutputPlan
    replaced: Mapping[str, str] = field(default_factory=dict)  # field -> why another field replaces it
    region: Region | None = None  # the repaint/lego range on the decoded source (with_source)
    retake_seeds: tuple[int, ...] | None = None  # one per song while retake_variance > 0, else None
    mode: JobMode = "generate"
    alignment: AlignmentRequest = field(default_factory=AlignmentRequest)  # LRC / scores read after sampling

    @property
    def generates(self) -> bool:
        """The job makes songs (every mode but the analyses, which write no audio)."""
        return self.mode == "generate"
    stems: tuple[str, ...] = ()  # the stems the result lists, in the order asked (extract, lego)
    batch_limit: int | None = None  # rows one DiT batch may hold (with_batch_limit); None: all of them

    @property
    def extracted(self) -> tuple[str, ...]:
        """The stems the DiT makes: the named tracks, and for a derived stem the track it needs."""
        return extracted_stems(self.stems)

    @property
    def splits_stems(self) -> bool:
        """Several stems, or a derived one: the result then names each song's stem (`track_name`)."""
        return len(self.stems) > 1 or any(stem in DERIVED_STEMS for stem in self.stems)

    @property
    def song_count(self) -> int:
        """The songs the result lists: one per take of each stem asked for."""
        return max(1, len(self.stems)) * len(self.seeds)

    @property
    def rows(self) -> tuple[SongRow, ...]:
        """One row per (stem, take) the DiT makes, stem by stem; each take's seed is the same for every stem,
        so a stem of a several-stem job is the song a one-stem job with that seed makes."""
        if not self.stems:
            return tuple(SongRow(None, take, seed, self.instruction) for take, seed in enumerate(self.seeds))
        request = self.request
        return tuple(SongRow(stem, take, seed, instruction_for(request.task_type, stem, None, request.instruction))
                     for stem in self.extracted for take, seed in enumerate(self.seeds))

    @property
    def batches(self) -> tuple[tuple[SongRow, ...], ...]:
        """The rows in the fewest DiT batches of at most `batch_limit` rows, as even as they divide."""
        rows = self.rows
        count = math.ceil(len(rows) / self.batch_limit) if self.batch_limit else 1
        size, extra = divmod(len(rows), count)
        bounds = [sum(size + (i < extra) for i in range(n)) for n in range(count + 1)]
        return tuple(rows[bounds[i]:bounds[i + 1]] for i in range(count))

    def with_batch_limit(self, rows: int) -> "JobPlan":
        """The plan once the memory budget has said how many rows one DiT batch may hold."""
        return replace(self, batch_limit=max(1, rows))

    @property
    def audio_fields(self) -> tuple[str, ...]:
        """The audio inputs this job fetches and decodes: those it sent that nothing replaces (an analysis
        reads the source alone, and only when it analyses audio)."""
        if not self.generates:
            return ("src_audio",) if self.mode in MODE_NEEDS_SOURCE else ()
        return tuple(name for name in ("src_audio", "reference_audio")
                     if getattr(self.request, name, None) and name not in self.replaced)

    @property
    def flow_edit(self) -> bool:
        """Flow-edit runs: the source song is morphed toward the caption and lyrics."""
        return flow_edits(self.request)

    @property
    def uses_source(self) -> bool:
        """The source song is encoded and edited (its length then sets the songs')."""
        return (self.task.needs_source or self.flow_edit) and self.codes is None

    def with_source(self, samples: int) -> "JobPlan":
        """The plan once the source song is decoded (`samples` at 48 kHz): its length is the songs'.
        Refuses a repaint range that would make the song longer than songs may be."""
        if not self.uses_source:
            return self
        padded, region = samples, None
        if self.task.uses_range:
            region = region_for(self.request.repainting_start, self.request.repainting_end, samples)
            padded += region.pad_left_samples + region.pad_right_samples
            if padded / SAMPLE_RATE > MAX_DURATION_S:
                raise InputError("repainting_end", f"the source with its repaint range would last "
                                 f"{padded / SAMPLE_RATE:.1f} s; songs are at most {MAX_DURATION_S:g} s")
        length = SongLength("source", max(MIN_FRAMES, latent_frames(padded)), padded / SAMPLE_RATE)
        return replace(self, length=length, region=region)

    def frames_after_planner(self, written_duration_s: float, codes: list[list[int]] | None) -> int:
        """The batch's latent frames once the planner has run: the codes it wrote (5 frames each), else
        the plan's own when they were known before, else the duration the planner chose."""
        if codes and any(codes):  # unconstrained decoding may leave a take without codes
            return max(MIN_FRAMES, FRAMES_PER_CODE * max(len(c) for c in codes))
        if self.length.known:
            return self.length.frames
        return max(MIN_FRAMES, frames_for_duration(written_duration_s))


@dataclass(frozen=True)
class EngineFacts:
    """What the engine knows that a plan depends on, read without loading any weights."""

    variant: Variant  # of the DiT the request names (or the default)
    installed: Mapping[str, str]  # DiT name -> family
    planner_loaded: bool


def resolve(request: GenerationRequest, facts: EngineFacts, seeds: tuple[int, ...] | None = None, *,
            retake_seeds: tuple[int, ...] | None = None, has_source: bool | None = None) -> JobPlan:
    """The plan for `request`; InputError or PlannerUnavailableError, naming the field, for what the
    chosen model or this server cannot do. `seeds` / `retake_seeds`: the songs' seeds when they are drawn
    already. `has_source`: whether a source song comes with the job (None: when the request names one)."""
    mode = job_mode(request)
    if mode != "generate":
        return _analysis_plan(request, facts, mode, seeds, has_source)
    task = TASKS[request.task_type]
    steps = check_steps(request, facts.variant)
    check_supported(request.task_type, facts.variant.name, facts.variant.family, dict(facts.installed))
    flow = flow_edits(request)
    if flow:
        check_flow_edit_supported(facts.variant.name, facts.variant.family, dict(facts.installed))
    # A text2music flow-edit drops given codes, as upstream: the source song leads.
    codes = (request.given_codes or None) if not (flow and not task.needs_source) else None
    has_source = bool(request.src_audio) if has_source is None else has_source
    _check_source(request, task, codes, has_source)
    if flow:
        _check_flow_edit_source(request, codes, has_source)
    planner = planner_work(request, task, codes, facts.planner_loaded)
    alignment = alignment_request(request, planner, steps)
    check_quality_ranking(request, planner, codes, facts.planner_loaded)
    fmt = FORMATS[request.audio_format]
    return JobPlan(
        request=request, task=task, variant=facts.variant, codes=codes, steps=steps,
        instruction=_instruction(request, bool(codes) or planner.writes_codes),
        length=song_length(request, task, codes, planner), planner=planner, seeds=seeds or draw_seeds(request),
        output=OutputPlan(fmt.name, request.mp3_bitrate, fmt.extension, fmt.content_type),
        replaced=replaced_fields(request), retake_seeds=retake_seeds or draw_retake_seeds(request),
        stems=request.stems if task.several_stems else (), alignment=alignment)


def alignment_request(request: GenerationRequest, planner: PlannerWork, steps: int) -> AlignmentRequest:
    """What the job reads from the DiT's lyric alignment: the LRC (auto_lrc), the scores (auto_score, or
    keep_best to rank by). Every task aligns its songs' lyrics, as upstream does for any result with
    lyrics; a request whose songs can have none is refused (a description can still write some), and so
    is best-of-N over several stems (it ranks the takes of one song)."""
    asked = request.alignment_fields
    if asked and request.instrumental and not planner.sample:
        names = " and ".join(asked)
        verb = "align" if len(asked) > 1 else "aligns"
        raise InputError(asked[0], f"{names} {verb} the songs' lyrics, and this request has none (lyrics are "
                         "empty or [Instrumental]); send lyrics, or leave out " + names)
    if request.keep_best is not None and len(request.stems) > 1:
        raise InputError("keep_best", f"keep_best ranks the takes of one song; this job makes {len(request.stems)} "
                         "stems per take: ask for one stem, or leave out keep_best")
    return AlignmentRequest(lrc=request.auto_lrc, scores=request.auto_score or request.keep_best is not None,
                            steps=steps)


def _analysis_plan(request: GenerationRequest, facts: EngineFacts, mode: JobMode, seeds: tuple[int, ...] | None,
                   has_source: bool | None) -> JobPlan:
    """A job that makes no audio: the source it reads and the planner it needs are checked now. The
    generation fields it sends are reported unused."""
    if mode in MODE_NEEDS_SOURCE and not (bool(request.src_audio) if has_source is None else has_source):
        raise InputError("src_audio", f"{mode} reads the audio in src_audio (or a ctx_audio upload); send one")
    if mode in MODE_NEEDS_PLANNER and not facts.planner_loaded:
        raise PlannerUnavailableError(needs_planner(mode) + "; extract_codes_only needs none", mode)
    fmt = FORMATS[request.audio_format]
    return JobPlan(
        request=request, task=TASKS["text2music"], variant=facts.variant, codes=None,
        steps=facts.variant.rules.default_steps, instruction="", length=SongLength("default", None, None),
        planner=PlannerWork(), seeds=seeds or draw_seeds(request),
        output=OutputPlan(fmt.name, request.mp3_bitrate, fmt.extension, fmt.content_type),
        replaced=analysis_unused(request, mode), mode=mode)


def song_length(request: GenerationRequest, task: TaskRule, codes: tuple[int, ...] | None,
                planner: PlannerWork) -> SongLength:
    """The table in this module's docstring, before the source is decoded."""
    if codes:
        frames = max(MIN_FRAMES, FRAMES_PER_CODE * len(codes))
        return SongLength("codes", frames, frames * SAMPLES_PER_FRAME / SAMPLE_RATE)
    if task.needs_source or flow_edits(request):
        return SongLength("source", None, None)
    if planner.decides_length:
        return SongLength("planner", None, None)
    seconds = float(request.duration or DEFAULT_DURATION_S)
    if planner.writes_codes:  # the planner writes int(seconds * 5) codes, and they set the length
        frames = max(MIN_FRAMES, FRAMES_PER_CODE * int(seconds * CODES_PER_SECOND))
    else:
        frames = max(MIN_FRAMES, frames_for_duration(seconds))
    return SongLength("duration" if request.duration else "default", frames, frames / FRAMES_PER_SECOND)


def planner_work(request: GenerationRequest, task: TaskRule, codes: tuple[int, ...] | None,
                 loaded: bool) -> PlannerWork:
    """Upstream's order, the user always winning: a description invents the song, use_format rewrites
    caption and lyrics, the chain of thought fills unset metadata, thinking writes the codes (not
    where a source or given codes already lead the DiT)."""
    if not task.runs_planner:  # its planner fields are reported unused (schema.task_types.replaced_fields)
        return PlannerWork()
    led_by_source = task.needs_source or flow_edits(request)
    writes_codes = request.thinking and not led_by_source and codes is None
    sample = request.sample_mode or bool(request.sample_query.strip())
    asked = [name for name, on in (("thinking", writes_codes), ("use_format", request.use_format),
                                   ("sample_mode", request.sample_mode),
                                   ("sample_query", bool(request.sample_query.strip()))) if on]
    if asked and not loaded:
        raise PlannerUnavailableError(needs_planner(", ".join(asked)) + "; send the request without it", asked[0])
    if not loaded:
        return PlannerWork()  # the chain of thought is optional: without a planner the user's values stand
    given = (request.bpm, request.key_scale, request.time_signature, request.duration)
    metadata = ()
    if request.use_cot_metas and not sample and not all(given):
        metadata = tuple(name for name in FIELD_ORDER if not (name == "caption" and not request.use_cot_caption)
                         and not (name == "language" and not request.use_cot_language))
    runs = bool(sample or request.use_format or metadata or writes_codes)
    decides = runs and (sample or request.use_format or bool(metadata)) and not request.duration
    return PlannerWork(runs=runs, sample=sample, format=request.use_format, metadata=metadata,
                       writes_codes=writes_codes, decides_length=decides and not led_by_source and codes is None)


def _instruction(request: GenerationRequest, led_by_codes: bool) -> str:
    """The task's instruction line; text2music led by audio codes (given, or the planner's) is a cover of
    them, as upstream."""
    if led_by_codes and request.task_type == "text2music" and not request.instruction:
        return COVER_INSTRUCTION
    track = request.stems[0] if len(request.stems) == 1 else None  # several stems: each row has its own
    return instruction_for(request.task_type, track, request.track_classes, request.instruction)


def check_steps(request: GenerationRequest, variant: Variant) -> int:
    """The step count `request` asks of `variant`; InputError for what that model cannot do."""
    rules = variant.rules
    steps = request.inference_steps or rules.default_steps
    if not 1 <= steps <= rules.max_steps:
        raise InputError("inference_steps", f"inference_steps must be between 1 and {rules.max_steps} for "
                         f"{rules.kind} model {variant.name!r}; got {steps}")
    if rules.kind != "turbo" and request.timesteps is not None:
        raise InputError("timesteps", "custom timesteps apply to turbo models only; use "
                         "inference_steps and shift with base/sft models")
    return steps


def _check_source(request: GenerationRequest, task: TaskRule, codes: tuple[int, ...] | None, has_source: bool) -> None:
    """A task that edits a source needs one; given codes stand in for it (upstream: codes replace the
    source), except where a range of the source is repainted."""
    if not task.needs_source:
        return
    if codes is not None:
        if task.uses_range:  # a range repainted over the codes' own render would keep nothing of yours
            raise InputError("audio_code_string", f"task_type {request.task_type!r} repaints a range of "
                             "the source song in src_audio; audio codes cannot stand in for it")
    elif not has_source:
        raise InputError("src_audio", f"task_type {request.task_type!r} needs a source song in src_audio")
    derived = [stem for stem in request.stems if stem in DERIVED_STEMS]
    if derived and codes is not None:  # nothing to subtract the vocals from
        raise InputError("track_name", f"track_name {derived[0]!r} is the source song minus its "
                         f"{DERIVED_STEMS[derived[0]]}; audio codes in audio_code_string leave no source waveform; "
                         "send the song in src_audio instead")


def _check_flow_edit_source(request: GenerationRequest, codes: tuple[int, ...] | None, has_source: bool) -> None:
    """Flow-edit moves a source song: it needs one, and audio codes cannot stand in for it."""
    if codes is not None:
        raise InputError("audio_code_string", "flow_edit_morph edits the source song in src_audio; audio codes "
                         "cannot stand in for it (send src_audio without audio_code_string)")
    if not has_source:
        raise InputError("src_audio", f"flow_edit_morph edits a source song: task_type {request.task_type!r} with "
                         "flow_edit_morph needs src_audio")
