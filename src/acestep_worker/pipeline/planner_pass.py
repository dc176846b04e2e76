"""The planner's pass over a job: caption, lyrics, metadata and audio codes, as the plan asks.

Upstream's order, with the user always winning: a description (sample mode) invents caption,
lyrics and metadata; `use_format` rewrites caption and lyrics; the metadata chain of thought fills
whatever is still unset; `thinking` writes the audio codes. What runs is decided by the plan
(`plan.PlannerWork`); this module carries it out and says what came of it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from ..errors import PlannerUnavailableError
from ..models.planner.decoding import SamplingParams
from ..models.planner.metadata import Metadata
from ..models.planner.planner import Planner, SongText
from ..schema.messages import needs_planner
from ..schema.request import GenerationRequest
from ..schema.units import DEFAULT_DURATION_S
from .plan import PlannerWork
from .progress import ProgressTracker

DEFAULT_LANGUAGE = "en"

# A sample query's language and "instrumental" hints, as upstream reads them (first match wins).
_LANGUAGE_HINTS = (
    ("english", "en"), ("en", "en"), ("chinese", "zh"), ("中文", "zh"), ("zh", "zh"), ("mandarin", "zh"),
    ("japanese", "ja"), ("日本語", "ja"), ("ja", "ja"), ("korean", "ko"), ("한국어", "ko"), ("ko", "ko"),
    ("spanish", "es"), ("español", "es"), ("es", "es"), ("french", "fr"), ("français", "fr"), ("fr", "fr"),
    ("german", "de"), ("deutsch", "de"), ("de", "de"), ("italian", "it"), ("italiano", "it"), ("it", "it"),
    ("portuguese", "pt"), ("português", "pt"), ("pt", "pt"), ("russian", "ru"), ("русский", "ru"), ("ru", "ru"),
    ("bengali", "bn"), ("bn", "bn"), ("hindi", "hi"), ("hi", "hi"), ("arabic", "ar"), ("ar", "ar"),
    ("thai", "th"), ("th", "th"), ("vietnamese", "vi"), ("vi", "vi"), ("indonesian", "id"), ("id", "id"),
    ("turkish", "tr"), ("tr", "tr"), ("dutch", "nl"), ("nl", "nl"), ("polish", "pl"), ("pl", "pl"),
)


def query_hints(query: str) -> tuple[str | None, bool]:
    """(language code or None, instrumental) read from a free-text description."""
    text = query.strip().lower()
    language = None
    for name, code in _LANGUAGE_HINTS:
        if len(name) <= 2:
            pattern = r"(?:^|\s|[.,;:!?])" + re.escape(name) + r"(?:$|\s|[.,;:!?])"
        else:
            pattern = r"\b" + re.escape(name) + r"\b"
        if re.search(pattern, text):
            language = code
            break
    instrumental = ("instrumental" in text or "pure music" in text or "pure instrument" in text
                    or text.endswith(" solo") or text == "solo")
    return language, instrumental


@dataclass(frozen=True)
class PlannerInputs:
    """What the user gave the planner: the song's text, a description, the metadata they set (which
    always wins), how to sample, and the requested duration."""

    text: SongText
    query: str
    user: Metadata
    params: SamplingParams
    duration_s: float | None

    @classmethod
    def from_request(cls, request: GenerationRequest) -> "PlannerInputs":
        user = Metadata(bpm=request.bpm, duration=int(request.duration) if request.duration else None,
                        keyscale=request.key_scale, timesignature=request.time_signature,
                        language=request.vocal_language)
        params = SamplingParams(temperature=request.lm_temperature, top_k=request.lm_top_k, top_p=request.lm_top_p,
                                cfg_scale=request.lm_cfg_scale, repetition_penalty=request.lm_repetition_penalty,
                                constrained=request.constrained_decoding)
        return cls(SongText(request.caption, request.lyrics, request.lm_negative_prompt), request.sample_query,
                   user, params, request.duration)


@dataclass
class Resolved:
    """The songs' text and metadata after the planner (if any) ran."""

    caption: str
    lyrics: str
    language: str
    bpm: int | None
    key_scale: str | None
    time_signature: str | None
    duration_s: float
    codes: list[list[int]] | None = None  # per song, 5 per second, when the planner wrote them
    lm_metadata: dict = field(default_factory=dict)  # what the planner wrote (not what the user gave)
    timings: dict[str, float] = field(default_factory=dict)


def planner_pass(work: PlannerWork, given: PlannerInputs, planner: Planner | None, seeds: list[int],
                 progress: ProgressTracker) -> Resolved:
    """Run what `work` asks (nothing without a planner: the plan has refused what needs one)."""
    if work.runs and planner is None:  # unloaded since the job was planned (a failed /v1/init switch)
        raise PlannerUnavailableError(needs_planner("this job"), "thinking" if work.writes_codes else "use_cot_metas")
    text, written, timings = given.text, Metadata(), {}
    run_metadata = bool(work.metadata)
    if work.runs and work.sample:
        start = _stage(progress)
        language, instrumental = query_hints(given.query)
        injected = given.user.language or language
        result = planner.create_sample(given.query, instrumental, injected, given.params, seeds[0], progress)
        text = SongText(result.metadata.caption or text.caption, result.lyrics or text.lyrics, text.negative)
        # The language went to the LM as the user's value: it stands even where the LM never reached that field.
        written = result.metadata.merged_over(Metadata(language=injected))
        timings["planner_sample"] = time.perf_counter() - start
    if work.runs and work.format:
        start = _stage(progress)
        result = planner.format_input(text, given.user, given.params, seeds[0], progress)
        text = SongText(result.metadata.caption or text.caption, result.lyrics or text.lyrics, text.negative)
        written = result.metadata.merged_over(written)
        run_metadata = run_metadata and result.metadata.duration is None
        timings["planner_format"] = time.perf_counter() - start
    caption = text.caption  # the LM's own prompts (`text`) keep the caption from before the metadata's rewrite
    if work.runs and run_metadata:
        start = _stage(progress)
        result = planner.write_metadata(text, given.user, given.params, seeds[0], list(work.metadata),
                                        progress)
        written = result.metadata.merged_over(written)
        if "caption" in work.metadata and result.metadata.caption:
            caption = result.metadata.caption
        timings["planner_metadata"] = time.perf_counter() - start
    final = given.user.merged_over(written)  # the user's values always win
    resolved = Resolved(
        caption=caption, lyrics=text.lyrics, language=final.language or DEFAULT_LANGUAGE, bpm=final.bpm,
        key_scale=final.keyscale, time_signature=final.timesignature,
        duration_s=float(given.duration_s or final.duration or DEFAULT_DURATION_S),
        lm_metadata={k: v for k, v in written.as_dict().items() if getattr(given.user, k) is None}, timings=timings)
    if work.runs and work.writes_codes:
        progress.stage("audio_codes")
        start = time.perf_counter()
        cot = Metadata(bpm=resolved.bpm, caption=resolved.caption, duration=int(resolved.duration_s),
                       keyscale=resolved.key_scale, language=resolved.language, timesignature=resolved.time_signature)
        resolved.codes = planner.write_codes(text, cot, resolved.duration_s, seeds, given.params, progress)
        timings["planner_codes"] = time.perf_counter() - start
    return resolved


def _stage(progress: ProgressTracker) -> float:
    progress.stage("planning")
    return time.perf_counter()
